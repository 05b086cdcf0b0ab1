//! [`LesMessage`]: any LES message, dispatched by code; and [`Request`], a view of the eight
//! request types with their item counts and limits.

use super::codec::{ListOf, ListReader};
use super::requests::*;
use super::{Announce, LesVersion, MAX_MESSAGE_SIZE, MsgError, Status, codes, limits};
use alloy_rlp::Encodable;

/// Any LES message of les/2, les/3 or les/4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LesMessage {
    /// 0x00 (boxed: it is by far the largest variant and comes once per connection)
    Status(Box<Status>),
    /// 0x01
    Announce(Announce),
    /// 0x02
    GetBlockHeaders(GetBlockHeaders),
    /// 0x03
    BlockHeaders(BlockHeaders),
    /// 0x04
    GetBlockBodies(GetBlockBodies),
    /// 0x05
    BlockBodies(BlockBodies),
    /// 0x06
    GetReceipts(GetReceipts),
    /// 0x07
    Receipts(Receipts),
    /// 0x0a
    GetContractCodes(GetContractCodes),
    /// 0x0b
    ContractCodes(ContractCodes),
    /// 0x0f
    GetProofsV2(GetProofsV2),
    /// 0x10
    ProofsV2(ProofsV2),
    /// 0x11
    GetHelperTrieProofs(GetHelperTrieProofs),
    /// 0x12
    HelperTrieProofs(HelperTrieProofs),
    /// 0x13
    SendTxV2(SendTxV2),
    /// 0x14
    GetTxStatus(GetTxStatus),
    /// 0x15
    TxStatus(TxStatus),
    /// 0x16 (les/3+): payload is the empty list.
    Stop,
    /// 0x17 (les/3+)
    Resume(Resume),
}

impl LesMessage {
    /// The message code, relative to the LES offset.
    pub fn code(&self) -> u64 {
        match self {
            LesMessage::Status(_) => codes::STATUS,
            LesMessage::Announce(_) => codes::ANNOUNCE,
            LesMessage::GetBlockHeaders(_) => codes::GET_BLOCK_HEADERS,
            LesMessage::BlockHeaders(_) => codes::BLOCK_HEADERS,
            LesMessage::GetBlockBodies(_) => codes::GET_BLOCK_BODIES,
            LesMessage::BlockBodies(_) => codes::BLOCK_BODIES,
            LesMessage::GetReceipts(_) => codes::GET_RECEIPTS,
            LesMessage::Receipts(_) => codes::RECEIPTS,
            LesMessage::GetContractCodes(_) => codes::GET_CONTRACT_CODES,
            LesMessage::ContractCodes(_) => codes::CONTRACT_CODES,
            LesMessage::GetProofsV2(_) => codes::GET_PROOFS_V2,
            LesMessage::ProofsV2(_) => codes::PROOFS_V2,
            LesMessage::GetHelperTrieProofs(_) => codes::GET_HELPER_TRIE_PROOFS,
            LesMessage::HelperTrieProofs(_) => codes::HELPER_TRIE_PROOFS,
            LesMessage::SendTxV2(_) => codes::SEND_TX_V2,
            LesMessage::GetTxStatus(_) => codes::GET_TX_STATUS,
            LesMessage::TxStatus(_) => codes::TX_STATUS,
            LesMessage::Stop => codes::STOP,
            LesMessage::Resume(_) => codes::RESUME,
        }
    }

