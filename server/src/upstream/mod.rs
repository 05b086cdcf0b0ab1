//! The upstream: the Ethereum JSON-RPC node lesd serves from, and the checks that make its
//! answers safe to serve.
//!
//! Nothing the upstream says is passed on unchecked. Every header is rebuilt from the JSON
//! fields into a consensus header and must hash to the block hash the node reports (a node
//! whose fields we cannot reproduce, e.g. one from a fork alloy does not know yet, is refused
//! rather than served with a wrong hash). Bodies are rebuilt from the RPC transactions and
//! checked against the verified header's transactions root, ommers hash and withdrawals root;
//! receipts against its receipts root; proofs against its state root; code against the proven
//! account's code hash. Data keyed by hash is cached in the [`Store`] and read from it first.

mod rpc;

use crate::store::{Store, StoreError};
use alloy_consensus::{EMPTY_ROOT_HASH, ReceiptEnvelope, TxEnvelope};
use alloy_eips::eip2718::{Decodable2718, Eip2718Error, Encodable2718};
use alloy_primitives::{Address, B256, Bytes, U64, U256, keccak256};
use alloy_rpc_types_eth::{
    Block, BlockTransactions, EIP1186AccountProofResponse, Header as RpcHeader, TransactionReceipt,
};
use les::chain::{
    BlockBody, BlockReceipts, BlockTransaction, BodyError, CodeError, ProofError, ReceiptsError,
    SealedHeader, verify_account_proof, verify_code, verify_storage_proof,
};
use les::msg::{TxLookup, TxState, TxStatusEntry};
use rpc::{Call, RpcClient, from_value};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

/// keccak256 of empty code: the code hash of every account without code.
const EMPTY_CODE_HASH: B256 = alloy_primitives::utils::KECCAK256_EMPTY;

/// The error of parsing an upstream URL.
pub type UrlParseError = <reqwest::Url as std::str::FromStr>::Err;

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream URL does not parse.
    #[error("invalid upstream URL {url:?}: {source}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// The parse error.
        source: UrlParseError,
    },
    /// The upstream URL is not `http://` (lesd has no TLS).
    #[error("unsupported upstream URL scheme {scheme:?}: only http:// is supported")]
    UnsupportedScheme {
        /// The scheme given.
        scheme: String,
    },
    /// The node could not be reached (connection refused, timed out): it is down or
    /// overloaded; retry later.
    #[error("upstream unreachable: {0}")]
    Unreachable(reqwest::Error),
    /// The HTTP exchange failed after connecting.
    #[error("upstream transport error: {0}")]
    Transport(reqwest::Error),
    /// The node answered with an HTTP error status and no JSON-RPC body.
    #[error("upstream answered HTTP {status}")]
    HttpStatus {
        /// The HTTP status code.
        status: u16,
    },
    /// The response exceeded the size limit.
    #[error("upstream response larger than {limit} bytes")]
    ResponseTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The node answered with a JSON-RPC error (for transactions: why it refused them).
    #[error("upstream RPC error {code}: {message}")]
    Rpc {
        /// The JSON-RPC error code.
        code: i64,
        /// The node's message.
        message: String,
    },
    /// The node's answer is not what the method returns.
    #[error("malformed upstream answer to {method}: {reason}")]
    Malformed {
        /// The JSON-RPC method (for a batch, its first method).
        method: &'static str,
        /// What was wrong.
        reason: MalformedReason,
    },
    /// A header rebuilt from the node's JSON fields does not hash to the hash the node gave.
    #[error("block {number}: upstream claims hash {claimed}, its fields hash to {rebuilt}")]
    HeaderHashMismatch {
        /// The block number.
        number: u64,
        /// The hash in the JSON.
        claimed: B256,
        /// The hash of the header rebuilt from the JSON fields.
        rebuilt: B256,
    },
    /// Block data from the node does not match its verified header.
    #[error("block {block}: upstream data does not match the header: {reason}")]
    RootMismatch {
        /// The block hash.
        block: B256,
        /// Which check failed (boxed: proof errors are large, and this path is rare).
        reason: Box<DataMismatch>,
    },
}

