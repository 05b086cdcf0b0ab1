//! The service model on a real session pair in memory: `lespay/1` negotiated beside LES
//! and its messages carried both ways, and a server-side capacity change reaching the
//! client's buffer estimate (increase at once; decrease enforced 2 s later on the server).

use alloy_primitives::{U256, keccak256};
use les::announce::AnnouncedHead;
use les::crypto::NodeKey;
use les::flow::{BUF_LIMIT_RATIO, CostTable, FlowParams, PARAM_DECREASE_DELAY};
use les::msg::{
    AnnounceType, BlockHashOrNumber, ForkSchedule, GetBlockHeaders, LesMessage, LesVersion,
};
use les::pay::messages::{self, LESPAY, LespayMessage};
use les::session::{
    CallError, ClientConfig, Event, Role, ServeOffer, ServerConfig, Session, SessionConfig,
};
use les::time::Timestamp;
use std::time::Duration;

const MIN_CAP: u64 = 16_000;

fn flow(capacity: u64) -> FlowParams {
    FlowParams::for_capacity(capacity, CostTable::geth_default())
}

struct Pair {
    client: Session,
    server: Session,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    now: Timestamp,
}

impl Pair {
    fn new(announce_type: AnnounceType, client_lespay: bool, server_lespay: bool) -> Self {
        let schedule = ForkSchedule::new(keccak256(b"test genesis"), 0, [], []);
        let head = AnnouncedHead { hash: keccak256(b"head"), number: 7, td: U256::from(1u64) };
        let server_key = NodeKey::random().expect("rng");
        let server_role =
            Role::Server(ServerConfig { head, flow: flow(MIN_CAP), offer: ServeOffer::ARCHIVE });
        let client_role = Role::Client(ClientConfig { announce_type, trusted: true });
        let mut server =
            SessionConfig::new(server_key.clone(), server_role, 31337, schedule.clone());
        let mut client =
            SessionConfig::new(NodeKey::random().expect("rng"), client_role, 31337, schedule);
        if server_lespay {
            server.extra_capabilities.push(messages::capability());
        }
        if client_lespay {
            client.extra_capabilities.push(messages::capability());
        }
        let now = Timestamp::from_millis(1_000);
        let client = Session::connect(client, server_key.public_key(), now).expect("connect");
        let server = Session::accept(server, now).expect("accept");
        let mut pair = Self { client, server, client_events: vec![], server_events: vec![], now };
        pair.pump();
        assert!(pair.client.is_established(), "{:?}", pair.client_events);
        assert!(pair.server.is_established(), "{:?}", pair.server_events);
        pair
    }

    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(bytes) = self.client.poll_transmit() {
                moved = true;
                self.server.handle_input(&bytes, self.now);
            }
            while let Some(bytes) = self.server.poll_transmit() {
                moved = true;
                self.client.handle_input(&bytes, self.now);
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

    fn advance(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.pump();
    }

    fn client_params(&self) -> (u64, u64) {
        let params = self.client.server_buffer().expect("client side").params();
        (params.buffer_limit, params.min_recharge)
    }

    fn server_params(&self) -> (u64, u64) {
        let params = self.server.client_buffer().expect("server side").params();
        (params.buffer_limit, params.min_recharge)
    }

    fn no_disconnect(&self) {
        for event in self.client_events.iter().chain(&self.server_events) {
            assert!(!matches!(event, Event::Disconnected { .. }), "{event:?}");
        }
    }
}

fn one_header_request(id: u64) -> LesMessage {
    LesMessage::GetBlockHeaders(GetBlockHeaders {
        request_id: id,
        origin: BlockHashOrNumber::Number(0),
        max_headers: 1,
        skip: 0,
        reverse: false,
    })
}

#[test]
fn capacity_up_and_down_reaches_the_client_estimate() {
    for announce_type in [AnnounceType::None, AnnounceType::Simple, AnnounceType::Signed] {
        let mut pair = Pair::new(announce_type, false, false);
        let (bl_min, bl_big) = (MIN_CAP * BUF_LIMIT_RATIO, 64_000 * BUF_LIMIT_RATIO);
        assert_eq!(pair.client_params(), (bl_min, MIN_CAP));
        pair.client_events.clear();

        // Increase: both sides at once; the full estimate grows by the difference.
        pair.server.update_capacity(bl_big, 64_000, pair.now).expect("increase");
        assert_eq!(pair.server_params(), (bl_big, 64_000));
        pair.pump();
        assert_eq!(pair.client_params(), (bl_big, 64_000), "{announce_type:?}");
        assert_eq!(pair.client.server_buffer_estimate(pair.now), Some(bl_big));
        // A parameter update is no head: no Announcement event, no disconnect.
        assert!(pair.client_events.is_empty(), "{:?}", pair.client_events);
        pair.no_disconnect();

        // The same parameters again: nothing is sent.
        pair.server.update_capacity(bl_big, 64_000, pair.now).expect("no-op");
        assert!(pair.server.poll_transmit().is_none());

        // Spend some of the buffer, so the decrease has something to clip.
        pair.client.send_request(one_header_request(1), pair.now).expect("request fits");
        pair.pump();
        assert!(pair.server_events.iter().any(|e| matches!(e, Event::Request { .. })));
        let before = pair.client.server_buffer_estimate(pair.now).expect("estimate");
        assert!(before < bl_big);

        // Decrease: the client lowers its estimate now, the server only after 2 s.
        let decided = pair.now;
        pair.server.update_capacity(bl_min, MIN_CAP, pair.now).expect("decrease");
        pair.pump();
        assert_eq!(pair.client_params(), (bl_min, MIN_CAP));
        assert_eq!(pair.client.server_buffer_estimate(pair.now), Some(bl_min));
        assert_eq!(pair.server_params(), (bl_big, 64_000), "server keeps the old MRR for now");
        let due = decided.saturating_add(PARAM_DECREASE_DELAY);
        assert_eq!(pair.server.client_buffer().and_then(|b| b.next_capacity_change()), Some(due));

        // Just before the delay a request still finds the old parameters; after it, the new.
        pair.advance(PARAM_DECREASE_DELAY - Duration::from_millis(100));
        pair.client.send_request(one_header_request(2), pair.now).expect("request");
        pair.pump();
        assert_eq!(pair.server_params(), (bl_big, 64_000));
        pair.advance(Duration::from_millis(200));
        pair.client.send_request(one_header_request(3), pair.now).expect("request");
        pair.pump();
        assert_eq!(pair.server_params(), (bl_min, MIN_CAP));
        assert_eq!(pair.server.client_buffer().and_then(|b| b.next_capacity_change()), None);
        let requests =
            pair.server_events.iter().filter(|e| matches!(e, Event::Request { .. })).count();
        assert_eq!(requests, 3, "every request was accepted");
        pair.no_disconnect();
    }
}

#[test]
fn update_capacity_is_a_server_call() {
    let mut pair = Pair::new(AnnounceType::Signed, false, false);
    assert_eq!(pair.client.update_capacity(1, 1, pair.now), Err(CallError::WrongRole));
    let key = NodeKey::random().expect("rng");
    let role = Role::Server(ServerConfig {
        head: AnnouncedHead { hash: keccak256(b"h"), number: 0, td: U256::ZERO },
        flow: flow(MIN_CAP),
        offer: ServeOffer::ARCHIVE,
    });
    let schedule = ForkSchedule::new(keccak256(b"test genesis"), 0, [], []);
    let mut fresh =
        Session::accept(SessionConfig::new(key, role, 1, schedule), pair.now).expect("accept");
    assert_eq!(fresh.update_capacity(1, 1, pair.now), Err(CallError::NotEstablished));
}

#[test]
fn lespay_is_negotiated_beside_les_and_carries_messages_both_ways() {
    let mut pair = Pair::new(AnnounceType::Signed, true, true);
    let Some(Event::Established(info)) = pair.client_events.first() else {
        panic!("{:?}", pair.client_events)
    };
    assert_eq!(info.version, LesVersion::Les4);
    let lespay = info.capabilities.iter().find(|c| c.name == LESPAY).expect("lespay shared");
    assert_eq!((lespay.version, lespay.message_count), (1, 12));
    pair.client_events.clear();
    pair.server_events.clear();

    let (code, payload) = LespayMessage::BalanceQuery { req_id: 42 }.encode();
    pair.client.send_capability_message(LESPAY, code, &payload).expect("send");
    pair.pump();
    let [Event::CapabilityMessage { capability, code, payload }] = pair.server_events.as_slice()
    else {
        panic!("{:?}", pair.server_events)
    };
    assert_eq!(capability, LESPAY);
    assert_eq!(
        LespayMessage::decode(*code, payload),
        Ok(LespayMessage::BalanceQuery { req_id: 42 })
    );

    let reply = LespayMessage::error(42, messages::ErrorCode::NotSynced, "syncing");
    let (code, payload) = reply.encode();
    pair.server.send_capability_message(LESPAY, code, &payload).expect("send");
    pair.pump();
    let [Event::CapabilityMessage { code, payload, .. }] = pair.client_events.as_slice() else {
        panic!("{:?}", pair.client_events)
    };
    assert_eq!(LespayMessage::decode(*code, payload), Ok(reply));
    // Codes outside the capability are refused locally.
    assert!(matches!(
        pair.client.send_capability_message(LESPAY, messages::MESSAGE_COUNT, payload),
        Err(CallError::Capability(_))
    ));
}

#[test]
fn a_server_without_lespay_is_still_a_les_server() {
    let mut pair = Pair::new(AnnounceType::Signed, true, false);
    let Some(Event::Established(info)) = pair.client_events.first() else {
        panic!("{:?}", pair.client_events)
    };
    assert!(info.capabilities.iter().all(|c| c.name != LESPAY));
    let (code, payload) = LespayMessage::PriceQuery { req_id: 1 }.encode();
    assert!(matches!(
        pair.client.send_capability_message(LESPAY, code, &payload),
        Err(CallError::Capability(_))
    ));
    pair.advance(Duration::from_secs(1));
    pair.no_disconnect();
}
