//! Signed head announcements: the value a server signs when it announces a new chain head
//! to clients that asked for `announceType = 2`, and the checks a client makes on it.
//!
//! The signed message is `keccak256(rlp([headHash, headNumber, headTd]))` (TD as a minimal
//! big-endian integer; the announcement's `reorgDepth` is *not* covered), signed with the
//! server's static node key as a 65-byte `r || s || v` recoverable signature. A signature is
//! valid when the public key recovered from it hashes to the node ID of the server that the
//! RLPx handshake authenticated (geth `announceData.sign` / `checkSignature`).
//!
//! This module deals only with head values and signatures. Carrying the signature on the
//! wire (the `"sign"` entry of the LES Announce message's key/value list) belongs to the
//! message layer.
//!
//! Beyond what geth checks, a signature with a high `s` (above half the curve order) is
//! refused. libsecp256k1, and so every geth server, only produces low-`s` signatures, and
//! refusing the other form makes a stored [`SignedAnnouncement`] non-malleable: one head and
//! one signer have one valid encoding per nonce, so evidence cannot be re-encoded.

use crate::crypto::{self, CryptoError, NodeId, NodeKey, RecoverableSignature};
use alloy_primitives::{B256, U256, keccak256};
use alloy_rlp::{RlpDecodable, RlpEncodable};

/// Why a signed announcement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    /// The 65 bytes are not a usable signature: `r` or `s` out of range, `s` in the high
    /// half, a recovery byte other than 0 or 1, or no public key recoverable from it.
    #[error("malformed announcement signature: {0}")]
    MalformedSignature(CryptoError),
    /// The signature is well formed but was made by another key (or over another head).
    #[error("announcement signed by {recovered}, expected {expected}")]
    WrongSigner {
        /// The node ID the announcement was supposed to come from.
        expected: NodeId,
        /// The node ID whose key made this signature over this head.
        recovered: NodeId,
    },
}

/// A chain head as a server announces it: the part of an LES Announce that the signature
/// covers.
///
/// Its RLP encoding (derived) is exactly the signed message `rlp([hash, number, td])`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, RlpEncodable, RlpDecodable)]
pub struct AnnouncedHead {
    /// Hash of the head block header.
    pub hash: B256,
    /// Number of the head block.
    pub number: u64,
    /// Total difficulty at the head (constant after the merge: the terminal TD).
    pub td: U256,
}

impl AnnouncedHead {
    /// The 32-byte value that is signed: `keccak256(rlp([hash, number, td]))`.
    pub fn signing_hash(&self) -> B256 {
        keccak256(alloy_rlp::encode(self))
    }

    /// Signs this head with a server's static node key.
    pub fn sign(&self, key: &NodeKey) -> RecoverableSignature {
        key.sign_prehash(&self.signing_hash())
    }

    /// Signs this head and bundles head and signature into storable evidence.
    pub fn signed(self, key: &NodeKey) -> SignedAnnouncement {
        let signature = self.sign(key);
        SignedAnnouncement { head: self, signature }
    }

    /// The node ID whose key made `signature` over this head.
    pub fn recover_signer(
        &self,
        signature: &RecoverableSignature,
    ) -> Result<NodeId, AnnounceError> {
        reject_high_s(signature)?;
        crypto::recover_node_id(&self.signing_hash(), signature)
            .map_err(AnnounceError::MalformedSignature)
    }

    /// Checks that `signature` over this head was made by the node `expected_signer`.
    pub fn verify(
        &self,
        signature: &RecoverableSignature,
        expected_signer: &NodeId,
    ) -> Result<(), AnnounceError> {
        let recovered = self.recover_signer(signature)?;
        if recovered == *expected_signer {
            Ok(())
        } else {
            Err(AnnounceError::WrongSigner { expected: *expected_signer, recovered })
        }
    }
}

/// A head together with its signature: self-contained evidence that some server announced
/// this head, which can be persisted and re-verified later without the connection it came
/// from.
///
/// The RLP encoding (derived, for persistence) is `[[hash, number, td], signature]`; decode
/// it with `alloy_rlp::decode_exact`, which refuses non-canonical integers and trailing bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct SignedAnnouncement {
    /// The announced head.
    pub head: AnnouncedHead,
    /// `r || s || v` over [`AnnouncedHead::signing_hash`].
    pub signature: RecoverableSignature,
}

impl SignedAnnouncement {
    /// The node ID of the key that signed this head.
    pub fn signer(&self) -> Result<NodeId, AnnounceError> {
        self.head.recover_signer(&self.signature)
    }

