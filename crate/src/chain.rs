//! [`Chain`]: what the EIP-1193 provider asks of the client core. Every method returns data
//! that is already verified against the ULC-accepted head (or is self-certifying by hash);
//! the provider only derives and encodes. Errors say why nothing verified could be had.

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_trie::TrieAccount;
use futures_channel::mpsc::UnboundedReceiver;
use futures_util::future::LocalBoxFuture;
use les::chain::{BlockBody, BlockReceipts, SealedHeader};
use les::crypto::NodeId;
use les::msg::TxLookup;

/// Why the core could not produce a verified answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No head has been accepted by the ULC quorum yet, or every server is unreachable
    /// (EIP-1193 4900: disconnected).
    #[error("no verified head: {0}")]
    Disconnected(String),
    /// Every server that was asked failed or timed out (EIP-1474 -32002).
    #[error("no server could answer: {0}")]
    Unavailable(String),
    /// A server sent data that failed verification; it was demoted and the request failed
    /// rather than answer unverified (our code -32050). Retried on other servers first.
    #[error("verification failed ({server}): {reason}")]
    Verification {
        /// The server that sent the bad data (node ID, hex).
        server: String,
        /// What did not verify.
        reason: String,
    },
    /// The request reaches further back than the client verifies (EIP-1474 -32005).
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The servers refused a transaction (EIP-1474 -32003).
    #[error("transaction rejected: {0}")]
    Rejected(String),
    /// The client was stopped.
    #[error("client stopped")]
    Stopped,
}

/// A block body with the senders recovered from its signatures.
#[derive(Debug, Clone)]
pub struct VerifiedBody {
    /// The body, checked against the header's transactions root, ommers hash and
    /// withdrawals root.
    pub body: BlockBody,
    /// The sender of each transaction, in order.
    pub senders: Vec<Address>,
}

/// An account and some of its storage, proven against a header's state root, with the
/// proofs in EIP-1186 order (what `eth_getProof` returns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    /// The account; `None` if it does not exist.
    pub account: Option<TrieAccount>,
    /// The account's proof, root first.
    pub account_proof: Vec<Bytes>,
    /// `(slot, value, proof)` for each slot asked for, in order.
    pub storage: Vec<(B256, U256, Vec<Bytes>)>,
}

/// The accepted head as the dapp-facing side sees it.
#[derive(Debug, Clone)]
pub struct HeadInfo {
    /// The head's header, verified by hash against the quorum's announcement.
    pub header: SealedHeader,
    /// Restored from storage and not yet confirmed by a fresh quorum.
    pub stale: bool,
    /// The trusted servers whose signed announcements back it.
    pub signers: Vec<NodeId>,
}

/// What the core tells the provider as it happens.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// The client can serve requests (first accepted head, or again after a disconnect).
    Connected,
    /// The client can serve nothing: every server is down. `code` is a CloseEvent code.
    Disconnected {
        /// 1006 (abnormal closure) or 1013 (try again later).
        code: u16,
        /// Why.
        reason: String,
    },
    /// A new head was accepted (once per head, in order of acceptance).
    NewHead(Box<SealedHeader>),
    /// Trusted servers signed different hashes at one height; the head stays where it was.
    Disagreement {
        /// The contested height.
        number: u64,
    },
}

/// Result of a core call.
pub type ChainResult<T> = Result<T, ClientError>;
/// A future of a core call.
pub type ChainFuture<T> = LocalBoxFuture<'static, ChainResult<T>>;

