//! The EIP-1193 provider over the client core, against three real lesd in front of a real
//! anvil: every answer must equal what anvil itself returns for the same request (field by
//! field, for every field the provider sends), and bad requests get their EIP-1474 /
//! EIP-1193 error codes.
#![cfg(not(target_arch = "wasm32"))] // native: real lesd and anvil processes

mod support;

use alloy_primitives::{Address, Bytes, U256};
use serde_json::{Value, json};
use std::str::FromStr;
use std::time::Instant;
use support::common::{self, DEV_ADDRESS_0, DEV_ADDRESS_1, quantity};
use support::{Devnet, WAIT, assert_same, run, start_client};
use ulc::provider::ProviderNotice;
use ulc::store::MemoryStore;

fn signed_transfer(nonce: u64, value: u64) -> String {
    let to = Address::from_str(DEV_ADDRESS_1).expect("address");
    format!("{}", common::dev_transaction(nonce, 21_000, to, U256::from(value), Bytes::new()))
}

#[test]
fn provider_answers_equal_anvil() {
    run(async {
        let devnet = Devnet::start(3).await;
        let client = start_client(&devnet.config(75), MemoryStore::new()).await;
        let (provider, notices, pump) = support::start_provider(&client);
        let ask = |method: &'static str, params: Value| {
            let provider = provider.clone();
            async move {
                provider.request(method, params).await.unwrap_or_else(|e| panic!("{method}: {e:?}"))
            }
        };

        assert_eq!(ask("eth_chainId", json!([])).await, json!("0x7a69"));
        assert_eq!(ask("net_version", json!([])).await, json!("31337"));
        let subscription = ask("eth_subscribe", json!(["newHeads"])).await;

        // A transaction from the provider, mined by anvil.
        let nonce = quantity(
            &devnet.anvil.rpc("eth_getTransactionCount", json!([DEV_ADDRESS_0, "latest"])).await,
        );
        let raw = signed_transfer(nonce, 777);
        let tx_hash = ask("eth_sendRawTransaction", json!([raw])).await;
        let anvil_receipt = loop {
            let receipt = devnet.anvil.rpc("eth_getTransactionReceipt", json!([tx_hash])).await;
            if !receipt.is_null() {
                break receipt;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        let block_number = quantity(&anvil_receipt["blockNumber"]);
        let deadline = Instant::now() + WAIT;
        while quantity(&ask("eth_blockNumber", json!([])).await) < block_number + 1 {
            assert!(Instant::now() < deadline, "head never passed the transaction's block");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let tag = format!("{block_number:#x}");

        // Receipts and transactions.
        let receipt = ask("eth_getTransactionReceipt", json!([tx_hash])).await;
        assert_same("receipt", &receipt, &anvil_receipt);
        let tx = ask("eth_getTransactionByHash", json!([tx_hash])).await;
        assert_same(
            "transaction",
            &tx,
            &devnet.anvil.rpc("eth_getTransactionByHash", json!([tx_hash])).await,
        );
        let unknown = format!("0x{}", "ab".repeat(32));
        assert_eq!(ask("eth_getTransactionReceipt", json!([unknown])).await, Value::Null);
        assert_eq!(ask("eth_getTransactionByHash", json!([unknown])).await, Value::Null);
        let receipts = ask("eth_getBlockReceipts", json!([tag])).await;
        assert_same(
            "blockReceipts",
            &receipts,
            &devnet.anvil.rpc("eth_getBlockReceipts", json!([tag])).await,
        );

        // Blocks, with hashes and with full transactions, by number and by hash.
        for full in [false, true] {
            let ours = ask("eth_getBlockByNumber", json!([tag, full])).await;
            let theirs = devnet.anvil.rpc("eth_getBlockByNumber", json!([tag, full])).await;
            assert_same("block", &ours, &theirs);
            let by_hash = ask("eth_getBlockByHash", json!([theirs["hash"], full])).await;
            assert_same("blockByHash", &by_hash, &theirs);
        }
        assert_eq!(ask("eth_getBlockByNumber", json!(["0xffffff", false])).await, Value::Null);
        let earliest = ask("eth_getBlockByNumber", json!(["earliest", false])).await;
        assert_eq!(earliest["hash"], json!(format!("{:#x}", devnet.genesis)));
        let eip1898 = ask(
            "eth_getBalance",
            json!([DEV_ADDRESS_1, {"blockHash": receipt["blockHash"], "requireCanonical": true}]),
        )
        .await;
        assert_eq!(eip1898, devnet.anvil.rpc("eth_getBalance", json!([DEV_ADDRESS_1, tag])).await);

        // State at that block, and a contract's code and storage at the head.
        for (method, params) in [
            ("eth_getBalance", json!([DEV_ADDRESS_0, tag])),
            ("eth_getBalance", json!([DEV_ADDRESS_1, tag])),
            ("eth_getBalance", json!(["0x00000000000000000000000000000000000000ee", tag])),
            ("eth_getTransactionCount", json!([DEV_ADDRESS_0, tag])),
            ("eth_getCode", json!([DEV_ADDRESS_0, tag])),
            ("eth_getProof", json!([DEV_ADDRESS_0, [], tag])),
        ] {
            let ours = ask(method, params.clone()).await;
            assert_same(method, &ours, &devnet.anvil.rpc(method, params).await);
        }
        let contract = "0x4242424242424242424242424242424242424242";
        devnet.anvil.rpc("anvil_setCode", json!([contract, "0x600160005500"])).await;
        devnet
            .anvil
            .rpc("anvil_setStorageAt", json!([contract, "0x0", format!("0x{:064x}", 0x1234)]))
            .await;
        devnet.anvil.mine(1).await;
        let target = quantity(&devnet.anvil.rpc("eth_blockNumber", json!([])).await);
        let deadline = Instant::now() + WAIT;
        while quantity(&ask("eth_blockNumber", json!([])).await) < target {
            assert!(Instant::now() < deadline, "head never reached {target}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let at = format!("{target:#x}");
        for (method, params) in [
            ("eth_getCode", json!([contract, at])),
            ("eth_getStorageAt", json!([contract, "0x0", at])),
            ("eth_getStorageAt", json!([contract, "0x1", at])),
            (
                "eth_getProof",
                json!([contract, [format!("0x{:064x}", 0), format!("0x{:064x}", 1)], at]),
            ),
        ] {
            let ours = ask(method, params.clone()).await;
            assert_same(method, &ours, &devnet.anvil.rpc(method, params).await);
        }

        // Errors: EIP-1193 and EIP-1474 codes.
        for (method, params, code) in [
            ("eth_requestAccounts", json!([]), 4100),
            ("eth_sendTransaction", json!([{}]), 4100),
            ("eth_noSuchMethod", json!([]), 4200),
            ("eth_fillTransaction", json!([{}]), -32601),
            ("eth_getBalance", json!(["0x1234", "latest"]), -32602),
            ("eth_getBalance", json!([DEV_ADDRESS_0, "0x01"]), -32602),
            ("eth_sendRawTransaction", json!(["0xdeadbeef"]), -32602),
        ] {
            let error = provider.request(method, params).await.expect_err(method);
            assert_eq!(error.code, code, "{method}: {error:?}");
        }
        assert_eq!(ask("eth_accounts", json!([])).await, json!([]));
        let envelope: Value =
            serde_json::from_str(&provider.request_json("{not json").await).expect("JSON");
        assert_eq!(envelope["error"]["code"], -32700);

        // The subscription delivered verified new heads, and the provider said connect.
        assert!(ask("eth_unsubscribe", json!([subscription])).await == json!(true));
        let notices: Vec<ProviderNotice> = notices.borrow().clone();
        assert!(
            notices
                .iter()
                .any(|n| matches!(n, ProviderNotice::Connect { chain_id } if chain_id == "0x7a69"))
        );
        let heads: Vec<&Value> = notices
            .iter()
            .filter_map(|n| match n {
                ProviderNotice::Message { subscription: id, result }
                    if json!(id) == subscription =>
                {
                    Some(result)
                }
                _ => None,
            })
            .collect();
        assert!(!heads.is_empty(), "newHeads notifications arrived");
        for head in heads {
            let number = head["number"].as_str().expect("number").to_string();
            let theirs = devnet.anvil.rpc("eth_getBlockByNumber", json!([number, false])).await;
            assert_eq!(head["hash"], theirs["hash"]);
        }
        pump.abort();
        client.stop();
        devnet.shutdown().await;
    });
}
