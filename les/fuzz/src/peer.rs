//! Fixtures shared by the fuzz targets and by `les/tests/robustness.rs` (which includes this
//! file with `#[path]`): fixed keys and frame secrets, input chunking, and a hand-driven peer
//! that completes a real handshake with a `Session` so that arbitrary frames can be sent to
//! it encrypted with the real keys (they pass the MACs and reach the message decoders).
//!
//! Everything here is deterministic except the session's own ephemeral key and nonce (drawn
//! inside `Session::connect`/`accept`); the peer derives the resulting secrets through the
//! public handshake API, so a fuzz input still means the same frames on every run.

use alloy_primitives::{B256, U256};
use les::announce::AnnouncedHead;
use les::crypto::NodeKey;
use les::flow::FlowParams;
use les::msg::{AnnounceType, ForkSchedule, LesMessage, LesVersion, LocalStatus, Status};
use les::p2p::{self, Capability, Hello};
use les::rlpx::{FrameCodec, FrameReader, FrameWriter, Initiator, MacState, Recipient, Secrets};
use les::session::{ClientConfig, Role, ServeOffer, ServerConfig, Session, SessionConfig};
use les::time::Timestamp;

/// Network ID both ends of the fixture sessions use.
pub const NETWORK_ID: u64 = 31337;

/// The frame-size limit the session applies; the fuzzers use it for their own readers.
pub const SESSION_MAX_FRAME_SIZE: usize = les::session::MAX_FRAME_SIZE;

/// A fixed, valid node key: `seed` repeated (any byte in 1..=0x7f gives a scalar below the
/// curve order).
pub fn fixed_key(seed: u8) -> NodeKey {
    NodeKey::from_bytes(&[seed.clamp(1, 0x7f); 32])
        .expect("a repeated byte below 0x80 is a valid scalar")
}

/// Frame secrets for both directions of one fixed connection: `(writer side, reader side)`.
///
/// Built from constants with `MacState::seeded` rather than by running the handshake: the
/// handshake's EIP-8 padding and ECIES ephemeral key are random even with
/// `Initiator::with_parts`, so a handshake would give different secrets on every run and a
/// fuzz crash would not reproduce. The layout is exactly what `derive_secrets` produces:
/// one side's egress MAC is the other's ingress MAC.
pub fn fixed_secrets() -> (Secrets, Secrets) {
    // Computed once: the public keys cost a scalar multiplication each.
    static SECRETS: std::sync::OnceLock<(Secrets, Secrets)> = std::sync::OnceLock::new();
    SECRETS.get_or_init(build_fixed_secrets).clone()
}

fn build_fixed_secrets() -> (Secrets, Secrets) {
    let aes = B256::repeat_byte(0xa5);
    let mac = B256::repeat_byte(0x3c);
    let a_to_b = MacState::seeded(&mac, &B256::repeat_byte(0x01), b"fixed auth packet");
    let b_to_a = MacState::seeded(&mac, &B256::repeat_byte(0x02), b"fixed ack packet");
    let a = Secrets {
        aes,
        mac,
        egress_mac: a_to_b.clone(),
        ingress_mac: b_to_a.clone(),
        remote_public: fixed_key(0x22).public_key(),
    };
    let b = Secrets {
        aes,
        mac,
        egress_mac: b_to_a,
        ingress_mac: a_to_b,
        remote_public: fixed_key(0x11).public_key(),
    };
    (a, b)
}

/// A writer and the matching reader of one direction, the reader refusing frames above
/// `max_frame_size`.
pub fn fixed_frame_pair(max_frame_size: usize) -> (FrameWriter, FrameReader) {
    let (a, b) = fixed_secrets();
    let (writer, _) = FrameCodec::new(a).split();
    let (_, reader) = FrameCodec::with_max_frame_size(b, max_frame_size).split();
    (writer, reader)
}

/// Splits `input` into a chunk-size schedule and the data: the first byte says how many
/// schedule bytes follow (0..=7); each gives a chunk length (0 means 1), the schedule
/// repeating; no schedule means one chunk.
pub fn chunked(input: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&count, rest)) = input.split_first() else {
        return (vec![usize::MAX], input);
    };
    let count = usize::from(count & 0x07).min(rest.len());
    let (schedule, data) = rest.split_at(count);
    let sizes: Vec<usize> = schedule.iter().map(|&b| usize::from(b).max(1)).collect();
    if sizes.is_empty() { (vec![usize::MAX], data) } else { (sizes, data) }
}

/// Iterates `data` in chunks of the (repeating) sizes.
pub fn chunks<'a>(sizes: &'a [usize], mut data: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut index = 0;
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        let size = sizes.get(index % sizes.len().max(1)).copied().unwrap_or(usize::MAX);
        index += 1;
        let (head, tail) = data.split_at(size.min(data.len()));
        data = tail;
        Some(head)
    })
}

