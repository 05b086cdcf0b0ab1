//! Transaction senders and EIP-7702 authorities, recovered with [`crate::crypto::recover`]
//! (alloy-consensus is built without `k256`, so its own `recover_signer` is not available).

use super::body::BlockTransaction;
use crate::crypto::{self, CryptoError, NodePublicKey, RecoverableSignature};
use alloy_eips::eip7702::{SignedAuthorization, constants::SECP256K1N_HALF};
use alloy_primitives::{Address, B256, Signature, keccak256};

/// A signer could not be recovered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderError {
    /// r or s out of range, or no public key recovers from the signature.
    #[error("signature does not recover: {0}")]
    Crypto(#[from] CryptoError),
    /// An EIP-7702 authorization's `yParity` is not 0 or 1.
    #[error("authorization yParity {0} is not 0 or 1")]
    AuthorizationParity(u8),
    /// An EIP-7702 authorization's `s` is above secp256k1n/2, which EIP-7702 declares invalid.
    #[error("authorization s is above secp256k1n/2")]
    AuthorizationHighS,
}

/// The Ethereum address of a 64-byte public key: the last 20 bytes of its keccak256.
pub fn address_from_public_key(public_key: &NodePublicKey) -> Address {
    Address::from_word(keccak256(public_key))
}

fn recover_address(prehash: &B256, signature: &Signature) -> Result<Address, SenderError> {
    let mut bytes: RecoverableSignature = [0u8; 65];
    bytes[..32].copy_from_slice(&signature.r().to_be_bytes::<32>());
    bytes[32..64].copy_from_slice(&signature.s().to_be_bytes::<32>());
    bytes[64] = u8::from(signature.v());
    let public_key = crypto::recover(prehash, &bytes)?;
    Ok(address_from_public_key(&public_key))
}

/// Recovers a transaction's sender from its signature over the signing hash (legacy with and
/// without EIP-155 replay protection, and every typed transaction).
///
/// High `s` values are accepted: EIP-2 made them invalid from Homestead on, but applying that
/// needs the fork schedule, Frontier blocks do contain them, and a transaction that reached
/// this point has already been authenticated by the block's transactions root.
pub fn recover_sender(transaction: &BlockTransaction) -> Result<Address, SenderError> {
    recover_address(&transaction.signature_hash(), transaction.signature())
}

/// Recovers the authority (signer) of an EIP-7702 authorization tuple, which signs
/// `keccak256(0x05 || rlp([chainId, address, nonce]))`.
///
/// Unlike a transaction signature, an invalid authorization can sit in a valid block (it is
/// skipped during execution), so an error here says nothing about the block.
pub fn recover_authority(authorization: &SignedAuthorization) -> Result<Address, SenderError> {
    let parity = authorization.y_parity();
    if parity > 1 {
        return Err(SenderError::AuthorizationParity(parity));
    }
    if authorization.s() > SECP256K1N_HALF {
        return Err(SenderError::AuthorizationHighS);
    }
    let signature = Signature::new(authorization.r(), authorization.s(), parity == 1);
    recover_address(&authorization.inner().signature_hash(), &signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::NodeKey;
    use alloy_consensus::{SignableTransaction, TxEip1559};
    use alloy_eips::eip7702::Authorization;
    use alloy_primitives::U256;

    fn sign(key: &NodeKey, prehash: &B256) -> Signature {
        let raw = key.sign_prehash(prehash);
        Signature::from_bytes_and_parity(&raw[..64], raw[64] == 1)
    }

    #[test]
    fn recovers_the_signer_of_a_typed_transaction() {
        let key = NodeKey::from_bytes(&[0x11; 32]).unwrap();
        let tx = TxEip1559 { chain_id: 1, nonce: 3, gas_limit: 21_000, ..Default::default() };
        let signature = sign(&key, &tx.signature_hash());
        let envelope: BlockTransaction = tx.into_signed(signature).into();
        let expected = address_from_public_key(&key.public_key());
        assert_eq!(recover_sender(&envelope), Ok(expected));
    }

    #[test]
    fn authority_checks_parity_and_low_s() {
        let key = NodeKey::from_bytes(&[0x22; 32]).unwrap();
        let authorization =
            Authorization { chain_id: U256::from(1), address: Address::ZERO, nonce: 0 };
        let signature = sign(&key, &authorization.signature_hash());
        let signed = authorization.clone().into_signed(signature);
        assert_eq!(recover_authority(&signed), Ok(address_from_public_key(&key.public_key())));

        let bad_parity = SignedAuthorization::new_unchecked(
            authorization.clone(),
            2,
            signature.r(),
            signature.s(),
        );
        assert_eq!(recover_authority(&bad_parity), Err(SenderError::AuthorizationParity(2)));

        // The same signature with s mirrored to the upper half recovers the same key, and
        // EIP-7702 forbids exactly that malleability.
        let order = SECP256K1N_HALF * U256::from(2) + U256::from(1);
        let high = SignedAuthorization::new_unchecked(
            authorization,
            u8::from(!signature.v()),
            signature.r(),
            order - signature.s(),
        );
        assert_eq!(recover_authority(&high), Err(SenderError::AuthorizationHighS));
    }
}
