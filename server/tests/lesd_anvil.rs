//! lesd end to end against a real anvil: in-process lesd on OS-chosen ports, native LES
//! clients built from `les::session::Session` over tokio TCP, every answer checked against
//! anvil's own JSON-RPC and against the roots and signatures the client would verify.

mod common;
mod lesd_client;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use common::{Anvil, DEV_ADDRESS_0, DEV_ADDRESS_1, quantity};
use les::chain::{BlockBody, BlockReceipts, NodeSet, SealedHeader, verify_chain};
use les::msg::{
    AccountKey, AnnounceType, BlockHashOrNumber, CodeRequest, GetBlockBodies, GetBlockHeaders,
    GetContractCodes, GetProofsV2, GetReceipts, GetTxStatus, LesMessage, LesVersion, ProofRequest,
    SendTxV2, TxState,
};
use les::session::Event;
use les::ulc::{Ulc, UlcConfig, UlcEvent};
use lesd::daemon::Daemon;
use lesd_client::{ChainInfo, ClientError, LesClient, WAIT, start_lesd};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Waits until lesd has published a head at `number` or above.
async fn wait_head(daemon: &Daemon, number: u64) {
    let mut heads = daemon.heads();
    let waited = tokio::time::timeout(
        WAIT,
        heads.wait_for(|head| head.as_ref().is_some_and(|h| h.header.number() >= number)),
    )
    .await;
    assert!(matches!(waited, Ok(Ok(_))), "lesd did not reach head {number}");
}

async fn connect(daemon: &Daemon, announce_type: AnnounceType) -> LesClient {
    LesClient::connect(
        &daemon.enode(),
        &ChainInfo::of(daemon),
        announce_type,
        LesVersion::ALL.to_vec(),
    )
    .await
    .expect("client connects")
}

async fn anvil_block(anvil: &Anvil, tag: Value) -> Value {
    anvil.rpc("eth_getBlockByNumber", json!([tag, false])).await
}

fn b256(value: &Value) -> B256 {
    B256::from_str(value.as_str().expect("hex string")).expect("32-byte hex")
}

