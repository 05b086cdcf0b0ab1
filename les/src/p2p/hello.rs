//! The Hello message: `[protocolVersion, clientId, [[capName, capVersion], ...],
//! listenPort, nodeId, ...]`.
//!
//! Decoding follows EIP-8: list elements after nodeId are ignored (they must still be
//! well-formed RLP items), everything else is strict. Hello is never compressed.

use super::P2P_VERSION;
use super::capability::{Capability, CapabilityError};
use super::disconnect::DisconnectReason;
use crate::crypto::NodePublicKey;
use alloy_rlp::{Decodable, Encodable, Header};

/// Largest Hello payload accepted or produced (geth `baseProtocolMaxMsgSize`).
pub const MAX_HELLO_SIZE: usize = 2 * 1024;

/// Length of the nodeId field: an uncompressed secp256k1 key without its 0x04 prefix.
const NODE_ID_FIELD_LEN: usize = 64;

/// The devp2p Hello message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// p2p protocol version; 5 means snappy. Other values are accepted on receipt.
    pub protocol_version: u64,
    /// Free-form client name, e.g. `Geth/v1.12.0-stable/linux-amd64/go1.20.4`.
    pub client_id: String,
    /// Every (name, version) the sender supports, one entry each.
    pub capabilities: Vec<Capability>,
    /// Legacy listening port; geth sends 0 and nobody reads it.
    pub listen_port: u64,
    /// The sender's 64-byte static public key.
    pub node_id: NodePublicKey,
}

/// Why a Hello could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The payload is larger than [`MAX_HELLO_SIZE`].
    #[error("Hello of {len} bytes exceeds {MAX_HELLO_SIZE}")]
    TooLarge {
        /// Payload length.
        len: usize,
    },
    /// The RLP structure is wrong: not a list, missing fields, non-canonical integers,
    /// malformed trailing elements, or bytes after the list.
    #[error("malformed Hello: {0}")]
    Rlp(alloy_rlp::Error),
    /// The client ID is not UTF-8.
    #[error("Hello client id is not UTF-8")]
    ClientIdNotUtf8,
    /// A capability entry is malformed or has an invalid name.
    #[error("Hello capability #{index}: {source}")]
    Capability {
        /// Position in the capability list.
        index: usize,
        /// What is wrong with it.
        source: CapabilityError,
    },
    /// The nodeId field is not 64 bytes long.
    #[error("Hello node id has {len} bytes, expected {NODE_ID_FIELD_LEN}")]
    NodeIdLength {
        /// Its length.
        len: usize,
    },
}

impl HelloError {
    /// The reason to disconnect with, as geth chooses it: a bad node ID is an invalid
    /// identity, anything else a breach of protocol.
    pub fn disconnect_reason(&self) -> DisconnectReason {
        match self {
            Self::NodeIdLength { .. } => DisconnectReason::InvalidIdentity,
            _ => DisconnectReason::ProtocolError,
        }
    }
}

impl Hello {
    /// Our Hello: current protocol version, listen port 0 (as geth sends).
    pub fn new(
        client_id: impl Into<String>,
        capabilities: Vec<Capability>,
        node_id: NodePublicKey,
    ) -> Self {
        Self {
            protocol_version: P2P_VERSION,
            client_id: client_id.into(),
            capabilities,
            listen_port: 0,
            node_id,
        }
    }

    fn capabilities_length(&self) -> usize {
        self.capabilities.iter().map(Encodable::length).sum()
    }

    fn payload_length(&self) -> usize {
        let caps = self.capabilities_length();
        self.protocol_version.length()
            + self.client_id.as_bytes().length()
            + caps
            + alloy_rlp::length_of_length(caps)
            + self.listen_port.length()
            + self.node_id.as_slice().length()
    }

    /// The Hello payload (msg-data, uncompressed). Fails if a capability name breaks the
    /// rules or the result would exceed [`MAX_HELLO_SIZE`].
    pub fn encode(&self) -> Result<Vec<u8>, HelloError> {
        for (index, cap) in self.capabilities.iter().enumerate() {
            cap.validate().map_err(|source| HelloError::Capability { index, source })?;
        }
        let payload_length = self.payload_length();
        let len = payload_length + alloy_rlp::length_of_length(payload_length);
        if len > MAX_HELLO_SIZE {
            return Err(HelloError::TooLarge { len });
        }
        let mut out = Vec::with_capacity(len);
        Header { list: true, payload_length }.encode(&mut out);
        self.protocol_version.encode(&mut out);
        self.client_id.as_bytes().encode(&mut out);
        Header { list: true, payload_length: self.capabilities_length() }.encode(&mut out);
        for cap in &self.capabilities {
            cap.encode(&mut out);
        }
        self.listen_port.encode(&mut out);
        self.node_id.as_slice().encode(&mut out);
        Ok(out)
    }

