//! The operator's admin endpoint (`--admin ADDR`): JSON-RPC 2.0 over HTTP/1 POST, the `les_`
//! namespace of geth's LES server API as research §6 models it, plus what geth lacked
//! (idempotent credit, the payment log, channel state, redeem now). Never on the public
//! listener, and bound to 127.0.0.1 unless the operator says otherwise: whoever reaches it
//! can credit balances.
//!
//! Integers that can exceed 2^53 (balances, tokens, wei) are decimal strings in results; in
//! params both JSON numbers and decimal strings are accepted. Node ids are `0x` + 64 hex
//! digits or an enode URL. Params may be positional (an array) or named (an object).
//! Errors: -32700 parse error, -32600 invalid request, -32601 unknown method, -32602 bad
//! params, -32000 the call failed (the message says why; `data` carries details where
//! useful, e.g. `{max}` for a capacity that is not available).

use crate::pay::ledger::{LogEntry, PaymentReference};
use crate::pay::redeem::RedeemEvent;
use crate::pay::service::{ClientStatus, PayService, ServiceError};
use alloy_primitives::{B256, U256};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use les::crypto::{Enode, NodeId};
use les::pay::messages::{Balance as WireBalance, PriceFactors, PriorityClass};
use serde_json::{Map, Value, json};
use std::str::FromStr;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// The most calls in one batch.
pub const MAX_BATCH: usize = 100;
/// The most ids `les_clientInfo` and entries `les_paymentLog` return.
pub const MAX_ITEMS: usize = 1000;

/// A JSON-RPC error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RpcError {
    /// The body is not JSON.
    #[error("parse error: {0}")]
    Parse(String),
    /// Not a JSON-RPC 2.0 request object.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// No such method.
    #[error("method not found: {0}")]
    MethodNotFound(String),
    /// The params are wrong.
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// The call itself failed.
    #[error("{message}")]
    Failed {
        /// Why.
        message: String,
        /// Details, if any.
        data: Option<Value>,
    },
}

impl RpcError {
    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        match self {
            RpcError::Parse(_) => -32700,
            RpcError::InvalidRequest(_) => -32600,
            RpcError::MethodNotFound(_) => -32601,
            RpcError::InvalidParams(_) => -32602,
            RpcError::Failed { .. } => -32000,
        }
    }

    fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let RpcError::Failed { data: Some(data), .. } = self {
            error["data"] = data.clone();
        }
        error
    }
}

impl From<ServiceError> for RpcError {
    fn from(error: ServiceError) -> Self {
        let data = match &error {
            ServiceError::CapacityUnavailable { max, .. } => {
                Some(json!({ "max": max.to_string() }))
            }
            _ => None,
        };
        RpcError::Failed { message: error.to_string(), data }
    }
}

/// Serves the admin API on `listener` until `shutdown` turns true.
pub async fn serve(service: PayService, listener: TcpListener, shutdown: watch::Receiver<bool>) {
    crate::http::serve("admin", listener, shutdown, move |request: Request<Incoming>| {
        let service = service.clone();
        async move { respond(&service, request).await }
    })
    .await
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

async fn respond(service: &PayService, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::POST {
        let error = RpcError::InvalidRequest("use HTTP POST with a JSON-RPC 2.0 body");
        return json_response(StatusCode::METHOD_NOT_ALLOWED, &reply(Value::Null, Err(error)));
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            let error = RpcError::InvalidRequest("body too large or unreadable");
            return json_response(StatusCode::PAYLOAD_TOO_LARGE, &reply(Value::Null, Err(error)));
        }
    };
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => {
            return json_response(
                StatusCode::OK,
                &reply(Value::Null, Err(RpcError::Parse(error.to_string()))),
            );
        }
    };
    let answer = match parsed {
        Value::Array(calls) if calls.is_empty() => {
            reply(Value::Null, Err(RpcError::InvalidRequest("empty batch")))
        }
        Value::Array(calls) if calls.len() > MAX_BATCH => {
            reply(Value::Null, Err(RpcError::InvalidRequest("batch too large")))
        }
        Value::Array(calls) => {
            let mut replies = Vec::with_capacity(calls.len());
            for call in calls {
                replies.push(handle_call(service, call).await);
            }
            Value::Array(replies)
        }
        call => handle_call(service, call).await,
    };
    json_response(StatusCode::OK, &answer)
}

