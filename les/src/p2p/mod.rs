//! The devp2p base protocol ("p2p" capability, version 5) as plain values and functions:
//! the frame-data layout `rlp(msg-id) || msg-data`, snappy compression of message data,
//! Hello, Disconnect, Ping/Pong, and capability negotiation with message-ID offsets.
//!
//! Nothing here keeps connection state: the session state machine decides when to send
//! what and whether compression is on; this module only says how the bytes look and
//! whether received bytes are acceptable.

mod capability;
mod disconnect;
mod hello;
mod snappy;

pub use capability::{
    Capability, CapabilityError, CapabilitySpec, MAX_CAPABILITY_NAME_LEN, SharedCapability,
    negotiate, resolve_message_id,
};
pub use disconnect::{DisconnectError, DisconnectReason};
pub use hello::{Hello, HelloError, MAX_HELLO_SIZE};
pub use snappy::{MAX_UNCOMPRESSED_LEN, SnappyError, compress, decompress};

use alloy_rlp::{Decodable, Header};

/// The p2p protocol version we send in Hello. Version 5 turns on snappy (EIP-706).
pub const P2P_VERSION: u64 = 5;

/// Snappy is used iff the remote Hello's version is at least this (geth decides on the
/// remote version alone, since it always sends 5 itself).
pub const SNAPPY_MIN_VERSION: u64 = 5;

/// Message ID of Hello.
pub const HELLO_MSG: u64 = 0x00;
/// Message ID of Disconnect.
pub const DISCONNECT_MSG: u64 = 0x01;
/// Message ID of Ping.
pub const PING_MSG: u64 = 0x02;
/// Message ID of Pong.
pub const PONG_MSG: u64 = 0x03;

/// Number of message IDs reserved for the base protocol; subprotocol IDs start here.
pub const BASE_PROTOCOL_LENGTH: u64 = 16;

/// The payload of Ping and Pong: the empty RLP list.
pub const PING_PONG_PAYLOAD: [u8; 1] = [alloy_rlp::EMPTY_LIST_CODE];

/// Whether message data must be snappy-compressed, given the remote Hello's version.
pub fn uses_snappy(remote_version: u64) -> bool {
    remote_version >= SNAPPY_MIN_VERSION
}

/// Why frame-data could not be split into message ID and message data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameDataError {
    /// The message ID is not a canonical RLP integer that fits in 64 bits (e.g. `00`,
    /// `81 05`, a leading zero byte, a list, or nothing at all).
    #[error("message id is not a canonical RLP integer: {0}")]
    MessageId(alloy_rlp::Error),
}

/// Builds frame-data: the message ID as a canonical RLP integer followed by the
/// (possibly compressed) message data.
pub fn encode_frame_data(msg_id: u64, msg_data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(alloy_rlp::Encodable::length(&msg_id) + msg_data.len());
    alloy_rlp::Encodable::encode(&msg_id, &mut out);
    out.extend_from_slice(msg_data);
    out
}

/// Splits frame-data into the message ID and the message data that follows it.
///
/// The data is returned untouched: it may be compressed, and its own RLP is checked by
/// whoever decodes the message.
pub fn decode_frame_data(frame_data: &[u8]) -> Result<(u64, &[u8]), FrameDataError> {
    let mut rest = frame_data;
    // alloy-rlp's integer decoder rejects `00`, `81 xx` with xx < 0x80, leading zeros and
    // lists, which is exactly the canonical-form rule geth applies to message IDs.
    let msg_id = u64::decode(&mut rest).map_err(FrameDataError::MessageId)?;
    Ok((msg_id, rest))
}

/// Checks a Ping or Pong payload: one RLP list and nothing after it.
///
/// Elements inside the list are ignored (forward compatibility); geth ignores the payload
/// of these messages altogether, so a session may also choose not to call this.
pub fn decode_ping_pong(payload: &[u8]) -> Result<(), alloy_rlp::Error> {
    let mut rest = payload;
    let header = Header::decode(&mut rest)?;
    if !header.list {
        return Err(alloy_rlp::Error::UnexpectedString);
    }
    if rest.len() != header.payload_length {
        return Err(alloy_rlp::Error::UnexpectedLength);
    }
    Ok(())
}

/// One base-protocol message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseMessage {
    /// Hello (0x00).
    Hello(Hello),
    /// Disconnect (0x01) with its reason.
    Disconnect(DisconnectReason),
    /// Ping (0x02).
    Ping,
    /// Pong (0x03).
    Pong,
}

