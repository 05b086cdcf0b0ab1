//! A client session and a server session driven against each other in memory: RLPx
//! handshake, Hello, Status, a signed announcement accepted by the ULC rule, a header
//! request answered and verified; then flow control (Stop/Resume), limits, timeouts,
//! and adversaries (a forged announcement signature, garbage on the wire).

use alloy_consensus::Header;
use alloy_primitives::{B256, U256, keccak256};
use les::announce::{AnnouncedHead, SignedAnnouncement};
use les::chain::SealedHeader;
use les::crypto::NodeKey;
use les::flow::{CostTable, FlowParams};
use les::msg::{
    AnnounceType, BlockHashOrNumber, BlockHeaders, ForkSchedule, GetBlockHeaders, LesMessage,
    LesVersion,
};
use les::p2p::DisconnectReason;
use les::session::{
    ClientConfig, Event, Initiative, RemotePeer, Role, ServeOffer, ServerConfig, Session,
    SessionConfig, SessionError,
};
use les::time::Timestamp;
use les::ulc::{Ulc, UlcConfig, UlcEvent};
use std::time::Duration;

const NETWORK_ID: u64 = 31337;

fn schedule() -> ForkSchedule {
    ForkSchedule::new(keccak256(b"test genesis"), 0, [], [])
}

/// A small chain of real (if synthetic) headers linked by parent hash.
fn chain(len: u64) -> Vec<SealedHeader> {
    let mut out: Vec<SealedHeader> = Vec::new();
    for number in 0..len {
        let header = Header {
            parent_hash: out.last().map_or(B256::ZERO, |h| h.hash()),
            number,
            gas_limit: 30_000_000,
            timestamp: 1_700_000_000 + number * 12,
            base_fee_per_gas: Some(7),
            ..Default::default()
        };
        out.push(SealedHeader::seal(header));
    }
    out
}

fn config(key: NodeKey, role: Role, versions: Vec<LesVersion>) -> SessionConfig {
    SessionConfig { versions, ..SessionConfig::new(key, role, NETWORK_ID, schedule()) }
}

fn client_role(announce_type: AnnounceType) -> Role {
    Role::Client(ClientConfig { announce_type, trusted: true })
}

fn server_role(head: AnnouncedHead, flow: FlowParams) -> Role {
    Role::Server(ServerConfig { head, flow, offer: ServeOffer::ARCHIVE })
}

struct Pair {
    client: Session,
    server: Session,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    now: Timestamp,
}

impl Pair {
    fn new(client: SessionConfig, server: SessionConfig) -> Self {
        let now = Timestamp::from_millis(1_000);
        let server_public = server.key.public_key();
        let client = Session::connect(client, server_public, now).expect("client starts");
        let server = Session::accept(server, now).expect("server starts");
        Self { client, server, client_events: vec![], server_events: vec![], now }
    }

    /// Moves bytes both ways (in chunks of `chunk` bytes) until nothing is left to send.
    fn pump_chunked(&mut self, chunk: usize) {
        loop {
            let mut moved = false;
            while let Some(bytes) = self.client.poll_transmit() {
                moved = true;
                for piece in bytes.chunks(chunk) {
                    self.server.handle_input(piece, self.now);
                }
            }
            while let Some(bytes) = self.server.poll_transmit() {
                moved = true;
                for piece in bytes.chunks(chunk) {
                    self.client.handle_input(piece, self.now);
                }
            }
            while let Some(event) = self.client.poll_event() {
                self.client_events.push(event);
            }
            while let Some(event) = self.server.poll_event() {
                self.server_events.push(event);
            }
            if !moved {
                return;
            }
        }
    }

    fn pump(&mut self) {
        self.pump_chunked(usize::MAX);
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.pump();
    }
}

fn default_flow() -> FlowParams {
    FlowParams::geth_default()
}

