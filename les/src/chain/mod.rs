//! Chain data a light client fetches from an untrusted server, and the checks that tie it to a
//! header it already trusts: headers (hash and parent links), block bodies (transactions,
//! uncles, withdrawals), receipts, and Merkle-Patricia state proofs.
//!
//! Values are alloy types (`alloy-consensus` headers, transactions and receipts, `alloy-eips`
//! withdrawals, `alloy-trie` accounts and proof verification). This module adds what LES needs
//! on top: strict decoding of the network forms a server sends, root recomputation from the
//! exact bytes received, sender recovery through [`crate::crypto::recover`] (alloy-consensus is
//! built without its `k256` feature), and walking the unordered node sets of `ProofsV2` replies.

mod body;
mod envelope;
mod header;
mod proof;
mod receipts;
mod sender;

pub use body::{BlockBody, BlockTransaction, BodyError};
pub use envelope::EnvelopeError;
pub use header::{ChainError, HeaderError, SealedHeader, header_hash, verify_chain};
pub use proof::{
    CodeError, NodeSet, ProofError, account_key, storage_key, verify_account,
    verify_account_and_storage, verify_account_proof, verify_code, verify_storage,
    verify_storage_proof,
};
pub use receipts::{BlockReceipts, ReceiptsError};
pub use sender::{SenderError, address_from_public_key, recover_authority, recover_sender};

use alloy_primitives::B256;

/// A header commitment that block data is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commitment {
    /// `transactionsRoot`: ordered trie of the EIP-2718 transaction encodings.
    TransactionsRoot,
    /// `ommersHash` (`sha3Uncles`): keccak256 of the RLP list of uncle headers.
    OmmersHash,
    /// `withdrawalsRoot` (Shanghai): ordered trie of the RLP withdrawals.
    WithdrawalsRoot,
    /// `receiptsRoot`: ordered trie of the EIP-2718 receipt encodings.
    ReceiptsRoot,
}

/// Received data does not hash to what the trusted header commits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{commitment:?} mismatch: header has {expected}, data gives {got}")]
pub struct RootMismatch {
    /// Which header field disagreed.
    pub commitment: Commitment,
    /// The value in the trusted header.
    pub expected: B256,
    /// The value computed from the received data.
    pub got: B256,
}

impl RootMismatch {
    /// `Ok` if the values agree, else the mismatch.
    fn check(commitment: Commitment, expected: B256, got: B256) -> Result<(), Self> {
        if expected == got { Ok(()) } else { Err(Self { commitment, expected, got }) }
    }
}
