//! `eth_call`, `eth_estimateGas` and `eth_createAccessList`: the call object and state
//! overrides parsed strictly (as geth's `TransactionArgs` and `StateOverride`), executed by
//! [`crate::evm`] over proven state, and the results and errors encoded as geth does (a
//! revert is code 3, "execution reverted[: reason]", with the revert data).

use super::encode::{self, data, qty};
use super::error::{RpcError, codes};
use super::params::{self, Params};
use super::{RpcFuture, optional_block, state_header};
use crate::chain::Chain;
use crate::evm::{AccountOverride, CallOutcome, CallRequest, Evm, EvmError, StateOverrides};
use alloy_primitives::{Address, B256, Bytes};
use futures_util::FutureExt;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::rc::Rc;

/// `eth_call [call, block?, overrides?]`: the return data.
pub(super) fn eth_call<C: Chain>(
    chain: Rc<C>,
    evm: Rc<Evm>,
    p: &Params,
) -> Result<RpcFuture, RpcError> {
    p.arity(1, 3)?;
    let request = call_request(p.required(0, "transaction")?, chain.chain_id())?;
    let block = optional_block(p, 1)?;
    let overrides = p.get(2).map_or(Ok(StateOverrides::default()), state_overrides)?;
    Ok(async move {
        let header = state_header(&*chain, block).await?;
        let blob = encode::blob_gas_price(chain.chain_id(), &header);
        match evm.call(&*chain, &header, blob, &request, &overrides).await.map_err(rpc_error)? {
            CallOutcome::Success { output, .. } => Ok(data(output)),
            CallOutcome::Revert { output, .. } => Err(reverted(&output)),
            CallOutcome::Halt { reason, .. } => Err(RpcError::new(codes::INVALID_INPUT, reason)),
        }
    }
    .boxed_local())
}

/// `eth_estimateGas [call, block?, overrides?]`: geth's estimate.
pub(super) fn eth_estimate_gas<C: Chain>(
    chain: Rc<C>,
    evm: Rc<Evm>,
    p: &Params,
) -> Result<RpcFuture, RpcError> {
    p.arity(1, 3)?;
    let request = call_request(p.required(0, "transaction")?, chain.chain_id())?;
    let block = optional_block(p, 1)?;
    let overrides = p.get(2).map_or(Ok(StateOverrides::default()), state_overrides)?;
    Ok(async move {
        let header = state_header(&*chain, block).await?;
        let blob = encode::blob_gas_price(chain.chain_id(), &header);
        let gas = evm.estimate_gas(&*chain, &header, blob, &request, &overrides).await;
        Ok(qty(gas.map_err(rpc_error)?))
    }
    .boxed_local())
}

