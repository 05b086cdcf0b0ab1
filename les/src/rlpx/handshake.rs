//! The RLPx v4 encryption handshake (EIP-8) as two sans-IO state machines: the dialing
//! [`Initiator`] and the listening [`Recipient`]. They exchange one packet each way
//! ("auth", then "ack") and both end with the same [`Secrets`], from which the frame codec
//! is built.
//!
//! Packets on the wire are `size(2, big-endian) || ECIES(peer static key, rlp(body) ||
//! padding, auth data = size)`. We always send that EIP-8 form, with version 4 and
//! 100..=199 zero bytes of padding (as geth does). We read it forward-compatibly: any
//! version number, extra list elements and trailing bytes after the list are ignored.
//!
//! The recipient also reads the legacy pre-EIP-8 auth (a bare 307-byte ECIES message with
//! a fixed-layout plaintext) and answers it with a legacy 210-byte ack, because a legacy
//! initiator reads exactly 210 bytes and could not parse an EIP-8 ack (geth behaved the
//! same way while it still spoke the legacy format). The initiator never sends legacy auth,
//! so it accepts only EIP-8 acks.
//!
//! Telling the formats apart: a legacy auth starts with the ECIES ephemeral point's tag
//! byte `0x04`; an EIP-8 packet starts with the high byte of its size, and we refuse EIP-8
//! sizes above [`MAX_EIP8_CIPHERTEXT_LEN`] (1023, high byte at most `0x03`). So a first
//! byte `0x04` always means legacy. Real auth and ack packets are far smaller than the cap
//! (geth: at most 481 bytes; EIP-8's recommended padding maximum of 300 gives 582).

use crate::crypto::{
    self, CryptoError, NodeKey, NodePublicKey, RecoverableSignature, random_bytes,
};
use crate::rlpx::ecies::{self, ECIES_OVERHEAD, EciesError};
use alloy_primitives::{B256, B512, Keccak256, keccak256};
use alloy_rlp::{Decodable, Header, RlpEncodable};
use std::fmt;

/// The handshake version we send in auth and ack bodies.
pub const HANDSHAKE_VERSION: u64 = 4;

/// Largest EIP-8 ciphertext (the value of the 2-byte size prefix) we accept. Kept below
/// `0x0400` so that the first byte of an EIP-8 packet can never be `0x04`, the first byte
/// of a legacy auth.
pub const MAX_EIP8_CIPHERTEXT_LEN: usize = 0x03ff;

/// Length of a legacy (pre-EIP-8) auth packet: 194 bytes of plaintext plus ECIES overhead.
pub const LEGACY_AUTH_LEN: usize = LEGACY_AUTH_PLAINTEXT_LEN + ECIES_OVERHEAD;

/// Length of a legacy (pre-EIP-8) ack packet: 97 bytes of plaintext plus ECIES overhead.
pub const LEGACY_ACK_LEN: usize = LEGACY_ACK_PLAINTEXT_LEN + ECIES_OVERHEAD;

const SIZE_PREFIX_LEN: usize = 2;
/// First byte of every ECIES message, hence of every legacy packet.
const LEGACY_FIRST_BYTE: u8 = 0x04;
const SIGNATURE_LEN: usize = 65;
const PUBLIC_KEY_LEN: usize = 64;
const NONCE_LEN: usize = 32;
/// sig || keccak256(ephemeral pub) || static pub || nonce || token flag.
const LEGACY_AUTH_PLAINTEXT_LEN: usize = SIGNATURE_LEN + 32 + PUBLIC_KEY_LEN + NONCE_LEN + 1;
/// ephemeral pub || nonce || token flag.
const LEGACY_ACK_PLAINTEXT_LEN: usize = PUBLIC_KEY_LEN + NONCE_LEN + 1;
/// EIP-8 requires at least 100 bytes of padding so that EIP-8 packets are never the size
/// of legacy ones; geth adds 100 + rand(0..100).
const MIN_PADDING: usize = 100;
const PADDING_SPREAD: usize = 100;