/// How an upstream answer was malformed.
#[derive(Debug, thiserror::Error)]
pub enum MalformedReason {
    /// Not valid JSON, or not the expected shape.
    #[error("JSON: {0}")]
    Json(serde_json::Error),
    /// A response id does not answer the request (or a batch id repeats or is missing).
    #[error("response id does not match the request")]
    IdMismatch,
    /// A batch answer has a different number of responses than requests.
    #[error("batch answer has the wrong number of responses")]
    BatchLength,
    /// `null` where a value is required.
    #[error("missing result")]
    MissingResult,
    /// The node answered about another block than the one asked for.
    #[error("answer is about block {number} ({hash})")]
    WrongBlock {
        /// The number of the block answered about.
        number: u64,
        /// The hash of the block answered about.
        hash: B256,
    },
    /// A full block came with transaction hashes (or an uncle marker) instead of transactions.
    #[error("block without full transactions")]
    NoFullTransactions,
    /// A transaction could not be re-encoded into its consensus form.
    #[error("transaction {index}: {source}")]
    Transaction {
        /// Position in the block.
        index: usize,
        /// The decoding error.
        source: Eip2718Error,
    },
    /// `net_version` is not a number.
    #[error("network id {0:?} is not a number")]
    NetworkId(String),
    /// An `eth_getProof` answer has a different number of storage proofs than slots asked.
    #[error("{got} storage proofs for {asked} slots")]
    StorageProofCount {
        /// Slots asked for.
        asked: usize,
        /// Storage proofs received.
        got: usize,
    },
    /// A storage proof is for another slot than the one at its position.
    #[error("storage proof {index} is for slot {got}, not {asked}")]
    StorageProofSlot {
        /// Position.
        index: usize,
        /// The slot asked for.
        asked: B256,
        /// The slot proven.
        got: B256,
    },
    /// An `eth_getProof` answer is for another address.
    #[error("proof is for account {0}")]
    ProofAddress(Address),
    /// A receipt lacks its block hash, number or index.
    #[error("receipt without block location")]
    ReceiptLocation,
    /// The node returned another hash for a submitted transaction than its own hash.
    #[error("node reports transaction hash {got}, the transaction hashes to {expected}")]
    SubmittedTxHash {
        /// keccak256 of the submitted encoding.
        expected: B256,
        /// What the node answered.
        got: B256,
    },
}

/// How block data failed its check against the verified header.
#[derive(Debug, thiserror::Error)]
pub enum DataMismatch {
    /// The body's roots differ from the header's.
    #[error("body: {0}")]
    Body(BodyError),
    /// The receipts root differs from the header's.
    #[error("receipts: {0}")]
    Receipts(ReceiptsError),
    /// A proof does not verify against the header's state root.
    #[error("proof: {0}")]
    Proof(ProofError),
    /// Code does not hash to the proven account's code hash.
    #[error("code: {0}")]
    Code(CodeError),
    /// A transaction re-encoded from the JSON hashes differently from the JSON hash.
    #[error("transaction {index}: upstream claims hash {claimed}, its fields hash to {rebuilt}")]
    TransactionHash {
        /// Position in the block.
        index: usize,
        /// The hash in the JSON.
        claimed: B256,
        /// The hash of the rebuilt transaction.
        rebuilt: B256,
    },
    /// An uncle header does not hash to the uncle hash the block lists.
    #[error("uncle {index}: block lists {listed}, the uncle header hashes to {rebuilt}")]
    UncleHash {
        /// Position in the uncle list.
        index: usize,
        /// The hash in the block's uncle list.
        listed: B256,
        /// The hash of the uncle header received.
        rebuilt: B256,
    },
}

impl UpstreamError {
    fn malformed(method: &'static str, reason: MalformedReason) -> Self {
        UpstreamError::Malformed { method, reason }
    }

    /// Connection failures and timeouts mean the node is unavailable; the rest of reqwest's
    /// errors are transport errors.
    fn from_reqwest(error: reqwest::Error) -> Self {
        if error.is_connect() || error.is_timeout() {
            UpstreamError::Unreachable(error)
        } else {
            UpstreamError::Transport(error)
        }
    }

