//! The client core against lying and broken servers: a real anvil, real lesd, and
//! adversaries (tests/support/adversary.rs: lesd's serving code behind our own session, lying
//! where told to), all over real TCP. Whatever the servers do, no wrong answer reaches the
//! caller of a `Chain` method: it is verified, or it is an error.
#![cfg(not(target_arch = "wasm32"))] // native: real lesd and anvil processes

mod support;

use alloy_primitives::{Address, Bytes};
use les::p2p::DisconnectReason;
use serde_json::{Value, json};
use std::str::FromStr;
use std::time::{Duration, Instant};
use support::adversary::{Adversary, Lie};
use support::common::{Anvil, DEV_ADDRESS_0, quantity};
use support::{Devnet, NativeClient, NextEvent, WAIT, hex, run, start_client, trusted};
use ulc::chain::{Chain, ClientError, ClientEvent};
use ulc::client::Client;
use ulc::config::Timing;
use ulc::native::{NativeTransport, TokioRuntime};
use ulc::store::MemoryStore;

/// `PUSH1 0 PUSH1 0 LOG0 STOP`: every call leaves one log.
const LOG_CODE: [u8; 6] = [0x60, 0x00, 0x60, 0x00, 0xa0, 0x00];

/// A block with a transaction whose receipt has a log, and the contract it called.
struct Fixture {
    block: u64,
    contract: Address,
}

