//! The payment ledger: the durable truth about money. Positive balances by node id, negative
//! balances of free clients, every payment channel's last accepted cheque, the append-only
//! payment log, pending redemptions, operator-credit references and the pool's metadata.
//!
//! A file of its own, `<datadir>/payments.redb`, not tables in the header cache
//! ([`crate::store::Store`]): the cache may be deleted at any time to reclaim space or recover
//! from corruption, this file never may; keeping them apart lets an operator back up, move or
//! wipe one without touching the other, and keeps the cache's fsyncs off the payment path.
//!
//! Every write is one redb transaction committed with [`Durability::Immediate`] before the
//! method returns. A payment is acknowledged only after [`Ledger::credit_channel`] has
//! returned (research §7.3 item 7), so after a crash the ledger holds every acknowledged
//! cheque, and re-sending it is recognised as a duplicate. Balances are never dropped below a
//! threshold: a credit of one token is kept like any other.

use alloy_primitives::{B256, U256};
use alloy_rlp::{RlpDecodable, RlpEncodable};
use les::crypto::NodeId;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The largest balance: tokens are u64 on the wire but at most 2^63-1 (geth's int64).
pub const MAX_BALANCE: u64 = i64::MAX as u64;

/// Positive (paid) balance by node id.
const POSITIVE: TableDefinition<'static, [u8; 32], u64> = TableDefinition::new("positive");
/// Negative balance (debt of free service) by node id.
const NEGATIVE: TableDefinition<'static, [u8; 32], u64> = TableDefinition::new("negative");
/// [`ChannelRecord`] (RLP) by channel id.
const CHANNELS: TableDefinition<'static, [u8; 32], &[u8]> = TableDefinition::new("channels");
/// [`LogEntry`] (RLP, without its seq) by seq, from 0, never rewritten or removed.
const LOG: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("payment_log");
/// [`PendingRedemption`] (RLP) by channel id.
const PENDING: TableDefinition<'static, [u8; 32], &[u8]> = TableDefinition::new("pending_redeem");
/// The first outcome of each operator credit reference ([`OperatorOutcome`] fields, RLP).
const OPERATOR_REFS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("operator_refs");
/// Free-form metadata of the pool and the ledger (expiry offsets, last checkpoint).
const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");

/// Meta key of the last checkpoint's time (ms since the Unix epoch, big-endian u64).
pub const META_LAST_CHECKPOINT: &str = "last_checkpoint_ms";

/// A failure of the ledger. Every failed write leaves the ledger as it was.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database file could not be opened (for instance, another process holds it).
    #[error("cannot open payment ledger {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// redb's reason.
        source: Box<redb::DatabaseError>,
    },
    /// A transaction failed (I/O, a full disk).
    #[error("payment ledger database error: {0}")]
    Database(#[from] Box<redb::Error>),
    /// An I/O failure around the database (for instance its worker thread failed).
    #[error("payment ledger I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A stored record does not decode.
    #[error("payment ledger table {table} holds a corrupt record: {source}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The decoding error.
        source: alloy_rlp::Error,
    },
    /// The channel's last accepted cumulative changed since the caller verified its cheque
    /// (another cheque for it was accepted meanwhile); nothing was written.
    #[error(
        "channel {channel}: last accepted is {found}, not the {expected} the cheque was checked against"
    )]
    ChannelConflict {
        /// The channel.
        channel: B256,
        /// What the caller saw.
        expected: U256,
        /// What the ledger holds.
        found: U256,
    },
    /// The channel's credit belongs to another node id (wire.md channel binding).
    #[error("channel {channel} is bound to another client ({owner})")]
    ChannelBound {
        /// The channel.
        channel: B256,
        /// The node id that owns its credit.
        owner: NodeId,
    },
    /// The credit would take the balance above 2^63-1; nothing was written.
    #[error("balance of {node} would overflow: {balance} + {add} > 2^63-1")]
    BalanceOverflow {
        /// The client.
        node: NodeId,
        /// Its balance before.
        balance: u64,
        /// The credit.
        add: u64,
    },
}

fn db_error(error: impl Into<redb::Error>) -> LedgerError {
    LedgerError::Database(Box::new(error.into()))
}