fn reply(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(error) => json!({ "jsonrpc": "2.0", "id": id, "error": error.to_json() }),
    }
}

async fn handle_call(service: &PayService, call: Value) -> Value {
    let Value::Object(mut call) = call else {
        return reply(Value::Null, Err(RpcError::InvalidRequest("not an object")));
    };
    let id = call.remove("id").unwrap_or(Value::Null);
    if call.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return reply(id, Err(RpcError::InvalidRequest("jsonrpc must be \"2.0\"")));
    }
    let Some(method) = call.get("method").and_then(Value::as_str).map(str::to_owned) else {
        return reply(id, Err(RpcError::InvalidRequest("method must be a string")));
    };
    let params = match call.remove("params") {
        None | Some(Value::Null) => Params::Positional(Vec::new()),
        Some(Value::Array(items)) => Params::Positional(items),
        Some(Value::Object(map)) => Params::Named(map),
        Some(_) => {
            return reply(id, Err(RpcError::InvalidRequest("params must be an array or object")));
        }
    };
    reply(id, dispatch(service, &method, params).await)
}

/// Call params, positional or named.
enum Params {
    Positional(Vec<Value>),
    Named(Map<String, Value>),
}

impl Params {
    /// The parameter at `index` / called `name`, if given and not null.
    fn get(&self, index: usize, name: &str) -> Option<&Value> {
        let value = match self {
            Params::Positional(items) => items.get(index),
            Params::Named(map) => map.get(name),
        };
        value.filter(|v| !v.is_null())
    }

    fn required(&self, index: usize, name: &str) -> Result<&Value, RpcError> {
        self.get(index, name).ok_or_else(|| RpcError::InvalidParams(format!("missing {name}")))
    }

    /// The whole params as one object (for calls taking one object param or named params).
    fn object(&self) -> Option<&Map<String, Value>> {
        match self {
            Params::Positional(items) => items.first().and_then(Value::as_object),
            Params::Named(map) => Some(map),
        }
    }
}

/// A node id from `0x` + 64 hex digits or an enode URL.
pub fn parse_node(value: &Value, name: &str) -> Result<NodeId, RpcError> {
    let text =
        value.as_str().ok_or_else(|| RpcError::InvalidParams(format!("{name}: not a string")))?;
    if text.starts_with("enode://") {
        return Enode::from_str(text)
            .map(|enode| enode.node_id())
            .map_err(|error| RpcError::InvalidParams(format!("{name}: {error}")));
    }
    B256::from_str(text).map_err(|_| {
        RpcError::InvalidParams(format!("{name}: not a 32-byte hex node id or enode URL"))
    })
}

/// An unsigned integer from a JSON number or a decimal string.
fn parse_u64(value: &Value, name: &str) -> Result<u64, RpcError> {
    match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| RpcError::InvalidParams(format!("{name}: not an unsigned 64-bit integer")))
}

/// A signed integer from a JSON number or a decimal string.
fn parse_i64(value: &Value, name: &str) -> Result<i64, RpcError> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| RpcError::InvalidParams(format!("{name}: not a signed 64-bit integer")))
}

fn parse_factors(value: &Value, name: &str) -> Result<PriceFactors, RpcError> {
    let object = value.as_object().ok_or_else(|| {
        RpcError::InvalidParams(format!("{name}: not an object {{time, capacity, request}}"))
    })?;
    let field = |key: &str| {
        let value = object
            .get(key)
            .ok_or_else(|| RpcError::InvalidParams(format!("{name}.{key}: missing")))?;
        parse_u64(value, &format!("{name}.{key}"))
    };
    Ok(PriceFactors {
        time: field("time")?,
        capacity: field("capacity")?,
        request: field("request")?,
    })
}

