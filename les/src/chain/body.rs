//! Block bodies as LES `BlockBodies` carries them: `[transactions, uncles]`, plus
//! `[.., withdrawals]` from Shanghai on, checked against the header's commitments.

use super::envelope::{EnvelopeError, decode_envelope_list, list_elements};
use super::header::{HeaderError, SealedHeader};
use super::sender::{SenderError, recover_sender};
use super::{Commitment, RootMismatch};
use alloy_consensus::{EthereumTxEnvelope, Header, TxEip4844};
use alloy_eips::eip2718::Encodable2718;
use alloy_eips::eip4895::Withdrawal;
use alloy_primitives::{Address, B256, keccak256};
use alloy_rlp::Encodable;

/// A transaction as it appears in a block: any EIP-2718 type, blob transactions without their
/// sidecar (sidecars never enter blocks).
pub type BlockTransaction = EthereumTxEnvelope<TxEip4844>;

/// A decoded block body, with the commitments computed from the bytes it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockBody {
    transactions: Vec<BlockTransaction>,
    uncles: Vec<SealedHeader>,
    withdrawals: Option<Vec<Withdrawal>>,
    transactions_root: B256,
    ommers_hash: B256,
    withdrawals_root: Option<B256>,
}

/// A body did not decode or does not belong to the header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is not a list of two or three elements, or has trailing bytes.
    #[error("malformed body: {0}")]
    Rlp(alloy_rlp::Error),
    /// The transaction list did not decode.
    #[error("transactions: {0}")]
    Transactions(EnvelopeError),
    /// An uncle header did not decode.
    #[error("uncle {index}: {source}")]
    Uncle {
        /// Position in the uncle list.
        index: usize,
        /// What was wrong with it.
        source: HeaderError,
    },
    /// The withdrawal list did not decode.
    #[error("withdrawals: {0}")]
    Withdrawals(alloy_rlp::Error),
    /// A recomputed root differs from the header's.
    #[error(transparent)]
    Mismatch(#[from] RootMismatch),
    /// The header has a `withdrawalsRoot` (post-Shanghai) but the body has no withdrawal list.
    #[error("header commits to withdrawals but the body has none")]
    MissingWithdrawals,
    /// The body has a withdrawal list but the header (pre-Shanghai) has no `withdrawalsRoot`.
    #[error("body has withdrawals but the header has no withdrawalsRoot")]
    UnexpectedWithdrawals,
    /// A transaction's sender could not be recovered.
    #[error("transaction {index}: {source}")]
    Sender {
        /// Position in the transaction list.
        index: usize,
        /// Why recovery failed.
        source: SenderError,
    },
}