/// What the ledger knows of one payment channel.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct ChannelRecord {
    /// The node id the channel's credit goes to (the first to present a cheque for it).
    pub node: NodeId,
    /// The highest cumulative amount accepted (wei).
    pub last_accepted: U256,
    /// The channel signer's signature of that cheque: what redemption submits.
    pub signature: [u8; 65],
    /// Tokens credited for this channel so far.
    pub credited_total: u64,
    /// The channel's `paidOut` after our last confirmed redemption (wei).
    pub redeemed: U256,
    /// The channel's expiry (Unix seconds) as last read from the chain.
    pub expiry: u64,
    /// The channel's deposit (wei) as last read from the chain.
    pub deposit: U256,
}

impl ChannelRecord {
    /// Wei accepted but not yet redeemed: `min(last_accepted, deposit) - redeemed`.
    pub fn unredeemed(&self) -> U256 {
        self.last_accepted.min(self.deposit).saturating_sub(self.redeemed)
    }
}

/// What a logged payment refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentReference {
    /// A channel cheque: the channel and the cumulative amount accepted.
    Channel {
        /// The channel id.
        id: B256,
        /// The cheque's cumulative amount (wei).
        cumulative: U256,
    },
    /// An operator credit (`les_addBalance`) with its reference, empty when none was given.
    Operator {
        /// The operator's idempotency reference.
        reference: String,
    },
}

/// One entry of the append-only payment log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// When it was written, ms since the Unix epoch.
    pub time_ms: u64,
    /// The client credited.
    pub node: NodeId,
    /// The receiver that took the payment (`"channel"`, `"operator"`).
    pub receiver: String,
    /// What was paid.
    pub reference: PaymentReference,
    /// Tokens added to the positive balance.
    pub credited: u64,
    /// Tokens taken from it (operator debits only).
    pub debited: u64,
    /// The positive balance right after this entry.
    pub balance_after: u64,
}

/// The stored form of a [`LogEntry`] (its seq is the key).
#[derive(RlpEncodable, RlpDecodable)]
struct StoredLogEntry {
    time_ms: u64,
    node: B256,
    receiver: String,
    /// 0 = channel, 1 = operator.
    kind: u8,
    channel: B256,
    cumulative: U256,
    operator_reference: String,
    credited: u64,
    debited: u64,
    balance_after: u64,
}

impl StoredLogEntry {
    fn from_entry(entry: &LogEntry) -> Self {
        let (kind, channel, cumulative, operator_reference) = match &entry.reference {
            PaymentReference::Channel { id, cumulative } => (0, *id, *cumulative, String::new()),
            PaymentReference::Operator { reference } => {
                (1, B256::ZERO, U256::ZERO, reference.clone())
            }
        };
        Self {
            time_ms: entry.time_ms,
            node: entry.node,
            receiver: entry.receiver.clone(),
            kind,
            channel,
            cumulative,
            operator_reference,
            credited: entry.credited,
            debited: entry.debited,
            balance_after: entry.balance_after,
        }
    }

    fn into_entry(self, seq: u64) -> Result<LogEntry, LedgerError> {
        let reference = match self.kind {
            0 => PaymentReference::Channel { id: self.channel, cumulative: self.cumulative },
            1 => PaymentReference::Operator { reference: self.operator_reference },
            _ => {
                return Err(LedgerError::Corrupt {
                    table: "payment_log",
                    source: alloy_rlp::Error::Custom("unknown reference kind"),
                });
            }
        };
        Ok(LogEntry {
            seq,
            time_ms: self.time_ms,
            node: self.node,
            receiver: self.receiver,
            reference,
            credited: self.credited,
            debited: self.debited,
            balance_after: self.balance_after,
        })
    }
}

/// A redemption decided on and not yet confirmed on chain. Kept until its transaction is
/// mined (or found unnecessary), so a restart retries it.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct PendingRedemption {
    /// The cumulative amount of the cheque being redeemed.
    pub cumulative: U256,
    /// Its signature.
    pub signature: [u8; 65],
    /// Why it was scheduled (see [`crate::pay::redeem::RedeemReason`]), as its code.
    pub reason: u8,
    /// When it was scheduled, ms since the Unix epoch.
    pub scheduled_ms: u64,
    /// When its last transaction was sent, ms since the Unix epoch (0 before the first).
    pub sent_ms: u64,
    /// The last transaction sent for it, zero before the first.
    pub tx_hash: B256,
    /// That transaction's nonce.
    pub nonce: u64,
    /// That transaction's fee cap (wei per gas), so a retry can outbid it.
    pub max_fee_per_gas: u128,
    /// That transaction's tip (wei per gas).
    pub max_priority_fee_per_gas: u128,
    /// Transactions sent for it so far.
    pub attempts: u32,
}

