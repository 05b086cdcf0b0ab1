//! Decoder robustness on stable Rust: the properties the cargo-fuzz targets in `les/fuzz`
//! check, as proptest suites small enough for every `cargo test`. Each decoder gets arbitrary
//! bytes and mutated valid encodings and must return (not panic, not stall, not hand back
//! more than its limit); where a decode succeeds, re-encoding must decode to the same value.
//! A session is fed arbitrary bytes before its handshake and arbitrary frames, encrypted with
//! the real keys, after a real handshake with an in-memory peer at each later phase.

// Shared with the fuzz targets (which use all of it).
#[allow(dead_code)]
#[path = "../fuzz/src/peer.rs"]
mod peer;

use alloy_consensus::Header;
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_rlp::Encodable;
use les::chain::{BlockBody, BlockReceipts, NodeSet, SealedHeader};
use les::msg::{
    Announce, AnnounceType, BlockHashOrNumber, ForkSchedule, GetBlockHeaders, KvList, LesMessage,
    LesVersion, LocalStatus, MAX_MESSAGE_SIZE, Resume, Status,
};
use les::p2p::{
    self, BaseMessage, Capability, DisconnectReason, Hello, MAX_UNCOMPRESSED_LEN, SnappyError,
};
use les::rlpx::{self, FrameError, Initiator, Recipient, ecies};
use les::time::Timestamp;
use peer::{Peer, Stage, chunks, fixed_frame_pair, fixed_key, read_chunked};
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1usize..64, 1..6)
}