    fn mismatch(block: B256, reason: DataMismatch) -> Self {
        tracing::error!(%block, %reason, "upstream data does not match its header; not serving it");
        UpstreamError::RootMismatch { block, reason: Box::new(reason) }
    }

    /// Whether the failure is the node being unavailable (down, unreachable, failing at the
    /// HTTP level) rather than an answer: callers keep their clients and retry later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unreachable(_)
                | UpstreamError::Transport(_)
                | UpstreamError::HttpStatus { .. }
        )
    }
}

/// An account proof as EIP-1186 `eth_getProof` gives it, verified against the block's state
/// root: ordered node lists, root first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountProof {
    /// The account's proof in the state trie.
    pub account: Vec<Bytes>,
    /// One proof per requested slot, in request order, in the account's storage trie.
    pub storage: Vec<Vec<Bytes>>,
}

/// The upstream's head block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The verified head header.
    pub header: SealedHeader,
    /// The node's `totalDifficulty` for it, zero if the node omits it (post-merge nodes).
    pub total_difficulty: U256,
}

/// An EIP-1898 block reference by hash. `requireCanonical` is false: a block hash names its
/// state whether or not a reorg has since moved the canonical chain.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BlockHashRef {
    block_hash: B256,
    require_canonical: bool,
}

impl BlockHashRef {
    fn new(block_hash: B256) -> Self {
        Self { block_hash, require_canonical: false }
    }
}

/// The fields of a receipt that locate its transaction.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceiptLocation {
    block_hash: Option<B256>,
    block_number: Option<U64>,
    transaction_index: Option<U64>,
}

/// The JSON-RPC node lesd serves from. Cloning is cheap (shared connection pool and store).
#[derive(Debug, Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    rpc: RpcClient,
    store: Option<Store>,
    chain_id: u64,
    network_id: u64,
    genesis: SealedHeader,
}

impl Upstream {
    /// Connects to the node at `url` (`http://` only): reads its chain id, network id and
    /// genesis header (block 0, verified). `store`, if given, caches headers and receipts.
    pub async fn connect(url: &str, store: Option<Store>) -> Result<Self, UpstreamError> {
        let rpc = RpcClient::new(url)?;
        let chain_id: U64 = rpc.call("eth_chainId", ()).await?;
        let network_id_text: String = rpc.call("net_version", ()).await?;
        let network_id = parse_network_id(&network_id_text).ok_or_else(|| {
            UpstreamError::malformed("net_version", MalformedReason::NetworkId(network_id_text))
        })?;
        let genesis = fetch_header_by_number(&rpc, 0)
            .await?
            .ok_or(UpstreamError::malformed(
                "eth_getBlockByNumber",
                MalformedReason::MissingResult,
            ))?
            .0;
        tracing::info!(url = %rpc.url(), chain_id = chain_id.to::<u64>(), network_id, genesis = %genesis.hash(), "upstream connected");
        let upstream = Self {
            inner: Arc::new(Inner { rpc, store, chain_id: chain_id.to(), network_id, genesis }),
        };
        upstream.remember_header(&upstream.inner.genesis).await;
        Ok(upstream)
    }

    /// The chain id (`eth_chainId`).
    pub fn chain_id(&self) -> u64 {
        self.inner.chain_id
    }

    /// The network id (`net_version`).
    pub fn network_id(&self) -> u64 {
        self.inner.network_id
    }

    /// The genesis header.
    pub fn genesis(&self) -> &SealedHeader {
        &self.inner.genesis
    }

    /// The store, if one was given.
    pub fn store(&self) -> Option<&Store> {
        self.inner.store.as_ref()
    }

    /// The number of the node's latest block.
    pub async fn latest_number(&self) -> Result<u64, UpstreamError> {
        let number: U64 = self.inner.rpc.call("eth_blockNumber", ()).await?;
        Ok(number.to())
    }

    /// The node's latest block header with its total difficulty (zero when the node does
    /// not report one).
    pub async fn head(&self) -> Result<Head, UpstreamError> {
        let block: Block = self.inner.rpc.call("eth_getBlockByNumber", ("latest", false)).await?;
        let total_difficulty = block.header.total_difficulty.unwrap_or_default();
        let header = seal_rpc_header(block.header)?;
        self.remember_header(&header).await;
        Ok(Head { header, total_difficulty })
    }

