//! A minimal JSON-RPC 2.0 client over HTTP (reqwest): single calls and batches, request ids
//! matched against responses, node errors and transport failures kept apart.
//!
//! Hand-written rather than pulling in a provider crate: lesd needs a dozen methods, typed
//! errors that tell "node down" from "node said no", and a cap on response size.

use super::{MalformedReason, UpstreamError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long to wait for a TCP connection to the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a response may stall between two reads.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for a whole request, so a trickling upstream cannot hold a client forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response body accepted. A full mainnet block with its receipts is a few MiB of
/// JSON; this leaves ample headroom while bounding memory.
pub(super) const MAX_RESPONSE_BYTES: usize = 128 * 1024 * 1024;

/// The JSON-RPC client: a pooled reqwest client, the endpoint, and a request id counter.
#[derive(Debug)]
pub(super) struct RpcClient {
    http: reqwest::Client,
    url: reqwest::Url,
    next_id: AtomicU64,
}

/// One call of a batch.
pub(super) struct Call {
    /// The method name.
    pub method: &'static str,
    /// The positional parameters.
    pub params: Value,
}

#[derive(Serialize)]
struct Request<'a, P> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    params: P,
}

#[derive(Deserialize)]
struct Response<R> {
    id: Option<u64>,
    result: Option<R>,
    error: Option<ErrorObject>,
}

#[derive(Deserialize)]
struct ErrorObject {
    code: i64,
    message: String,
}

impl RpcClient {
    /// A client for `url`, which must be `http://` (lesd is built without TLS).
    pub fn new(url: &str) -> Result<Self, UpstreamError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|source| UpstreamError::InvalidUrl { url: url.to_owned(), source })?;
        if parsed.scheme() != "http" {
            return Err(UpstreamError::UnsupportedScheme { scheme: parsed.scheme().to_owned() });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(UpstreamError::Transport)?;
        Ok(Self { http, url: parsed, next_id: AtomicU64::new(1) })
    }

    /// The endpoint.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    fn fresh_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Calls `method`; `Ok(None)` when the node answers `null`.
    pub async fn call_optional<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &'static str,
        params: P,
    ) -> Result<Option<R>, UpstreamError> {
        let id = self.fresh_id();
        let body = self.post(&Request { jsonrpc: "2.0", id, method, params }).await?;
        let response: Response<R> = serde_json::from_slice(&body)
            .map_err(|source| UpstreamError::malformed(method, MalformedReason::Json(source)))?;
        if response.id != Some(id) {
            return Err(UpstreamError::malformed(method, MalformedReason::IdMismatch));
        }
        match response.error {
            Some(error) => Err(UpstreamError::Rpc { code: error.code, message: error.message }),
            None => Ok(response.result),
        }
    }

    /// Calls `method`, whose answer must not be `null`.
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &'static str,
        params: P,
    ) -> Result<R, UpstreamError> {
        self.call_optional(method, params)
            .await?
            .ok_or(UpstreamError::malformed(method, MalformedReason::MissingResult))
    }

    /// Sends `calls` as one batch and returns each call's outcome in the order given
    /// (`Ok(Value::Null)` for a `null` result). A transport failure fails the whole batch.
    pub async fn batch(
        &self,
        calls: &[Call],
    ) -> Result<Vec<Result<Value, UpstreamError>>, UpstreamError> {
        let first_id = self.next_id.fetch_add(calls.len() as u64, Ordering::Relaxed);
        let requests: Vec<Request<'_, &Value>> = calls
            .iter()
            .zip(first_id..)
            .map(|(call, id)| Request {
                jsonrpc: "2.0",
                id,
                method: call.method,
                params: &call.params,
            })
            .collect();
        let batch_name = calls.first().map_or("batch", |call| call.method);
        let body = self.post(&requests).await?;
        let responses: Vec<Response<Value>> = serde_json::from_slice(&body).map_err(|source| {
            UpstreamError::malformed(batch_name, MalformedReason::Json(source))
        })?;
        if responses.len() != calls.len() {
            return Err(UpstreamError::malformed(batch_name, MalformedReason::BatchLength));
        }
        // Servers may answer a batch in any order; place each response by its id.
        let mut outcomes: Vec<Option<Result<Value, UpstreamError>>> =
            calls.iter().map(|_| None).collect();
        for response in responses {
            let slot = response
                .id
                .and_then(|id| id.checked_sub(first_id))
                .and_then(|offset| usize::try_from(offset).ok())
                .and_then(|index| outcomes.get_mut(index))
                .ok_or(UpstreamError::malformed(batch_name, MalformedReason::IdMismatch))?;
            if slot.is_some() {
                return Err(UpstreamError::malformed(batch_name, MalformedReason::IdMismatch));
            }
            *slot = Some(match response.error {
                Some(error) => Err(UpstreamError::Rpc { code: error.code, message: error.message }),
                None => Ok(response.result.unwrap_or(Value::Null)),
            });
        }
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.ok_or(UpstreamError::malformed(batch_name, MalformedReason::IdMismatch))
            })
            .collect()
    }

    /// POSTs a JSON body and reads the response, at most [`MAX_RESPONSE_BYTES`].
    async fn post<B: Serialize + ?Sized>(&self, body: &B) -> Result<Vec<u8>, UpstreamError> {
        let mut response = self
            .http
            .post(self.url.clone())
            .json(body)
            .send()
            .await
            .map_err(UpstreamError::from_reqwest)?;
        let status = response.status();
        if response.content_length().is_some_and(|length| length > MAX_RESPONSE_BYTES as u64) {
            return Err(UpstreamError::ResponseTooLarge { limit: MAX_RESPONSE_BYTES });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(UpstreamError::from_reqwest)? {
            if bytes.len().saturating_add(chunk.len()) > MAX_RESPONSE_BYTES {
                return Err(UpstreamError::ResponseTooLarge { limit: MAX_RESPONSE_BYTES });
            }
            bytes.extend_from_slice(&chunk);
        }
        // Some nodes put JSON-RPC errors in non-2xx replies; let the caller parse those, and
        // only report the status when the body is not JSON at all.
        if !status.is_success() && serde_json::from_slice::<Value>(&bytes).is_err() {
            return Err(UpstreamError::HttpStatus { status: status.as_u16() });
        }
        Ok(bytes)
    }
}

/// Parses one batch outcome into its type, `None` for `null`.
pub(super) fn from_value<R: DeserializeOwned>(
    method: &'static str,
    value: Value,
) -> Result<Option<R>, UpstreamError> {
    if value.is_null() {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|source| UpstreamError::malformed(method, MalformedReason::Json(source)))
}