impl BlockBody {
    /// Decodes a body from its RLP, exactly one list `[transactions, uncles]` or
    /// `[transactions, uncles, withdrawals]` (typed transactions as byte strings wrapping
    /// `type || payload`, legacy ones as lists), and computes its roots from those bytes.
    pub fn decode(rlp: &[u8]) -> Result<Self, BodyError> {
        let elements = list_elements(rlp).map_err(BodyError::Rlp)?;
        let (transactions_item, uncles_item, withdrawals_item) = match elements.as_slice() {
            [transactions, uncles] => (transactions, uncles, None),
            [transactions, uncles, withdrawals] => (transactions, uncles, Some(withdrawals)),
            _ => return Err(BodyError::Rlp(alloy_rlp::Error::UnexpectedLength)),
        };

        let (transactions, transactions_root) =
            decode_envelope_list(transactions_item.full).map_err(BodyError::Transactions)?;

        // The ommers hash is over the uncle list exactly as received.
        let ommers_hash = keccak256(uncles_item.full);
        let uncles = list_elements(uncles_item.full)
            .map_err(BodyError::Rlp)?
            .iter()
            .enumerate()
            .map(|(index, uncle)| {
                SealedHeader::decode(uncle.full)
                    .map_err(|source| BodyError::Uncle { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let (withdrawals, withdrawals_root) = match withdrawals_item {
            None => (None, None),
            Some(item) => {
                let withdrawals: Vec<Withdrawal> =
                    alloy_rlp::decode_exact(item.full).map_err(BodyError::Withdrawals)?;
                let root = alloy_trie::root::ordered_trie_root(&withdrawals);
                (Some(withdrawals), Some(root))
            }
        };

        Ok(Self {
            transactions,
            uncles,
            withdrawals,
            transactions_root,
            ommers_hash,
            withdrawals_root,
        })
    }

    /// Builds a body from parts (e.g. on the serving side), computing its roots from their
    /// canonical encodings.
    pub fn new(
        transactions: Vec<BlockTransaction>,
        uncles: Vec<SealedHeader>,
        withdrawals: Option<Vec<Withdrawal>>,
    ) -> Self {
        let transactions_root =
            alloy_trie::root::ordered_trie_root_with_encoder(&transactions, |tx, out| {
                tx.encode_2718(out)
            });
        let uncle_headers: Vec<&Header> = uncles.iter().map(SealedHeader::header).collect();
        let mut uncles_rlp = Vec::new();
        alloy_rlp::encode_list::<_, Header>(&uncle_headers, &mut uncles_rlp);
        let ommers_hash = keccak256(&uncles_rlp);
        let withdrawals_root = withdrawals.as_deref().map(alloy_trie::root::ordered_trie_root);
        Self { transactions, uncles, withdrawals, transactions_root, ommers_hash, withdrawals_root }
    }

    /// The body's RLP as LES sends it (typed transactions wrapped as byte strings).
    pub fn encode(&self) -> Vec<u8> {
        let mut transactions = Vec::new();
        let payload_length: usize = self.transactions.iter().map(|tx| tx.network_len()).sum();
        alloy_rlp::Header { list: true, payload_length }.encode(&mut transactions);
        for tx in &self.transactions {
            tx.network_encode(&mut transactions);
        }
        let uncle_headers: Vec<&Header> = self.uncles.iter().map(SealedHeader::header).collect();
        let mut uncles = Vec::new();
        alloy_rlp::encode_list::<_, Header>(&uncle_headers, &mut uncles);
        let mut withdrawals = Vec::new();
        if let Some(list) = &self.withdrawals {
            list.encode(&mut withdrawals);
        }
        let payload_length = transactions.len() + uncles.len() + withdrawals.len();
        let mut out = Vec::with_capacity(payload_length + 9);
        alloy_rlp::Header { list: true, payload_length }.encode(&mut out);
        out.extend_from_slice(&transactions);
        out.extend_from_slice(&uncles);
        out.extend_from_slice(&withdrawals);
        out
    }

    /// Checks the body against a trusted header: `transactionsRoot`, `ommersHash`, and
    /// `withdrawalsRoot` (present in both or in neither).
    pub fn verify(&self, header: &Header) -> Result<(), BodyError> {
        RootMismatch::check(
            Commitment::TransactionsRoot,
            header.transactions_root,
            self.transactions_root,
        )?;
        RootMismatch::check(Commitment::OmmersHash, header.ommers_hash, self.ommers_hash)?;
        match (header.withdrawals_root, self.withdrawals_root) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(BodyError::MissingWithdrawals),
            (None, Some(_)) => Err(BodyError::UnexpectedWithdrawals),
            (Some(expected), Some(got)) => {
                Ok(RootMismatch::check(Commitment::WithdrawalsRoot, expected, got)?)
            }
        }
    }

    /// Recovers every transaction's sender, in block order.
    pub fn recover_senders(&self) -> Result<Vec<Address>, BodyError> {
        self.transactions
            .iter()
            .enumerate()
            .map(|(index, tx)| {
                recover_sender(tx).map_err(|source| BodyError::Sender { index, source })
            })
            .collect()
    }

    /// The transactions, in block order.
    pub fn transactions(&self) -> &[BlockTransaction] {
        &self.transactions
    }

    /// The uncle (ommer) headers.
    pub fn uncles(&self) -> &[SealedHeader] {
        &self.uncles
    }

    /// The withdrawals, if the body has the Shanghai third element.
    pub fn withdrawals(&self) -> Option<&[Withdrawal]> {
        self.withdrawals.as_deref()
    }

    /// The transactions root computed from the body.
    pub fn transactions_root(&self) -> B256 {
        self.transactions_root
    }

    /// The ommers hash computed from the body.
    pub fn ommers_hash(&self) -> B256 {
        self.ommers_hash
    }

    /// The withdrawals root computed from the body, if it has withdrawals.
    pub fn withdrawals_root(&self) -> Option<B256> {
        self.withdrawals_root
    }

    /// Splits into transactions, uncles and withdrawals.
    pub fn into_parts(self) -> (Vec<BlockTransaction>, Vec<SealedHeader>, Option<Vec<Withdrawal>>) {
        (self.transactions, self.uncles, self.withdrawals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::sender::address_from_public_key;
    use crate::crypto::NodeKey;
    use alloy_consensus::{
        EMPTY_OMMER_ROOT_HASH, EMPTY_ROOT_HASH, SignableTransaction, TxEip1559, TxLegacy,
    };
    use alloy_primitives::Signature;

    fn signed<T: SignableTransaction<Signature>>(
        key: &NodeKey,
        tx: T,
    ) -> alloy_consensus::Signed<T> {
        let raw = key.sign_prehash(&tx.signature_hash());
        tx.into_signed(Signature::from_bytes_and_parity(&raw[..64], raw[64] == 1))
    }

    fn sample_body(withdrawals: Option<Vec<Withdrawal>>) -> (BlockBody, Address) {
        let key = NodeKey::from_bytes(&[0x33; 32]).unwrap();
        let legacy =
            TxLegacy { chain_id: Some(1), nonce: 0, gas_limit: 21_000, ..Default::default() };
        let typed = TxEip1559 { chain_id: 1, nonce: 1, gas_limit: 21_000, ..Default::default() };
        let transactions: Vec<BlockTransaction> =
            vec![signed(&key, legacy).into(), signed(&key, typed).into()];
        (
            BlockBody::new(transactions, vec![], withdrawals),
            address_from_public_key(&key.public_key()),
        )
    }

    fn header_for(body: &BlockBody) -> Header {
        Header {
            transactions_root: body.transactions_root(),
            ommers_hash: body.ommers_hash(),
            withdrawals_root: body.withdrawals_root(),
            ..Header::default()
        }
    }

    #[test]
    fn round_trips_and_verifies() {
        let withdrawals =
            vec![Withdrawal { index: 1, validator_index: 2, address: Address::ZERO, amount: 3 }];
        let (body, sender) = sample_body(Some(withdrawals));
        let decoded = BlockBody::decode(&body.encode()).unwrap();
        assert_eq!(decoded, body);
        assert_eq!(decoded.ommers_hash(), EMPTY_OMMER_ROOT_HASH);
        assert_eq!(decoded.verify(&header_for(&body)), Ok(()));
        assert_eq!(decoded.recover_senders(), Ok(vec![sender, sender]));
    }

    #[test]
    fn withdrawals_must_match_the_header_fork() {
        let (pre_shanghai, _) = sample_body(None);
        let (post_shanghai, _) = sample_body(Some(vec![]));
        assert_eq!(post_shanghai.withdrawals_root(), Some(EMPTY_ROOT_HASH));
        assert_eq!(
            pre_shanghai.verify(&header_for(&post_shanghai)),
            Err(BodyError::MissingWithdrawals)
        );
        assert_eq!(
            post_shanghai.verify(&header_for(&pre_shanghai)),
            Err(BodyError::UnexpectedWithdrawals)
        );
    }

    #[test]
    fn an_uncle_changes_the_ommers_hash() {
        let (body, _) = sample_body(None);
        let header = header_for(&body);
        let (transactions, _, _) = body.into_parts();
        let uncle = SealedHeader::seal(Header { number: 1, ..Header::default() });
        let with_uncle =
            BlockBody::decode(&BlockBody::new(transactions, vec![uncle.clone()], None).encode())
                .unwrap();
        assert_eq!(with_uncle.uncles(), &[uncle]);
        assert!(matches!(
            with_uncle.verify(&header),
            Err(BodyError::Mismatch(RootMismatch { commitment: Commitment::OmmersHash, .. }))
        ));
    }

    #[test]
    fn rejects_malformed_shapes() {
        assert_eq!(
            BlockBody::decode(&[0xc1, 0xc0]),
            Err(BodyError::Rlp(alloy_rlp::Error::UnexpectedLength))
        );
        assert_eq!(
            BlockBody::decode(&[0xc4, 0xc0, 0xc0, 0xc0, 0xc0]),
            Err(BodyError::Rlp(alloy_rlp::Error::UnexpectedLength))
        );
        assert!(BlockBody::decode(&[0xc2, 0xc0, 0xc0]).is_ok());
        assert_eq!(
            BlockBody::decode(&[0xc2, 0xc0, 0xc0, 0x00]),
            Err(BodyError::Rlp(alloy_rlp::Error::UnexpectedLength))
        );
    }
}
