//! The RLPx frame codec: after the handshake every devp2p message travels as one frame,
//! `header-ct(16) || header-mac(16) || frame-ct(padded to 16) || frame-mac(16)`.
//!
//! Encryption is AES-256-CTR keyed with the aes-secret and a zero IV, one continuous
//! keystream per direction across all headers and bodies. Integrity comes from the running
//! keccak256 MAC states of the handshake, mixed with AES-256 single-block encryptions
//! under the mac-secret (research §1.5, §1.6).
//!
//! The reader is incremental and bounded: it takes bytes in any pieces, checks the header
//! MAC before it believes the frame size, refuses sizes above its configured maximum
//! before buffering the body, checks the frame MAC before decrypting the body, and never
//! holds more than one frame's bytes. After any error it stays failed.

use crate::crypto::NodePublicKey;
use crate::rlpx::handshake::{MacState, Secrets};
use aes::cipher::{BlockCipherEncrypt, KeyInit, KeyIvInit, StreamCipher};
use alloy_primitives::B256;
use std::fmt;
use subtle::ConstantTimeEq;

/// The largest frame size the 3-byte header field can express, the transport maximum.
pub const MAX_FRAME_SIZE: usize = 0xff_ffff;

const HEADER_LEN: usize = 16;
const MAC_LEN: usize = 16;
const BLOCK_LEN: usize = 16;
const FRAME_SIZE_FIELD_LEN: usize = 3;
/// header-data `rlp([capability-id = 0, context-id = 0])`, what geth always writes; readers
/// ignore it.
const HEADER_DATA: [u8; 3] = [0xc2, 0x80, 0x80];

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// Why a frame could not be written or read. For reading, all of these mean the
/// connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Outgoing frame data longer than the 3-byte size field allows.
    #[error("frame data of {len} bytes exceeds the RLPx maximum of {MAX_FRAME_SIZE}")]
    FrameDataTooLarge {
        /// Length of the frame data handed in.
        len: usize,
    },
    /// The header MAC of an incoming frame does not match.
    #[error("frame header MAC mismatch")]
    HeaderMacMismatch,
    /// The frame MAC of an incoming frame does not match.
    #[error("frame body MAC mismatch")]
    FrameMacMismatch,
    /// An authenticated header announces a frame above the reader's maximum.
    #[error("incoming frame of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced frame size.
        size: usize,
        /// The reader's configured maximum.
        max: usize,
    },
}

/// One direction's MAC chain: the running keccak state plus the AES-256 block cipher
/// keyed with the mac-secret. Deliberately not `Clone` (nor are the halves holding it):
/// a copied keystream or MAC chain would reuse key material.
struct MacChain {
    state: MacState,
    cipher: aes::Aes256,
}

impl MacChain {
    fn new(mac_secret: &B256, state: MacState) -> Self {
        Self { state, cipher: aes::Aes256::new(&mac_secret.0.into()) }
    }

    fn digest_prefix(&self) -> [u8; MAC_LEN] {
        let digest = self.state.digest();
        let mut prefix = [0u8; MAC_LEN];
        prefix.copy_from_slice(&digest[..MAC_LEN]);
        prefix
    }

    fn encrypt_block(&self, block: [u8; BLOCK_LEN]) -> [u8; BLOCK_LEN] {
        let mut block = aes::Block::from(block);
        self.cipher.encrypt_block(&mut block);
        block.into()
    }

    /// Absorbs `AES(digest[:16]) ^ header-ct`; the MAC is the new digest's first half.
    fn header_mac(&mut self, header_ct: &[u8; HEADER_LEN]) -> [u8; MAC_LEN] {
        let mut seed = self.encrypt_block(self.digest_prefix());
        xor_in_place(&mut seed, header_ct);
        self.state.update(&seed);
        self.digest_prefix()
    }

    /// Absorbs the frame ciphertext, then `AES(digest[:16]) ^ digest[:16]`; the MAC is the
    /// new digest's first half.
    fn frame_mac(&mut self, frame_ct: &[u8]) -> [u8; MAC_LEN] {
        self.state.update(frame_ct);
        let prefix = self.digest_prefix();
        let mut seed = self.encrypt_block(prefix);
        xor_in_place(&mut seed, &prefix);
        self.state.update(&seed);
        self.digest_prefix()
    }
}

fn xor_in_place(target: &mut [u8; BLOCK_LEN], other: &[u8; BLOCK_LEN]) {
    for (t, o) in target.iter_mut().zip(other) {
        *t ^= o;
    }
}

fn frame_cipher(aes_secret: &B256) -> Aes256Ctr {
    Aes256Ctr::new(&aes_secret.0.into(), &[0u8; BLOCK_LEN].into())
}