/// Why a handshake failed. Any of these means: drop the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The EIP-8 size prefix announces no more than the bare ECIES overhead.
    #[error("handshake packet size {size} is not above the {ECIES_OVERHEAD}-byte ECIES overhead")]
    PacketTooSmall {
        /// The announced ciphertext size.
        size: usize,
    },
    /// The EIP-8 size prefix announces more than [`MAX_EIP8_CIPHERTEXT_LEN`].
    #[error("handshake packet size {size} exceeds the limit of {MAX_EIP8_CIPHERTEXT_LEN}")]
    PacketTooLarge {
        /// The announced ciphertext size.
        size: usize,
    },
    /// The packet handed in is not exactly as long as its prefix (or legacy format) says.
    #[error("handshake packet is {actual} bytes but its format requires {expected}")]
    LengthMismatch {
        /// Length the packet must have.
        expected: usize,
        /// Length handed in.
        actual: usize,
    },
    /// The packet was not encrypted to our static key, or was tampered with.
    #[error("handshake packet does not decrypt: {0}")]
    Ecies(#[from] EciesError),
    /// The decrypted body is not the expected RLP list.
    #[error("malformed handshake body: {0}")]
    MalformedBody(alloy_rlp::Error),
    /// The remote static public key (given or received) is not a curve point.
    #[error("invalid remote static public key: {0}")]
    InvalidRemoteKey(CryptoError),
    /// The remote ephemeral public key in the ack is not a curve point.
    #[error("invalid remote ephemeral public key: {0}")]
    InvalidRemoteEphemeralKey(CryptoError),
    /// The auth signature is malformed or recovers no key.
    #[error("auth signature is invalid: {0}")]
    InvalidSignature(CryptoError),
    /// A legacy auth's hash of the ephemeral key does not match the key its signature
    /// recovers to.
    #[error("legacy auth: ephemeral key hash does not match the signature")]
    LegacyEphemeralKeyHashMismatch,
    /// A method was called in a state where it makes no sense (e.g. `ack_packet` before
    /// `read_auth`, or twice).
    #[error("handshake step called out of order")]
    OutOfOrder,
    /// The system randomness source failed.
    #[error("randomness source failed: {0}")]
    Rng(CryptoError),
}

/// Length of the auth packet at the start of `buf`, for a recipient reading a byte
/// stream: `Ok(None)` while too few bytes are there to tell, `Ok(Some(n))` once the packet
/// is known to be `n` bytes long (wait until `n` bytes are buffered, then pass exactly
/// those to [`Recipient::read_auth`]).
///
/// A first byte `0x04` means a legacy auth of [`LEGACY_AUTH_LEN`] bytes; anything else is
/// an EIP-8 size prefix, giving `2 + size`. Sizes outside `114..=1023` are errors.
pub fn handshake_packet_len(buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
    match buf.first() {
        None => Ok(None),
        Some(&LEGACY_FIRST_BYTE) => Ok(Some(LEGACY_AUTH_LEN)),
        Some(_) => eip8_packet_len(buf),
    }
}

/// Length of the ack packet at the start of `buf`, for an initiator reading a byte stream.
/// Same contract as [`handshake_packet_len`] but EIP-8 only (we never send legacy auth,
/// so no legacy ack can legitimately arrive; its first byte reads as a too-large size).
pub fn ack_packet_len(buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
    eip8_packet_len(buf)
}

fn eip8_packet_len(buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
    match buf.first_chunk::<SIZE_PREFIX_LEN>() {
        None => Ok(None),
        Some(prefix) => {
            let size = checked_eip8_size(*prefix)?;
            Ok(Some(SIZE_PREFIX_LEN + size))
        }
    }
}

fn checked_eip8_size(prefix: [u8; SIZE_PREFIX_LEN]) -> Result<usize, HandshakeError> {
    let size = usize::from(u16::from_be_bytes(prefix));
    if size <= ECIES_OVERHEAD {
        Err(HandshakeError::PacketTooSmall { size })
    } else if size > MAX_EIP8_CIPHERTEXT_LEN {
        Err(HandshakeError::PacketTooLarge { size })
    } else {
        Ok(size)
    }
}

/// Splits a complete EIP-8 packet into its size prefix and ciphertext, checking that it is
/// exactly as long as the prefix says.
fn split_eip8_packet(packet: &[u8]) -> Result<([u8; SIZE_PREFIX_LEN], &[u8]), HandshakeError> {
    let (prefix, ciphertext) =
        packet.split_first_chunk::<SIZE_PREFIX_LEN>().ok_or(HandshakeError::LengthMismatch {
            expected: SIZE_PREFIX_LEN,
            actual: packet.len(),
        })?;
    let size = checked_eip8_size(*prefix)?;
    if ciphertext.len() != size {
        return Err(HandshakeError::LengthMismatch {
            expected: SIZE_PREFIX_LEN + size,
            actual: packet.len(),
        });
    }
    Ok((*prefix, ciphertext))
}

