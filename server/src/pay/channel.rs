//! The payment-channel cheque receiver (`"channel"`): checks a cheque in exactly the order of
//! research §7.3 and credits it durably.
//!
//! 1. the channel is on chain at the head minus `confirmations`, pays our address, is not
//!    closed (and holds at least the advertised minimum deposit);
//! 2. `expiry - now >= accept_margin`, `now` the later of the wall clock and the head's
//!    timestamp (the contract judges expiry by block time);
//! 3. the signature is low-s, v ∈ {27, 28}, and recovers to the channel's signer under our
//!    chain id and contract (EIP-712, [`les::pay::cheque`]); the signer is whom the payer
//!    named at `open`, the payer itself or a delegated session key, and the contract checks
//!    cheques against it, so any other signature (the payer's included) is worthless;
//!
//!    then the channel binding of wire.md: the first node id whose cheque is accepted owns the
//!    channel's credit;
//! 4. `cumulative > lastAccepted` (equal: a duplicate, acknowledged with no credit; lower:
//!    rejected);
//! 5. `cumulative <= deposit` (the chain is re-read when the cheque is above the cached
//!    deposit, so a confirmed top-up is seen);
//! 6. `credit = floor(cumulative·R) - floor(last·R)`, exact;
//! 7. one fsynced ledger transaction (new last accepted and signature, pos += credit, a log
//!    entry), and only then the receipt.
//!
//! A rejection changes nothing. Cheques are handled one at a time (they are rare, and it
//! keeps "verify, then write" free of races; the ledger re-checks the last accepted value
//! anyway). Channel state read from the chain is cached: payer, payee and signer never
//! change, the deposit and the expiry only grow, and a channel can only be closed by its payee
//! (us) or reclaimed after its expiry, which check 2 keeps us well away from; so a cached read
//! is never more permissive than a fresh one except for check 1's `closed`, re-read whenever
//! the cache is older than `cache_ttl`.

use crate::pay::chain::{ChainView, ChannelContract, OnChainChannel};
use crate::pay::ledger::{ChannelCredit, Ledger, LedgerError, MAX_BALANCE, unix_ms};
use crate::pay::receiver::{
    BalanceSink, PaymentError, PaymentReceiver, Receipt, ReceiveFuture, update_balance,
};
use alloy_primitives::{Address, B256, U256};
use les::crypto::NodeId;
use les::pay::cheque::{ChequeDomain, ChequeError};
use les::pay::messages::{
    ChannelProof, ChannelReceipt, ChannelTerms, ExchangeRate, RECEIVER_CHANNEL,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why a cheque was rejected: which check of §7.3 (or the binding rule) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Check 1: no such channel at the confirmed block.
    #[error(
        "check 1: channel {channel} not found on chain at block {block} ({confirmations} confirmations)"
    )]
    UnknownChannel {
        /// The channel id.
        channel: B256,
        /// The block read.
        block: u64,
        /// Confirmations required.
        confirmations: u64,
    },
    /// Check 1: the channel pays someone else.
    #[error("check 1: channel pays {payee}, not us ({ours})")]
    WrongPayee {
        /// The channel's payee.
        payee: Address,
        /// Our payee address.
        ours: Address,
    },
    /// Check 1: the channel is closed.
    #[error("check 1: channel {0} is closed")]
    Closed(B256),
    /// Check 1: the deposit is below the advertised minimum.
    #[error("check 1: deposit {deposit} below the minimum {minimum}")]
    DepositTooSmall {
        /// The channel's deposit.
        deposit: U256,
        /// The minimum.
        minimum: U256,
    },
    /// Check 2: the channel expires too soon.
    #[error("check 2: channel expires at {expiry}, less than {margin_secs} s after now ({now})")]
    ExpiresTooSoon {
        /// Expiry, Unix seconds.
        expiry: u64,
        /// Now, Unix seconds.
        now: u64,
        /// The accept margin.
        margin_secs: u64,
    },
    /// Check 3: the signature is malformed (bad v, high s, not a point).
    #[error("check 3: bad signature: {0}")]
    BadSignature(ChequeError),
    /// Check 3: the signature is not the channel signer's for this cheque under our domain.
    #[error("check 3: cheque signed by {recovered}, channel signer is {signer}")]
    WrongSigner {
        /// Who signed (what the signature recovers to).
        recovered: Address,
        /// The channel's signer (from `channels(id)`).
        signer: Address,
    },
    /// Channel binding: another node id owns this channel's credit.
    #[error("channel bound to another client ({owner})")]
    BoundToAnotherClient {
        /// The owner.
        owner: NodeId,
    },
    /// Check 4: the cheque is older than one already accepted.
    #[error("check 4: cumulative {cumulative} below the last accepted {last_accepted}")]
    Stale {
        /// The cheque's cumulative amount.
        cumulative: U256,
        /// The channel's last accepted amount.
        last_accepted: U256,
    },
    /// Check 5: the cheque exceeds the deposit.
    #[error("check 5: cumulative {cumulative} above the deposit {deposit}")]
    AboveDeposit {
        /// The cheque's cumulative amount.
        cumulative: U256,
        /// The confirmed deposit.
        deposit: U256,
    },
    /// Check 6: the credit does not fit a balance (above 2^63-1).
    #[error("check 6: credit would take the balance above 2^63-1")]
    BalanceOverflow,
}

