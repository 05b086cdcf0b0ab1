//! The `lespay/1` devp2p capability: the service-model messages a client and a server
//! exchange beside `les/4` on the same RLPx connection (prices, capacity queries, payments,
//! balances, capacity requests and pushes), as typed values with strict RLP.
//!
//! The wire contract is docs/service-model.md ("Messages"). Everything here works on the
//! capability's relative message code and its payload: register [`capability`] in
//! `SessionConfig::extra_capabilities`, hand every `Event::CapabilityMessage` for [`LESPAY`]
//! to [`LespayMessage::decode`], and send [`LespayMessage::encode`]'s `(code, payload)` with
//! `Session::send_capability_message`.
//!
//! Decoding is strict in the way the `msg` module's is: a payload over
//! [`MAX_PAYLOAD_SIZE`] is refused before it is parsed, integers must be canonical, every
//! list must have exactly its fields, nothing may follow the message's one item, and the
//! value sets (error codes, priority classes, `IntOrInf` types) are closed. List lengths
//! come from the parsed bytes, never from a count in the input.

/// The price factors travel in their accounting form (wire units are the balance module's).
pub use super::balance::PriceFactors;
use super::cheque::{Cheque, ChequeDomain, ChequeSignature};
/// The priority class travels as the pool defines it (0 free, 1 paid).
pub use super::pool::PriorityClass;
use crate::msg::codec::{ListOf, encode_as_list};
use crate::p2p::CapabilitySpec;
use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_rlp::{BufMut, Decodable, Encodable, Header};

/// The capability's name in Hello.
pub const LESPAY: &str = "lespay";
/// The capability's version.
pub const LESPAY_VERSION: u64 = 1;
/// How many message codes `lespay/1` occupies (0x00..=0x0b).
pub const MESSAGE_COUNT: u64 = 12;
/// Largest payload of any `lespay` message; larger ones are refused before decoding. The
/// biggest real message (a PriceReply with a few receivers) is far below it.
pub const MAX_PAYLOAD_SIZE: usize = 4096;
/// Most amounts one CapacityQuery may ask about (as vflux's `cq`); at least one.
pub const MAX_ADD_TOKENS: usize = 16;
/// Longest Error reason, in bytes.
pub const MAX_REASON_LEN: usize = 256;
/// The receiver name of payment-channel cheques ([`ChannelProof`]).
pub const RECEIVER_CHANNEL: &str = "channel";

/// `lespay/1` as a capability to negotiate beside LES.
pub fn capability() -> CapabilitySpec {
    CapabilitySpec {
        name: LESPAY.to_string(),
        version: LESPAY_VERSION,
        message_count: MESSAGE_COUNT,
    }
}

/// Message codes, relative to the capability's offset.
pub mod codes {
    /// PriceQuery (client to server).
    pub const PRICE_QUERY: u64 = 0x00;
    /// PriceReply.
    pub const PRICE_REPLY: u64 = 0x01;
    /// CapacityQuery (client to server).
    pub const CAPACITY_QUERY: u64 = 0x02;
    /// CapacityReply.
    pub const CAPACITY_REPLY: u64 = 0x03;
    /// Pay (client to server).
    pub const PAY: u64 = 0x04;
    /// PayReply.
    pub const PAY_REPLY: u64 = 0x05;
    /// BalanceQuery (client to server).
    pub const BALANCE_QUERY: u64 = 0x06;
    /// BalanceReply.
    pub const BALANCE_REPLY: u64 = 0x07;
    /// CapacityRequest (client to server).
    pub const CAPACITY_REQUEST: u64 = 0x08;
    /// CapacityGranted, the reply to CapacityRequest.
    pub const CAPACITY_GRANTED: u64 = 0x09;
    /// CapacityUpdate (server push, no request ID).
    pub const CAPACITY_UPDATE: u64 = 0x0a;
    /// Error, the reply to any request that failed.
    pub const ERROR: u64 = 0x0b;
}

/// Why a `lespay` message (or a payment proof or receipt inside one) was refused.
/// `context` names the message and field, e.g. `"PriceReply pos_factors time"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LespayError {
    /// The payload exceeds [`MAX_PAYLOAD_SIZE`].
    #[error("lespay payload of {size} bytes exceeds the {MAX_PAYLOAD_SIZE}-byte limit")]
    TooLarge {
        /// Payload size in bytes.
        size: usize,
    },
    /// No `lespay/1` message has this code.
    #[error("lespay message code {code:#04x} does not exist")]
    UnknownCode {
        /// The relative code.
        code: u64,
    },
    /// alloy-rlp refused an item: bad header, non-canonical integer, wrong fixed length,
    /// a list where a string belongs or the reverse, a missing field.
    #[error("{context}: {source}")]
    Rlp {
        /// What was being decoded.
        context: &'static str,
        /// The alloy-rlp error.
        source: alloy_rlp::Error,
    },
    /// Bytes after the message's single item, or elements after a list's last field.
    #[error("{context}: {extra} trailing bytes")]
    TrailingBytes {
        /// What was being decoded.
        context: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// A CapacityQuery asks about no amount, or more than [`MAX_ADD_TOKENS`].
    #[error("CapacityQuery with {found} amounts, allowed 1..={MAX_ADD_TOKENS}")]
    AddTokensCount {
        /// How many amounts it has.
        found: usize,
    },
    /// A CapacityReply has no entry, or more than [`MAX_ADD_TOKENS`].
    #[error("CapacityReply with {found} capacities, allowed 1..={MAX_ADD_TOKENS}")]
    CapacitiesCount {
        /// How many entries it has.
        found: usize,
    },
    /// An Error reason longer than [`MAX_REASON_LEN`] bytes.
    #[error("Error reason of {len} bytes, allowed {MAX_REASON_LEN}")]
    ReasonTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// An enumerated field holds a value outside its set.
    #[error("{context}: unknown value {value}")]
    UnknownValue {
        /// What was being decoded.
        context: &'static str,
        /// The value found.
        value: u64,
    },
    /// An `IntOrInf` infinity (type 2 or 3) with a value other than 0.
    #[error("IntOrInf infinity with a non-zero value")]
    InfinityWithValue,
    /// A text field is not UTF-8.
    #[error("{context}: not valid UTF-8")]
    InvalidUtf8 {
        /// What was being decoded.
        context: &'static str,
    },
}

/// Walks one RLP list field by field, naming each field in its errors. Scalars still go
/// through alloy-rlp's strict `Decodable`.
struct Fields<'a> {
    rest: &'a [u8],
    context: &'static str,
}

