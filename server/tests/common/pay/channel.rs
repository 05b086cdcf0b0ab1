//! The PaymentChannel contract (contracts/artifacts/PaymentChannel.json) on a test anvil:
//! deploying it, opening a channel from anvil's first dev account (whose cheques that account
//! or a delegated signer signs), and reading a channel's on-chain state, for the tests that pay
//! lesd with channel cheques.

use crate::common::{Anvil, DEV_ADDRESS_0};
use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;
use serde_json::{Value, json};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

alloy_sol_types::sol! {
    function open(address payee, address signer, uint64 expiry) external payable returns (bytes32 id);
    function channels(bytes32 id) external view returns (address payer, address payee, uint128 deposit, uint128 paidOut, uint64 expiry, bool closed, address signer);
}

/// A channel's state as the contract's `channels(id)` returns it.
pub type OnChain = channelsReturn;

/// How long a transaction may take to be mined on automining anvil.
const MINED_WITHIN: Duration = Duration::from_secs(10);

/// `0x` + lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("0x{digits}")
}

/// The bytes of a `0x…` hex JSON string.
pub fn hex_bytes(value: &Value) -> Vec<u8> {
    let text = value.as_str().unwrap_or_else(|| panic!("not a hex string: {value}"));
    let text = text.trim_start_matches("0x");
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex digit"))
        .collect()
}

/// Sends a transaction from an unlocked anvil account, waits for its receipt and checks it
/// succeeded.
pub async fn transact(anvil: &Anvil, tx: Value) -> Value {
    let hash = anvil.rpc("eth_sendTransaction", json!([tx])).await;
    let deadline = Instant::now() + MINED_WITHIN;
    loop {
        let receipt = anvil.rpc("eth_getTransactionReceipt", json!([hash])).await;
        if !receipt.is_null() {
            assert_eq!(receipt["status"], json!("0x1"), "transaction failed: {receipt}");
            return receipt;
        }
        assert!(Instant::now() < deadline, "transaction not mined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deploys PaymentChannel(`min_lifetime` seconds) from [`DEV_ADDRESS_0`]; its address.
pub async fn deploy(anvil: &Anvil, min_lifetime: u64) -> Address {
    let artifact: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../contracts/artifacts/PaymentChannel.json"),
        )
        .expect("contract artifact (contracts/artifacts/PaymentChannel.json)"),
    )
    .expect("artifact JSON");
    let bytecode = artifact["bytecode"].as_str().expect("bytecode");
    let deploy = format!("{bytecode}{min_lifetime:064x}");
    let receipt =
        transact(anvil, json!({ "from": DEV_ADDRESS_0, "data": deploy, "gas": "0x300000" })).await;
    Address::from_str(receipt["contractAddress"].as_str().expect("address")).expect("address")
}

/// Opens a channel from [`DEV_ADDRESS_0`] to `payee` with `deposit` wei, expiring at unix
/// time `expiry`, its cheques signed by [`DEV_ADDRESS_0`] itself; its id (from the `Opened`
/// event).
pub async fn open_channel(
    anvil: &Anvil,
    contract: Address,
    payee: Address,
    deposit: U256,
    expiry: u64,
) -> B256 {
    let signer = Address::from_str(DEV_ADDRESS_0).expect("address");
    open_channel_signed_by(anvil, contract, payee, signer, deposit, expiry).await
}

/// [`open_channel`] with cheques signed by `signer` instead of the payer.
pub async fn open_channel_signed_by(
    anvil: &Anvil,
    contract: Address,
    payee: Address,
    signer: Address,
    deposit: U256,
    expiry: u64,
) -> B256 {
    let open = openCall { payee, signer, expiry }.abi_encode();
    let receipt = transact(
        anvil,
        json!({ "from": DEV_ADDRESS_0, "to": contract.to_string(), "data": hex(&open),
                "value": format!("{deposit:#x}"), "gas": "0x100000" }),
    )
    .await;
    B256::from_str(receipt["logs"][0]["topics"][1].as_str().expect("Opened id")).expect("id")
}

/// `channels(id)` at the latest block.
pub async fn on_chain(anvil: &Anvil, contract: Address, id: B256) -> OnChain {
    let call = channelsCall { id }.abi_encode();
    let answer = anvil
        .rpc("eth_call", json!([{ "to": contract.to_string(), "data": hex(&call) }, "latest"]))
        .await;
    channelsCall::abi_decode_returns(&hex_bytes(&answer)).expect("channels() decodes")
}

/// An account's balance in wei at the latest block.
pub async fn balance_of(anvil: &Anvil, account: Address) -> U256 {
    let answer = anvil.rpc("eth_getBalance", json!([account.to_string(), "latest"])).await;
    U256::from_str(answer.as_str().expect("hex quantity")).expect("quantity")
}

/// The unix time of the latest block.
pub async fn head_time(anvil: &Anvil) -> u64 {
    let block = anvil.rpc("eth_getBlockByNumber", json!(["latest", false])).await;
    crate::common::quantity(&block["timestamp"])
}