    /// The canonical header at height `n`, `None` if the node has no such block yet.
    pub async fn header_by_number(&self, n: u64) -> Result<Option<SealedHeader>, UpstreamError> {
        let Some((header, _)) = fetch_header_by_number(&self.inner.rpc, n).await? else {
            return Ok(None);
        };
        self.remember_header(&header).await;
        Ok(Some(header))
    }

    /// The canonical headers at several heights, in one batch request (for `GetBlockHeaders`
    /// by number); `None` where the node has no such block yet.
    pub async fn headers_by_numbers(
        &self,
        numbers: &[u64],
    ) -> Result<Vec<Option<SealedHeader>>, UpstreamError> {
        const METHOD: &str = "eth_getBlockByNumber";
        if numbers.is_empty() {
            return Ok(Vec::new());
        }
        let calls: Vec<Call> = numbers
            .iter()
            .map(|&n| Call { method: METHOD, params: json!([U64::from(n), false]) })
            .collect();
        let answers = self.inner.rpc.batch(&calls).await?;
        let mut headers = Vec::with_capacity(numbers.len());
        for (&n, answer) in numbers.iter().zip(answers) {
            let header = match from_value::<Block>(METHOD, answer?)? {
                None => None,
                Some(block) => Some(checked_number(seal_rpc_header(block.header)?, n)?),
            };
            headers.push(header);
        }
        let fresh: Vec<SealedHeader> = headers.iter().flatten().cloned().collect();
        self.remember(move |store| store.put_headers(&fresh)).await;
        Ok(headers)
    }

    /// The header with this hash, from the store if cached, else from the node.
    pub async fn header_by_hash(&self, hash: B256) -> Result<Option<SealedHeader>, UpstreamError> {
        if let Some(header) = self.cached(move |store| store.header(hash)).await {
            return Ok(Some(header));
        }
        let block: Option<Block> =
            self.inner.rpc.call_optional("eth_getBlockByHash", (hash, false)).await?;
        let Some(block) = block else { return Ok(None) };
        let header = seal_rpc_header(block.header)?;
        expect_block("eth_getBlockByHash", &header, hash)?;
        self.remember_header(&header).await;
        Ok(Some(header))
    }