/// The outcome of an operator credit (`les_addBalance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct OperatorOutcome {
    /// The positive balance before.
    pub old: u64,
    /// The positive balance after.
    pub new: u64,
    /// The log entry written for it.
    pub seq: u64,
}

/// A credit for a verified channel cheque, written by [`Ledger::credit_channel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelCredit {
    /// The channel.
    pub channel: B256,
    /// The client presenting the cheque.
    pub node: NodeId,
    /// The last accepted cumulative the cheque was verified against (zero for a new channel).
    pub expected_last: U256,
    /// The cheque's cumulative amount.
    pub cumulative: U256,
    /// The cheque's signature.
    pub signature: [u8; 65],
    /// Tokens to credit.
    pub tokens: u64,
    /// The channel's expiry as read from the chain.
    pub expiry: u64,
    /// The channel's deposit as read from the chain.
    pub deposit: U256,
    /// When, ms since the Unix epoch.
    pub time_ms: u64,
}

/// A snapshot of the pool's balances for [`Ledger::checkpoint`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// [`Ledger::next_seq`] as read while the snapshot was taken: payments logged at or after
    /// it are not in the snapshot and are added on top of it.
    pub as_of_seq: u64,
    /// When the snapshot was taken, ms since the Unix epoch.
    pub time_ms: u64,
    /// Positive balances to store (0 removes the row).
    pub positive: Vec<(NodeId, u64)>,
    /// Negative balances to store (0 removes the row).
    pub negative: Vec<(NodeId, u64)>,
    /// Metadata to store in the same transaction (for instance the expiry offsets).
    pub meta: Vec<(String, Vec<u8>)>,
}

/// The ledger. Cloning is cheap (the database is shared); redb serialises write transactions,
/// so concurrent writers cannot interleave inside one.
#[derive(Clone)]
pub struct Ledger {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch (0 for a clock before it).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn decode<T: alloy_rlp::Decodable>(table: &'static str, bytes: &[u8]) -> Result<T, LedgerError> {
    alloy_rlp::decode_exact(bytes).map_err(|source| LedgerError::Corrupt { table, source })
}

/// The tables whose rows are RLP records keyed by a 32-byte id (channels, pending redemptions).
type RecordTable = TableDefinition<'static, [u8; 32], &'static [u8]>;

/// One record of such a table.
fn read_record<T: alloy_rlp::Decodable>(
    db: &Database,
    table: RecordTable,
    name: &'static str,
    id: B256,
) -> Result<Option<T>, LedgerError> {
    let txn = db.begin_read().map_err(db_error)?;
    let rows = txn.open_table(table).map_err(db_error)?;
    let value = rows.get(id.0).map_err(db_error)?;
    value.map(|v| decode(name, v.value())).transpose()
}

/// Every record of such a table, in id order.
fn read_records<T: alloy_rlp::Decodable>(
    db: &Database,
    table: RecordTable,
    name: &'static str,
) -> Result<Vec<(B256, T)>, LedgerError> {
    let txn = db.begin_read().map_err(db_error)?;
    let rows = txn.open_table(table).map_err(db_error)?;
    let mut out = Vec::new();
    for row in rows.iter().map_err(db_error)? {
        let (key, value) = row.map_err(db_error)?;
        out.push((B256::from(key.value()), decode(name, value.value())?));
    }
    Ok(out)
}

fn begin_durable(db: &Database) -> Result<WriteTransaction, LedgerError> {
    let mut txn = db.begin_write().map_err(db_error)?;
    txn.set_durability(Durability::Immediate).map_err(db_error)?;
    Ok(txn)
}

/// Appends `entry` (its seq is ignored) at the end of the log inside `txn`; returns its seq.
fn append_log(txn: &WriteTransaction, entry: &mut LogEntry) -> Result<u64, LedgerError> {
    let mut log = txn.open_table(LOG).map_err(db_error)?;
    let seq = match log.last().map_err(db_error)? {
        Some((key, _)) => key.value() + 1,
        None => 0,
    };
    entry.seq = seq;
    let bytes = alloy_rlp::encode(StoredLogEntry::from_entry(entry));
    log.insert(seq, bytes.as_slice()).map_err(db_error)?;
    Ok(seq)
}

impl Ledger {
    /// The database file's name inside the data directory.
    pub const FILE_NAME: &'static str = "payments.redb";

