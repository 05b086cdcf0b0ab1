//! The payer interface and its first method, the payment channel: one channel per server,
//! paid with cumulative EIP-712 cheques (`les::pay::cheque`).
//!
//! Crash safety is the point of this module. A cheque's state (cumulative, signature) goes to
//! the store in one atomic batch *before* the cheque may be sent. A cheque signed but not
//! acknowledged (`signed > accepted`) is the pending one: [`Payer::prepare`] returns exactly
//! it again (same cumulative, same signature) until the server acknowledges it, so a crash
//! between persisting and sending, or a lost reply, leads to a re-send that the server
//! credits once (an equal cumulative is a duplicate to it). Signatures are deterministic
//! (RFC 6979), so one cumulative never has two different cheques.
//!
//! A payer is driven one payment per server at a time (the client marks the server busy
//! while a payment is in flight).

use super::PayError;
use super::policy::wei_for_tokens;
use crate::store::{Store, StoreWrite, Table};
use alloy_primitives::{Address, B256, Bytes, U256};
use futures_util::future::LocalBoxFuture;
use les::crypto::{NodeId, NodeKey};
use les::pay::cheque::{Cheque, ChequeDomain, ChequeSignature, key_address};
use les::pay::messages::{ChannelProof, ChannelReceipt, PriceList, RECEIVER_CHANNEL};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Signs cheques for the channel payer: a local key, or (later) a wallet through
/// `eth_signTypedData_v4`. The address must be the channel's payer (who opened it).
pub trait ChequeSigner {
    /// The payer address cheques recover to.
    fn address(&self) -> Address;
    /// Signs `cheque` under `domain` (low s, v 27/28).
    fn sign(
        &self,
        cheque: Cheque,
        domain: ChequeDomain,
    ) -> LocalBoxFuture<'static, Result<ChequeSignature, PayError>>;
}

/// A local secp256k1 key that signs cheques (and, as a funded account, opens channels:
/// `pay::open`).
#[derive(Clone)]
pub struct KeySigner {
    key: NodeKey,
}

impl std::fmt::Debug for KeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySigner({})", self.address())
    }
}

impl KeySigner {
    /// The signer of `key`.
    pub fn new(key: NodeKey) -> Self {
        Self { key }
    }

    /// The key.
    pub fn key(&self) -> &NodeKey {
        &self.key
    }
}

impl ChequeSigner for KeySigner {
    fn address(&self) -> Address {
        key_address(&self.key)
    }

    fn sign(
        &self,
        cheque: Cheque,
        domain: ChequeDomain,
    ) -> LocalBoxFuture<'static, Result<ChequeSignature, PayError>> {
        let signature = cheque.sign(&self.key, &domain);
        Box::pin(async move { Ok(signature) })
    }
}

/// A payment ready to send: the receiver name and proof of a lespay `Pay` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedPayment {
    /// The receiver (`"channel"`).
    pub receiver: String,
    /// The proof bytes.
    pub proof: Bytes,
    /// The cumulative amount of the cheque.
    pub cumulative: U256,
    /// What it adds over the last acknowledged cheque, in wei.
    pub wei: U256,
    /// Whether this re-sends the pending cheque instead of signing a new one.
    pub resend: bool,
}

/// A way of paying a server (research §7.1: channels first; a chequebook or lottery payer
/// can be added behind the same interface).
pub trait Payer {
    /// The lespay receiver name this payer's proofs are for.
    fn receiver(&self) -> &'static str;
    /// A payment of at least `tokens` to `server` at its `prices`, its state persisted in
    /// `store` before this returns; or the pending payment again, if one is unacknowledged.
    fn prepare<'a>(
        &'a self,
        store: &'a dyn Store,
        server: NodeId,
        prices: &'a PriceList,
        tokens: u64,
    ) -> LocalBoxFuture<'a, Result<PreparedPayment, PayError>>;
    /// The unacknowledged payment to `server`, to be re-sent (after a restart or a lost
    /// reply).
    fn pending(&self, server: &NodeId) -> Option<PreparedPayment>;
    /// The server acknowledged with this `PayReply` receipt: record what it accepted.
    /// Returns the accepted cumulative amount.
    fn commit<'a>(
        &'a self,
        store: &'a dyn Store,
        server: NodeId,
        receipt: &'a [u8],
    ) -> LocalBoxFuture<'a, Result<U256, PayError>>;
    /// The server refused the pending payment: drop it (a later payment starts from the last
    /// acknowledged state again).
    fn rollback<'a>(
        &'a self,
        store: &'a dyn Store,
        server: NodeId,
    ) -> LocalBoxFuture<'a, Result<(), PayError>>;
}

