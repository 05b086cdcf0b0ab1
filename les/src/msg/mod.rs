//! Every LES message (les/2, les/3, les/4) as a typed value with strict RLP encoding and
//! decoding, plus the protocol facts they rest on: versions, message codes, size and
//! request limits, the Status key/value list and EIP-2124 fork IDs.
//!
//! Everything here works on the message *payload* (the msg-data after the devp2p message
//! code, before snappy compression): [`LesMessage::decode`] takes the negotiated
//! [`LesVersion`], the LES-relative code and the payload; [`LesMessage::encode`] returns the
//! payload. Message-code offsets and compression belong to the `p2p` module.
//!
//! Decoding is strict the way go-ethereum's is (canonical integers, no trailing bytes, exact
//! list shapes), and never allocates from a count found in the input: lists grow one parsed
//! element at a time, and a payload is refused before parsing if it exceeds
//! [`MAX_MESSAGE_SIZE`].

mod announce;
pub(crate) mod codec;
mod error;
mod forkid;
mod kv;
mod message;
mod requests;
mod status;

/// The GetBlockHeaders origin type (alloy's), re-exported for callers of this module.
pub use alloy_eips::BlockHashOrNumber;
pub use announce::{Announce, MAX_ANNOUNCED_TD_BITS, SIGNATURE_KEY};
pub use error::MsgError;
pub use forkid::{
    ForkId, ForkIdError, ForkSchedule, MAINNET_BLOCK_FORKS, MAINNET_GENESIS_HASH,
    MAINNET_GENESIS_TIME, MAINNET_NETWORK_ID, MAINNET_TIME_FORKS,
};
pub use kv::{KV_ENTRY_OVERHEAD, KvList};
pub use message::{LesMessage, Request};
pub use requests::{
    AccountKey, BlockBodies, BlockHeaders, CodeRequest, ContractCodes, GetBlockBodies,
    GetBlockHeaders, GetContractCodes, GetHelperTrieProofs, GetProofsV2, GetReceipts, GetTxStatus,
    HelperTrieProofs, HelperTrieRequest, ProofRequest, ProofTarget, ProofsV2, Receipts, Resume,
    SendTxV2, TxLookup, TxState, TxStatus, TxStatusEntry,
};
pub use status::{
    AnnounceType, LocalStatus, MAX_STATUS_KV_BYTES, RemoteClient, RemoteServer, RequestCost,
    Status, StatusError, keys,
};

use std::fmt;
use std::time::Duration;

/// The devp2p capability name of LES.
pub const CAPABILITY_NAME: &str = "les";

/// Largest LES message payload (uncompressed) a peer may send; geth `ProtocolMaxMsgSize`.
/// Anything larger is a protocol violation (geth disconnects).
pub const MAX_MESSAGE_SIZE: usize = 10 * 1024 * 1024;

/// Size at which a geth server stops adding items to a reply (geth `softResponseLimit`).
pub const SOFT_RESPONSE_LIMIT: usize = 2 * 1024 * 1024;

/// How long each side waits for the peer's Status (geth `handshakeTimeout`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A geth server drops a client after more invalid requests than this (geth
/// `maxRequestErrors`; the counter decays by one per hour).
pub const MAX_REQUEST_ERRORS: u64 = 20;

/// A geth client drops a server after more invalid or unexpected replies than this (geth
/// `maxResponseErrors`; the counter decays by one per hour).
pub const MAX_RESPONSE_ERRORS: u64 = 50;

/// A LES protocol version this crate speaks. les/1 is obsolete (geth v1.10+ dropped it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LesVersion {
    /// les/2: the message set up to TxStatus (0x15).
    Les2,
    /// les/3: adds StopMsg/ResumeMsg and the `serveRecent*` Status keys.
    Les3,
    /// les/4: `forkID` and (servers) `recentTxLookup` become mandatory Status keys.
    Les4,
}

impl LesVersion {
    /// Every supported version, lowest first (geth advertises all three).
    pub const ALL: [LesVersion; 3] = [LesVersion::Les2, LesVersion::Les3, LesVersion::Les4];