fn bytes(value: &Value) -> Vec<u8> {
    let text = value.as_str().expect("hex string").trim_start_matches("0x");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

async fn headers(
    client: &mut LesClient,
    origin: BlockHashOrNumber,
    max: u64,
    skip: u64,
    reverse: bool,
) -> Vec<SealedHeader> {
    let reply = client
        .request(|request_id| {
            LesMessage::GetBlockHeaders(GetBlockHeaders {
                request_id,
                origin,
                max_headers: max,
                skip,
                reverse,
            })
        })
        .await
        .expect("headers reply");
    let LesMessage::BlockHeaders(reply) = reply else { panic!("not BlockHeaders: {reply:?}") };
    reply.headers.iter().map(|rlp| SealedHeader::decode(rlp).expect("header decodes")).collect()
}

#[tokio::test]
async fn signed_announcements_from_two_lesd_reach_a_ulc_quorum() {
    let anvil = Anvil::spawn();
    anvil.mine(3).await;
    let first = start_lesd(anvil.url(), false).await;
    let second = start_lesd(anvil.url(), false).await;
    wait_head(&first, 3).await;
    wait_head(&second, 3).await;
    let enodes = [first.enode(), second.enode()];
    let mut ulc = Ulc::new(UlcConfig::new(enodes.iter().cloned(), 100).expect("config"));
    let mut clients =
        [connect(&first, AnnounceType::Signed).await, connect(&second, AnnounceType::Signed).await];

    let mut accepted = None;
    for (client, enode) in clients.iter_mut().zip(&enodes) {
        let info = client.info.as_ref().expect("established");
        assert_eq!(info.node_id, enode.node_id(), "RLPx authenticated the enode's key");
        let (announce, signed) =
            client.announcement(WAIT).await.expect("head announced after Status");
        let signed = signed.expect("signed, as asked for");
        signed.verify(&enode.node_id()).expect("signature by the server's node key");
        assert_eq!(announce.head_number, 3);
        for event in ulc
            .on_announcement(enode.node_id(), signed.head, &signed.signature, announce.reorg_depth)
            .expect("counted")
        {
            if let UlcEvent::HeadAccepted { head, .. } = event {
                accepted = Some(head);
            }
        }
    }
    let latest = anvil_block(&anvil, json!("latest")).await;
    let head = accepted.expect("both servers signed the same head: quorum at 100%");
    assert_eq!(head.hash, b256(&latest["hash"]));
    assert_eq!(head.number, 3);

    // A new block is announced by both and accepted again.
    anvil.mine(1).await;
    let mut accepted = None;
    for (client, enode) in clients.iter_mut().zip(&enodes) {
        let (announce, signed) = client.announcement_at_least(4, WAIT).await.expect("new head");
        let signed = signed.expect("signed");
        assert_eq!(announce.reorg_depth, 0);
        for event in ulc
            .on_announcement(enode.node_id(), signed.head, &signed.signature, 0)
            .expect("counted")
        {
            if let UlcEvent::HeadAccepted { head, .. } = event {
                accepted = Some(head);
            }
        }
    }
    let latest = anvil_block(&anvil, json!("latest")).await;
    assert_eq!(accepted.expect("accepted").hash, b256(&latest["hash"]));
    assert!(first.metrics().announcements() >= 2);
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn headers_by_number_and_hash_equal_anvils() {
    let anvil = Anvil::spawn();
    anvil.mine(10).await;
    let daemon = start_lesd(anvil.url(), false).await;
    wait_head(&daemon, 10).await;
    let mut client = connect(&daemon, AnnounceType::Simple).await;

    let all = headers(&mut client, BlockHashOrNumber::Number(0), 192, 0, false).await;
    assert_eq!(all.len(), 11, "genesis to head, stopping at the head");
    for header in &all {
        let block = anvil_block(&anvil, json!(format!("{:#x}", header.number()))).await;
        assert_eq!(header.hash(), b256(&block["hash"]), "block {}", header.number());
    }
    let tip = all.last().expect("tip").clone();
    let parents: Vec<SealedHeader> = all.iter().rev().skip(1).cloned().collect();
    verify_chain(&parents, &tip).expect("parent links");

    let by_hash = headers(&mut client, BlockHashOrNumber::Hash(all[7].hash()), 3, 0, true).await;
    assert_eq!(by_hash.iter().map(SealedHeader::number).collect::<Vec<_>>(), [7, 6, 5]);
    assert_eq!(by_hash[2].hash(), all[5].hash());

    let skipping = headers(&mut client, BlockHashOrNumber::Number(1), 4, 2, false).await;
    assert_eq!(skipping.iter().map(SealedHeader::number).collect::<Vec<_>>(), [1, 4, 7, 10]);

    let reverse_past_genesis = headers(&mut client, BlockHashOrNumber::Number(2), 5, 0, true).await;
    assert_eq!(
        reverse_past_genesis.iter().map(SealedHeader::number).collect::<Vec<_>>(),
        [2, 1, 0]
    );

    assert!(headers(&mut client, BlockHashOrNumber::Number(11), 5, 0, false).await.is_empty());
    assert!(
        headers(&mut client, BlockHashOrNumber::Hash(B256::repeat_byte(7)), 5, 0, false)
            .await
            .is_empty()
    );
    assert!(daemon.metrics().requests("GetBlockHeaders") >= 6);
    daemon.shutdown().await;
}

/// Init code storing 42 in slot 0 and deploying the one-byte runtime `STOP`.
const STORE_42_INIT: &str = "0x602a6000556001601160003960016000f300";

async fn send_and_mine(anvil: &Anvil, tx: Value) -> Value {
    let hash = anvil.rpc("eth_sendTransaction", json!([tx])).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let receipt = anvil.rpc("eth_getTransactionReceipt", json!([hash])).await;
        if !receipt.is_null() {
            return receipt;
        }
        assert!(Instant::now() < deadline, "transaction not mined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn proofs_codes_bodies_and_receipts_verify_against_the_header() {
    let anvil = Anvil::spawn();
    let deployed = send_and_mine(
        &anvil,
        json!({"from": DEV_ADDRESS_0, "data": STORE_42_INIT, "gas": "0x100000"}),
    )
    .await;
    let contract =
        Address::from_str(deployed["contractAddress"].as_str().expect("created")).expect("address");
    let transfer = send_and_mine(
        &anvil,
        json!({"from": DEV_ADDRESS_0, "to": DEV_ADDRESS_1, "value": "0x1234"}),
    )
    .await;
    let block_hash = b256(&transfer["blockHash"]);
    let block_number = quantity(&transfer["blockNumber"]);
    let daemon = start_lesd(anvil.url(), false).await;
    wait_head(&daemon, block_number).await;
    let mut client = connect(&daemon, AnnounceType::Simple).await;
    let header =
        headers(&mut client, BlockHashOrNumber::Hash(block_hash), 1, 0, false).await.remove(0);
    assert_eq!(header.hash(), block_hash);
    let state_root = header.header().state_root;

    // Account and raw-slot storage proof of the contract, account proof of a dev account.
    let dev1 = Address::from_str(DEV_ADDRESS_1).expect("address");
    let slot = B256::ZERO;
    let reply = client
        .request(|request_id| {
            LesMessage::GetProofsV2(GetProofsV2 {
                request_id,
                requests: vec![
                    ProofRequest::storage(block_hash, contract, slot),
                    ProofRequest::account(block_hash, dev1),
                ],
            })
        })
        .await
        .expect("proofs");
    let LesMessage::ProofsV2(proofs) = reply else { panic!("not ProofsV2") };
    let mut nodes = NodeSet::new(proofs.nodes);
    let account =
        nodes.account(state_root, &contract).expect("proof verifies").expect("contract exists");
    let value = nodes.storage(account.storage_root, &slot).expect("storage proof verifies");
    let dev_account = nodes.account(state_root, &dev1).expect("proof verifies").expect("funded");
    nodes.finish().expect("every node was on a proven path");
    let tag = json!(format!("{block_number:#x}"));
    let stored = anvil.rpc("eth_getStorageAt", json!([format!("{contract:?}"), "0x0", tag])).await;
    assert_eq!(value, U256::from(42u64));
    assert_eq!(B256::from(value), b256(&stored));
    let balance = anvil.rpc("eth_getBalance", json!([DEV_ADDRESS_1, tag])).await;
    assert_eq!(
        dev_account.balance,
        U256::from_str(balance.as_str().expect("hex")).expect("quantity")
    );

    // geth's hashed account key is the form a JSON-RPC backend cannot prove: skipped.
    let hashed_key = ProofRequest {
        block_hash,
        account: AccountKey::AccountTrie,
        key: Bytes::copy_from_slice(keccak256(contract).as_slice()),
        from_level: 0,
    };
    let reply = client
        .request(|request_id| {
            LesMessage::GetProofsV2(GetProofsV2 { request_id, requests: vec![hashed_key] })
        })
        .await
        .expect("reply");
    let LesMessage::ProofsV2(hashed) = reply else { panic!("not ProofsV2") };
    assert!(hashed.nodes.is_empty());

    // Code by address, against the proven code hash and anvil's eth_getCode.
    let reply = client
        .request(|request_id| {
            LesMessage::GetContractCodes(GetContractCodes {
                request_id,
                requests: vec![CodeRequest::new(block_hash, contract)],
            })
        })
        .await
        .expect("codes");
    let LesMessage::ContractCodes(codes) = reply else { panic!("not ContractCodes") };
    assert_eq!(codes.codes.len(), 1);
    assert_eq!(keccak256(&codes.codes[0]), account.code_hash);
    let code = anvil.rpc("eth_getCode", json!([format!("{contract:?}"), tag])).await;
    assert_eq!(codes.codes[0].to_vec(), bytes(&code));

    // Body and receipts of the transfer's block, against the header's roots.
    let reply = client
        .request(|request_id| {
            LesMessage::GetBlockBodies(GetBlockBodies {
                request_id,
                block_hashes: vec![block_hash, B256::repeat_byte(9)],
            })
        })
        .await
        .expect("bodies");
    let LesMessage::BlockBodies(bodies) = reply else { panic!("not BlockBodies") };
    assert_eq!(bodies.bodies.len(), 1, "the unknown block is skipped");
    let body = BlockBody::decode(&bodies.bodies[0]).expect("body decodes");
    body.verify(header.header()).expect("transactions root matches");
    assert_eq!(body.transactions().len(), 1);

    let reply = client
        .request(|request_id| {
            LesMessage::GetReceipts(GetReceipts { request_id, block_hashes: vec![block_hash] })
        })
        .await
        .expect("receipts");
    let LesMessage::Receipts(receipts) = reply else { panic!("not Receipts") };
    assert_eq!(receipts.receipts.len(), 1);
    let block_receipts = BlockReceipts::from_items(&receipts.receipts[0]).expect("receipts decode");
    block_receipts.verify(header.header()).expect("receipts root matches");
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_transaction_sent_over_les_is_mined_and_reported_included() {
    let anvil = Anvil::spawn();
    let daemon = start_lesd(anvil.url(), false).await;
    wait_head(&daemon, 0).await;
    let mut client = connect(&daemon, AnnounceType::Simple).await;

    let nonce =
        quantity(&anvil.rpc("eth_getTransactionCount", json!([DEV_ADDRESS_0, "latest"])).await);
    let to = Address::from_str(DEV_ADDRESS_1).expect("address");
    let raw = common::dev_transaction(nonce, 21_000, to, U256::from(7u64), Bytes::new());
    let tx_hash = keccak256(&raw);
    // Typed transactions travel as an RLP byte string.
    let item = Bytes::from(alloy_rlp::encode(&raw[..]));

    let reply = client
        .request(|request_id| {
            LesMessage::SendTxV2(SendTxV2 {
                request_id,
                transactions: vec![item, Bytes::from_static(&[0x82, 0x02, 0xc0])],
            })
        })
        .await
        .expect("send reply");
    let LesMessage::TxStatus(sent) = reply else { panic!("not TxStatus") };
    assert_eq!(sent.statuses.len(), 2, "one status per transaction");
    assert!(
        matches!(sent.statuses[0].status, TxState::Pending | TxState::Included),
        "{:?}",
        sent.statuses[0]
    );
    assert!(sent.statuses[0].error.is_empty());
    assert_eq!(sent.statuses[1].status, TxState::Unknown);
    assert!(
        !sent.statuses[1].error.is_empty(),
        "the node's rejection reason: {:?}",
        sent.statuses[1]
    );

    let receipt = anvil.rpc("eth_getTransactionReceipt", json!([format!("{tx_hash:?}")])).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = client
            .request(|request_id| {
                LesMessage::GetTxStatus(GetTxStatus {
                    request_id,
                    tx_hashes: vec![tx_hash, B256::repeat_byte(1)],
                })
            })
            .await
            .expect("status reply");
        let LesMessage::TxStatus(status) = reply else { panic!("not TxStatus") };
        assert_eq!(status.statuses[1].status, TxState::Unknown);
        if status.statuses[0].status == TxState::Included {
            let lookup = status.statuses[0].lookup.expect("included with its location");
            let receipt = if receipt.is_null() {
                anvil.rpc("eth_getTransactionReceipt", json!([format!("{tx_hash:?}")])).await
            } else {
                receipt
            };
            assert_eq!(lookup.block_hash, b256(&receipt["blockHash"]));
            assert_eq!(lookup.block_number, quantity(&receipt["blockNumber"]));
            break;
        }
        assert!(Instant::now() < deadline, "never reported Included");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.shutdown().await;
}

fn big_header_query(request_id: u64) -> LesMessage {
    LesMessage::GetBlockHeaders(GetBlockHeaders {
        request_id,
        origin: BlockHashOrNumber::Number(0),
        max_headers: 192,
        skip: 0,
        reverse: false,
    })
}

/// Overruns the server's buffer the way a client with a fast clock does: one maximal
/// header request served from the upstream (192 JSON-RPC round trips, so charged near its
/// full cost), then, with the client's clock 7 s ahead, as many more as the client's
/// recharged estimate allows, in one write. The server, at its own time, has not
/// recharged what the first one cost and sees an overrun.
async fn flood(client: &mut LesClient) {
    client.request(big_header_query).await.expect("first request answered");
    client.advance_clock(Duration::from_secs(7));
    while client.queue(big_header_query).is_ok() {}
    client.flush_queued().await.expect("written");
}

#[tokio::test]
async fn a_flooding_client_is_stopped_or_dropped_while_others_are_served() {
    let anvil = Anvil::spawn();
    // Blocks below the head are fetched from the upstream, so serving 192 takes time.
    anvil.mine(300).await;
    let daemon = start_lesd(anvil.url(), false).await;
    wait_head(&daemon, 300).await;
    let mut flooder = connect(&daemon, AnnounceType::None).await;
    let mut polite = connect(&daemon, AnnounceType::None).await;

    flood(&mut flooder).await;
    let stopped = flooder.wait_event(|e| matches!(e, Event::Stopped), WAIT).await;
    assert!(stopped.is_ok(), "les/4 flooder is sent StopMsg: {stopped:?}");
    // The well-behaved client keeps being answered meanwhile.
    let served = headers(&mut polite, BlockHashOrNumber::Number(0), 6, 0, false).await;
    assert_eq!(served.len(), 6);
    assert!(flooder.is_open(), "les/4: frozen, not disconnected");
    let resumed = flooder.wait_event(|e| matches!(e, Event::Resumed { .. }), WAIT).await;
    assert!(resumed.is_ok(), "the frozen client is resumed once recharged: {resumed:?}");

    // les/2 has no Stop: the overrunning client is disconnected.
    let mut old = LesClient::connect(
        &daemon.enode(),
        &ChainInfo::of(&daemon),
        AnnounceType::None,
        vec![LesVersion::Les2],
    )
    .await
    .expect("les/2 client");
    flood(&mut old).await;
    let dropped = old.wait_event(|e| matches!(e, Event::Disconnected { .. }), WAIT).await;
    assert!(
        matches!(dropped, Ok(Event::Disconnected { .. }) | Err(ClientError::Disconnected(_))),
        "{dropped:?}"
    );
    let served = headers(&mut polite, BlockHashOrNumber::Number(1), 2, 0, false).await;
    assert_eq!(served.len(), 2);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_reorg_is_announced_with_a_depth_covering_the_replaced_blocks() {
    let anvil = Anvil::spawn();
    anvil.mine(5).await;
    let snapshot = anvil.rpc("evm_snapshot", json!([])).await;
    anvil.mine(3).await;
    let daemon = start_lesd(anvil.url(), false).await;
    wait_head(&daemon, 8).await;
    let mut client = connect(&daemon, AnnounceType::Signed).await;
    let (first, _) = client.announcement(WAIT).await.expect("head");
    assert_eq!(first.head_number, 8);

    assert_eq!(anvil.rpc("evm_revert", json!([snapshot])).await, json!(true));
    anvil.mine(1).await; // block 6 on the new branch
    let (reorged, signed) = client.announcement(WAIT).await.expect("reorg announced");
    let signed = signed.expect("signed");
    assert_eq!(reorged.head_number, 6);
    assert_eq!(signed.head.hash, b256(&anvil_block(&anvil, json!("latest")).await["hash"]));
    // post-merge rule: falling back from 8 to 6 needs depth >= 8 - 6 + 1.
    assert!(reorged.reorg_depth >= 3, "depth {}", reorged.reorg_depth);
    // The canonical window now serves the new branch.
    let served = headers(&mut client, BlockHashOrNumber::Number(6), 1, 0, false).await;
    assert_eq!(served[0].hash(), signed.head.hash);
    daemon.shutdown().await;
}

/// anvil on a given port (to bring the upstream back where lesd expects it).
struct AnvilOnPort(Child);

impl AnvilOnPort {
    async fn spawn(port: u16) -> Self {
        let child = Command::new(common::anvil_path())
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn anvil");
        let anvil = Self(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "anvil did not come back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anvil
    }
}

impl Drop for AnvilOnPort {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn upstream_down_keeps_clients_and_recovers_when_it_returns() {
    let mut anvil = Anvil::spawn();
    anvil.mine(4).await;
    let port = anvil.port();
    let daemon = start_lesd(anvil.url(), false).await;
    wait_head(&daemon, 4).await;
    let mut client = connect(&daemon, AnnounceType::Simple).await;
    let known = headers(&mut client, BlockHashOrNumber::Number(0), 5, 0, false).await;
    assert_eq!(known.len(), 5);

    anvil.stop();
    // Recent headers still come from the canonical window; everything else is empty.
    let cached = headers(&mut client, BlockHashOrNumber::Number(4), 1, 0, false).await;
    assert_eq!(cached.len(), 1);
    let reply = client
        .request(|request_id| {
            LesMessage::GetBlockBodies(GetBlockBodies {
                request_id,
                block_hashes: vec![known[4].hash()],
            })
        })
        .await
        .expect("answered while the upstream is down");
    let LesMessage::BlockBodies(bodies) = reply else { panic!("not BlockBodies") };
    assert!(bodies.bodies.is_empty());
    let reply = client
        .request(|request_id| {
            LesMessage::GetTxStatus(GetTxStatus {
                request_id,
                tx_hashes: vec![B256::ZERO, B256::repeat_byte(1)],
            })
        })
        .await
        .expect("answered");
    let LesMessage::TxStatus(status) = reply else { panic!("not TxStatus") };
    assert_eq!(status.statuses.len(), 2);
    assert!(status.statuses.iter().all(|s| s.status == TxState::Unknown));
    client.idle(Duration::from_millis(300)).await.expect("still connected");
    assert!(client.is_open());
    assert!(daemon.metrics().upstream_errors() > 0);

    // A new anvil on the same port: lesd follows it and serves from it again.
    let _back = AnvilOnPort::spawn(port).await;
    let url = format!("http://127.0.0.1:{port}");
    let rpc = |method: &'static str, params: Value| {
        let url = url.clone();
        async move {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
            let reply: Value = reqwest::Client::new()
                .post(&url)
                .json(&body)
                .send()
                .await
                .expect("rpc")
                .json()
                .await
                .expect("json");
            reply["result"].clone()
        }
    };
    rpc("anvil_mine", json!(["0x7"])).await;
    let new_head = rpc("eth_getBlockByNumber", json!(["latest", false])).await;
    let (announce, _) =
        client.announcement_at_least(7, WAIT).await.expect("new upstream's head announced");
    assert_eq!(announce.head_hash, b256(&new_head["hash"]));
    let served =
        headers(&mut client, BlockHashOrNumber::Hash(b256(&new_head["hash"])), 1, 0, false).await;
    assert_eq!(served.len(), 1);
    let reply = client
        .request(|request_id| {
            LesMessage::GetBlockBodies(GetBlockBodies {
                request_id,
                block_hashes: vec![b256(&new_head["hash"])],
            })
        })
        .await
        .expect("bodies");
    let LesMessage::BlockBodies(bodies) = reply else { panic!("not BlockBodies") };
    assert_eq!(bodies.bodies.len(), 1, "served from the upstream again");
    daemon.shutdown().await;
}

#[tokio::test]
async fn metrics_endpoint_reports_clients_and_requests() {
    let anvil = Anvil::spawn();
    let daemon = start_lesd(anvil.url(), false).await;
    wait_head(&daemon, 0).await;
    let mut client = connect(&daemon, AnnounceType::None).await;
    headers(&mut client, BlockHashOrNumber::Number(0), 1, 0, false).await;
    let addr = daemon.metrics_addr().expect("metrics enabled");
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(text.contains("lesd_clients 1"), "{text}");
    assert!(text.contains("lesd_requests_total{request=\"GetBlockHeaders\"} 1"), "{text}");
    assert!(text.contains("lesd_head_number 0"), "{text}");
    daemon.shutdown().await;
}

#[test]
fn the_binary_prints_its_enode_keeps_its_key_and_exits_cleanly_on_sigterm() {
    use std::io::BufRead;
    let anvil = Anvil::spawn();
    let datadir = common::temp_dir("binary");
    let run = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lesd"))
            .args([
                "--upstream",
                anvil.url(),
                "--listen",
                "127.0.0.1:0",
                "--poll-interval-ms",
                "100",
            ])
            .arg("--datadir")
            .arg(&datadir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("lesd starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).expect("one line");
        let enode = les::crypto::Enode::from_str(line.trim()).expect("an enode URL");
        assert!(line.starts_with("enode://") && line.trim().contains("@127.0.0.1:"), "{line}");
        let killed =
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("lesd did not exit on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "exit status {status}");
        enode
    };
    let first = run();
    assert!(datadir.join("nodekey").exists());
    let second = run();
    assert_eq!(first.public_key, second.public_key, "the node key is generated once");
    let _ = std::fs::remove_dir_all(&datadir);
}