/// One channel to one server, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelState {
    /// The chain the contract lives on.
    pub chain_id: u64,
    /// The channel contract.
    pub contract: Address,
    /// The server's payee address.
    pub payee: Address,
    /// The channel ID (from the `Opened` event).
    pub channel_id: B256,
    /// The deposit, wei.
    pub deposit: U256,
    /// Unix seconds at which the payer may reclaim.
    pub expiry: u64,
    /// The cumulative amount of the last cheque signed and not rolled back.
    pub signed: U256,
    /// Its signature (65 bytes), if any cheque was signed.
    pub signature: Option<Bytes>,
    /// The highest cumulative ever signed: what the payee may redeem, so what is at risk.
    pub highest_signed: U256,
    /// The cumulative the server last acknowledged.
    pub accepted: U256,
}

impl ChannelState {
    /// A fresh channel (nothing signed).
    pub fn opened(
        chain_id: u64,
        contract: Address,
        payee: Address,
        channel_id: B256,
        deposit: U256,
        expiry: u64,
    ) -> Self {
        Self {
            chain_id,
            contract,
            payee,
            channel_id,
            deposit,
            expiry,
            signed: U256::ZERO,
            signature: None,
            highest_signed: U256::ZERO,
            accepted: U256::ZERO,
        }
    }

    /// The EIP-712 domain of its cheques.
    pub fn domain(&self) -> ChequeDomain {
        ChequeDomain { chain_id: self.chain_id, contract: self.contract }
    }

    /// Whether a cheque is signed and not yet acknowledged.
    pub fn is_pending(&self) -> bool {
        self.signed > self.accepted && self.signature.is_some()
    }

    fn pending_payment(&self) -> Option<PreparedPayment> {
        if !self.is_pending() {
            return None;
        }
        let signature = <[u8; 65]>::try_from(self.signature.as_ref()?.as_ref()).ok()?;
        let proof = ChannelProof {
            channel_id: self.channel_id,
            cumulative: self.signed,
            signature: ChequeSignature(signature),
        };
        Some(PreparedPayment {
            receiver: RECEIVER_CHANNEL.to_string(),
            proof: proof.encode(),
            cumulative: self.signed,
            wei: self.signed - self.accepted,
            resend: true,
        })
    }
}

/// Store key of a server's channel.
pub fn channel_key(server: &NodeId) -> String {
    format!("channel/{server}")
}

fn put(server: &NodeId, state: &ChannelState) -> Result<StoreWrite, PayError> {
    let bytes = serde_json::to_vec(state).map_err(|e| PayError::Encoding(e.to_string()))?;
    Ok(StoreWrite::Put(Table::Payments, channel_key(server), bytes))
}

/// The channel payer: per-server channel state, in memory and in the store.
pub struct ChannelPayer {
    signer: Rc<dyn ChequeSigner>,
    channels: RefCell<BTreeMap<NodeId, ChannelState>>,
}

impl ChannelPayer {
    /// A payer signing with `signer`, with the channels `store` holds (a restart's state: a
    /// pending cheque in it is re-sent by the client). Records that do not decode are skipped
    /// and reported.
    pub async fn load(
        store: &dyn Store,
        signer: Rc<dyn ChequeSigner>,
    ) -> Result<(Self, Vec<String>), PayError> {
        let mut channels = BTreeMap::new();
        let mut skipped = Vec::new();
        for key in store.keys(Table::Payments).await? {
            let Some(server) = key.strip_prefix("channel/") else { continue };
            let Ok(server) = server.parse::<NodeId>() else {
                skipped.push(key);
                continue;
            };
            let Some(bytes) = store.get(Table::Payments, &key).await? else { continue };
            match serde_json::from_slice::<ChannelState>(&bytes) {
                Ok(state) => {
                    channels.insert(server, state);
                }
                Err(_) => skipped.push(key),
            }
        }
        Ok((Self { signer, channels: RefCell::new(channels) }, skipped))
    }

    /// The payer address.
    pub fn payer_address(&self) -> Address {
        self.signer.address()
    }

    /// The channel to `server`.
    pub fn channel(&self, server: &NodeId) -> Option<ChannelState> {
        self.channels.borrow().get(server).cloned()
    }

