//! Redemption of accepted cheques (research §7.4): when to turn a channel's last cheque into
//! an on-chain payout, and seeing the transaction through.
//!
//! A channel is scheduled when any of these holds:
//! - its unredeemed value is at least `k` × the expected gas cost of a redeem;
//! - it expires in less than the redeem margin (judged by the later of the wall clock and
//!   the head block's timestamp, since the contract judges by block time);
//! - the operator asks ([`RedeemHandle::redeem_now`]);
//! - lesd shuts down, if configured.
//!
//! A scheduled redemption is a [`PendingRedemption`] in the ledger before any transaction is
//! sent, and each transaction is recorded there (nonce, fees, hash) before it is sent. So a
//! restart finds every redemption that was decided on and carries it on: it polls the last
//! transaction's receipt, resends it (same nonce, fees raised by a quarter) when it is not
//! mined within `resubmit_after` or the node no longer knows it, and only drops the entry once
//! the chain shows the payout (whoever sent it) or the channel can no longer pay.

use crate::pay::chain::{ChainError, ChannelContract, Fees, OnChainChannel, PayeeKey, TxOutcome};
use crate::pay::ledger::{ChannelRecord, Ledger, LedgerError, PendingRedemption, unix_ms};
use crate::upstream::UpstreamError;
use alloy_primitives::{B256, U256};
use les::crypto::NodeId;
use les::msg::TxState;
use les::pay::cheque::ChequeSignature;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Why a redemption was scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RedeemReason {
    /// The unredeemed value reached `k` × the gas cost.
    Value = 1,
    /// The channel expires within the redeem margin.
    Expiry = 2,
    /// The operator asked.
    Operator = 3,
    /// lesd is shutting down.
    Shutdown = 4,
}

impl RedeemReason {
    /// From its stored code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Value),
            2 => Some(Self::Expiry),
            3 => Some(Self::Operator),
            4 => Some(Self::Shutdown),
            _ => None,
        }
    }
}

/// The redemption policy's settings.
#[derive(Debug, Clone)]
pub struct RedeemConfig {
    /// `k`: redeem once the unredeemed value is this many times the expected gas cost.
    pub gas_multiple: u64,
    /// Redeem when the channel expires within this.
    pub redeem_margin: Duration,
    /// Gas a redeem is expected to use, for the value rule (the real limit is estimated).
    pub expected_gas: u64,
    /// How often the policy runs and pending transactions are polled.
    pub interval: Duration,
    /// Resend a transaction not mined after this long.
    pub resubmit_after: Duration,
    /// Redeem every channel with unredeemed value when shutting down.
    pub redeem_on_shutdown: bool,
    /// How long [`RedeemHandle::redeem_now`] waits for the receipt.
    pub wait_timeout: Duration,
}

impl Default for RedeemConfig {
    fn default() -> Self {
        Self {
            gas_multiple: 20,
            redeem_margin: Duration::from_secs(12 * 3600),
            expected_gas: 100_000,
            interval: Duration::from_secs(15),
            resubmit_after: Duration::from_secs(120),
            redeem_on_shutdown: false,
            wait_timeout: Duration::from_secs(120),
        }
    }
}

/// Why a redemption step failed.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    /// The ledger failed.
    #[error("payment ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// The chain could not be read or refused a transaction.
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    /// The upstream failed.
    #[error("upstream: {0}")]
    Upstream(#[from] UpstreamError),
    /// The ledger has no channel with this id.
    #[error("unknown channel {0}")]
    UnknownChannel(B256),
    /// Nothing is left to redeem on this channel.
    #[error("channel {0}: nothing to redeem")]
    NothingToRedeem(B256),
    /// The channel can no longer pay (expired or closed); what was not redeemed is lost.
    #[error("channel {id} can no longer be redeemed ({why}); {lost} wei lost")]
    Unredeemable {
        /// The channel.
        id: B256,
        /// Expired or closed.
        why: &'static str,
        /// Accepted but never paid out.
        lost: U256,
    },
    /// The receipt did not come within the wait timeout (the redemption stays pending).
    #[error("redemption of {0} not mined in time; still pending")]
    Timeout(B256),
    /// The redeemer task has stopped.
    #[error("redeemer stopped")]
    Stopped,
}