fn established_pair(
    announce_type: AnnounceType,
    flow: FlowParams,
) -> (Pair, NodeKey, Vec<SealedHeader>) {
    let headers = chain(8);
    let tip = headers.last().expect("chain has headers");
    let head = AnnouncedHead { hash: tip.hash(), number: tip.number(), td: U256::from(1u64) };
    let server_key = NodeKey::random().expect("rng");
    let mut pair = Pair::new(
        config(
            NodeKey::random().expect("rng"),
            client_role(announce_type),
            LesVersion::ALL.to_vec(),
        ),
        config(server_key.clone(), server_role(head, flow), LesVersion::ALL.to_vec()),
    );
    pair.pump();
    assert!(pair.client.is_established(), "client events: {:?}", pair.client_events);
    assert!(pair.server.is_established(), "server events: {:?}", pair.server_events);
    (pair, server_key, headers)
}

fn serve_headers(pair: &mut Pair, headers: &[SealedHeader]) {
    let events = std::mem::take(&mut pair.server_events);
    for event in events {
        let Event::Request { ticket, request } = event else { continue };
        let LesMessage::GetBlockHeaders(query) = request else {
            panic!("unexpected request {request:?}")
        };
        let BlockHashOrNumber::Number(start) = query.origin else { panic!("by number only") };
        let served: Vec<_> = headers
            .iter()
            .skip(usize::try_from(start).expect("small"))
            .take(usize::try_from(query.max_headers).expect("small"))
            .map(|h| h.encoded().into())
            .collect();
        let reply = LesMessage::BlockHeaders(BlockHeaders {
            request_id: query.request_id,
            buffer_value: 0,
            headers: served,
        });
        pair.server.reply(ticket, reply, 100_000, pair.now).expect("reply sent");
    }
    pair.pump();
}

#[test]
fn handshake_status_signed_announcement_and_header_request() {
    let (mut pair, server_key, headers) = established_pair(AnnounceType::Signed, default_flow());

    // Both sides report the peer, authenticated by RLPx, and the negotiated les/4.
    let Some(Event::Established(info)) = pair.client_events.first() else {
        panic!("client not established: {:?}", pair.client_events)
    };
    assert_eq!(info.node_id, server_key.node_id());
    assert_eq!(info.version, LesVersion::Les4);
    let RemotePeer::Server(server) = &info.remote else { panic!("expected a server") };
    assert_eq!(server.head_number, 7);
    assert!(!server.announce_only);
    let Some(Event::Established(info)) = pair.server_events.first() else {
        panic!("server not established")
    };
    assert!(matches!(
        info.remote,
        RemotePeer::Client(les::msg::RemoteClient::LightClient {
            announce_type: AnnounceType::Signed
        })
    ));
    pair.client_events.clear();
    pair.server_events.clear();

    // The server signs its head once and announces it; the client checks the signature
    // against the RLPx-authenticated node ID and the ULC rule accepts the head (1 of 1).
    let tip = headers.last().expect("tip");
    let head = AnnouncedHead { hash: tip.hash(), number: tip.number(), td: U256::from(1u64) };
    let announcement = head.signed(&server_key);
    pair.server.announce(&announcement, 0).expect("announce");
    pair.pump();
    let [Event::Announcement { announce, signed: Some(signed) }] = pair.client_events.as_slice()
    else {
        panic!("expected one signed announcement: {:?}", pair.client_events)
    };
    assert_eq!(announce.head_hash, tip.hash());
    let mut ulc = Ulc::new(UlcConfig::new([server_key.node_id()], 75).expect("config"));
    let events = ulc
        .on_announcement(server_key.node_id(), signed.head, &signed.signature, announce.reorg_depth)
        .expect("trusted announcement");
    assert!(matches!(events.as_slice(), [UlcEvent::HeadAccepted { .. }]));
    assert_eq!(ulc.accepted_head().map(|h| h.head().hash), Some(tip.hash()));
    pair.client_events.clear();

    // A header request within the buffer; the reply carries the server's buffer value and
    // the headers verify: the tip hashes to the accepted head, the rest chain back to it.
    let request = LesMessage::GetBlockHeaders(GetBlockHeaders {
        request_id: 42,
        origin: BlockHashOrNumber::Number(0),
        max_headers: 8,
        skip: 0,
        reverse: false,
    });
    let before = pair.client.server_buffer_estimate(pair.now).expect("client side");
    pair.client.send_request(request, pair.now).expect("within budget");
    let after_send = pair.client.server_buffer_estimate(pair.now).expect("client side");
    assert_eq!(before - after_send, 300_000 + 8 * 60_000, "max cost charged locally");
    pair.pump();
    serve_headers(&mut pair, &headers);
    let [Event::Reply(LesMessage::BlockHeaders(reply))] = pair.client_events.as_slice() else {
        panic!("expected the header reply: {:?}", pair.client_events)
    };
    assert_eq!(reply.request_id, 42);
    // The server refunded max cost - real cost; the reply says so and the estimate follows.
    assert_eq!(reply.buffer_value, default_flow().buffer_limit - 100_000);
    let received: Vec<SealedHeader> =
        reply.headers.iter().map(|rlp| SealedHeader::decode(rlp).expect("valid header")).collect();
    let accepted = ulc.accepted_head().expect("head").head().hash;
    let tip = received.last().expect("tip");
    assert_eq!(tip.hash(), accepted);
    let parents: Vec<SealedHeader> = received.iter().rev().skip(1).cloned().collect();
    les::chain::verify_chain(&parents, tip).expect("chain links to the accepted head");
}

