//! `eth_call`, `eth_estimateGas` and `eth_createAccessList` executed in the client (revm
//! over proven state) against real lesd in front of a real anvil: every answer must equal
//! anvil's own for the same request (result, or error code 3 with the same revert data),
//! an estimate must be one that a real transaction succeeds with, and a lying server must
//! never turn into a wrong answer.
#![cfg(not(target_arch = "wasm32"))] // native: real lesd and anvil processes

mod support;

use alloy_primitives::{Address, Bytes, U256, keccak256};
use serde_json::{Value, json};
use std::rc::Rc;
use std::str::FromStr;
use support::adversary::{Adversary, Lie};
use support::common::{self, Anvil, DEV_ADDRESS_0, DEV_ADDRESS_1, quantity};
use support::{Devnet, NativeClient, WAIT, hex, run, start_client, trusted};
use ulc::chain::Chain;
use ulc::provider::Provider;
use ulc::store::MemoryStore;

const BALANCE_OF: &str = "70a08231";
const ALLOWANCE: &str = "dd62ed3e";
const TOTAL_SUPPLY: &str = "18160ddd";
const TRANSFER: &str = "a9059cbb";
const APPROVE: &str = "095ea7b3";

fn word(address: &str) -> String {
    format!("{:0>64}", address.trim_start_matches("0x").to_lowercase())
}

fn amount(value: u128) -> String {
    format!("{value:064x}")
}

fn calldata(selector: &str, words: &[String]) -> String {
    format!("0x{selector}{}", words.concat())
}

/// Sends a transaction from an unlocked dev account and waits for its receipt.
async fn send(anvil: &Anvil, tx: Value) -> Value {
    let hash = anvil.rpc("eth_sendTransaction", json!([tx])).await;
    receipt(anvil, &hash).await
}