    /// Decodes a Hello payload (msg-data, never compressed).
    pub fn decode(payload: &[u8]) -> Result<Self, HelloError> {
        if payload.len() > MAX_HELLO_SIZE {
            return Err(HelloError::TooLarge { len: payload.len() });
        }
        let mut rest = payload;
        let mut fields = Header::decode_bytes(&mut rest, true).map_err(HelloError::Rlp)?;
        if !rest.is_empty() {
            return Err(HelloError::Rlp(alloy_rlp::Error::UnexpectedLength));
        }

        let protocol_version = u64::decode(&mut fields).map_err(HelloError::Rlp)?;
        let client_id = Header::decode_bytes(&mut fields, false).map_err(HelloError::Rlp)?;
        let client_id =
            String::from_utf8(client_id.to_vec()).map_err(|_| HelloError::ClientIdNotUtf8)?;

        let mut cap_items = Header::decode_bytes(&mut fields, true).map_err(HelloError::Rlp)?;
        let mut capabilities = Vec::new();
        while !cap_items.is_empty() {
            let index = capabilities.len();
            let cap = Capability::decode(&mut cap_items)
                .map_err(|source| HelloError::Capability { index, source })?;
            capabilities.push(cap);
        }

        let listen_port = u64::decode(&mut fields).map_err(HelloError::Rlp)?;
        let node_id = Header::decode_bytes(&mut fields, false).map_err(HelloError::Rlp)?;
        let node_id = NodePublicKey::try_from(node_id)
            .map_err(|_| HelloError::NodeIdLength { len: node_id.len() })?;

        // EIP-8: ignore further elements, but each must be a complete RLP item.
        while !fields.is_empty() {
            let header = Header::decode(&mut fields).map_err(HelloError::Rlp)?;
            fields = fields
                .get(header.payload_length..)
                .ok_or(HelloError::Rlp(alloy_rlp::Error::InputTooShort))?;
        }

        Ok(Self { protocol_version, client_id, capabilities, listen_port, node_id })
    }

