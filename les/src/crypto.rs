//! Node identities and the secp256k1 operations every other module shares: node keys,
//! 64-byte public keys, node IDs, recoverable ECDSA over a 32-byte prehash, ECDH, and
//! enode URLs.
//!
//! Everything here is a thin layer over `k256`; the protocol facts it encodes are the
//! devp2p ones: public keys travel as the 64-byte `X || Y` without the SEC1 `0x04`
//! prefix, a node ID is `keccak256(X || Y)`, signatures are `r || s || v` with `v` the
//! recovery id 0 or 1, and the ECDH "agree" value is the bare x-coordinate.

use alloy_primitives::{B256, B512, hex, keccak256};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// A 64-byte uncompressed secp256k1 public key, `X || Y`, as devp2p sends it.
pub type NodePublicKey = B512;

/// keccak256 of a node's 64-byte public key.
pub type NodeId = B256;

/// A 65-byte recoverable signature `r || s || v`, `v` in {0, 1}.
pub type RecoverableSignature = [u8; 65];

/// What can go wrong with keys and signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The bytes are not a valid secp256k1 scalar in 1..n.
    #[error("invalid secret key")]
    InvalidSecretKey,
    /// The 64 bytes are not a point on the curve.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// r or s out of range, or the recovery byte is not 0 or 1.
    #[error("malformed signature")]
    MalformedSignature,
    /// The signature is well formed but no public key can be recovered from it.
    #[error("signature does not recover to a public key")]
    RecoveryFailed,
    /// The system randomness source failed.
    #[error("random number generator failed")]
    Rng,
}

/// A node's static (or an ephemeral) secp256k1 private key.
#[derive(Clone)]
pub struct NodeKey {
    signing: SigningKey,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secret material.
        write!(f, "NodeKey({})", self.node_id())
    }
}

impl NodeKey {
    /// Builds a key from its 32-byte big-endian scalar.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        SigningKey::from_slice(bytes)
            .map(|signing| Self { signing })
            .map_err(|_| CryptoError::InvalidSecretKey)
    }

    /// Draws a fresh key from the system's randomness (the browser's `crypto.getRandomValues`
    /// on wasm).
    pub fn random() -> Result<Self, CryptoError> {
        loop {
            let bytes: [u8; 32] = random_bytes()?;
            if let Ok(key) = Self::from_bytes(&bytes) {
                return Ok(key);
            }
        }
    }

    /// The 32-byte big-endian scalar, for persisting the key.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.signing.to_bytes());
        out
    }

    /// The 64-byte public key `X || Y`.
    pub fn public_key(&self) -> NodePublicKey {
        verifying_key_to_public(self.signing.verifying_key())
    }

    /// keccak256 of the public key.
    pub fn node_id(&self) -> NodeId {
        node_id(&self.public_key())
    }

    /// Signs a 32-byte value used directly as the ECDSA message hash (no further hashing),
    /// with a deterministic RFC 6979 nonce and a low s, as libsecp256k1 does.
    pub fn sign_prehash(&self, prehash: &B256) -> RecoverableSignature {
        let (sig, recid) = self.signing.sign_prehash_recoverable(prehash.as_slice());
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = recid.to_byte();
        out
    }

    /// The ECDH agree value with `remote`: the x-coordinate of `self * remote`.
    pub fn ecdh(&self, remote: &NodePublicKey) -> Result<B256, CryptoError> {
        let remote = public_to_k256(remote)?;
        let shared =
            k256::ecdh::diffie_hellman(self.signing.as_nonzero_scalar(), remote.as_affine());
        Ok(B256::from_slice(shared.raw_secret_bytes()))
    }
}

/// keccak256 of a 64-byte public key.
pub fn node_id(public: &NodePublicKey) -> NodeId {
    keccak256(public)
}

/// Checks that 64 bytes are a point on the curve.
pub fn validate_public_key(public: &NodePublicKey) -> Result<(), CryptoError> {
    public_to_k256(public).map(|_| ())
}

/// Recovers the public key that made `signature` over `prehash`.
pub fn recover(
    prehash: &B256,
    signature: &RecoverableSignature,
) -> Result<NodePublicKey, CryptoError> {
    let sig =
        Signature::from_slice(&signature[..64]).map_err(|_| CryptoError::MalformedSignature)?;
    let recid = RecoveryId::from_byte(signature[64]).ok_or(CryptoError::MalformedSignature)?;
    if signature[64] > 1 {
        return Err(CryptoError::MalformedSignature);
    }
    let key = VerifyingKey::recover_from_prehash(prehash.as_slice(), &sig, recid)
        .map_err(|_| CryptoError::RecoveryFailed)?;
    Ok(verifying_key_to_public(&key))
}

/// Recovers the signer's node ID; the form most checks want.
pub fn recover_node_id(
    prehash: &B256,
    signature: &RecoverableSignature,
) -> Result<NodeId, CryptoError> {
    recover(prehash, signature).map(|public| node_id(&public))
}

/// Fills an array from the system's randomness.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| CryptoError::Rng)?;
    Ok(out)
}

fn verifying_key_to_public(key: &VerifyingKey) -> NodePublicKey {
    let point = key.to_sec1_point(false);
    // Uncompressed SEC1 is 0x04 || X || Y.
    NodePublicKey::from_slice(&point.as_bytes()[1..65])
}

fn public_to_k256(public: &NodePublicKey) -> Result<k256::PublicKey, CryptoError> {
    let mut sec1 = [0u8; 65];
    sec1[0] = 0x04;
    sec1[1..].copy_from_slice(public.as_slice());
    k256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| CryptoError::InvalidPublicKey)
}

