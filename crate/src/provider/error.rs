//! The errors a dapp sees: EIP-1193 provider errors and EIP-1474 JSON-RPC errors, with one
//! stable code per failure kind, and the mapping from the core's [`ClientError`].

use crate::chain::ClientError;
use serde_json::{Value, json};

/// Every error code the provider answers with. EIP-1193 codes (4xxx) describe the provider's
/// state, EIP-1474 codes (-32xxx) the request; -32050 is ours.
pub mod codes {
    /// EIP-1474: the request text is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// EIP-1474: the JSON is not a request object with a `method` string.
    pub const INVALID_REQUEST: i64 = -32600;
    /// EIP-1474: the method does not exist (only `eth_fillTransaction`, so that viem caches
    /// "unsupported" and stops asking; other unknown methods get [`UNSUPPORTED_METHOD`]).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// EIP-1474: wrong arity, bad hex, a field of the wrong width.
    pub const INVALID_PARAMS: i64 = -32602;
    /// EIP-1474: the client broke its own invariants (or the core broke the `Chain` contract).
    pub const INTERNAL_ERROR: i64 = -32603;
    /// EIP-1474 "invalid input"; geth's code for "header not found" in state methods.
    pub const INVALID_INPUT: i64 = -32000;
    /// EIP-1474: every server asked failed or timed out.
    pub const RESOURCE_UNAVAILABLE: i64 = -32002;
    /// EIP-1474: the servers refused the transaction.
    pub const TRANSACTION_REJECTED: i64 = -32003;
    /// EIP-1474: a known method (or variant of one) that this provider does not support.
    pub const METHOD_NOT_SUPPORTED: i64 = -32004;
    /// EIP-1474: the request reaches further back than the client verifies.
    pub const LIMIT_EXCEEDED: i64 = -32005;
    /// Ours: a server sent data that failed verification, so there is no answer rather than
    /// an unverified one. `data` is `{server, reason}`.
    pub const VERIFICATION_FAILED: i64 = -32050;
    /// geth's code for a call that reverted (`eth_call`, `eth_estimateGas`): message
    /// "execution reverted[: reason]", `data` the revert bytes.
    pub const EXECUTION_REVERTED: i64 = 3;
    /// EIP-1193: the method needs an account, and this provider has none (read-only).
    pub const UNAUTHORIZED: i64 = 4100;
    /// EIP-1193: the provider does not support the method.
    pub const UNSUPPORTED_METHOD: i64 = 4200;
    /// EIP-1193: the provider can serve no request (no verified head, or stopped).
    pub const DISCONNECTED: i64 = 4900;
}

/// An error as EIP-1193 rejects a request with it: integer `code`, readable `message`,
/// optional `data`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RpcError {
    /// One of [`codes`].
    pub code: i64,
    /// What went wrong, for a person.
    pub message: String,
    /// Structured detail, if any.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    /// Adds structured detail.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// -32700.
    pub fn parse(message: impl Into<String>) -> Self {
        Self::new(codes::PARSE_ERROR, message)
    }

    /// -32600.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_REQUEST, message)
    }

    /// -32602.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAMS, message)
    }

    /// -32603.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(codes::INTERNAL_ERROR, message)
    }

    /// -32000 "header not found": a state method named a block the client does not have
    /// (above the head, or an unknown hash). Block getters answer `null` instead.
    pub fn header_not_found() -> Self {
        Self::new(codes::INVALID_INPUT, "header not found")
    }

    /// 4100 for a method that needs an account.
    pub fn unauthorized(method: &str) -> Self {
        Self::new(
            codes::UNAUTHORIZED,
            format!(
                "{method} needs an account, and ulc is a read-only provider: sign locally and \
                 use eth_sendRawTransaction"
            ),
        )
    }

    /// 4200 naming the method.
    pub fn unsupported_method(method: &str) -> Self {
        Self::new(codes::UNSUPPORTED_METHOD, format!("the method {method} is not supported"))
    }

    /// The error object of a JSON-RPC response: `{code, message, data?}`.
    pub fn to_json(&self) -> Value {
        let mut object = json!({ "code": self.code, "message": self.message });
        if let (Some(data), Value::Object(map)) = (&self.data, &mut object) {
            map.insert("data".into(), data.clone());
        }
        object
    }
}

impl From<ClientError> for RpcError {
    fn from(error: ClientError) -> Self {
        let message = error.to_string();
        match error {
            ClientError::Disconnected(_) | ClientError::Stopped => {
                Self::new(codes::DISCONNECTED, message)
            }
            ClientError::Unavailable(_) => Self::new(codes::RESOURCE_UNAVAILABLE, message),
            ClientError::Verification { server, reason } => {
                Self::new(codes::VERIFICATION_FAILED, message)
                    .with_data(json!({ "server": server, "reason": reason }))
            }
            ClientError::Limit(_) => Self::new(codes::LIMIT_EXCEEDED, message),
            ClientError::Rejected(_) => Self::new(codes::TRANSACTION_REJECTED, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_map_to_their_codes() {
        let cases = [
            (ClientError::Disconnected("no head".into()), codes::DISCONNECTED),
            (ClientError::Stopped, codes::DISCONNECTED),
            (ClientError::Unavailable("timeout".into()), codes::RESOURCE_UNAVAILABLE),
            (ClientError::Limit("too old".into()), codes::LIMIT_EXCEEDED),
            (ClientError::Rejected("nonce too low".into()), codes::TRANSACTION_REJECTED),
        ];
        for (error, code) in cases {
            let message = error.to_string();
            let rpc = RpcError::from(error);
            assert_eq!((rpc.code, rpc.message.as_str(), rpc.data), (code, message.as_str(), None));
        }
        let rpc = RpcError::from(ClientError::Verification {
            server: "ab".into(),
            reason: "bad proof".into(),
        });
        assert_eq!(rpc.code, -32050);
        assert_eq!(rpc.data, Some(json!({"server": "ab", "reason": "bad proof"})));
    }

    #[test]
    fn error_object_carries_data_only_when_present() {
        assert_eq!(
            RpcError::invalid_params("x").to_json(),
            json!({"code": -32602, "message": "x"})
        );
        assert_eq!(
            RpcError::internal("y").with_data(json!([1])).to_json(),
            json!({"code": -32603, "message": "y", "data": [1]})
        );
        assert_eq!(RpcError::header_not_found().code, -32000);
        assert_eq!(RpcError::unauthorized("eth_sign").code, 4100);
        assert!(RpcError::unsupported_method("eth_foo").message.contains("eth_foo"));
    }
}