fn factors_json(factors: PriceFactors) -> Value {
    json!({
        "time": factors.time.to_string(),
        "capacity": factors.capacity.to_string(),
        "request": factors.request.to_string(),
    })
}

fn class_name(class: PriorityClass) -> &'static str {
    match class {
        PriorityClass::Free => "free",
        PriorityClass::Paid => "paid",
    }
}

fn balance_json(balance: &WireBalance) -> Value {
    json!({
        "pos": balance.pos.to_string(),
        "neg": balance.neg.to_string(),
        "capacity": balance.capacity.to_string(),
        "priorityClass": class_name(balance.priority_class),
    })
}

fn client_json(status: &ClientStatus) -> Value {
    let mut out = json!({
        "isConnected": status.connected,
        "balance": status.pos.to_string(),
        "negBalance": status.neg.to_string(),
        "capacity": status.capacity.to_string(),
        "priority": status.priority.to_string(),
        "priorityClass": class_name(status.class),
    });
    if let Some(time) = status.connection_time {
        out["connectionTime"] = json!(time.as_secs());
    }
    out
}

fn u256_json(value: U256) -> Value {
    Value::String(value.to_string())
}

fn log_json(entry: &LogEntry) -> Value {
    let reference = match &entry.reference {
        PaymentReference::Channel { id, cumulative } => {
            json!({ "channel": id.to_string(), "cumulative": u256_json(*cumulative) })
        }
        PaymentReference::Operator { reference } => json!({ "operator": reference }),
    };
    json!({
        "seq": entry.seq,
        "timeMs": entry.time_ms,
        "node": entry.node.to_string(),
        "receiver": entry.receiver,
        "reference": reference,
        "credited": entry.credited.to_string(),
        "debited": entry.debited.to_string(),
        "balanceAfter": entry.balance_after.to_string(),
    })
}

fn failed(error: impl std::fmt::Display) -> RpcError {
    RpcError::Failed { message: error.to_string(), data: None }
}