#[test]
fn byte_at_a_time_delivery_reaches_the_same_state() {
    let headers = chain(2);
    let tip = headers.last().expect("tip");
    let head = AnnouncedHead { hash: tip.hash(), number: 1, td: U256::ZERO };
    let server_key = NodeKey::random().expect("rng");
    let mut pair = Pair::new(
        config(
            NodeKey::random().expect("rng"),
            client_role(AnnounceType::Simple),
            vec![LesVersion::Les4],
        ),
        config(server_key, server_role(head, default_flow()), LesVersion::ALL.to_vec()),
    );
    pair.pump_chunked(1);
    assert!(pair.client.is_established() && pair.server.is_established());
}

#[test]
fn les2_is_negotiated_when_the_server_speaks_only_les2() {
    let head = AnnouncedHead { hash: B256::repeat_byte(1), number: 1, td: U256::ZERO };
    let mut pair = Pair::new(
        config(
            NodeKey::random().expect("rng"),
            client_role(AnnounceType::Simple),
            LesVersion::ALL.to_vec(),
        ),
        config(
            NodeKey::random().expect("rng"),
            server_role(head, default_flow()),
            vec![LesVersion::Les2],
        ),
    );
    pair.pump();
    assert_eq!(pair.client.version(), Some(LesVersion::Les2));
    assert!(pair.client.is_established());
}

#[test]
fn no_shared_les_version_disconnects_as_useless_peer() {
    let head = AnnouncedHead { hash: B256::repeat_byte(1), number: 1, td: U256::ZERO };
    let mut pair = Pair::new(
        config(
            NodeKey::random().expect("rng"),
            client_role(AnnounceType::Simple),
            vec![LesVersion::Les4],
        ),
        config(
            NodeKey::random().expect("rng"),
            server_role(head, default_flow()),
            vec![LesVersion::Les2],
        ),
    );
    pair.pump();
    assert!(pair.client.is_closed() && pair.server.is_closed());
    assert!(pair.client_events.iter().any(|e| matches!(
        e,
        Event::Disconnected { reason: DisconnectReason::UselessPeer, by: Initiative::Local, .. }
    )));
}