/// Encrypts an RLP body to `remote` in the EIP-8 packet form, with geth's zero padding.
fn seal_eip8(remote: &NodePublicKey, body: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    let [random] = random_bytes::<1>().map_err(HandshakeError::Rng)?;
    // The padding length only needs to vary, not be uniform; modulo bias is harmless.
    let padding = MIN_PADDING + usize::from(random) % PADDING_SPREAD;
    let mut plaintext = Vec::with_capacity(body.len() + padding);
    plaintext.extend_from_slice(body);
    plaintext.resize(body.len() + padding, 0);
    let size = plaintext.len() + ECIES_OVERHEAD;
    if size > MAX_EIP8_CIPHERTEXT_LEN {
        return Err(HandshakeError::PacketTooLarge { size });
    }
    let prefix =
        u16::try_from(size).map_err(|_| HandshakeError::PacketTooLarge { size })?.to_be_bytes();
    let ciphertext = ecies::encrypt_random(remote, &plaintext, &prefix)?;
    let mut packet = Vec::with_capacity(SIZE_PREFIX_LEN + ciphertext.len());
    packet.extend_from_slice(&prefix);
    packet.extend_from_slice(&ciphertext);
    Ok(packet)
}

/// `[sig, initiator-pubk, initiator-nonce, auth-vsn]`.
#[derive(RlpEncodable)]
struct AuthBody {
    signature: RecoverableSignature,
    public_key: B512,
    nonce: B256,
    version: u64,
}

impl AuthBody {
    /// Decodes the first RLP item of an EIP-8 plaintext, ignoring extra list elements
    /// (after checking they are well formed) and the padding after the list.
    fn decode_forward_compatible(plaintext: &[u8]) -> Result<Self, alloy_rlp::Error> {
        let mut items = list_payload(plaintext)?;
        let body = Self {
            signature: Decodable::decode(&mut items)?,
            public_key: Decodable::decode(&mut items)?,
            nonce: Decodable::decode(&mut items)?,
            version: Decodable::decode(&mut items)?,
        };
        skip_items(items)?;
        Ok(body)
    }
}

/// `[recipient-ephemeral-pubk, recipient-nonce, ack-vsn]`.
#[derive(RlpEncodable)]
struct AckBody {
    ephemeral_key: B512,
    nonce: B256,
    version: u64,
}

impl AckBody {
    /// Same forward-compatibility rules as [`AuthBody::decode_forward_compatible`].
    fn decode_forward_compatible(plaintext: &[u8]) -> Result<Self, alloy_rlp::Error> {
        let mut items = list_payload(plaintext)?;
        let body = Self {
            ephemeral_key: Decodable::decode(&mut items)?,
            nonce: Decodable::decode(&mut items)?,
            version: Decodable::decode(&mut items)?,
        };
        skip_items(items)?;
        Ok(body)
    }
}

/// The payload of the RLP list at the start of `plaintext`; bytes after the list are
/// padding.
fn list_payload(plaintext: &[u8]) -> Result<&[u8], alloy_rlp::Error> {
    let mut rest = plaintext;
    let header = Header::decode(&mut rest)?;
    if !header.list {
        return Err(alloy_rlp::Error::UnexpectedString);
    }
    rest.get(..header.payload_length).ok_or(alloy_rlp::Error::InputTooShort)
}

/// Walks over list elements added by newer handshake versions, requiring only that they
/// be well-formed RLP items (as geth's `rlp:"tail"` does).
fn skip_items(mut items: &[u8]) -> Result<(), alloy_rlp::Error> {
    while !items.is_empty() {
        let header = Header::decode(&mut items)?;
        items = items.get(header.payload_length..).ok_or(alloy_rlp::Error::InputTooShort)?;
    }
    Ok(())
}