    /// Opens (creating if needed) the ledger in `datadir`.
    pub fn open(datadir: &Path) -> Result<Self, LedgerError> {
        std::fs::create_dir_all(datadir)
            .map_err(|source| LedgerError::CreateDir { path: datadir.to_owned(), source })?;
        let path = datadir.join(Self::FILE_NAME);
        let db = Database::create(&path)
            .map_err(|source| LedgerError::Open { path: path.clone(), source: Box::new(source) })?;
        // Create every table up front so readers never meet a missing one.
        let txn = begin_durable(&db)?;
        txn.open_table(POSITIVE).map_err(db_error)?;
        txn.open_table(NEGATIVE).map_err(db_error)?;
        txn.open_table(CHANNELS).map_err(db_error)?;
        txn.open_table(LOG).map_err(db_error)?;
        txn.open_table(PENDING).map_err(db_error)?;
        txn.open_table(OPERATOR_REFS).map_err(db_error)?;
        txn.open_table(META).map_err(db_error)?;
        txn.commit().map_err(db_error)?;
        Ok(Self { db: Arc::new(db), path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A client's positive balance (0 if none is stored).
    pub fn positive(&self, node: NodeId) -> Result<u64, LedgerError> {
        self.balance(POSITIVE, node)
    }

    /// A client's negative balance (0 if none is stored).
    pub fn negative(&self, node: NodeId) -> Result<u64, LedgerError> {
        self.balance(NEGATIVE, node)
    }

    fn balance(
        &self,
        table: TableDefinition<'static, [u8; 32], u64>,
        node: NodeId,
    ) -> Result<u64, LedgerError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(table).map_err(db_error)?;
        Ok(table.get(node.0).map_err(db_error)?.map_or(0, |v| v.value()))
    }

    /// Every stored positive balance (to load the pool at start).
    pub fn positive_balances(&self) -> Result<Vec<(NodeId, u64)>, LedgerError> {
        self.balances(POSITIVE)
    }

    /// Every stored negative balance.
    pub fn negative_balances(&self) -> Result<Vec<(NodeId, u64)>, LedgerError> {
        self.balances(NEGATIVE)
    }

    fn balances(
        &self,
        table: TableDefinition<'static, [u8; 32], u64>,
    ) -> Result<Vec<(NodeId, u64)>, LedgerError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(table).map_err(db_error)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_error)? {
            let (key, value) = row.map_err(db_error)?;
            out.push((B256::from(key.value()), value.value()));
        }
        Ok(out)
    }

    /// What the ledger knows of a channel.
    pub fn channel(&self, id: B256) -> Result<Option<ChannelRecord>, LedgerError> {
        read_record(&self.db, CHANNELS, "channels", id)
    }

    /// Every channel the ledger knows.
    pub fn channels(&self) -> Result<Vec<(B256, ChannelRecord)>, LedgerError> {
        read_records(&self.db, CHANNELS, "channels")
    }

    /// Up to `limit` log entries from `from_seq` on, in order.
    pub fn log(&self, from_seq: u64, limit: usize) -> Result<Vec<LogEntry>, LedgerError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(LOG).map_err(db_error)?;
        let mut out = Vec::new();
        for row in table.range(from_seq..).map_err(db_error)?.take(limit) {
            let (key, value) = row.map_err(db_error)?;
            let stored: StoredLogEntry = decode("payment_log", value.value())?;
            out.push(stored.into_entry(key.value())?);
        }
        Ok(out)
    }

