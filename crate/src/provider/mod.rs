//! The EIP-1193 provider: answers a dapp's JSON-RPC requests from the verified data of
//! [`Chain`], and turns the core's events into `connect` / `disconnect` / `message` notices.
//!
//! Nothing is passed through from a server: every answer is local configuration, data the
//! core verified against the ULC-accepted head, or derived from such data
//! (`docs/verification.md` lists how, per method). Parameters are parsed strictly
//! ([`params`]), results are encoded by hand ([`encode`]), errors carry stable codes
//! ([`error::codes`]). The service-model methods (`ulc_serviceStatus`,
//! `ulc_setPaymentPolicy`, `ulc_openChannel`, `ulc_topUpChannel`) are in [`service`].
//!
//! Block tags: `latest`, `pending`, `safe` and `finalized` all mean the accepted head (ULC has
//! no pending block and no finality gadget); `earliest` is block 0. A block above the head is
//! `null` for block getters and -32000 "header not found" for state methods.
//!
//! Single-threaded (`Rc`); the provider spawns nothing: the embedding layer feeds it each
//! [`ClientEvent`] from [`Chain::events`] through [`Provider::handle_event`], then spawns
//! [`Provider::process`] (the receipts `logs` subscriptions need for a new head).

pub mod call;
pub mod encode;
pub mod error;
pub mod fees;
pub mod filters;
pub mod logs;
pub mod params;
pub mod service;
#[cfg(test)]
mod tests;

pub use error::{RpcError, codes};

use crate::chain::{Chain, ClientEvent, VerifiedBody};
use alloy_consensus::Transaction;
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::B256;
use encode::{TxFacts, data, qty};
use futures_util::FutureExt;
use futures_util::future::{LocalBoxFuture, ready};
use les::chain::SealedHeader;
use params::{BlockId, BlockTag, Params};
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// What the provider tells the page, as EIP-1193 events.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderNotice {
    /// `connect` with `{chainId}`: the provider can serve requests (again).
    Connect {
        /// Hex chain ID.
        chain_id: String,
    },
    /// `disconnect` with a ProviderRpcError whose code is a CloseEvent code.
    Disconnect {
        /// 1006, 1013, ...
        code: u16,
        /// Why.
        message: String,
    },
    /// `chainChanged` (hex chain ID). The chain is fixed by configuration, so the provider
    /// itself never sends this; it is here for the embedding layer.
    ChainChanged(String),
    /// `message` with `{type: "eth_subscription", data: {subscription, result}}`.
    Message {
        /// The subscription ID `eth_subscribe` returned.
        subscription: String,
        /// The notification payload.
        result: Value,
    },
}

/// The sink notices go to.
type Notifier = Rc<dyn Fn(ProviderNotice)>;

#[derive(Default)]
struct State {
    /// IDs of the live `newHeads` subscriptions, in creation order.
    new_heads: RefCell<Vec<String>>,
    /// Polled filters and `logs` subscriptions ([`filters`]).
    filters: filters::FilterState,
    next_subscription: Cell<u64>,
    notifier: RefCell<Option<Notifier>>,
    /// Whether the last notice sent was `connect` (so each transition is told once).
    connected: Cell<bool>,
    /// The EVM of `eth_call` & co.: its state caches and counters ([`call`]).
    evm: Rc<crate::evm::Evm>,
}

/// An EIP-1193 provider over a verified [`Chain`].
pub struct Provider<C: Chain> {
    chain: Rc<C>,
    state: Rc<State>,
}

impl<C: Chain> Clone for Provider<C> {
    fn clone(&self) -> Self {
        Self { chain: self.chain.clone(), state: self.state.clone() }
    }
}

type RpcFuture = LocalBoxFuture<'static, Result<Value, RpcError>>;

fn done(result: Result<Value, RpcError>) -> RpcFuture {
    ready(result).boxed_local()
}

impl<C: Chain> Provider<C> {
    /// A provider answering from `chain`.
    pub fn new(chain: Rc<C>) -> Self {
        Self { chain, state: Rc::default() }
    }

    /// The chain it answers from.
    pub fn chain(&self) -> &Rc<C> {
        &self.chain
    }

    /// Registers where notices go (replacing any earlier sink).
    pub fn set_notifier(&self, f: Box<dyn Fn(ProviderNotice)>) {
        *self.state.notifier.borrow_mut() = Some(Rc::from(f));
    }

    fn notify(&self, notices: Vec<ProviderNotice>) {
        // Cloned out so the sink may call back into the provider (subscribe, set_notifier).
        let notifier = self.state.notifier.borrow().clone();
        if let Some(notifier) = notifier {
            notices.into_iter().for_each(|notice| notifier(notice));
        }
    }

