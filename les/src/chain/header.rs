//! Block headers: strict decoding, the block hash, and parent-hash chains.

use alloy_consensus::Header;
use alloy_primitives::{B256, keccak256};

/// The block hash of a header given as its exact consensus RLP.
pub fn header_hash(rlp: &[u8]) -> B256 {
    keccak256(rlp)
}

/// A header together with its block hash.
///
/// The hash is always computed here (from the exact bytes received, or from the encoding of a
/// header built locally), never taken from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedHeader {
    header: Header,
    hash: B256,
}

/// A header did not decode, or is not the header that was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not one well-formed header list (including trailing bytes after it).
    #[error("malformed header RLP: {0}")]
    Rlp(alloy_rlp::Error),
    /// The header hashes to something other than the hash it was requested by.
    #[error("header hash {got} is not the expected {expected}")]
    HashMismatch {
        /// The hash that was asked for.
        expected: B256,
        /// The hash of the header received.
        got: B256,
    },
}

impl SealedHeader {
    /// Decodes one header from its consensus RLP, which must be exactly `rlp` (no trailing
    /// bytes), and hashes those bytes.
    pub fn decode(rlp: &[u8]) -> Result<Self, HeaderError> {
        let header: Header = alloy_rlp::decode_exact(rlp).map_err(HeaderError::Rlp)?;
        Ok(Self { header, hash: header_hash(rlp) })
    }

    /// Decodes a header that was requested by hash and checks it is that header.
    pub fn decode_expecting(rlp: &[u8], expected: B256) -> Result<Self, HeaderError> {
        let sealed = Self::decode(rlp)?;
        if sealed.hash != expected {
            return Err(HeaderError::HashMismatch { expected, got: sealed.hash });
        }
        Ok(sealed)
    }

    /// Seals a locally built header by encoding and hashing it.
    pub fn seal(header: Header) -> Self {
        let hash = header.hash_slow();
        Self { header, hash }
    }

    /// The block hash.
    pub fn hash(&self) -> B256 {
        self.hash
    }

    /// The header fields.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The block number.
    pub fn number(&self) -> u64 {
        self.header.number
    }

    /// The parent block's hash.
    pub fn parent_hash(&self) -> B256 {
        self.header.parent_hash
    }

    /// The consensus RLP encoding (what [`Self::hash`] is the keccak256 of).
    pub fn encoded(&self) -> Vec<u8> {
        alloy_rlp::encode(&self.header)
    }

    /// Splits into header and hash.
    pub fn into_parts(self) -> (Header, B256) {
        (self.header, self.hash)
    }
}

/// A run of headers does not descend to the trusted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A header's hash is not its child's `parentHash`.
    #[error("block {child_number}: parentHash {expected} but the next header hashes to {got}")]
    ParentHashMismatch {
        /// Number of the child whose `parentHash` was checked.
        child_number: u64,
        /// The child's `parentHash`.
        expected: B256,
        /// The hash of the header offered as its parent.
        got: B256,
    },
    /// A header's number is not one less than its child's.
    #[error("expected block number {expected:?}, got {got}")]
    NumberNotConsecutive {
        /// The child's number minus one (`None` below the genesis block).
        expected: Option<u64>,
        /// The number of the header offered as the parent.
        got: u64,
    },
}

/// Checks that `headers` are the ancestors of the trusted `anchor`, newest first:
/// `headers[0]` is the anchor's parent, `headers[1]` its grandparent, and so on (the order of a
/// `GetBlockHeaders` reply with `reverse = 1` starting at the anchor's parent).
///
/// Each link is checked by hash (`child.parentHash == keccak256(parent)`), so trust flows from
/// the anchor down the run; numbers must also step down by one.
pub fn verify_chain(headers: &[SealedHeader], anchor: &SealedHeader) -> Result<(), ChainError> {
    let mut child = anchor;
    for parent in headers {
        let expected_number = child.number().checked_sub(1);
        if expected_number != Some(parent.number()) {
            return Err(ChainError::NumberNotConsecutive {
                expected: expected_number,
                got: parent.number(),
            });
        }
        if child.parent_hash() != parent.hash() {
            return Err(ChainError::ParentHashMismatch {
                child_number: child.number(),
                expected: child.parent_hash(),
                got: parent.hash(),
            });
        }
        child = parent;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child_of(parent: &SealedHeader) -> SealedHeader {
        SealedHeader::seal(Header {
            parent_hash: parent.hash(),
            number: parent.number() + 1,
            ..Header::default()
        })
    }

    #[test]
    fn decode_rejects_trailing_bytes_and_hashes_the_input() {
        let header = SealedHeader::seal(Header { number: 7, ..Header::default() });
        let mut rlp = header.encoded();
        let decoded = SealedHeader::decode(&rlp).unwrap();
        assert_eq!(decoded, header);
        assert_eq!(decoded.hash(), keccak256(&rlp));
        rlp.push(0x80);
        assert!(matches!(SealedHeader::decode(&rlp), Err(HeaderError::Rlp(_))));
    }

    #[test]
    fn decode_expecting_checks_the_hash() {
        let header = SealedHeader::seal(Header::default());
        let rlp = header.encoded();
        assert!(SealedHeader::decode_expecting(&rlp, header.hash()).is_ok());
        assert_eq!(
            SealedHeader::decode_expecting(&rlp, B256::ZERO),
            Err(HeaderError::HashMismatch { expected: B256::ZERO, got: header.hash() })
        );
    }

    #[test]
    fn chain_links_by_hash_and_number() {
        let genesis = SealedHeader::seal(Header::default());
        let one = child_of(&genesis);
        let two = child_of(&one);
        let three = child_of(&two);
        assert_eq!(verify_chain(&[two, one.clone(), genesis.clone()], &three), Ok(()));
        assert_eq!(verify_chain(&[], &three), Ok(()));
        // Skipping a block breaks the numbering.
        assert_eq!(
            verify_chain(std::slice::from_ref(&one), &three),
            Err(ChainError::NumberNotConsecutive { expected: Some(2), got: 1 })
        );
        // A header with the right number but another parent is not an ancestor.
        let impostor = SealedHeader::seal(Header { number: 2, gas_used: 1, ..Header::default() });
        assert!(matches!(
            verify_chain(&[impostor], &three),
            Err(ChainError::ParentHashMismatch { child_number: 3, .. })
        ));
        // Nothing precedes genesis.
        assert_eq!(
            verify_chain(std::slice::from_ref(&genesis), &genesis),
            Err(ChainError::NumberNotConsecutive { expected: None, got: 0 })
        );
    }
}
