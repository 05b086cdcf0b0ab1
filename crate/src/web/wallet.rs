//! An EIP-1193 wallet (MetaMask, or any `{request({method, params})}` object the page passes
//! as `payment.wallet`) as a channel opener: its account funds each channel with one
//! `eth_sendTransaction` the user approves. It signs nothing else: the cheques are signed by
//! the channel's session key (`pay::channel::SessionKey`), and the client verifies the
//! transaction's receipt itself (`pay::open`), never trusting the wallet's node for it.

use crate::pay::PayError;
use crate::pay::open::{ChannelOpener, OpenRequest, Submission};
use alloy_primitives::{Address, B256};
use futures_util::future::LocalBoxFuture;
use serde_json::{Value, json};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// EIP-1193 "method not supported".
const UNSUPPORTED_METHOD: i64 = 4200;
/// JSON-RPC "method not found".
const METHOD_NOT_FOUND: i64 = -32601;

/// The wallet object the page passed.
#[derive(Clone)]
pub struct WalletOpener {
    wallet: JsValue,
}

impl WalletOpener {
    /// The wallet `wallet`, which must have a `request` function.
    pub fn new(wallet: JsValue) -> Result<Self, String> {
        let request = js_sys::Reflect::get(&wallet, &JsValue::from_str("request"))
            .map_err(|_| "payment.wallet: not an object".to_string())?;
        if !request.is_function() {
            return Err("payment.wallet: an EIP-1193 provider needs a request function".into());
        }
        Ok(Self { wallet })
    }
}

/// A wallet's refusal or failure as a typed error: the method, the EIP-1193 code (4001:
/// the user rejected it) and message.
fn wallet_error(method: &'static str, error: &JsValue) -> (Option<i64>, PayError) {
    let field = |name: &str| js_sys::Reflect::get(error, &JsValue::from_str(name)).ok();
    let code = field("code").and_then(|c| c.as_f64()).map(|c| c as i64);
    let message = field("message")
        .and_then(|m| m.as_string())
        .or_else(|| error.as_string())
        .unwrap_or_else(|| "the wallet failed".into());
    (code, PayError::Wallet { method, code, message })
}

/// `wallet.request({method, params})`, its result as JSON.
async fn request(
    wallet: JsValue,
    method: &'static str,
    params: Value,
) -> Result<Value, (Option<i64>, PayError)> {
    let encoding = |e: String| (None, PayError::Wallet { method, code: None, message: e });
    let args = js_sys::JSON::parse(&json!({ "method": method, "params": params }).to_string())
        .map_err(|_| encoding("arguments do not convert".into()))?;
    let function: js_sys::Function = js_sys::Reflect::get(&wallet, &JsValue::from_str("request"))
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| encoding("no request function".into()))?;
    // A wallet may answer synchronously or throw: both become a promise here.
    let promise = match function.call1(&wallet, &args) {
        Ok(value) => js_sys::Promise::resolve(&value),
        Err(error) => return Err(wallet_error(method, &error)),
    };
    let result = JsFuture::from(promise).await.map_err(|e| wallet_error(method, &e))?;
    if result.is_undefined() {
        return Ok(Value::Null);
    }
    let text = js_sys::JSON::stringify(&result)
        .ok()
        .and_then(|s| s.as_string())
        .ok_or_else(|| encoding("the answer is not JSON".into()))?;
    serde_json::from_str(&text).map_err(|e| encoding(e.to_string()))
}

fn first_account(method: &'static str, answer: &Value) -> Result<Address, PayError> {
    let bad = |message: String| PayError::Wallet { method, code: None, message };
    let first = answer
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("no account in {answer}")))?;
    first.parse().map_err(|_| bad(format!("not an address: {first}")))
}

impl ChannelOpener for WalletOpener {
    fn payer(&self) -> LocalBoxFuture<'static, Result<Address, PayError>> {
        let wallet = self.wallet.clone();
        Box::pin(async move {
            // EIP-1102: asks the user to connect if needed; older wallets only know eth_accounts.
            match request(wallet.clone(), "eth_requestAccounts", json!([])).await {
                Ok(answer) => first_account("eth_requestAccounts", &answer),
                Err((Some(UNSUPPORTED_METHOD | METHOD_NOT_FOUND), _)) => {
                    let answer =
                        request(wallet, "eth_accounts", json!([])).await.map_err(|(_, e)| e)?;
                    first_account("eth_accounts", &answer)
                }
                Err((_, error)) => Err(error),
            }
        })
    }

    fn needs_nonce(&self) -> bool {
        false
    }

    fn submit(&self, open: OpenRequest) -> LocalBoxFuture<'static, Result<Submission, PayError>> {
        let wallet = self.wallet.clone();
        Box::pin(async move {
            // The wallet sends on whatever chain it is on: refuse to fund a channel elsewhere.
            let chain =
                request(wallet.clone(), "eth_chainId", json!([])).await.map_err(|(_, e)| e)?;
            let wallet_chain = chain
                .as_str()
                .and_then(|c| u64::from_str_radix(c.trim_start_matches("0x"), 16).ok());
            if wallet_chain != Some(open.chain_id) {
                return Err(PayError::WalletChain {
                    wallet: chain.to_string(),
                    ours: open.chain_id,
                });
            }
            let tx = json!({
                "from": format!("{}", open.payer),
                "to": format!("{}", open.contract),
                "value": format!("{:#x}", open.deposit),
                "data": format!("{}", open.calldata()),
                "gas": format!("{:#x}", open.gas_limit),
            });
            let method = "eth_sendTransaction";
            let answer = request(wallet, method, json!([tx])).await.map_err(|(_, e)| e)?;
            let hash = answer.as_str().and_then(|h| h.parse::<B256>().ok()).ok_or_else(|| {
                PayError::Wallet { method, code: None, message: format!("not a hash: {answer}") }
            })?;
            Ok(Submission::Sent(hash))
        })
    }
}