    /// geth's identity checks on a received Hello, given the public key the RLPx
    /// handshake authenticated: an all-zero node ID is [`DisconnectReason::InvalidIdentity`],
    /// a different one [`DisconnectReason::UnexpectedIdentity`].
    pub fn check_identity(&self, authenticated: &NodePublicKey) -> Result<(), DisconnectReason> {
        if self.node_id.is_zero() {
            return Err(DisconnectReason::InvalidIdentity);
        }
        if self.node_id != *authenticated {
            return Err(DisconnectReason::UnexpectedIdentity);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{B512, hex};

    fn sample() -> Hello {
        let caps = vec![
            Capability::new("les", 2).unwrap(),
            Capability::new("les", 3).unwrap(),
            Capability::new("les", 4).unwrap(),
        ];
        Hello::new("ulc/v0.1.0", caps, B512::repeat_byte(0x11))
    }

    #[test]
    fn encoding_layout() {
        let hello =
            Hello::new("a", vec![Capability::new("les", 4).unwrap()], B512::repeat_byte(0xab));
        let bytes = hello.encode().unwrap();
        let mut expected = hex!("f84c 05 61 c6c5836c657304 80 b840").to_vec();
        expected.extend_from_slice(&[0xab; 64]);
        assert_eq!(bytes, expected);
        assert_eq!(Hello::decode(&bytes), Ok(hello));
    }

    #[test]
    fn round_trip() {
        let hello = sample();
        assert_eq!(Hello::decode(&hello.encode().unwrap()), Ok(hello));
        let empty = Hello { capabilities: vec![], client_id: String::new(), ..sample() };
        assert_eq!(Hello::decode(&empty.encode().unwrap()), Ok(empty));
    }

    #[test]
    fn trailing_elements_are_ignored_but_trailing_bytes_are_not() {
        let hello = sample();
        let bytes = hello.encode().unwrap();
        // Re-wrap the fields with two extra elements: a string and a list.
        let mut fields = Header::decode_bytes(&mut &bytes[..], true).unwrap().to_vec();
        fields.extend_from_slice(&hex!("83666f6f c20304"));
        let mut extended = Vec::new();
        Header { list: true, payload_length: fields.len() }.encode(&mut extended);
        extended.extend_from_slice(&fields);
        assert_eq!(Hello::decode(&extended), Ok(hello.clone()));

        // A malformed extra element is still an error.
        let mut broken_fields = Header::decode_bytes(&mut &bytes[..], true).unwrap().to_vec();
        // A string header promising three bytes with only one present.
        broken_fields.extend_from_slice(&hex!("836f"));
        let mut broken = Vec::new();
        Header { list: true, payload_length: broken_fields.len() }.encode(&mut broken);
        broken.extend_from_slice(&broken_fields);
        assert!(matches!(Hello::decode(&broken), Err(HelloError::Rlp(_))));

        let mut trailing = bytes.clone();
        trailing.push(0x80);
        assert!(matches!(Hello::decode(&trailing), Err(HelloError::Rlp(_))));
    }

    #[test]
    fn strict_fields() {
        let mut hello = sample();
        hello.protocol_version = 0;
        let bytes = hello.encode().unwrap();
        // Outer header f862, then the version.
        assert_eq!(bytes[2], 0x80);
        // Version written as 0x00 instead of 0x80.
        let mut non_canonical = bytes.clone();
        non_canonical[2] = 0x00;
        assert!(matches!(
            Hello::decode(&non_canonical),
            Err(HelloError::Rlp(alloy_rlp::Error::LeadingZero))
        ));

        // Node id of 63 bytes.
        let mut fields = hex!("05 80 c0 80 b83f").to_vec();
        fields.extend_from_slice(&[1; 63]);
        let mut short = Vec::new();
        Header { list: true, payload_length: fields.len() }.encode(&mut short);
        short.extend_from_slice(&fields);
        let err = Hello::decode(&short).unwrap_err();
        assert_eq!(err, HelloError::NodeIdLength { len: 63 });
        assert_eq!(err.disconnect_reason(), DisconnectReason::InvalidIdentity);

        // Missing node id.
        assert!(matches!(Hello::decode(&hex!("c4 05 80 c0 80")), Err(HelloError::Rlp(_))));
        // Not a list.
        assert!(matches!(Hello::decode(&hex!("80")), Err(HelloError::Rlp(_))));
        // Invalid UTF-8 client id.
        let mut bad_id = sample();
        bad_id.client_id = "xx".into();
        let mut bytes = bad_id.encode().unwrap();
        let pos = bytes.iter().position(|&b| b == b'x').unwrap();
        bytes[pos] = 0xff;
        assert_eq!(Hello::decode(&bytes), Err(HelloError::ClientIdNotUtf8));
    }

    #[test]
    fn bad_capabilities_are_rejected_both_ways() {
        let mut hello = sample();
        hello.capabilities.push(Capability { name: "toolongname".into(), version: 1 });
        assert_eq!(
            hello.encode(),
            Err(HelloError::Capability {
                index: 3,
                source: CapabilityError::NameTooLong { len: 11 }
            })
        );
    }

    #[test]
    fn size_limit() {
        let mut hello = sample();
        hello.client_id = "x".repeat(MAX_HELLO_SIZE);
        assert!(matches!(hello.encode(), Err(HelloError::TooLarge { .. })));
        assert!(
            matches!(Hello::decode(&vec![0xc0; MAX_HELLO_SIZE + 1]), Err(HelloError::TooLarge { len }) if len == MAX_HELLO_SIZE + 1)
        );

        // The largest client id that still fits encodes and decodes.
        // Encoded length = 3 (list header) + 1 (version) + 3 + n (client id) + 19 (three
        // capabilities) + 1 (port) + 66 (node id) for 256 <= n < 65536.
        let n = MAX_HELLO_SIZE - 93;
        hello.client_id = "x".repeat(n);
        let bytes = hello.encode().unwrap();
        assert_eq!(bytes.len(), MAX_HELLO_SIZE);
        assert_eq!(Hello::decode(&bytes), Ok(hello.clone()));
        hello.client_id.push('x');
        assert!(
            matches!(hello.encode(), Err(HelloError::TooLarge { len }) if len == MAX_HELLO_SIZE + 1)
        );
    }

    #[test]
    fn identity_checks() {
        let hello = sample();
        assert_eq!(hello.check_identity(&B512::repeat_byte(0x11)), Ok(()));
        assert_eq!(
            hello.check_identity(&B512::repeat_byte(0x12)),
            Err(DisconnectReason::UnexpectedIdentity)
        );
        let zero = Hello { node_id: B512::ZERO, ..sample() };
        assert_eq!(zero.check_identity(&B512::ZERO), Err(DisconnectReason::InvalidIdentity));
    }
}
