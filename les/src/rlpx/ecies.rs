//! ECIES exactly as the RLPx handshake uses it (go-ethereum `crypto/ecies` with the
//! secp256k1 / AES-128 / SHA-256 parameter set): the only public-key encryption in devp2p.
//!
//! Ciphertext layout: `0x04 || R.x || R.y || iv(16) || AES-128-CTR(kE, iv, m) ||
//! HMAC-SHA256(kM, iv || c || auth_data)`, where `R` is a one-time ephemeral public key,
//! `z` = x-coordinate of the ECDH point, `kE || k2 = SHA256(00000001 || z)` (the NIST SP
//! 800-56 concatenation KDF, one block, empty shared info s1) and `kM = SHA256(k2)`.
//! The auth data is the "s2" shared info; RLPx passes the 2-byte size prefix there, so the
//! prefix is authenticated.

use crate::crypto::{CryptoError, NodeKey, NodePublicKey, random_bytes};
use aes::cipher::{KeyIvInit, StreamCipher};
use alloy_primitives::B256;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bytes ECIES adds to a plaintext: 65 (ephemeral point) + 16 (iv) + 32 (tag).
pub const ECIES_OVERHEAD: usize = EPHEMERAL_POINT_LEN + IV_LEN + TAG_LEN;

/// SEC1 uncompressed point: `0x04 || X || Y`.
const EPHEMERAL_POINT_LEN: usize = 65;
/// The SEC1 tag of an uncompressed point, the only form geth reads here.
const UNCOMPRESSED_POINT_TAG: u8 = 0x04;
const IV_LEN: usize = 16;
const TAG_LEN: usize = 32;
/// HMAC-SHA256 works on 64-byte blocks; see [`mac_key`].
const SHA256_BLOCK_LEN: usize = 64;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;
type HmacSha256 = Hmac<Sha256>;

/// Why an ECIES message could not be produced or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EciesError {
    /// The ciphertext is shorter than the fixed ECIES overhead.
    #[error("ECIES ciphertext of {len} bytes is shorter than the {ECIES_OVERHEAD}-byte overhead")]
    TooShort {
        /// Length of the ciphertext received.
        len: usize,
    },
    /// The first 65 bytes are not an uncompressed secp256k1 point.
    #[error("ECIES ephemeral public key is not an uncompressed curve point")]
    InvalidEphemeralKey,
    /// The HMAC tag does not match: wrong recipient key, wrong auth data, or tampering.
    #[error("ECIES message authentication failed")]
    TagMismatch,
    /// The recipient key is not a curve point, or randomness failed.
    #[error("ECIES key error: {0}")]
    Crypto(#[from] CryptoError),
}