impl<'a> Fields<'a> {
    /// `input` must be exactly one list.
    fn top(input: &'a [u8], context: &'static str) -> Result<Self, LespayError> {
        let mut rest = input;
        let payload = Header::decode_bytes(&mut rest, true).map_err(rlp(context))?;
        if !rest.is_empty() {
            return Err(LespayError::TrailingBytes { context, extra: rest.len() });
        }
        Ok(Self { rest: payload, context })
    }

    fn value<T: Decodable>(&mut self, context: &'static str) -> Result<T, LespayError> {
        if self.rest.is_empty() {
            return Err(LespayError::Rlp { context, source: alloy_rlp::Error::InputTooShort });
        }
        T::decode(&mut self.rest).map_err(rlp(context))
    }

    fn list(&mut self, context: &'static str) -> Result<Fields<'a>, LespayError> {
        if self.rest.is_empty() {
            return Err(LespayError::Rlp { context, source: alloy_rlp::Error::InputTooShort });
        }
        let payload = Header::decode_bytes(&mut self.rest, true).map_err(rlp(context))?;
        Ok(Fields { rest: payload, context })
    }

    fn bytes(&mut self, context: &'static str) -> Result<&'a [u8], LespayError> {
        if self.rest.is_empty() {
            return Err(LespayError::Rlp { context, source: alloy_rlp::Error::InputTooShort });
        }
        Header::decode_bytes(&mut self.rest, false).map_err(rlp(context))
    }

    fn string(&mut self, context: &'static str) -> Result<String, LespayError> {
        let bytes = self.bytes(context)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| LespayError::InvalidUtf8 { context })
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Every field has been read: nothing may remain.
    fn finish(self) -> Result<(), LespayError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(LespayError::TrailingBytes { context: self.context, extra: self.rest.len() })
        }
    }
}

fn rlp(context: &'static str) -> impl FnOnce(alloy_rlp::Error) -> LespayError {
    move |source| LespayError::Rlp { context, source }
}

impl PriceFactors {
    fn read(mut fields: Fields<'_>) -> Result<Self, LespayError> {
        let factors = Self {
            time: fields.value("PriceFactors time")?,
            capacity: fields.value("PriceFactors capacity")?,
            request: fields.value("PriceFactors request")?,
        };
        fields.finish()?;
        Ok(factors)
    }
}

encode_as_list!(PriceFactors, |this| [&this.time, &this.capacity, &this.request]);

/// The exchange rate R: `num / den` service tokens per wei, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeRate {
    /// Numerator.
    pub num: u64,
    /// Denominator (a rate with 0 here converts nothing).
    pub den: u64,
}

impl ExchangeRate {
    /// floor(wei × num / den); `None` if `den` is 0 or the result exceeds 2^256 - 1.
    pub fn tokens(&self, wei: U256) -> Option<U256> {
        if self.den == 0 {
            return None;
        }
        let (num, den) = (U256::from(self.num), U256::from(self.den));
        // (q·den + r)·num / den = q·num + r·num/den, and r·num < 2^128: exact without a
        // wider type.
        let (q, r) = (wei / den, wei % den);
        q.checked_mul(num)?.checked_add(r * num / den)
    }

    /// The tokens a cheque of `cumulative` earns after one of `last` was credited:
    /// `floor(cumulative·R) - floor(last·R)`. Summed over any sequence of cheques this is
    /// `floor(final·R)`, so rounding never accumulates. `None` if `cumulative < last` or
    /// [`ExchangeRate::tokens`] fails.
    pub fn credit(&self, last: U256, cumulative: U256) -> Option<U256> {
        if cumulative < last {
            return None;
        }
        self.tokens(cumulative)?.checked_sub(self.tokens(last)?)
    }

    fn read(mut fields: Fields<'_>) -> Result<Self, LespayError> {
        let rate =
            Self { num: fields.value("ExchangeRate num")?, den: fields.value("ExchangeRate den")? };
        fields.finish()?;
        Ok(rate)
    }
}

encode_as_list!(ExchangeRate, |this| [&this.num, &this.den]);

/// A server's payment-channel terms: where its channels live and what it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelTerms {
    /// EIP-155 chain ID of the contract.
    pub chain_id: u64,
    /// The PaymentChannel contract.
    pub contract: Address,
    /// The address channels must pay (the server's).
    pub payee: Address,
    /// A cheque is refused once its channel expires in less than this.
    pub accept_margin_secs: u64,
    /// The smallest deposit the server considers.
    pub min_deposit: U256,
}

impl ChannelTerms {
    /// The EIP-712 domain cheques for this server are signed under.
    pub fn domain(&self) -> ChequeDomain {
        ChequeDomain { chain_id: self.chain_id, contract: self.contract }
    }

    fn read(mut fields: Fields<'_>) -> Result<Self, LespayError> {
        let terms = Self {
            chain_id: fields.value("ChannelTerms chain_id")?,
            contract: fields.value("ChannelTerms contract")?,
            payee: fields.value("ChannelTerms payee")?,
            accept_margin_secs: fields.value("ChannelTerms accept_margin_secs")?,
            min_deposit: fields.value("ChannelTerms min_deposit")?,
        };
        fields.finish()?;
        Ok(terms)
    }
}

encode_as_list!(ChannelTerms, |this| [
    &this.chain_id,
    &this.contract,
    &this.payee,
    &this.accept_margin_secs,
    &this.min_deposit,
]);

/// Channel terms or their absence, encoded as the terms' list or the empty list.
struct OptionalTerms<'a>(&'a Option<ChannelTerms>);

impl Encodable for OptionalTerms<'_> {
    fn encode(&self, out: &mut dyn BufMut) {
        match self.0 {
            Some(terms) => terms.encode(out),
            None => ListOf(&[]).encode(out),
        }
    }

    fn length(&self) -> usize {
        match self.0 {
            Some(terms) => terms.length(),
            None => ListOf(&[]).length(),
        }
    }
}

/// A list of strings.
struct StringList<'a>(&'a [String]);

impl Encodable for StringList<'_> {
    fn encode(&self, out: &mut dyn BufMut) {
        let payload_length = self.0.iter().map(|s| s.as_str().length()).sum();
        Header { list: true, payload_length }.encode(out);
        for s in self.0 {
            s.as_str().encode(out);
        }
    }

    fn length(&self) -> usize {
        let payload_length: usize = self.0.iter().map(|s| s.as_str().length()).sum();
        payload_length + alloy_rlp::length_of_length(payload_length)
    }
}

