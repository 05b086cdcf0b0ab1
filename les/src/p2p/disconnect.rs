//! Disconnect reasons and the Disconnect message payload.
//!
//! geth sends the reason as a one-element list (`c1 10`). Other clients have been seen
//! sending a bare integer or an empty list, so decoding accepts those too.

use alloy_rlp::{Decodable, Encodable, Header};
use std::fmt;

/// Why a peer is being (or was) disconnected (devp2p codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// 0x00: disconnect requested.
    Requested,
    /// 0x01: TCP sub-system / network error.
    NetworkError,
    /// 0x02: breach of protocol (malformed message, bad RLP, ...).
    ProtocolError,
    /// 0x03: useless peer (e.g. no shared capability).
    UselessPeer,
    /// 0x04: too many peers.
    TooManyPeers,
    /// 0x05: already connected.
    AlreadyConnected,
    /// 0x06: incompatible p2p protocol version.
    IncompatibleVersion,
    /// 0x07: null or invalid node identity.
    InvalidIdentity,
    /// 0x08: client quitting.
    Quitting,
    /// 0x09: unexpected identity in handshake.
    UnexpectedIdentity,
    /// 0x0a: connected to self.
    ConnectedToSelf,
    /// 0x0b: ping / read timeout.
    ReadTimeout,
    /// 0x10: subprotocol-specific reason.
    SubprotocolError,
    /// Any code without a name above. [`DisconnectReason::from_code`] never puts a named
    /// code here.
    Other(u8),
}

/// Why a Disconnect payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisconnectError {
    /// The payload is not `[reason]`, a bare `reason`, or `[]`, or the reason is not a
    /// canonical integer in 0..=255.
    #[error("malformed disconnect payload: {0}")]
    Rlp(alloy_rlp::Error),
}