#[test]
fn forged_announcement_signature_disconnects_the_server() {
    let (mut pair, _server_key, headers) = established_pair(AnnounceType::Signed, default_flow());
    pair.client_events.clear();
    // A lying server signs with a key that is not its node key.
    let impostor = NodeKey::random().expect("rng");
    let tip = headers.last().expect("tip");
    let head = AnnouncedHead { hash: tip.hash(), number: tip.number(), td: U256::from(1u64) };
    let forged: SignedAnnouncement = head.signed(&impostor);
    pair.server.announce(&forged, 0).expect("sent");
    pair.pump();
    assert!(pair.client.is_closed());
    assert!(
        pair.client_events.iter().any(|e| matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::SubprotocolError,
                error: Some(SessionError::AnnouncementSignature(_)),
                ..
            }
        )),
        "{:?}",
        pair.client_events
    );
    // The server learns why.
    assert!(pair.server_events.iter().any(|e| matches!(
        e,
        Event::Disconnected {
            reason: DisconnectReason::SubprotocolError,
            by: Initiative::Remote,
            ..
        }
    )));
}

fn header_query(request_id: u64) -> LesMessage {
    LesMessage::GetBlockHeaders(GetBlockHeaders {
        request_id,
        origin: BlockHashOrNumber::Number(0),
        max_headers: 8,
        skip: 0,
        reverse: false,
    })
}

/// Drains the server's buffer with one request answered at its full cost `max`, then has
/// the client send another with a clock running 10 s ahead of the server's: the client
/// believes its buffer has recharged, the server (at its own time) sees an overrun. The
/// second request is left queued in the client's transmit buffer.
fn overrun_from_a_fast_client_clock(pair: &mut Pair, max: u64) {
    pair.client.send_request(header_query(1), pair.now).expect("fits");
    pair.pump();
    let Some(Event::Request { ticket, .. }) = pair.server_events.pop() else { panic!("request") };
    let reply =
        LesMessage::BlockHeaders(BlockHeaders { request_id: 1, buffer_value: 0, headers: vec![] });
    pair.server.reply(ticket, reply, max, pair.now).expect("reply");
    pair.pump();
    let client_now = pair.now.saturating_add(Duration::from_secs(10));
    pair.client.send_request(header_query(2), client_now).expect("client believes it fits");
}

#[test]
fn client_estimate_refuses_what_the_buffer_cannot_take() {
    let costs = CostTable::geth_default();
    let max = costs.max_cost(les::msg::codes::GET_BLOCK_HEADERS, 8).expect("cost");
    let flow = FlowParams { buffer_limit: max + max / 2, min_recharge: 1_000, costs };
    let (mut pair, _key, _headers) = established_pair(AnnounceType::Simple, flow);
    pair.client.send_request(header_query(1), pair.now).expect("first fits");
    assert!(matches!(
        pair.client.send_request(header_query(2), pair.now),
        Err(les::session::CallError::Budget(_))
    ));
    pair.pump();
    let requests = pair.server_events.iter().filter(|e| matches!(e, Event::Request { .. }));
    assert_eq!(requests.count(), 1);
}

#[test]
fn server_freezes_a_client_that_overruns_and_resumes_it() {
    // BL = 1.5 requests. The server answers the first request at full cost, leaving 0.5.
    let costs = CostTable::geth_default();
    let max = costs.max_cost(les::msg::codes::GET_BLOCK_HEADERS, 8).expect("cost");
    let mrr = 1_000; // cost units per ms: 0.5 request recharges in about 2.3 s
    let flow = FlowParams { buffer_limit: max + max / 2, min_recharge: mrr, costs };
    let (mut pair, _key, _headers) = established_pair(AnnounceType::Simple, flow);
    pair.client_events.clear();
    pair.server_events.clear();
    overrun_from_a_fast_client_clock(&mut pair, max);
    while let Some(bytes) = pair.client.poll_transmit() {
        pair.server.handle_input(&bytes, pair.now);
    }
    let events: Vec<Event> = std::iter::from_fn(|| pair.server.poll_event()).collect();
    assert!(matches!(events.as_slice(), [Event::ClientFrozen]), "{events:?}");
    assert!(pair.server.client_buffer().expect("server side").is_frozen());
    while let Some(bytes) = pair.server.poll_transmit() {
        pair.client.handle_input(&bytes, pair.now);
    }
    let events: Vec<Event> = std::iter::from_fn(|| pair.client.poll_event()).collect();
    assert!(matches!(events.as_slice(), [Event::Stopped]), "{events:?}");

    // A request sent while frozen is dropped without a reply (not an error).
    let resume_at = pair.server.poll_timeout().expect("resume scheduled");
    assert!(resume_at > pair.now);
    // Time passes; once the buffer is back above BL/8 after the freeze delay, Resume.
    pair.advance(Duration::from_secs(3));
    assert!(!pair.server.client_buffer().expect("server side").is_frozen());
    assert!(pair.server_events.iter().any(|e| matches!(e, Event::ClientResumed)));
    let resumed = pair.client_events.iter().find_map(|e| match e {
        Event::Resumed { buffer_value } => Some(*buffer_value),
        _ => None,
    });
    let buffer_value = resumed.expect("client saw Resume");
    assert!(buffer_value > (max + max / 2) / 8);
    // And the client may send again.
    pair.client.send_request(header_query(3), pair.now).expect("resumed");
}