/// A mutation of an encoding: flip, overwrite, insert, delete or truncate at a position.
#[derive(Debug, Clone)]
enum Mutation {
    Xor(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(p, b)| Mutation::Xor(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Set(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Insert(p, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ];
    proptest::collection::vec(one, 1..4)
}

fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = data.len();
        match *mutation {
            Mutation::Xor(p, b) if len > 0 => data[p % len] ^= b,
            Mutation::Set(p, b) if len > 0 => data[p % len] = b,
            Mutation::Insert(p, b) => data.insert(p % (len + 1), b),
            Mutation::Delete(p) if len > 0 => {
                data.remove(p % len);
            }
            Mutation::Truncate(p) => data.truncate(p % (len + 1)),
            _ => {}
        }
    }
    data
}

fn schedule() -> ForkSchedule {
    ForkSchedule::new(keccak256(b"robustness genesis"), 0, [], [])
}

fn sample_status(version: LesVersion) -> Status {
    let mut status = LocalStatus {
        version,
        network_id: 1,
        fork_schedule: &schedule(),
        head_number: 0,
        head_time: 0,
    }
    .status();
    status.announce_type = Some(AnnounceType::Signed);
    status.buffer_limit = Some(300_000_000);
    status.min_recharge = Some(50_000);
    status.serve_headers = true;
    status.serve_chain_since = Some(0);
    status
}

fn sample_announce() -> Announce {
    Announce::new(B256::repeat_byte(9), 1234, U256::from(5678u64), 0).with_signature(&[0x11; 65])
}

/// Valid payloads of several message kinds, each with its code.
fn sample_messages() -> Vec<LesMessage> {
    vec![
        LesMessage::Status(Box::new(sample_status(LesVersion::Les4))),
        LesMessage::Announce(sample_announce()),
        LesMessage::GetBlockHeaders(GetBlockHeaders {
            request_id: 7,
            origin: BlockHashOrNumber::Number(100),
            max_headers: 10,
            skip: 0,
            reverse: true,
        }),
        LesMessage::GetBlockHeaders(GetBlockHeaders {
            request_id: u64::MAX,
            origin: BlockHashOrNumber::Hash(B256::repeat_byte(3)),
            max_headers: 1,
            skip: 5,
            reverse: false,
        }),
        LesMessage::Stop,
        LesMessage::Resume(Resume { buffer_value: 42 }),
    ]
}

fn sample_hello() -> Hello {
    Hello::new(
        "robustness/v0",
        vec![Capability::new("les", 4).expect("valid"), Capability::new("les", 3).expect("valid")],
        fixed_key(0x11).public_key(),
    )
}

fn sample_header() -> SealedHeader {
    SealedHeader::seal(Header {
        number: 17,
        gas_limit: 30_000_000,
        timestamp: 1_700_000_000,
        base_fee_per_gas: Some(7),
        withdrawals_root: Some(B256::repeat_byte(1)),
        ..Default::default()
    })
}

/// Decodes, and if that works checks the re-encoding decodes to the same message.
fn check_les_message(version: LesVersion, code: u64, payload: &[u8]) {
    if let Ok(message) = LesMessage::decode(version, code, payload) {
        assert_eq!(message.code(), code);
        let encoded = message.encode();
        assert_eq!(LesMessage::decode(version, code, &encoded).as_ref(), Ok(&message));
    }
}

fn check_p2p(input: &[u8]) {
    if let Ok(hello) = Hello::decode(input) {
        let encoded = hello.encode().expect("a decoded Hello re-encodes");
        assert_eq!(Hello::decode(&encoded), Ok(hello));
    }
    if let Ok(reason) = DisconnectReason::decode(input) {
        assert_eq!(DisconnectReason::decode(&reason.encode()), Ok(reason));
    }
    let _ = DisconnectReason::decode_lenient(input);
    if let Ok((id, data)) = p2p::decode_frame_data(input) {
        assert_eq!(p2p::encode_frame_data(id, data), input);
        let _ = BaseMessage::decode(id, data);
    }
    if let Ok(plain) = p2p::decompress(input, MAX_MESSAGE_SIZE) {
        assert!(plain.len() <= MAX_MESSAGE_SIZE);
    }
}

fn check_status_kv(input: &[u8]) {
    if let Ok(status) = Status::decode(input) {
        assert_eq!(Status::decode(&alloy_rlp::encode(&status)).as_ref(), Ok(&status));
    }
    if let Ok(list) = KvList::decode(input) {
        let mut encoded = Vec::new();
        list.encode(&mut encoded);
        assert_eq!(KvList::decode(&encoded).as_ref(), Ok(&list));
    }
    if let Ok(announce) = Announce::decode(input) {
        let _ = announce.signature();
        let encoded = LesMessage::Announce(announce.clone()).encode();
        assert_eq!(Announce::decode(&encoded), Ok(announce));
    }
}

fn check_chain(input: &[u8]) {
    if let Ok(header) = SealedHeader::decode(input) {
        assert_eq!(SealedHeader::decode(&header.encoded()).as_ref(), Ok(&header));
    }
    if let Ok(body) = BlockBody::decode(input) {
        let _ = body.verify(&Header::default());
        let _ = body.recover_senders();
    }
    if let Ok(receipts) = BlockReceipts::decode(input) {
        let _ = receipts.verify(&Header::default());
    }
}

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

/// `size || ecies(plaintext)` sealed to `to`, as an EIP-8 packet.
fn seal_eip8(to: u8, plaintext: &[u8]) -> Vec<u8> {
    let size = u16::try_from(plaintext.len() + ecies::ECIES_OVERHEAD).expect("small").to_be_bytes();
    let ct =
        ecies::encrypt(&fixed_key(to).public_key(), plaintext, &size, &fixed_key(0x44), [7; 16])
            .expect("encrypts");
    [&size[..], &ct].concat()
}

#[test]
fn snappy_refuses_huge_declared_lengths_before_allocating() {
    // The varint 0x80 0x80 0x80 0x80 0x10 declares 2^32 uncompressed bytes, past snappy's
    // own 2^32 - 1 maximum: refused while reading the header.
    let declared_2_pow_32 = [0x80, 0x80, 0x80, 0x80, 0x10, 0x00];
    for limit in [MAX_UNCOMPRESSED_LEN, MAX_MESSAGE_SIZE] {
        assert!(matches!(
            p2p::decompress(&declared_2_pow_32, limit),
            Err(SnappyError::Corrupt(snap::Error::TooBig { given, .. })) if given == 1 << 32
        ));
    }
    // 2^32 - 1 is a legal snappy length but past the RLPx transport limit.
    let declared_max_u32 = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
    assert!(matches!(
        p2p::decompress(&declared_max_u32, MAX_MESSAGE_SIZE),
        Err(SnappyError::DeclaredTooLarge { declared }) if declared == (1 << 32) - 1
    ));
    // 10 MiB + 1 fits the transport but not the LES cap.
    let mut over_cap = Vec::new();
    let mut n = MAX_MESSAGE_SIZE as u64 + 1;
    while n >= 0x80 {
        over_cap.push((n as u8) | 0x80);
        n >>= 7;
    }
    over_cap.push(n as u8);
    assert!(matches!(
        p2p::decompress(&over_cap, MAX_MESSAGE_SIZE),
        Err(SnappyError::ExceedsLimit { declared, limit })
            if declared == MAX_MESSAGE_SIZE + 1 && limit == MAX_MESSAGE_SIZE
    ));
    assert!(matches!(p2p::decompress(&[], MAX_MESSAGE_SIZE), Err(SnappyError::Empty)));
}

#[test]
fn frame_reader_refuses_an_oversized_frame_from_its_header() {
    let (mut writer, mut reader) = fixed_frame_pair(1024);
    let frame = writer.write_frame(&[0u8; 2000]).expect("writable");
    // Only the 32 header bytes are fed: the size is refused before any body is buffered.
    let taken = reader.feed(&frame);
    assert_eq!(taken, 32);
    assert_eq!(reader.next_frame(), Err(FrameError::FrameTooLarge { size: 2000, max: 1024 }));
    assert_eq!(reader.feed(&frame[32..]), 0, "a failed reader takes nothing");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn frame_reader_survives_arbitrary_chunked_bytes(data in bytes(600), sizes in chunk_sizes()) {
        let (_, mut reader) = fixed_frame_pair(peer::SESSION_MAX_FRAME_SIZE);
        // Random bytes essentially never carry a valid header MAC.
        prop_assert!(read_chunked(&mut reader, &sizes, &data).is_err() || data.len() < 32);
    }

    #[test]
    fn frame_reader_reads_valid_streams_and_rejects_mutated_ones(
        frames in proptest::collection::vec(bytes(300), 1..4),
        sizes in chunk_sizes(),
        mutation in proptest::option::of((any::<usize>(), 1u8..)),
    ) {
        let (mut writer, mut reader) = fixed_frame_pair(peer::SESSION_MAX_FRAME_SIZE);
        let mut stream = Vec::new();
        for frame in &frames {
            stream.extend(writer.write_frame(frame).expect("writable"));
        }
        match mutation {
            None => prop_assert_eq!(read_chunked(&mut reader, &sizes, &stream), Ok(frames)),
            Some((position, xor)) => {
                let position = position % stream.len();
                stream[position] ^= xor;
                // Every byte of a frame is covered by a MAC: any flip must be caught.
                prop_assert!(read_chunked(&mut reader, &sizes, &stream).is_err());
            }
        }
    }

    #[test]
    fn every_les_code_and_version_survives_arbitrary_payloads(
        version in proptest::sample::select(LesVersion::ALL.to_vec()),
        code in 0u64..0x20,
        payload in bytes(300),
    ) {
        check_les_message(version, code, &payload);
    }

    #[test]
    fn les_messages_survive_mutation(
        index in any::<prop::sample::Index>(),
        version in proptest::sample::select(LesVersion::ALL.to_vec()),
        mutations in mutations(),
    ) {
        let messages = sample_messages();
        let message = index.get(&messages);
        let encoded = message.encode();
        // Unmutated, the sample decodes to itself on every version that has the code.
        if version.supports(message.code()) {
            let decoded = LesMessage::decode(version, message.code(), &encoded);
            prop_assert_eq!(decoded.as_ref(), Ok(message));
        }
        check_les_message(version, message.code(), &mutate(encoded, &mutations));
    }

    #[test]
    fn p2p_decoders_survive_arbitrary_and_mutated_input(
        data in bytes(300),
        mutations in mutations(),
        which in 0usize..4,
    ) {
        check_p2p(&data);
        let valid = match which {
            0 => sample_hello().encode().expect("encodes"),
            1 => DisconnectReason::TooManyPeers.encode(),
            2 => p2p::encode_frame_data(0x10, &p2p::compress(&data).expect("compresses")),
            _ => p2p::compress(&data).expect("compresses"),
        };
        check_p2p(&mutate(valid, &mutations));
    }

    #[test]
    fn status_kv_and_announce_survive_arbitrary_and_mutated_input(
        data in bytes(300),
        mutations in mutations(),
        which in 0usize..3,
    ) {
        check_status_kv(&data);
        let valid = match which {
            0 => alloy_rlp::encode(sample_status(LesVersion::Les3)),
            1 => alloy_rlp::encode(sample_status(LesVersion::Les4).to_kv()),
            _ => LesMessage::Announce(sample_announce()).encode(),
        };
        check_status_kv(&mutate(valid, &mutations));
    }

    #[test]
    fn chain_data_survives_arbitrary_and_mutated_input(
        data in bytes(400),
        mutations in mutations(),
        which in 0usize..3,
    ) {
        check_chain(&data);
        let header = sample_header();
        let body = BlockBody::new(vec![], vec![header.clone()], Some(vec![]));
        let valid = match which {
            0 => header.encoded(),
            1 => body.encode(),
            _ => alloy_rlp::encode(Vec::<Bytes>::new()),
        };
        check_chain(&mutate(valid, &mutations));
    }

    #[test]
    fn node_sets_survive_arbitrary_nodes(
        nodes in proptest::collection::vec(bytes(120), 0..5),
        key in any::<[u8; 32]>(),
        root_from_node in any::<bool>(),
    ) {
        let key = B256::from(key);
        let root = match nodes.first() {
            Some(node) if root_from_node => keccak256(node),
            _ => B256::repeat_byte(0x5a),
        };
        let mut set = NodeSet::new(nodes.iter().cloned().map(Bytes::from));
        let _ = set.get(root, key);
        let _ = set.account(root, &Address::from_slice(&key[..20]));
        let _ = set.storage(root, &key);
        let _ = set.finish();
    }
}

proptest! {
    // Each case does elliptic-curve work, slow in debug builds.
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn handshake_readers_survive_arbitrary_packets(data in bytes(700)) {
        if let Ok(Some(len)) = rlpx::handshake_packet_len(&data)
            && let Some(exact) = data.get(..len)
        {
            prop_assert!(recipient().read_auth(exact).is_err());
        }
        prop_assert!(recipient().read_auth(&data).is_err());
        if let Ok(Some(len)) = rlpx::ack_packet_len(&data)
            && let Some(exact) = data.get(..len)
        {
            prop_assert!(initiator().read_ack(exact).is_err());
        }
        prop_assert!(ecies::decrypt(&fixed_key(0x11), &data, &[]).is_err());
    }

    #[test]
    fn handshake_body_decoders_survive_arbitrary_plaintext(plaintext in bytes(400)) {
        // Sealed correctly, so the ECIES MAC passes and the body decoders see the bytes.
        let auth = seal_eip8(0x11, &plaintext);
        if recipient().read_auth(&auth).is_ok() {
            // Only a real auth body can pass; random bytes cannot carry a valid signature.
            prop_assert!(false, "arbitrary plaintext accepted as auth");
        }
        let _ = initiator().read_ack(&seal_eip8(0x21, &plaintext));
    }

    #[test]
    fn session_survives_arbitrary_bytes_before_its_handshake(
        data in bytes(1200),
        sizes in chunk_sizes(),
        client in any::<bool>(),
    ) {
        let now = Timestamp::from_millis(1_000);
        let mut session = if client {
            let mut s = peer::connecting_session(AnnounceType::Signed, LesVersion::ALL.to_vec(), now);
            let _ = s.poll_transmit();
            s
        } else {
            peer::accepting_session(LesVersion::ALL.to_vec(), now)
        };
        for piece in chunks(&sizes, &data) {
            session.handle_input(piece, now);
            while session.poll_transmit().is_some() {}
            while session.poll_event().is_some() {}
        }
        prop_assert!(!session.is_established());
        session.handle_timeout(now.saturating_add(std::time::Duration::from_secs(6)));
        prop_assert!(session.is_closed(), "the handshake timeout must close the session");
    }

    #[test]
    fn session_survives_arbitrary_authenticated_frames(
        server in any::<bool>(),
        version in proptest::sample::select(LesVersion::ALL.to_vec()),
        stage in proptest::sample::select(vec![Stage::AwaitHello, Stage::AwaitStatus, Stage::Established]),
        frames in proptest::collection::vec((any::<bool>(), 0u8..0x30, bytes(200)), 1..6),
        chunk in 1usize..200,
    ) {
        let mut peer = if server {
            Peer::with_server_session(version, stage)
        } else {
            Peer::with_client_session(version, stage)
        };
        if stage == Stage::Established {
            prop_assert!(peer.session.is_established(), "the fixture peer failed to establish");
        }
        for (message, id, data) in frames {
            if message {
                // A well-formed frame (ID + snappy data) whose message data is arbitrary: it
                // reaches the base-protocol and LES decoders.
                let compressed = p2p::compress(&data).expect("compresses");
                peer.send_frame_data_chunked(&p2p::encode_frame_data(u64::from(id), &compressed), chunk);
            } else {
                peer.send_frame_data_chunked(&data, chunk);
            }
        }
        peer.tick(1_000);
        peer.tick(60_000);
        prop_assert!(peer.session.is_closed(), "the read timeout must close the session");
    }
}
