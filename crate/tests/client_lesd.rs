//! The client core against real servers: three lesd in front of a real anvil, over real TCP
//! on 127.0.0.1. The head is accepted by the ULC quorum; everything the core returns is
//! compared with what anvil itself says.
#![cfg(not(target_arch = "wasm32"))] // native: real lesd and anvil processes

mod support;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use serde_json::json;
use std::str::FromStr;
use std::time::{Duration, Instant};
use support::common::{self, DEV_ADDRESS_0, DEV_ADDRESS_1, quantity};
use support::{Devnet, NextEvent, WAIT, hex, run, start_client, trusted};
use ulc::chain::{Chain, ClientEvent};
use ulc::config::ServerSpec;
use ulc::store::MemoryStore;

#[test]
fn quorum_head_headers_state_and_code_match_anvil() {
    run(async {
        let devnet = Devnet::start(3).await;
        // 75 % of 3 needs all three to sign the same head.
        let client = start_client(&devnet.config(75), MemoryStore::new()).await;
        let mut events = client.events();
        let head = client.head().await.expect("a head is accepted");
        assert!(!head.stale);
        assert_eq!(head.signers.len(), 3, "all three trusted servers signed it");
        let anvil_block = devnet
            .anvil
            .rpc("eth_getBlockByNumber", json!([format!("{:#x}", head.header.number()), false]))
            .await;
        assert_eq!(format!("{:#x}", head.header.hash()), hex(&anvil_block["hash"]));
        match events.next_event().await {
            Some(ClientEvent::Connected) => {}
            other => panic!("first event should be Connected, got {other:?}"),
        }

        // A newer head arrives as anvil mines (1 s blocks).
        let deadline = Instant::now() + WAIT;
        let newer = loop {
            let now = client.head().await.expect("head");
            if now.header.number() > head.header.number() {
                break now;
            }
            assert!(Instant::now() < deadline, "no newer head accepted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };

        // Canonical headers below the head, verified by the parent-hash chain.
        for number in [0u64, 1, newer.header.number() - 1] {
            let header = client.header_by_number(number).await.expect("header").expect("exists");
            let block = devnet
                .anvil
                .rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), false]))
                .await;
            assert_eq!(format!("{:#x}", header.hash()), hex(&block["hash"]), "block {number}");
            assert!(client.is_canonical(&header).await.expect("canonical check"));
            let by_hash =
                client.header_by_hash(header.hash()).await.expect("by hash").expect("known");
            assert_eq!(by_hash.hash(), header.hash());
        }
        assert!(
            client
                .header_by_number(newer.header.number() + 1000)
                .await
                .expect("above head")
                .is_none()
        );
        assert!(client.header_by_hash(B256::repeat_byte(7)).await.expect("unknown hash").is_none());

        // State: balance, nonce, code and storage, proven against the state root.
        let contract = Address::repeat_byte(0x42);
        let code = Bytes::from_static(&[0x60, 0x01, 0x60, 0x00, 0x55, 0x00]);
        devnet
            .anvil
            .rpc("anvil_setCode", json!([format!("{contract:#x}"), format!("{code}")]))
            .await;
        let slot = B256::with_last_byte(3);
        let value = B256::with_last_byte(0x99);
        devnet
            .anvil
            .rpc(
                "anvil_setStorageAt",
                json!([format!("{contract:#x}"), format!("{slot}"), format!("{value}")]),
            )
            .await;
        devnet.anvil.mine(1).await;
        let target = devnet.anvil.rpc("eth_blockNumber", json!([])).await;
        let target = quantity(&target);
        let deadline = Instant::now() + WAIT;
        let head = loop {
            let head = client.head().await.expect("head");
            if head.header.number() >= target {
                break head;
            }
            assert!(Instant::now() < deadline, "the client did not reach block {target}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let block_tag = format!("{:#x}", head.header.number());
        let dev0 = Address::from_str(DEV_ADDRESS_0).expect("address");
        let state = client.account(&head.header, dev0, vec![]).await.expect("account proof");
        let account = state.account.expect("dev account exists");
        let balance = devnet.anvil.rpc("eth_getBalance", json!([DEV_ADDRESS_0, block_tag])).await;
        assert_eq!(format!("{:#x}", account.balance), hex(&balance));
        let nonce =
            devnet.anvil.rpc("eth_getTransactionCount", json!([DEV_ADDRESS_0, block_tag])).await;
        assert_eq!(account.nonce, quantity(&nonce));

        let state = client
            .account(&head.header, contract, vec![slot, B256::with_last_byte(4)])
            .await
            .expect("storage proof");
        let account = state.account.expect("contract exists");
        assert_eq!(state.storage[0].1, U256::from(0x99));
        assert_eq!(state.storage[1].1, U256::ZERO, "an unset slot proves as zero");
        let proven_code =
            client.code(&head.header, contract, account.code_hash).await.expect("code");
        assert_eq!(proven_code, code);
        let absent = client
            .account(&head.header, Address::repeat_byte(0xee), vec![])
            .await
            .expect("absence proof");
        assert!(absent.account.is_none());

        let metrics = client.metrics();
        assert!(metrics["bytesIn"].as_u64().unwrap_or(0) > 0);
        assert_eq!(metrics["verificationFailures"], 0);
        assert_eq!(metrics["servers"].as_array().map(Vec::len), Some(3));
        client.stop();
        devnet.shutdown().await;
    });
}

#[test]
fn transaction_sent_mined_located_and_its_block_verified() {
    run(async {
        let devnet = Devnet::start(2).await;
        let client = start_client(&devnet.config(100), MemoryStore::new()).await;
        client.head().await.expect("head");
        let nonce =
            devnet.anvil.rpc("eth_getTransactionCount", json!([DEV_ADDRESS_0, "pending"])).await;
        let to = Address::from_str(DEV_ADDRESS_1).expect("address");
        let raw = common::dev_transaction(
            quantity(&nonce),
            21_000,
            to,
            U256::from(12_345u64),
            Bytes::new(),
        );
        let hash = client.send_raw_transaction(raw.clone()).await.expect("sent");
        assert_eq!(hash, keccak256(&raw));

        let deadline = Instant::now() + WAIT;
        let lookup = loop {
            if let Some(lookup) = client.transaction_location(hash).await.expect("status") {
                break lookup;
            }
            assert!(Instant::now() < deadline, "transaction never included");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // The block must reach the accepted head before it can be checked as canonical.
        let deadline = Instant::now() + WAIT;
        while client.head().await.expect("head").header.number() < lookup.block_number {
            assert!(Instant::now() < deadline, "head never reached the block");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let header =
            client.header_by_hash(lookup.block_hash).await.expect("header").expect("exists");
        assert!(client.is_canonical(&header).await.expect("canonical"));
        let body = client.body(&header).await.expect("body verifies");
        let index = usize::try_from(lookup.index).expect("index");
        let tx = &body.body.transactions()[index];
        assert_eq!(*tx.tx_hash(), hash);
        assert_eq!(body.senders[index], Address::from_str(DEV_ADDRESS_0).expect("address"));
        let receipts = client.receipts(&header).await.expect("receipts verify");
        assert!(receipts.receipts()[index].status());

        // A transaction nobody can take is refused with the servers' reason.
        let refused = client.send_raw_transaction(raw).await;
        assert!(
            refused.is_err() || refused == Ok(hash),
            "a resend is refused or idempotent: {refused:?}"
        );
        client.stop();
        devnet.shutdown().await;
    });
}

#[test]
fn warm_start_restores_the_head_stale_until_a_fresh_quorum() {
    run(async {
        let devnet = Devnet::start(2).await;
        let config = devnet.config(100);
        let store = MemoryStore::new();
        let first = start_client(&config, store.clone()).await;
        let head = first.head().await.expect("head");
        first.stop();
        drop(first);

        let second = start_client(&config, store).await;
        let restored = second.current_head().expect("restored at once, before any connection");
        assert!(restored.stale, "a restored head is stale");
        assert!(restored.header.number() >= head.header.number());
        let deadline = Instant::now() + WAIT;
        loop {
            let now = second.head().await.expect("head");
            if !now.stale && now.header.number() > restored.header.number() {
                break;
            }
            assert!(Instant::now() < deadline, "no fresh quorum replaced the restored head");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        second.stop();
        devnet.shutdown().await;
    });
}

/// The browser's path, natively: every server reached through a real les-bridge over
/// WebSocket (`ws://bridge/host:port`), RLPx end to end through it.
#[test]
fn through_les_bridge_over_websocket() {
    run(async {
        let devnet = Devnet::start(2).await;
        let allow: les_bridge::AllowList = devnet
            .servers
            .iter()
            .map(|d| les_bridge::Target::from_socket_addr(d.local_addr()))
            .collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind bridge");
        let bridge_addr = listener.local_addr().expect("bridge address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let bridge = tokio::spawn(les_bridge::serve(
            les_bridge::BridgeConfig::new(allow),
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        let servers = devnet
            .servers
            .iter()
            .map(|d| ServerSpec {
                bridge: Some(format!("ws://{bridge_addr}/{}", d.local_addr())),
                ..trusted(&d.enode().to_string())
            })
            .collect();
        let client = start_client(&devnet.config_with(servers, 100), MemoryStore::new()).await;
        // Past genesis: anvil's genesis header commits to the empty state root.
        let deadline = Instant::now() + WAIT;
        let head = loop {
            let head = client.head().await.expect("a quorum head through the bridge");
            if head.header.number() >= 1 {
                break head;
            }
            assert!(Instant::now() < deadline, "no head past genesis");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            format!("{:#x}", head.header.hash()),
            devnet.block_hash(head.header.number()).await
        );
        assert_eq!(client.connected_servers(), 2);
        let dev0 = Address::from_str(DEV_ADDRESS_0).expect("address");
        let state =
            client.account(&head.header, dev0, vec![]).await.expect("proof through the bridge");
        let block_tag = format!("{:#x}", head.header.number());
        let balance = devnet.anvil.rpc("eth_getBalance", json!([DEV_ADDRESS_0, block_tag])).await;
        assert_eq!(format!("{:#x}", state.account.expect("exists").balance), hex(&balance));
        client.stop();
        let _ = stop.send(());
        let _ = bridge.await;
        devnet.shutdown().await;
    });
}

/// An untrusted server serves data but never moves the head: with one trusted and one
/// untrusted server, only the trusted one signs accepted heads, and once the trusted one is
/// gone the head stays where it was while the untrusted one still serves verified data.
#[test]
fn untrusted_servers_serve_data_but_never_move_the_head() {
    run(async {
        let mut devnet = Devnet::start(2).await;
        let untrusted =
            ServerSpec { trusted: false, ..trusted(&devnet.servers[1].enode().to_string()) };
        let servers = vec![trusted(&devnet.servers[0].enode().to_string()), untrusted];
        let client = start_client(&devnet.config_with(servers, 100), MemoryStore::new()).await;
        let deadline = Instant::now() + WAIT;
        let head = loop {
            let head = client.head().await.expect("head");
            if head.header.number() >= 2 {
                break head;
            }
            assert!(Instant::now() < deadline, "no head at block 2");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(head.signers, vec![devnet.servers[0].enode().node_id()]);

        devnet.servers.remove(0).shutdown().await;
        let frozen = client.current_head().expect("head").header;
        // anvil mines a block a second: a head that followed it would move within 3 s.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = client.head().await.expect("the untrusted server keeps the client connected");
        assert_eq!(now.header.hash(), frozen.hash(), "an untrusted server moved the head");
        let parent =
            client.header_by_number(frozen.number() - 1).await.expect("served").expect("exists");
        assert_eq!(format!("{:#x}", parent.hash()), devnet.block_hash(frozen.number() - 1).await);
        let account = client
            .account(&frozen, Address::from_str(DEV_ADDRESS_0).expect("address"), vec![])
            .await;
        assert!(account.expect("a proof from the untrusted server").account.is_some());
        assert_eq!(client.metrics()["verificationFailures"], 0);
        client.stop();
        devnet.shutdown().await;
    });
}