/// Why a base-protocol message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseMessageError {
    /// The ID is in the base range but names no message (geth ignores these).
    #[error("unknown base protocol message id {0:#x}")]
    UnknownId(u64),
    /// The ID belongs to a subprotocol, not to the base protocol.
    #[error("message id {0:#x} is not a base protocol id")]
    NotBaseProtocol(u64),
    /// A malformed Hello.
    #[error("bad Hello: {0}")]
    Hello(#[from] HelloError),
    /// A malformed Disconnect (see [`DisconnectReason::decode_lenient`] for geth's
    /// tolerant reading).
    #[error("bad Disconnect: {0}")]
    Disconnect(#[from] DisconnectError),
    /// A Ping or Pong payload that is not one RLP list.
    #[error("bad Ping/Pong payload: {0}")]
    PingPong(alloy_rlp::Error),
}

impl BaseMessage {
    /// The message ID of this message.
    pub fn id(&self) -> u64 {
        match self {
            Self::Hello(_) => HELLO_MSG,
            Self::Disconnect(_) => DISCONNECT_MSG,
            Self::Ping => PING_MSG,
            Self::Pong => PONG_MSG,
        }
    }

    /// The uncompressed message data.
    pub fn encode_data(&self) -> Result<Vec<u8>, HelloError> {
        match self {
            Self::Hello(hello) => hello.encode(),
            Self::Disconnect(reason) => Ok(reason.encode()),
            Self::Ping | Self::Pong => Ok(PING_PONG_PAYLOAD.to_vec()),
        }
    }

    /// Decodes uncompressed message data received under `msg_id`. Disconnect is decoded
    /// strictly here; use [`DisconnectReason::decode_lenient`] to read it as geth does.
    pub fn decode(msg_id: u64, msg_data: &[u8]) -> Result<Self, BaseMessageError> {
        match msg_id {
            HELLO_MSG => Ok(Self::Hello(Hello::decode(msg_data)?)),
            DISCONNECT_MSG => Ok(Self::Disconnect(DisconnectReason::decode(msg_data)?)),
            PING_MSG => {
                decode_ping_pong(msg_data).map(|()| Self::Ping).map_err(BaseMessageError::PingPong)
            }
            PONG_MSG => {
                decode_ping_pong(msg_data).map(|()| Self::Pong).map_err(BaseMessageError::PingPong)
            }
            id if id < BASE_PROTOCOL_LENGTH => Err(BaseMessageError::UnknownId(id)),
            id => Err(BaseMessageError::NotBaseProtocol(id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::hex;

    #[test]
    fn frame_data_ids_are_canonical_rlp_integers() {
        // Hello is id 0, which RLP writes as the empty string 0x80.
        assert_eq!(encode_frame_data(HELLO_MSG, &[0xc0]), hex!("80c0"));
        assert_eq!(encode_frame_data(PING_MSG, &hex!("0100c0")), hex!("020100c0"));
        assert_eq!(encode_frame_data(0x7f, &[]), hex!("7f"));
        assert_eq!(encode_frame_data(0x80, &[]), hex!("8180"));
        assert_eq!(encode_frame_data(0x1234, &[0xc0]), hex!("821234c0"));

        assert_eq!(decode_frame_data(&hex!("80c0")), Ok((0, &hex!("c0")[..])));
        assert_eq!(decode_frame_data(&hex!("10c0")), Ok((0x10, &hex!("c0")[..])));
        assert_eq!(decode_frame_data(&hex!("8180")), Ok((0x80, &[][..])));
        for id in [0u64, 1, 0x0f, 0x10, 0x27, 0x7f, 0x80, 0xff, 0x100, u64::MAX] {
            let frame = encode_frame_data(id, b"data");
            assert_eq!(decode_frame_data(&frame), Ok((id, &b"data"[..])), "id {id}");
        }
    }

    #[test]
    fn frame_data_rejects_non_canonical_ids() {
        for bad in [
            &hex!("00c0")[..],                 // zero must be 0x80
            &hex!("8105c0")[..],               // single byte < 0x80 wrapped in a string
            &hex!("820005")[..],               // leading zero
            &hex!("c0")[..],                   // a list is not an integer
            &hex!("")[..],                     // nothing
            &hex!("82ff")[..],                 // truncated
            &hex!("89010000000000000000")[..], // 2^64 does not fit
        ] {
            assert!(decode_frame_data(bad).is_err(), "accepted {}", hex::encode(bad));
        }
    }

    #[test]
    fn ping_pong_payloads() {
        assert_eq!(decode_ping_pong(&PING_PONG_PAYLOAD), Ok(()));
        assert_eq!(decode_ping_pong(&hex!("c180")), Ok(()));
        assert!(decode_ping_pong(&hex!("80")).is_err());
        assert!(decode_ping_pong(&hex!("c0c0")).is_err());
        assert!(decode_ping_pong(&hex!("")).is_err());
        assert_eq!(BaseMessage::decode(PING_MSG, &hex!("c0")), Ok(BaseMessage::Ping));
        assert_eq!(BaseMessage::decode(PONG_MSG, &hex!("c0")), Ok(BaseMessage::Pong));
    }

    #[test]
    fn base_message_dispatch() {
        assert_eq!(
            BaseMessage::decode(DISCONNECT_MSG, &hex!("c104")),
            Ok(BaseMessage::Disconnect(DisconnectReason::TooManyPeers))
        );
        assert_eq!(BaseMessage::decode(0x05, &hex!("c0")), Err(BaseMessageError::UnknownId(5)));
        assert_eq!(
            BaseMessage::decode(BASE_PROTOCOL_LENGTH, &hex!("c0")),
            Err(BaseMessageError::NotBaseProtocol(0x10))
        );
        for msg in [
            BaseMessage::Ping,
            BaseMessage::Pong,
            BaseMessage::Disconnect(DisconnectReason::Quitting),
        ] {
            let data = msg.encode_data().unwrap();
            assert_eq!(BaseMessage::decode(msg.id(), &data), Ok(msg));
        }
    }

    #[test]
    fn snappy_is_decided_by_the_remote_version() {
        assert!(!uses_snappy(4));
        assert!(uses_snappy(P2P_VERSION));
        assert!(uses_snappy(55));
    }
}