/// Encrypts `plaintext` to `remote` with a caller-chosen ephemeral key and IV; the
/// deterministic form, for test vectors. Use [`encrypt_random`] on the wire.
pub fn encrypt(
    remote: &NodePublicKey,
    plaintext: &[u8],
    auth_data: &[u8],
    ephemeral: &NodeKey,
    iv: [u8; 16],
) -> Result<Vec<u8>, EciesError> {
    let shared = ephemeral.ecdh(remote)?;
    let (enc_key, mac_key) = derive_keys(&shared);

    let mut out = Vec::with_capacity(ECIES_OVERHEAD + plaintext.len());
    out.push(UNCOMPRESSED_POINT_TAG);
    out.extend_from_slice(ephemeral.public_key().as_slice());
    out.extend_from_slice(&iv);
    let body_start = out.len();
    out.extend_from_slice(plaintext);
    let mut cipher = Aes128Ctr::new(&enc_key.into(), &iv.into());
    cipher.apply_keystream(&mut out[body_start..]);

    let tag = compute_tag(&mac_key, &out[EPHEMERAL_POINT_LEN..], auth_data);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Encrypts `plaintext` to `remote` with a fresh random ephemeral key and IV.
pub fn encrypt_random(
    remote: &NodePublicKey,
    plaintext: &[u8],
    auth_data: &[u8],
) -> Result<Vec<u8>, EciesError> {
    let ephemeral = NodeKey::random()?;
    let iv = random_bytes::<IV_LEN>()?;
    encrypt(remote, plaintext, auth_data, &ephemeral, iv)
}

/// Opens a message encrypted to `key`, checking the tag (in constant time) over the IV,
/// the ciphertext and `auth_data` before decrypting anything.
pub fn decrypt(key: &NodeKey, ciphertext: &[u8], auth_data: &[u8]) -> Result<Vec<u8>, EciesError> {
    if ciphertext.len() < ECIES_OVERHEAD {
        return Err(EciesError::TooShort { len: ciphertext.len() });
    }
    let (point, rest) = ciphertext.split_at(EPHEMERAL_POINT_LEN);
    let (iv_and_body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let (iv, body) = iv_and_body.split_at(IV_LEN);

    let (&point_tag, coordinates) = point.split_first().ok_or(EciesError::InvalidEphemeralKey)?;
    if point_tag != UNCOMPRESSED_POINT_TAG {
        return Err(EciesError::InvalidEphemeralKey);
    }
    let ephemeral_public = NodePublicKey::from_slice(coordinates);
    let shared = key.ecdh(&ephemeral_public).map_err(|_| EciesError::InvalidEphemeralKey)?;
    let (enc_key, mac_key) = derive_keys(&shared);

    let expected = compute_tag(&mac_key, iv_and_body, auth_data);
    if !bool::from(expected.as_slice().ct_eq(tag)) {
        return Err(EciesError::TagMismatch);
    }

    let mut iv_array = [0u8; IV_LEN];
    iv_array.copy_from_slice(iv);
    let mut plaintext = body.to_vec();
    let mut cipher = Aes128Ctr::new(&enc_key.into(), &iv_array.into());
    cipher.apply_keystream(&mut plaintext);
    Ok(plaintext)
}

/// Concatenation KDF (one SHA-256 block, counter 1, no shared info) split into the AES key
/// and the HMAC key. Hand-written because it is a single hash call and no KDF crate is
/// among our dependencies.
fn derive_keys(shared: &B256) -> ([u8; 16], [u8; 32]) {
    let mut kdf = Sha256::new();
    kdf.update(1u32.to_be_bytes());
    kdf.update(shared.as_slice());
    let block = kdf.finalize();
    let mut enc_key = [0u8; 16];
    enc_key.copy_from_slice(&block[..16]);
    let mut mac_key = [0u8; 32];
    // RLPx quirk: the MAC key is the SHA-256 of the second KDF half, not the half itself.
    mac_key.copy_from_slice(&Sha256::digest(&block[16..]));
    (enc_key, mac_key)
}

fn compute_tag(mac_key: &[u8; 32], iv_and_body: &[u8], auth_data: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = HmacSha256::new(&block_sized_key(mac_key).into());
    mac.update(iv_and_body);
    mac.update(auth_data);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&mac.finalize().into_bytes());
    tag
}

/// HMAC zero-pads keys shorter than the hash block (RFC 2104 §2), so passing the padded
/// key to the fixed-size constructor is the same MAC without a fallible slice constructor.
fn block_sized_key(key: &[u8; 32]) -> [u8; SHA256_BLOCK_LEN] {
    let mut padded = [0u8; SHA256_BLOCK_LEN];
    padded[..key.len()].copy_from_slice(key);
    padded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> NodeKey {
        NodeKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn round_trip_with_auth_data() {
        let recipient = key(7);
        let ct = encrypt_random(&recipient.public_key(), b"hello rlpx", b"\x01\x02").unwrap();
        assert_eq!(ct.len(), ECIES_OVERHEAD + 10);
        assert_eq!(decrypt(&recipient, &ct, b"\x01\x02").unwrap(), b"hello rlpx");
    }

    #[test]
    fn deterministic_encrypt_is_stable_and_layout_is_r_iv_c_tag() {
        let recipient = key(7);
        let ephemeral = key(9);
        let iv = [0x5a; 16];
        let a = encrypt(&recipient.public_key(), b"abc", b"", &ephemeral, iv).unwrap();
        let b = encrypt(&recipient.public_key(), b"abc", b"", &ephemeral, iv).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0], 0x04);
        assert_eq!(&a[1..65], ephemeral.public_key().as_slice());
        assert_eq!(&a[65..81], &iv);
        assert_eq!(a.len(), ECIES_OVERHEAD + 3);
    }

    #[test]
    fn empty_plaintext_is_allowed() {
        let recipient = key(3);
        let ct = encrypt_random(&recipient.public_key(), b"", b"").unwrap();
        assert_eq!(ct.len(), ECIES_OVERHEAD);
        assert_eq!(decrypt(&recipient, &ct, b"").unwrap(), b"");
    }

    #[test]
    fn wrong_key_wrong_auth_data_and_tampering_fail_the_tag() {
        let recipient = key(7);
        let ct = encrypt_random(&recipient.public_key(), b"secret", b"ad").unwrap();
        assert_eq!(decrypt(&key(8), &ct, b"ad"), Err(EciesError::TagMismatch));
        assert_eq!(decrypt(&recipient, &ct, b"AD"), Err(EciesError::TagMismatch));
        for index in [65, 81, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[index] ^= 0x80;
            assert_eq!(decrypt(&recipient, &bad, b"ad"), Err(EciesError::TagMismatch));
        }
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        let recipient = key(7);
        assert_eq!(decrypt(&recipient, &[0x04; 112], b""), Err(EciesError::TooShort { len: 112 }));
        assert_eq!(decrypt(&recipient, &[], b""), Err(EciesError::TooShort { len: 0 }));
        let mut ct = encrypt_random(&recipient.public_key(), b"x", b"").unwrap();
        ct[0] = 0x02;
        assert_eq!(decrypt(&recipient, &ct, b""), Err(EciesError::InvalidEphemeralKey));
        ct[0] = 0x04;
        ct[1..65].fill(0x11); // not on the curve
        assert_eq!(decrypt(&recipient, &ct, b""), Err(EciesError::InvalidEphemeralKey));
        let off_curve = NodePublicKey::repeat_byte(0x11);
        assert_eq!(
            encrypt_random(&off_curve, b"x", b""),
            Err(EciesError::Crypto(CryptoError::InvalidPublicKey))
        );
    }
}