/// Feeds all of `data` to `reader` in the given chunks, collecting frames until the reader
/// fails. Uses `feed`/`next_frame` directly so partial takes are exercised.
pub fn read_chunked(
    reader: &mut FrameReader,
    sizes: &[usize],
    data: &[u8],
) -> Result<Vec<Vec<u8>>, les::rlpx::FrameError> {
    let mut frames = Vec::new();
    for mut piece in chunks(sizes, data) {
        loop {
            let taken = reader.feed(piece);
            piece = piece.get(taken..).unwrap_or_default();
            match reader.next_frame()? {
                Some(frame) => frames.push(frame),
                None if piece.is_empty() => break,
                // Bytes left, none taken, no frame: the reader would stall a driver forever.
                None if taken == 0 => {
                    panic!("frame reader stalled with {} bytes pending", piece.len())
                }
                None => {}
            }
        }
    }
    Ok(frames)
}

fn schedule() -> ForkSchedule {
    ForkSchedule::new(alloy_primitives::keccak256(b"fuzz genesis"), 0, [], [])
}

fn session_config(key: NodeKey, role: Role, versions: Vec<LesVersion>) -> SessionConfig {
    SessionConfig { versions, ..SessionConfig::new(key, role, NETWORK_ID, schedule()) }
}

fn server_head() -> AnnouncedHead {
    AnnouncedHead { hash: B256::repeat_byte(0x77), number: 100, td: U256::from(1_000u64) }
}

/// A server role serving everything with geth's default flow parameters.
pub fn server_role() -> Role {
    Role::Server(ServerConfig {
        head: server_head(),
        flow: FlowParams::geth_default(),
        offer: ServeOffer::ARCHIVE,
    })
}

/// A client role asking for announcements of `announce_type` from a trusted server.
pub fn client_role(announce_type: AnnounceType) -> Role {
    Role::Client(ClientConfig { announce_type, trusted: true })
}

/// The fixed key of the session under test.
pub fn session_key() -> NodeKey {
    fixed_key(0x31)
}

/// The fixed key of the hand-driven peer.
pub fn peer_key() -> NodeKey {
    fixed_key(0x42)
}

/// A session playing the server, waiting for an auth.
pub fn accepting_session(versions: Vec<LesVersion>, now: Timestamp) -> Session {
    Session::accept(session_config(session_key(), server_role(), versions), now)
        .expect("session starts")
}

/// A session playing the client, its auth waiting in `poll_transmit`.
pub fn connecting_session(
    announce_type: AnnounceType,
    versions: Vec<LesVersion>,
    now: Timestamp,
) -> Session {
    Session::connect(
        session_config(session_key(), client_role(announce_type), versions),
        peer_key().public_key(),
        now,
    )
    .expect("session starts")
}

/// How far the peer takes the session before handing it the arbitrary frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// RLPx done; the session waits for Hello.
    AwaitHello,
    /// Hello sent; the session waits for Status.
    AwaitStatus,
    /// Status sent: established (if the session accepted it).
    Established,
}

/// A session under test and the peer talking to it with the real frame keys.
pub struct Peer {
    /// The session under test.
    pub session: Session,
    /// The peer's frame codec, keyed like the session's.
    pub codec: FrameCodec,
    /// The session's clock.
    pub now: Timestamp,
    /// Whether message data must be snappy-compressed (both Hellos say p2p v5).
    pub snappy_after_hello: bool,
    /// Whether our Hello has been sent (compression starts after it).
    pub hello_sent: bool,
}

impl Peer {
    /// Plays the client against a server session: runs the RLPx handshake with a real
    /// `Initiator`, then goes on to `stage`.
    pub fn with_server_session(version: LesVersion, stage: Stage) -> Self {
        let now = Timestamp::from_millis(1_000);
        let mut session = accepting_session(LesVersion::ALL.to_vec(), now);
        let mut initiator = Initiator::with_parts(
            peer_key(),
            session_key().public_key(),
            fixed_key(0x55),
            B256::repeat_byte(0x66),
        )
        .expect("valid remote key");
        let auth = initiator.auth_packet().expect("auth packet");
        session.handle_input(&auth, now);
        let ack = session.poll_transmit().expect("the session answers with an ack");
        let secrets = initiator.read_ack(&ack).expect("the session's ack is valid");
        let mut peer = Self {
            session,
            codec: FrameCodec::with_max_frame_size(secrets, SESSION_MAX_FRAME_SIZE),
            now,
            snappy_after_hello: true,
            hello_sent: false,
        };
        peer.drain();
        let mut status = LocalStatus {
            version,
            network_id: NETWORK_ID,
            fork_schedule: &schedule(),
            head_number: 0,
            head_time: 0,
        }
        .status();
        status.announce_type = Some(AnnounceType::Signed);
        peer.advance(version, stage, status);
        peer
    }