/// A running keccak256 sponge used as an RLPx frame MAC state: it absorbs everything sent
/// (or received) in one direction and is never finalised; a "digest" finalises a copy.
#[derive(Clone)]
pub struct MacState {
    hasher: Keccak256,
    /// geth's frame golden vector replaces the sponge with a fake whose digest is always
    /// the same 32 bytes; only unit tests can build one.
    #[cfg(test)]
    constant_digest: Option<B256>,
}

impl fmt::Debug for MacState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacState(..)")
    }
}

impl Default for MacState {
    fn default() -> Self {
        Self::new()
    }
}

impl MacState {
    /// An empty sponge.
    pub fn new() -> Self {
        Self {
            hasher: Keccak256::new(),
            #[cfg(test)]
            constant_digest: None,
        }
    }

    /// The initial state RLPx defines: `(mac-secret ^ nonce) || packet`, where `packet`
    /// is a handshake packet exactly as sent on the wire (size prefix included).
    pub fn seeded(mac_secret: &B256, nonce: &B256, packet: &[u8]) -> Self {
        let mut state = Self::new();
        state.update((*mac_secret ^ *nonce).as_slice());
        state.update(packet);
        state
    }

    /// Absorbs more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// keccak256 of everything absorbed so far; the state keeps running.
    pub fn digest(&self) -> B256 {
        #[cfg(test)]
        if let Some(constant) = self.constant_digest {
            return constant;
        }
        self.hasher.clone().finalize()
    }

    /// The fake hash of geth's `TestFrameReadWrite`: ignores input, digest is always
    /// `byte` repeated.
    #[cfg(test)]
    pub(crate) fn constant_for_test(byte: u8) -> Self {
        Self { hasher: Keccak256::new(), constant_digest: Some(B256::repeat_byte(byte)) }
    }
}

/// The session secrets both sides derive from the handshake (research §1.4). The frame
/// codec consumes them.
#[derive(Clone)]
pub struct Secrets {
    /// Key of the AES-256-CTR frame cipher.
    pub aes: B256,
    /// Key of the AES-256 single-block cipher inside the frame MACs.
    pub mac: B256,
    /// MAC state for frames we send.
    pub egress_mac: MacState,
    /// MAC state for frames we receive.
    pub ingress_mac: MacState,
    /// The peer's static public key, authenticated by the handshake.
    pub remote_public: NodePublicKey,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Secrets")
            .field("remote_public", &self.remote_public)
            .finish_non_exhaustive()
    }
}

/// Which side of the handshake derives the secrets; decides which MAC state is egress.
#[derive(Clone, Copy)]
enum Role {
    Initiator,
    Recipient,
}

/// Everything the secrets depend on, named as in research §1.4.
struct SessionInputs<'a> {
    own_ephemeral: &'a NodeKey,
    remote_ephemeral: &'a NodePublicKey,
    initiator_nonce: &'a B256,
    recipient_nonce: &'a B256,
    auth_packet: &'a [u8],
    ack_packet: &'a [u8],
    remote_public: NodePublicKey,
}

fn derive_secrets(role: Role, inputs: SessionInputs<'_>) -> Result<Secrets, HandshakeError> {
    let ephemeral_key = inputs
        .own_ephemeral
        .ecdh(inputs.remote_ephemeral)
        .map_err(HandshakeError::InvalidRemoteEphemeralKey)?;
    let nonce_hash =
        keccak256([inputs.recipient_nonce.as_slice(), inputs.initiator_nonce.as_slice()].concat());
    let shared_secret = keccak256([ephemeral_key.as_slice(), nonce_hash.as_slice()].concat());
    let aes = keccak256([ephemeral_key.as_slice(), shared_secret.as_slice()].concat());
    let mac = keccak256([ephemeral_key.as_slice(), aes.as_slice()].concat());

    let initiator_egress = MacState::seeded(&mac, inputs.recipient_nonce, inputs.auth_packet);
    let recipient_egress = MacState::seeded(&mac, inputs.initiator_nonce, inputs.ack_packet);
    let (egress_mac, ingress_mac) = match role {
        Role::Initiator => (initiator_egress, recipient_egress),
        Role::Recipient => (recipient_egress, initiator_egress),
    };
    Ok(Secrets { aes, mac, egress_mac, ingress_mac, remote_public: inputs.remote_public })
}