/// Runs one method.
async fn dispatch(service: &PayService, method: &str, params: Params) -> Result<Value, RpcError> {
    match method {
        "les_serverInfo" => Ok(server_info(service)),
        "les_clientInfo" => {
            let ids = match params.get(0, "ids") {
                None => Vec::new(),
                Some(Value::Array(items)) => {
                    if items.len() > MAX_ITEMS {
                        return Err(RpcError::InvalidParams(format!("ids: at most {MAX_ITEMS}")));
                    }
                    items.iter().map(|item| parse_node(item, "ids[]")).collect::<Result<_, _>>()?
                }
                Some(single @ Value::String(_)) => vec![parse_node(single, "ids")?],
                Some(_) => return Err(RpcError::InvalidParams("ids: not an array".to_owned())),
            };
            let mut out = Map::new();
            for (id, status) in service.client_info(&ids).into_iter().take(MAX_ITEMS) {
                out.insert(id.to_string(), client_json(&status));
            }
            Ok(Value::Object(out))
        }
        "les_addBalance" => {
            let node = parse_node(params.required(0, "id")?, "id")?;
            let amount = parse_i64(params.required(1, "amount")?, "amount")?;
            let reference = match params.get(2, "reference") {
                None => None,
                Some(Value::String(text)) if text.len() <= 256 => Some(text.clone()),
                Some(_) => {
                    return Err(RpcError::InvalidParams(
                        "reference: a string of at most 256 bytes".to_owned(),
                    ));
                }
            };
            let outcome = service.add_balance(node, amount, reference).await?;
            Ok(json!({
                "old": outcome.old.to_string(),
                "new": outcome.new.to_string(),
                "duplicate": outcome.duplicate,
            }))
        }
        "les_setCapacity" => {
            let node = parse_node(params.required(0, "id")?, "id")?;
            let wanted = parse_u64(params.required(1, "capacity")?, "capacity")?;
            let (capacity, balance) = service.set_capacity(node, wanted)?;
            // The pool grants a raise within [0.95 × wanted, wanted] or not at all.
            let min = service.server_info().min_capacity;
            if wanted > capacity && capacity < wanted.max(min) - wanted.max(min) / 20 {
                return Err(ServiceError::CapacityUnavailable { wanted, max: capacity }.into());
            }
            Ok(json!({ "capacity": capacity.to_string(), "balance": balance_json(&balance) }))
        }
        "les_setPriceFactors" => {
            let object = params.object().ok_or_else(|| {
                RpcError::InvalidParams("expected {positive?, negative?}".to_owned())
            })?;
            let positive =
                object.get("positive").map(|v| parse_factors(v, "positive")).transpose()?;
            let negative =
                object.get("negative").map(|v| parse_factors(v, "negative")).transpose()?;
            let (positive, negative) = service.set_price_factors(positive, negative)?;
            Ok(json!({ "positive": factors_json(positive), "negative": factors_json(negative) }))
        }
        "les_setConnectedBias" => {
            let secs = parse_u64(params.required(0, "seconds")?, "seconds")?;
            let secs = service.set_connected_bias(secs)?;
            Ok(json!({ "connectedBias": secs }))
        }
        "les_paymentLog" => {
            let from =
                params.get(0, "from").map(|v| parse_u64(v, "from")).transpose()?.unwrap_or(0);
            let count = params
                .get(1, "count")
                .map(|v| parse_u64(v, "count"))
                .transpose()?
                .unwrap_or(100)
                .min(MAX_ITEMS as u64);
            let entries = service.payment_log(from, usize::try_from(count).unwrap_or(MAX_ITEMS))?;
            Ok(Value::Array(entries.iter().map(log_json).collect()))
        }
        "les_channels" => {
            let redeemer =
                service.redeemer().ok_or_else(|| RpcError::from(ServiceError::NoChannels))?;
            let channels = redeemer.status().map_err(failed)?;
            Ok(Value::Array(
                channels
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id.to_string(),
                            "node": c.node.to_string(),
                            "lastAccepted": u256_json(c.last_accepted),
                            "redeemed": u256_json(c.redeemed),
                            "unredeemed": u256_json(c.unredeemed),
                            "creditedTotal": c.credited_total.to_string(),
                            "expiry": c.expiry,
                            "pendingTx": c.pending_tx.map(|tx| tx.to_string()),
                        })
                    })
                    .collect(),
            ))
        }
        "les_redeem" => {
            let text = params.required(0, "channel")?;
            let id = text.as_str().and_then(|t| B256::from_str(t).ok()).ok_or_else(|| {
                RpcError::InvalidParams("channel: not a 32-byte hex id".to_owned())
            })?;
            let redeemer =
                service.redeemer().ok_or_else(|| RpcError::from(ServiceError::NoChannels))?;
            let event = redeemer.redeem_now(id).await.map_err(failed)?;
            Ok(redeem_json(&event))
        }
        other => Err(RpcError::MethodNotFound(other.to_owned())),
    }
}

fn redeem_json(event: &RedeemEvent) -> Value {
    match event {
        RedeemEvent::Redeemed { id, paid_out, tx } => json!({
            "status": "redeemed",
            "channel": id.to_string(),
            "paidOut": u256_json(*paid_out),
            "tx": tx.map(|tx| json!({
                "hash": tx.hash.to_string(),
                "success": tx.success,
                "block": tx.block,
                "fee": u256_json(tx.fee()),
            })),
        }),
        RedeemEvent::Scheduled { id, .. } => {
            json!({ "status": "scheduled", "channel": id.to_string() })
        }
        RedeemEvent::Submitted { id, tx, .. } | RedeemEvent::Waiting { id, tx } => {
            json!({ "status": "pending", "channel": id.to_string(), "tx": tx.to_string() })
        }
        RedeemEvent::Abandoned { id, why, lost } => json!({
            "status": "abandoned",
            "channel": id.to_string(),
            "why": why,
            "lost": u256_json(*lost),
        }),
        RedeemEvent::Failed { id, error } => {
            json!({ "status": "failed", "channel": id.to_string(), "error": error })
        }
    }
}