    /// The seq the next log entry will get (the number of entries).
    pub fn next_seq(&self) -> Result<u64, LedgerError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(LOG).map_err(db_error)?;
        Ok(table.last().map_err(db_error)?.map_or(0, |(key, _)| key.value() + 1))
    }

    /// Commits a verified cheque: the channel's new last accepted cumulative and signature,
    /// `pos = balance_before + tokens`, and a log entry, in one fsynced transaction. Returns
    /// the log entry. `balance_before` is the pool's current positive balance (the ledger's
    /// own value may be a checkpoint behind).
    ///
    /// Refuses, writing nothing, if the channel moved on since the cheque was verified
    /// ([`LedgerError::ChannelConflict`]), belongs to another node
    /// ([`LedgerError::ChannelBound`]), or the balance would overflow.
    pub fn credit_channel(
        &self,
        credit: &ChannelCredit,
        balance_before: u64,
    ) -> Result<LogEntry, LedgerError> {
        let txn = begin_durable(&self.db)?;
        let mut entry;
        {
            let mut channels = txn.open_table(CHANNELS).map_err(db_error)?;
            let existing: Option<ChannelRecord> = channels
                .get(credit.channel.0)
                .map_err(db_error)?
                .map(|v| decode("channels", v.value()))
                .transpose()?;
            let (last, credited_total, redeemed) = match &existing {
                Some(record) => {
                    if record.node != credit.node {
                        return Err(LedgerError::ChannelBound {
                            channel: credit.channel,
                            owner: record.node,
                        });
                    }
                    (record.last_accepted, record.credited_total, record.redeemed)
                }
                None => (U256::ZERO, 0, U256::ZERO),
            };
            if last != credit.expected_last {
                return Err(LedgerError::ChannelConflict {
                    channel: credit.channel,
                    expected: credit.expected_last,
                    found: last,
                });
            }
            let balance_after = balance_before
                .checked_add(credit.tokens)
                .filter(|b| *b <= MAX_BALANCE)
                .ok_or(LedgerError::BalanceOverflow {
                    node: credit.node,
                    balance: balance_before,
                    add: credit.tokens,
                })?;
            let record = ChannelRecord {
                node: credit.node,
                last_accepted: credit.cumulative,
                signature: credit.signature,
                credited_total: credited_total.saturating_add(credit.tokens),
                redeemed,
                expiry: credit.expiry,
                deposit: credit.deposit,
            };
            channels
                .insert(credit.channel.0, alloy_rlp::encode(&record).as_slice())
                .map_err(db_error)?;
            let mut positive = txn.open_table(POSITIVE).map_err(db_error)?;
            positive.insert(credit.node.0, balance_after).map_err(db_error)?;
            entry = LogEntry {
                seq: 0,
                time_ms: credit.time_ms,
                node: credit.node,
                receiver: "channel".to_owned(),
                reference: PaymentReference::Channel {
                    id: credit.channel,
                    cumulative: credit.cumulative,
                },
                credited: credit.tokens,
                debited: 0,
                balance_after,
            };
        }
        append_log(&txn, &mut entry)?;
        txn.commit().map_err(db_error)?;
        Ok(entry)
    }

    /// The first outcome recorded for an operator reference, if any.
    pub fn operator_reference(
        &self,
        reference: &str,
    ) -> Result<Option<OperatorOutcome>, LedgerError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(OPERATOR_REFS).map_err(db_error)?;
        let value = table.get(reference).map_err(db_error)?;
        value.map(|v| decode("operator_refs", v.value())).transpose()
    }

    /// Applies an operator credit (`amount` > 0) or debit (< 0, clamped at 0) to
    /// `balance_before` (the pool's current positive balance) and logs it, in one fsynced
    /// transaction. With a non-empty `reference` already recorded, writes nothing and returns
    /// the first outcome with `true`.
    pub fn operator_adjust(
        &self,
        node: NodeId,
        amount: i64,
        reference: &str,
        balance_before: u64,
        time_ms: u64,
    ) -> Result<(OperatorOutcome, bool), LedgerError> {
        let txn = begin_durable(&self.db)?;
        if !reference.is_empty() {
            let refs = txn.open_table(OPERATOR_REFS).map_err(db_error)?;
            if let Some(value) = refs.get(reference).map_err(db_error)? {
                let outcome: OperatorOutcome = decode("operator_refs", value.value())?;
                return Ok((outcome, true));
            }
        }
        let magnitude = amount.unsigned_abs();
        let (new, credited, debited) = if amount >= 0 {
            let new = balance_before.checked_add(magnitude).filter(|b| *b <= MAX_BALANCE).ok_or(
                LedgerError::BalanceOverflow { node, balance: balance_before, add: magnitude },
            )?;
            (new, magnitude, 0)
        } else {
            let new = balance_before.saturating_sub(magnitude);
            (new, 0, balance_before - new)
        };
        {
            let mut positive = txn.open_table(POSITIVE).map_err(db_error)?;
            if new == 0 {
                positive.remove(node.0).map_err(db_error)?;
            } else {
                positive.insert(node.0, new).map_err(db_error)?;
            }
        }
        let mut entry = LogEntry {
            seq: 0,
            time_ms,
            node,
            receiver: "operator".to_owned(),
            reference: PaymentReference::Operator { reference: reference.to_owned() },
            credited,
            debited,
            balance_after: new,
        };
        let seq = append_log(&txn, &mut entry)?;
        let outcome = OperatorOutcome { old: balance_before, new, seq };
        if !reference.is_empty() {
            let mut refs = txn.open_table(OPERATOR_REFS).map_err(db_error)?;
            refs.insert(reference, alloy_rlp::encode(outcome).as_slice()).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        Ok((outcome, false))
    }

    /// Stores the pool's balances (periodic time and request charges) and `meta` in one
    /// fsynced transaction. Payments logged at or after `as_of_seq` are added on top of the
    /// snapshot's value for their node, so a checkpoint that raced a payment cannot undo it.
    pub fn checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), LedgerError> {
        let txn = begin_durable(&self.db)?;
        {
            let mut late = std::collections::HashMap::<NodeId, (u64, u64)>::new();
            let log = txn.open_table(LOG).map_err(db_error)?;
            for row in log.range(checkpoint.as_of_seq..).map_err(db_error)? {
                let (key, value) = row.map_err(db_error)?;
                let entry = decode::<StoredLogEntry>("payment_log", value.value())?
                    .into_entry(key.value())?;
                let slot = late.entry(entry.node).or_default();
                slot.0 = slot.0.saturating_add(entry.credited);
                slot.1 = slot.1.saturating_add(entry.debited);
            }
            let mut positive = txn.open_table(POSITIVE).map_err(db_error)?;
            for (node, value) in &checkpoint.positive {
                let (credited, debited) = late.get(node).copied().unwrap_or_default();
                let value = value.saturating_add(credited).saturating_sub(debited).min(MAX_BALANCE);
                if value == 0 {
                    positive.remove(node.0).map_err(db_error)?;
                } else {
                    positive.insert(node.0, value).map_err(db_error)?;
                }
            }
            let mut negative = txn.open_table(NEGATIVE).map_err(db_error)?;
            for (node, value) in &checkpoint.negative {
                if *value == 0 {
                    negative.remove(node.0).map_err(db_error)?;
                } else {
                    negative.insert(node.0, *value).map_err(db_error)?;
                }
            }
            let mut meta = txn.open_table(META).map_err(db_error)?;
            for (key, value) in &checkpoint.meta {
                meta.insert(key.as_str(), value.as_slice()).map_err(db_error)?;
            }
            meta.insert(META_LAST_CHECKPOINT, checkpoint.time_ms.to_be_bytes().as_slice())
                .map_err(db_error)?;
        }
        txn.commit().map_err(db_error)
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(META).map_err(db_error)?;
        Ok(table.get(key).map_err(db_error)?.map(|v| v.value().to_vec()))
    }

    /// Stores a metadata value (fsynced).
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), LedgerError> {
        let txn = begin_durable(&self.db)?;
        txn.open_table(META).map_err(db_error)?.insert(key, value).map_err(db_error)?;
        txn.commit().map_err(db_error)
    }

    /// A metadata value stored as a big-endian u64 (`None` if absent or not 8 bytes).
    pub fn meta_u64(&self, key: &str) -> Result<Option<u64>, LedgerError> {
        Ok(self
            .meta(key)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_be_bytes))
    }

    /// Stores a u64 metadata value.
    pub fn set_meta_u64(&self, key: &str, value: u64) -> Result<(), LedgerError> {
        self.set_meta(key, &value.to_be_bytes())
    }

    /// Every pending redemption.
    pub fn pending_redemptions(&self) -> Result<Vec<(B256, PendingRedemption)>, LedgerError> {
        read_records(&self.db, PENDING, "pending_redeem")
    }

    /// The pending redemption of a channel.
    pub fn pending_redemption(&self, id: B256) -> Result<Option<PendingRedemption>, LedgerError> {
        read_record(&self.db, PENDING, "pending_redeem", id)
    }

    /// Stores (or replaces) a channel's pending redemption (fsynced: write it before sending
    /// its transaction, so a crash right after the send still knows the nonce and hash).
    pub fn put_pending_redemption(
        &self,
        id: B256,
        pending: &PendingRedemption,
    ) -> Result<(), LedgerError> {
        let txn = begin_durable(&self.db)?;
        txn.open_table(PENDING)
            .map_err(db_error)?
            .insert(id.0, alloy_rlp::encode(pending).as_slice())
            .map_err(db_error)?;
        txn.commit().map_err(db_error)
    }

    /// Ends a channel's pending redemption: records the on-chain `paid_out` (if the channel is
    /// known) and drops the pending entry, in one transaction.
    pub fn finish_redemption(&self, id: B256, paid_out: U256) -> Result<(), LedgerError> {
        let txn = begin_durable(&self.db)?;
        {
            let mut channels = txn.open_table(CHANNELS).map_err(db_error)?;
            let existing: Option<ChannelRecord> = channels
                .get(id.0)
                .map_err(db_error)?
                .map(|v| decode("channels", v.value()))
                .transpose()?;
            if let Some(mut record) = existing {
                record.redeemed = record.redeemed.max(paid_out);
                channels.insert(id.0, alloy_rlp::encode(&record).as_slice()).map_err(db_error)?;
            }
            txn.open_table(PENDING).map_err(db_error)?.remove(id.0).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)
    }

    /// Updates the chain facts (expiry, deposit) kept with a channel record, if it exists.
    pub fn update_channel_chain(
        &self,
        id: B256,
        expiry: u64,
        deposit: U256,
    ) -> Result<(), LedgerError> {
        let txn = begin_durable(&self.db)?;
        {
            let mut channels = txn.open_table(CHANNELS).map_err(db_error)?;
            let existing: Option<ChannelRecord> = channels
                .get(id.0)
                .map_err(db_error)?
                .map(|v| decode("channels", v.value()))
                .transpose()?;
            if let Some(mut record) = existing {
                record.expiry = expiry;
                record.deposit = deposit;
                channels.insert(id.0, alloy_rlp::encode(&record).as_slice()).map_err(db_error)?;
            }
        }
        txn.commit().map_err(db_error)
    }
}