/// The dialing side: knows the peer's static key, sends auth, reads ack.
pub struct Initiator {
    static_key: NodeKey,
    remote: NodePublicKey,
    ephemeral: NodeKey,
    nonce: B256,
    /// The auth packet as written, once [`Initiator::auth_packet`] has made it; it seeds a
    /// MAC state.
    sent_auth: Option<Vec<u8>>,
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("remote", &self.remote)
            .field("auth_sent", &self.sent_auth.is_some())
            .finish_non_exhaustive()
    }
}

impl Initiator {
    /// Starts a handshake with `remote`, drawing a fresh ephemeral key and nonce.
    pub fn new(static_key: NodeKey, remote: NodePublicKey) -> Result<Self, HandshakeError> {
        let ephemeral = NodeKey::random().map_err(HandshakeError::Rng)?;
        let nonce = B256::from(random_bytes::<NONCE_LEN>().map_err(HandshakeError::Rng)?);
        Self::with_parts(static_key, remote, ephemeral, nonce)
    }

    /// Starts a handshake with a given ephemeral key and nonce (for test vectors).
    pub fn with_parts(
        static_key: NodeKey,
        remote: NodePublicKey,
        ephemeral: NodeKey,
        nonce: B256,
    ) -> Result<Self, HandshakeError> {
        crypto::validate_public_key(&remote).map_err(HandshakeError::InvalidRemoteKey)?;
        Ok(Self { static_key, remote, ephemeral, nonce, sent_auth: None })
    }

    /// The EIP-8 auth packet to write to the connection (size prefix included). Call once.
    pub fn auth_packet(&mut self) -> Result<Vec<u8>, HandshakeError> {
        if self.sent_auth.is_some() {
            return Err(HandshakeError::OutOfOrder);
        }
        let static_shared =
            self.static_key.ecdh(&self.remote).map_err(HandshakeError::InvalidRemoteKey)?;
        let body = AuthBody {
            signature: self.ephemeral.sign_prehash(&(static_shared ^ self.nonce)),
            public_key: self.static_key.public_key(),
            nonce: self.nonce,
            version: HANDSHAKE_VERSION,
        };
        let packet = seal_eip8(&self.remote, &alloy_rlp::encode(&body))?;
        self.sent_auth = Some(packet.clone());
        Ok(packet)
    }

    /// Reads the peer's complete ack packet (exactly the bytes [`ack_packet_len`] counted)
    /// and derives the session secrets.
    pub fn read_ack(self, packet: &[u8]) -> Result<Secrets, HandshakeError> {
        let sent_auth = self.sent_auth.ok_or(HandshakeError::OutOfOrder)?;
        let (prefix, ciphertext) = split_eip8_packet(packet)?;
        let plaintext = ecies::decrypt(&self.static_key, ciphertext, &prefix)?;
        let ack = AckBody::decode_forward_compatible(&plaintext)
            .map_err(HandshakeError::MalformedBody)?;
        derive_secrets(
            Role::Initiator,
            SessionInputs {
                own_ephemeral: &self.ephemeral,
                remote_ephemeral: &ack.ephemeral_key,
                initiator_nonce: &self.nonce,
                recipient_nonce: &ack.nonce,
                auth_packet: &sent_auth,
                ack_packet: packet,
                remote_public: self.remote,
            },
        )
    }
}

/// Wire format of the auth we received; the ack answers in the same format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthFormat {
    Eip8,
    Legacy,
}

/// What the recipient learnt from a valid auth.
struct ReceivedAuth {
    format: AuthFormat,
    remote_static: NodePublicKey,
    remote_ephemeral: NodePublicKey,
    initiator_nonce: B256,
    packet: Vec<u8>,
}

enum RecipientState {
    AwaitingAuth,
    AuthRead(ReceivedAuth),
    AckSent {
        auth: ReceivedAuth,
        ack: Vec<u8>,
    },
    /// Only while a method moves the state; never observed from outside.
    Transition,
}

/// The listening side: reads auth (learning who dials), sends ack.
pub struct Recipient {
    static_key: NodeKey,
    ephemeral: NodeKey,
    nonce: B256,
    state: RecipientState,
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            RecipientState::AwaitingAuth => "awaiting auth",
            RecipientState::AuthRead(_) => "auth read",
            RecipientState::AckSent { .. } => "ack sent",
            RecipientState::Transition => "transition",
        };
        f.debug_struct("Recipient").field("state", &state).finish_non_exhaustive()
    }
}