/// What one step of the redeemer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemEvent {
    /// A redemption was decided on.
    Scheduled {
        /// The channel.
        id: B256,
        /// Why.
        reason: RedeemReason,
    },
    /// A transaction was sent.
    Submitted {
        /// The channel.
        id: B256,
        /// The transaction.
        tx: B256,
        /// Its nonce.
        nonce: u64,
        /// Transactions sent for this redemption so far.
        attempt: u32,
    },
    /// The chain shows the payout; the pending entry is gone.
    Redeemed {
        /// The channel.
        id: B256,
        /// The channel's paidOut now.
        paid_out: U256,
        /// Our transaction, if ours did it.
        tx: Option<TxOutcome>,
    },
    /// The channel can no longer pay; the pending entry is dropped.
    Abandoned {
        /// The channel.
        id: B256,
        /// Expired or closed.
        why: &'static str,
        /// Wei accepted and never paid out.
        lost: U256,
    },
    /// A sent transaction is not mined yet.
    Waiting {
        /// The channel.
        id: B256,
        /// The transaction.
        tx: B256,
    },
    /// A step failed; it is retried on the next tick.
    Failed {
        /// The channel.
        id: B256,
        /// What went wrong.
        error: String,
    },
}

/// One channel's redemption state, for the admin API (`les_channels`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStatus {
    /// The channel.
    pub id: B256,
    /// The client its credit goes to.
    pub node: NodeId,
    /// The last accepted cumulative amount.
    pub last_accepted: U256,
    /// paidOut after our last confirmed redemption.
    pub redeemed: U256,
    /// Accepted, not yet redeemed.
    pub unredeemed: U256,
    /// Tokens credited for it.
    pub credited_total: u64,
    /// Expiry (Unix seconds) as last read.
    pub expiry: u64,
    /// The pending transaction, if a redemption is under way.
    pub pending_tx: Option<B256>,
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Raises a fee by a quarter (nodes require at least a tenth to replace), at least by 1.
fn bump(fee: u128) -> u128 {
    fee.saturating_add((fee / 4).max(1))
}

/// The redeemer: the policy and the transactions. Use it directly ([`Redeemer::tick`]) or
/// as a task ([`Redeemer::spawn`]).
#[derive(Debug)]
pub struct Redeemer {
    config: RedeemConfig,
    ledger: Ledger,
    contract: ChannelContract,
    key: PayeeKey,
}

impl Redeemer {
    /// A redeemer sending from `key` (the channels' payee).
    pub fn new(
        config: RedeemConfig,
        ledger: Ledger,
        contract: ChannelContract,
        key: PayeeKey,
    ) -> Self {
        Self { config, ledger, contract, key }
    }

    /// Every channel with its redemption state.
    pub fn status(&self) -> Result<Vec<ChannelStatus>, RedeemError> {
        channel_status(&self.ledger)
    }

    /// Records a pending redemption of the channel's last cheque (unless one is pending).
    /// Returns whether a new one was scheduled.
    pub fn schedule(
        &self,
        id: B256,
        reason: RedeemReason,
        now: SystemTime,
    ) -> Result<bool, RedeemError> {
        if self.ledger.pending_redemption(id)?.is_some() {
            return Ok(false);
        }
        let record = self.ledger.channel(id)?.ok_or(RedeemError::UnknownChannel(id))?;
        if record.unredeemed().is_zero() {
            return Err(RedeemError::NothingToRedeem(id));
        }
        self.ledger.put_pending_redemption(
            id,
            &PendingRedemption {
                cumulative: record.last_accepted,
                signature: record.signature,
                reason: reason as u8,
                scheduled_ms: unix_ms(now),
                sent_ms: 0,
                tx_hash: B256::ZERO,
                nonce: 0,
                max_fee_per_gas: 0,
                max_priority_fee_per_gas: 0,
                attempts: 0,
            },
        )?;
        tracing::info!(channel = %id, ?reason, unredeemed = %record.unredeemed(), "redemption scheduled");
        Ok(true)
    }