    /// The LES body of block `block` (`[transactions, uncles]`, plus `withdrawals` from
    /// Shanghai on), verified against the block's header.
    pub async fn body(&self, block: B256) -> Result<Option<Bytes>, UpstreamError> {
        const METHOD: &str = "eth_getBlockByHash";
        let rpc_block: Option<Block> = self.inner.rpc.call_optional(METHOD, (block, true)).await?;
        let Some(rpc_block) = rpc_block else { return Ok(None) };
        let header = seal_rpc_header(rpc_block.header)?;
        expect_block(METHOD, &header, block)?;
        self.remember_header(&header).await;

        let rpc_transactions = match rpc_block.transactions {
            BlockTransactions::Full(transactions) => transactions,
            // An empty array reads as "hashes"; it is just as well an empty full list.
            BlockTransactions::Hashes(hashes) if hashes.is_empty() => Vec::new(),
            BlockTransactions::Hashes(_) | BlockTransactions::Uncle => {
                return Err(UpstreamError::malformed(METHOD, MalformedReason::NoFullTransactions));
            }
        };
        let transactions = rpc_transactions
            .into_iter()
            .enumerate()
            .map(|(index, transaction)| {
                consensus_transaction(block, index, transaction.into_inner())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let uncles = self.uncles(block, &rpc_block.uncles).await?;
        let withdrawals = rpc_block.withdrawals.map(|withdrawals| withdrawals.into_inner());

        let body = BlockBody::new(transactions, uncles, withdrawals);
        body.verify(header.header())
            .map_err(|error| UpstreamError::mismatch(block, DataMismatch::Body(error)))?;
        Ok(Some(Bytes::from(body.encode())))
    }

    /// Fetches and verifies the uncle headers a block lists, in one batch.
    async fn uncles(
        &self,
        block: B256,
        listed: &[B256],
    ) -> Result<Vec<SealedHeader>, UpstreamError> {
        const METHOD: &str = "eth_getUncleByBlockHashAndIndex";
        if listed.is_empty() {
            return Ok(Vec::new());
        }
        let calls: Vec<Call> = (0..listed.len())
            .map(|index| Call { method: METHOD, params: json!([block, U64::from(index)]) })
            .collect();
        let answers = self.inner.rpc.batch(&calls).await?;
        listed
            .iter()
            .zip(answers)
            .enumerate()
            .map(|(index, (&listed_hash, answer))| {
                let rpc_header = from_value::<RpcHeader>(METHOD, answer?)?
                    .ok_or(UpstreamError::malformed(METHOD, MalformedReason::MissingResult))?;
                let uncle = seal_rpc_header(rpc_header)?;
                if uncle.hash() != listed_hash {
                    return Err(UpstreamError::mismatch(
                        block,
                        DataMismatch::UncleHash {
                            index,
                            listed: listed_hash,
                            rebuilt: uncle.hash(),
                        },
                    ));
                }
                Ok(uncle)
            })
            .collect()
    }

    /// The receipts of block `block`, each in its LES network form (legacy: the RLP list;
    /// typed: an RLP byte string holding `type || rlp(receipt)`), verified against the
    /// header's receipts root. From the store if cached.
    pub async fn receipts(&self, block: B256) -> Result<Option<Vec<Bytes>>, UpstreamError> {
        if let Some(receipts) = self.cached(move |store| store.receipts(block)).await {
            return Ok(Some(receipts));
        }
        let Some(header) = self.header_by_hash(block).await? else { return Ok(None) };
        let rpc_receipts: Option<Vec<TransactionReceipt>> =
            self.inner.rpc.call_optional("eth_getBlockReceipts", [block]).await?;
        let Some(rpc_receipts) = rpc_receipts else { return Ok(None) };
        let items: Vec<Bytes> = rpc_receipts
            .into_iter()
            .map(|receipt| {
                let envelope: ReceiptEnvelope = receipt.inner.into_primitives_receipt();
                Bytes::from(alloy_rlp::encode(&envelope))
            })
            .collect();
        // Verify exactly the bytes that will be served.
        BlockReceipts::from_items(&items)
            .and_then(|receipts| receipts.verify(header.header()))
            .map_err(|error| UpstreamError::mismatch(block, DataMismatch::Receipts(error)))?;
        let stored = items.clone();
        self.remember(move |store| store.put_receipts(block, &stored)).await;
        Ok(Some(items))
    }

    /// The proof of `address` and its `slots` in the state of block `block`
    /// (`eth_getProof`), verified against the header's state root. `None` if the node does
    /// not know the block.
    pub async fn proof(
        &self,
        block: B256,
        address: Address,
        slots: &[B256],
    ) -> Result<Option<AccountProof>, UpstreamError> {
        const METHOD: &str = "eth_getProof";
        let Some(header) = self.header_by_hash(block).await? else { return Ok(None) };
        let response: EIP1186AccountProofResponse =
            self.inner.rpc.call(METHOD, (address, slots, BlockHashRef::new(block))).await?;
        if response.address != address {
            return Err(UpstreamError::malformed(
                METHOD,
                MalformedReason::ProofAddress(response.address),
            ));
        }
        if response.storage_proof.len() != slots.len() {
            return Err(UpstreamError::malformed(
                METHOD,
                MalformedReason::StorageProofCount {
                    asked: slots.len(),
                    got: response.storage_proof.len(),
                },
            ));
        }
        let proof_error = |error| UpstreamError::mismatch(block, DataMismatch::Proof(error));
        let account =
            verify_account_proof(header.header().state_root, &address, &response.account_proof)
                .map_err(proof_error)?;
        let storage_root = account.map_or(EMPTY_ROOT_HASH, |account| account.storage_root);
        let mut storage = Vec::with_capacity(slots.len());
        for (index, (slot, storage_proof)) in slots.iter().zip(response.storage_proof).enumerate() {
            let proven_slot = storage_proof.key.as_b256();
            if proven_slot != *slot {
                return Err(UpstreamError::malformed(
                    METHOD,
                    MalformedReason::StorageProofSlot { index, asked: *slot, got: proven_slot },
                ));
            }
            verify_storage_proof(storage_root, slot, &storage_proof.proof).map_err(proof_error)?;
            storage.push(storage_proof.proof);
        }
        Ok(Some(AccountProof { account: response.account_proof, storage }))
    }

    /// The code of `address` in the state of block `block` (empty for an account without
    /// code), checked against the account's code hash proven from the header's state root.
    /// `None` if the node does not know the block.
    pub async fn code(
        &self,
        block: B256,
        address: Address,
    ) -> Result<Option<Bytes>, UpstreamError> {
        let Some(header) = self.header_by_hash(block).await? else { return Ok(None) };
        let at = BlockHashRef::new(block);
        let calls = [
            Call { method: "eth_getProof", params: json!([address, Vec::<B256>::new(), at]) },
            Call { method: "eth_getCode", params: json!([address, at]) },
        ];
        let mut answers = self.inner.rpc.batch(&calls).await?.into_iter();
        let (Some(proof_answer), Some(code_answer)) = (answers.next(), answers.next()) else {
            return Err(UpstreamError::malformed("eth_getProof", MalformedReason::BatchLength));
        };
        let proof = from_value::<EIP1186AccountProofResponse>("eth_getProof", proof_answer?)?
            .ok_or(UpstreamError::malformed("eth_getProof", MalformedReason::MissingResult))?;
        let code = from_value::<Bytes>("eth_getCode", code_answer?)?
            .ok_or(UpstreamError::malformed("eth_getCode", MalformedReason::MissingResult))?;
        let account =
            verify_account_proof(header.header().state_root, &address, &proof.account_proof)
                .map_err(|error| UpstreamError::mismatch(block, DataMismatch::Proof(error)))?;
        let code_hash = account.map_or(EMPTY_CODE_HASH, |account| account.code_hash);
        verify_code(code_hash, &code)
            .map_err(|error| UpstreamError::mismatch(block, DataMismatch::Code(error)))?;
        Ok(Some(code))
    }

    /// Submits a transaction in its EIP-2718 encoding (legacy: its RLP list) and returns its
    /// hash; a refusal is [`UpstreamError::Rpc`] with the node's reason.
    pub async fn send_raw_transaction(&self, raw: &[u8]) -> Result<B256, UpstreamError> {
        const METHOD: &str = "eth_sendRawTransaction";
        let hash: B256 = self.inner.rpc.call(METHOD, [Bytes::copy_from_slice(raw)]).await?;
        let expected = keccak256(raw);
        if hash != expected {
            return Err(UpstreamError::malformed(
                METHOD,
                MalformedReason::SubmittedTxHash { expected, got: hash },
            ));
        }
        Ok(hash)
    }

    /// Where a transaction is: `Included` with its block and index if the node has its
    /// receipt, `Pending` if the node knows it without a receipt, `Unknown` otherwise.
    pub async fn tx_status(&self, hash: B256) -> Result<TxStatusEntry, UpstreamError> {
        const RECEIPT: &str = "eth_getTransactionReceipt";
        let calls = [
            Call { method: RECEIPT, params: json!([hash]) },
            Call { method: "eth_getTransactionByHash", params: json!([hash]) },
        ];
        let mut answers = self.inner.rpc.batch(&calls).await?.into_iter();
        let (Some(receipt_answer), Some(transaction_answer)) = (answers.next(), answers.next())
        else {
            return Err(UpstreamError::malformed(RECEIPT, MalformedReason::BatchLength));
        };
        let entry = |status, lookup| TxStatusEntry { status, lookup, error: String::new() };
        if let Some(location) = from_value::<ReceiptLocation>(RECEIPT, receipt_answer?)? {
            let (Some(block_hash), Some(block_number), Some(index)) =
                (location.block_hash, location.block_number, location.transaction_index)
            else {
                return Err(UpstreamError::malformed(RECEIPT, MalformedReason::ReceiptLocation));
            };
            let lookup =
                TxLookup { block_hash, block_number: block_number.to(), index: index.to() };
            return Ok(entry(TxState::Included, Some(lookup)));
        }
        if transaction_answer?.is_null() {
            Ok(entry(TxState::Unknown, None))
        } else {
            Ok(entry(TxState::Pending, None))
        }
    }

    // --- Contract reads and transaction submission for the payment path (crate::pay). ---

    /// `eth_call` of `data` on `to` in the state after block `block`; a revert is
    /// [`UpstreamError::Rpc`] with the node's reason.
    pub async fn call(&self, to: Address, data: &[u8], block: u64) -> Result<Bytes, UpstreamError> {
        let request = json!({ "to": to, "data": Bytes::copy_from_slice(data) });
        self.inner.rpc.call("eth_call", (request, U64::from(block))).await
    }

    /// The number of transactions `address` has sent, counting those still pending: the
    /// nonce of its next transaction.
    pub async fn transaction_count(&self, address: Address) -> Result<u64, UpstreamError> {
        let count: U64 =
            self.inner.rpc.call("eth_getTransactionCount", (address, "pending")).await?;
        Ok(count.to())
    }

    /// The node's suggested priority fee (`eth_maxPriorityFeePerGas`), wei per gas.
    pub async fn max_priority_fee_per_gas(&self) -> Result<u128, UpstreamError> {
        let fee: alloy_primitives::U128 =
            self.inner.rpc.call("eth_maxPriorityFeePerGas", ()).await?;
        Ok(fee.to())
    }

    /// `eth_estimateGas` for a call from `from` to `to` with `data` against the latest block;
    /// a revert is [`UpstreamError::Rpc`].
    pub async fn estimate_gas(
        &self,
        from: Address,
        to: Address,
        data: &[u8],
    ) -> Result<u64, UpstreamError> {
        let request = json!({ "from": from, "to": to, "data": Bytes::copy_from_slice(data) });
        // Against the latest block, not the pending one: a replacement must be estimated
        // without the transaction it replaces.
        let gas: U64 = self.inner.rpc.call("eth_estimateGas", (request, "latest")).await?;
        Ok(gas.to())
    }

    /// The receipt of a transaction, `None` while it is not mined (or unknown).
    pub async fn transaction_receipt(
        &self,
        hash: B256,
    ) -> Result<Option<TransactionReceipt>, UpstreamError> {
        self.inner.rpc.call_optional("eth_getTransactionReceipt", [hash]).await
    }

    /// The balance of `address` at the latest block, wei.
    pub async fn balance(&self, address: Address) -> Result<U256, UpstreamError> {
        self.inner.rpc.call("eth_getBalance", (address, "latest")).await
    }

    /// Reads from the store; a store failure is logged and treated as a miss, since the
    /// upstream can still answer.
    async fn cached<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Store) -> Result<Option<T>, StoreError> + Send + 'static,
    ) -> Option<T> {
        let store = self.inner.store.clone()?;
        match tokio::task::spawn_blocking(move || read(&store)).await {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => {
                tracing::warn!(%error, "store read failed; asking the upstream");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "store read task failed; asking the upstream");
                None
            }
        }
    }

    /// Writes verified data to the store (durably, before returning); a failure is logged and
    /// does not fail the request, since the data itself is good.
    async fn remember(
        &self,
        write: impl FnOnce(&Store) -> Result<(), StoreError> + Send + 'static,
    ) {
        let Some(store) = self.inner.store.clone() else { return };
        match tokio::task::spawn_blocking(move || write(&store)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "store write failed"),
            Err(error) => tracing::warn!(%error, "store write task failed"),
        }
    }

    async fn remember_header(&self, header: &SealedHeader) {
        let header = header.clone();
        self.remember(move |store| store.put_header(&header)).await;
    }
}