    /// The payload (msg-data, before snappy compression).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.body().encode(&mut out);
        out
    }

    /// Decodes the payload of message `code` received on a `version` connection. Refuses
    /// payloads over [`MAX_MESSAGE_SIZE`] before parsing, codes outside the version, and
    /// any payload that is not exactly one canonical item of the message's shape.
    pub fn decode(version: LesVersion, code: u64, payload: &[u8]) -> Result<Self, MsgError> {
        if payload.len() > MAX_MESSAGE_SIZE {
            return Err(MsgError::TooLarge { size: payload.len() });
        }
        if !version.supports(code) {
            return Err(MsgError::UnknownCode { version, code });
        }
        Ok(match code {
            codes::STATUS => LesMessage::Status(Box::new(Status::decode(payload)?)),
            codes::ANNOUNCE => LesMessage::Announce(Announce::decode(payload)?),
            codes::GET_BLOCK_HEADERS => {
                LesMessage::GetBlockHeaders(GetBlockHeaders::decode(payload)?)
            }
            codes::BLOCK_HEADERS => LesMessage::BlockHeaders(BlockHeaders::decode(payload)?),
            codes::GET_BLOCK_BODIES => LesMessage::GetBlockBodies(GetBlockBodies::decode(payload)?),
            codes::BLOCK_BODIES => LesMessage::BlockBodies(BlockBodies::decode(payload)?),
            codes::GET_RECEIPTS => LesMessage::GetReceipts(GetReceipts::decode(payload)?),
            codes::RECEIPTS => LesMessage::Receipts(Receipts::decode(payload)?),
            codes::GET_CONTRACT_CODES => {
                LesMessage::GetContractCodes(GetContractCodes::decode(payload)?)
            }
            codes::CONTRACT_CODES => LesMessage::ContractCodes(ContractCodes::decode(payload)?),
            codes::GET_PROOFS_V2 => LesMessage::GetProofsV2(GetProofsV2::decode(payload)?),
            codes::PROOFS_V2 => LesMessage::ProofsV2(ProofsV2::decode(payload)?),
            codes::GET_HELPER_TRIE_PROOFS => {
                LesMessage::GetHelperTrieProofs(GetHelperTrieProofs::decode(payload)?)
            }
            codes::HELPER_TRIE_PROOFS => {
                LesMessage::HelperTrieProofs(HelperTrieProofs::decode(payload)?)
            }
            codes::SEND_TX_V2 => LesMessage::SendTxV2(SendTxV2::decode(payload)?),
            codes::GET_TX_STATUS => LesMessage::GetTxStatus(GetTxStatus::decode(payload)?),
            codes::TX_STATUS => LesMessage::TxStatus(TxStatus::decode(payload)?),
            codes::STOP => {
                ListReader::top_level(payload, "StopMsg")?.with_count(0)?;
                LesMessage::Stop
            }
            codes::RESUME => LesMessage::Resume(Resume::decode(payload)?),
            _ => return Err(MsgError::UnknownCode { version, code }),
        })
    }

    /// The request view, for the eight request types.
    pub fn as_request(&self) -> Option<Request<'_>> {
        Some(match self {
            LesMessage::GetBlockHeaders(m) => Request::GetBlockHeaders(m),
            LesMessage::GetBlockBodies(m) => Request::GetBlockBodies(m),
            LesMessage::GetReceipts(m) => Request::GetReceipts(m),
            LesMessage::GetContractCodes(m) => Request::GetContractCodes(m),
            LesMessage::GetProofsV2(m) => Request::GetProofsV2(m),
            LesMessage::GetHelperTrieProofs(m) => Request::GetHelperTrieProofs(m),
            LesMessage::SendTxV2(m) => Request::SendTxV2(m),
            LesMessage::GetTxStatus(m) => Request::GetTxStatus(m),
            _ => return None,
        })
    }

    /// The request ID of a request or reply.
    pub fn request_id(&self) -> Option<u64> {
        if let Some(request) = self.as_request() {
            return Some(request.request_id());
        }
        match self {
            LesMessage::BlockHeaders(m) => Some(m.request_id),
            LesMessage::BlockBodies(m) => Some(m.request_id),
            LesMessage::Receipts(m) => Some(m.request_id),
            LesMessage::ContractCodes(m) => Some(m.request_id),
            LesMessage::ProofsV2(m) => Some(m.request_id),
            LesMessage::HelperTrieProofs(m) => Some(m.request_id),
            LesMessage::TxStatus(m) => Some(m.request_id),
            _ => None,
        }
    }

    /// The server's buffer value carried by a reply or ResumeMsg.
    pub fn buffer_value(&self) -> Option<u64> {
        match self {
            LesMessage::BlockHeaders(m) => Some(m.buffer_value),
            LesMessage::BlockBodies(m) => Some(m.buffer_value),
            LesMessage::Receipts(m) => Some(m.buffer_value),
            LesMessage::ContractCodes(m) => Some(m.buffer_value),
            LesMessage::ProofsV2(m) => Some(m.buffer_value),
            LesMessage::HelperTrieProofs(m) => Some(m.buffer_value),
            LesMessage::TxStatus(m) => Some(m.buffer_value),
            LesMessage::Resume(m) => Some(m.buffer_value),
            _ => None,
        }
    }

    /// Sets the buffer value of a reply or ResumeMsg (a server fills it in last, once it
    /// knows what serving cost); returns false, changing nothing, for other messages.
    pub fn set_buffer_value(&mut self, value: u64) -> bool {
        let field = match self {
            LesMessage::BlockHeaders(m) => &mut m.buffer_value,
            LesMessage::BlockBodies(m) => &mut m.buffer_value,
            LesMessage::Receipts(m) => &mut m.buffer_value,
            LesMessage::ContractCodes(m) => &mut m.buffer_value,
            LesMessage::ProofsV2(m) => &mut m.buffer_value,
            LesMessage::HelperTrieProofs(m) => &mut m.buffer_value,
            LesMessage::TxStatus(m) => &mut m.buffer_value,
            LesMessage::Resume(m) => &mut m.buffer_value,
            _ => return false,
        };
        *field = value;
        true
    }

    fn body(&self) -> &dyn Encodable {
        match self {
            LesMessage::Status(m) => m.as_ref(),
            LesMessage::Announce(m) => m,
            LesMessage::GetBlockHeaders(m) => m,
            LesMessage::BlockHeaders(m) => m,
            LesMessage::GetBlockBodies(m) => m,
            LesMessage::BlockBodies(m) => m,
            LesMessage::GetReceipts(m) => m,
            LesMessage::Receipts(m) => m,
            LesMessage::GetContractCodes(m) => m,
            LesMessage::ContractCodes(m) => m,
            LesMessage::GetProofsV2(m) => m,
            LesMessage::ProofsV2(m) => m,
            LesMessage::GetHelperTrieProofs(m) => m,
            LesMessage::HelperTrieProofs(m) => m,
            LesMessage::SendTxV2(m) => m,
            LesMessage::GetTxStatus(m) => m,
            LesMessage::TxStatus(m) => m,
            // geth sends `struct{}{}`: the empty list.
            LesMessage::Stop => &EMPTY_LIST,
            LesMessage::Resume(m) => m,
        }
    }
}

