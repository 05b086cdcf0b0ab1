//! The service model in a running lesd: a real anvil, an in-process lesd with a small total
//! capacity and the admin endpoint, and native clients that speak `lespay/1` beside LES over
//! TCP. Checks admission at the minimum capacity, rejection and kicks, operator credit over
//! the admin HTTP API, capacity requests reaching the client's flow control, prices that
//! follow demand, charges over time, balances across a restart, that malformed or spammed
//! lespay requests get Error replies while the server keeps serving, and that a busy lesd
//! serves a paying client's requests before free clients' queued ones.

#[path = "common/burst.rs"]
mod burst;
mod common;
mod lesd_client;
#[path = "common/pay/mod.rs"]
mod pay_support;

use alloy_primitives::B256;
use burst::{median, replies, send_proofs};
use common::{Anvil, temp_dir};
use les::crypto::{NodeId, NodeKey};
use les::p2p::DisconnectReason;
use les::pay::messages::{self, Balance, ErrorCode, LESPAY, LespayMessage, PriorityClass, codes};
use les::session::Event;
use lesd::daemon::{Daemon, DaemonConfig};
use lesd::node::default_serving_slots;
use lesd::pay::service::{FreeIdRule, ServiceConfig};
use lesd_client::{ChainInfo, POLL, WAIT};
use pay_support::client::{PayChain, PayClient};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// geth's minimum capacity with its default cost table.
const MIN_CAP: u64 = 16_000;

impl PayClient {
    /// Connects to the in-process `daemon` with node key `key`.
    async fn connect(daemon: &Daemon, key: NodeKey) -> Result<Self, DisconnectReason> {
        let chain = ChainInfo::of(daemon);
        let chain = PayChain { network_id: chain.network_id, schedule: chain.schedule };
        Self::connect_to(&daemon.enode(), &chain, key).await
    }
}

/// Starts lesd with the service model configured by `service` and an admin endpoint.
async fn start(
    anvil: &Anvil,
    datadir: &Path,
    key: &NodeKey,
    max_clients: usize,
    service: ServiceConfig,
) -> Daemon {
    start_with_slots(anvil, datadir, key, max_clients, default_serving_slots(), service).await
}

/// [`start`] with `serving_slots` requests served at once.
async fn start_with_slots(
    anvil: &Anvil,
    datadir: &Path,
    key: &NodeKey,
    max_clients: usize,
    serving_slots: usize,
    service: ServiceConfig,
) -> Daemon {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let service = ServiceConfig { admin: Some(any), free_id: FreeIdRule::NodeId, ..service };
    Daemon::start_with(
        DaemonConfig {
            upstream: anvil.url().to_string(),
            datadir: Some(datadir.to_path_buf()),
            key: key.clone(),
            listen: any,
            ws: None,
            metrics: None,
            max_clients,
            serving_slots,
            poll_interval: POLL,
        },
        service,
    )
    .await
    .expect("lesd starts")
}

/// One admin JSON-RPC call; the whole response object.
async fn admin(daemon: &Daemon, method: &str, params: Value) -> Value {
    pay_support::client::admin_call(daemon.admin_addr().expect("admin endpoint"), method, params)
        .await
}

async fn admin_ok(daemon: &Daemon, method: &str, params: Value) -> Value {
    let response = admin(daemon, method, params).await;
    assert!(response.get("error").is_none(), "{method}: {response}");
    response["result"].clone()
}

fn id_hex(id: NodeId) -> String {
    id.to_string()
}

fn number(value: &Value) -> u64 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a decimal string: {value}"))
}