/// Everything a client needs to price this server's service (the PriceReply body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceList {
    /// The smallest capacity a client is given (what free clients get).
    pub min_capacity: u64,
    /// The capacity shared by all clients.
    pub total_capacity: u64,
    /// Capacity not held by any client right now.
    pub free_capacity: u64,
    /// What a positive balance is charged.
    pub pos_factors: PriceFactors,
    /// What free use adds to the debt (negative balance).
    pub neg_factors: PriceFactors,
    /// Tokens credited per wei paid.
    pub tokens_per_wei: ExchangeRate,
    /// The connection time a newcomer must be able to pay for on top of outranking the
    /// weakest active client.
    pub connected_bias_secs: u64,
    /// The payment receivers the server accepts, e.g. `["channel"]`.
    pub receivers: Vec<String>,
    /// The channel terms, when `"channel"` is a receiver.
    pub channel: Option<ChannelTerms>,
}

impl PriceList {
    fn read(mut fields: Fields<'_>) -> Result<Self, LespayError> {
        let min_capacity = fields.value("PriceList min_capacity")?;
        let total_capacity = fields.value("PriceList total_capacity")?;
        let free_capacity = fields.value("PriceList free_capacity")?;
        let pos_factors = PriceFactors::read(fields.list("PriceList pos_factors")?)?;
        let neg_factors = PriceFactors::read(fields.list("PriceList neg_factors")?)?;
        let tokens_per_wei = ExchangeRate::read(fields.list("PriceList tokens_per_wei")?)?;
        let connected_bias_secs = fields.value("PriceList connected_bias_secs")?;
        let mut list = fields.list("PriceList receivers")?;
        let mut receivers = Vec::new();
        while !list.is_empty() {
            receivers.push(list.string("PriceList receiver")?);
        }
        let terms = fields.list("PriceList channel")?;
        let channel = if terms.is_empty() { None } else { Some(ChannelTerms::read(terms)?) };
        fields.finish()?;
        Ok(Self {
            min_capacity,
            total_capacity,
            free_capacity,
            pos_factors,
            neg_factors,
            tokens_per_wei,
            connected_bias_secs,
            receivers,
            channel,
        })
    }
}

encode_as_list!(PriceList, |this| [
    &this.min_capacity,
    &this.total_capacity,
    &this.free_capacity,
    &this.pos_factors,
    &this.neg_factors,
    &this.tokens_per_wei,
    &this.connected_bias_secs,
    &StringList(&this.receivers),
    &OptionalTerms(&this.channel),
]);

/// A signed amount or an infinity (geth vflux's `IntOrInf`): `[type, value]` with type 0 =
/// +value, 1 = -value, 2 = +infinity, 3 = -infinity (value 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOrInf {
    /// +value.
    Pos(U256),
    /// -value.
    Neg(U256),
    /// +infinity.
    PosInf,
    /// -infinity.
    NegInf,
}

impl IntOrInf {
    /// The value clamped to i64, infinities to the extremes (how vflux uses it).
    pub fn clamp_i64(&self) -> i64 {
        match *self {
            IntOrInf::Pos(v) => i64::try_from(v).unwrap_or(i64::MAX),
            IntOrInf::Neg(v) => {
                if v >= U256::from(i64::MAX as u64 + 1) {
                    i64::MIN
                } else {
                    // v < 2^63 here, so it fits and its negation does too.
                    -i64::try_from(v).unwrap_or(i64::MAX)
                }
            }
            IntOrInf::PosInf => i64::MAX,
            IntOrInf::NegInf => i64::MIN,
        }
    }

    /// A finite value.
    pub fn from_i64(value: i64) -> Self {
        if value < 0 {
            IntOrInf::Neg(U256::from(value.unsigned_abs()))
        } else {
            IntOrInf::Pos(U256::from(value.unsigned_abs()))
        }
    }

    fn parts(&self) -> (u8, U256) {
        match *self {
            IntOrInf::Pos(v) => (0, v),
            IntOrInf::Neg(v) => (1, v),
            IntOrInf::PosInf => (2, U256::ZERO),
            IntOrInf::NegInf => (3, U256::ZERO),
        }
    }

    fn read(mut fields: Fields<'_>) -> Result<Self, LespayError> {
        let kind: u8 = fields.value("IntOrInf type")?;
        let value: U256 = fields.value("IntOrInf value")?;
        fields.finish()?;
        match kind {
            0 => Ok(IntOrInf::Pos(value)),
            1 => Ok(IntOrInf::Neg(value)),
            2 | 3 if !value.is_zero() => Err(LespayError::InfinityWithValue),
            2 => Ok(IntOrInf::PosInf),
            3 => Ok(IntOrInf::NegInf),
            other => {
                Err(LespayError::UnknownValue { context: "IntOrInf type", value: u64::from(other) })
            }
        }
    }
}

impl Encodable for IntOrInf {
    fn encode(&self, out: &mut dyn BufMut) {
        let (kind, value) = self.parts();
        ListOf(&[&kind, &value]).encode(out)
    }

    fn length(&self) -> usize {
        let (kind, value) = self.parts();
        ListOf(&[&kind, &value]).length()
    }
}

impl PriorityClass {
    fn from_u8(value: u8) -> Result<Self, LespayError> {
        match value {
            0 => Ok(PriorityClass::Free),
            1 => Ok(PriorityClass::Paid),
            other => Err(LespayError::UnknownValue {
                context: "Balance priority_class",
                value: u64::from(other),
            }),
        }
    }
}

/// A client's standing at the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    /// Positive balance, in tokens.
    pub pos: u64,
    /// Negative balance (debt from free use), in tokens.
    pub neg: u64,
    /// Capacity held now (0 = not in the active set).
    pub capacity: u64,
    /// Paid or free.
    pub priority_class: PriorityClass,
}

impl Balance {
    fn read(mut fields: Fields<'_>) -> Result<Self, LespayError> {
        let pos = fields.value("Balance pos")?;
        let neg = fields.value("Balance neg")?;
        let capacity = fields.value("Balance capacity")?;
        let class: u8 = fields.value("Balance priority_class")?;
        fields.finish()?;
        Ok(Self { pos, neg, capacity, priority_class: PriorityClass::from_u8(class)? })
    }
}

encode_as_list!(Balance, |this| [
    &this.pos,
    &this.neg,
    &this.capacity,
    &(this.priority_class as u8),
]);

/// The code of an Error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Pay named a receiver the server does not offer.
    UnknownReceiver = 1,
    /// The payment proof is malformed.
    BadProof = 2,
    /// The payment failed verification; the reason says which check.
    Rejected = 3,
    /// A capacity request from a client without a positive balance.
    NotPriority = 4,
    /// The server is not synced and cannot sell service.
    NotSynced = 5,
    /// The client sends lespay requests too fast.
    TooManyRequests = 6,
    /// The server failed internally (e.g. storage); nothing was changed.
    Internal = 7,
}