/// Bytes of a value, for [`Checkpoint::meta`].
pub fn meta_bytes(value: u64) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lesd-ledger-{name}-{}-{}",
            std::process::id(),
            les::crypto::random_bytes::<8>().unwrap().map(|b| format!("{b:02x}")).concat()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn credit(channel: u8, node: u8, last: u64, cumulative: u64, tokens: u64) -> ChannelCredit {
        ChannelCredit {
            channel: B256::repeat_byte(channel),
            node: B256::repeat_byte(node),
            expected_last: U256::from(last),
            cumulative: U256::from(cumulative),
            signature: [cumulative as u8; 65],
            tokens,
            expiry: 1_000,
            deposit: U256::from(10_000u64),
            time_ms: 5,
        }
    }

    #[test]
    fn credits_survive_reopen_with_log_and_channel_record() {
        let dir = temp_dir("reopen");
        let node = B256::repeat_byte(2);
        let (log, record);
        {
            let ledger = Ledger::open(&dir).unwrap();
            let first = ledger.credit_channel(&credit(1, 2, 0, 100, 1), 0).unwrap();
            assert_eq!((first.seq, first.balance_after), (0, 1));
            let second = ledger.credit_channel(&credit(1, 2, 100, 250, 3), 1).unwrap();
            assert_eq!((second.seq, second.balance_after), (1, 4));
            log = ledger.log(0, 10).unwrap();
            record = ledger.channel(B256::repeat_byte(1)).unwrap().unwrap();
        }
        let ledger = Ledger::open(&dir).unwrap();
        assert_eq!(ledger.positive(node).unwrap(), 4);
        assert_eq!(ledger.log(0, 10).unwrap(), log);
        assert_eq!(ledger.channel(B256::repeat_byte(1)).unwrap().unwrap(), record);
        assert_eq!(record.last_accepted, U256::from(250));
        assert_eq!(record.credited_total, 4);
        assert_eq!(ledger.next_seq().unwrap(), 2);
        drop(ledger);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stale_expected_last_or_another_node_writes_nothing() {
        let dir = temp_dir("conflict");
        let ledger = Ledger::open(&dir).unwrap();
        ledger.credit_channel(&credit(1, 2, 0, 100, 5), 0).unwrap();
        assert!(matches!(
            ledger.credit_channel(&credit(1, 2, 0, 200, 5), 5),
            Err(LedgerError::ChannelConflict { .. })
        ));
        assert!(matches!(
            ledger.credit_channel(&credit(1, 3, 100, 200, 5), 0),
            Err(LedgerError::ChannelBound { .. })
        ));
        assert!(matches!(
            ledger.credit_channel(&credit(1, 2, 100, 200, MAX_BALANCE), 5),
            Err(LedgerError::BalanceOverflow { .. })
        ));
        assert_eq!(ledger.positive(B256::repeat_byte(2)).unwrap(), 5);
        assert_eq!(ledger.positive(B256::repeat_byte(3)).unwrap(), 0);
        assert_eq!(ledger.next_seq().unwrap(), 1);
        assert_eq!(
            ledger.channel(B256::repeat_byte(1)).unwrap().unwrap().last_accepted,
            U256::from(100)
        );
        drop(ledger);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_checkpoint_racing_a_payment_keeps_the_payment() {
        let dir = temp_dir("checkpoint");
        let ledger = Ledger::open(&dir).unwrap();
        let node = B256::repeat_byte(2);
        ledger.credit_channel(&credit(1, 2, 0, 100, 50), 0).unwrap();
        // The pool charged 20 tokens and took its snapshot (30) while next_seq was 1...
        let as_of_seq = ledger.next_seq().unwrap();
        // ...then a payment of 7 landed before the checkpoint was written.
        ledger.credit_channel(&credit(1, 2, 100, 114, 7), 30).unwrap();
        ledger
            .checkpoint(&Checkpoint {
                as_of_seq,
                time_ms: 9,
                positive: vec![(node, 30)],
                negative: vec![(B256::repeat_byte(4), 11)],
                meta: vec![("pos_offset".to_owned(), meta_bytes(77))],
            })
            .unwrap();
        assert_eq!(ledger.positive(node).unwrap(), 37);
        assert_eq!(ledger.negative(B256::repeat_byte(4)).unwrap(), 11);
        assert_eq!(ledger.meta_u64("pos_offset").unwrap(), Some(77));
        assert_eq!(ledger.meta_u64(META_LAST_CHECKPOINT).unwrap(), Some(9));
        drop(ledger);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn operator_references_are_idempotent_and_debits_clamp() {
        let dir = temp_dir("operator");
        let ledger = Ledger::open(&dir).unwrap();
        let node = B256::repeat_byte(9);
        let (first, dup) = ledger.operator_adjust(node, 10, "inv-1", 0, 1).unwrap();
        assert_eq!((first.old, first.new, dup), (0, 10, false));
        let (again, dup) = ledger.operator_adjust(node, 10, "inv-1", 10, 2).unwrap();
        assert_eq!((again, dup), (first, true));
        let (debit, _) = ledger.operator_adjust(node, -25, "", 10, 3).unwrap();
        assert_eq!((debit.old, debit.new), (10, 0));
        assert!(matches!(
            ledger.operator_adjust(node, i64::MAX, "big", 1, 4),
            Err(LedgerError::BalanceOverflow { .. })
        ));
        assert_eq!(ledger.operator_reference("big").unwrap(), None);
        let log = ledger.log(0, 10).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!((log[1].credited, log[1].debited, log[1].balance_after), (0, 10, 0));
        drop(ledger);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pending_redemptions_survive_reopen_and_finish_records_paid_out() {
        let dir = temp_dir("pending");
        let id = B256::repeat_byte(1);
        let pending = PendingRedemption {
            cumulative: U256::from(100),
            signature: [7; 65],
            reason: 1,
            scheduled_ms: 3,
            sent_ms: 0,
            tx_hash: B256::ZERO,
            nonce: 4,
            max_fee_per_gas: 10,
            max_priority_fee_per_gas: 1,
            attempts: 0,
        };
        {
            let ledger = Ledger::open(&dir).unwrap();
            ledger.credit_channel(&credit(1, 2, 0, 100, 5), 0).unwrap();
            ledger.put_pending_redemption(id, &pending).unwrap();
        }
        let ledger = Ledger::open(&dir).unwrap();
        assert_eq!(ledger.pending_redemptions().unwrap(), vec![(id, pending)]);
        ledger.finish_redemption(id, U256::from(100)).unwrap();
        assert!(ledger.pending_redemptions().unwrap().is_empty());
        let record = ledger.channel(id).unwrap().unwrap();
        assert_eq!(record.redeemed, U256::from(100));
        assert_eq!(record.unredeemed(), U256::ZERO);
        drop(ledger);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