impl Recipient {
    /// Waits for an auth, with a fresh ephemeral key and nonce.
    pub fn new(static_key: NodeKey) -> Result<Self, HandshakeError> {
        let ephemeral = NodeKey::random().map_err(HandshakeError::Rng)?;
        let nonce = B256::from(random_bytes::<NONCE_LEN>().map_err(HandshakeError::Rng)?);
        Ok(Self::with_parts(static_key, ephemeral, nonce))
    }

    /// Waits for an auth, with a given ephemeral key and nonce (for test vectors).
    pub fn with_parts(static_key: NodeKey, ephemeral: NodeKey, nonce: B256) -> Self {
        Self { static_key, ephemeral, nonce, state: RecipientState::AwaitingAuth }
    }

    /// Reads a complete auth packet (exactly the bytes [`handshake_packet_len`] counted),
    /// EIP-8 or legacy, verifies it and returns the initiator's static public key, which
    /// the caller may check against an allow-list before answering.
    pub fn read_auth(&mut self, packet: &[u8]) -> Result<NodePublicKey, HandshakeError> {
        if !matches!(self.state, RecipientState::AwaitingAuth) {
            return Err(HandshakeError::OutOfOrder);
        }
        let auth = if packet.first() == Some(&LEGACY_FIRST_BYTE) {
            self.read_legacy_auth(packet)?
        } else {
            self.read_eip8_auth(packet)?
        };
        let remote_static = auth.remote_static;
        self.state = RecipientState::AuthRead(auth);
        Ok(remote_static)
    }

    fn read_eip8_auth(&self, packet: &[u8]) -> Result<ReceivedAuth, HandshakeError> {
        let (prefix, ciphertext) = split_eip8_packet(packet)?;
        let plaintext = ecies::decrypt(&self.static_key, ciphertext, &prefix)?;
        let body = AuthBody::decode_forward_compatible(&plaintext)
            .map_err(HandshakeError::MalformedBody)?;
        let remote_ephemeral =
            self.recover_remote_ephemeral(&body.signature, &body.public_key, &body.nonce)?;
        Ok(ReceivedAuth {
            format: AuthFormat::Eip8,
            remote_static: body.public_key,
            remote_ephemeral,
            initiator_nonce: body.nonce,
            packet: packet.to_vec(),
        })
    }

    fn read_legacy_auth(&self, packet: &[u8]) -> Result<ReceivedAuth, HandshakeError> {
        if packet.len() != LEGACY_AUTH_LEN {
            return Err(HandshakeError::LengthMismatch {
                expected: LEGACY_AUTH_LEN,
                actual: packet.len(),
            });
        }
        let plaintext = ecies::decrypt(&self.static_key, packet, &[])?;
        let malformed = || HandshakeError::MalformedBody(alloy_rlp::Error::UnexpectedLength);
        // Fixed layout: sig(65) || keccak256(ephemeral pub)(32) || static pub(64) ||
        // nonce(32) || token flag(1, ignored).
        let (signature, rest) =
            plaintext.split_first_chunk::<SIGNATURE_LEN>().ok_or_else(malformed)?;
        let (ephemeral_hash, rest) = rest.split_first_chunk::<32>().ok_or_else(malformed)?;
        let (public_key, rest) =
            rest.split_first_chunk::<PUBLIC_KEY_LEN>().ok_or_else(malformed)?;
        let (nonce, _token_flag) = rest.split_first_chunk::<NONCE_LEN>().ok_or_else(malformed)?;
        let remote_static = NodePublicKey::from(*public_key);
        let initiator_nonce = B256::from(*nonce);
        let remote_ephemeral =
            self.recover_remote_ephemeral(signature, &remote_static, &initiator_nonce)?;
        if keccak256(remote_ephemeral) != B256::from(*ephemeral_hash) {
            return Err(HandshakeError::LegacyEphemeralKeyHashMismatch);
        }
        Ok(ReceivedAuth {
            format: AuthFormat::Legacy,
            remote_static,
            remote_ephemeral,
            initiator_nonce,
            packet: packet.to_vec(),
        })
    }