    /// The version number as advertised in the devp2p Hello capability list.
    pub const fn number(self) -> u64 {
        match self {
            LesVersion::Les2 => 2,
            LesVersion::Les3 => 3,
            LesVersion::Les4 => 4,
        }
    }

    /// The version with this number, if supported.
    pub const fn from_number(number: u64) -> Option<Self> {
        match number {
            2 => Some(LesVersion::Les2),
            3 => Some(LesVersion::Les3),
            4 => Some(LesVersion::Les4),
            _ => None,
        }
    }

    /// How many message codes the version reserves (geth `ProtocolLengths`); this sizes the
    /// capability's slice of the devp2p message-ID space.
    pub const fn message_count(self) -> u64 {
        match self {
            LesVersion::Les2 => 22,
            LesVersion::Les3 | LesVersion::Les4 => 24,
        }
    }

    /// Whether `code` (relative to the LES offset) is a message of this version. The les/1-only
    /// codes inside the range (0x08, 0x09, 0x0c, 0x0d, 0x0e) are not.
    pub const fn supports(self, code: u64) -> bool {
        match code {
            codes::GET_PROOFS_V1
            | codes::PROOFS_V1
            | codes::SEND_TX_V1
            | codes::GET_HEADER_PROOFS_V1
            | codes::HEADER_PROOFS_V1 => false,
            _ => code < self.message_count(),
        }
    }
}

impl fmt::Display for LesVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "les/{}", self.number())
    }
}

/// LES message codes, relative to the capability's offset in the devp2p message-ID space.
pub mod codes {
    /// Status: the handshake key/value list (both directions).
    pub const STATUS: u64 = 0x00;
    /// Announce: a new head and/or parameter updates (server to client).
    pub const ANNOUNCE: u64 = 0x01;
    /// GetBlockHeaders request.
    pub const GET_BLOCK_HEADERS: u64 = 0x02;
    /// BlockHeaders reply.
    pub const BLOCK_HEADERS: u64 = 0x03;
    /// GetBlockBodies request.
    pub const GET_BLOCK_BODIES: u64 = 0x04;
    /// BlockBodies reply.
    pub const BLOCK_BODIES: u64 = 0x05;
    /// GetReceipts request.
    pub const GET_RECEIPTS: u64 = 0x06;
    /// Receipts reply.
    pub const RECEIPTS: u64 = 0x07;
    /// GetProofs, les/1 only; not a message of any supported version.
    pub const GET_PROOFS_V1: u64 = 0x08;
    /// Proofs, les/1 only; not a message of any supported version.
    pub const PROOFS_V1: u64 = 0x09;
    /// GetContractCodes request (geth `GetCodeMsg`).
    pub const GET_CONTRACT_CODES: u64 = 0x0a;
    /// ContractCodes reply (geth `CodeMsg`).
    pub const CONTRACT_CODES: u64 = 0x0b;
    /// SendTx, les/1 only; not a message of any supported version.
    pub const SEND_TX_V1: u64 = 0x0c;
    /// GetHeaderProofs, les/1 only; not a message of any supported version.
    pub const GET_HEADER_PROOFS_V1: u64 = 0x0d;
    /// HeaderProofs, les/1 only; not a message of any supported version.
    pub const HEADER_PROOFS_V1: u64 = 0x0e;
    /// GetProofsV2 request.
    pub const GET_PROOFS_V2: u64 = 0x0f;
    /// ProofsV2 reply.
    pub const PROOFS_V2: u64 = 0x10;
    /// GetHelperTrieProofs request.
    pub const GET_HELPER_TRIE_PROOFS: u64 = 0x11;
    /// HelperTrieProofs reply.
    pub const HELPER_TRIE_PROOFS: u64 = 0x12;
    /// SendTxV2 request.
    pub const SEND_TX_V2: u64 = 0x13;
    /// GetTxStatus request.
    pub const GET_TX_STATUS: u64 = 0x14;
    /// TxStatus reply (to GetTxStatus and SendTxV2).
    pub const TX_STATUS: u64 = 0x15;
    /// StopMsg (les/3+): stop sending requests, outstanding ones will not be answered.
    pub const STOP: u64 = 0x16;
    /// ResumeMsg (les/3+): requests may be sent again; carries the buffer value.
    pub const RESUME: u64 = 0x17;

