//! The service-model methods, answered locally from the client core's state:
//! `ulc_serviceStatus`, `ulc_setPaymentPolicy`, `ulc_openChannel` and `ulc_topUpChannel` (the
//! last two wait for their transaction's verified receipt). Parameters are checked here; a bad one is
//! -32602 naming it, before the core sees anything.

use super::params::{self, Params};
use super::{RpcError, RpcFuture, done};
use crate::chain::Chain;
use crate::pay::policy::PaymentPolicy;
use alloy_primitives::{B256, U256};
use futures_util::FutureExt;
use serde_json::Value;
use std::rc::Rc;

/// `ulc_serviceStatus []`.
pub fn service_status<C: Chain>(chain: Rc<C>, p: &Params) -> Result<RpcFuture, RpcError> {
    p.arity(0, 0)?;
    Ok(done(Ok(chain.service_status())))
}

/// The policy of `ulc_setPaymentPolicy [policy | null]`, checked.
pub fn policy_param(p: &Params) -> Result<Option<PaymentPolicy>, RpcError> {
    p.arity(1, 1)?;
    let Some(value) = p.get(0) else { return Ok(None) };
    let policy: PaymentPolicy = serde_json::from_value(value.clone())
        .map_err(|e| RpcError::invalid_params(format!("invalid policy: {e}")))?;
    policy.validate().map_err(|e| RpcError::invalid_params(format!("invalid policy: {e}")))?;
    Ok(Some(policy))
}

/// `ulc_setPaymentPolicy [policy | null]` → `true`.
pub fn set_payment_policy<C: Chain>(chain: Rc<C>, p: &Params) -> Result<RpcFuture, RpcError> {
    let policy = policy_param(p)?;
    chain.set_payment_policy(policy)?;
    Ok(done(Ok(Value::Bool(true))))
}

/// The parameters of `ulc_openChannel [{server, depositWei, lifetimeSecs}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenParams {
    /// The server's node ID.
    pub server: B256,
    /// The deposit.
    pub deposit: U256,
    /// Seconds from the head's timestamp to expiry.
    pub lifetime_secs: u64,
}

/// The one object parameter `what` of a channel method, with exactly the `fields` given;
/// its `server` and a positive `depositWei`.
fn channel_object<'a>(
    p: &'a Params,
    what: &str,
    fields: &[&str],
) -> Result<(&'a serde_json::Map<String, Value>, B256, U256), RpcError> {
    p.arity(1, 1)?;
    let object = p
        .required(0, what)?
        .as_object()
        .ok_or_else(|| RpcError::invalid_params(format!("invalid {what}: expected an object")))?;
    if let Some(key) = object.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(RpcError::invalid_params(format!("invalid {what}: unknown field {key}")));
    }
    if let Some(name) = fields.iter().find(|name| !object.contains_key(**name)) {
        return Err(RpcError::invalid_params(format!("invalid {what}: missing {name}")));
    }
    let server = params::hash(&object["server"], "server")?;
    let deposit = params::quantity_u256(&object["depositWei"], "depositWei")?;
    if deposit.is_zero() {
        return Err(RpcError::invalid_params("invalid depositWei: must be positive"));
    }
    Ok((object, server, deposit))
}

/// The object of `ulc_openChannel`, checked.
pub fn open_param(p: &Params) -> Result<OpenParams, RpcError> {
    let (object, server, deposit) =
        channel_object(p, "channel", &["server", "depositWei", "lifetimeSecs"])?;
    let lifetime = &object["lifetimeSecs"];
    let lifetime_secs = match lifetime.as_u64() {
        Some(secs) => secs,
        None => params::quantity_u64(lifetime, "lifetimeSecs")?,
    };
    if lifetime_secs == 0 {
        return Err(RpcError::invalid_params("invalid lifetimeSecs: must be positive"));
    }
    Ok(OpenParams { server, deposit, lifetime_secs })
}

/// `ulc_openChannel [{server, depositWei, lifetimeSecs}]` → the channel.
pub fn open_channel<C: Chain>(chain: Rc<C>, p: &Params) -> Result<RpcFuture, RpcError> {
    let open = open_param(p)?;
    Ok(async move { Ok(chain.open_channel(open.server, open.deposit, open.lifetime_secs).await?) }
        .boxed_local())
}

/// The parameters of `ulc_topUpChannel [{server, depositWei}]`: (server, wei to add).
pub fn top_up_param(p: &Params) -> Result<(B256, U256), RpcError> {
    let (_, server, deposit) = channel_object(p, "topUp", &["server", "depositWei"])?;
    Ok((server, deposit))
}

