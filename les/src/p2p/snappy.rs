//! Snappy compression of message data (p2p version 5, EIP-706): the raw block format of
//! `snap::raw`, applied to msg-data only (the message ID stays uncompressed).
//!
//! A peer controls the declared uncompressed length, so it is read and checked against
//! the transport limit and the caller's limit before any buffer is allocated.

/// Largest uncompressed message data either side may produce or accept: 2^24 − 1 bytes,
/// the RLPx frame-size limit (geth: "message length >= 16MB").
pub const MAX_UNCOMPRESSED_LEN: usize = 0xFF_FFFF;

/// Why compression or decompression failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SnappyError {
    /// The payload to compress is larger than [`MAX_UNCOMPRESSED_LEN`].
    #[error("payload of {len} bytes exceeds the {MAX_UNCOMPRESSED_LEN}-byte snappy limit")]
    PayloadTooLarge {
        /// Length of the payload.
        len: usize,
    },
    /// Compressed data with no bytes at all (not even the length header).
    #[error("empty snappy data")]
    Empty,
    /// The declared uncompressed length is larger than [`MAX_UNCOMPRESSED_LEN`].
    #[error("declared uncompressed length {declared} exceeds {MAX_UNCOMPRESSED_LEN}")]
    DeclaredTooLarge {
        /// The length the data declares.
        declared: usize,
    },
    /// The declared uncompressed length is larger than the caller's limit.
    #[error("declared uncompressed length {declared} exceeds the limit of {limit}")]
    ExceedsLimit {
        /// The length the data declares.
        declared: usize,
        /// The caller's limit.
        limit: usize,
    },
    /// The data is not valid snappy (bad header, bad element, wrong total length).
    #[error("corrupt snappy data: {0}")]
    Corrupt(#[source] snap::Error),
}

/// Compresses message data in the snappy raw block format.
pub fn compress(payload: &[u8]) -> Result<Vec<u8>, SnappyError> {
    if payload.len() > MAX_UNCOMPRESSED_LEN {
        return Err(SnappyError::PayloadTooLarge { len: payload.len() });
    }
    snap::raw::Encoder::new().compress_vec(payload).map_err(SnappyError::Corrupt)
}

/// Decompresses message data, refusing (before allocating) anything that declares more
/// than [`MAX_UNCOMPRESSED_LEN`] or more than `max_len` bytes.
///
/// `max_len` is the receiving protocol's own message limit (LES: 10 MiB); pass
/// [`MAX_UNCOMPRESSED_LEN`] for no limit beyond the transport's.
pub fn decompress(data: &[u8], max_len: usize) -> Result<Vec<u8>, SnappyError> {
    if data.is_empty() {
        // `decompress_len` reports 0 for empty input; a valid encoding of an empty
        // payload is the one byte 0x00, so empty input is corrupt.
        return Err(SnappyError::Empty);
    }
    // Reads only the varint header; no allocation happens here.
    let declared = snap::raw::decompress_len(data).map_err(SnappyError::Corrupt)?;
    if declared > MAX_UNCOMPRESSED_LEN {
        return Err(SnappyError::DeclaredTooLarge { declared });
    }
    if declared > max_len {
        return Err(SnappyError::ExceedsLimit { declared, limit: max_len });
    }
    // The allocation below is `declared` bytes, now bounded by both limits; the decoder
    // fails if the elements do not produce exactly that many bytes.
    snap::raw::Decoder::new().decompress_vec(data).map_err(SnappyError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::hex;

    #[test]
    fn empty_list_compresses_like_geth() {
        // A Ping after Hello is `02 01 00 c0` on the wire: length 1, one literal byte.
        assert_eq!(compress(&[0xc0]).unwrap(), hex!("0100c0"));
        assert_eq!(decompress(&hex!("0100c0"), 16).unwrap(), hex!("c0"));
        assert_eq!(compress(&[]).unwrap(), hex!("00"));
        assert_eq!(decompress(&hex!("00"), 0).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn round_trip_compressible_and_random_data() {
        let repetitive: Vec<u8> = b"les".iter().copied().cycle().take(100_000).collect();
        let compressed = compress(&repetitive).unwrap();
        assert!(compressed.len() < repetitive.len() / 10);
        assert_eq!(decompress(&compressed, repetitive.len()).unwrap(), repetitive);

        let noise: Vec<u8> =
            (0u32..5000).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        assert_eq!(decompress(&compress(&noise).unwrap(), MAX_UNCOMPRESSED_LEN).unwrap(), noise);
    }

    #[test]
    fn declared_length_is_checked_before_allocating() {
        // varint 0x1000000 = 2^24 followed by no elements: must be refused on the header
        // alone (decompressing would need 16 MiB).
        let too_big = hex!("80808008");
        assert!(matches!(
            decompress(&too_big, usize::MAX),
            Err(SnappyError::DeclaredTooLarge { declared: 0x100_0000 })
        ));
        // Exactly the transport limit passes the header check and then fails as corrupt
        // (no elements follow), proving the boundary is inclusive.
        let at_limit = hex!("ffffff07");
        assert!(matches!(
            decompress(&at_limit, MAX_UNCOMPRESSED_LEN),
            Err(SnappyError::Corrupt(_))
        ));

        let data = compress(&[7u8; 1000]).unwrap();
        assert!(matches!(
            decompress(&data, 999),
            Err(SnappyError::ExceedsLimit { declared: 1000, limit: 999 })
        ));
        assert_eq!(decompress(&data, 1000).unwrap(), vec![7u8; 1000]);
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert!(matches!(decompress(&[], 10), Err(SnappyError::Empty)));
        // Declares 5 bytes but carries a 1-byte literal.
        assert!(matches!(decompress(&hex!("0500c0"), 10), Err(SnappyError::Corrupt(_))));
        // Unterminated varint.
        assert!(matches!(decompress(&hex!("ff"), 10), Err(SnappyError::Corrupt(_))));
        // Trailing garbage after a complete block.
        assert!(matches!(decompress(&hex!("0100c0ff"), 10), Err(SnappyError::Corrupt(_))));
    }

    #[test]
    fn oversized_payload_is_refused() {
        let big = vec![0u8; MAX_UNCOMPRESSED_LEN + 1];
        assert!(
            matches!(compress(&big), Err(SnappyError::PayloadTooLarge { len }) if len == MAX_UNCOMPRESSED_LEN + 1)
        );
    }
}