/// Why an enode URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnodeError {
    /// It does not start with `enode://`.
    #[error("enode URL must start with enode://")]
    Scheme,
    /// The part before `@` is not 128 hex digits.
    #[error("enode public key must be 128 hex digits")]
    PublicKeyHex,
    /// The 64 bytes are not a curve point.
    #[error("enode public key is not a valid secp256k1 point")]
    PublicKey,
    /// `host:port` after `@` does not parse.
    #[error("enode address {0:?} is not host:port")]
    Address(String),
}

/// A parsed `enode://<pubkey hex>@<host>:<port>` URL (query parameters such as
/// `?discport=` are accepted and ignored).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Enode {
    /// The node's static public key.
    pub public_key: NodePublicKey,
    /// Host name or IP literal, as written.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Enode {
    /// The node ID, keccak256 of the public key.
    pub fn node_id(&self) -> NodeId {
        node_id(&self.public_key)
    }

    /// The address as a socket address, if the host is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        format!("{}:{}", self.host_for_url(), self.port).parse().ok()
    }

    fn host_for_url(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl FromStr for Enode {
    type Err = EnodeError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let rest = url.trim().strip_prefix("enode://").ok_or(EnodeError::Scheme)?;
        let (key_hex, addr) = rest.split_once('@').ok_or(EnodeError::PublicKeyHex)?;
        if key_hex.len() != 128 {
            return Err(EnodeError::PublicKeyHex);
        }
        let key = hex::decode(key_hex).map_err(|_| EnodeError::PublicKeyHex)?;
        let public_key = NodePublicKey::from_slice(&key);
        validate_public_key(&public_key).map_err(|_| EnodeError::PublicKey)?;
        let addr = addr.split(['?', '/']).next().unwrap_or_default();
        let (host, port) =
            addr.rsplit_once(':').ok_or_else(|| EnodeError::Address(addr.to_string()))?;
        let port: u16 = port.parse().map_err(|_| EnodeError::Address(addr.to_string()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(EnodeError::Address(addr.to_string()));
        }
        Ok(Self { public_key, host: host.to_string(), port })
    }
}

impl fmt::Display for Enode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "enode://{}@{}:{}", hex::encode(self.public_key), self.host_for_url(), self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{b256, hex};

    const STATIC_B: [u8; 32] =
        hex!("b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291");

    #[test]
    fn public_key_and_node_id_match_eip8_values() {
        let key = NodeKey::from_bytes(&STATIC_B).unwrap();
        assert_eq!(
            key.public_key(),
            B512::from(hex!(
                "ca634cae0d49acb401d8a4c6b6fe8c55b70d115bf400769cc1400f3258cd31387574077f301b421bc84df7266c44e9e6d569fc56be00812904767bf5ccd1fc7f"
            ))
        );
        assert_eq!(
            key.node_id(),
            b256!("a448f24c6d18e575453db13171562b71999873db5b286df957af199ec94617f7")
        );
    }

    #[test]
    fn static_shared_secret_matches_research_value() {
        let a = NodeKey::from_bytes(&hex!(
            "49a7b37aa6f6645917e7b807e9d1c00d4fa71f18343b0d4122a4d2df64dd6fee"
        ))
        .unwrap();
        let b = NodeKey::from_bytes(&STATIC_B).unwrap();
        let expected = b256!("2d21423c1dc3355da36e7f2c2b530eeffcf0680f93201a958b2ec3a7d04958e6");
        assert_eq!(a.ecdh(&b.public_key()).unwrap(), expected);
        assert_eq!(b.ecdh(&a.public_key()).unwrap(), expected);
    }

    #[test]
    fn sign_then_recover_round_trips_and_tampering_fails() {
        let key = NodeKey::from_bytes(&STATIC_B).unwrap();
        let h = keccak256(b"message");
        let sig = key.sign_prehash(&h);
        assert_eq!(recover_node_id(&h, &sig).unwrap(), key.node_id());
        let other = keccak256(b"other");
        assert_ne!(recover_node_id(&other, &sig).ok(), Some(key.node_id()));
        let mut bad_v = sig;
        bad_v[64] = 27;
        assert_eq!(recover(&h, &bad_v), Err(CryptoError::MalformedSignature));
        let zero = [0u8; 65];
        assert_eq!(recover(&h, &zero), Err(CryptoError::MalformedSignature));
    }

    #[test]
    fn enode_round_trip_and_errors() {
        let key = NodeKey::from_bytes(&STATIC_B).unwrap();
        let url = format!("enode://{}@127.0.0.1:30303?discport=0", hex::encode(key.public_key()));
        let enode: Enode = url.parse().unwrap();
        assert_eq!(enode.node_id(), key.node_id());
        assert_eq!(enode.port, 30303);
        assert_eq!(enode.socket_addr(), Some("127.0.0.1:30303".parse().unwrap()));
        assert_eq!(enode.to_string(), url.split('?').next().unwrap());
        assert_eq!("http://x".parse::<Enode>(), Err(EnodeError::Scheme));
        assert_eq!("enode://abcd@1.2.3.4:1".parse::<Enode>(), Err(EnodeError::PublicKeyHex));
        let off_curve = format!("enode://{}@1.2.3.4:1", "11".repeat(64));
        assert_eq!(off_curve.parse::<Enode>(), Err(EnodeError::PublicKey));
        let no_port = format!("enode://{}@1.2.3.4", hex::encode(key.public_key()));
        assert!(matches!(no_port.parse::<Enode>(), Err(EnodeError::Address(_))));
        let v6 = format!("enode://{}@[::1]:30303", hex::encode(key.public_key()));
        let enode: Enode = v6.parse().unwrap();
        assert_eq!(enode.socket_addr(), Some("[::1]:30303".parse().unwrap()));
    }
}