#[test]
fn an_overloaded_server_freezes_a_client_and_drops_its_request() {
    let costs = CostTable::geth_default();
    let max = costs.max_cost(les::msg::codes::GET_BLOCK_HEADERS, 8).expect("cost");
    let flow = FlowParams { buffer_limit: 4 * max, min_recharge: 1_000, costs };
    let (mut pair, _key, _headers) = established_pair(AnnounceType::Simple, flow);
    pair.client_events.clear();
    pair.server_events.clear();
    pair.client.send_request(header_query(1), pair.now).expect("fits");
    pair.pump();
    let Some(Event::Request { ticket, .. }) = pair.server_events.pop() else { panic!("request") };
    // The driver cannot serve it (overloaded): freeze the client, drop the request.
    assert!(pair.server.freeze_client(pair.now));
    pair.server.drop_request(ticket, pair.now);
    let buffer = pair.server.client_buffer().expect("server side");
    assert!(buffer.is_frozen());
    assert_eq!(buffer.outstanding(), 0, "the dropped request is no longer outstanding");
    pair.pump();
    assert!(pair.client_events.iter().any(|e| matches!(e, Event::Stopped)));
    assert!(pair.server_events.iter().any(|e| matches!(e, Event::ClientFrozen)));
    assert!(
        !pair.client_events.iter().any(|e| matches!(e, Event::Reply(_))),
        "a dropped request gets no reply"
    );
    // Resumed after the freeze delay, as after an overrun.
    pair.advance(Duration::from_secs(3));
    assert!(pair.client_events.iter().any(|e| matches!(e, Event::Resumed { .. })));
    assert!(!pair.server.client_buffer().expect("server side").is_frozen());
    // Only an established server session can freeze its peer.
    assert!(!pair.client.freeze_client(pair.now));
}

#[test]
fn les2_client_that_overruns_is_disconnected() {
    let costs = CostTable::geth_default();
    let max = costs.max_cost(les::msg::codes::GET_BLOCK_HEADERS, 8).expect("cost");
    let flow = FlowParams { buffer_limit: max + max / 2, min_recharge: 1_000, costs };
    let headers = chain(8);
    let head = AnnouncedHead { hash: headers[7].hash(), number: 7, td: U256::ZERO };
    let mut pair = Pair::new(
        config(
            NodeKey::random().expect("rng"),
            client_role(AnnounceType::Simple),
            vec![LesVersion::Les2],
        ),
        config(NodeKey::random().expect("rng"), server_role(head, flow), LesVersion::ALL.to_vec()),
    );
    pair.pump();
    overrun_from_a_fast_client_clock(&mut pair, max);
    pair.pump();
    assert!(pair.server.is_closed());
    assert!(pair.server_events.iter().any(|e| matches!(
        e,
        Event::Disconnected {
            reason: DisconnectReason::UselessPeer,
            error: Some(SessionError::BufferOverrun),
            ..
        }
    )));
}