/// `size` rounded up to the 16-byte block; `size` is at most [`MAX_FRAME_SIZE`] here, so
/// this cannot overflow.
fn padded_len(size: usize) -> usize {
    size.div_ceil(BLOCK_LEN) * BLOCK_LEN
}

/// The sending half of a session: encrypts and MACs frames.
pub struct FrameWriter {
    cipher: Aes256Ctr,
    mac: MacChain,
}

impl fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FrameWriter(..)")
    }
}

impl FrameWriter {
    /// A writer from the aes- and mac-secret and the egress MAC state.
    pub fn new(aes_secret: &B256, mac_secret: &B256, egress_mac: MacState) -> Self {
        Self { cipher: frame_cipher(aes_secret), mac: MacChain::new(mac_secret, egress_mac) }
    }

    /// Encrypts one frame of `frame_data` (`rlp(msg-id) || msg-data`) and returns the
    /// bytes to write. Nothing changes on error.
    pub fn write_frame(&mut self, frame_data: &[u8]) -> Result<Vec<u8>, FrameError> {
        if frame_data.len() > MAX_FRAME_SIZE {
            return Err(FrameError::FrameDataTooLarge { len: frame_data.len() });
        }
        let body_len = padded_len(frame_data.len());
        let mut out = Vec::with_capacity(HEADER_LEN + MAC_LEN + body_len + MAC_LEN);

        let mut header = [0u8; HEADER_LEN];
        // Checked above: the length fits in the 3-byte field.
        let size_bytes = (frame_data.len() as u32).to_be_bytes();
        header[..FRAME_SIZE_FIELD_LEN].copy_from_slice(&size_bytes[1..]);
        header[FRAME_SIZE_FIELD_LEN..FRAME_SIZE_FIELD_LEN + HEADER_DATA.len()]
            .copy_from_slice(&HEADER_DATA);
        self.cipher.apply_keystream(&mut header);
        let header_mac = self.mac.header_mac(&header);
        out.extend_from_slice(&header);
        out.extend_from_slice(&header_mac);

        let body_start = out.len();
        out.extend_from_slice(frame_data);
        out.resize(body_start + body_len, 0);
        self.cipher.apply_keystream(&mut out[body_start..]);
        let frame_mac = self.mac.frame_mac(&out[body_start..]);
        out.extend_from_slice(&frame_mac);
        Ok(out)
    }
}

#[derive(Clone)]
enum ReadState {
    /// Collecting the 32 bytes of header-ct and header-mac.
    Header,
    /// Header authenticated; collecting `body_len` bytes of frame-ct and frame-mac.
    Body { frame_size: usize, body_len: usize },
    /// A MAC failed or a limit was hit; the connection is unusable.
    Failed(FrameError),
}

/// The receiving half of a session: takes bytes as they arrive and yields frame data.
pub struct FrameReader {
    cipher: Aes256Ctr,
    mac: MacChain,
    max_frame_size: usize,
    state: ReadState,
    /// Bytes of the header or body in progress; never more than one of them.
    buf: Vec<u8>,
}

impl fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("max_frame_size", &self.max_frame_size)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl FrameReader {
    /// A reader from the aes- and mac-secret and the ingress MAC state, refusing frames
    /// larger than `max_frame_size` (values above [`MAX_FRAME_SIZE`] mean that maximum).
    pub fn new(
        aes_secret: &B256,
        mac_secret: &B256,
        ingress_mac: MacState,
        max_frame_size: usize,
    ) -> Self {
        Self {
            cipher: frame_cipher(aes_secret),
            mac: MacChain::new(mac_secret, ingress_mac),
            max_frame_size: max_frame_size.min(MAX_FRAME_SIZE),
            state: ReadState::Header,
            buf: Vec::with_capacity(HEADER_LEN + MAC_LEN),
        }
    }