impl ErrorCode {
    fn from_u8(value: u8) -> Result<Self, LespayError> {
        Ok(match value {
            1 => ErrorCode::UnknownReceiver,
            2 => ErrorCode::BadProof,
            3 => ErrorCode::Rejected,
            4 => ErrorCode::NotPriority,
            5 => ErrorCode::NotSynced,
            6 => ErrorCode::TooManyRequests,
            7 => ErrorCode::Internal,
            other => {
                return Err(LespayError::UnknownValue {
                    context: "Error code",
                    value: u64::from(other),
                });
            }
        })
    }
}

/// The proof of a Pay to receiver `"channel"`: a cheque without its payee (the server
/// knows its own address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelProof {
    /// The channel.
    pub channel_id: B256,
    /// Total wei promised so far.
    pub cumulative: U256,
    /// The payer's EIP-712 signature over the cheque.
    pub signature: ChequeSignature,
}

impl ChannelProof {
    /// The `proof` bytes of a Pay.
    pub fn encode(&self) -> Bytes {
        alloy_rlp::encode(ListOf(&[&self.channel_id, &self.cumulative, &self.signature])).into()
    }

    /// Decodes the `proof` bytes of a Pay (strictly, as the messages).
    pub fn decode(proof: &[u8]) -> Result<Self, LespayError> {
        if proof.len() > MAX_PAYLOAD_SIZE {
            return Err(LespayError::TooLarge { size: proof.len() });
        }
        let mut fields = Fields::top(proof, "ChannelProof")?;
        let channel_id = fields.value("ChannelProof channel_id")?;
        let cumulative = fields.value("ChannelProof cumulative")?;
        let signature = fields.value("ChannelProof signature")?;
        fields.finish()?;
        Ok(Self { channel_id, cumulative, signature })
    }

    /// The cheque this proof signs, for a server whose address is `payee`.
    pub fn cheque(&self, payee: Address) -> Cheque {
        Cheque { channel_id: self.channel_id, payee, cumulative: self.cumulative }
    }
}

/// The receipt of a PayReply for receiver `"channel"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelReceipt {
    /// The highest cumulative amount the server has accepted for the channel.
    pub accepted_cumulative: U256,
}

impl ChannelReceipt {
    /// The `receipt` bytes of a PayReply.
    pub fn encode(&self) -> Bytes {
        alloy_rlp::encode(ListOf(&[&self.accepted_cumulative])).into()
    }

    /// Decodes the `receipt` bytes of a PayReply.
    pub fn decode(receipt: &[u8]) -> Result<Self, LespayError> {
        if receipt.len() > MAX_PAYLOAD_SIZE {
            return Err(LespayError::TooLarge { size: receipt.len() });
        }
        let mut fields = Fields::top(receipt, "ChannelReceipt")?;
        let accepted_cumulative = fields.value("ChannelReceipt accepted_cumulative")?;
        fields.finish()?;
        Ok(Self { accepted_cumulative })
    }
}

/// Any `lespay/1` message. Requests carry a `req_id` the reply echoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LespayMessage {
    /// 0x00: ask for the [`PriceList`].
    PriceQuery {
        /// Request ID.
        req_id: u64,
    },
    /// 0x01: the server's prices.
    PriceReply {
        /// Request ID.
        req_id: u64,
        /// The prices (boxed: by far the largest body).
        prices: Box<PriceList>,
    },
    /// 0x02: for each amount added to the balance, the largest capacity it would buy.
    CapacityQuery {
        /// Request ID.
        req_id: u64,
        /// Connection time the client wants to be able to pay for after getting the capacity
        /// (the server uses at least its own connected bias).
        bias_secs: u64,
        /// Token amounts to add (may be negative), 1..=16.
        add_tokens: Vec<IntOrInf>,
    },
    /// 0x03: one capacity per queried amount; 0 = cannot connect.
    CapacityReply {
        /// Request ID.
        req_id: u64,
        /// Capacities, in query order.
        capacities: Vec<u64>,
    },
    /// 0x04: a payment to one of the server's receivers.
    Pay {
        /// Request ID.
        req_id: u64,
        /// Receiver name, e.g. [`RECEIVER_CHANNEL`].
        receiver: String,
        /// Receiver-specific proof ([`ChannelProof`] for `"channel"`).
        proof: Bytes,
    },
    /// 0x05: the payment was accepted.
    PayReply {
        /// Request ID.
        req_id: u64,
        /// Tokens credited by this payment (0 for a duplicate).
        credited: u64,
        /// Positive balance after it.
        balance: u64,
        /// Receiver-specific receipt ([`ChannelReceipt`] for `"channel"`).
        receipt: Bytes,
    },
    /// 0x06: ask for the client's [`Balance`].
    BalanceQuery {
        /// Request ID.
        req_id: u64,
    },
    /// 0x07: the client's balance.
    BalanceReply {
        /// Request ID.
        req_id: u64,
        /// The balance.
        balance: Balance,
    },
    /// 0x08: ask for a capacity (0 = give up priority capacity, go back to the minimum).
    CapacityRequest {
        /// Request ID.
        req_id: u64,
        /// The capacity wanted.
        capacity: u64,
    },
    /// 0x09: the capacity now held after a CapacityRequest.
    CapacityGranted {
        /// Request ID.
        req_id: u64,
        /// Capacity now held.
        capacity: u64,
        /// The balance after the change.
        balance: Balance,
    },
    /// 0x0a: server push whenever the pool changes the client's capacity or class, or
    /// before it disconnects the client.
    CapacityUpdate {
        /// Capacity now held (0 = about to be disconnected or inactive).
        capacity: u64,
        /// The balance.
        balance: Balance,
    },
    /// 0x0b: a request failed.
    Error {
        /// Request ID.
        req_id: u64,
        /// What kind of failure.
        code: ErrorCode,
        /// Human-readable detail, at most [`MAX_REASON_LEN`] bytes.
        reason: String,
    },
}