async fn receipt(anvil: &Anvil, hash: &Value) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let receipt = anvil.rpc("eth_getTransactionReceipt", json!([hash])).await;
        if !receipt.is_null() {
            return receipt;
        }
        assert!(std::time::Instant::now() < deadline, "no receipt for {hash}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Deploys DemoToken with `supply` from dev account 0; its address.
async fn deploy_token(anvil: &Anvil, supply: u128) -> String {
    let artifact: Value =
        serde_json::from_str(include_str!("../../contracts/artifacts/DemoToken.json"))
            .expect("artifact");
    let code = artifact["bytecode"].as_str().expect("bytecode");
    let data = format!("{code}{}", amount(supply));
    let receipt = send(anvil, json!({"from": DEV_ADDRESS_0, "data": data})).await;
    assert_eq!(receipt["status"], "0x1", "deployment");
    hex(&receipt["contractAddress"])
}

/// A hand-assembled forwarder: STATICCALLs `target` with its own calldata and returns (or
/// reverts with) what came back.
fn forwarder_code(target: &str) -> String {
    let target = target.trim_start_matches("0x");
    format!("0x365f5f375f5f365f73{target}5afa3d5f5f3e602957 3d5ffd5b3d5ff3").replace(' ', "")
}

/// Waits until the client's head has reached anvil's.
async fn follow(client: &NativeClient, anvil: &Anvil) {
    let target = quantity(&anvil.rpc("eth_blockNumber", json!([])).await);
    let deadline = std::time::Instant::now() + WAIT;
    while client.head().await.map(|h| h.header.number()).unwrap_or(0) < target {
        assert!(std::time::Instant::now() < deadline, "the client did not reach {target}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Our answer and anvil's for one request: equal results, or equal errors (code and data).
async fn same_as_anvil(
    provider: &Provider<NativeClient>,
    anvil: &Anvil,
    method: &str,
    params: Value,
) -> Result<Value, Value> {
    let ours = provider.request(method, params.clone()).await.map_err(|e| e.to_json());
    let theirs = anvil.try_rpc(method, params.clone()).await;
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{method}({params})"),
        (Err(a), Err(b)) => {
            assert_eq!(a["code"], b["code"], "{method}({params}): ours {a}, anvil's {b}");
            assert_eq!(a["data"], b["data"], "{method}({params}): ours {a}, anvil's {b}");
        }
        _ => panic!("{method}({params}): ours {ours:?}, anvil's {theirs:?}"),
    }
    ours
}

fn sign(nonce: u64, to: &str, data: &str, gas: u64) -> String {
    let to = Address::from_str(to).expect("address");
    let input = Bytes::from_str(data).expect("data");
    format!("{}", common::dev_transaction(nonce, gas, to, U256::ZERO, input))
}

/// Sorted `[address, [keys]]` of an access-list result (anvil's order is a hash map's).
fn normalized(list: &Value) -> Vec<(String, Vec<String>)> {
    let mut items: Vec<(String, Vec<String>)> = list
        .as_array()
        .expect("accessList")
        .iter()
        .map(|item| {
            let mut keys: Vec<String> =
                item["storageKeys"].as_array().expect("storageKeys").iter().map(hex).collect();
            keys.sort();
            (hex(&item["address"]), keys)
        })
        .collect();
    items.sort();
    items
}

#[test]
fn calls_estimates_and_access_lists_equal_anvil() {
    run(async {
        let devnet = Devnet::start(1).await;
        let anvil = &devnet.anvil;
        let token = deploy_token(anvil, 1_000_000_000_000_000_000_000).await;
        let other = deploy_token(anvil, 5_000).await;
        let approved = send(
            anvil,
            json!({"from": DEV_ADDRESS_0, "to": token,
                   "data": calldata(APPROVE, &[word(DEV_ADDRESS_1), amount(777)])}),
        )
        .await;
        assert_eq!(approved["status"], "0x1");
        let forwarder = "0x00000000000000000000000000000000f0f0f0f0";
        anvil.rpc("anvil_setCode", json!([forwarder, forwarder_code(&token)])).await;
        anvil.mine(1).await;

        let client = start_client(&devnet.config(100), MemoryStore::new()).await;
        follow(&client, anvil).await;
        let provider = Provider::new(client.clone());
        let at = format!("{:#x}", client.head().await.expect("head").header.number());

        // ERC-20 reads, each equal to anvil's at the same block.
        let reads = [
            (token.clone(), calldata(BALANCE_OF, &[word(DEV_ADDRESS_0)])),
            (token.clone(), calldata(BALANCE_OF, &[word(DEV_ADDRESS_1)])),
            (token.clone(), calldata(ALLOWANCE, &[word(DEV_ADDRESS_0), word(DEV_ADDRESS_1)])),
            (token.clone(), calldata(TOTAL_SUPPLY, &[])),
            (other.clone(), calldata(TOTAL_SUPPLY, &[])),
            // Two contracts: the forwarder STATICCALLs the token.
            (forwarder.to_string(), calldata(BALANCE_OF, &[word(DEV_ADDRESS_0)])),
            // Precompiles: sha256("abc") and ecrecover of garbage (empty output).
            ("0x0000000000000000000000000000000000000002".into(), "0x616263".into()),
            (
                "0x0000000000000000000000000000000000000001".into(),
                format!("0x{}", "11".repeat(128)),
            ),
        ];
        for (to, data) in &reads {
            let result = same_as_anvil(
                &provider,
                anvil,
                "eth_call",
                json!([{"from": DEV_ADDRESS_0, "to": to, "data": data}, at]),
            )
            .await
            .unwrap_or_else(|e| panic!("eth_call {to} {data}: {e}"));
            assert!(result.is_string());
        }
        let sha = provider
            .request(
                "eth_call",
                json!([{"to": "0x0000000000000000000000000000000000000002", "data": "0x616263"}]),
            )
            .await
            .expect("sha256");
        assert_eq!(sha, json!(format!("{}", alloy_primitives::B256::from(sha256_abc()))));

        // Reverts: code 3, the revert data, geth's message with the reason.
        let overdraw = calldata(TRANSFER, &[word(DEV_ADDRESS_0), amount(1)]);
        let revert = json!([{"from": DEV_ADDRESS_1, "to": token, "data": overdraw}, at]);
        let error = same_as_anvil(&provider, anvil, "eth_call", revert.clone())
            .await
            .expect_err("transfer beyond the balance reverts");
        assert_eq!(error["code"], 3);
        assert_eq!(error["message"], "execution reverted: DemoToken: balance exceeded");
        // Through the forwarder (the revert is re-raised with the same data).
        let nested = json!([{"from": DEV_ADDRESS_1, "to": forwarder, "data": calldata(TRANSFER, &[word(DEV_ADDRESS_0), amount(1)])}, at]);
        let nested = same_as_anvil(&provider, anvil, "eth_call", nested).await;
        assert!(nested.is_err(), "a STATICCALL'd transfer reverts: {nested:?}");

        // State overrides change the answer as they do anvil's.
        let supply = calldata(TOTAL_SUPPLY, &[]);
        let slot0 = format!("0x{}", "00".repeat(32));
        let overridden = same_as_anvil(
            &provider,
            anvil,
            "eth_call",
            json!([{"to": token, "data": supply}, at,
                   {token.clone(): {"stateDiff": {slot0.clone(): format!("0x{}", amount(42))}}}]),
        )
        .await
        .expect("override");
        assert_eq!(overridden, json!(format!("0x{}", amount(42))));
        let fresh = "0x00000000000000000000000000000000000000c0";
        let constant = same_as_anvil(
            &provider,
            anvil,
            "eth_call",
            json!([{"to": fresh, "data": "0x"}, at, {fresh: {"code": "0x602a5f5260205ff3"}}]),
        )
        .await
        .expect("code override");
        assert_eq!(constant, json!(format!("0x{}", amount(42))));
        let rich = same_as_anvil(
            &provider,
            anvil,
            "eth_call",
            json!([{"from": DEV_ADDRESS_1, "to": token, "data": overdraw}, at,
                   {token.clone(): {"stateDiff": {
                       format!("{}", keccak256(alloy_primitives::hex::decode(format!("{}{}", word(DEV_ADDRESS_1), amount(1))).expect("hex"))):
                       format!("0x{}", amount(5))}}}]),
        )
        .await
        .expect("with an overridden balance the transfer succeeds");
        assert_eq!(rich, json!(format!("0x{}", amount(1))));

        // Access lists: equal to anvil's (as sets), gas used equal.
        let ours = provider
            .request("eth_createAccessList", json!([{"from": DEV_ADDRESS_0, "to": forwarder, "data": calldata(BALANCE_OF, &[word(DEV_ADDRESS_0)])}, at]))
            .await
            .expect("access list");
        let theirs = anvil
            .rpc("eth_createAccessList", json!([{"from": DEV_ADDRESS_0, "to": forwarder, "data": calldata(BALANCE_OF, &[word(DEV_ADDRESS_0)])}, at]))
            .await;
        assert_eq!(normalized(&ours["accessList"]), normalized(&theirs["accessList"]));
        assert_eq!(ours["gasUsed"], theirs["gasUsed"], "gasUsed: ours {ours}, anvil's {theirs}");

        // Estimates. A plain transfer is 21000 in both.
        let plain = json!([{"from": DEV_ADDRESS_0, "to": DEV_ADDRESS_1, "value": "0x1"}, at]);
        same_as_anvil(&provider, anvil, "eth_estimateGas", plain).await.expect("transfer");
        // A revert at the cap is code 3 with the data, as anvil's.
        let error = same_as_anvil(&provider, anvil, "eth_estimateGas", revert).await;
        assert_eq!(error.expect_err("reverts")["code"], 3);
        // A token transfer: both are geth's binary search, which stops within 1.5 % above
        // the least gas that succeeds; a transaction sent with ours must succeed.
        let pay = calldata(TRANSFER, &[word(DEV_ADDRESS_1), amount(1_000)]);
        let call = json!({"from": DEV_ADDRESS_0, "to": token, "data": pay});
        let ours = provider.request("eth_estimateGas", json!([call, at])).await.expect("estimate");
        let theirs = anvil.rpc("eth_estimateGas", json!([call, at])).await;
        let (ours_gas, theirs_gas) = (quantity(&ours), quantity(&theirs));
        let spread = ours_gas.abs_diff(theirs_gas) as f64 / theirs_gas as f64;
        assert!(spread <= 0.015, "estimate {ours_gas} vs anvil's {theirs_gas}");
        let nonce =
            quantity(&anvil.rpc("eth_getTransactionCount", json!([DEV_ADDRESS_0, "latest"])).await);
        let raw = sign(nonce, &token, &pay, ours_gas);
        let hash = provider.request("eth_sendRawTransaction", json!([raw])).await.expect("sent");
        let mined = receipt(anvil, &hash).await;
        assert_eq!(mined["status"], "0x1", "a transaction with the estimate succeeds");

        let metrics = provider.request("ulc_metrics", json!([])).await.expect("metrics");
        let evm = &metrics["evm"];
        assert!(evm["calls"].as_u64().unwrap_or(0) >= 15, "{evm}");
        assert!(evm["proofRequests"].as_u64().unwrap_or(0) > 0, "{evm}");
        eprintln!("evm metrics: {evm}");
        client.stop();
        devnet.shutdown().await;
    });
}

fn sha256_abc() -> [u8; 32] {
    // sha256("abc"), FIPS 180-2 appendix B.1.
    let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let mut out = [0u8; 32];
    alloy_primitives::hex::decode_to_slice(hex, &mut out).expect("hex");
    out
}

/// A liar first in the configuration (asked first) and one honest lesd: whatever the lie —
/// a proof missing a node, an inflated balance, wrong code — an eth_call is anvil's answer
/// or a verification error (-32050), never a wrong result. Each lie gets a fresh provider,
/// so nothing is answered from a cache filled while the liar was honest.
#[test]
fn a_lying_server_never_makes_a_call_wrong() {
    run(async {
        let devnet = Devnet::start(1).await;
        let anvil = &devnet.anvil;
        let token = deploy_token(anvil, 1_000_000).await;
        anvil.mine(1).await;
        let liar = Adversary::start(anvil.url(), Lie::None).await;
        let honest = devnet.servers[0].enode().to_string();
        let config = devnet.config_with(vec![trusted(&liar.enode()), trusted(&honest)], 100);
        let client: Rc<NativeClient> = start_client(&config, MemoryStore::new()).await;
        follow(&client, anvil).await;
        let at = format!("{:#x}", client.head().await.expect("head").header.number());
        let call = json!([{"from": DEV_ADDRESS_0, "to": token, "data": calldata(BALANCE_OF, &[word(DEV_ADDRESS_0)])}, at]);
        let truth = anvil.rpc("eth_call", call.clone()).await;
        for lie in [Lie::ProofNode, Lie::ProofBalance, Lie::Code] {
            liar.set_lie(lie);
            let provider = Provider::new(client.clone());
            match provider.request("eth_call", call.clone()).await {
                Ok(result) => assert_eq!(result, truth, "{lie:?}: a wrong answer"),
                Err(error) => assert_eq!(error.code, -32050, "{lie:?}: {error:?}"),
            }
            let value = json!([{"from": DEV_ADDRESS_0, "to": DEV_ADDRESS_1, "value": "0x1"}, at]);
            match provider.request("eth_estimateGas", value).await {
                Ok(result) => assert_eq!(result, json!("0x5208"), "{lie:?}"),
                Err(error) => assert_eq!(error.code, -32050, "{lie:?}: {error:?}"),
            }
        }
        assert!(liar.lies() > 0, "the liar was never asked");
        client.stop();
        devnet.shutdown().await;
    });
}
