//! A block's receipts as LES `Receipts` carries them (one list per block; legacy receipts as
//! lists, typed ones as byte strings wrapping `type || rlp(receipt)`), checked against the
//! header's `receiptsRoot`.

use super::envelope::{EnvelopeError, decode_envelope_list};
use super::{Commitment, RootMismatch};
use alloy_consensus::{Header, ReceiptEnvelope};
use alloy_primitives::B256;

/// The receipts of one block, with the root computed from the bytes they were decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockReceipts {
    receipts: Vec<ReceiptEnvelope>,
    receipts_root: B256,
}

/// A receipt list did not decode or does not belong to the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptsError {
    /// The list or one of its receipts is malformed.
    #[error("receipts: {0}")]
    Decode(#[from] EnvelopeError),
    /// The recomputed receipts root differs from the header's.
    #[error(transparent)]
    Mismatch(#[from] RootMismatch),
}

impl BlockReceipts {
    /// Decodes one block's receipt list (exactly one RLP list) and computes its trie root.
    pub fn decode(rlp: &[u8]) -> Result<Self, ReceiptsError> {
        let (receipts, receipts_root) = decode_envelope_list(rlp)?;
        Ok(Self { receipts, receipts_root })
    }

    /// Decodes one block's receipts as a LES `Receipts` reply holds them (each receipt's
    /// RLP item as received), joining exactly those bytes into the list that is hashed.
    pub fn from_items(items: &[alloy_primitives::Bytes]) -> Result<Self, ReceiptsError> {
        let payload_length = items.iter().map(|item| item.len()).sum();
        let mut list = Vec::with_capacity(payload_length + 9);
        alloy_rlp::Header { list: true, payload_length }.encode(&mut list);
        for item in items {
            list.extend_from_slice(item);
        }
        Self::decode(&list)
    }

    /// Checks the receipts against a trusted header's `receiptsRoot`.
    pub fn verify(&self, header: &Header) -> Result<(), ReceiptsError> {
        Ok(RootMismatch::check(Commitment::ReceiptsRoot, header.receipts_root, self.receipts_root)?)
    }

    /// The receipts, in transaction order.
    pub fn receipts(&self) -> &[ReceiptEnvelope] {
        &self.receipts
    }

    /// The receipts root computed from the received bytes.
    pub fn receipts_root(&self) -> B256 {
        self.receipts_root
    }

    /// The receipts, consumed.
    pub fn into_receipts(self) -> Vec<ReceiptEnvelope> {
        self.receipts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::{EMPTY_ROOT_HASH, Receipt, ReceiptWithBloom};
    use alloy_rlp::Encodable;

    #[test]
    fn empty_list_has_the_empty_root() {
        let receipts = BlockReceipts::decode(&[0xc0]).unwrap();
        assert!(receipts.receipts().is_empty());
        assert_eq!(receipts.receipts_root(), EMPTY_ROOT_HASH);
        let header = Header { receipts_root: EMPTY_ROOT_HASH, ..Header::default() };
        assert_eq!(receipts.verify(&header), Ok(()));
        assert!(matches!(
            receipts.verify(&Header { receipts_root: B256::ZERO, ..Header::default() }),
            Err(ReceiptsError::Mismatch(RootMismatch { commitment: Commitment::ReceiptsRoot, .. }))
        ));
    }

    #[test]
    fn legacy_and_typed_receipts_decode_from_network_form() {
        let receipt = ReceiptWithBloom::<Receipt>::from(Receipt {
            status: true.into(),
            cumulative_gas_used: 21_000,
            logs: vec![],
        });
        let legacy = ReceiptEnvelope::Legacy(receipt.clone());
        let typed = ReceiptEnvelope::Eip1559(receipt);
        let list = vec![legacy.clone(), typed.clone()];
        let mut rlp = Vec::new();
        list.encode(&mut rlp);
        let decoded = BlockReceipts::decode(&rlp).unwrap();
        assert_eq!(decoded.receipts(), &[legacy, typed]);
        assert_eq!(decoded.receipts_root(), alloy_consensus::proofs::calculate_receipt_root(&list));
    }
}