    /// Every channel.
    pub fn channels(&self) -> Vec<(NodeId, ChannelState)> {
        self.channels.borrow().iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// The highest cumulative signed over all channels (the budget's measure).
    pub fn signed_total(&self) -> U256 {
        self.channels
            .borrow()
            .values()
            .fold(U256::ZERO, |sum, c| sum.saturating_add(c.highest_signed))
    }

    /// Records a newly opened channel to `server` (persisted first). A channel with a cheque
    /// still pending cannot be replaced.
    pub async fn add_channel(
        &self,
        store: &dyn Store,
        server: NodeId,
        state: ChannelState,
    ) -> Result<(), PayError> {
        if self.channels.borrow().get(&server).is_some_and(ChannelState::is_pending) {
            return Err(PayError::Pending);
        }
        store.write(vec![put(&server, &state)?]).await?;
        self.channels.borrow_mut().insert(server, state);
        Ok(())
    }

    /// Persists `state` for `server`, then makes it current.
    async fn save(
        &self,
        store: &dyn Store,
        server: NodeId,
        state: ChannelState,
    ) -> Result<(), PayError> {
        store.write(vec![put(&server, &state)?]).await?;
        self.channels.borrow_mut().insert(server, state);
        Ok(())
    }
}

impl Payer for ChannelPayer {
    fn receiver(&self) -> &'static str {
        RECEIVER_CHANNEL
    }