    /// The largest frame size this reader accepts.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Buffers as many of `bytes` as the header or body in progress still needs and
    /// returns how many it took; the caller keeps the rest and feeds it again after
    /// [`FrameReader::next_frame`]. Takes nothing while a complete header or frame waits
    /// for `next_frame`, or after an error.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let wanted = match self.state {
            ReadState::Header => HEADER_LEN + MAC_LEN,
            ReadState::Body { body_len, .. } => body_len,
            ReadState::Failed(_) => return 0,
        };
        let take = wanted.saturating_sub(self.buf.len()).min(bytes.len());
        self.buf.extend_from_slice(bytes.get(..take).unwrap_or_default());
        take
    }

    /// The next complete frame's data, `Ok(None)` if more bytes are needed. An error
    /// leaves the reader failed: every later call returns the same error.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let result = self.advance();
        if let Err(error) = &result {
            self.state = ReadState::Failed(error.clone());
            self.buf = Vec::new();
        }
        result
    }

    /// Feeds all of `bytes` and returns every frame they complete, in order. The
    /// convenience loop over [`FrameReader::feed`] and [`FrameReader::next_frame`].
    pub fn read_frames(&mut self, mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut frames = Vec::new();
        loop {
            let taken = self.feed(bytes);
            bytes = bytes.get(taken..).unwrap_or_default();
            match self.next_frame()? {
                Some(frame) => frames.push(frame),
                None if bytes.is_empty() => return Ok(frames),
                // The header was just authenticated; its body follows in `bytes`.
                None => {}
            }
        }
    }

    fn advance(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        loop {
            match self.state.clone() {
                ReadState::Failed(error) => return Err(error),
                ReadState::Header => {
                    let Some((header_ct, rest)) = self.buf.split_first_chunk::<HEADER_LEN>() else {
                        return Ok(None);
                    };
                    let Some(header_mac) = rest.first_chunk::<MAC_LEN>() else {
                        return Ok(None);
                    };
                    let header_ct = *header_ct;
                    let expected = self.mac.header_mac(&header_ct);
                    if !bool::from(expected.ct_eq(header_mac)) {
                        return Err(FrameError::HeaderMacMismatch);
                    }
                    let mut header = header_ct;
                    self.cipher.apply_keystream(&mut header);
                    let frame_size = usize::from(header[0]) << 16
                        | usize::from(header[1]) << 8
                        | usize::from(header[2]);
                    if frame_size > self.max_frame_size {
                        return Err(FrameError::FrameTooLarge {
                            size: frame_size,
                            max: self.max_frame_size,
                        });
                    }
                    let body_len = padded_len(frame_size) + MAC_LEN;
                    self.buf = Vec::with_capacity(body_len);
                    self.state = ReadState::Body { frame_size, body_len };
                }
                ReadState::Body { frame_size, body_len } => {
                    if self.buf.len() < body_len {
                        return Ok(None);
                    }
                    let mut body =
                        std::mem::replace(&mut self.buf, Vec::with_capacity(HEADER_LEN + MAC_LEN));
                    let ciphertext_len = body_len - MAC_LEN;
                    let (frame_ct, frame_mac) = body.split_at(ciphertext_len);
                    let expected = self.mac.frame_mac(frame_ct);
                    if !bool::from(expected.as_slice().ct_eq(frame_mac)) {
                        return Err(FrameError::FrameMacMismatch);
                    }
                    body.truncate(ciphertext_len);
                    self.cipher.apply_keystream(&mut body);
                    body.truncate(frame_size);
                    self.state = ReadState::Header;
                    return Ok(Some(body));
                }
            }
        }
    }
}

/// Both halves of a session's frame layer, built from the handshake's [`Secrets`].
#[derive(Debug)]
pub struct FrameCodec {
    writer: FrameWriter,
    reader: FrameReader,
    remote_public: NodePublicKey,
}

impl FrameCodec {
    /// A codec accepting frames up to the transport maximum, [`MAX_FRAME_SIZE`].
    pub fn new(secrets: Secrets) -> Self {
        Self::with_max_frame_size(secrets, MAX_FRAME_SIZE)
    }

    /// A codec whose reader refuses incoming frames larger than `max_frame_size`
    /// (clamped to [`MAX_FRAME_SIZE`]).
    pub fn with_max_frame_size(secrets: Secrets, max_frame_size: usize) -> Self {
        Self {
            writer: FrameWriter::new(&secrets.aes, &secrets.mac, secrets.egress_mac),
            reader: FrameReader::new(
                &secrets.aes,
                &secrets.mac,
                secrets.ingress_mac,
                max_frame_size,
            ),
            remote_public: secrets.remote_public,
        }
    }

    /// The peer's static public key, as authenticated by the handshake.
    pub fn remote_public(&self) -> NodePublicKey {
        self.remote_public
    }

    /// See [`FrameWriter::write_frame`].
    pub fn write_frame(&mut self, frame_data: &[u8]) -> Result<Vec<u8>, FrameError> {
        self.writer.write_frame(frame_data)
    }