/// `ulc_topUpChannel [{server, depositWei}]` → the channel with its new deposit.
pub fn top_up_channel<C: Chain>(chain: Rc<C>, p: &Params) -> Result<RpcFuture, RpcError> {
    let (server, deposit) = top_up_param(p)?;
    Ok(async move { Ok(chain.top_up_channel(server, deposit).await?) }.boxed_local())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::codes;
    use serde_json::json;

    fn params(method: &str, value: Value) -> Params {
        Params::new(method, value).expect("params")
    }

    #[test]
    fn policies_parse_and_bad_ones_are_invalid_params() {
        let good =
            json!([{ "budgetWei": "0x3b9aca00", "targetCapacity": 1_000_000, "servers": 2 }]);
        let policy =
            policy_param(&params("ulc_setPaymentPolicy", good)).expect("good").expect("some");
        assert_eq!(
            (policy.budget_wei, policy.target_capacity),
            (U256::from(1_000_000_000u64), 1_000_000)
        );
        assert_eq!(policy_param(&params("ulc_setPaymentPolicy", json!([null]))), Ok(None));
        for bad in [
            json!([]),
            json!([{ "budgetWei": "0x1" }]),
            json!([{ "budgetWei": "0x1", "targetCapacity": 0 }]),
            json!([{ "budgetWei": "0x1", "targetCapacity": 5, "servers": 0 }]),
            json!([{ "budgetWei": "0x1", "targetCapacity": 5, "lowBalanceSecs": 10, "topUpSecs": 10 }]),
            json!([{ "budgetWei": "0x1", "targetCapacity": 5, "maxSpendWeiPerHour": "0x2" }]),
            json!([{ "budgetWei": "0x1", "targetCapacity": 5, "colour": "red" }]),
            json!([{ "budgetWei": "lots", "targetCapacity": 5 }]),
        ] {
            let error =
                policy_param(&params("ulc_setPaymentPolicy", bad.clone())).expect_err("bad");
            assert_eq!(error.code, codes::INVALID_PARAMS, "{bad}: {error:?}");
        }
    }

    #[test]
    fn top_up_parameters_are_checked() {
        let server = format!("0x{}", "11".repeat(32));
        let good = json!([{ "server": server, "depositWei": "0x10" }]);
        assert_eq!(
            top_up_param(&params("ulc_topUpChannel", good)),
            Ok((B256::repeat_byte(0x11), U256::from(16u64)))
        );
        for bad in [
            json!([]),
            json!([{ "server": server }]),
            json!([{ "server": server, "depositWei": "0x0" }]),
            json!([{ "server": "0x12", "depositWei": "0x10" }]),
            json!([{ "server": server, "depositWei": "0x10", "lifetimeSecs": 5 }]),
        ] {
            let error = top_up_param(&params("ulc_topUpChannel", bad.clone())).expect_err("bad");
            assert_eq!(error.code, codes::INVALID_PARAMS, "{bad}: {error:?}");
        }
    }

    #[test]
    fn open_parameters_are_checked() {
        let server = format!("{}", B256::repeat_byte(7));
        let good =
            json!([{ "server": server, "depositWei": "0xde0b6b3a7640000", "lifetimeSecs": 7200 }]);
        assert_eq!(
            open_param(&params("ulc_openChannel", good)),
            Ok(OpenParams {
                server: B256::repeat_byte(7),
                deposit: U256::from(1_000_000_000_000_000_000u64),
                lifetime_secs: 7200
            })
        );
        let hex = json!([{ "server": server, "depositWei": "0x1", "lifetimeSecs": "0x10" }]);
        assert_eq!(open_param(&params("ulc_openChannel", hex)).map(|o| o.lifetime_secs), Ok(16));
        for bad in [
            json!([{ "server": "0x12", "depositWei": "0x1", "lifetimeSecs": 1 }]),
            json!([{ "server": server, "depositWei": "0x0", "lifetimeSecs": 1 }]),
            json!([{ "server": server, "depositWei": "0x1", "lifetimeSecs": 0 }]),
            json!([{ "server": server, "depositWei": "0x1" }]),
            json!([{ "server": server, "depositWei": "0x1", "lifetimeSecs": 1, "x": 1 }]),
            json!(["0x1"]),
        ] {
            let error = open_param(&params("ulc_openChannel", bad.clone())).expect_err("bad");
            assert_eq!(error.code, codes::INVALID_PARAMS, "{bad}: {error:?}");
        }
    }
}
