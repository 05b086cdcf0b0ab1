//! The RLPx handshake readers on arbitrary packets. Mode (first byte, low two bits):
//! 0 raw bytes to `handshake_packet_len` and `Recipient::read_auth`; 1 raw bytes to
//! `ack_packet_len`, `Initiator::read_ack` and `ecies::decrypt`; 2 the rest as an auth body
//! plaintext, sealed (deterministically) to the recipient as EIP-8 or, mode bit 2 set,
//! legacy, so the body decoders behind the ECIES MAC are reached; 3 the same for an ack.
#![no_main]

use alloy_primitives::B256;
use les::rlpx::{self, Initiator, Recipient, ecies};
use les_fuzz::peer::fixed_key;
use libfuzzer_sys::fuzz_target;

fn recipient() -> Recipient {
    Recipient::with_parts(fixed_key(0x11), fixed_key(0x12), B256::repeat_byte(0x13))
}

fn initiator() -> Initiator {
    let mut initiator = Initiator::with_parts(
        fixed_key(0x21),
        fixed_key(0x11).public_key(),
        fixed_key(0x22),
        B256::repeat_byte(0x23),
    )
    .expect("valid remote key");
    initiator.auth_packet().expect("auth packet");
    initiator
}

/// An EIP-8 packet `size || ecies(plaintext, auth_data = size)` to `key`'s owner.
fn seal_eip8(key: u8, plaintext: &[u8]) -> Option<Vec<u8>> {
    let size = u16::try_from(plaintext.len() + ecies::ECIES_OVERHEAD).ok()?.to_be_bytes();
    let ct =
        ecies::encrypt(&fixed_key(key).public_key(), plaintext, &size, &fixed_key(0x44), [7; 16])
            .ok()?;
    Some([&size[..], &ct].concat())
}

fn read_auth(packet: &[u8]) {
    if let Ok(Some(len)) = rlpx::handshake_packet_len(packet)
        && let Some(exact) = packet.get(..len)
    {
        let mut r = recipient();
        if r.read_auth(exact).is_ok() {
            // An accepted auth must let the handshake finish.
            r.ack_packet().expect("ack after a valid auth");
            r.finish().expect("secrets after a valid auth");
        }
    }
    let _ = recipient().read_auth(packet);
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else { return };
    match mode & 0x03 {
        0 => read_auth(rest),
        1 => {
            if let Ok(Some(len)) = rlpx::ack_packet_len(rest)
                && let Some(exact) = rest.get(..len)
            {
                let _ = initiator().read_ack(exact);
            }
            let _ = initiator().read_ack(rest);
            let _ = ecies::decrypt(&fixed_key(0x11), rest, &[]);
            if let Some((prefix, ct)) = rest.split_first_chunk::<2>() {
                let _ = ecies::decrypt(&fixed_key(0x11), ct, prefix);
            }
        }
        2 => {
            if mode & 0x04 == 0 {
                if let Some(packet) = seal_eip8(0x11, rest) {
                    read_auth(&packet);
                }
            } else {
                // Legacy: exactly the fixed plaintext length, no auth data.
                let mut plaintext = rest.to_vec();
                plaintext.resize(rlpx::handshake::LEGACY_AUTH_LEN - ecies::ECIES_OVERHEAD, 0);
                if let Ok(packet) = ecies::encrypt(
                    &fixed_key(0x11).public_key(),
                    &plaintext,
                    &[],
                    &fixed_key(0x44),
                    [7; 16],
                ) {
                    read_auth(&packet);
                }
            }
        }
        _ => {
            if let Some(packet) = seal_eip8(0x21, rest) {
                let _ = initiator().read_ack(&packet);
            }
        }
    }
});