/// The channel receiver's settings.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Our payee address (the payee key's).
    pub payee: Address,
    /// Blocks a channel's state must be buried under before it counts (0 on a devnet).
    pub confirmations: u64,
    /// The accept margin: cheques are refused this close to the channel's expiry.
    pub accept_margin: Duration,
    /// Tokens per wei.
    pub rate: ExchangeRate,
    /// The smallest deposit accepted.
    pub min_deposit: U256,
    /// How long a chain read of a channel is reused for.
    pub cache_ttl: Duration,
}

/// The error of an unusable configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The exchange rate has a zero denominator.
    #[error("exchange rate {num}/0 is undefined")]
    ZeroDenominator {
        /// The numerator.
        num: u64,
    },
}

struct Cached {
    channel: OnChainChannel,
    read_at: Instant,
}

/// The `"channel"` receiver.
pub struct ChannelReceiver {
    config: ChannelConfig,
    contract: ChannelContract,
    ledger: Ledger,
    sink: Arc<dyn BalanceSink>,
    cache: tokio::sync::Mutex<HashMap<B256, Cached>>,
}

impl std::fmt::Debug for ChannelReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelReceiver")
            .field("config", &self.config)
            .field("contract", &self.contract.address())
            .finish_non_exhaustive()
    }
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl ChannelReceiver {
    /// A receiver for cheques on `contract`'s channels paying `config.payee`.
    pub fn new(
        config: ChannelConfig,
        contract: ChannelContract,
        ledger: Ledger,
        sink: Arc<dyn BalanceSink>,
    ) -> Result<Self, ConfigError> {
        if config.rate.den == 0 {
            return Err(ConfigError::ZeroDenominator { num: config.rate.num });
        }
        Ok(Self { config, contract, ledger, sink, cache: tokio::sync::Mutex::new(HashMap::new()) })
    }

    /// The cheque domain: our chain id and contract.
    pub fn domain(&self) -> ChequeDomain {
        ChequeDomain { chain_id: self.contract.chain_id(), contract: self.contract.address() }
    }

    /// The terms advertised in `PriceList.channel`.
    pub fn terms(&self) -> ChannelTerms {
        ChannelTerms {
            chain_id: self.contract.chain_id(),
            contract: self.contract.address(),
            payee: self.config.payee,
            accept_margin_secs: self.config.accept_margin.as_secs(),
            min_deposit: self.config.min_deposit,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ChannelConfig {
        &self.config
    }

    /// Verifies and credits one cheque (see the module doc for the order of checks).
    pub async fn accept(
        &self,
        client: NodeId,
        proof: &[u8],
        now: SystemTime,
    ) -> Result<Receipt, PaymentError> {
        let proof = ChannelProof::decode(proof)?;
        // One cheque at a time: the cache lock is held through the ledger write.
        let mut cache = self.cache.lock().await;
        let id = proof.channel_id;
        let confirmations = self.config.confirmations;

        // Check 1, from the cache if fresh and the cheque is within the cached deposit.
        let fresh = |cached: &Cached| cached.read_at.elapsed() < self.config.cache_ttl;
        let (mut channel, view) = match cache.get(&id) {
            Some(cached) if fresh(cached) && proof.cumulative <= cached.channel.deposit => {
                (cached.channel, self.contract.view(confirmations).await?)
            }
            _ => {
                let (channel, view) = self.contract.channel(id, confirmations).await?;
                if channel.exists() {
                    cache.insert(id, Cached { channel, read_at: Instant::now() });
                }
                (channel, view)
            }
        };
        self.check_channel(id, &channel, &view)?;

        // Check 2.
        let time_ms = unix_ms(now);
        let now = unix_secs(now).max(view.head_timestamp);
        let margin = self.config.accept_margin.as_secs();
        if channel.expiry.saturating_sub(now) < margin {
            return Err(Rejection::ExpiresTooSoon {
                expiry: channel.expiry,
                now,
                margin_secs: margin,
            }
            .into());
        }

        // Check 3.
        let cheque = proof.cheque(self.config.payee);
        let recovered =
            cheque.recover(&self.domain(), &proof.signature).map_err(Rejection::BadSignature)?;
        if recovered != channel.signer {
            return Err(Rejection::WrongSigner { recovered, signer: channel.signer }.into());
        }

        // Binding, then check 4.
        let record = self.ledger.channel(id)?;
        let last = match &record {
            Some(record) if record.node != client => {
                return Err(Rejection::BoundToAnotherClient { owner: record.node }.into());
            }
            Some(record) => record.last_accepted,
            None => U256::ZERO,
        };
        if proof.cumulative == last {
            let reply = ChannelReceipt { accepted_cumulative: last }.encode().to_vec();
            return Ok(Receipt { credited: 0, balance: self.sink.positive(client), reply });
        }
        if proof.cumulative < last {
            return Err(
                Rejection::Stale { cumulative: proof.cumulative, last_accepted: last }.into()
            );
        }

        // Check 5: above the cached deposit, look again (a top-up may have been confirmed).
        if proof.cumulative > channel.deposit {
            let (reread, view) = self.contract.channel(id, confirmations).await?;
            self.check_channel(id, &reread, &view)?;
            cache.insert(id, Cached { channel: reread, read_at: Instant::now() });
            channel = reread;
            if proof.cumulative > channel.deposit {
                return Err(Rejection::AboveDeposit {
                    cumulative: proof.cumulative,
                    deposit: channel.deposit,
                }
                .into());
            }
        }

        // Check 6. cumulative ≤ deposit < 2^128 and num < 2^64, so the product fits U256.
        let tokens = self
            .config
            .rate
            .credit(last, proof.cumulative)
            .and_then(|credit| u64::try_from(credit).ok())
            .filter(|credit| *credit <= MAX_BALANCE)
            .ok_or(Rejection::BalanceOverflow)?;

        // Check 7: durable, then the pool, then the acknowledgement.
        let credit = ChannelCredit {
            channel: id,
            node: client,
            expected_last: last,
            cumulative: proof.cumulative,
            signature: proof.signature.0,
            tokens,
            expiry: channel.expiry,
            deposit: channel.deposit,
            time_ms,
        };
        let ledger = self.ledger.clone();
        let balance = update_balance(self.sink.clone(), client, move |current| {
            match ledger.credit_channel(&credit, current) {
                Ok(entry) => Ok(entry.balance_after),
                Err(LedgerError::ChannelBound { owner, .. }) => {
                    Err(Rejection::BoundToAnotherClient { owner }.into())
                }
                Err(LedgerError::BalanceOverflow { .. }) => Err(Rejection::BalanceOverflow.into()),
                Err(error) => Err(error.into()),
            }
        })
        .await?;
        tracing::info!(channel = %id, %client, cumulative = %proof.cumulative, tokens, balance, "cheque accepted");
        let reply = ChannelReceipt { accepted_cumulative: proof.cumulative }.encode().to_vec();
        Ok(Receipt { credited: tokens, balance, reply })
    }

    fn check_channel(
        &self,
        id: B256,
        channel: &OnChainChannel,
        view: &ChainView,
    ) -> Result<(), Rejection> {
        if !channel.exists() {
            return Err(Rejection::UnknownChannel {
                channel: id,
                block: view.read_at,
                confirmations: self.config.confirmations,
            });
        }
        if channel.payee != self.config.payee {
            return Err(Rejection::WrongPayee { payee: channel.payee, ours: self.config.payee });
        }
        if channel.closed {
            return Err(Rejection::Closed(id));
        }
        if channel.deposit < self.config.min_deposit {
            return Err(Rejection::DepositTooSmall {
                deposit: channel.deposit,
                minimum: self.config.min_deposit,
            });
        }
        Ok(())
    }
}

impl PaymentReceiver for ChannelReceiver {
    fn name(&self) -> &'static str {
        RECEIVER_CHANNEL
    }

    fn receive<'a>(
        &'a self,
        client: NodeId,
        proof: &'a [u8],
        now: SystemTime,
    ) -> ReceiveFuture<'a> {
        Box::pin(self.accept(client, proof, now))
    }
}
