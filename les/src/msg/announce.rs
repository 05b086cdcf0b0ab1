//! The Announce message (code 0x01): a server's new head, and/or parameter updates in its
//! key/value list, optionally signed (the `sign` entry). Signing and verifying are the
//! `announce` module's job; this is the wire form.

use super::codec::{ListReader, encode_as_list};
use super::{KvList, MsgError};
use crate::crypto::RecoverableSignature;
use alloy_primitives::{B256, U256};

/// Key of the signature entry in a signed announcement; its value is the 65-byte string
/// `r || s || v`.
pub const SIGNATURE_KEY: &str = "sign";

/// A geth client disconnects a server announcing a total difficulty wider than this.
pub const MAX_ANNOUNCED_TD_BITS: usize = 100;

/// `[headHash, headNumber, headTd, reorgDepth, [[key, value], ...]]`, always five elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The new head's hash; all zeros for a parameter-only update.
    pub head_hash: B256,
    /// The new head's number.
    pub head_number: u64,
    /// The new head's total difficulty.
    pub head_td: U256,
    /// Blocks from the previously announced head back to the common ancestor.
    pub reorg_depth: u64,
    /// Parameter updates (e.g. `flowControl/BL`, `flowControl/MRR`) and the signature.
    pub params: KvList,
}

impl Announce {
    /// A head announcement without parameters (add a signature with
    /// [`Announce::with_signature`]).
    pub fn new(head_hash: B256, head_number: u64, head_td: U256, reorg_depth: u64) -> Self {
        Self { head_hash, head_number, head_td, reorg_depth, params: KvList::new() }
    }

    /// A parameter-only update: zero hash, number, TD and reorg depth, as geth sends it.
    pub fn parameter_update(params: KvList) -> Self {
        Self { head_hash: B256::ZERO, head_number: 0, head_td: U256::ZERO, reorg_depth: 0, params }
    }

    /// Decodes an Announce payload.
    pub fn decode(payload: &[u8]) -> Result<Self, MsgError> {
        let mut list = ListReader::top_level(payload, "Announce")?.with_count(5)?;
        Ok(Self {
            head_hash: list.value("Announce headHash")?,
            head_number: list.value("Announce headNumber")?,
            head_td: list.value("Announce headTd")?,
            reorg_depth: list.value("Announce reorgDepth")?,
            params: KvList::read(list.list("Announce parameters")?)?,
        })
    }

    /// Whether this only updates parameters (zero head hash): not a head, clients must not
    /// treat it as one.
    pub fn is_parameter_update(&self) -> bool {
        self.head_hash == B256::ZERO
    }

    /// Whether the TD fits the width geth clients accept ([`MAX_ANNOUNCED_TD_BITS`]).
    pub fn head_td_within_limit(&self) -> bool {
        self.head_td.bit_len() <= MAX_ANNOUNCED_TD_BITS
    }

    /// The `sign` entry's signature, `None` if absent; an error if its value is not a
    /// 65-byte string.
    pub fn signature(&self) -> Result<Option<RecoverableSignature>, MsgError> {
        self.params.get::<RecoverableSignature>(SIGNATURE_KEY)
    }

    /// This announcement with its `sign` entry set to `signature` (appended, as geth does,
    /// or replacing an existing one in place).
    pub fn with_signature(mut self, signature: &RecoverableSignature) -> Self {
        self.params.insert(SIGNATURE_KEY, signature);
        self
    }
}

encode_as_list!(Announce, |this| [
    &this.head_hash,
    &this.head_number,
    &this.head_td,
    &this.reorg_depth,
    &this.params,
]);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::codec::ListOf;
    use alloy_primitives::hex;

    #[test]
    fn parameter_update_encoding() {
        let mut params = KvList::new();
        params.insert("flowControl/MRR", &16_000u64);
        let announce = Announce::parameter_update(params);
        assert!(announce.is_parameter_update());
        let encoded = alloy_rlp::encode(&announce);
        let mut expected = hex!("f8 39 a0").to_vec();
        expected.extend_from_slice(&[0; 32]);
        expected.extend_from_slice(&hex!("808080 d4 d3 8f666c6f77436f6e74726f6c2f4d5252 823e80"));
        assert_eq!(encoded, expected);
        assert_eq!(Announce::decode(&encoded).unwrap(), announce);
    }

    #[test]
    fn always_five_elements() {
        // Four elements (no key/value list) and six elements are both refused.
        let four = alloy_rlp::encode(ListOf(&[&B256::ZERO, &0u64, &0u64, &0u64]));
        let six =
            alloy_rlp::encode(ListOf(&[&B256::ZERO, &0u64, &0u64, &0u64, &KvList::new(), &0u64]));
        for (bad, found) in [(four, 4), (six, 6)] {
            assert_eq!(
                Announce::decode(&bad),
                Err(MsgError::WrongElementCount { context: "Announce", expected: 5, found })
            );
        }
    }

    #[test]
    fn signature_value_must_be_65_bytes() {
        let mut announce = Announce::parameter_update(KvList::new());
        assert_eq!(announce.signature(), Ok(None));
        announce.params.insert(SIGNATURE_KEY, &[7u8; 64]);
        assert!(announce.signature().is_err());
        let announce = announce.with_signature(&[9u8; 65]);
        assert_eq!(announce.signature(), Ok(Some([9u8; 65])));
        assert_eq!(announce.params.len(), 1);
    }

    #[test]
    fn td_width_limit() {
        let mut announce = Announce::parameter_update(KvList::new());
        announce.head_td = (U256::from(1) << 100) - U256::from(1);
        assert!(announce.head_td_within_limit());
        announce.head_td = U256::from(1) << 100;
        assert!(!announce.head_td_within_limit());
    }
}