/// `eth_createAccessList [call, block?]`: `{accessList, gasUsed, error?}`.
pub(super) fn eth_create_access_list<C: Chain>(
    chain: Rc<C>,
    evm: Rc<Evm>,
    p: &Params,
) -> Result<RpcFuture, RpcError> {
    p.arity(1, 2)?;
    let request = call_request(p.required(0, "transaction")?, chain.chain_id())?;
    let block = optional_block(p, 1)?;
    Ok(async move {
        let header = state_header(&*chain, block).await?;
        let blob = encode::blob_gas_price(chain.chain_id(), &header);
        let none = StateOverrides::default();
        let result = evm
            .create_access_list(&*chain, &header, blob, &request, &none)
            .await
            .map_err(rpc_error)?;
        let list: Vec<Value> = result
            .access_list
            .iter()
            .map(|(address, keys)| {
                json!({
                    "address": data(address),
                    "storageKeys": keys.iter().map(data).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut object = json!({ "accessList": list, "gasUsed": qty(result.gas_used) });
        if let (Some(error), Value::Object(map)) = (result.error, &mut object) {
            map.insert("error".into(), Value::String(error));
        }
        Ok(object)
    }
    .boxed_local())
}

/// Code 3 with the revert data, as geth answers a revert.
fn reverted(output: &[u8]) -> RpcError {
    RpcError::new(codes::EXECUTION_REVERTED, crate::evm::exec::revert_message(output))
        .with_data(data(output))
}

fn rpc_error(error: EvmError) -> RpcError {
    let message = error.to_string();
    match error {
        EvmError::Chain(error) => error.into(),
        EvmError::Reverted(output) => reverted(&output),
        EvmError::Invalid(_) | EvmError::GasRequired(_) => {
            RpcError::new(codes::INVALID_INPUT, message)
        }
        EvmError::TooManyRounds(_) | EvmError::NonCanonicalBlockHash => {
            RpcError::new(codes::LIMIT_EXCEEDED, message)
        }
        EvmError::Internal(_) => RpcError::internal(message),
    }
}

fn bad(name: &str, why: impl std::fmt::Display) -> RpcError {
    RpcError::invalid_params(format!("invalid {name}: {why}"))
}

fn object<'a>(value: &'a Value, name: &str) -> Result<&'a Map<String, Value>, RpcError> {
    value.as_object().ok_or_else(|| bad(name, "expected an object"))
}

fn u128_field(value: &Value, name: &str) -> Result<u128, RpcError> {
    u128::try_from(params::quantity_u256(value, name)?)
        .map_err(|_| bad(name, "quantity does not fit 128 bits"))
}

/// A call object. Keys geth does not know are ignored, as geth does; `null` values are
/// absent. `data` and `input` may both be given only if equal.
pub fn call_request(value: &Value, chain_id: u64) -> Result<CallRequest, RpcError> {
    let fields = object(value, "transaction")?;
    let get = |key: &str| fields.get(key).filter(|v| !v.is_null());
    let name = |key: &str| format!("transaction.{key}");
    let mut request = CallRequest::default();
    if let Some(v) = get("from") {
        request.from = Some(params::address(v, &name("from"))?);
    }
    if let Some(v) = get("to") {
        request.to = Some(params::address(v, &name("to"))?);
    }
    if let Some(v) = get("gas") {
        request.gas = Some(params::quantity_u64(v, &name("gas"))?);
    }
    if let Some(v) = get("gasPrice") {
        request.gas_price = Some(u128_field(v, &name("gasPrice"))?);
    }
    if let Some(v) = get("maxFeePerGas") {
        request.max_fee_per_gas = Some(u128_field(v, &name("maxFeePerGas"))?);
    }
    if let Some(v) = get("maxPriorityFeePerGas") {
        request.max_priority_fee_per_gas = Some(u128_field(v, &name("maxPriorityFeePerGas"))?);
    }
    if request.gas_price.is_some()
        && (request.max_fee_per_gas.is_some() || request.max_priority_fee_per_gas.is_some())
    {
        return Err(bad(
            "transaction",
            "both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified",
        ));
    }
    if let Some(v) = get("value") {
        request.value = Some(params::quantity_u256(v, &name("value"))?);
    }
    let input = get("input").map(|v| params::data(v, &name("input"))).transpose()?;
    let data_field = get("data").map(|v| params::data(v, &name("data"))).transpose()?;
    request.input = match (input, data_field) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad("transaction", "both \"data\" and \"input\" are set and not equal"));
        }
        (Some(bytes), _) | (None, Some(bytes)) => bytes,
        (None, None) => Bytes::new(),
    };
    if let Some(v) = get("nonce") {
        request.nonce = Some(params::quantity_u64(v, &name("nonce"))?);
    }
    if let Some(v) = get("chainId") {
        let given = params::quantity_u64(v, &name("chainId"))?;
        if given != chain_id {
            return Err(bad(
                "transaction.chainId",
                format!("chainId does not match the chain's (have {given}, want {chain_id})"),
            ));
        }
    }
    if let Some(v) = get("accessList") {
        request.access_list = Some(access_list(v, &name("accessList"))?);
    }
    if let Some(v) = get("blobVersionedHashes") {
        let items =
            v.as_array().ok_or_else(|| bad(&name("blobVersionedHashes"), "expected an array"))?;
        let hashes = items
            .iter()
            .enumerate()
            .map(|(i, h)| params::hash(h, &format!("transaction.blobVersionedHashes[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        request.blob_versioned_hashes = Some(hashes);
    }
    if let Some(v) = get("maxFeePerBlobGas") {
        request.max_fee_per_blob_gas = Some(u128_field(v, &name("maxFeePerBlobGas"))?);
    }
    if get("authorizationList").is_some() {
        return Err(bad("transaction.authorizationList", "EIP-7702 calls are not supported"));
    }
    Ok(request)
}

fn access_list(value: &Value, name: &str) -> Result<Vec<(Address, Vec<B256>)>, RpcError> {
    let items = value.as_array().ok_or_else(|| bad(name, "expected an array"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("{name}[{i}]");
            let fields = object(item, &at)?;
            let address = params::address(
                fields.get("address").unwrap_or(&Value::Null),
                &format!("{at}.address"),
            )?;
            let keys = match fields.get("storageKeys").filter(|v| !v.is_null()) {
                None => Vec::new(),
                Some(keys) => keys
                    .as_array()
                    .ok_or_else(|| bad(&format!("{at}.storageKeys"), "expected an array"))?
                    .iter()
                    .enumerate()
                    .map(|(j, key)| params::hash(key, &format!("{at}.storageKeys[{j}]")))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            Ok((address, keys))
        })
        .collect()
}

/// State overrides: `{address: {balance?, nonce?, code?, state? | stateDiff?}}`.
pub fn state_overrides(value: &Value) -> Result<StateOverrides, RpcError> {
    let entries = object(value, "state overrides")?;
    let mut overrides = StateOverrides::new();
    for (key, fields) in entries {
        let address = params::address(&Value::String(key.clone()), "state override address")?;
        let at = format!("state override {key}");
        let fields = object(fields, &at)?;
        let mut o = AccountOverride::default();
        for (field, v) in fields {
            if v.is_null() {
                continue;
            }
            let name = format!("{at}.{field}");
            match field.as_str() {
                "balance" => o.balance = Some(params::quantity_u256(v, &name)?),
                "nonce" => o.nonce = Some(params::quantity_u64(v, &name)?),
                "code" => o.code = Some(params::data(v, &name)?),
                "state" => o.state = Some(slots(v, &name)?),
                "stateDiff" => o.state_diff = Some(slots(v, &name)?),
                other => return Err(bad(&at, format!("unknown field {other:?}"))),
            }
        }
        if o.state.is_some() && o.state_diff.is_some() {
            return Err(bad(&at, "has both 'state' and 'stateDiff'"));
        }
        overrides.insert(address, o);
    }
    Ok(overrides)
}

fn slots(value: &Value, name: &str) -> Result<BTreeMap<B256, B256>, RpcError> {
    object(value, name)?
        .iter()
        .map(|(slot, v)| {
            let key = params::hash(&Value::String(slot.clone()), &format!("{name} key"))?;
            Ok((key, params::hash(v, &format!("{name}[{slot}]"))?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::U256;

    fn rejects<T: std::fmt::Debug>(result: Result<T, RpcError>, needle: &str) {
        let error = result.expect_err("accepted bad input");
        assert_eq!(error.code, codes::INVALID_PARAMS);
        assert!(error.message.contains(needle), "{:?} lacks {needle:?}", error.message);
    }

    #[test]
    fn call_objects_parse_like_geth() {
        let to = "0x00000000000000000000000000000000000000aa";
        let r = call_request(
            &json!({"from": to, "to": to, "gas": "0x5208", "maxFeePerGas": "0x10",
                    "maxPriorityFeePerGas": "0x1", "value": "0x2", "input": "0x01", "data": "0x01",
                    "nonce": "0x3", "chainId": "0x7a69", "type": "0x2", "unknown": 1,
                    "accessList": [{"address": to, "storageKeys": [format!("0x{}", "00".repeat(32))]}]}),
            31337,
        )
        .unwrap();
        let a = Address::with_last_byte(0xaa);
        assert_eq!((r.from, r.to, r.gas, r.nonce), (Some(a), Some(a), Some(21000), Some(3)));
        assert_eq!((r.max_fee_per_gas, r.max_priority_fee_per_gas), (Some(16), Some(1)));
        assert_eq!((r.value, r.input.as_ref()), (Some(U256::from(2)), &[1u8][..]));
        assert_eq!(r.access_list, Some(vec![(a, vec![B256::ZERO])]));
        let empty = call_request(&json!({"to": null}), 1).unwrap();
        assert_eq!(empty, CallRequest::default());
        rejects(call_request(&json!("0x"), 1), "expected an object");
        rejects(call_request(&json!({"data": "0x01", "input": "0x02"}), 1), "not equal");
        rejects(
            call_request(&json!({"gasPrice": "0x1", "maxFeePerGas": "0x1"}), 1),
            "both gasPrice",
        );
        rejects(call_request(&json!({"to": "0x12"}), 1), "transaction.to");
        rejects(call_request(&json!({"gas": "0x01"}), 1), "leading zeros");
        rejects(call_request(&json!({"chainId": "0x2"}), 1), "does not match");
        rejects(
            call_request(&json!({"gasPrice": format!("0x1{}", "0".repeat(32))}), 1),
            "128 bits",
        );
        rejects(
            call_request(&json!({"accessList": [{"address": to, "storageKeys": ["0x1"]}]}), 1),
            "storageKeys[0]",
        );
        rejects(call_request(&json!({"authorizationList": []}), 1), "not supported");
    }

    #[test]
    fn state_overrides_parse_and_reject_mixtures() {
        let addr = "0x00000000000000000000000000000000000000bb";
        let slot = format!("0x{}", "00".repeat(31) + "01");
        let o = state_overrides(&json!({addr: {"balance": "0x10", "nonce": "0x1", "code": "0x00",
            "stateDiff": {slot.clone(): slot.clone()}}}))
        .unwrap();
        let entry = &o[&Address::with_last_byte(0xbb)];
        assert_eq!((entry.balance, entry.nonce), (Some(U256::from(16)), Some(1)));
        assert_eq!(entry.code.as_ref().map(|c| c.to_vec()), Some(vec![0u8]));
        let one = B256::with_last_byte(1);
        assert_eq!(entry.state_diff, Some(BTreeMap::from([(one, one)])));
        rejects(state_overrides(&json!({addr: {"state": {}, "stateDiff": {}}})), "both");
        rejects(
            state_overrides(&json!({addr: {"movePrecompileToAddress": addr}})),
            "unknown field",
        );
        rejects(state_overrides(&json!({"0x12": {}})), "address");
        rejects(state_overrides(&json!({addr: {"state": {"0x1": slot}}})), "key");
        rejects(state_overrides(&json!([])), "expected an object");
    }

    #[test]
    fn reverts_are_code_3_with_data() {
        let error = reverted(&[0xde, 0xad]);
        assert_eq!(error.code, 3);
        assert_eq!(error.message, "execution reverted");
        assert_eq!(error.data, Some(json!("0xdead")));
        assert_eq!(rpc_error(EvmError::TooManyRounds(64)).code, codes::LIMIT_EXCEEDED);
        assert_eq!(
            rpc_error(EvmError::GasRequired(5)).message,
            "gas required exceeds allowance (5)"
        );
    }
}