    /// The initiator signed `static-shared-secret ^ nonce` with its ephemeral key; we
    /// compute the same value and recover that key from the signature.
    fn recover_remote_ephemeral(
        &self,
        signature: &RecoverableSignature,
        remote_static: &NodePublicKey,
        nonce: &B256,
    ) -> Result<NodePublicKey, HandshakeError> {
        let static_shared =
            self.static_key.ecdh(remote_static).map_err(HandshakeError::InvalidRemoteKey)?;
        crypto::recover(&(static_shared ^ *nonce), signature)
            .map_err(HandshakeError::InvalidSignature)
    }

    /// The ack packet to write, in the format of the auth that was read (EIP-8 with size
    /// prefix, or legacy 210 bytes). Call once, after [`Recipient::read_auth`].
    pub fn ack_packet(&mut self) -> Result<Vec<u8>, HandshakeError> {
        let auth = match std::mem::replace(&mut self.state, RecipientState::Transition) {
            RecipientState::AuthRead(auth) => auth,
            other => {
                self.state = other;
                return Err(HandshakeError::OutOfOrder);
            }
        };
        let ack = match self.seal_ack(&auth) {
            Ok(ack) => ack,
            Err(error) => {
                self.state = RecipientState::AuthRead(auth);
                return Err(error);
            }
        };
        self.state = RecipientState::AckSent { auth, ack: ack.clone() };
        Ok(ack)
    }

    fn seal_ack(&self, auth: &ReceivedAuth) -> Result<Vec<u8>, HandshakeError> {
        let ephemeral_key = self.ephemeral.public_key();
        match auth.format {
            AuthFormat::Eip8 => {
                let body = AckBody { ephemeral_key, nonce: self.nonce, version: HANDSHAKE_VERSION };
                seal_eip8(&auth.remote_static, &alloy_rlp::encode(&body))
            }
            AuthFormat::Legacy => {
                let mut plaintext = Vec::with_capacity(LEGACY_ACK_PLAINTEXT_LEN);
                plaintext.extend_from_slice(ephemeral_key.as_slice());
                plaintext.extend_from_slice(self.nonce.as_slice());
                plaintext.push(0); // token flag: no session token reused
                Ok(ecies::encrypt_random(&auth.remote_static, &plaintext, &[])?)
            }
        }
    }

