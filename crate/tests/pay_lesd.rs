//! The client's side of the service model against a real lesd with payments on a real
//! anvil: the PaymentChannel contract deployed, lesd accepting cheques for it, and the client
//! over TCP. Checks that the client negotiates lespay and shows the server's price list in
//! `ulc_serviceStatus`, opens a channel with its funded key and a session key as the
//! channel's cheque signer (the `open` transaction sent
//! through the verified send path, the channel ID from the verified receipt, equal to what
//! the contract holds), and that under a payment policy it pays a cheque the server
//! acknowledges, is credited exactly `floor(cumulative * rate)` tokens, and gets the target
//! capacity in the paid class — the same figures lesd's own pool reports.

mod support;

use alloy_primitives::{Address, B256, Bytes, U256};
use les::crypto::NodeKey;
use les::pay::messages::{ExchangeRate, PriorityClass};
use lesd::daemon::{Daemon, DaemonConfig};
use lesd::pay::service::{PaymentConfig, ServiceConfig};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::rc::Rc;
use std::str::FromStr;
use std::time::{Duration, Instant};
use support::common::{self, Anvil, DEV_ADDRESS_0, DEV_ADDRESS_1};
use support::{NativeClient, run};
use ulc::chain::Chain;
use ulc::client::Client;
use ulc::native::{NativeTransport, TokioRuntime};
use ulc::pay::policy::{PaymentPolicy, ServerChoice};
use ulc::provider::Provider;
use ulc::store::MemoryStore;

/// anvil's well-known account 1, funded at genesis: the payer.
const PAYER_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
/// The contract's minimum channel lifetime on this devnet.
const MIN_LIFETIME: u64 = 60;
/// lesd refuses cheques of channels this close to expiry.
const ACCEPT_MARGIN: u64 = 120;
/// 1.5 tokens per wei (so crediting rounds).
const RATE: ExchangeRate = ExchangeRate { num: 3, den: 2 };
const WAIT: Duration = Duration::from_secs(30);