impl Fixture {
    async fn prepare(anvil: &Anvil) -> Self {
        let contract = Address::repeat_byte(0x42);
        anvil
            .rpc(
                "anvil_setCode",
                json!([format!("{contract:#x}"), format!("{}", Bytes::from(LOG_CODE))]),
            )
            .await;
        let tx = json!({"from": DEV_ADDRESS_0, "to": format!("{contract:#x}"), "gas": "0x30000"});
        let hash = anvil.rpc("eth_sendTransaction", json!([tx])).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let receipt = anvil.rpc("eth_getTransactionReceipt", json!([hash])).await;
            if !receipt.is_null() {
                assert_eq!(receipt["logs"].as_array().map(Vec::len), Some(1), "the call logs once");
                return Self { block: quantity(&receipt["blockNumber"]), contract };
            }
            assert!(Instant::now() < deadline, "the fixture transaction was never mined");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn dev0() -> Address {
    Address::from_str(DEV_ADDRESS_0).expect("address")
}

/// A server's record in the client's metrics, by its position in the configuration.
fn record(client: &NativeClient, index: usize) -> Value {
    client.metrics()["servers"][index].clone()
}

fn count(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a count: {value}"))
}

/// Asks the client for what `lie` falsifies (and the head and headers, always) and checks
/// every answer against anvil.
async fn ask_and_check(client: &NativeClient, devnet: &Devnet, fixture: &Fixture, lie: Lie) {
    let anvil = &devnet.anvil;
    let head = client.head().await.unwrap_or_else(|e| panic!("{lie:?}: head: {e}"));
    assert_eq!(
        format!("{:#x}", head.header.hash()),
        devnet.block_hash(head.header.number()).await,
        "{lie:?}: head"
    );
    let header =
        client.header_by_number(fixture.block).await.expect("header").expect("below the head");
    assert_eq!(
        format!("{:#x}", header.hash()),
        devnet.block_hash(fixture.block).await,
        "{lie:?}: header"
    );
    let genesis = client.header_by_hash(devnet.genesis).await.expect("genesis").expect("known");
    assert_eq!(genesis.hash(), devnet.genesis, "{lie:?}: genesis");
    let block_tag = format!("{:#x}", fixture.block);
    match lie {
        Lie::Body | Lie::Empty => {
            let body = client.body(&header).await.unwrap_or_else(|e| panic!("{lie:?}: body: {e}"));
            let block = anvil.rpc("eth_getBlockByNumber", json!([block_tag, false])).await;
            let expected: Vec<String> =
                block["transactions"].as_array().expect("hashes").iter().map(hex).collect();
            let got: Vec<String> =
                body.body.transactions().iter().map(|tx| format!("{:#x}", tx.tx_hash())).collect();
            assert_eq!(got, expected, "{lie:?}: transactions");
            assert_eq!(body.senders, vec![dev0()], "{lie:?}: senders");
        }
        Lie::ReceiptStatus | Lie::ReceiptLog => {
            let receipts =
                client.receipts(&header).await.unwrap_or_else(|e| panic!("{lie:?}: receipts: {e}"));
            let block = anvil.rpc("eth_getBlockByNumber", json!([block_tag, false])).await;
            let expected =
                anvil.rpc("eth_getTransactionReceipt", json!([block["transactions"][0]])).await;
            let receipt = &receipts.receipts()[0];
            assert_eq!(receipt.status(), quantity(&expected["status"]) == 1, "{lie:?}: status");
            assert_eq!(
                receipt.logs().len(),
                expected["logs"].as_array().map_or(0, Vec::len),
                "{lie:?}: logs"
            );
            assert_eq!(
                receipt.cumulative_gas_used(),
                quantity(&expected["cumulativeGasUsed"]),
                "{lie:?}: gas"
            );
        }
        Lie::ProofBalance | Lie::ProofNode => {
            let state = client
                .account(&header, dev0(), vec![])
                .await
                .unwrap_or_else(|e| panic!("{lie:?}: proof: {e}"));
            let account = state.account.expect("the dev account exists");
            let balance = anvil.rpc("eth_getBalance", json!([DEV_ADDRESS_0, block_tag])).await;
            assert_eq!(format!("{:#x}", account.balance), hex(&balance), "{lie:?}: balance");
            let nonce =
                anvil.rpc("eth_getTransactionCount", json!([DEV_ADDRESS_0, block_tag])).await;
            assert_eq!(account.nonce, quantity(&nonce), "{lie:?}: nonce");
        }
        Lie::Code => {
            let state =
                client.account(&header, fixture.contract, vec![]).await.expect("contract proof");
            let code_hash = state.account.expect("the contract exists").code_hash;
            let code = client
                .code(&header, fixture.contract, code_hash)
                .await
                .unwrap_or_else(|e| panic!("code: {e}"));
            let expected = anvil
                .rpc("eth_getCode", json!([format!("{:#x}", fixture.contract), block_tag]))
                .await;
            assert_eq!(format!("{code}"), hex(&expected), "code");
        }
        Lie::None | Lie::Header | Lie::HeadHash | Lie::Signature => {}
    }
}

/// One honest lesd and one liar, both trusted (fraction 100: both must sign, so both are
/// connected when the first head is fetched). The liar comes first in the configuration:
/// with both fresh it is asked first, serves the head honestly (its latency then ranks it
/// first), and is asked first for what it lies about.
fn honest_answer_despite(lie: Lie) {
    run(async move {
        let devnet = Devnet::start(1).await;
        let fixture = Fixture::prepare(&devnet.anvil).await;
        let liar = Adversary::start(devnet.anvil.url(), lie).await;
        let honest = devnet.servers[0].enode().to_string();
        let config = devnet.config_with(vec![trusted(&liar.enode()), trusted(&honest)], 100);
        let client = start_client(&config, MemoryStore::new()).await;

        ask_and_check(&client, &devnet, &fixture, lie).await;
        assert!(liar.lies() > 0, "{lie:?}: the liar was asked and lied");
        let metrics = client.metrics();
        let (liar_record, honest_record) = (record(&client, 0), record(&client, 1));
        if lie == Lie::Empty {
            // Hiding is not lying: nothing failed verification, the next server was asked.
            assert_eq!(metrics["verificationFailures"], 0);
        } else {
            assert!(count(&metrics["verificationFailures"]) > 0, "{lie:?}: client counted the lie");
            assert!(
                count(&liar_record["verificationFailures"]) > 0,
                "{lie:?}: on the liar's record"
            );
            assert_eq!(
                honest_record["verificationFailures"], 0,
                "{lie:?}: not on the honest one's"
            );
        }

        // The liar now ranks after the honest server: asked again, only the honest one is.
        ask_and_check(&client, &devnet, &fixture, lie).await;
        let (liar_after, honest_after) = (record(&client, 0), record(&client, 1));
        assert_eq!(
            liar_after["messagesOut"], liar_record["messagesOut"],
            "{lie:?}: the liar was not asked again"
        );
        assert!(
            count(&honest_after["successes"]) > count(&honest_record["successes"]),
            "{lie:?}: the honest one was"
        );
        client.stop();
        devnet.shutdown().await;
    });
}

#[test]
fn honest_answer_despite_forged_headers() {
    honest_answer_despite(Lie::Header);
}

#[test]
fn honest_answer_despite_a_body_missing_a_transaction() {
    honest_answer_despite(Lie::Body);
}

#[test]
fn honest_answer_despite_a_flipped_receipt_status() {
    honest_answer_despite(Lie::ReceiptStatus);
}

#[test]
fn honest_answer_despite_a_dropped_log() {
    honest_answer_despite(Lie::ReceiptLog);
}

#[test]
fn honest_answer_despite_an_inflated_balance() {
    honest_answer_despite(Lie::ProofBalance);
}

#[test]
fn honest_answer_despite_a_proof_missing_a_node() {
    honest_answer_despite(Lie::ProofNode);
}

#[test]
fn honest_answer_despite_wrong_code() {
    honest_answer_despite(Lie::Code);
}

#[test]
fn honest_answer_despite_hidden_data() {
    honest_answer_despite(Lie::Empty);
}

/// With nobody honest to fall back on, every lie is an error, never an answer.
#[test]
fn only_liars_give_verification_errors_never_wrong_data() {
    run(async {
        let devnet = Devnet::start(0).await;
        let fixture = Fixture::prepare(&devnet.anvil).await;
        let liars = [
            Adversary::start(devnet.anvil.url(), Lie::None).await,
            Adversary::start(devnet.anvil.url(), Lie::None).await,
        ];
        let config = devnet.config_with(liars.iter().map(|l| trusted(&l.enode())).collect(), 100);
        let client = start_client(&config, MemoryStore::new()).await;
        // While they are honest: the head, the fixture's header and the contract's code hash.
        client.head().await.expect("head");
        let header =
            client.header_by_number(fixture.block).await.expect("header").expect("below the head");
        let contract = client.account(&header, fixture.contract, vec![]).await.expect("proof");
        let code_hash = contract.account.expect("contract").code_hash;
        let liar_ids: Vec<String> = liars.iter().map(|l| format!("{}", l.node_id())).collect();

        let mut failures = 0;
        for lie in [
            Lie::Header,
            Lie::Body,
            Lie::ReceiptStatus,
            Lie::ReceiptLog,
            Lie::ProofBalance,
            Lie::ProofNode,
            Lie::Code,
        ] {
            liars.iter().for_each(|l| l.set_lie(lie));
            let results: Vec<Result<(), ClientError>> = match lie {
                Lie::Header => vec![
                    client
                        .header_by_hash(devnet.genesis)
                        .await
                        .map(|h| panic!("{lie:?}: answered {h:?}")),
                    client.header_by_number(0).await.map(|h| panic!("{lie:?}: answered {h:?}")),
                ],
                Lie::Body => {
                    vec![client.body(&header).await.map(|b| panic!("{lie:?}: answered {b:?}"))]
                }
                Lie::ReceiptStatus | Lie::ReceiptLog => {
                    vec![client.receipts(&header).await.map(|r| panic!("{lie:?}: answered {r:?}"))]
                }
                Lie::ProofBalance | Lie::ProofNode => {
                    vec![
                        client
                            .account(&header, dev0(), vec![])
                            .await
                            .map(|a| panic!("{lie:?}: answered {a:?}")),
                    ]
                }
                _ => vec![
                    client
                        .code(&header, fixture.contract, code_hash)
                        .await
                        .map(|c| panic!("{lie:?}: answered {c}")),
                ],
            };
            for result in results {
                match result {
                    Err(ClientError::Verification { server, reason }) => {
                        assert!(liar_ids.contains(&server), "{lie:?}: blames {server}");
                        assert!(!reason.is_empty());
                        failures += 2; // both liars were asked
                    }
                    other => panic!("{lie:?}: expected a verification error, got {other:?}"),
                }
            }
        }
        // At least: a new head arriving under the header lie fails to be fetched too.
        assert!(count(&client.metrics()["verificationFailures"]) >= failures);

        // Hiding: not a verification failure, but no answer either.
        liars.iter().for_each(|l| l.set_lie(Lie::Empty));
        let hidden = client.body(&header).await;
        assert!(matches!(hidden, Err(ClientError::Unavailable(_))), "hidden body: {hidden:?}");
        let hidden = client.code(&header, fixture.contract, code_hash).await;
        assert!(matches!(hidden, Err(ClientError::Unavailable(_))), "hidden code: {hidden:?}");
        assert!(liars.iter().all(|l| l.lies() > 0));
        client.stop();
        devnet.shutdown().await;
    });
}

/// Four trusted servers at 75 %: three must agree. The fourth signs a different hash at
/// every height; it is outvoted and reported, and every accepted head is anvil's.
#[test]
fn a_trusted_server_lying_about_the_head_is_outvoted_and_reported() {
    run(async {
        let devnet = Devnet::start(3).await;
        let liar = Adversary::start(devnet.anvil.url(), Lie::HeadHash).await;
        let mut servers = vec![trusted(&liar.enode())];
        servers.extend(devnet.servers.iter().map(|d| trusted(&d.enode().to_string())));
        let client = start_client(&devnet.config_with(servers, 75), MemoryStore::new()).await;
        let mut events = client.events();
        let (mut heads, mut disagreements) = (0, 0);
        let deadline = Instant::now() + WAIT;
        while heads < 3 || disagreements == 0 {
            assert!(Instant::now() < deadline, "{heads} heads and {disagreements} disagreements");
            match events.next_event().await {
                Some(ClientEvent::NewHead(header)) => {
                    let expected = devnet.block_hash(header.number()).await;
                    assert_eq!(
                        format!("{:#x}", header.hash()),
                        expected,
                        "head {}",
                        header.number()
                    );
                    heads += 1;
                }
                Some(ClientEvent::Disagreement { number }) => {
                    let tip = quantity(&devnet.anvil.rpc("eth_blockNumber", json!([])).await);
                    assert!(number <= tip, "a disagreement at {number}, above anvil's {tip}");
                    disagreements += 1;
                }
                Some(ClientEvent::Connected) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        let head = client.head().await.expect("head");
        assert_eq!(
            format!("{:#x}", head.header.hash()),
            devnet.block_hash(head.header.number()).await
        );
        assert!(!head.signers.contains(&liar.node_id()), "the liar backs no accepted head");
        assert!(liar.lies() > 0);
        assert!(count(&client.metrics()["disagreements"]) > 0);
        client.stop();
        devnet.shutdown().await;
    });
}

/// A server whose announcement is signed by another key is disconnected by the session; the
/// head comes from the two honest servers (2 of 3 at 60 %).
#[test]
fn a_forged_announcement_signature_ends_the_session() {
    run(async {
        let devnet = Devnet::start(2).await;
        let liar = Adversary::start(devnet.anvil.url(), Lie::Signature).await;
        let mut servers = vec![trusted(&liar.enode())];
        servers.extend(devnet.servers.iter().map(|d| trusted(&d.enode().to_string())));
        let client = start_client(&devnet.config_with(servers, 60), MemoryStore::new()).await;
        let head = client.head().await.expect("head");
        let deadline = Instant::now() + WAIT;
        while liar.remote_disconnects().is_empty() {
            assert!(Instant::now() < deadline, "the forger was never disconnected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(liar.lies() > 0, "it sent a forged announcement");
        assert!(
            liar.remote_disconnects().iter().all(|r| *r == DisconnectReason::SubprotocolError),
            "{:?}",
            liar.remote_disconnects()
        );
        assert!(count(&record(&client, 0)["connects"]) >= 1, "its session was established first");
        assert_eq!(
            format!("{:#x}", head.header.hash()),
            devnet.block_hash(head.header.number()).await
        );
        let mut signers = head.signers.clone();
        signers.sort();
        let mut honest: Vec<_> = devnet.servers.iter().map(|d| d.enode().node_id()).collect();
        honest.sort();
        assert_eq!(signers, honest, "backed by the honest servers only");
        client.stop();
        devnet.shutdown().await;
    });
}

/// Both trusted servers go down (sessions cut, new connections hang): the client says so,
/// `head()` gives up after its head wait (shortened here), and once they are back it connects and follows again.
#[test]
fn every_server_down_disconnects_then_recovers() {
    run(async {
        let devnet = Devnet::start(0).await;
        let servers = [
            Adversary::start(devnet.anvil.url(), Lie::None).await,
            Adversary::start(devnet.anvil.url(), Lie::None).await,
        ];
        let config = devnet.config_with(servers.iter().map(|s| trusted(&s.enode())).collect(), 100);
        let mut resolved = config.resolve().expect("config");
        let head_wait = Duration::from_secs(3);
        resolved.timing = Timing { head_wait, ..Timing::default() };
        let client =
            Client::start(resolved, NativeTransport, MemoryStore::new(), TokioRuntime::new())
                .await
                .expect("client starts");
        let mut events = client.events();
        let before = client.head().await.expect("head");
        assert!(
            events.wait_for(|e| matches!(e, ClientEvent::Connected)).await.is_some(),
            "Connected"
        );

        servers.iter().for_each(|s| s.set_down(true));
        match events.wait_for(|e| matches!(e, ClientEvent::Disconnected { .. })).await {
            Some(ClientEvent::Disconnected { code, .. }) => assert_eq!(code, 1006),
            other => panic!("no Disconnected event: {other:?}"),
        }
        assert_eq!(client.connected_servers(), 0);
        let asked = Instant::now();
        let down = client.head().await;
        assert!(matches!(down, Err(ClientError::Disconnected(_))), "head() while down: {down:?}");
        assert!(
            asked.elapsed() >= head_wait - Duration::from_millis(500),
            "gave up after {:?}",
            asked.elapsed()
        );

        servers.iter().for_each(|s| s.set_down(false));
        assert!(
            events.wait_for(|e| matches!(e, ClientEvent::Connected)).await.is_some(),
            "Connected again"
        );
        let deadline = Instant::now() + WAIT;
        let head = loop {
            let head = client.head().await.expect("head after recovery");
            if head.header.number() > before.header.number() && !head.stale {
                break head;
            }
            assert!(Instant::now() < deadline, "no fresh head after recovery");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            format!("{:#x}", head.header.hash()),
            devnet.block_hash(head.header.number()).await
        );
        client.stop();
        devnet.shutdown().await;
    });
}