    /// The policy's verdict on one channel at chain time `now_secs` with fee cap `max_fee`.
    fn due(&self, record: &ChannelRecord, now_secs: u64, max_fee: u128) -> Option<RedeemReason> {
        let unredeemed = record.unredeemed();
        if unredeemed.is_zero() || now_secs >= record.expiry {
            return None;
        }
        if record.expiry - now_secs < self.config.redeem_margin.as_secs() {
            return Some(RedeemReason::Expiry);
        }
        let gas_cost = U256::from(self.config.expected_gas) * U256::from(max_fee);
        (unredeemed >= gas_cost * U256::from(self.config.gas_multiple))
            .then_some(RedeemReason::Value)
    }

    /// Runs the policy over every channel and moves every pending redemption one step.
    pub async fn tick(&mut self, now: SystemTime) -> Result<Vec<RedeemEvent>, RedeemError> {
        let view = self.contract.view(0).await?;
        let now_secs = unix_secs(now).max(view.head_timestamp);
        let fees = self.contract.fees().await?;
        let mut events = Vec::new();
        for (id, record) in self.ledger.channels()? {
            if let Some(reason) = self.due(&record, now_secs, fees.max_fee_per_gas)
                && self.schedule(id, reason, now)?
            {
                events.push(RedeemEvent::Scheduled { id, reason });
            }
        }
        for (id, pending) in self.ledger.pending_redemptions()? {
            events.push(self.advance(id, pending, now, now_secs).await);
        }
        Ok(events)
    }