    /// Handles one event of [`Chain::events`]: `Connected` and `Disconnected` become
    /// `connect` / `disconnect` notices once per transition (a `disconnect` only after a
    /// `connect`); each `NewHead` goes to every `newHeads` subscriber as the EIP-1474 header
    /// object; disagreements are the core's metrics' business.
    pub fn handle_event(&self, event: &ClientEvent) {
        let notices = match event {
            ClientEvent::Connected if !self.state.connected.replace(true) => {
                vec![ProviderNotice::Connect { chain_id: format!("{:#x}", self.chain.chain_id()) }]
            }
            ClientEvent::Disconnected { code, reason } if self.state.connected.replace(false) => {
                vec![ProviderNotice::Disconnect { code: *code, message: reason.clone() }]
            }
            ClientEvent::NewHead(header) => {
                let result = Value::Object(encode::header_object(header));
                self.state
                    .new_heads
                    .borrow()
                    .iter()
                    .map(|id| ProviderNotice::Message {
                        subscription: id.clone(),
                        result: result.clone(),
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        if let ClientEvent::NewHead(header) = event {
            self.state.filters.on_new_head(header);
        }
        self.notify(notices);
    }

    /// The asynchronous part of handling events: the `logs` subscriptions' receipts for the
    /// newest head (see [`filters::process`]). The embedding layer runs it after each
    /// [`Provider::handle_event`] (spawned, so other events are not held up); it returns at
    /// once when there is nothing to do or another run is under way.
    pub fn process(&self) -> LocalBoxFuture<'static, ()> {
        filters::process(self.clone())
    }

    /// Answers one EIP-1193 request with its bare result. `params` is an array, `null` for
    /// none, or an object (accepted only by methods that take no parameters).
    pub fn request(&self, method: &str, params: Value) -> RpcFuture {
        match self.dispatch(method, params) {
            Ok(future) => future,
            Err(error) => done(Err(error)),
        }
    }

    /// Answers a request given as JSON text `{"method", "params"?}` with JSON text
    /// `{"result": ..}` or `{"error": {code, message, data?}}`.
    pub fn request_json(&self, text: &str) -> LocalBoxFuture<'static, String> {
        let request = match serde_json::from_str::<Value>(text) {
            Err(error) => Err(RpcError::parse(format!("request is not JSON: {error}"))),
            Ok(Value::Object(mut object)) => match object.remove("method") {
                Some(Value::String(method)) => Ok((method, object.remove("params"))),
                _ => Err(RpcError::invalid_request("request needs a \"method\" string")),
            },
            Ok(_) => Err(RpcError::invalid_request("request must be a JSON object")),
        };
        let future = match request {
            Ok((method, params)) => self.request(&method, params.unwrap_or(Value::Null)),
            Err(error) => done(Err(error)),
        };
        async move {
            match future.await {
                Ok(result) => json!({ "result": result }),
                Err(error) => json!({ "error": error.to_json() }),
            }
            .to_string()
        }
        .boxed_local()
    }

    fn dispatch(&self, method: &str, params: Value) -> Result<RpcFuture, RpcError> {
        let p = Params::new(method, params)?;
        let chain = self.chain.clone();
        let future = match method {
            // Local.
            "eth_chainId" => {
                p.arity(0, 0)?;
                done(Ok(qty(chain.chain_id())))
            }
            "net_version" => {
                p.arity(0, 0)?;
                done(Ok(Value::String(chain.chain_id().to_string())))
            }
            "web3_clientVersion" => {
                p.arity(0, 0)?;
                done(Ok(Value::String(concat!("ulc/", env!("CARGO_PKG_VERSION")).into())))
            }
            "eth_accounts" => {
                p.arity(0, 0)?;
                done(Ok(json!([])))
            }
            "eth_requestAccounts"
            | "eth_sendTransaction"
            | "eth_sign"
            | "personal_sign"
            | "eth_signTransaction"
            | "eth_signTypedData"
            | "eth_signTypedData_v3"
            | "eth_signTypedData_v4" => return Err(RpcError::unauthorized(method)),
            "eth_fillTransaction" => {
                return Err(RpcError::new(
                    codes::METHOD_NOT_FOUND,
                    "the method eth_fillTransaction does not exist",
                ));
            }
            "eth_subscribe" => return self.subscribe(&p).map(|id| done(Ok(id))),
            "eth_unsubscribe" => {
                p.arity(1, 1)?;
                let id = p.required(0, "subscription")?;
                let id = id.as_str().ok_or_else(|| {
                    RpcError::invalid_params("invalid subscription: expected a string")
                })?;
                let mut subscriptions = self.state.new_heads.borrow_mut();
                let before = subscriptions.len();
                subscriptions.retain(|live| live != id);
                let logs = self.state.filters.unsubscribe_logs(id);
                done(Ok(Value::Bool(subscriptions.len() != before || logs)))
            }
            "ulc_metrics" => {
                p.arity(0, 0)?;
                let mut metrics = chain.metrics();
                if let Value::Object(map) = &mut metrics {
                    map.insert("evm".into(), self.state.evm.stats().to_json());
                }
                done(Ok(metrics))
            }
            "ulc_serviceStatus" => service::service_status(chain, &p)?,
            "ulc_setPaymentPolicy" => service::set_payment_policy(chain, &p)?,
            "ulc_openChannel" => service::open_channel(chain, &p)?,
            "ulc_topUpChannel" => service::top_up_channel(chain, &p)?,
            "ulc_status" => {
                p.arity(0, 0)?;
                async move { status(&*chain).await }.boxed_local()
            }

            // Verified headers and bodies.
            "eth_blockNumber" => {
                p.arity(0, 0)?;
                async move { Ok(qty(chain.head().await?.header.number())) }.boxed_local()
            }
            "eth_getBlockByNumber" | "eth_getBlockByHash" => {
                p.arity(1, 2)?;
                let block = if method == "eth_getBlockByHash" {
                    let hash = params::hash(p.required(0, "blockHash")?, "blockHash")?;
                    BlockId::Hash { hash, require_canonical: false }
                } else {
                    BlockId::Tag(params::block_tag(p.required(0, "block")?, "block")?)
                };
                let full = p
                    .get(1)
                    .map(|v| params::boolean(v, "fullTransactions"))
                    .transpose()?
                    .unwrap_or(false);
                async move {
                    let Some(header) = resolve(&*chain, block).await? else {
                        return Ok(Value::Null);
                    };
                    let body = chain.body(&header).await?;
                    encode::block_object(&header, &body, full).map_err(internal)
                }
                .boxed_local()
            }
            "eth_getTransactionByHash" => {
                p.arity(1, 1)?;
                let hash = params::hash(p.required(0, "transactionHash")?, "transactionHash")?;
                async move {
                    Ok(match locate(&*chain, hash).await? {
                        None => Value::Null,
                        Some((header, body, index)) => {
                            let (tx, from) =
                                (&body.body.transactions()[index], body.senders[index]);
                            let ctx = encode::TxContext::new(&header, index as u64);
                            encode::transaction_object(tx, from, &ctx)
                        }
                    })
                }
                .boxed_local()
            }

            // Verified receipts.
            "eth_getTransactionReceipt" => {
                p.arity(1, 1)?;
                let hash = params::hash(p.required(0, "transactionHash")?, "transactionHash")?;
                async move {
                    let Some((header, body, index)) = locate(&*chain, hash).await? else {
                        return Ok(Value::Null);
                    };
                    let mut receipts = block_receipts(&*chain, &header, &body).await?;
                    Ok(if index < receipts.len() {
                        receipts.swap_remove(index)
                    } else {
                        Value::Null
                    })
                }
                .boxed_local()
            }
            "eth_getBlockReceipts" => {
                p.arity(1, 1)?;
                let block = params::block_id(p.required(0, "block")?, "block")?;
                async move {
                    let Some(header) = resolve(&*chain, block).await? else {
                        return Ok(Value::Null);
                    };
                    let body = chain.body(&header).await?;
                    Ok(Value::Array(block_receipts(&*chain, &header, &body).await?))
                }
                .boxed_local()
            }

            // Verified state.
            "eth_getBalance" | "eth_getTransactionCount" | "eth_getCode" => {
                p.arity(1, 2)?;
                let address = params::address(p.required(0, "address")?, "address")?;
                let block = optional_block(&p, 1)?;
                let method = method.to_owned();
                async move {
                    let header = state_header(&*chain, block).await?;
                    let state = chain.account(&header, address, Vec::new()).await?;
                    let account = state.account.unwrap_or_default();
                    Ok(match method.as_str() {
                        "eth_getBalance" => qty(account.balance),
                        // "pending" is the head too: the nonce of the latest verified state.
                        "eth_getTransactionCount" => qty(account.nonce),
                        _ if account.code_hash == alloy_consensus::constants::KECCAK_EMPTY => {
                            data([])
                        }
                        _ => data(chain.code(&header, address, account.code_hash).await?),
                    })
                }
                .boxed_local()
            }
            "eth_getStorageAt" => {
                p.arity(2, 3)?;
                let address = params::address(p.required(0, "address")?, "address")?;
                let slot = params::slot(p.required(1, "slot")?, "slot")?.slot;
                let block = optional_block(&p, 2)?;
                async move {
                    let header = state_header(&*chain, block).await?;
                    let state = chain.account(&header, address, vec![slot]).await?;
                    let value = match state.storage.as_slice() {
                        [(proven, value, _)] if *proven == slot => *value,
                        _ => return Err(internal("the core answered for other storage slots")),
                    };
                    Ok(data(value.to_be_bytes::<32>()))
                }
                .boxed_local()
            }
            "eth_getProof" => {
                p.arity(2, 3)?;
                let address = params::address(p.required(0, "address")?, "address")?;
                let keys = p.required(1, "storageKeys")?.as_array().ok_or_else(|| {
                    RpcError::invalid_params("invalid storageKeys: expected an array")
                })?;
                let keys = keys
                    .iter()
                    .enumerate()
                    .map(|(i, key)| params::slot(key, &format!("storageKeys[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                let block = optional_block(&p, 2)?;
                async move {
                    let header = state_header(&*chain, block).await?;
                    let slots: Vec<B256> = keys.iter().map(|key| key.slot).collect();
                    let state = chain.account(&header, address, slots.clone()).await?;
                    if !state.storage.iter().map(|(slot, _, _)| slot).eq(slots.iter()) {
                        return Err(internal("the core answered for other storage slots"));
                    }
                    let widths: Vec<bool> = keys.iter().map(|key| key.full_width).collect();
                    Ok(encode::proof_object(address, &state, &widths))
                }
                .boxed_local()
            }

            // Local execution over proven state.
            "eth_call" => call::eth_call(chain, self.state.evm.clone(), &p)?,
            "eth_estimateGas" => call::eth_estimate_gas(chain, self.state.evm.clone(), &p)?,
            "eth_createAccessList" => {
                call::eth_create_access_list(chain, self.state.evm.clone(), &p)?
            }

            // Transactions out.
            "eth_sendRawTransaction" => {
                p.arity(1, 1)?;
                let raw = params::data(p.required(0, "transaction")?, "transaction")?;
                // Blob transactions arrive with their sidecar, so decode as the pooled form.
                let tx = alloy_consensus::TxEnvelope::decode_2718_exact(&raw).map_err(|e| {
                    RpcError::invalid_params(format!(
                        "invalid transaction: not a signed EIP-2718 transaction ({e})"
                    ))
                })?;
                if let Some(id) = tx.chain_id().filter(|id| *id != chain.chain_id()) {
                    return Err(RpcError::invalid_params(format!(
                        "invalid transaction: signed for chain {id}, this is chain {}",
                        chain.chain_id()
                    )));
                }
                async move { Ok(data(chain.send_raw_transaction(raw).await?)) }.boxed_local()
            }

            // Logs, filters and fees ([`logs`], [`filters`], [`fees`]).
            "eth_getLogs" => logs::get_logs(chain, &p)?,
            "eth_newFilter" => filters::new_filter(self, &p)?,
            "eth_newBlockFilter" => filters::new_block_filter(self, &p)?,
            "eth_newPendingTransactionFilter" => filters::new_pending_transaction_filter(&p)?,
            "eth_getFilterChanges" => filters::filter_changes(self, &p)?,
            "eth_getFilterLogs" => filters::filter_logs(self, &p)?,
            "eth_uninstallFilter" => filters::uninstall(self, &p)?,
            "eth_feeHistory" => fees::fee_history(chain, &p)?,
            "eth_maxPriorityFeePerGas" => fees::max_priority_fee(chain, &p)?,
            "eth_gasPrice" => fees::gas_price(chain, &p)?,
            _ => return Err(RpcError::unsupported_method(method)),
        };
        Ok(future)
    }

    fn subscribe(&self, p: &Params) -> Result<Value, RpcError> {
        p.arity(1, 2)?;
        let kind = p.required(0, "subscription type")?;
        match kind.as_str() {
            Some("newHeads") => {
                p.arity(1, 1)?;
                let n = self.state.next_subscription.get() + 1;
                self.state.next_subscription.set(n);
                let id = format!("0x{n:032x}");
                self.state.new_heads.borrow_mut().push(id.clone());
                Ok(Value::String(id))
            }
            Some("logs") => {
                let n = self.state.next_subscription.get() + 1;
                self.state.next_subscription.set(n);
                let id = format!("0x{n:032x}");
                self.state.filters.subscribe_logs(id.clone(), p.get(1))?;
                Ok(Value::String(id))
            }
            _ => Err(RpcError::invalid_params(format!(
                "invalid subscription type {kind}: only \"newHeads\" and \"logs\" are supported"
            ))),
        }
    }
}

fn internal(error: impl std::fmt::Display) -> RpcError {
    RpcError::internal(error.to_string())
}

/// An optional trailing block parameter; absent or `null` is `latest`.
fn optional_block(p: &Params, index: usize) -> Result<BlockId, RpcError> {
    p.get(index).map_or(Ok(BlockId::LATEST), |value| params::block_id(value, "block"))
}

/// The header a block parameter names, `None` if there is none (above the head, unknown
/// hash). With EIP-1898 `requireCanonical`, a known block off the head's chain is an error.
async fn resolve<C: Chain>(chain: &C, block: BlockId) -> Result<Option<SealedHeader>, RpcError> {
    Ok(match block {
        BlockId::Tag(BlockTag::Latest) => Some(chain.head().await?.header),
        BlockId::Tag(BlockTag::Earliest) => chain.header_by_number(0).await?,
        BlockId::Tag(BlockTag::Number(n)) => chain.header_by_number(n).await?,
        BlockId::Hash { hash, require_canonical } => match chain.header_by_hash(hash).await? {
            Some(header) if require_canonical && !chain.is_canonical(&header).await? => {
                return Err(RpcError::new(
                    codes::INVALID_INPUT,
                    format!("block {hash} is not canonical"),
                ));
            }
            header => header,
        },
    })
}

/// The header a state method reads at; none is -32000 "header not found" (geth's answer).
async fn state_header<C: Chain>(chain: &C, block: BlockId) -> Result<SealedHeader, RpcError> {
    resolve(chain, block).await?.ok_or_else(RpcError::header_not_found)
}

/// Finds a transaction and checks where the servers say it is: the block must exist with
/// that number, be canonical, and hold a transaction with this hash at that index. Any
/// mismatch is `None` (the answer `null`), as for an unknown transaction.
async fn locate<C: Chain>(
    chain: &C,
    hash: B256,
) -> Result<Option<(SealedHeader, VerifiedBody, usize)>, RpcError> {
    let Some(location) = chain.transaction_location(hash).await? else { return Ok(None) };
    let Some(header) = chain.header_by_hash(location.block_hash).await? else {
        return Ok(None);
    };
    if header.number() != location.block_number || !chain.is_canonical(&header).await? {
        return Ok(None);
    }
    let body = chain.body(&header).await?;
    let Ok(index) = usize::try_from(location.index) else { return Ok(None) };
    let checks_out = body.body.transactions().get(index).is_some_and(|tx| *tx.tx_hash() == hash)
        && index < body.senders.len();
    Ok(checks_out.then_some((header, body, index)))
}

/// Every receipt of a block as JSON, from its verified body and receipts.
async fn block_receipts<C: Chain>(
    chain: &C,
    header: &SealedHeader,
    body: &VerifiedBody,
) -> Result<Vec<Value>, RpcError> {
    let receipts = chain.receipts(header).await?;
    let base_fee = header.header().base_fee_per_gas;
    let facts: Vec<TxFacts> = body
        .body
        .transactions()
        .iter()
        .zip(&body.senders)
        .map(|(tx, from)| TxFacts::of(tx, *from, base_fee))
        .collect();
    if facts.len() != body.body.transactions().len() {
        return Err(internal("the core gave fewer senders than transactions"));
    }
    let blob_gas_price = encode::blob_gas_price(chain.chain_id(), header);
    encode::block_receipts(header, &facts, receipts.receipts(), blob_gas_price).map_err(internal)
}

/// `ulc_status`, answered at once from local state: the accepted head (at a warm start the
/// restored one, `stale` until a fresh quorum confirms it) with who signed it, and how many
/// servers are connected. `connected` is whether the provider can serve requests now.
async fn status<C: Chain>(chain: &C) -> Result<Value, RpcError> {
    let servers = chain.connected_servers();
    let head = chain.current_head();
    Ok(json!({
        "connected": servers > 0 && head.is_some(),
        "connectedServers": servers,
        "chainId": qty(chain.chain_id()),
        "head": head.map(|head| json!({
            "number": qty(head.header.number()),
            "hash": data(head.header.hash()),
            "timestamp": qty(head.header.header().timestamp),
            "stale": head.stale,
            "signers": head.signers.iter().map(data).collect::<Vec<_>>(),
        })),
    }))
}