/// `net_version` is a decimal string (some nodes send hex).
fn parse_network_id(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Fetches the canonical header at `n` with the node's total difficulty.
async fn fetch_header_by_number(
    rpc: &RpcClient,
    n: u64,
) -> Result<Option<(SealedHeader, Option<U256>)>, UpstreamError> {
    let block: Option<Block> =
        rpc.call_optional("eth_getBlockByNumber", (U64::from(n), false)).await?;
    let Some(block) = block else { return Ok(None) };
    let total_difficulty = block.header.total_difficulty;
    let header = checked_number(seal_rpc_header(block.header)?, n)?;
    Ok(Some((header, total_difficulty)))
}

/// Checks that a header fetched by number is at that height.
fn checked_number(header: SealedHeader, n: u64) -> Result<SealedHeader, UpstreamError> {
    if header.number() == n {
        Ok(header)
    } else {
        Err(UpstreamError::malformed(
            "eth_getBlockByNumber",
            MalformedReason::WrongBlock { number: header.number(), hash: header.hash() },
        ))
    }
}

/// Rebuilds the consensus header from the RPC fields and checks it hashes to the RPC hash.
fn seal_rpc_header(rpc_header: RpcHeader) -> Result<SealedHeader, UpstreamError> {
    let claimed = rpc_header.hash;
    let header = SealedHeader::seal(rpc_header.inner);
    if header.hash() != claimed {
        tracing::error!(
            number = header.number(),
            %claimed,
            rebuilt = %header.hash(),
            "upstream header does not hash to its claimed hash; not serving it"
        );
        return Err(UpstreamError::HeaderHashMismatch {
            number: header.number(),
            claimed,
            rebuilt: header.hash(),
        });
    }
    Ok(header)
}

/// Checks that a header fetched by hash is that block.
fn expect_block(
    method: &'static str,
    header: &SealedHeader,
    hash: B256,
) -> Result<(), UpstreamError> {
    if header.hash() == hash {
        Ok(())
    } else {
        Err(UpstreamError::malformed(
            method,
            MalformedReason::WrongBlock { number: header.number(), hash: header.hash() },
        ))
    }
}

/// Turns an RPC transaction into its consensus envelope by re-encoding it, so the hash is
/// computed from the bytes (a deserialized envelope carries the JSON hash unchecked).
fn consensus_transaction(
    block: B256,
    index: usize,
    transaction: TxEnvelope,
) -> Result<BlockTransaction, UpstreamError> {
    let claimed = *transaction.tx_hash();
    let encoded = transaction.encoded_2718();
    let rebuilt = BlockTransaction::decode_2718_exact(&encoded).map_err(|source| {
        UpstreamError::malformed(
            "eth_getBlockByHash",
            MalformedReason::Transaction { index, source },
        )
    })?;
    if *rebuilt.tx_hash() != claimed {
        return Err(UpstreamError::mismatch(
            block,
            DataMismatch::TransactionHash { index, claimed, rebuilt: *rebuilt.tx_hash() },
        ));
    }
    Ok(rebuilt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::Header;

    #[test]
    fn network_id_is_decimal_or_hex() {
        assert_eq!(parse_network_id("31337"), Some(31337));
        assert_eq!(parse_network_id("0x7a69"), Some(31337));
        assert_eq!(parse_network_id("mainnet"), None);
    }

    #[test]
    fn a_header_whose_fields_do_not_hash_to_its_hash_is_refused() {
        let inner = Header { number: 5, ..Header::default() };
        let good =
            RpcHeader { hash: inner.hash_slow(), inner: inner.clone(), ..RpcHeader::default() };
        assert_eq!(seal_rpc_header(good).unwrap().number(), 5);
        let claimed = B256::repeat_byte(1);
        let bad = RpcHeader { hash: claimed, inner: inner.clone(), ..RpcHeader::default() };
        assert!(matches!(
            seal_rpc_header(bad),
            Err(UpstreamError::HeaderHashMismatch { number: 5, claimed: c, rebuilt })
                if c == claimed && rebuilt == inner.hash_slow()
        ));
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_not_a_panic() {
        // Bind then drop a listener so the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let error = Upstream::connect(&format!("http://127.0.0.1:{port}"), None).await.unwrap_err();
        assert!(matches!(error, UpstreamError::Unreachable(_)), "{error:?}");
        assert!(error.is_unavailable());
    }

    #[tokio::test]
    async fn only_http_urls_are_accepted() {
        assert!(matches!(
            Upstream::connect("https://127.0.0.1:1", None).await,
            Err(UpstreamError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            Upstream::connect("not a url", None).await,
            Err(UpstreamError::InvalidUrl { .. })
        ));
    }
}