/// The empty list (`c0`).
const EMPTY_LIST: ListOf<'static> = ListOf(&[]);

/// A request message, seen through what flow control and limits need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// GetBlockHeaders (items = `maxHeaders`).
    GetBlockHeaders(&'a GetBlockHeaders),
    /// GetBlockBodies (items = hashes).
    GetBlockBodies(&'a GetBlockBodies),
    /// GetReceipts (items = hashes).
    GetReceipts(&'a GetReceipts),
    /// GetContractCodes (items = entries).
    GetContractCodes(&'a GetContractCodes),
    /// GetProofsV2 (items = entries).
    GetProofsV2(&'a GetProofsV2),
    /// GetHelperTrieProofs (items = entries).
    GetHelperTrieProofs(&'a GetHelperTrieProofs),
    /// SendTxV2 (items = transactions).
    SendTxV2(&'a SendTxV2),
    /// GetTxStatus (items = hashes).
    GetTxStatus(&'a GetTxStatus),
}

impl Request<'_> {
    /// The request's message code.
    pub fn code(&self) -> u64 {
        match self {
            Request::GetBlockHeaders(_) => codes::GET_BLOCK_HEADERS,
            Request::GetBlockBodies(_) => codes::GET_BLOCK_BODIES,
            Request::GetReceipts(_) => codes::GET_RECEIPTS,
            Request::GetContractCodes(_) => codes::GET_CONTRACT_CODES,
            Request::GetProofsV2(_) => codes::GET_PROOFS_V2,
            Request::GetHelperTrieProofs(_) => codes::GET_HELPER_TRIE_PROOFS,
            Request::SendTxV2(_) => codes::SEND_TX_V2,
            Request::GetTxStatus(_) => codes::GET_TX_STATUS,
        }
    }

    /// The request ID.
    pub fn request_id(&self) -> u64 {
        match self {
            Request::GetBlockHeaders(m) => m.request_id,
            Request::GetBlockBodies(m) => m.request_id,
            Request::GetReceipts(m) => m.request_id,
            Request::GetContractCodes(m) => m.request_id,
            Request::GetProofsV2(m) => m.request_id,
            Request::GetHelperTrieProofs(m) => m.request_id,
            Request::SendTxV2(m) => m.request_id,
            Request::GetTxStatus(m) => m.request_id,
        }
    }

    /// The number of items asked for, which costs and limits are counted in.
    pub fn item_count(&self) -> u64 {
        let len = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        match self {
            Request::GetBlockHeaders(m) => m.max_headers,
            Request::GetBlockBodies(m) => len(m.block_hashes.len()),
            Request::GetReceipts(m) => len(m.block_hashes.len()),
            Request::GetContractCodes(m) => len(m.requests.len()),
            Request::GetProofsV2(m) => len(m.requests.len()),
            Request::GetHelperTrieProofs(m) => len(m.requests.len()),
            Request::SendTxV2(m) => len(m.transactions.len()),
            Request::GetTxStatus(m) => len(m.tx_hashes.len()),
        }
    }

    /// The most items this request type may ask for.
    pub fn max_items(&self) -> u64 {
        // Every request code has a limit (checked by a test in the parent module).
        limits::max_items(self.code()).unwrap_or(0)
    }

    /// Whether the item count is between 1 and the limit. A geth server silently drops
    /// (no reply) a request outside that range.
    pub fn within_limits(&self) -> bool {
        (1..=self.max_items()).contains(&self.item_count())
    }
}