#[test]
fn silence_times_out_and_pings_keep_a_live_peer() {
    let (mut pair, _key, _headers) = established_pair(AnnounceType::Simple, default_flow());
    // Pings every 15 s keep both sides alive well past the 30 s read timeout.
    for _ in 0..6 {
        pair.advance(Duration::from_secs(15));
    }
    assert!(pair.client.is_established() && pair.server.is_established());

    // A client whose server stops answering entirely: the server side is no longer pumped.
    let mut now = pair.now;
    for _ in 0..3 {
        now = now.saturating_add(Duration::from_secs(15));
        pair.client.handle_timeout(now);
    }
    assert!(pair.client.is_closed());
    let mut reasons = vec![];
    while let Some(event) = pair.client.poll_event() {
        reasons.push(event);
    }
    assert!(reasons.iter().any(|e| matches!(
        e,
        Event::Disconnected {
            reason: DisconnectReason::ReadTimeout,
            error: Some(SessionError::Timeout(_)),
            ..
        }
    )));
}

#[test]
fn handshake_timeout_when_the_peer_never_answers() {
    let key = NodeKey::random().expect("rng");
    let server = NodeKey::random().expect("rng");
    let now = Timestamp::from_millis(0);
    let mut client = Session::connect(
        config(key, client_role(AnnounceType::Simple), LesVersion::ALL.to_vec()),
        server.public_key(),
        now,
    )
    .expect("start");
    assert!(client.poll_transmit().is_some(), "auth packet queued");
    let deadline = client.poll_timeout().expect("deadline");
    assert_eq!(deadline.saturating_duration_since(now), les::session::RLPX_HANDSHAKE_TIMEOUT);
    client.handle_timeout(deadline);
    assert!(client.is_closed());
}

#[test]
fn garbage_after_the_handshake_is_a_protocol_error_not_a_panic() {
    let (mut pair, _key, _headers) = established_pair(AnnounceType::Simple, default_flow());
    pair.server_events.clear();
    pair.server.handle_input(&[0u8; 64], pair.now);
    assert!(pair.server.is_closed());
    assert!(pair.server.poll_event().is_some_and(|e| matches!(
        e,
        Event::Disconnected {
            reason: DisconnectReason::ProtocolError,
            error: Some(SessionError::Frame(_)),
            ..
        }
    )));
    // The Disconnect itself is still written out (framed with the intact egress stream).
    assert!(pair.server.poll_transmit().is_some());
}

#[test]
fn garbage_instead_of_an_auth_packet_is_refused() {
    let now = Timestamp::ZERO;
    let mut server = Session::accept(
        config(
            NodeKey::random().expect("rng"),
            server_role(
                AnnouncedHead { hash: B256::ZERO, number: 0, td: U256::ZERO },
                default_flow(),
            ),
            LesVersion::ALL.to_vec(),
        ),
        now,
    )
    .expect("start");
    let mut garbage = vec![0x01, 0x80];
    garbage.extend(std::iter::repeat_n(0xab, 0x180));
    server.handle_input(&garbage, now);
    assert!(server.is_closed());
    assert!(matches!(
        server.poll_event(),
        Some(Event::Disconnected { error: Some(SessionError::Handshake(_)), .. })
    ));
}

#[test]
fn requests_outside_limits_and_non_requests_are_refused_locally() {
    let (mut pair, _key, _headers) = established_pair(AnnounceType::Simple, default_flow());
    let too_many = LesMessage::GetBlockHeaders(GetBlockHeaders {
        request_id: 9,
        origin: BlockHashOrNumber::Number(0),
        max_headers: 193,
        skip: 0,
        reverse: false,
    });
    assert_eq!(
        pair.client.send_request(too_many.clone(), pair.now),
        Err(les::session::CallError::OutsideLimits)
    );
    // Replies are not requests.
    let reply =
        LesMessage::BlockHeaders(BlockHeaders { request_id: 1, buffer_value: 0, headers: vec![] });
    assert_eq!(
        pair.client.send_request(reply, pair.now),
        Err(les::session::CallError::NotARequest)
    );
    // Nothing reached the server.
    pair.pump();
    assert!(!pair.server_events.iter().any(|e| matches!(e, Event::Request { .. })));
}