impl LespayMessage {
    /// An Error reply, its reason cut to [`MAX_REASON_LEN`] bytes at a character boundary.
    pub fn error(req_id: u64, code: ErrorCode, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.len() > MAX_REASON_LEN {
            let mut end = MAX_REASON_LEN;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        LespayMessage::Error { req_id, code, reason }
    }

    /// The message code.
    pub fn code(&self) -> u64 {
        match self {
            LespayMessage::PriceQuery { .. } => codes::PRICE_QUERY,
            LespayMessage::PriceReply { .. } => codes::PRICE_REPLY,
            LespayMessage::CapacityQuery { .. } => codes::CAPACITY_QUERY,
            LespayMessage::CapacityReply { .. } => codes::CAPACITY_REPLY,
            LespayMessage::Pay { .. } => codes::PAY,
            LespayMessage::PayReply { .. } => codes::PAY_REPLY,
            LespayMessage::BalanceQuery { .. } => codes::BALANCE_QUERY,
            LespayMessage::BalanceReply { .. } => codes::BALANCE_REPLY,
            LespayMessage::CapacityRequest { .. } => codes::CAPACITY_REQUEST,
            LespayMessage::CapacityGranted { .. } => codes::CAPACITY_GRANTED,
            LespayMessage::CapacityUpdate { .. } => codes::CAPACITY_UPDATE,
            LespayMessage::Error { .. } => codes::ERROR,
        }
    }

    /// The request ID; `None` only for the unsolicited CapacityUpdate.
    pub fn req_id(&self) -> Option<u64> {
        match *self {
            LespayMessage::PriceQuery { req_id }
            | LespayMessage::PriceReply { req_id, .. }
            | LespayMessage::CapacityQuery { req_id, .. }
            | LespayMessage::CapacityReply { req_id, .. }
            | LespayMessage::Pay { req_id, .. }
            | LespayMessage::PayReply { req_id, .. }
            | LespayMessage::BalanceQuery { req_id }
            | LespayMessage::BalanceReply { req_id, .. }
            | LespayMessage::CapacityRequest { req_id, .. }
            | LespayMessage::CapacityGranted { req_id, .. }
            | LespayMessage::Error { req_id, .. } => Some(req_id),
            LespayMessage::CapacityUpdate { .. } => None,
        }
    }

    /// The code and payload to send. The encoder does not police the limits; a message
    /// built outside them (17 amounts, a 300-byte reason) is refused by the receiver.
    pub fn encode(&self) -> (u64, Vec<u8>) {
        let payload = match self {
            LespayMessage::PriceQuery { req_id } | LespayMessage::BalanceQuery { req_id } => {
                alloy_rlp::encode(ListOf(&[req_id]))
            }
            LespayMessage::PriceReply { req_id, prices } => {
                alloy_rlp::encode(ListOf(&[req_id, prices.as_ref()]))
            }
            LespayMessage::CapacityQuery { req_id, bias_secs, add_tokens } => {
                alloy_rlp::encode(ListOf(&[req_id, bias_secs, add_tokens]))
            }
            LespayMessage::CapacityReply { req_id, capacities } => {
                alloy_rlp::encode(ListOf(&[req_id, capacities]))
            }
            LespayMessage::Pay { req_id, receiver, proof } => {
                alloy_rlp::encode(ListOf(&[req_id, &receiver.as_str(), proof]))
            }
            LespayMessage::PayReply { req_id, credited, balance, receipt } => {
                alloy_rlp::encode(ListOf(&[req_id, credited, balance, receipt]))
            }
            LespayMessage::BalanceReply { req_id, balance } => {
                alloy_rlp::encode(ListOf(&[req_id, balance]))
            }
            LespayMessage::CapacityRequest { req_id, capacity } => {
                alloy_rlp::encode(ListOf(&[req_id, capacity]))
            }
            LespayMessage::CapacityGranted { req_id, capacity, balance } => {
                alloy_rlp::encode(ListOf(&[req_id, capacity, balance]))
            }
            LespayMessage::CapacityUpdate { capacity, balance } => {
                alloy_rlp::encode(ListOf(&[capacity, balance]))
            }
            LespayMessage::Error { req_id, code, reason } => {
                alloy_rlp::encode(ListOf(&[req_id, &(*code as u8), &reason.as_str()]))
            }
        };
        (self.code(), payload)
    }

    /// Decodes message `code`'s payload. Refuses payloads over [`MAX_PAYLOAD_SIZE`] before
    /// parsing, unknown codes, and anything that is not exactly the message's shape.
    pub fn decode(code: u64, payload: &[u8]) -> Result<Self, LespayError> {
        if payload.len() > MAX_PAYLOAD_SIZE {
            return Err(LespayError::TooLarge { size: payload.len() });
        }
        let message = match code {
            codes::PRICE_QUERY => {
                let mut f = Fields::top(payload, "PriceQuery")?;
                let req_id = f.value("PriceQuery req_id")?;
                f.finish()?;
                LespayMessage::PriceQuery { req_id }
            }
            codes::PRICE_REPLY => {
                let mut f = Fields::top(payload, "PriceReply")?;
                let req_id = f.value("PriceReply req_id")?;
                let prices = Box::new(PriceList::read(f.list("PriceReply prices")?)?);
                f.finish()?;
                LespayMessage::PriceReply { req_id, prices }
            }
            codes::CAPACITY_QUERY => {
                let mut f = Fields::top(payload, "CapacityQuery")?;
                let req_id = f.value("CapacityQuery req_id")?;
                let bias_secs = f.value("CapacityQuery bias_secs")?;
                let mut list = f.list("CapacityQuery add_tokens")?;
                f.finish()?;
                let mut add_tokens = Vec::new();
                while !list.is_empty() {
                    if add_tokens.len() == MAX_ADD_TOKENS {
                        return Err(LespayError::AddTokensCount {
                            found: MAX_ADD_TOKENS + count_items(list)?,
                        });
                    }
                    add_tokens.push(IntOrInf::read(list.list("CapacityQuery add_tokens entry")?)?);
                }
                if add_tokens.is_empty() {
                    return Err(LespayError::AddTokensCount { found: 0 });
                }
                LespayMessage::CapacityQuery { req_id, bias_secs, add_tokens }
            }
            codes::CAPACITY_REPLY => {
                let mut f = Fields::top(payload, "CapacityReply")?;
                let req_id = f.value("CapacityReply req_id")?;
                let mut list = f.list("CapacityReply capacities")?;
                f.finish()?;
                let mut capacities = Vec::new();
                while !list.is_empty() {
                    if capacities.len() == MAX_ADD_TOKENS {
                        return Err(LespayError::CapacitiesCount {
                            found: MAX_ADD_TOKENS + count_items(list)?,
                        });
                    }
                    capacities.push(list.value("CapacityReply capacity")?);
                }
                if capacities.is_empty() {
                    return Err(LespayError::CapacitiesCount { found: 0 });
                }
                LespayMessage::CapacityReply { req_id, capacities }
            }
            codes::PAY => {
                let mut f = Fields::top(payload, "Pay")?;
                let req_id = f.value("Pay req_id")?;
                let receiver = f.string("Pay receiver")?;
                let proof = Bytes::copy_from_slice(f.bytes("Pay proof")?);
                f.finish()?;
                LespayMessage::Pay { req_id, receiver, proof }
            }
            codes::PAY_REPLY => {
                let mut f = Fields::top(payload, "PayReply")?;
                let req_id = f.value("PayReply req_id")?;
                let credited = f.value("PayReply credited")?;
                let balance = f.value("PayReply balance")?;
                let receipt = Bytes::copy_from_slice(f.bytes("PayReply receipt")?);
                f.finish()?;
                LespayMessage::PayReply { req_id, credited, balance, receipt }
            }
            codes::BALANCE_QUERY => {
                let mut f = Fields::top(payload, "BalanceQuery")?;
                let req_id = f.value("BalanceQuery req_id")?;
                f.finish()?;
                LespayMessage::BalanceQuery { req_id }
            }
            codes::BALANCE_REPLY => {
                let mut f = Fields::top(payload, "BalanceReply")?;
                let req_id = f.value("BalanceReply req_id")?;
                let balance = Balance::read(f.list("BalanceReply balance")?)?;
                f.finish()?;
                LespayMessage::BalanceReply { req_id, balance }
            }
            codes::CAPACITY_REQUEST => {
                let mut f = Fields::top(payload, "CapacityRequest")?;
                let req_id = f.value("CapacityRequest req_id")?;
                let capacity = f.value("CapacityRequest capacity")?;
                f.finish()?;
                LespayMessage::CapacityRequest { req_id, capacity }
            }
            codes::CAPACITY_GRANTED => {
                let mut f = Fields::top(payload, "CapacityGranted")?;
                let req_id = f.value("CapacityGranted req_id")?;
                let capacity = f.value("CapacityGranted capacity")?;
                let balance = Balance::read(f.list("CapacityGranted balance")?)?;
                f.finish()?;
                LespayMessage::CapacityGranted { req_id, capacity, balance }
            }
            codes::CAPACITY_UPDATE => {
                let mut f = Fields::top(payload, "CapacityUpdate")?;
                let capacity = f.value("CapacityUpdate capacity")?;
                let balance = Balance::read(f.list("CapacityUpdate balance")?)?;
                f.finish()?;
                LespayMessage::CapacityUpdate { capacity, balance }
            }
            codes::ERROR => {
                let mut f = Fields::top(payload, "Error")?;
                let req_id = f.value("Error req_id")?;
                let code: u8 = f.value("Error code")?;
                let reason_bytes = f.bytes("Error reason")?;
                f.finish()?;
                if reason_bytes.len() > MAX_REASON_LEN {
                    return Err(LespayError::ReasonTooLong { len: reason_bytes.len() });
                }
                let reason = String::from_utf8(reason_bytes.to_vec())
                    .map_err(|_| LespayError::InvalidUtf8 { context: "Error reason" })?;
                LespayMessage::Error { req_id, code: ErrorCode::from_u8(code)?, reason }
            }
            _ => return Err(LespayError::UnknownCode { code }),
        };
        Ok(message)
    }
}

/// Counts the remaining elements of a list (checking each header), for an error report.
fn count_items(mut list: Fields<'_>) -> Result<usize, LespayError> {
    let mut found = 0usize;
    let context = list.context;
    while !list.is_empty() {
        let header = Header::decode(&mut list.rest).map_err(rlp(context))?;
        let (_, rest) = list
            .rest
            .split_at_checked(header.payload_length)
            .ok_or(LespayError::Rlp { context, source: alloy_rlp::Error::InputTooShort })?;
        list.rest = rest;
        found += 1;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::NodeKey;
    use alloy_primitives::{address, b256, hex};
    use proptest::prelude::*;

    fn balance() -> Balance {
        Balance { pos: 5_000_000, neg: 12, capacity: 16_000, priority_class: PriorityClass::Paid }
    }

    fn prices(channel: bool) -> PriceList {
        PriceList {
            min_capacity: 16_000,
            total_capacity: 1_600_000,
            free_capacity: 800_000,
            pos_factors: PriceFactors { time: 0, capacity: 1_000_000_000, request: 1_000_000 },
            neg_factors: PriceFactors { time: 7, capacity: 500_000_000, request: 2_000_000 },
            tokens_per_wei: ExchangeRate { num: 3, den: 1_000_000_007 },
            connected_bias_secs: 180,
            receivers: if channel { vec![RECEIVER_CHANNEL.into()] } else { vec![] },
            channel: channel.then(|| ChannelTerms {
                chain_id: 31337,
                contract: address!("5FbDB2315678afecb367f032d93F642f64180aa3"),
                payee: address!("70997970C51812dc3A010C7d01b50e0d17dc79C8"),
                accept_margin_secs: 86_400,
                min_deposit: U256::from(10u64).pow(U256::from(16)),
            }),
        }
    }

    fn proof() -> ChannelProof {
        let key = NodeKey::from_bytes(&[9; 32]).unwrap();
        let terms = prices(true).channel.unwrap();
        let channel_id = b256!("abababababababababababababababababababababababababababababababab");
        let cumulative = U256::from(123_456_789u64);
        let cheque = Cheque { channel_id, payee: terms.payee, cumulative };
        ChannelProof { channel_id, cumulative, signature: cheque.sign(&key, &terms.domain()) }
    }

    fn every_message() -> Vec<LespayMessage> {
        vec![
            LespayMessage::PriceQuery { req_id: 1 },
            LespayMessage::PriceReply { req_id: 2, prices: Box::new(prices(true)) },
            LespayMessage::PriceReply { req_id: 3, prices: Box::new(prices(false)) },
            LespayMessage::CapacityQuery {
                req_id: 4,
                bias_secs: 180,
                add_tokens: vec![
                    IntOrInf::Pos(U256::ZERO),
                    IntOrInf::Pos(U256::from(1u64) << 200),
                    IntOrInf::Neg(U256::from(5u64)),
                    IntOrInf::PosInf,
                    IntOrInf::NegInf,
                ],
            },
            LespayMessage::CapacityReply { req_id: 5, capacities: vec![0, 16_000, u64::MAX] },
            LespayMessage::Pay {
                req_id: 6,
                receiver: RECEIVER_CHANNEL.into(),
                proof: proof().encode(),
            },
            LespayMessage::PayReply {
                req_id: 7,
                credited: 370,
                balance: 9_000,
                receipt: ChannelReceipt { accepted_cumulative: U256::from(123_456_789u64) }
                    .encode(),
            },
            LespayMessage::BalanceQuery { req_id: 8 },
            LespayMessage::BalanceReply { req_id: 9, balance: balance() },
            LespayMessage::CapacityRequest { req_id: 10, capacity: 64_000 },
            LespayMessage::CapacityGranted { req_id: 11, capacity: 64_000, balance: balance() },
            LespayMessage::CapacityUpdate {
                capacity: 0,
                balance: Balance { priority_class: PriorityClass::Free, ..balance() },
            },
            LespayMessage::error(u64::MAX, ErrorCode::Rejected, "channel bound to another client"),
        ]
    }

    #[test]
    fn capability_is_lespay_1_with_12_codes() {
        let spec = capability();
        assert_eq!((spec.name.as_str(), spec.version, spec.message_count), ("lespay", 1, 12));
        assert!(spec.capability().validate().is_ok());
        // Every code below the count decodes to something or a shape error, none above.
        assert_eq!(
            LespayMessage::decode(MESSAGE_COUNT, &hex!("c101")),
            Err(LespayError::UnknownCode { code: MESSAGE_COUNT })
        );
    }

    #[test]
    fn every_message_round_trips_and_codes_are_distinct() {
        let messages = every_message();
        let mut seen = std::collections::BTreeSet::new();
        for message in &messages {
            let (code, payload) = message.encode();
            assert_eq!(code, message.code());
            assert!(code < MESSAGE_COUNT);
            seen.insert(code);
            assert!(payload.len() <= MAX_PAYLOAD_SIZE);
            assert_eq!(LespayMessage::decode(code, &payload).as_ref(), Ok(message), "{message:?}");
        }
        assert_eq!(seen.len() as u64, MESSAGE_COUNT, "one test message per code");
    }

    #[test]
    fn known_encodings() {
        // [req_id 1]
        assert_eq!(LespayMessage::PriceQuery { req_id: 1 }.encode(), (0, hex!("c101").to_vec()));
        // [0, 0, [[2, 0]]]: query with +infinity (value encoded as the empty string).
        let q = LespayMessage::CapacityQuery {
            req_id: 0,
            bias_secs: 0,
            add_tokens: vec![IntOrInf::PosInf],
        };
        assert_eq!(q.encode(), (2, hex!("c68080c3c20280").to_vec()));
        // [7, 3, "no"]
        let e = LespayMessage::error(7, ErrorCode::Rejected, "no");
        assert_eq!(e.encode(), (0x0b, hex!("c50703826e6f").to_vec()));
        // Balance class goes as a single byte; the empty channel terms as c0.
        let (_, reply) =
            LespayMessage::PriceReply { req_id: 0, prices: Box::new(prices(false)) }.encode();
        assert_eq!(&reply[reply.len() - 2..], &hex!("c0c0"));
    }

    #[test]
    fn proof_and_receipt_round_trip_and_the_proof_verifies() {
        let p = proof();
        assert_eq!(ChannelProof::decode(&p.encode()), Ok(p.clone()));
        let terms = prices(true).channel.unwrap();
        let payer = crate::pay::cheque::key_address(&NodeKey::from_bytes(&[9; 32]).unwrap());
        assert_eq!(p.cheque(terms.payee).recover(&terms.domain(), &p.signature), Ok(payer));
        let r = ChannelReceipt { accepted_cumulative: U256::MAX };
        assert_eq!(ChannelReceipt::decode(&r.encode()), Ok(r));
        // A 64-byte signature, a trailing field, trailing bytes.
        let short = alloy_rlp::encode(ListOf(&[&p.channel_id, &p.cumulative, &[0u8; 64]]));
        assert!(matches!(
            ChannelProof::decode(&short),
            Err(LespayError::Rlp { context: "ChannelProof signature", .. })
        ));
        let long = alloy_rlp::encode(ListOf(&[&p.channel_id, &p.cumulative, &p.signature, &1u8]));
        assert!(matches!(ChannelProof::decode(&long), Err(LespayError::TrailingBytes { .. })));
        let mut trailing = r.encode().to_vec();
        trailing.push(0);
        assert_eq!(
            ChannelReceipt::decode(&trailing),
            Err(LespayError::TrailingBytes { context: "ChannelReceipt", extra: 1 })
        );
    }

    #[test]
    fn oversize_payloads_are_refused_before_decoding() {
        // 4097 bytes of garbage: the size check fires, not an RLP error.
        let big = vec![0xffu8; MAX_PAYLOAD_SIZE + 1];
        for code in 0..MESSAGE_COUNT + 1 {
            assert_eq!(
                LespayMessage::decode(code, &big),
                Err(LespayError::TooLarge { size: MAX_PAYLOAD_SIZE + 1 })
            );
        }
        assert_eq!(ChannelProof::decode(&big), Err(LespayError::TooLarge { size: 4097 }));
        // Exactly at the limit is fine for size (then refused for its shape if wrong).
        let reason = "x".repeat(10);
        let (_, mut ok) = LespayMessage::error(1, ErrorCode::Internal, reason).encode();
        assert!(LespayMessage::decode(codes::ERROR, &ok).is_ok());
        ok.resize(MAX_PAYLOAD_SIZE, 0);
        assert!(matches!(
            LespayMessage::decode(codes::ERROR, &ok),
            Err(LespayError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn unknown_codes_are_refused() {
        for code in [12u64, 0x10, u64::MAX] {
            assert_eq!(
                LespayMessage::decode(code, &hex!("c101")),
                Err(LespayError::UnknownCode { code })
            );
        }
    }

    #[test]
    fn trailing_bytes_and_extra_fields_are_refused() {
        assert_eq!(
            LespayMessage::decode(codes::PRICE_QUERY, &hex!("c10100")),
            Err(LespayError::TrailingBytes { context: "PriceQuery", extra: 1 })
        );
        assert_eq!(
            LespayMessage::decode(codes::PRICE_QUERY, &hex!("c20101")),
            Err(LespayError::TrailingBytes { context: "PriceQuery", extra: 1 })
        );
        // A missing field, a non-canonical integer, a string instead of a list.
        assert!(matches!(
            LespayMessage::decode(codes::CAPACITY_REQUEST, &hex!("c101")),
            Err(LespayError::Rlp { context: "CapacityRequest capacity", .. })
        ));
        assert!(matches!(
            LespayMessage::decode(codes::CAPACITY_REQUEST, &hex!("c401820001")),
            Err(LespayError::Rlp { context: "CapacityRequest capacity", .. })
        ));
        assert!(matches!(
            LespayMessage::decode(codes::PRICE_QUERY, &hex!("01")),
            Err(LespayError::Rlp { context: "PriceQuery", .. })
        ));
        // Extra element in a nested list (Balance with five fields).
        let bad = alloy_rlp::encode(ListOf(&[&1u64, &ListOf(&[&1u64, &2u64, &3u64, &1u8, &9u8])]));
        assert_eq!(
            LespayMessage::decode(codes::BALANCE_REPLY, &bad),
            Err(LespayError::TrailingBytes { context: "BalanceReply balance", extra: 1 })
        );
    }

    #[test]
    fn add_tokens_must_hold_1_to_16_amounts() {
        let query = |n: usize| {
            LespayMessage::CapacityQuery {
                req_id: 1,
                bias_secs: 0,
                add_tokens: vec![IntOrInf::Pos(U256::from(1u64)); n],
            }
            .encode()
            .1
        };
        assert_eq!(
            LespayMessage::decode(codes::CAPACITY_QUERY, &query(0)),
            Err(LespayError::AddTokensCount { found: 0 })
        );
        assert_eq!(
            LespayMessage::decode(codes::CAPACITY_QUERY, &query(17)),
            Err(LespayError::AddTokensCount { found: 17 })
        );
        assert!(LespayMessage::decode(codes::CAPACITY_QUERY, &query(16)).is_ok());
        assert!(LespayMessage::decode(codes::CAPACITY_QUERY, &query(1)).is_ok());
        let reply = |n: usize| {
            LespayMessage::CapacityReply { req_id: 1, capacities: vec![7; n] }.encode().1
        };
        assert_eq!(
            LespayMessage::decode(codes::CAPACITY_REPLY, &reply(0)),
            Err(LespayError::CapacitiesCount { found: 0 })
        );
        assert_eq!(
            LespayMessage::decode(codes::CAPACITY_REPLY, &reply(20)),
            Err(LespayError::CapacitiesCount { found: 20 })
        );
    }

    #[test]
    fn reason_longer_than_256_bytes_is_refused_and_the_constructor_cuts() {
        let raw = |reason: &str| alloy_rlp::encode(ListOf(&[&1u64, &3u8, &reason]));
        assert!(LespayMessage::decode(codes::ERROR, &raw(&"a".repeat(256))).is_ok());
        assert_eq!(
            LespayMessage::decode(codes::ERROR, &raw(&"a".repeat(257))),
            Err(LespayError::ReasonTooLong { len: 257 })
        );
        // 200 two-byte characters: cut to 128 of them (256 bytes), never mid-character.
        let LespayMessage::Error { reason, .. } =
            LespayMessage::error(1, ErrorCode::Internal, "é".repeat(200))
        else {
            unreachable!()
        };
        assert_eq!(reason, "é".repeat(128));
        let bad_utf8 = alloy_rlp::encode(ListOf(&[&1u64, &3u8, &&[0xffu8, 0xfe][..]]));
        assert_eq!(
            LespayMessage::decode(codes::ERROR, &bad_utf8),
            Err(LespayError::InvalidUtf8 { context: "Error reason" })
        );
    }

    #[test]
    fn closed_value_sets() {
        let error = |code: u8| alloy_rlp::encode(ListOf(&[&1u64, &code, &"x"]));
        for code in [0u8, 8, 255] {
            assert_eq!(
                LespayMessage::decode(codes::ERROR, &error(code)),
                Err(LespayError::UnknownValue { context: "Error code", value: u64::from(code) })
            );
        }
        let class = alloy_rlp::encode(ListOf(&[&1u64, &ListOf(&[&1u64, &2u64, &3u64, &2u8])]));
        assert_eq!(
            LespayMessage::decode(codes::BALANCE_REPLY, &class),
            Err(LespayError::UnknownValue { context: "Balance priority_class", value: 2 })
        );
        let query = |kind: u8, value: u64| {
            alloy_rlp::encode(ListOf(&[
                &1u64,
                &0u64,
                &ListOf(&[&ListOf(&[&kind, &U256::from(value)])]),
            ]))
        };
        assert_eq!(
            LespayMessage::decode(codes::CAPACITY_QUERY, &query(4, 0)),
            Err(LespayError::UnknownValue { context: "IntOrInf type", value: 4 })
        );
        assert_eq!(
            LespayMessage::decode(codes::CAPACITY_QUERY, &query(2, 1)),
            Err(LespayError::InfinityWithValue)
        );
    }

    #[test]
    fn int_or_inf_clamps_like_vflux() {
        assert_eq!(IntOrInf::Pos(U256::from(5u64)).clamp_i64(), 5);
        assert_eq!(IntOrInf::Neg(U256::from(5u64)).clamp_i64(), -5);
        assert_eq!(IntOrInf::Pos(U256::MAX).clamp_i64(), i64::MAX);
        assert_eq!(IntOrInf::Neg(U256::MAX).clamp_i64(), i64::MIN);
        assert_eq!(IntOrInf::Neg(U256::from(1u64 << 63)).clamp_i64(), i64::MIN);
        assert_eq!(IntOrInf::Neg(U256::from((1u64 << 63) - 1)).clamp_i64(), -i64::MAX);
        assert_eq!(
            (IntOrInf::PosInf.clamp_i64(), IntOrInf::NegInf.clamp_i64()),
            (i64::MAX, i64::MIN)
        );
        for v in [0i64, 1, -1, i64::MAX, i64::MIN] {
            assert_eq!(IntOrInf::from_i64(v).clamp_i64(), v);
        }
    }

    #[test]
    fn exchange_rate_is_exact_and_does_not_accumulate_rounding() {
        let rate = ExchangeRate { num: 3, den: 7 };
        assert_eq!(rate.tokens(U256::from(10u64)), Some(U256::from(4u64)));
        assert_eq!(rate.credit(U256::from(10u64), U256::from(9u64)), None);
        assert_eq!(ExchangeRate { num: 1, den: 0 }.tokens(U256::from(1u64)), None);
        // Large values: exact against a 512-bit computation.
        let wei = U256::MAX / U256::from(5u64);
        let big = ExchangeRate { num: u64::MAX, den: u64::MAX - 1 };
        let exact = alloy_primitives::U512::from(wei) * alloy_primitives::U512::from(big.num)
            / alloy_primitives::U512::from(big.den);
        assert_eq!(big.tokens(wei).map(alloy_primitives::U512::from), Some(exact));
        assert_eq!(big.tokens(U256::MAX), None, "overflow is reported, not wrapped");
        // Any split of a payment into cheques credits floor(final * R) in total.
        let mut last = U256::ZERO;
        let mut total = U256::ZERO;
        for step in [1u64, 1, 5, 2, 13, 1, 100, 3] {
            let next = last + U256::from(step);
            total += rate.credit(last, next).unwrap();
            last = next;
        }
        assert_eq!(total, rate.tokens(last).unwrap());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(code in 0u64..14, bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = LespayMessage::decode(code, &bytes);
            let _ = ChannelProof::decode(&bytes);
            let _ = ChannelReceipt::decode(&bytes);
        }

        #[test]
        fn decoding_mutated_messages_never_panics_and_valid_ones_reencode(
            index in 0usize..13, flip in any::<(usize, u8)>(), cut in any::<usize>()
        ) {
            let messages = every_message();
            let (code, mut payload) = messages[index % messages.len()].encode();
            let at = flip.0 % payload.len();
            payload[at] ^= flip.1;
            payload.truncate(payload.len() - cut % 3);
            if let Ok(message) = LespayMessage::decode(code, &payload) {
                // Strict decoding means a single accepted encoding.
                prop_assert_eq!(message.encode().1, payload);
            }
        }
    }
}
