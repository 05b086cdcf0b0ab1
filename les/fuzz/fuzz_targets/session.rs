//! A whole session fed arbitrary input. Mode (first byte, low two bits): 0 raw bytes to a
//! server session before its handshake; 1 raw bytes to a client session after its auth; 2 and
//! 3 a server (2) or client (3) session brought by a real peer to the stage in bits 2..=3,
//! then sent arbitrary frames encrypted with the real keys (so they pass the MACs), each
//! `flags(1) len(2) data`: flag bit 0 compresses `data[1..]` as message data under the ID
//! `data[0]`, else `data` is raw frame data; bits 1..=7 a chunk size. Timers are run after.
#![no_main]

use les::msg::{AnnounceType, LesVersion};
use les::time::Timestamp;
use les_fuzz::peer::{self, Peer, Stage, chunked, chunks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else { return };
    match mode & 0x03 {
        0 | 1 => {
            let now = Timestamp::from_millis(1_000);
            let mut session = if mode & 1 == 0 {
                peer::accepting_session(LesVersion::ALL.to_vec(), now)
            } else {
                let mut s =
                    peer::connecting_session(AnnounceType::Signed, LesVersion::ALL.to_vec(), now);
                let _ = s.poll_transmit();
                s
            };
            let (sizes, data) = chunked(rest);
            for piece in chunks(&sizes, data) {
                session.handle_input(piece, now);
                while session.poll_transmit().is_some() {}
                while session.poll_event().is_some() {}
            }
            for secs in [1u64, 6, 40] {
                session.handle_timeout(now.saturating_add(std::time::Duration::from_secs(secs)));
                while session.poll_transmit().is_some() {}
                while session.poll_event().is_some() {}
            }
        }
        role => {
            let version = LesVersion::ALL[usize::from(mode >> 6) % LesVersion::ALL.len()];
            let stage = match (mode >> 2) & 0x03 {
                0 => Stage::AwaitHello,
                1 => Stage::AwaitStatus,
                _ => Stage::Established,
            };
            let mut peer = if role == 2 {
                Peer::with_server_session(version, stage)
            } else {
                Peer::with_client_session(version, stage)
            };
            let mut remaining = rest;
            while let Some((&flags, tail)) = remaining.split_first() {
                let Some((len, tail)) = tail.split_first_chunk::<2>() else { break };
                let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
                let (data, tail) = tail.split_at(len);
                remaining = tail;
                let chunk = usize::from(flags >> 1).max(1) * 7;
                if flags & 1 == 1 {
                    let Some((&id, payload)) = data.split_first() else { continue };
                    let framed = match les::p2p::compress(payload) {
                        Ok(compressed) => les::p2p::encode_frame_data(u64::from(id), &compressed),
                        Err(_) => continue,
                    };
                    peer.send_frame_data_chunked(&framed, chunk);
                } else {
                    peer.send_frame_data_chunked(data, chunk);
                }
                if peer.session.is_closed() {
                    break;
                }
            }
            for millis in [1_000u64, 15_000, 20_000, 60_000] {
                peer.tick(millis);
            }
        }
    }
});
