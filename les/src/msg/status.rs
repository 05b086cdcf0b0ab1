//! The Status message (code 0x00): the handshake key/value list both sides send first, its
//! typed form, and the checks geth applies to a received Status in each role.

use super::codec::ListReader;
use super::{ForkId, ForkIdError, ForkSchedule, KvList, LesVersion, MsgError, codes};
use alloy_primitives::{B256, U256};
use alloy_rlp::{BufMut, Encodable, RlpDecodable, RlpEncodable};

/// Most bytes a received Status key/value list may account for (geth `allowedUpdateBytes`,
/// sized with [`KvList::accounted_size`]).
pub const MAX_STATUS_KV_BYTES: u64 = 100_000;

/// Status keys. Flow-control keys also appear in Announce parameter updates.
pub mod keys {
    /// Negotiated LES version (P); must equal the version of the connection.
    pub const PROTOCOL_VERSION: &str = "protocolVersion";
    /// Network ID (P); mainnet 1.
    pub const NETWORK_ID: &str = "networkId";
    /// Total difficulty of the sender's head (P, big integer). Clients send 0.
    pub const HEAD_TD: &str = "headTd";
    /// Hash of the sender's head (B_32). Clients send 32 zero bytes.
    pub const HEAD_HASH: &str = "headHash";
    /// Number of the sender's head (P). Clients send 0.
    pub const HEAD_NUMBER: &str = "headNum";
    /// Genesis block hash (B_32).
    pub const GENESIS_HASH: &str = "genesisHash";
    /// EIP-2124 fork ID `[B_4, P]`; mandatory from les/4.
    pub const FORK_ID: &str = "forkID";
    /// Announcement type a client asks for (P): 0 none, 1 simple (default), 2 signed.
    pub const ANNOUNCE_TYPE: &str = "announceType";
    /// Flag: the server serves headers.
    pub const SERVE_HEADERS: &str = "serveHeaders";
    /// Oldest block whose bodies and receipts the server serves (P).
    pub const SERVE_CHAIN_SINCE: &str = "serveChainSince";
    /// les/3+: the server guarantees chain data for only the last N blocks (P).
    pub const SERVE_RECENT_CHAIN: &str = "serveRecentChain";
    /// Oldest block whose state the server proves (P).
    pub const SERVE_STATE_SINCE: &str = "serveStateSince";
    /// les/3+: the server proves state for only the last N blocks (P); 0 = archive.
    pub const SERVE_RECENT_STATE: &str = "serveRecentState";
    /// Flag: the server relays transactions (SendTxV2).
    pub const TX_RELAY: &str = "txRelay";
    /// les/4+, servers: transaction index depth (P): 0 all, 1 none, N >= 2 the last N-1
    /// blocks.
    pub const RECENT_TX_LOOKUP: &str = "recentTxLookup";
    /// Flow control: buffer limit (P).
    pub const FLOW_CONTROL_BL: &str = "flowControl/BL";
    /// Flow control: minimum recharge rate, cost units per millisecond (P).
    pub const FLOW_CONTROL_MRR: &str = "flowControl/MRR";
    /// Flow control: maximum request cost table `[[code, baseCost, reqCost], ...]`.
    pub const FLOW_CONTROL_MRC: &str = "flowControl/MRC";

    /// Every key [`Status`](super::Status) types, in the order geth sends them.
    pub const ALL: [&str; 18] = [
        PROTOCOL_VERSION,
        NETWORK_ID,
        HEAD_TD,
        HEAD_HASH,
        HEAD_NUMBER,
        GENESIS_HASH,
        FORK_ID,
        ANNOUNCE_TYPE,
        SERVE_HEADERS,
        SERVE_CHAIN_SINCE,
        SERVE_RECENT_CHAIN,
        SERVE_STATE_SINCE,
        SERVE_RECENT_STATE,
        TX_RELAY,
        RECENT_TX_LOOKUP,
        FLOW_CONTROL_BL,
        FLOW_CONTROL_MRR,
        FLOW_CONTROL_MRC,
    ];
}

/// Which announcements a client asks a server for (Status `announceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnnounceType {
    /// No Announce messages with a head (parameter updates still come).
    None,
    /// Announcements without signature; the default when the key is absent.
    Simple,
    /// Announcements carrying a `sign` entry.
    Signed,
}