    /// Moves one pending redemption on; failures become [`RedeemEvent::Failed`].
    async fn advance(
        &mut self,
        id: B256,
        pending: PendingRedemption,
        now: SystemTime,
        now_secs: u64,
    ) -> RedeemEvent {
        match self.try_advance(id, pending, now, now_secs).await {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(channel = %id, %error, "redemption step failed; retrying later");
                RedeemEvent::Failed { id, error: error.to_string() }
            }
        }
    }

    async fn try_advance(
        &mut self,
        id: B256,
        pending: PendingRedemption,
        now: SystemTime,
        now_secs: u64,
    ) -> Result<RedeemEvent, RedeemError> {
        let mut mined = None;
        if !pending.tx_hash.is_zero() {
            match self.contract.outcome(pending.tx_hash).await? {
                Some(outcome) => mined = Some(outcome),
                None => {
                    let age = Duration::from_millis(unix_ms(now).saturating_sub(pending.sent_ms));
                    let known = self.contract.upstream().tx_status(pending.tx_hash).await?.status
                        != TxState::Unknown;
                    if known && age < self.config.resubmit_after {
                        return Ok(RedeemEvent::Waiting { id, tx: pending.tx_hash });
                    }
                }
            }
        }
        // Whatever happened to our transaction, the chain says what is paid out.
        let channel = self.contract.channel_at(id, self.contract.view(0).await?.head).await?;
        if let Some(event) = self.settled(id, &pending, &channel, mined, now_secs)? {
            return Ok(event);
        }
        // Not paid out yet: send (a first time, again after a revert, or a replacement).
        let replace = mined.is_none() && !pending.tx_hash.is_zero();
        self.submit(id, pending, replace, now).await
    }

    /// If the chain shows the cheque paid out, or the channel can no longer pay, finishes the
    /// pending entry and says so.
    fn settled(
        &self,
        id: B256,
        pending: &PendingRedemption,
        channel: &OnChainChannel,
        mined: Option<TxOutcome>,
        now_secs: u64,
    ) -> Result<Option<RedeemEvent>, RedeemError> {
        let target = pending.cumulative.min(channel.deposit);
        if channel.paid_out >= target {
            self.ledger.finish_redemption(id, channel.paid_out)?;
            let tx = mined.filter(|outcome| outcome.success);
            tracing::info!(channel = %id, paid_out = %channel.paid_out, tx = ?tx.map(|t| t.hash), "redeemed");
            return Ok(Some(RedeemEvent::Redeemed { id, paid_out: channel.paid_out, tx }));
        }
        let why = if channel.closed {
            Some("closed")
        } else if now_secs >= channel.expiry {
            Some("expired")
        } else {
            None
        };
        if let Some(why) = why {
            let lost = target - channel.paid_out;
            self.ledger.finish_redemption(id, channel.paid_out)?;
            tracing::error!(channel = %id, why, %lost, "channel can no longer be redeemed");
            return Ok(Some(RedeemEvent::Abandoned { id, why, lost }));
        }
        Ok(None)
    }

    /// Signs a redeem, records it in the pending entry, then sends it.
    async fn submit(
        &mut self,
        id: B256,
        mut pending: PendingRedemption,
        replace: bool,
        now: SystemTime,
    ) -> Result<RedeemEvent, RedeemError> {
        let calldata = ChannelContract::redeem_calldata(
            id,
            pending.cumulative,
            &ChequeSignature(pending.signature),
        );
        let gas_limit = self.contract.redeem_gas(self.key.address(), &calldata).await?;
        let mut fees = self.contract.fees().await?;
        let mut nonce = self.contract.nonce(self.key.address()).await?;
        if replace {
            fees = Fees {
                max_fee_per_gas: fees.max_fee_per_gas.max(bump(pending.max_fee_per_gas)),
                max_priority_fee_per_gas: fees
                    .max_priority_fee_per_gas
                    .max(bump(pending.max_priority_fee_per_gas)),
            };
            // The old transaction's nonce, unless something else has used it since.
            if pending.nonce < nonce
                && self.contract.upstream().tx_status(pending.tx_hash).await?.status
                    == TxState::Pending
            {
                nonce = pending.nonce;
            }
        }
        let (raw, hash) = self.contract.build_redeem(&self.key, calldata, nonce, gas_limit, fees);
        pending.tx_hash = hash;
        pending.nonce = nonce;
        pending.max_fee_per_gas = fees.max_fee_per_gas;
        pending.max_priority_fee_per_gas = fees.max_priority_fee_per_gas;
        pending.attempts = pending.attempts.saturating_add(1);
        pending.sent_ms = unix_ms(now);
        self.ledger.put_pending_redemption(id, &pending)?;
        match self.contract.send(&raw).await {
            Ok(_) => {}
            // The node already has it (a resend after a restart): the record is right.
            Err(ChainError::Upstream(UpstreamError::Rpc { message, .. }))
                if message.contains("already known") => {}
            Err(error) => return Err(error.into()),
        }
        tracing::info!(channel = %id, tx = %hash, nonce, attempt = pending.attempts, "redeem sent");
        Ok(RedeemEvent::Submitted { id, tx: hash, nonce, attempt: pending.attempts })
    }

    /// Schedules `id` for the operator and drives it until the chain shows the payout.
    pub async fn redeem_now(&mut self, id: B256) -> Result<RedeemEvent, RedeemError> {
        let now = SystemTime::now();
        self.schedule(id, RedeemReason::Operator, now)?;
        let deadline = tokio::time::Instant::now() + self.config.wait_timeout;
        loop {
            let Some(pending) = self.ledger.pending_redemption(id)? else {
                return Err(RedeemError::NothingToRedeem(id));
            };
            let now = SystemTime::now();
            let view = self.contract.view(0).await?;
            let now_secs = unix_secs(now).max(view.head_timestamp);
            match self.try_advance(id, pending, now, now_secs).await? {
                event @ RedeemEvent::Redeemed { .. } => return Ok(event),
                RedeemEvent::Abandoned { id, why, lost } => {
                    return Err(RedeemError::Unredeemable { id, why, lost });
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RedeemError::Timeout(id));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Schedules every channel with unredeemed value and sends its transaction (without
    /// waiting for receipts: the pending entries carry on after the restart).
    pub async fn redeem_all(&mut self, reason: RedeemReason) -> Vec<RedeemEvent> {
        let now = SystemTime::now();
        let mut events = Vec::new();
        let channels = match self.ledger.channels() {
            Ok(channels) => channels,
            Err(error) => {
                tracing::error!(%error, "cannot list channels to redeem");
                return events;
            }
        };
        for (id, record) in channels {
            if !record.unredeemed().is_zero() && matches!(self.schedule(id, reason, now), Ok(true))
            {
                events.push(RedeemEvent::Scheduled { id, reason });
            }
        }
        let now_secs = unix_secs(now);
        if let Ok(pending) = self.ledger.pending_redemptions() {
            for (id, pending) in pending {
                events.push(self.advance(id, pending, now, now_secs).await);
            }
        }
        events
    }

    /// Runs the redeemer as a task: the policy every `interval`, commands from the handle.
    pub fn spawn(self) -> (RedeemHandle, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(16);
        let ledger = self.ledger.clone();
        let task = tokio::spawn(self.run(receiver));
        (RedeemHandle { sender, ledger }, task)
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // The first run one interval from now, not at once: a caller that has just driven the
        // redeemer itself (or just started lesd) gets a quiet interval first.
        let start = tokio::time::Instant::now() + self.config.interval;
        let mut interval = tokio::time::interval_at(start, self.config.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    if let Err(error) = self.tick(SystemTime::now()).await {
                        tracing::warn!(%error, "redemption policy run failed");
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::RedeemNow { id, reply }) => {
                        let _ = reply.send(self.redeem_now(id).await);
                    }
                    Some(Command::Shutdown { reply }) => {
                        if self.config.redeem_on_shutdown {
                            self.redeem_all(RedeemReason::Shutdown).await;
                        }
                        let _ = reply.send(());
                        return;
                    }
                    None => return,
                },
            }
        }
    }
}

enum Command {
    RedeemNow { id: B256, reply: oneshot::Sender<Result<RedeemEvent, RedeemError>> },
    Shutdown { reply: oneshot::Sender<()> },
}

/// The admin API's handle on a running [`Redeemer`].
#[derive(Debug, Clone)]
pub struct RedeemHandle {
    sender: mpsc::Sender<Command>,
    ledger: Ledger,
}

impl RedeemHandle {
    /// Redeems the channel's last cheque now and waits for the payout (`les_redeem`).
    pub async fn redeem_now(&self, id: B256) -> Result<RedeemEvent, RedeemError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Command::RedeemNow { id, reply })
            .await
            .map_err(|_| RedeemError::Stopped)?;
        answer.await.map_err(|_| RedeemError::Stopped)?
    }

    /// Every channel with its redemption state (`les_channels`).
    pub fn status(&self) -> Result<Vec<ChannelStatus>, RedeemError> {
        channel_status(&self.ledger)
    }

    /// Stops the task (redeeming everything first if configured to).
    pub async fn shutdown(&self) {
        let (reply, answer) = oneshot::channel();
        if self.sender.send(Command::Shutdown { reply }).await.is_ok() {
            let _ = answer.await;
        }
    }
}

fn channel_status(ledger: &Ledger) -> Result<Vec<ChannelStatus>, RedeemError> {
    let pending = ledger.pending_redemptions()?;
    Ok(ledger
        .channels()?
        .into_iter()
        .map(|(id, record)| ChannelStatus {
            id,
            node: record.node,
            last_accepted: record.last_accepted,
            redeemed: record.redeemed,
            unredeemed: record.unredeemed(),
            credited_total: record.credited_total,
            expiry: record.expiry,
            pending_tx: pending
                .iter()
                .find(|(pending_id, p)| *pending_id == id && !p.tx_hash.is_zero())
                .map(|(_, p)| p.tx_hash),
        })
        .collect())
}