fn server_info(service: &PayService) -> Value {
    let info = service.server_info();
    let priority_capacity = service.priority_capacity();
    let rate = service.tokens_per_wei();
    let channel = service.channel_terms().map(|terms| {
        json!({
            "chainId": terms.chain_id,
            "contract": terms.contract.to_string(),
            "payee": terms.payee.to_string(),
            "acceptMarginSecs": terms.accept_margin_secs,
            "minDeposit": u256_json(terms.min_deposit),
        })
    });
    json!({
        "minimumCapacity": info.min_capacity.to_string(),
        "maximumCapacity": info.max_capacity.to_string(),
        "totalCapacity": info.total_capacity.to_string(),
        "freeCapacity": info.free_capacity.to_string(),
        "totalConnectedCapacity": info.active_capacity.to_string(),
        "priorityConnectedCapacity": priority_capacity.to_string(),
        "activeCount": info.active_count,
        // LES/4 has no inactive allowance: a client that loses its place is disconnected.
        "inactiveCount": 0,
        "maxCount": info.max_count,
        "connectedBias": info.connected_bias.as_secs(),
        "priceFactors": {
            "positive": factors_json(info.pos_factors),
            "negative": factors_json(info.neg_factors),
        },
        "tokensPerWei": { "num": rate.num.to_string(), "den": rate.den.to_string() },
        "receivers": service.receiver_names(),
        "channel": channel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_parse_from_hex_and_enode() {
        let hex = format!("0x{}", "ab".repeat(32));
        assert_eq!(parse_node(&json!(hex), "id").unwrap(), B256::repeat_byte(0xab));
        assert!(matches!(parse_node(&json!("0x12"), "id"), Err(RpcError::InvalidParams(_))));
        assert!(matches!(parse_node(&json!(5), "id"), Err(RpcError::InvalidParams(_))));
        let key = les::crypto::NodeKey::random().unwrap();
        let enode = Enode { public_key: key.public_key(), host: "127.0.0.1".into(), port: 1 };
        assert_eq!(parse_node(&json!(enode.to_string()), "id").unwrap(), enode.node_id());
    }

    #[test]
    fn integers_come_as_numbers_or_decimal_strings() {
        assert_eq!(parse_u64(&json!(5), "x").unwrap(), 5);
        assert_eq!(parse_u64(&json!("18446744073709551615"), "x").unwrap(), u64::MAX);
        assert!(parse_u64(&json!(-1), "x").is_err());
        assert!(parse_u64(&json!("1e3"), "x").is_err());
        assert_eq!(parse_i64(&json!("-7"), "x").unwrap(), -7);
        let factors =
            parse_factors(&json!({"time": 1, "capacity": "2", "request": 3}), "p").unwrap();
        assert_eq!(factors, PriceFactors { time: 1, capacity: 2, request: 3 });
        assert!(parse_factors(&json!({"time": 1}), "p").is_err());
    }

    #[test]
    fn error_codes_are_json_rpcs() {
        assert_eq!(RpcError::MethodNotFound("x".into()).code(), -32601);
        assert_eq!(RpcError::InvalidParams("x".into()).code(), -32602);
        let unavailable: RpcError = ServiceError::CapacityUnavailable { wanted: 10, max: 5 }.into();
        assert_eq!(unavailable.to_json()["data"]["max"], json!("5"));
    }
}