impl AnnounceType {
    /// The value on the wire.
    pub const fn value(self) -> u64 {
        match self {
            AnnounceType::None => 0,
            AnnounceType::Simple => 1,
            AnnounceType::Signed => 2,
        }
    }

    /// The type with this wire value.
    pub const fn from_value(value: u64) -> Option<Self> {
        match value {
            0 => Some(AnnounceType::None),
            1 => Some(AnnounceType::Simple),
            2 => Some(AnnounceType::Signed),
            _ => None,
        }
    }
}

/// One entry of the `flowControl/MRC` table: the cost of a request is at most
/// `base_cost + request_cost * items`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct RequestCost {
    /// LES-relative request code.
    pub code: u64,
    /// Fixed part of the cost.
    pub base_cost: u64,
    /// Cost per requested item.
    pub request_cost: u64,
}

/// Why a Status is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// The key/value list accounts for more than [`MAX_STATUS_KV_BYTES`].
    #[error("key/value list accounts for {size} bytes, more than {MAX_STATUS_KV_BYTES}")]
    TooLarge {
        /// [`KvList::accounted_size`] of the received list.
        size: u64,
    },
    /// A key the receiving role requires is absent.
    #[error("missing key {key}")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// `protocolVersion` differs from the negotiated version.
    #[error("protocol version {received}, negotiated {expected}")]
    ProtocolVersionMismatch {
        /// The negotiated version.
        expected: u64,
        /// The peer's value.
        received: u64,
    },
    /// `networkId` differs from ours.
    #[error("network ID {received}, ours is {expected}")]
    NetworkIdMismatch {
        /// Our network ID.
        expected: u64,
        /// The peer's.
        received: u64,
    },
    /// `genesisHash` differs from ours.
    #[error("genesis {received}, ours is {expected}")]
    GenesisMismatch {
        /// Our genesis hash.
        expected: B256,
        /// The peer's.
        received: B256,
    },
    /// The EIP-2124 filter refused the peer's `forkID`.
    #[error("fork ID rejected: {0}")]
    ForkId(#[from] ForkIdError),
    /// The server is announce-only (lacks `serveChainSince`, `serveStateSince` or `txRelay`)
    /// and not one we trust for announcements, so it is of no use to us.
    #[error("server only announces and is not trusted")]
    UselessPeer,
    /// A server that serves requests lists no cost for this request code.
    #[error("server gives no cost for request code {code:#04x}")]
    MissingRequestCost {
        /// The request code.
        code: u64,
    },
}

/// A Status message, typed.
///
/// Decoding requires the keys both roles require (`protocolVersion`, `networkId`,
/// `genesisHash`), checks the shape of every known key's value and keeps unknown keys in
/// [`other`](Self::other); role-specific requirements are checked by
/// [`validate_from_client`](Self::validate_from_client) and
/// [`validate_from_server`](Self::validate_from_server). Encoding writes the known keys in
/// geth's order, then `other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `protocolVersion`.
    pub protocol_version: u64,
    /// `networkId`.
    pub network_id: u64,
    /// `headTd`.
    pub head_td: Option<U256>,
    /// `headHash`.
    pub head_hash: Option<B256>,
    /// `headNum`.
    pub head_number: Option<u64>,
    /// `genesisHash`.
    pub genesis_hash: B256,
    /// `forkID` (mandatory on les/4).
    pub fork_id: Option<ForkId>,
    /// `announceType` (client).
    pub announce_type: Option<AnnounceType>,
    /// `serveHeaders` present (server).
    pub serve_headers: bool,
    /// `serveChainSince` (server).
    pub serve_chain_since: Option<u64>,
    /// `serveRecentChain` (server, les/3+).
    pub serve_recent_chain: Option<u64>,
    /// `serveStateSince` (server).
    pub serve_state_since: Option<u64>,
    /// `serveRecentState` (server, les/3+).
    pub serve_recent_state: Option<u64>,
    /// `txRelay` present (server).
    pub tx_relay: bool,
    /// `recentTxLookup` (server, mandatory on les/4).
    pub recent_tx_lookup: Option<u64>,
    /// `flowControl/BL` (server).
    pub buffer_limit: Option<u64>,
    /// `flowControl/MRR` (server; its presence marks the sender as a server).
    pub min_recharge: Option<u64>,
    /// `flowControl/MRC` (server).
    pub request_costs: Option<Vec<RequestCost>>,
    /// Every other key, raw, in received order (e.g. geth <= v1.11 `checkpoint/*`).
    pub other: KvList,
}