    /// The eight request codes a client may send. A geth client refuses a server (that is not
    /// announce-only) whose `flowControl/MRC` lacks any of them.
    pub const REQUESTS: [u64; 8] = [
        GET_BLOCK_HEADERS,
        GET_BLOCK_BODIES,
        GET_RECEIPTS,
        GET_CONTRACT_CODES,
        GET_PROOFS_V2,
        GET_HELPER_TRIE_PROOFS,
        SEND_TX_V2,
        GET_TX_STATUS,
    ];
}

/// Per-request item limits (geth `Max*Fetch`, `MaxTxSend`, `MaxTxStatus`). A geth server
/// silently drops a request with zero items or more than its limit (no reply); the policy is
/// the server's, these are the numbers.
pub mod limits {
    use super::codes;

    /// Most headers one GetBlockHeaders may ask for (`maxHeaders`).
    pub const MAX_HEADER_FETCH: u64 = 192;
    /// Most block hashes in one GetBlockBodies.
    pub const MAX_BODY_FETCH: u64 = 32;
    /// Most block hashes in one GetReceipts.
    pub const MAX_RECEIPT_FETCH: u64 = 128;
    /// Most entries in one GetContractCodes.
    pub const MAX_CODE_FETCH: u64 = 64;
    /// Most entries in one GetProofsV2.
    pub const MAX_PROOFS_FETCH: u64 = 64;
    /// Most entries in one GetHelperTrieProofs.
    pub const MAX_HELPER_TRIE_PROOFS_FETCH: u64 = 64;
    /// Most transactions in one SendTxV2.
    pub const MAX_TX_SEND: u64 = 64;
    /// Most transaction hashes in one GetTxStatus.
    pub const MAX_TX_STATUS: u64 = 256;

    /// The item limit of a request code, `None` for codes that are not requests.
    pub const fn max_items(code: u64) -> Option<u64> {
        match code {
            codes::GET_BLOCK_HEADERS => Some(MAX_HEADER_FETCH),
            codes::GET_BLOCK_BODIES => Some(MAX_BODY_FETCH),
            codes::GET_RECEIPTS => Some(MAX_RECEIPT_FETCH),
            codes::GET_CONTRACT_CODES => Some(MAX_CODE_FETCH),
            codes::GET_PROOFS_V2 => Some(MAX_PROOFS_FETCH),
            codes::GET_HELPER_TRIE_PROOFS => Some(MAX_HELPER_TRIE_PROOFS_FETCH),
            codes::SEND_TX_V2 => Some(MAX_TX_SEND),
            codes::GET_TX_STATUS => Some(MAX_TX_STATUS),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_counts_match_geth_protocol_lengths() {
        assert_eq!(LesVersion::Les2.message_count(), 22);
        assert_eq!(LesVersion::Les3.message_count(), 24);
        assert_eq!(LesVersion::Les4.message_count(), 24);
    }

    #[test]
    fn version_code_sets() {
        for v in LesVersion::ALL {
            for code in [0x00, 0x07, 0x0a, 0x0b, 0x0f, 0x15] {
                assert!(v.supports(code), "{v} {code:#x}");
            }
            for code in [0x08, 0x09, 0x0c, 0x0d, 0x0e, 0x18, u64::MAX] {
                assert!(!v.supports(code), "{v} {code:#x}");
            }
        }
        assert!(!LesVersion::Les2.supports(codes::STOP));
        assert!(!LesVersion::Les2.supports(codes::RESUME));
        assert!(LesVersion::Les3.supports(codes::STOP));
        assert!(LesVersion::Les4.supports(codes::RESUME));
    }

    #[test]
    fn version_numbers_round_trip() {
        for v in LesVersion::ALL {
            assert_eq!(LesVersion::from_number(v.number()), Some(v));
        }
        assert_eq!(LesVersion::from_number(1), None);
        assert_eq!(LesVersion::from_number(5), None);
    }

    #[test]
    fn every_request_code_has_a_limit_and_nothing_else_does() {
        for code in 0..LesVersion::Les4.message_count() {
            assert_eq!(limits::max_items(code).is_some(), codes::REQUESTS.contains(&code));
        }
    }
}