    /// See [`FrameReader::feed`].
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        self.reader.feed(bytes)
    }

    /// See [`FrameReader::next_frame`].
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        self.reader.next_frame()
    }

    /// See [`FrameReader::read_frames`].
    pub fn read_frames(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        self.reader.read_frames(bytes)
    }

    /// Separates the halves, e.g. to drive reading and writing from different tasks.
    pub fn split(self) -> (FrameWriter, FrameReader) {
        (self.writer, self.reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{hex, keccak256};

    /// geth `p2p/rlpx/rlpx_test.go` `TestFrameReadWrite` (research §1.7.9): aes- and
    /// mac-secret keccak256(""), both MAC states a fake whose digest is always 32 x 0x01.
    fn geth_golden_pair() -> (FrameWriter, FrameReader) {
        let secret = keccak256([]);
        let writer = FrameWriter::new(&secret, &secret, MacState::constant_for_test(0x01));
        let reader =
            FrameReader::new(&secret, &secret, MacState::constant_for_test(0x01), MAX_FRAME_SIZE);
        (writer, reader)
    }

    const GETH_GOLDEN_FRAME: [u8; 64] = hex!(
        "00828ddae471818bb0bfa6b551d1cb42"
        "01010101010101010101010101010101"
        "ba628a4ba590cb43f7848f41c4382885"
        "01010101010101010101010101010101"
    );

    #[test]
    fn geth_golden_frame_is_written_byte_exact() {
        let (mut writer, _) = geth_golden_pair();
        // msg code 8, payload rlp([1, 2, 3, 4])
        let frame = writer.write_frame(&hex!("08c401020304")).unwrap();
        assert_eq!(frame, GETH_GOLDEN_FRAME);
    }

    #[test]
    fn geth_golden_frame_is_read_back() {
        let (_, mut reader) = geth_golden_pair();
        assert_eq!(
            reader.read_frames(&GETH_GOLDEN_FRAME).unwrap(),
            vec![hex!("08c401020304").to_vec()]
        );
    }

    #[test]
    fn geth_golden_header_plaintext_is_size_then_c28080() {
        // Decrypting the first 16 ciphertext bytes with the bare keystream shows the layout.
        let mut header: [u8; 16] = GETH_GOLDEN_FRAME[..16].try_into().unwrap();
        frame_cipher(&keccak256([])).apply_keystream(&mut header);
        assert_eq!(header, hex!("000006c2808000000000000000000000"));
    }

    fn keyed_pair(max: usize) -> (FrameWriter, FrameReader) {
        let aes = B256::repeat_byte(0xa5);
        let mac = B256::repeat_byte(0x5a);
        let seed = MacState::seeded(&mac, &B256::repeat_byte(1), b"auth");
        (FrameWriter::new(&aes, &mac, seed.clone()), FrameReader::new(&aes, &mac, seed, max))
    }

    #[test]
    fn sizes_around_block_boundaries_round_trip() {
        let (mut writer, mut reader) = keyed_pair(MAX_FRAME_SIZE);
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 1000] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let frame = writer.write_frame(&data).unwrap();
            assert_eq!(frame.len(), 32 + padded_len(len) + 16);
            assert_eq!(reader.read_frames(&frame).unwrap(), vec![data]);
        }
    }

    #[test]
    fn writer_refuses_oversized_data_without_changing_state() {
        let (mut writer, mut reader) = keyed_pair(MAX_FRAME_SIZE);
        let too_big = vec![0u8; MAX_FRAME_SIZE + 1];
        assert_eq!(
            writer.write_frame(&too_big),
            Err(FrameError::FrameDataTooLarge { len: MAX_FRAME_SIZE + 1 })
        );
        let frame = writer.write_frame(b"after").unwrap();
        assert_eq!(reader.read_frames(&frame).unwrap(), vec![b"after".to_vec()]);
    }

    #[test]
    fn reader_max_is_clamped_to_transport_max() {
        let (_, reader) = keyed_pair(usize::MAX);
        assert_eq!(reader.max_frame_size(), MAX_FRAME_SIZE);
    }

    #[test]
    fn reader_never_buffers_more_than_the_part_in_progress() {
        let (mut writer, mut reader) = keyed_pair(64);
        let mut stream = writer.write_frame(&[7u8; 40]).unwrap();
        stream.extend(writer.write_frame(&[8u8; 3]).unwrap());
        // Header only: 32 bytes taken, nothing more until next_frame.
        assert_eq!(reader.feed(&stream), 32);
        assert_eq!(reader.feed(&stream[32..]), 0);
        assert_eq!(reader.next_frame(), Ok(None));
        // Body of 48 + 16.
        assert_eq!(reader.feed(&stream[32..]), 64);
        assert_eq!(reader.buf.len(), 64);
        assert_eq!(reader.next_frame(), Ok(Some(vec![7u8; 40])));
        assert_eq!(reader.read_frames(&stream[96..]).unwrap(), vec![vec![8u8; 3]]);
    }
}