fn hex_bytes(value: &Value) -> Vec<u8> {
    let text = value.as_str().expect("hex string").trim_start_matches("0x");
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

async fn wait_receipt(anvil: &Anvil, hash: &Value) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let receipt = anvil.rpc("eth_getTransactionReceipt", json!([hash])).await;
        if !receipt.is_null() {
            return receipt;
        }
        assert!(Instant::now() < deadline, "no receipt for {hash}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct PayDevnet {
    anvil: Anvil,
    contract: Address,
    lesd: Daemon,
    genesis: B256,
}

impl PayDevnet {
    async fn start(name: &str) -> Self {
        let anvil = Anvil::with_block_time(1);
        let artifact: Value = serde_json::from_str(
            &std::fs::read_to_string(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../contracts/artifacts/PaymentChannel.json"),
            )
            .expect("contracts/artifacts/PaymentChannel.json"),
        )
        .expect("artifact JSON");
        let mut init = hex_bytes(&artifact["bytecode"]);
        init.extend_from_slice(&U256::from(MIN_LIFETIME).to_be_bytes::<32>());
        let deploy = json!({"from": DEV_ADDRESS_0, "data": Bytes::from(init), "gas": "0x400000"});
        let hash = anvil.rpc("eth_sendTransaction", json!([deploy])).await;
        let receipt = wait_receipt(&anvil, &hash).await;
        assert_eq!(receipt["status"], "0x1", "deployment failed: {receipt}");
        let contract = Address::from_str(receipt["contractAddress"].as_str().expect("address"))
            .expect("address");
        let dir = common::temp_dir(name);
        let any_port = || "127.0.0.1:0".parse().expect("address");
        let config = DaemonConfig {
            upstream: anvil.url().to_string(),
            datadir: Some(dir.clone()),
            key: NodeKey::random().expect("rng"),
            listen: any_port(),
            ws: None,
            metrics: None,
            max_clients: 100,
            serving_slots: lesd::node::default_serving_slots(),
            poll_interval: Duration::from_millis(50),
        };
        let service = ServiceConfig {
            tokens_per_wei: RATE,
            payment: Some(PaymentConfig {
                payee_key: dir.join("payee.key"),
                contract,
                rate: RATE,
                accept_margin: Duration::from_secs(ACCEPT_MARGIN),
                redeem_margin: Duration::from_secs(60),
                confirmations: 0,
                min_deposit: U256::from(1u64),
            }),
            ..ServiceConfig::default()
        };
        let lesd = Daemon::start_with(config, service).await.expect("lesd with payments starts");
        let genesis = anvil.rpc("eth_getBlockByNumber", json!(["0x0", false])).await;
        let genesis = B256::from_str(genesis["hash"].as_str().expect("hash")).expect("genesis");
        Self { anvil, contract, lesd, genesis }
    }

    async fn client(&self, key: Option<NodeKey>) -> Rc<NativeClient> {
        self.client_with(key, MemoryStore::new()).await
    }

    async fn client_with(&self, key: Option<NodeKey>, store: MemoryStore) -> Rc<NativeClient> {
        let config = ulc::config::ClientConfig {
            chain_id: common::ANVIL_CHAIN_ID,
            genesis_hash: Some(self.genesis),
            servers: vec![support::trusted(&self.lesd.enode().to_string())],
            fraction: 100,
            storage: ulc::config::StorageKind::Memory,
            payment: None,
        };
        let mut resolved = config.resolve().expect("config resolves");
        resolved.payment.key = key;
        resolved.payment.tick = Some(Duration::from_millis(200));
        Client::start(resolved, NativeTransport, store, TokioRuntime::new())
            .await
            .expect("client starts")
    }
}

/// Polls `ulc_serviceStatus` until `ready` holds for it.
async fn status_until(
    provider: &Provider<NativeClient>,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = provider.request("ulc_serviceStatus", json!([])).await.expect("status");
        if ready(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: last status {status:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn u256(value: &Value) -> U256 {
    U256::from_str(value.as_str().unwrap_or_else(|| panic!("not a string: {value}"))).expect("U256")
}

#[test]
fn the_client_sees_lespay_and_the_price_list() {
    run(async {
        let devnet = PayDevnet::start("ulc-pay-status").await;
        let client = devnet.client(None).await;
        let provider = Provider::new(client.clone());
        let status = status_until(&provider, "price list", |s| {
            s["servers"][0]["lespay"] == true && !s["servers"][0]["prices"].is_null()
        })
        .await;
        let server = &status["servers"][0];
        assert_eq!(server["nodeId"], json!(format!("{}", devnet.lesd.enode().node_id())));
        let prices = &server["prices"];
        // What lesd advertises is what the client shows.
        let advertised = devnet.lesd.service().expect("service").price_list();
        assert_eq!(prices["minCapacity"], json!(advertised.min_capacity));
        assert_eq!(prices["totalCapacity"], json!(advertised.total_capacity));
        assert_eq!(prices["tokensPerWei"], json!({"num": RATE.num, "den": RATE.den}));
        assert_eq!(prices["posFactors"]["time"], json!(advertised.pos_factors.time));
        assert_eq!(prices["receivers"], json!(["channel"]));
        let channel = &prices["channel"];
        assert_eq!(channel["chainId"], json!(common::ANVIL_CHAIN_ID));
        assert_eq!(
            Address::from_str(channel["contract"].as_str().expect("contract")),
            Ok(devnet.contract)
        );
        assert_eq!(channel["acceptMarginSecs"], json!(ACCEPT_MARGIN));
        // A free client: the minimum capacity, nothing paid, no payer configured.
        let status =
            status_until(&provider, "balance", |s| !s["servers"][0]["balance"].is_null()).await;
        let server = &status["servers"][0];
        assert_eq!(server["class"], "free");
        assert_eq!(server["capacity"], json!(advertised.min_capacity));
        assert_eq!(status["payments"], false);
        assert!(server["channel"].is_null());
        client.stop();
        devnet.lesd.shutdown().await;
    });
}

fn payer_key() -> NodeKey {
    NodeKey::from_bytes(&<[u8; 32]>::try_from(hex_bytes(&json!(PAYER_KEY)).as_slice()).expect("32"))
        .expect("payer key")
}

/// The policy of these tests: 100,000 capacity units, a budget of 0.001 ether.
fn policy(low_balance_secs: u64, top_up_secs: u64) -> PaymentPolicy {
    PaymentPolicy {
        budget_wei: policy_budget(),
        max_spend_wei_per_hour: None,
        target_capacity: 100_000,
        servers: ServerChoice::Best(1),
        low_balance_secs,
        top_up_secs,
    }
}

/// Opens a 0.01 ether channel for an hour, pays under [`policy`] until the server serves
/// us in its paid class with an acknowledged cheque; returns the accepted cumulative.
async fn open_and_pay(devnet: &PayDevnet, provider: &Provider<NativeClient>) -> U256 {
    let server = devnet.lesd.enode().node_id();
    status_until(provider, "price list", |s| !s["servers"][0]["prices"]["channel"].is_null()).await;
    let deposit = U256::from(10_000_000_000_000_000u64);
    provider
        .request(
            "ulc_openChannel",
            json!([{ "server": format!("{server}"), "depositWei": format!("{deposit:#x}"), "lifetimeSecs": 3600 }]),
        )
        .await
        .expect("channel opens");
    provider.chain().set_payment_policy(Some(policy(60, 600))).expect("policy");
    let status = status_until(provider, "paid capacity", |s| {
        let server = &s["servers"][0];
        server["class"] == "paid"
            && server["channel"]["pending"] == false
            && server["channel"]["acceptedWei"] != "0x0"
    })
    .await;
    u256(&status["servers"][0]["channel"]["acceptedWei"])
}

#[test]
fn a_restarted_client_resends_its_unacknowledged_cheque() {
    run(async {
        let devnet = PayDevnet::start("ulc-pay-restart").await;
        let store = MemoryStore::new();
        let client = devnet.client_with(Some(payer_key()), store.clone()).await;
        let provider = Provider::new(client.clone());
        let accepted = open_and_pay(&devnet, &provider).await;
        let service = devnet.lesd.service().expect("service");
        let ids: Vec<_> = service.client_info(&[]).into_iter().map(|(id, _)| id).collect();
        client.stop();
        drop((provider, client));

        // A crash after the cheque was stored and before it was sent: the store holds a
        // signed cheque lesd has never seen.
        let (payer, skipped) = ulc::pay::channel::ChannelPayer::load(&store).await.expect("load");
        assert!(skipped.is_empty());
        let server = devnet.lesd.enode().node_id();
        let prices = service.price_list();
        use ulc::pay::channel::Payer;
        let cheque = payer.prepare(&store, server, &prices, 1_000).await.expect("cheque stored");
        assert_eq!(cheque.cumulative, accepted + U256::from(667u64), "1,000 tokens at 1.5 per wei");
        drop(payer);

        // The restarted client (same store: same node key, same channel) re-sends it; lesd
        // credits it once, to the same client.
        let client = devnet.client_with(Some(payer_key()), store.clone()).await;
        let provider = Provider::new(client.clone());
        let want = format!("{:#x}", cheque.cumulative);
        let status = status_until(&provider, "re-sent cheque acknowledged", |s| {
            s["servers"][0]["channel"]["acceptedWei"] == want.as_str()
        })
        .await;
        let entry = &status["servers"][0];
        assert_eq!(entry["channel"]["pending"], false);
        assert!(entry["lastError"].is_null(), "{entry:#}");
        let credit = RATE.credit(accepted, cheque.cumulative).expect("credit");
        assert_eq!(U256::from(entry["tokensCredited"].as_u64().expect("credited")), credit);
        let again: Vec<_> = service.client_info(&[]).into_iter().map(|(id, _)| id).collect();
        assert_eq!(again, ids, "the same node ID after the restart");
        client.stop();
        devnet.lesd.shutdown().await;
    });
}

#[test]
fn opens_a_channel_and_pays_for_the_target_capacity() {
    run(async {
        let devnet = PayDevnet::start("ulc-pay-channel").await;
        let client = devnet.client(Some(payer_key())).await;
        let provider = Provider::new(client.clone());
        let status = status_until(&provider, "price list", |s| {
            !s["servers"][0]["prices"]["channel"].is_null()
        })
        .await;
        assert_eq!(
            status["payer"].as_str().map(str::to_lowercase),
            Some(DEV_ADDRESS_1.to_lowercase())
        );
        let server = devnet.lesd.enode().node_id();

        // Open: 0.01 ether for an hour.
        let deposit = U256::from(10_000_000_000_000_000u64);
        let opened = provider
            .request(
                "ulc_openChannel",
                json!([{ "server": format!("{server}"), "depositWei": format!("{deposit:#x}"), "lifetimeSecs": 3600 }]),
            )
            .await
            .expect("channel opens");
        assert_eq!(u256(&opened["depositWei"]), deposit);
        // The contract holds the channel under that ID: payer, payee, deposit.
        let id = opened["channelId"].as_str().expect("id").to_string();
        let call = json!({"to": devnet.contract, "data": format!("0x7a7ebd7b{}", id.trim_start_matches("0x"))});
        let record = hex_bytes(&devnet.anvil.rpc("eth_call", json!([call, "latest"])).await);
        assert_eq!(&record[12..32], Address::from_str(DEV_ADDRESS_1).expect("addr").as_slice());
        assert_eq!(
            &record[44..64],
            Address::from_str(opened["payee"].as_str().expect("payee")).expect("addr").as_slice()
        );
        assert_eq!(U256::from_be_slice(&record[64..96]), deposit);
        // Its cheques are signed by the client's session key for it, not by the funded key.
        let signer = Address::from_str(opened["signer"].as_str().expect("signer")).expect("addr");
        assert_eq!(&record[204..224], signer.as_slice());
        assert_ne!(signer, Address::from_str(DEV_ADDRESS_1).expect("addr"));

        // Pay as we go for 100,000 capacity units.
        let target = 100_000u64;
        client.set_payment_policy(Some(policy(60, 600))).expect("policy");
        let status = status_until(&provider, "paid capacity", |s| {
            let server = &s["servers"][0];
            server["class"] == "paid"
                && server["capacity"].as_u64().is_some_and(|c| c >= target)
                && server["channel"]["pending"] == false
                && server["channel"]["acceptedWei"] != "0x0"
        })
        .await;
        let server_status = &status["servers"][0];
        let accepted = u256(&server_status["channel"]["acceptedWei"]);
        assert_eq!(accepted, u256(&server_status["channel"]["signedWei"]));
        assert!(accepted <= deposit && u256(&status["signedTotalWei"]) <= policy_budget());
        // Credited exactly floor(cumulative * rate).
        let credited = server_status["tokensCredited"].as_u64().expect("credited");
        assert_eq!(U256::from(credited), RATE.tokens(accepted).expect("rate"));
        // lesd's pool agrees: one client, paid, at that capacity.
        let info = devnet.lesd.service().expect("service").client_info(&[]);
        let [(_, ours)] = info.as_slice() else { panic!("one client expected: {info:?}") };
        assert_eq!(ours.class, PriorityClass::Paid);
        assert_eq!(ours.capacity, server_status["capacity"].as_u64().expect("capacity"));
        assert!(ours.pos <= credited, "charged since: {} of {credited}", ours.pos);

        // Stopping the policy stops payments: the cumulative stays where it is.
        client.set_payment_policy(None).expect("no policy");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let later = provider.request("ulc_serviceStatus", json!([])).await.expect("status");
        assert_eq!(u256(&later["servers"][0]["channel"]["signedWei"]), accepted);
        client.stop();
        devnet.lesd.shutdown().await;
    });
}

#[test]
fn a_topped_up_channel_pays_on_past_its_first_deposit() {
    run(async {
        let devnet = PayDevnet::start("ulc-pay-top-up").await;
        let client = devnet.client(Some(payer_key())).await;
        let provider = Provider::new(client.clone());
        status_until(&provider, "price list", |s| !s["servers"][0]["prices"]["channel"].is_null())
            .await;
        let server = devnet.lesd.enode().node_id();
        // A deposit that buys seconds of the minimum capacity: the first cheque uses it up and
        // the policy, wanting more, is held back by the deposit.
        let small = U256::from(100_000_000u64);
        let opened = provider
            .request(
                "ulc_openChannel",
                json!([{ "server": format!("{server}"), "depositWei": format!("{small:#x}"), "lifetimeSecs": 3600 }]),
            )
            .await
            .expect("channel opens");
        client.set_payment_policy(Some(policy(60, 600))).expect("policy");
        let want = format!("{small:#x}");
        status_until(&provider, "the first deposit used up", |s| {
            s["servers"][0]["channel"]["acceptedWei"] == want.as_str()
                && s["servers"][0]["hold"] == "depositUsed"
        })
        .await;

        // Top it up from the same funded key; the client reads the new deposit from the
        // verified receipt's ToppedUp event.
        let added = U256::from(1_000_000_000_000_000u64);
        let topped = provider
            .request(
                "ulc_topUpChannel",
                json!([{ "server": format!("{server}"), "depositWei": format!("{added:#x}") }]),
            )
            .await
            .expect("top-up");
        assert_eq!(u256(&topped["depositWei"]), small + added);
        assert_eq!(topped["channelId"], opened["channelId"]);
        let id = opened["channelId"].as_str().expect("id").to_string();
        let call = json!({"to": devnet.contract, "data": format!("0x7a7ebd7b{}", id.trim_start_matches("0x"))});
        let record = hex_bytes(&devnet.anvil.rpc("eth_call", json!([call, "latest"])).await);
        assert_eq!(U256::from_be_slice(&record[64..96]), small + added, "on chain");

        // The policy pays on: lesd accepts cheques above the first deposit, credited exactly.
        let status = status_until(&provider, "a cheque above the first deposit", |s| {
            let channel = &s["servers"][0]["channel"];
            channel["pending"] == false && u256(&channel["acceptedWei"]) > small
        })
        .await;
        let entry = &status["servers"][0];
        let accepted = u256(&entry["channel"]["acceptedWei"]);
        assert!(accepted <= small + added);
        let credited = entry["tokensCredited"].as_u64().expect("credited");
        assert_eq!(U256::from(credited), RATE.tokens(accepted).expect("rate"));

        // No channel to top up: refused with the reason.
        let unknown = format!("0x{}", "22".repeat(32));
        let error = provider
            .request("ulc_topUpChannel", json!([{ "server": unknown, "depositWei": "0x1" }]))
            .await
            .expect_err("no channel");
        assert!(error.message.contains("channel"), "{error:?}");
        client.stop();
        devnet.lesd.shutdown().await;
    });
}

fn policy_budget() -> U256 {
    U256::from(1_000_000_000_000_000u64)
}