#[tokio::test]
async fn free_clients_get_the_minimum_and_a_third_is_refused() {
    let anvil = Anvil::spawn();
    let dir = temp_dir("pay-free");
    let key = NodeKey::random().expect("rng");
    let service = ServiceConfig { total_capacity: Some(2 * MIN_CAP), ..ServiceConfig::default() };
    let daemon = start(&anvil, &dir, &key, 10, service).await;

    let info = admin_ok(&daemon, "les_serverInfo", json!([])).await;
    assert_eq!(number(&info["minimumCapacity"]), MIN_CAP);
    assert_eq!(number(&info["totalCapacity"]), 2 * MIN_CAP);
    assert_eq!(info["receivers"], json!([]), "free-only by default");

    let mut a =
        PayClient::connect(&daemon, NodeKey::random().expect("rng")).await.expect("a admitted");
    let mut b =
        PayClient::connect(&daemon, NodeKey::random().expect("rng")).await.expect("b admitted");
    for client in [&mut a, &mut b] {
        let params = client.server_params();
        assert_eq!(params.min_recharge, MIN_CAP, "Status MRR is the pool's capacity");
        assert_eq!(params.buffer_limit, 6000 * MIN_CAP);
        let balance = client.balance().await;
        assert_eq!(balance.capacity, MIN_CAP);
        assert_eq!(balance.priority_class, PriorityClass::Free);
        assert_eq!(balance.pos, 0);
    }
    let prices = match a.call(|req_id| LespayMessage::PriceQuery { req_id }).await {
        LespayMessage::PriceReply { prices, .. } => prices,
        other => panic!("not a PriceReply: {other:?}"),
    };
    assert_eq!(prices.min_capacity, MIN_CAP);
    assert_eq!(prices.total_capacity, 2 * MIN_CAP);
    assert_eq!(prices.free_capacity, 0);
    assert!(prices.channel.is_none());

    // The pool is full of free clients with almost no debt: a free newcomer cannot outrank
    // them after the 3-minute connection bias.
    let third = PayClient::connect(&daemon, NodeKey::random().expect("rng")).await;
    assert_eq!(third.err(), Some(DisconnectReason::TooManyPeers));
    assert!(daemon.metrics().clients_rejected() >= 1);
    // The incumbents are still served.
    assert!(a.headers_served().await);
    assert!(b.headers_served().await);
    let info = admin_ok(&daemon, "les_serverInfo", json!([])).await;
    assert_eq!(info["activeCount"], json!(2));
    assert_eq!(number(&info["totalConnectedCapacity"]), 2 * MIN_CAP);

    // New prices are in force and advertised.
    let set = admin_ok(
        &daemon,
        "les_setPriceFactors",
        json!([{ "negative": { "time": 5, "capacity": "2000000000", "request": 1_000_000 } }]),
    )
    .await;
    assert_eq!(number(&set["negative"]["capacity"]), 2_000_000_000);
    assert_eq!(number(&set["positive"]["capacity"]), 1_000_000_000, "positive unchanged");
    let prices = match a.call(|req_id| LespayMessage::PriceQuery { req_id }).await {
        LespayMessage::PriceReply { prices, .. } => prices,
        other => panic!("not a PriceReply: {other:?}"),
    };
    assert_eq!((prices.neg_factors.time, prices.neg_factors.capacity), (5, 2_000_000_000));

    // Without the connection bias, a debt-free newcomer outranks incumbents that have run up
    // debt: it is admitted and the weakest incumbent is kicked.
    admin_ok(&daemon, "les_setConnectedBias", json!([0])).await;
    let info = admin_ok(&daemon, "les_serverInfo", json!([])).await;
    assert_eq!(info["connectedBias"], json!(0));
    let mut newcomer =
        PayClient::connect(&daemon, NodeKey::random().expect("rng")).await.expect("now admitted");
    assert!(newcomer.headers_served().await);
    let deadline = Instant::now() + WAIT;
    loop {
        let kicked =
            [&mut a, &mut b].into_iter().filter(|c| c.disconnect_reason().is_some()).count();
        if kicked == 1 {
            break;
        }
        assert!(kicked == 0 && Instant::now() < deadline, "exactly one incumbent kicked");
        a.pump(Duration::from_millis(20)).await;
        b.pump(Duration::from_millis(20)).await;
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn operator_credit_keeps_a_client_while_free_ones_are_kicked() {
    let anvil = Anvil::spawn();
    let dir = temp_dir("pay-kick");
    let key = NodeKey::random().expect("rng");
    let service = ServiceConfig { total_capacity: Some(2 * MIN_CAP), ..ServiceConfig::default() };
    let daemon = start(&anvil, &dir, &key, 10, service).await;
    let mut paid =
        PayClient::connect(&daemon, NodeKey::random().expect("rng")).await.expect("admitted");
    let mut free =
        PayClient::connect(&daemon, NodeKey::random().expect("rng")).await.expect("admitted");

    // Credit the first client through the admin API: idempotent by reference.
    let credit = json!([id_hex(paid.node_id), "1000000000000", "invoice-1"]);
    let first = admin_ok(&daemon, "les_addBalance", credit.clone()).await;
    assert_eq!(number(&first["old"]), 0);
    assert_eq!(number(&first["new"]), 1_000_000_000_000);
    let again = admin_ok(&daemon, "les_addBalance", credit).await;
    assert_eq!(again["duplicate"], json!(true));
    assert_eq!(number(&again["new"]), 1_000_000_000_000);
    // The client hears of its new class.
    let update = paid.lespay(|m| matches!(m, LespayMessage::CapacityUpdate { .. })).await;
    let LespayMessage::CapacityUpdate { capacity, balance } = update else { unreachable!() };
    assert_eq!(capacity, MIN_CAP);
    assert_eq!(balance.priority_class, PriorityClass::Paid);
    let standing = paid.balance().await;
    assert!(standing.pos > 0 && standing.pos <= 1_000_000_000_000, "{standing:?}");

    // A paying newcomer (credited before it connects) outranks the free client, which is
    // told and kicked; the paying incumbent stays.
    let newcomer_key = NodeKey::random().expect("rng");
    let newcomer_id = les::crypto::node_id(&newcomer_key.public_key());
    admin_ok(&daemon, "les_addBalance", json!([id_hex(newcomer_id), 1_000_000_000_000u64])).await;
    let mut newcomer =
        PayClient::connect(&daemon, newcomer_key).await.expect("paid newcomer admitted");
    let kick = free.lespay(|m| matches!(m, LespayMessage::CapacityUpdate { .. })).await;
    assert!(matches!(kick, LespayMessage::CapacityUpdate { capacity: 0, .. }), "{kick:?}");
    assert_eq!(free.disconnected(WAIT).await, DisconnectReason::TooManyPeers);
    assert!(daemon.metrics().clients_kicked() >= 1);
    paid.pump_for(Duration::from_millis(300)).await.expect("the paying client stays");
    assert!(paid.headers_served().await);
    assert!(newcomer.headers_served().await);
    assert_eq!(newcomer.balance().await.priority_class, PriorityClass::Paid);

    let clients = admin_ok(&daemon, "les_clientInfo", json!([[]])).await;
    let clients = clients.as_object().expect("map");
    assert_eq!(clients.len(), 2);
    assert!(clients.contains_key(&id_hex(paid.node_id)));
    assert!(clients.contains_key(&id_hex(newcomer_id)));
    daemon.shutdown().await;
}

#[tokio::test]
async fn capacity_requests_reach_flow_control_and_prices_follow_demand() {
    let anvil = Anvil::spawn();
    let dir = temp_dir("pay-capacity");
    let key = NodeKey::random().expect("rng");
    // Two clients at most, room for three minimum capacities: one spare.
    let service = ServiceConfig { total_capacity: Some(3 * MIN_CAP), ..ServiceConfig::default() };
    let daemon = start(&anvil, &dir, &key, 2, service).await;
    let mut a =
        PayClient::connect(&daemon, NodeKey::random().expect("rng")).await.expect("admitted");
    let b = PayClient::connect(&daemon, NodeKey::random().expect("rng")).await.expect("admitted");

    // A free client may not ask for more.
    let refused =
        a.call(|req_id| LespayMessage::CapacityRequest { req_id, capacity: 2 * MIN_CAP }).await;
    assert!(
        matches!(refused, LespayMessage::Error { code: ErrorCode::NotPriority, .. }),
        "{refused:?}"
    );

    // What a's tokens would buy: with b free, everything (the spare and b's share).
    let ladder = [0, 1_000_000_000_000];
    let before = a.capacity_query(&ladder).await;
    assert_eq!(before[0], MIN_CAP, "no tokens: free treatment");
    assert_eq!(before[1], 3 * MIN_CAP, "a payer squeezes a free client: {before:?}");

    // b becomes a big payer: the same tokens now buy less (b must be outranked).
    admin_ok(&daemon, "les_addBalance", json!([id_hex(b.node_id), "10000000000000"])).await;
    let after = a.capacity_query(&ladder).await;
    assert_eq!(after[0], MIN_CAP);
    assert!(after[1] < before[1], "price rose with demand: {before:?} -> {after:?}");
    assert_eq!(after[1], 2 * MIN_CAP, "the spare capacity only");

    // a pays and asks for the spare: granted, and a's session sees the new BL/MRR.
    admin_ok(&daemon, "les_addBalance", json!([id_hex(a.node_id), "1000000000000"])).await;
    let granted =
        a.call(|req_id| LespayMessage::CapacityRequest { req_id, capacity: 2 * MIN_CAP }).await;
    let LespayMessage::CapacityGranted { capacity, balance, .. } = granted else {
        panic!("not CapacityGranted: {granted:?}")
    };
    assert_eq!(capacity, 2 * MIN_CAP);
    assert_eq!(balance.capacity, 2 * MIN_CAP);
    let deadline = Instant::now() + WAIT;
    while a.server_params().min_recharge != 2 * MIN_CAP {
        assert!(Instant::now() < deadline, "parameter update not received");
        a.pump(Duration::from_millis(50)).await;
    }
    assert_eq!(a.server_params().buffer_limit, 6000 * 2 * MIN_CAP);
    // More than the pool has is not granted; the client keeps what it holds.
    let more =
        a.call(|req_id| LespayMessage::CapacityRequest { req_id, capacity: 10 * MIN_CAP }).await;
    assert!(
        matches!(more, LespayMessage::CapacityGranted { capacity, .. } if capacity == 2 * MIN_CAP),
        "{more:?}"
    );
    let via_admin =
        admin(&daemon, "les_setCapacity", json!([id_hex(a.node_id), 10 * MIN_CAP])).await;
    assert_eq!(via_admin["error"]["code"], json!(-32000), "{via_admin}");
    assert_eq!(number(&via_admin["error"]["data"]["max"]), 2 * MIN_CAP);

    // Back to the minimum: the update reaches the client too.
    let down = a.call(|req_id| LespayMessage::CapacityRequest { req_id, capacity: 0 }).await;
    assert!(
        matches!(down, LespayMessage::CapacityGranted { capacity, .. } if capacity == MIN_CAP),
        "{down:?}"
    );
    let deadline = Instant::now() + WAIT;
    while a.server_params().min_recharge != MIN_CAP {
        assert!(Instant::now() < deadline, "decrease not received");
        a.pump(Duration::from_millis(50)).await;
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn balances_are_charged_over_time_and_survive_a_restart() {
    let anvil = Anvil::spawn();
    let dir = temp_dir("pay-restart");
    let key = NodeKey::random().expect("rng");
    let service = ServiceConfig { total_capacity: Some(4 * MIN_CAP), ..ServiceConfig::default() };
    let daemon = start(&anvil, &dir, &key, 10, service.clone()).await;
    let client_key = NodeKey::random().expect("rng");
    let mut client = PayClient::connect(&daemon, client_key.clone()).await.expect("admitted");
    admin_ok(&daemon, "les_addBalance", json!([id_hex(client.node_id), "1000000000000"])).await;

    // Charged at the positive time/capacity price: MIN_CAP × 1e9 / 1e6 tokens per second.
    let rate = MIN_CAP * 1000;
    let sent_first = Instant::now();
    let first = client.balance().await.pos;
    let got_first = Instant::now();
    client.pump_for(Duration::from_millis(1500)).await.expect("connected");
    let sent_second = Instant::now();
    let second = client.balance().await.pos;
    let got_second = Instant::now();
    let charged = first - second;
    let at_least = rate as f64 * (sent_second - got_first).as_secs_f64();
    let at_most = rate as f64 * (got_second - sent_first).as_secs_f64() + 1.0;
    assert!(
        charged as f64 >= at_least && charged as f64 <= at_most,
        "charged {charged}, expected {at_least}..={at_most}"
    );

    // Served requests are charged at their real cost on top.
    assert!(client.headers_served().await);

    // Disconnect, read the balance (no charges while away), restart: the same balance.
    drop(client);
    let deadline = Instant::now() + WAIT;
    let id = id_hex(les::crypto::node_id(&client_key.public_key()));
    let before = loop {
        let info = admin_ok(&daemon, "les_clientInfo", json!([[id.clone()]])).await;
        if info[&id]["isConnected"] == json!(false) {
            break number(&info[&id]["balance"]);
        }
        assert!(Instant::now() < deadline, "still connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(before > 0 && before < second);
    daemon.shutdown().await;

    let daemon = start(&anvil, &dir, &key, 10, service).await;
    let info = admin_ok(&daemon, "les_clientInfo", json!([[id.clone()]])).await;
    assert_eq!(number(&info[&id]["balance"]), before, "the balance survived the restart");
    let log = admin_ok(&daemon, "les_paymentLog", json!([0, 10])).await;
    assert_eq!(log.as_array().map(Vec::len), Some(1), "{log}");
    assert_eq!(log[0]["receiver"], json!("operator"));
    let mut client = PayClient::connect(&daemon, client_key).await.expect("admitted again");
    let balance = client.balance().await;
    assert_eq!(balance.priority_class, PriorityClass::Paid);
    assert!(balance.pos <= before);
    daemon.shutdown().await;
}

#[tokio::test]
async fn malformed_and_spammed_lespay_requests_get_errors_and_the_server_keeps_serving() {
    let anvil = Anvil::spawn();
    let dir = temp_dir("pay-malformed");
    let key = NodeKey::random().expect("rng");
    let daemon = start(&anvil, &dir, &key, 10, ServiceConfig::default()).await;
    let mut client =
        PayClient::connect(&daemon, NodeKey::random().expect("rng")).await.expect("admitted");

    // [req_id 7, garbage]: Error 2 for request 7.
    client.send_raw(codes::BALANCE_QUERY, &[0xc3, 0x07, 0xff, 0xff]).await;
    let error = client.lespay(|m| matches!(m, LespayMessage::Error { .. })).await;
    assert!(
        matches!(error, LespayMessage::Error { req_id: 7, code: ErrorCode::BadProof, .. }),
        "{error:?}"
    );
    // Oversize: refused before decoding.
    client.send_raw(codes::PRICE_QUERY, &vec![0x80; messages::MAX_PAYLOAD_SIZE + 1]).await;
    let error = client.lespay(|m| matches!(m, LespayMessage::Error { .. })).await;
    assert!(matches!(error, LespayMessage::Error { code: ErrorCode::BadProof, .. }), "{error:?}");
    // A server-to-client message sent by a client.
    let reply_type = LespayMessage::BalanceReply {
        req_id: 9,
        balance: Balance { pos: 1, neg: 0, capacity: 1, priority_class: PriorityClass::Paid },
    };
    client.send(&reply_type).await;
    let error = client.lespay(|m| m.req_id() == Some(9)).await;
    assert!(matches!(error, LespayMessage::Error { code: ErrorCode::BadProof, .. }), "{error:?}");
    // A Pay to a server without receivers.
    let pay = client
        .call(|req_id| LespayMessage::Pay {
            req_id,
            receiver: "channel".into(),
            proof: vec![1, 2].into(),
        })
        .await;
    assert!(
        matches!(pay, LespayMessage::Error { code: ErrorCode::UnknownReceiver, .. }),
        "{pay:?}"
    );
    // Still served, both protocols.
    assert_eq!(client.balance().await.capacity, MIN_CAP);
    assert!(client.headers_served().await);

    // A flood: refused with Error 6, then disconnected; others are unaffected.
    let mut bystander =
        PayClient::connect(&daemon, NodeKey::random().expect("rng")).await.expect("admitted");
    for req_id in 1000..1200u64 {
        let (code, payload) = LespayMessage::BalanceQuery { req_id }.encode();
        client.session.send_capability_message(LESPAY, code, &payload).expect("send");
    }
    client.flush().await;
    let reason = client.disconnected(WAIT).await;
    assert_eq!(reason, DisconnectReason::SubprotocolError);
    let refused = client.events.iter().any(|e| {
        matches!(e, Event::CapabilityMessage { code, payload, .. }
            if matches!(LespayMessage::decode(*code, payload), Ok(LespayMessage::Error { code: ErrorCode::TooManyRequests, .. })))
    });
    assert!(refused, "Error 6 before the disconnect");
    assert!(bystander.headers_served().await);
    assert_eq!(bystander.balance().await.capacity, MIN_CAP);

    // The admin API's typed errors.
    let unknown = admin(&daemon, "les_noSuchMethod", json!([])).await;
    assert_eq!(unknown["error"]["code"], json!(-32601));
    let bad = admin(&daemon, "les_addBalance", json!(["0x1234", 5])).await;
    assert_eq!(bad["error"]["code"], json!(-32602));
    let missing = admin(&daemon, "les_setCapacity", json!([id_hex(bystander.node_id)])).await;
    assert_eq!(missing["error"]["code"], json!(-32602));
    let not_paid =
        admin(&daemon, "les_setCapacity", json!([id_hex(bystander.node_id), 2 * MIN_CAP])).await;
    assert_eq!(not_paid["error"]["code"], json!(-32000), "{not_paid}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_channel_cheque_is_credited_once_and_redeemed_on_chain() {
    use alloy_primitives::U256;
    use les::pay::cheque::{Cheque, key_address};
    use les::pay::messages::{ChannelProof, ChannelReceipt, ExchangeRate};
    use lesd::pay::service::PaymentConfig;
    use pay_support::channel::{deploy, hex, open_channel, transact};

    let anvil = Anvil::spawn();
    let dir = temp_dir("pay-channel");
    // PaymentChannel(minLifetime = 1 s).
    let contract = deploy(&anvil, 1).await;

    // The server's payee key, funded for the redeem's gas.
    let payee_key = NodeKey::random().expect("rng");
    let payee = key_address(&payee_key);
    let key_file = dir.join("payeekey");
    std::fs::write(&key_file, hex(&payee_key.to_bytes()).trim_start_matches("0x"))
        .expect("write key");
    transact(&anvil, json!({ "from": common::DEV_ADDRESS_0, "to": payee.to_string(), "value": "0xde0b6b3a7640000" })).await;

    // The payer (dev account 0) opens a channel of 1 ether to the payee, for a week.
    let payer_key = NodeKey::from_bytes(&common::DEV_KEY_0).expect("dev key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let ether = U256::from(1_000_000_000_000_000_000u64);
    let channel_id = open_channel(&anvil, contract, payee, ether, now + 7 * 24 * 3600).await;

    let server_key = NodeKey::random().expect("rng");
    // 1 token per 1000 wei.
    let rate = ExchangeRate { num: 1, den: 1000 };
    let service = ServiceConfig {
        total_capacity: Some(4 * MIN_CAP),
        tokens_per_wei: rate,
        payment: Some(PaymentConfig {
            payee_key: key_file,
            contract,
            rate,
            accept_margin: Duration::from_secs(3600),
            redeem_margin: Duration::from_secs(1800),
            confirmations: 0,
            min_deposit: U256::ZERO,
        }),
        ..ServiceConfig::default()
    };
    let daemon = start(&anvil, &dir, &server_key, 10, service).await;
    let mut client =
        PayClient::connect(&daemon, NodeKey::random().expect("rng")).await.expect("admitted");
    let prices = match client.call(|req_id| LespayMessage::PriceQuery { req_id }).await {
        LespayMessage::PriceReply { prices, .. } => prices,
        other => panic!("not a PriceReply: {other:?}"),
    };
    assert_eq!(prices.receivers, vec!["channel".to_owned()]);
    assert_eq!(prices.tokens_per_wei, rate);
    let terms = prices.channel.clone().expect("channel terms");
    assert_eq!(
        (terms.chain_id, terms.contract, terms.payee),
        (common::ANVIL_CHAIN_ID, contract, payee)
    );

    let pay = |cumulative: U256| {
        let cheque = Cheque { channel_id, payee, cumulative };
        let signature = cheque.sign(&payer_key, &terms.domain());
        ChannelProof { channel_id, cumulative, signature }.encode()
    };
    // 10^15 wei = 10^12 tokens.
    let cumulative = U256::from(1_000_000_000_000_000u64);
    let reply = client
        .call(|req_id| LespayMessage::Pay {
            req_id,
            receiver: "channel".into(),
            proof: pay(cumulative),
        })
        .await;
    let LespayMessage::PayReply { credited, balance, receipt, .. } = reply else {
        panic!("not a PayReply: {reply:?}")
    };
    assert_eq!(credited, 1_000_000_000_000);
    assert!(balance <= credited && balance > credited - 1_000_000_000, "{balance}");
    assert_eq!(ChannelReceipt::decode(&receipt).expect("receipt").accepted_cumulative, cumulative);
    assert_eq!(client.balance().await.priority_class, PriorityClass::Paid);
    // The same cheque again: acknowledged, nothing credited. A lower one: rejected.
    let again = client
        .call(|req_id| LespayMessage::Pay {
            req_id,
            receiver: "channel".into(),
            proof: pay(cumulative),
        })
        .await;
    assert!(matches!(again, LespayMessage::PayReply { credited: 0, .. }), "{again:?}");
    let lower = client
        .call(|req_id| LespayMessage::Pay {
            req_id,
            receiver: "channel".into(),
            proof: pay(cumulative - U256::from(1)),
        })
        .await;
    assert!(matches!(lower, LespayMessage::Error { code: ErrorCode::Rejected, .. }), "{lower:?}");
    assert_eq!(daemon.metrics().payments("accepted"), 2);

    // The operator sees the channel and redeems it: paidOut on chain is the cheque.
    let channels = admin_ok(&daemon, "les_channels", json!([])).await;
    assert_eq!(channels[0]["id"], json!(channel_id.to_string()));
    assert_eq!(channels[0]["lastAccepted"], json!(cumulative.to_string()));
    let redeemed = admin_ok(&daemon, "les_redeem", json!([channel_id.to_string()])).await;
    assert_eq!(redeemed["status"], json!("redeemed"), "{redeemed}");
    assert_eq!(redeemed["paidOut"], json!(cumulative.to_string()));
    let onchain = pay_support::channel::on_chain(&anvil, contract, channel_id).await;
    assert_eq!(U256::from(onchain.paidOut), cumulative);
    let log = admin_ok(&daemon, "les_paymentLog", json!([0, 10])).await;
    assert_eq!(log.as_array().map(Vec::len), Some(1), "the duplicate is not logged: {log}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_busy_lesd_serves_a_paying_clients_requests_before_free_ones() {
    // One serving slot, so every request beyond the first waits in the serving queue.
    let anvil = Anvil::spawn();
    anvil.mine(2).await;
    let dir = temp_dir("pay-queue");
    let key = NodeKey::random().expect("rng");
    let service = ServiceConfig { total_capacity: Some(4 * MIN_CAP), ..ServiceConfig::default() };
    let daemon = start_with_slots(&anvil, &dir, &key, 10, 1, service).await;
    let paid_key = NodeKey::random().expect("rng");
    let paid_id = les::crypto::node_id(&paid_key.public_key());
    admin_ok(&daemon, "les_addBalance", json!([id_hex(paid_id), "10000000000000"])).await;
    let mut paid = PayClient::connect(&daemon, paid_key).await.expect("admitted");
    admin_ok(&daemon, "les_setCapacity", json!([id_hex(paid_id), 2 * MIN_CAP])).await;
    let update = paid.lespay(|m| matches!(m, LespayMessage::CapacityUpdate { .. })).await;
    assert!(
        matches!(update, LespayMessage::CapacityUpdate { capacity, .. } if capacity == 2 * MIN_CAP),
        "{update:?}"
    );
    let mut free = Vec::new();
    for _ in 0..2 {
        free.push(
            PayClient::connect(&daemon, NodeKey::random().expect("rng")).await.expect("admitted"),
        );
    }
    let head = anvil.rpc("eth_getBlockByNumber", json!(["latest", false])).await;
    let block = B256::from_str(head["hash"].as_str().expect("hash")).expect("hash");

    // The free clients' requests reach lesd first; the payer's right after.
    let t0 = Instant::now();
    let mut free_ids = Vec::new();
    for client in &mut free {
        free_ids.push(send_proofs(client, block, 24).await);
    }
    let paid_ids = send_proofs(&mut paid, block, 24).await;
    assert!(
        free_ids.iter().all(|ids| ids.len() >= 8),
        "free budgets: {:?}",
        free_ids.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(paid_ids.len() >= 16, "paid budget: {}", paid_ids.len());
    let mut free_iter = free.into_iter().zip(free_ids);
    let (a, a_ids) = free_iter.next().expect("two");
    let (b, b_ids) = free_iter.next().expect("two");
    let ((_paid, paid_at), (_a, a_at), (_b, b_at)) =
        tokio::join!(replies(paid, paid_ids, t0), replies(a, a_ids, t0), replies(b, b_ids, t0));

    let metrics = daemon.metrics();
    let (paid_queued, paid_wait) = metrics.queue_totals("paid");
    let (free_queued, free_wait) = metrics.queue_totals("free");
    let mean = |total: f64, count: u64| total / count.max(1) as f64 * 1000.0;
    let free_at: Vec<Duration> = a_at.iter().chain(&b_at).copied().collect();
    let paid_last = paid_at.iter().max().copied().unwrap_or_default();
    let free_last = free_at.iter().max().copied().unwrap_or_default();
    eprintln!(
        "queue wait: paid {paid_queued} requests, mean {:.2} ms; free {free_queued}, mean {:.2} ms. \
         Replies: paid median {:?}, last {paid_last:?}; free median {:?}, last {free_last:?}",
        mean(paid_wait, paid_queued),
        mean(free_wait, free_queued),
        median(&paid_at),
        median(&free_at),
    );
    // The one slot was taken by the first free request; every other request waited.
    assert_eq!(paid_queued, paid_at.len() as u64, "every paid request waited for the slot");
    assert_eq!(free_queued + 1, free_at.len() as u64, "and every free one but the first");
    // Arriving last, the payer's requests still waited less than the free ones, and its last
    // reply came while free replies were still outstanding.
    assert!(paid_wait / (paid_queued as f64) < free_wait / (free_queued as f64));
    assert!(paid_last < free_last, "paid last {paid_last:?}, free last {free_last:?}");
    let ahead = metrics.queue_paid_ahead();
    assert!(ahead > 0 && ahead <= paid_queued, "paid requests served ahead of free ones: {ahead}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn an_overloaded_lesd_freezes_free_clients_lowers_its_capacity_and_still_serves_the_payer() {
    // One slot and five free clients with 16 requests in flight each: more than
    // OVERLOAD_FACTOR requests wait, so lesd is overloaded.
    let anvil = Anvil::spawn();
    anvil.mine(2).await;
    let dir = temp_dir("pay-overload");
    let key = NodeKey::random().expect("rng");
    let total = 8 * MIN_CAP;
    let service = ServiceConfig { total_capacity: Some(total), ..ServiceConfig::default() };
    let daemon = start_with_slots(&anvil, &dir, &key, 10, 1, service).await;
    let paid_key = NodeKey::random().expect("rng");
    let paid_id = les::crypto::node_id(&paid_key.public_key());
    admin_ok(&daemon, "les_addBalance", json!([id_hex(paid_id), "10000000000000"])).await;
    let mut paid = PayClient::connect(&daemon, paid_key).await.expect("admitted");
    let mut free = Vec::new();
    for _ in 0..5 {
        free.push(
            PayClient::connect(&daemon, NodeKey::random().expect("rng")).await.expect("admitted"),
        );
    }
    let head = anvil.rpc("eth_getBlockByNumber", json!(["latest", false])).await;
    let block = B256::from_str(head["hash"].as_str().expect("hash")).expect("hash");
    for client in &mut free {
        let sent = send_proofs(client, block, 24).await;
        assert!(sent.len() >= 17, "enough to keep 16 in flight: {}", sent.len());
    }
    let paid_ids = send_proofs(&mut paid, block, 16).await;
    let (_paid, paid_at) = replies(paid, paid_ids.clone(), Instant::now()).await;
    assert_eq!(paid_at.len(), paid_ids.len(), "every paid request answered");

    // Some free client was told to stop; lesd counted the overload; the pool's total
    // capacity dropped below what was configured.
    let mut stopped = 0;
    for client in &mut free {
        client.pump_for(Duration::from_millis(200)).await.ok();
        if client.events.iter().any(|e| matches!(e, Event::Stopped)) {
            stopped += 1;
        }
    }
    let overloads = daemon.metrics().overloads();
    assert!(stopped >= 1 && overloads >= 1, "stopped {stopped}, overloads {overloads}");
    let info = admin_ok(&daemon, "les_serverInfo", json!([])).await;
    assert!(number(&info["totalCapacity"]) < total, "total capacity after overload: {info}");
    // The frozen clients are resumed once the freeze delay has passed.
    for client in &mut free {
        if client.events.iter().any(|e| matches!(e, Event::Stopped)) {
            client
                .wait(|e| matches!(e, Event::Resumed { .. }), WAIT)
                .await
                .expect("resumed, not dropped");
        }
    }
    eprintln!(
        "overload: {stopped} of 5 free clients stopped, {overloads} overload freezes, total capacity {} of {total}",
        number(&info["totalCapacity"])
    );
    daemon.shutdown().await;
}