/// What we check a peer's Status against.
#[derive(Debug, Clone, Copy)]
pub struct LocalStatus<'a> {
    /// The negotiated version.
    pub version: LesVersion,
    /// Our network ID.
    pub network_id: u64,
    /// Our chain's forks and genesis hash.
    pub fork_schedule: &'a ForkSchedule,
    /// Our head block number, for the fork ID.
    pub head_number: u64,
    /// Our head block timestamp, for the fork ID.
    pub head_time: u64,
}

impl LocalStatus<'_> {
    /// Our own fork ID.
    pub fn fork_id(&self) -> ForkId {
        self.fork_schedule.fork_id(self.head_number, self.head_time)
    }

    /// The common part of the Status we send: version, network, the zero head a geth
    /// client sends (geth servers require the keys), genesis, and the fork ID on les/4.
    /// Servers then fill in their head and offers; clients their announce type.
    pub fn status(&self) -> Status {
        let mut status =
            Status::new(self.version, self.network_id, self.fork_schedule.genesis_hash());
        if self.version >= LesVersion::Les4 {
            status.fork_id = Some(self.fork_id());
        }
        status
    }
}

/// What a server learns from a connecting peer's Status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteClient {
    /// A light client, wanting this kind of announcements (`announceType`, default simple).
    LightClient {
        /// The announcements to send it.
        announce_type: AnnounceType,
    },
    /// Another server (its Status has `flowControl/MRR`): geth sends it nothing.
    Server,
}

/// What a client learns from a server's Status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteServer {
    /// The server's head, which geth treats as its first announcement.
    pub head_hash: B256,
    /// The head's number.
    pub head_number: u64,
    /// The head's total difficulty.
    pub head_td: U256,
    /// The server lacks `serveChainSince`, `serveStateSince` or `txRelay`: it only announces.
    pub announce_only: bool,
    /// `flowControl/BL`.
    pub buffer_limit: u64,
    /// `flowControl/MRR`.
    pub min_recharge: u64,
    /// `flowControl/MRC` without codes outside the version's range, one entry per code
    /// (the last given, as geth keeps), in received order.
    pub request_costs: Vec<RequestCost>,
}

impl Status {
    /// A Status with the keys every sender includes: `version`, `network_id`, the zero head
    /// a geth client sends, `genesis_hash`. Everything else is absent.
    pub fn new(version: LesVersion, network_id: u64, genesis_hash: B256) -> Self {
        Self {
            protocol_version: version.number(),
            network_id,
            head_td: Some(U256::ZERO),
            head_hash: Some(B256::ZERO),
            head_number: Some(0),
            genesis_hash,
            fork_id: None,
            announce_type: None,
            serve_headers: false,
            serve_chain_since: None,
            serve_recent_chain: None,
            serve_state_since: None,
            serve_recent_state: None,
            tx_relay: false,
            recent_tx_lookup: None,
            buffer_limit: None,
            min_recharge: None,
            request_costs: None,
            other: KvList::new(),
        }
    }