impl DisconnectReason {
    /// The reason for a wire code.
    pub fn from_code(code: u8) -> Self {
        match code {
            0x00 => Self::Requested,
            0x01 => Self::NetworkError,
            0x02 => Self::ProtocolError,
            0x03 => Self::UselessPeer,
            0x04 => Self::TooManyPeers,
            0x05 => Self::AlreadyConnected,
            0x06 => Self::IncompatibleVersion,
            0x07 => Self::InvalidIdentity,
            0x08 => Self::Quitting,
            0x09 => Self::UnexpectedIdentity,
            0x0a => Self::ConnectedToSelf,
            0x0b => Self::ReadTimeout,
            0x10 => Self::SubprotocolError,
            other => Self::Other(other),
        }
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Self::Requested => 0x00,
            Self::NetworkError => 0x01,
            Self::ProtocolError => 0x02,
            Self::UselessPeer => 0x03,
            Self::TooManyPeers => 0x04,
            Self::AlreadyConnected => 0x05,
            Self::IncompatibleVersion => 0x06,
            Self::InvalidIdentity => 0x07,
            Self::Quitting => 0x08,
            Self::UnexpectedIdentity => 0x09,
            Self::ConnectedToSelf => 0x0a,
            Self::ReadTimeout => 0x0b,
            Self::SubprotocolError => 0x10,
            Self::Other(code) => code,
        }
    }

    /// The Disconnect payload as geth sends it: the one-element list `[code]`.
    pub fn encode(self) -> Vec<u8> {
        let code = self.code();
        let mut out = Vec::with_capacity(3);
        Header { list: true, payload_length: code.length() }.encode(&mut out);
        code.encode(&mut out);
        out
    }

    /// Reads a Disconnect payload. Accepted forms: `[code]` (what geth sends; further
    /// list elements are ignored, as EIP-8 asks), a bare `code`, and `[]`, which is read
    /// as [`DisconnectReason::Requested`] because that is what geth's decoder leaves in
    /// place when the list has no element. Nothing may follow the item.
    pub fn decode(payload: &[u8]) -> Result<Self, DisconnectError> {
        let mut rest = payload;
        let first = *rest.first().ok_or(DisconnectError::Rlp(alloy_rlp::Error::InputTooShort))?;
        let code = if first >= alloy_rlp::EMPTY_LIST_CODE {
            let mut items = Header::decode_bytes(&mut rest, true).map_err(DisconnectError::Rlp)?;
            if items.is_empty() {
                0
            } else {
                u8::decode(&mut items).map_err(DisconnectError::Rlp)?
            }
        } else {
            u8::decode(&mut rest).map_err(DisconnectError::Rlp)?
        };
        if !rest.is_empty() {
            return Err(DisconnectError::Rlp(alloy_rlp::Error::UnexpectedLength));
        }
        Ok(Self::from_code(code))
    }

    /// Reads a Disconnect payload the way geth v1.12 does: anything unreadable counts as
    /// [`DisconnectReason::Requested`]. The connection closes either way, so the reason
    /// is only informative.
    pub fn decode_lenient(payload: &[u8]) -> Self {
        Self::decode(payload).unwrap_or(Self::Requested)
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::Requested => "disconnect requested",
            Self::NetworkError => "network error",
            Self::ProtocolError => "breach of protocol",
            Self::UselessPeer => "useless peer",
            Self::TooManyPeers => "too many peers",
            Self::AlreadyConnected => "already connected",
            Self::IncompatibleVersion => "incompatible p2p protocol version",
            Self::InvalidIdentity => "invalid node identity",
            Self::Quitting => "client quitting",
            Self::UnexpectedIdentity => "unexpected identity",
            Self::ConnectedToSelf => "connected to self",
            Self::ReadTimeout => "read timeout",
            Self::SubprotocolError => "subprotocol error",
            Self::Other(code) => return write!(f, "unknown disconnect reason {code:#04x}"),
        };
        f.write_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::hex;

    #[test]
    fn codes_match_the_devp2p_table() {
        let table = [
            (0x00, DisconnectReason::Requested),
            (0x01, DisconnectReason::NetworkError),
            (0x02, DisconnectReason::ProtocolError),
            (0x03, DisconnectReason::UselessPeer),
            (0x04, DisconnectReason::TooManyPeers),
            (0x05, DisconnectReason::AlreadyConnected),
            (0x06, DisconnectReason::IncompatibleVersion),
            (0x07, DisconnectReason::InvalidIdentity),
            (0x08, DisconnectReason::Quitting),
            (0x09, DisconnectReason::UnexpectedIdentity),
            (0x0a, DisconnectReason::ConnectedToSelf),
            (0x0b, DisconnectReason::ReadTimeout),
            (0x10, DisconnectReason::SubprotocolError),
        ];
        for (code, reason) in table {
            assert_eq!(DisconnectReason::from_code(code), reason);
            assert_eq!(reason.code(), code);
        }
        for code in (0x0c..=0x0f).chain(0x11..=0xff) {
            assert_eq!(DisconnectReason::from_code(code), DisconnectReason::Other(code));
            assert_eq!(DisconnectReason::Other(code).code(), code);
        }
    }

    #[test]
    fn encodes_as_one_element_list() {
        assert_eq!(DisconnectReason::Requested.encode(), hex!("c180"));
        assert_eq!(DisconnectReason::UselessPeer.encode(), hex!("c103"));
        assert_eq!(DisconnectReason::SubprotocolError.encode(), hex!("c110"));
        assert_eq!(DisconnectReason::Other(0xff).encode(), hex!("c281ff"));
        for code in 0..=u8::MAX {
            let reason = DisconnectReason::from_code(code);
            assert_eq!(DisconnectReason::decode(&reason.encode()), Ok(reason));
        }
    }

    #[test]
    fn decode_accepts_the_forms_seen_in_the_wild() {
        assert_eq!(DisconnectReason::decode(&hex!("c104")), Ok(DisconnectReason::TooManyPeers));
        assert_eq!(DisconnectReason::decode(&hex!("04")), Ok(DisconnectReason::TooManyPeers));
        assert_eq!(DisconnectReason::decode(&hex!("80")), Ok(DisconnectReason::Requested));
        assert_eq!(DisconnectReason::decode(&hex!("c0")), Ok(DisconnectReason::Requested));
        assert_eq!(DisconnectReason::decode(&hex!("c20405")), Ok(DisconnectReason::TooManyPeers));
    }

    #[test]
    fn decode_rejects_garbage_and_lenient_falls_back() {
        for bad in [
            &hex!("")[..],
            &hex!("00"),
            &hex!("c100"),
            &hex!("c18105"),
            &hex!("820100"),
            &hex!("c10404"),
            &hex!("c2"),
            &hex!("83616263"),
        ] {
            assert!(DisconnectReason::decode(bad).is_err(), "accepted {}", hex::encode(bad));
            assert_eq!(DisconnectReason::decode_lenient(bad), DisconnectReason::Requested);
        }
        assert_eq!(DisconnectReason::decode_lenient(&hex!("c10b")), DisconnectReason::ReadTimeout);
    }

    #[test]
    fn display() {
        assert_eq!(DisconnectReason::UselessPeer.to_string(), "useless peer");
        assert_eq!(DisconnectReason::Other(0x0c).to_string(), "unknown disconnect reason 0x0c");
    }
}