    fn prepare<'a>(
        &'a self,
        store: &'a dyn Store,
        server: NodeId,
        prices: &'a PriceList,
        tokens: u64,
    ) -> LocalBoxFuture<'a, Result<PreparedPayment, PayError>> {
        Box::pin(async move {
            let state = self.channel(&server).ok_or(PayError::NoChannel)?;
            let terms = prices.channel.as_ref().ok_or(PayError::NoChannelTerms)?;
            if (terms.chain_id, terms.contract, terms.payee)
                != (state.chain_id, state.contract, state.payee)
            {
                return Err(PayError::TermsChanged);
            }
            if let Some(pending) = state.pending_payment() {
                return Ok(pending);
            }
            let wei = wei_for_tokens(&prices.tokens_per_wei, tokens).ok_or(PayError::Rate)?;
            if wei.is_zero() {
                return Err(PayError::NothingToPay);
            }
            let cumulative = state.accepted.saturating_add(wei).max(state.highest_signed);
            if cumulative > state.deposit {
                return Err(PayError::DepositExhausted { deposit: state.deposit, cumulative });
            }
            let cheque = Cheque { channel_id: state.channel_id, payee: state.payee, cumulative };
            let signature = self.signer.sign(cheque, state.domain()).await?;
            let mut next = state.clone();
            next.signed = cumulative;
            next.signature = Some(Bytes::copy_from_slice(signature.as_bytes()));
            next.highest_signed = next.highest_signed.max(cumulative);
            // Written before anyone can send it: a crash from here on re-sends this cheque.
            self.save(store, server, next.clone()).await?;
            next.pending_payment()
                .map(|p| PreparedPayment { resend: false, ..p })
                .ok_or(PayError::Pending)
        })
    }

    fn pending(&self, server: &NodeId) -> Option<PreparedPayment> {
        self.channels.borrow().get(server).and_then(ChannelState::pending_payment)
    }

    fn commit<'a>(
        &'a self,
        store: &'a dyn Store,
        server: NodeId,
        receipt: &'a [u8],
    ) -> LocalBoxFuture<'a, Result<U256, PayError>> {
        Box::pin(async move {
            let receipt = ChannelReceipt::decode(receipt)?;
            let state = self.channel(&server).ok_or(PayError::NoChannel)?;
            if receipt.accepted_cumulative > state.signed {
                return Err(PayError::AcceptedAboveSigned {
                    accepted: receipt.accepted_cumulative,
                    signed: state.signed,
                });
            }
            let accepted = state.accepted.max(receipt.accepted_cumulative);
            if accepted != state.accepted {
                let mut next = state;
                next.accepted = accepted;
                self.save(store, server, next).await?;
            }
            Ok(accepted)
        })
    }

    fn rollback<'a>(
        &'a self,
        store: &'a dyn Store,
        server: NodeId,
    ) -> LocalBoxFuture<'a, Result<(), PayError>> {
        Box::pin(async move {
            let state = self.channel(&server).ok_or(PayError::NoChannel)?;
            if !state.is_pending() {
                return Ok(());
            }
            let mut next = state;
            next.signed = next.accepted;
            next.signature = None;
            self.save(store, server, next).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pay::block_on;
    use crate::store::{MemoryStore, StoreError};
    use les::pay::messages::{ChannelTerms, ExchangeRate, PriceFactors};
    use std::cell::Cell;
    use std::collections::HashMap;

    const SERVER: NodeId = NodeId::repeat_byte(0x51);

    fn key() -> NodeKey {
        NodeKey::from_bytes(&[7u8; 32]).expect("key")
    }

    fn state() -> ChannelState {
        ChannelState::opened(
            31337,
            Address::repeat_byte(0xcc),
            Address::repeat_byte(0xee),
            B256::repeat_byte(0x1d),
            U256::from(1_000_000u64),
            2_000_000_000,
        )
    }

    fn prices() -> PriceList {
        PriceList {
            min_capacity: 1,
            total_capacity: 1,
            free_capacity: 1,
            pos_factors: PriceFactors { time: 0, capacity: 0, request: 0 },
            neg_factors: PriceFactors { time: 0, capacity: 0, request: 0 },
            // 2 tokens per 3 wei: 100 tokens cost 150 wei.
            tokens_per_wei: ExchangeRate { num: 2, den: 3 },
            connected_bias_secs: 0,
            receivers: vec![RECEIVER_CHANNEL.into()],
            channel: Some(ChannelTerms {
                chain_id: 31337,
                contract: Address::repeat_byte(0xcc),
                payee: Address::repeat_byte(0xee),
                accept_margin_secs: 0,
                min_deposit: U256::from(1u64),
            }),
        }
    }

    fn load(store: &MemoryStore) -> ChannelPayer {
        block_on(ChannelPayer::load(store, Rc::new(KeySigner::new(key())))).expect("load").0
    }

    fn receipt(accepted: U256) -> Bytes {
        ChannelReceipt { accepted_cumulative: accepted }.encode()
    }

    /// Fails every write after `allow` writes (a full disk, a closed database).
    struct FailingStore {
        inner: MemoryStore,
        allow: Cell<usize>,
    }

    impl Store for FailingStore {
        fn get(
            &self,
            t: Table,
            k: &str,
        ) -> LocalBoxFuture<'static, Result<Option<Vec<u8>>, StoreError>> {
            self.inner.get(t, k)
        }
        fn keys(&self, t: Table) -> LocalBoxFuture<'static, Result<Vec<String>, StoreError>> {
            self.inner.keys(t)
        }
        fn write(&self, batch: Vec<StoreWrite>) -> LocalBoxFuture<'static, Result<(), StoreError>> {
            if self.allow.get() == 0 {
                return Box::pin(async { Err(StoreError::Quota) });
            }
            self.allow.set(self.allow.get() - 1);
            self.inner.write(batch)
        }
    }

    #[test]
    fn a_cheque_is_persisted_before_it_is_returned_and_verifies() {
        let store = MemoryStore::new();
        let payer = load(&store);
        block_on(payer.add_channel(&store, SERVER, state())).expect("add");
        let payment = block_on(payer.prepare(&store, SERVER, &prices(), 100)).expect("prepare");
        assert_eq!(payment.cumulative, U256::from(150u64));
        assert!(!payment.resend);
        let proof = ChannelProof::decode(&payment.proof).expect("proof");
        let signer = proof.cheque(state().payee).recover(&state().domain(), &proof.signature);
        assert_eq!(signer, Ok(key_address(&key())));
        // What the store holds is that very cheque.
        let stored = load(&store).pending(&SERVER).expect("pending after reload");
        assert_eq!(stored.proof, payment.proof);
    }

    #[test]
    fn crash_between_persist_and_send_resends_the_same_cumulative() {
        let store = MemoryStore::new();
        let payer = load(&store);
        block_on(payer.add_channel(&store, SERVER, state())).expect("add");
        let first = block_on(payer.prepare(&store, SERVER, &prices(), 100)).expect("prepare");
        drop(payer); // crash: the cheque was never sent

        let restarted = load(&store);
        let resent = restarted.pending(&SERVER).expect("pending");
        assert_eq!(
            (resent.cumulative, &resent.proof, resent.resend),
            (first.cumulative, &first.proof, true)
        );
        // Asking for more before the acknowledgement still yields the pending cheque.
        let again =
            block_on(restarted.prepare(&store, SERVER, &prices(), 10_000)).expect("prepare");
        assert_eq!((again.cumulative, again.proof), (first.cumulative, first.proof.clone()));

        // The server credits it (or treats it as a duplicate) and acknowledges.
        let accepted = block_on(restarted.commit(&store, SERVER, &receipt(first.cumulative)));
        assert_eq!(accepted, Ok(first.cumulative));
        assert!(load(&store).pending(&SERVER).is_none());
        let next = block_on(restarted.prepare(&store, SERVER, &prices(), 2)).expect("next");
        assert_eq!(next.cumulative, U256::from(153u64));
        assert_eq!(next.wei, U256::from(3u64));
    }

    #[test]
    fn never_two_different_cheques_for_one_cumulative() {
        let store = MemoryStore::new();
        let mut payer = load(&store);
        block_on(payer.add_channel(&store, SERVER, state())).expect("add");
        let mut seen: HashMap<U256, Bytes> = HashMap::new();
        for round in 0..30u64 {
            let payment =
                block_on(payer.prepare(&store, SERVER, &prices(), 1 + round % 4)).expect("prepare");
            if let Some(earlier) = seen.insert(payment.cumulative, payment.proof.clone()) {
                assert_eq!(
                    earlier, payment.proof,
                    "cumulative {} signed twice differently",
                    payment.cumulative
                );
            }
            match round % 5 {
                0 => payer = load(&store), // crash before send
                1 => {
                    block_on(payer.commit(&store, SERVER, &receipt(payment.cumulative)))
                        .expect("ack");
                }
                2 => block_on(payer.rollback(&store, SERVER)).expect("refused"),
                3 => {
                    block_on(payer.commit(&store, SERVER, &receipt(payment.cumulative)))
                        .expect("ack");
                    payer = load(&store); // crash after ack
                }
                _ => {} // reply lost
            }
        }
        let state = payer.channel(&SERVER).expect("channel");
        assert!(state.highest_signed >= state.signed && state.signed >= state.accepted);
    }

    #[test]
    fn a_failed_write_sends_nothing_and_changes_nothing() {
        let store = FailingStore { inner: MemoryStore::new(), allow: Cell::new(1) };
        let payer =
            block_on(ChannelPayer::load(&store, Rc::new(KeySigner::new(key())))).expect("load").0;
        block_on(payer.add_channel(&store, SERVER, state())).expect("add");
        let result = block_on(payer.prepare(&store, SERVER, &prices(), 100));
        assert!(matches!(result, Err(PayError::Store(StoreError::Quota))), "{result:?}");
        assert!(payer.pending(&SERVER).is_none());
        assert_eq!(payer.channel(&SERVER), Some(state()));
    }

    #[test]
    fn limits_and_bad_receipts_are_refused() {
        let store = MemoryStore::new();
        let payer = load(&store);
        assert!(matches!(
            block_on(payer.prepare(&store, SERVER, &prices(), 1)),
            Err(PayError::NoChannel)
        ));
        block_on(payer.add_channel(&store, SERVER, state())).expect("add");
        assert!(matches!(
            block_on(payer.prepare(&store, SERVER, &prices(), 0)),
            Err(PayError::NothingToPay)
        ));
        // 1,000,000 wei deposit buys 666,666 tokens; 700,000 is too many.
        assert!(matches!(
            block_on(payer.prepare(&store, SERVER, &prices(), 700_000)),
            Err(PayError::DepositExhausted { .. })
        ));
        let mut other = prices();
        other.channel.as_mut().expect("terms").payee = Address::repeat_byte(1);
        assert!(matches!(
            block_on(payer.prepare(&store, SERVER, &other, 1)),
            Err(PayError::TermsChanged)
        ));
        let payment = block_on(payer.prepare(&store, SERVER, &prices(), 100)).expect("prepare");
        let over = receipt(payment.cumulative + U256::from(1u64));
        assert!(matches!(
            block_on(payer.commit(&store, SERVER, &over)),
            Err(PayError::AcceptedAboveSigned { .. })
        ));
        assert!(matches!(
            block_on(payer.commit(&store, SERVER, &[0xff])),
            Err(PayError::Receipt(_))
        ));
        assert!(payer.pending(&SERVER).is_some(), "a bad receipt leaves the cheque pending");
        assert!(matches!(
            block_on(payer.add_channel(&store, SERVER, state())),
            Err(PayError::Pending)
        ));
        assert_eq!(payer.signed_total(), U256::from(150u64));
    }
}