    /// Decodes a Status payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        Self::from_kv(&KvList::read(ListReader::top_level(payload, "Status")?)?)
    }

    /// Types a received key/value list (see the type's documentation for what is checked).
    pub fn from_kv(list: &KvList) -> Result<Self, MsgError> {
        let size = list.accounted_size();
        if size > MAX_STATUS_KV_BYTES {
            return Err(StatusError::TooLarge { size }.into());
        }
        let required = |key: &'static str| StatusError::MissingKey { key };
        let announce_type = match list.get::<u64>(keys::ANNOUNCE_TYPE)? {
            None => None,
            Some(value) => Some(
                AnnounceType::from_value(value)
                    .ok_or(MsgError::UnknownValue { context: keys::ANNOUNCE_TYPE, value })?,
            ),
        };
        let mut other = KvList::new();
        for (key, value) in list.iter() {
            if !keys::ALL.iter().any(|known| known.as_bytes() == key) {
                other.push_raw(key.to_vec().into(), value.to_vec().into());
            }
        }
        Ok(Self {
            protocol_version: list
                .get(keys::PROTOCOL_VERSION)?
                .ok_or(required(keys::PROTOCOL_VERSION))?,
            network_id: list.get(keys::NETWORK_ID)?.ok_or(required(keys::NETWORK_ID))?,
            head_td: list.get(keys::HEAD_TD)?,
            head_hash: list.get(keys::HEAD_HASH)?,
            head_number: list.get(keys::HEAD_NUMBER)?,
            genesis_hash: list.get(keys::GENESIS_HASH)?.ok_or(required(keys::GENESIS_HASH))?,
            fork_id: list.get(keys::FORK_ID)?,
            announce_type,
            serve_headers: list.contains(keys::SERVE_HEADERS),
            serve_chain_since: list.get(keys::SERVE_CHAIN_SINCE)?,
            serve_recent_chain: list.get(keys::SERVE_RECENT_CHAIN)?,
            serve_state_since: list.get(keys::SERVE_STATE_SINCE)?,
            serve_recent_state: list.get(keys::SERVE_RECENT_STATE)?,
            tx_relay: list.contains(keys::TX_RELAY),
            recent_tx_lookup: list.get(keys::RECENT_TX_LOOKUP)?,
            buffer_limit: list.get(keys::FLOW_CONTROL_BL)?,
            min_recharge: list.get(keys::FLOW_CONTROL_MRR)?,
            request_costs: list.get(keys::FLOW_CONTROL_MRC)?,
            other,
        })
    }

    /// The key/value list this Status encodes to: known keys in geth's order, then
    /// [`other`](Self::other) (whose keys override nothing: a key typed here is never
    /// taken from `other`).
    pub fn to_kv(&self) -> KvList {
        let mut list = KvList::new();
        list.insert(keys::PROTOCOL_VERSION, &self.protocol_version);
        list.insert(keys::NETWORK_ID, &self.network_id);
        if let Some(td) = &self.head_td {
            list.insert(keys::HEAD_TD, td);
        }
        if let Some(hash) = &self.head_hash {
            list.insert(keys::HEAD_HASH, hash);
        }
        if let Some(number) = &self.head_number {
            list.insert(keys::HEAD_NUMBER, number);
        }
        list.insert(keys::GENESIS_HASH, &self.genesis_hash);
        if let Some(fork_id) = &self.fork_id {
            list.insert(keys::FORK_ID, fork_id);
        }
        if let Some(announce_type) = self.announce_type {
            list.insert(keys::ANNOUNCE_TYPE, &announce_type.value());
        }
        if self.serve_headers {
            list.insert_flag(keys::SERVE_HEADERS);
        }
        let optional_numbers = [
            (keys::SERVE_CHAIN_SINCE, self.serve_chain_since),
            (keys::SERVE_RECENT_CHAIN, self.serve_recent_chain),
            (keys::SERVE_STATE_SINCE, self.serve_state_since),
            (keys::SERVE_RECENT_STATE, self.serve_recent_state),
        ];
        for (key, value) in optional_numbers {
            if let Some(value) = value {
                list.insert(key, &value);
            }
        }
        if self.tx_relay {
            list.insert_flag(keys::TX_RELAY);
        }
        let flow_numbers = [
            (keys::RECENT_TX_LOOKUP, self.recent_tx_lookup),
            (keys::FLOW_CONTROL_BL, self.buffer_limit),
            (keys::FLOW_CONTROL_MRR, self.min_recharge),
        ];
        for (key, value) in flow_numbers {
            if let Some(value) = value {
                list.insert(key, &value);
            }
        }
        if let Some(costs) = &self.request_costs {
            list.insert(keys::FLOW_CONTROL_MRC, costs);
        }
        for (key, value) in self.other.iter() {
            let typed = keys::ALL.iter().any(|known| known.as_bytes() == key);
            if !typed {
                list.push_raw(key.to_vec().into(), value.to_vec().into());
            }
        }
        list
    }

    /// The checks geth makes whatever the role: genesis, network, version, and on les/4 the
    /// fork ID (mandatory) against the EIP-2124 filter.
    pub fn validate_common(&self, local: &LocalStatus<'_>) -> Result<(), StatusError> {
        let genesis = local.fork_schedule.genesis_hash();
        if self.genesis_hash != genesis {
            return Err(StatusError::GenesisMismatch {
                expected: genesis,
                received: self.genesis_hash,
            });
        }
        if self.network_id != local.network_id {
            return Err(StatusError::NetworkIdMismatch {
                expected: local.network_id,
                received: self.network_id,
            });
        }
        if self.protocol_version != local.version.number() {
            return Err(StatusError::ProtocolVersionMismatch {
                expected: local.version.number(),
                received: self.protocol_version,
            });
        }
        if local.version >= LesVersion::Les4 {
            let fork_id = self.fork_id.ok_or(StatusError::MissingKey { key: keys::FORK_ID })?;
            local.fork_schedule.validate(local.head_number, local.head_time, fork_id)?;
        }
        Ok(())
    }

    /// As a server receiving a peer's Status: the common checks, then geth's classification
    /// (a Status with `flowControl/MRR` comes from another server).
    pub fn validate_from_client(
        &self,
        local: &LocalStatus<'_>,
    ) -> Result<RemoteClient, StatusError> {
        self.validate_common(local)?;
        if self.min_recharge.is_some() {
            return Ok(RemoteClient::Server);
        }
        Ok(RemoteClient::LightClient {
            announce_type: self.announce_type.unwrap_or(AnnounceType::Simple),
        })
    }

    /// As a client receiving a server's Status: the common checks, then geth's: head keys
    /// required; announce-only if `serveChainSince`, `serveStateSince` or `txRelay` is
    /// missing; `recentTxLookup` required on les/4; an announce-only server is refused unless
    /// `trusted` (for announcements, i.e. a ULC server); flow-control keys required; a server
    /// that serves must give a cost for every request code.
    pub fn validate_from_server(
        &self,
        local: &LocalStatus<'_>,
        trusted: bool,
    ) -> Result<RemoteServer, StatusError> {
        self.validate_common(local)?;
        let missing = |key: &'static str| StatusError::MissingKey { key };
        let head_td = self.head_td.ok_or(missing(keys::HEAD_TD))?;
        let head_hash = self.head_hash.ok_or(missing(keys::HEAD_HASH))?;
        let head_number = self.head_number.ok_or(missing(keys::HEAD_NUMBER))?;
        let announce_only =
            self.serve_chain_since.is_none() || self.serve_state_since.is_none() || !self.tx_relay;
        if local.version >= LesVersion::Les4 && self.recent_tx_lookup.is_none() {
            return Err(missing(keys::RECENT_TX_LOOKUP));
        }
        if announce_only && !trusted {
            return Err(StatusError::UselessPeer);
        }
        let buffer_limit = self.buffer_limit.ok_or(missing(keys::FLOW_CONTROL_BL))?;
        let min_recharge = self.min_recharge.ok_or(missing(keys::FLOW_CONTROL_MRR))?;
        let received_costs = self.request_costs.as_ref().ok_or(missing(keys::FLOW_CONTROL_MRC))?;
        let mut request_costs: Vec<RequestCost> = Vec::new();
        for cost in received_costs.iter().filter(|c| c.code < local.version.message_count()) {
            match request_costs.iter_mut().find(|kept| kept.code == cost.code) {
                Some(kept) => *kept = *cost,
                None => request_costs.push(*cost),
            }
        }
        if !announce_only {
            for code in codes::REQUESTS {
                if !request_costs.iter().any(|cost| cost.code == code) {
                    return Err(StatusError::MissingRequestCost { code });
                }
            }
        }
        Ok(RemoteServer {
            head_hash,
            head_number,
            head_td,
            announce_only,
            buffer_limit,
            min_recharge,
            request_costs,
        })
    }
}

impl Encodable for Status {
    fn encode(&self, out: &mut dyn BufMut) {
        self.to_kv().encode(out);
    }

    fn length(&self) -> usize {
        self.to_kv().length()
    }
}