    /// Checks that the node `expected_signer` signed this head.
    pub fn verify(&self, expected_signer: &NodeId) -> Result<(), AnnounceError> {
        self.head.verify(&self.signature, expected_signer)
    }
}

/// Refuses a signature whose `s` lies in the upper half of the curve order.
///
/// `crypto::recover` accepts both forms (k256's recovery does not look at `s`'s half); the
/// rationale for refusing here is in the module documentation.
fn reject_high_s(signature: &RecoverableSignature) -> Result<(), AnnounceError> {
    let malformed = AnnounceError::MalformedSignature(CryptoError::MalformedSignature);
    let parsed =
        k256::ecdsa::Signature::from_slice(&signature[..64]).map_err(|_| malformed.clone())?;
    if parsed.normalize_s() != parsed {
        return Err(malformed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{b256, hex};

    /// EIP-8 "Static Key B", the server key of the research §3.4 vector.
    const STATIC_KEY_B: [u8; 32] =
        hex!("b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291");
    const NODE_ID_B: B256 =
        b256!("a448f24c6d18e575453db13171562b71999873db5b286df957af199ec94617f7");
    /// secp256k1 group order n.
    const CURVE_ORDER: U256 = U256::from_be_bytes(hex!(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
    ));

    /// The research §3.4 signed-announce vector.
    fn vector_head() -> AnnouncedHead {
        AnnouncedHead {
            hash: keccak256(b"les-announce-test-block"),
            number: 12_345_678,
            td: U256::from_be_slice(&hex!("0c70d815d562d3cfa955")),
        }
    }

    const VECTOR_SIGNATURE: RecoverableSignature = hex!(
        "fcfe4bcddbcb4e06ae695c323d3fd13faddbec4720a0e0b76d42d6931dca297f"
        "3bffd1171565e9589e572bcc1cea1b86d219b484c94704c753b99a06d58c2bca00"
    );

    fn key_b() -> NodeKey {
        NodeKey::from_bytes(&STATIC_KEY_B).unwrap()
    }

    #[test]
    fn vector_message_and_hash() {
        let head = vector_head();
        assert_eq!(
            head.hash,
            b256!("8371d7ce39a84aaaf59ba23ba00e5f61868db2543bb3089f73712c4fedce5d6c")
        );
        assert_eq!(head.td, U256::from(58_750_003_716_598_352_816_469_u128));
        assert_eq!(
            alloy_rlp::encode(head),
            hex!(
                "f0a08371d7ce39a84aaaf59ba23ba00e5f61868db2543bb3089f73712c4fedce5d6c"
                "83bc614e8a0c70d815d562d3cfa955"
            )
        );
        assert_eq!(
            head.signing_hash(),
            b256!("56d566d5171d0092e5582c92a90f6f3f3ce74e708d085f71e05e743b2ebba937")
        );
    }

    #[test]
    fn vector_signature_recovers_node_b() {
        let head = vector_head();
        assert_eq!(head.recover_signer(&VECTOR_SIGNATURE), Ok(NODE_ID_B));
        assert_eq!(head.verify(&VECTOR_SIGNATURE, &NODE_ID_B), Ok(()));
        let evidence = SignedAnnouncement { head, signature: VECTOR_SIGNATURE };
        assert_eq!(evidence.signer(), Ok(NODE_ID_B));
    }

    #[test]
    fn our_signature_with_key_b_recovers_node_b() {
        let head = vector_head();
        let key = key_b();
        assert_eq!(key.node_id(), NODE_ID_B);
        let signature = head.sign(&key);
        assert_eq!(head.verify(&signature, &NODE_ID_B), Ok(()));
        let evidence = head.signed(&key);
        assert_eq!(evidence.signature, signature);
        assert_eq!(evidence.verify(&NODE_ID_B), Ok(()));
    }

    #[test]
    fn zero_td_encodes_as_empty_string() {
        let head = AnnouncedHead { hash: B256::ZERO, number: 0, td: U256::ZERO };
        let mut expected = vec![0xe3, 0xa0];
        expected.extend_from_slice(&[0u8; 32]);
        expected.extend_from_slice(&[0x80, 0x80]);
        assert_eq!(alloy_rlp::encode(head), expected);
    }

    #[test]
    fn tampered_heads_fail_with_wrong_signer() {
        let head = vector_head();
        let tampered = [
            AnnouncedHead { number: head.number + 1, ..head },
            AnnouncedHead { td: head.td + U256::from(1), ..head },
            AnnouncedHead { hash: keccak256(b"another block"), ..head },
        ];
        for other in tampered {
            match other.verify(&VECTOR_SIGNATURE, &NODE_ID_B) {
                Err(AnnounceError::WrongSigner { expected, recovered }) => {
                    assert_eq!(expected, NODE_ID_B);
                    assert_ne!(recovered, NODE_ID_B);
                }
                // Recovery over an unrelated hash may also find no key at all.
                Err(AnnounceError::MalformedSignature(CryptoError::RecoveryFailed)) => {}
                result => panic!("tampered {other:?} verified: {result:?}"),
            }
        }
    }

    #[test]
    fn other_key_is_wrong_signer() {
        let head = vector_head();
        let other = NodeKey::from_bytes(&[7u8; 32]).unwrap();
        let signature = head.sign(&other);
        assert_eq!(
            head.verify(&signature, &NODE_ID_B),
            Err(AnnounceError::WrongSigner { expected: NODE_ID_B, recovered: other.node_id() })
        );
    }

    #[test]
    fn high_s_is_refused_although_it_recovers() {
        let head = vector_head();
        // (r, n - s, v ^ 1) is the same signature in its high-s form.
        let s = U256::from_be_slice(&VECTOR_SIGNATURE[32..64]);
        let mut high = VECTOR_SIGNATURE;
        high[32..64].copy_from_slice(&(CURVE_ORDER - s).to_be_bytes::<32>());
        high[64] ^= 1;
        // The bare recovery accepts it, which is why the explicit check exists.
        assert_eq!(crypto::recover_node_id(&head.signing_hash(), &high), Ok(NODE_ID_B));
        assert_eq!(
            head.verify(&high, &NODE_ID_B),
            Err(AnnounceError::MalformedSignature(CryptoError::MalformedSignature))
        );
    }

    #[test]
    fn malformed_signatures_are_refused_without_panic() {
        let head = vector_head();
        let mut v27 = VECTOR_SIGNATURE;
        v27[64] = 27;
        let mut r_too_big = VECTOR_SIGNATURE;
        r_too_big[..32].copy_from_slice(&[0xff; 32]);
        let mut s_zero = VECTOR_SIGNATURE;
        s_zero[32..64].copy_from_slice(&[0; 32]);
        for bad in [v27, [0u8; 65], [0xff; 65], r_too_big, s_zero] {
            assert!(
                matches!(head.verify(&bad, &NODE_ID_B), Err(AnnounceError::MalformedSignature(_))),
                "accepted {bad:?}"
            );
        }
        // Arbitrary in-range bytes: refused one way or the other, never accepted.
        for seed in 0u8..32 {
            let mut garbage = [0u8; 65];
            garbage[..32].copy_from_slice(keccak256([seed, 1]).as_slice());
            garbage[32..64].copy_from_slice(keccak256([seed, 2]).as_slice());
            garbage[64] = seed & 1;
            assert!(head.verify(&garbage, &NODE_ID_B).is_err());
        }
    }

    #[test]
    fn evidence_round_trips_through_strict_rlp() {
        let evidence = vector_head().signed(&key_b());
        let bytes = alloy_rlp::encode(evidence);
        let decoded: SignedAnnouncement = alloy_rlp::decode_exact(&bytes).unwrap();
        assert_eq!(decoded, evidence);
        assert_eq!(decoded.signer(), Ok(NODE_ID_B));

        let mut trailing = bytes.clone();
        trailing.push(0x80);
        assert!(alloy_rlp::decode_exact::<SignedAnnouncement>(&trailing).is_err());

        // The same head with the number written with a leading zero byte.
        let mut inner = Vec::new();
        alloy_rlp::Encodable::encode(&evidence.head.hash, &mut inner);
        inner.extend_from_slice(&hex!("8400bc614e"));
        alloy_rlp::Encodable::encode(&evidence.head.td, &mut inner);
        let mut head_list = Vec::new();
        alloy_rlp::Header { list: true, payload_length: inner.len() }.encode(&mut head_list);
        head_list.extend_from_slice(&inner);
        let mut outer = head_list;
        alloy_rlp::Encodable::encode(&evidence.signature, &mut outer);
        let mut non_canonical = Vec::new();
        alloy_rlp::Header { list: true, payload_length: outer.len() }.encode(&mut non_canonical);
        non_canonical.extend_from_slice(&outer);
        assert_eq!(
            alloy_rlp::decode_exact::<SignedAnnouncement>(&non_canonical),
            Err(alloy_rlp::Error::LeadingZero)
        );
    }
}