    /// Plays the server against a client session: answers its auth with a real `Recipient`,
    /// then goes on to `stage`.
    pub fn with_client_session(version: LesVersion, stage: Stage) -> Self {
        let now = Timestamp::from_millis(1_000);
        let mut session = connecting_session(AnnounceType::Signed, LesVersion::ALL.to_vec(), now);
        let auth = session.poll_transmit().expect("the session starts with its auth");
        let mut recipient =
            Recipient::with_parts(peer_key(), fixed_key(0x56), B256::repeat_byte(0x67));
        recipient.read_auth(&auth).expect("the session's auth is valid");
        let ack = recipient.ack_packet().expect("ack packet");
        let secrets = recipient.finish().expect("secrets");
        session.handle_input(&ack, now);
        let mut peer = Self {
            session,
            codec: FrameCodec::with_max_frame_size(secrets, SESSION_MAX_FRAME_SIZE),
            now,
            snappy_after_hello: true,
            hello_sent: false,
        };
        peer.drain();
        let local = LocalStatus {
            version,
            network_id: NETWORK_ID,
            fork_schedule: &schedule(),
            head_number: 0,
            head_time: 0,
        };
        let mut status: Status = local.status();
        let head = server_head();
        let flow = FlowParams::geth_default();
        status.head_hash = Some(head.hash);
        status.head_number = Some(head.number);
        status.head_td = Some(head.td);
        status.serve_headers = true;
        status.serve_chain_since = Some(0);
        status.serve_state_since = Some(0);
        status.tx_relay = true;
        if version >= LesVersion::Les4 {
            status.recent_tx_lookup = Some(0);
        }
        status.buffer_limit = Some(flow.buffer_limit);
        status.min_recharge = Some(flow.min_recharge);
        status.request_costs =
            Some(flow.costs.entries().filter(|entry| version.supports(entry.code)).collect());
        peer.advance(version, stage, status);
        peer
    }

    fn advance(&mut self, version: LesVersion, stage: Stage, status: Status) {
        if stage == Stage::AwaitHello {
            return;
        }
        let hello = Hello::new(
            "fuzz-peer/v0",
            vec![Capability::new(les::msg::CAPABILITY_NAME, version.number()).expect("valid")],
            peer_key().public_key(),
        );
        let data = hello.encode().expect("hello encodes");
        self.send_frame_data(&p2p::encode_frame_data(p2p::HELLO_MSG, &data));
        self.hello_sent = true;
        if stage == Stage::AwaitStatus {
            return;
        }
        let payload = LesMessage::Status(Box::new(status)).encode();
        self.send_message(p2p::BASE_PROTOCOL_LENGTH + les::msg::codes::STATUS, &payload);
    }

    /// Encrypts `frame_data` as one frame and feeds it to the session, in chunks of `chunk`.
    pub fn send_frame_data_chunked(&mut self, frame_data: &[u8], chunk: usize) {
        let Ok(frame) = self.codec.write_frame(frame_data) else {
            return;
        };
        for piece in frame.chunks(chunk.max(1)) {
            self.session.handle_input(piece, self.now);
        }
        self.drain();
    }

    /// Encrypts `frame_data` as one frame and feeds it to the session.
    pub fn send_frame_data(&mut self, frame_data: &[u8]) {
        self.send_frame_data_chunked(frame_data, usize::MAX);
    }

    /// Sends a message by wire ID, compressing its data as the session expects.
    pub fn send_message(&mut self, wire_id: u64, data: &[u8]) {
        let data = if self.hello_sent && self.snappy_after_hello {
            match p2p::compress(data) {
                Ok(compressed) => compressed,
                Err(_) => return,
            }
        } else {
            data.to_vec()
        };
        self.send_frame_data(&p2p::encode_frame_data(wire_id, &data));
    }

    /// Takes everything the session wants to say, reading its frames with our codec (which
    /// keeps our ingress MAC in step) and dropping events.
    pub fn drain(&mut self) {
        while let Some(bytes) = self.session.poll_transmit() {
            // Errors here would be the session's bug, but robustness is all we check.
            let _ = self.codec.read_frames(&bytes);
        }
        while self.session.poll_event().is_some() {}
    }

    /// Moves the clock and runs the session's timers.
    pub fn tick(&mut self, by_millis: u64) {
        self.now = self.now.saturating_add(std::time::Duration::from_millis(by_millis));
        self.session.handle_timeout(self.now);
        self.drain();
    }
}