    /// Derives the session secrets once the ack has been made.
    pub fn finish(self) -> Result<Secrets, HandshakeError> {
        let RecipientState::AckSent { auth, ack } = self.state else {
            return Err(HandshakeError::OutOfOrder);
        };
        derive_secrets(
            Role::Recipient,
            SessionInputs {
                own_ephemeral: &self.ephemeral,
                remote_ephemeral: &auth.remote_ephemeral,
                initiator_nonce: &auth.initiator_nonce,
                recipient_nonce: &self.nonce,
                auth_packet: &auth.packet,
                ack_packet: &ack,
                remote_public: auth.remote_static,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_rlp::Encodable;

    fn key(byte: u8) -> NodeKey {
        NodeKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn packet_len_needs_prefix_then_reports_total() {
        assert_eq!(handshake_packet_len(&[]), Ok(None));
        assert_eq!(handshake_packet_len(&[0x01]), Ok(None));
        assert_eq!(handshake_packet_len(&[0x01, 0xb3]), Ok(Some(2 + 0x1b3)));
        assert_eq!(handshake_packet_len(&[0x04]), Ok(Some(LEGACY_AUTH_LEN)));
        assert_eq!(ack_packet_len(&[0x01, 0xea, 0xff]), Ok(Some(2 + 0x1ea)));
    }

    #[test]
    fn packet_len_rejects_out_of_range_sizes() {
        assert_eq!(
            handshake_packet_len(&[0x00, 0x71]),
            Err(HandshakeError::PacketTooSmall { size: 113 })
        );
        assert_eq!(handshake_packet_len(&[0x00, 0x72]), Ok(Some(2 + 114)));
        assert_eq!(handshake_packet_len(&[0x03, 0xff]), Ok(Some(2 + 1023)));
        assert_eq!(
            handshake_packet_len(&[0x05, 0x00]),
            Err(HandshakeError::PacketTooLarge { size: 0x500 })
        );
        assert_eq!(
            ack_packet_len(&[0x04, 0x00]),
            Err(HandshakeError::PacketTooLarge { size: 0x400 })
        );
        assert_eq!(
            handshake_packet_len(&[0xff, 0xff]),
            Err(HandshakeError::PacketTooLarge { size: 0xffff })
        );
    }

    #[test]
    fn auth_and_ack_have_geth_padding_and_fit_the_cap() {
        let a = key(1);
        let b = key(2);
        for _ in 0..20 {
            let mut initiator = Initiator::new(a.clone(), b.public_key()).unwrap();
            let auth = initiator.auth_packet().unwrap();
            // rlp body 169 bytes + 100..=199 padding + 113 overhead.
            let size = usize::from(u16::from_be_bytes([auth[0], auth[1]]));
            assert_eq!(auth.len(), size + 2);
            assert!((169 + 100 + 113..=169 + 199 + 113).contains(&size), "{size}");
            let mut recipient = Recipient::new(b.clone()).unwrap();
            assert_eq!(recipient.read_auth(&auth).unwrap(), a.public_key());
            let ack = recipient.ack_packet().unwrap();
            let size = usize::from(u16::from_be_bytes([ack[0], ack[1]]));
            assert!((102 + 100 + 113..=102 + 199 + 113).contains(&size), "{size}");
        }
    }

    #[test]
    fn steps_out_of_order_are_refused() {
        let a = key(1);
        let b = key(2);
        let mut initiator = Initiator::new(a.clone(), b.public_key()).unwrap();
        let auth = initiator.auth_packet().unwrap();
        assert_eq!(initiator.auth_packet(), Err(HandshakeError::OutOfOrder));

        let fresh = Initiator::new(a.clone(), b.public_key()).unwrap();
        assert!(matches!(fresh.read_ack(&auth), Err(HandshakeError::OutOfOrder)));

        let mut recipient = Recipient::new(b.clone()).unwrap();
        assert_eq!(recipient.ack_packet(), Err(HandshakeError::OutOfOrder));
        recipient.read_auth(&auth).unwrap();
        assert_eq!(recipient.read_auth(&auth), Err(HandshakeError::OutOfOrder));
        recipient.ack_packet().unwrap();
        assert_eq!(recipient.ack_packet(), Err(HandshakeError::OutOfOrder));
        assert!(recipient.finish().is_ok());

        let early = Recipient::new(b).unwrap();
        assert!(matches!(early.finish(), Err(HandshakeError::OutOfOrder)));
    }

    #[test]
    fn invalid_remote_key_is_refused_up_front() {
        let error = Initiator::new(key(1), NodePublicKey::repeat_byte(0x11)).unwrap_err();
        assert_eq!(error, HandshakeError::InvalidRemoteKey(CryptoError::InvalidPublicKey));
    }

    #[test]
    fn forward_compatible_decoding_skips_extras_but_not_garbage() {
        // [0x01 x64, 0x02 x32, 56, 0x01, [0x04, 0x05]] + padding
        let body = AckBody {
            ephemeral_key: B512::repeat_byte(1),
            nonce: B256::repeat_byte(2),
            version: 56,
        };
        let mut items = Vec::new();
        body.ephemeral_key.encode(&mut items);
        body.nonce.encode(&mut items);
        body.version.encode(&mut items);
        1u8.encode(&mut items);
        items.extend_from_slice(&[0xc2, 0x04, 0x05]);
        let mut plaintext = Vec::new();
        Header { list: true, payload_length: items.len() }.encode(&mut plaintext);
        plaintext.extend_from_slice(&items);
        plaintext.extend_from_slice(&[0xde, 0xad]);
        let decoded = AckBody::decode_forward_compatible(&plaintext).unwrap();
        assert_eq!(decoded.version, 56);
        assert_eq!(decoded.nonce, B256::repeat_byte(2));

        // An extra element that claims more bytes than the list holds.
        let mut broken = items.clone();
        broken.push(0x83);
        let mut plaintext = Vec::new();
        Header { list: true, payload_length: broken.len() }.encode(&mut plaintext);
        plaintext.extend_from_slice(&broken);
        assert!(AckBody::decode_forward_compatible(&plaintext).is_err());

        // Not a list; a list with a wrong-sized key; empty input.
        assert_eq!(
            AckBody::decode_forward_compatible(&[0x83, 1, 2, 3]).err(),
            Some(alloy_rlp::Error::UnexpectedString)
        );
        assert!(AckBody::decode_forward_compatible(&[0xc3, 0x82, 1, 2]).is_err());
        assert!(AckBody::decode_forward_compatible(&[]).is_err());
    }
}