/// The verified chain access the provider is written against.
pub trait Chain: 'static {
    /// The configured chain ID (answered locally).
    fn chain_id(&self) -> u64;
    /// The accepted head, or `Disconnected` if there is none yet.
    fn head(&self) -> ChainFuture<HeadInfo>;
    /// The accepted head right now, without waiting for a server: at a warm start the one
    /// restored from storage (stale). For status displays, not for answers.
    fn current_head(&self) -> Option<HeadInfo>;
    /// How many servers have an established session.
    fn connected_servers(&self) -> usize;
    /// The canonical header at `number` (at or below the head), verified by the parent-hash
    /// chain back from the accepted head; `None` above the head.
    fn header_by_number(&self, number: u64) -> ChainFuture<Option<SealedHeader>>;
    /// The header with this hash (self-certifying), `None` if no server knows it.
    fn header_by_hash(&self, hash: B256) -> ChainFuture<Option<SealedHeader>>;
    /// Whether `header` is on the canonical chain of the accepted head.
    fn is_canonical(&self, header: &SealedHeader) -> ChainFuture<bool>;
    /// The body of `header`, verified against its roots, with senders.
    fn body(&self, header: &SealedHeader) -> ChainFuture<VerifiedBody>;
    /// The receipts of `header`, verified against its receipts root.
    fn receipts(&self, header: &SealedHeader) -> ChainFuture<BlockReceipts>;
    /// `address` and its storage `slots` in the state of `header`, proven.
    fn account(
        &self,
        header: &SealedHeader,
        address: Address,
        slots: Vec<B256>,
    ) -> ChainFuture<AccountState>;
    /// The code of an account whose (proven) code hash is `code_hash`, checked against it.
    fn code(&self, header: &SealedHeader, address: Address, code_hash: B256) -> ChainFuture<Bytes>;
    /// Sends a signed transaction to at least two servers (or all, if fewer); resolves with
    /// its locally computed hash once one accepted it.
    fn send_raw_transaction(&self, raw: Bytes) -> ChainFuture<B256>;
    /// Where servers say the transaction is included, unverified: the caller verifies it by
    /// fetching the block (header by hash, canonical check, body, index). `None` if no
    /// server reports it included.
    fn transaction_location(&self, hash: B256) -> ChainFuture<Option<TxLookup>>;
    /// A stream of events; each call gets its own stream.
    fn events(&self) -> UnboundedReceiver<ClientEvent>;
    /// The core's metrics as a JSON object (the provider adds environment figures).
    fn metrics(&self) -> serde_json::Value;

    /// The service model as the client sees it, from local state (`ulc_serviceStatus`):
    /// per server whether it offers lespay, its price list, our balance, capacity and class
    /// there, its value, our channel to it and what we spent. A core without payments
    /// reports no servers.
    fn service_status(&self) -> serde_json::Value {
        serde_json::json!({ "payments": false, "servers": [] })
    }

    /// Follows `policy` from now on (`None`: stop paying). The policy is already validated.
    fn set_payment_policy(
        &self,
        policy: Option<crate::pay::policy::PaymentPolicy>,
    ) -> ChainResult<()> {
        let _ = policy;
        Err(ClientError::Unavailable("this client cannot pay servers".into()))
    }

    /// Opens a payment channel to `server` with `deposit` wei, expiring `lifetime_secs` after
    /// the head's timestamp; resolves with the channel (as `ulc_serviceStatus` shows it)
    /// once its `Opened` event is in a verified receipt.
    fn open_channel(
        &self,
        server: NodeId,
        deposit: U256,
        lifetime_secs: u64,
    ) -> ChainFuture<serde_json::Value> {
        let _ = (server, deposit, lifetime_secs);
        Box::pin(async { Err(ClientError::Unavailable("this client cannot pay servers".into())) })
    }

    /// Adds `deposit` wei to our channel to `server` (`topUp`, sent by the key or wallet that
    /// opens channels); resolves with the channel and its new deposit once the `ToppedUp`
    /// event is in a verified receipt.
    fn top_up_channel(&self, server: NodeId, deposit: U256) -> ChainFuture<serde_json::Value> {
        let _ = (server, deposit);
        Box::pin(async { Err(ClientError::Unavailable("this client cannot pay servers".into())) })
    }
}
