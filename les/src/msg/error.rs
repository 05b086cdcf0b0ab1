//! The error every LES decoder returns.

use super::{LesVersion, StatusError};

/// Why a LES message (or one of its parts) could not be decoded or was refused.
///
/// `context` names the message and field that failed, e.g. `"GetProofsV2 entry blockHash"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    /// The payload is larger than [`MAX_MESSAGE_SIZE`](super::MAX_MESSAGE_SIZE).
    #[error("LES message of {size} bytes exceeds the {max}-byte limit", max = super::MAX_MESSAGE_SIZE)]
    TooLarge {
        /// Payload size in bytes.
        size: usize,
    },
    /// The code is not a message of the negotiated version (unknown, les/1-only, or
    /// Stop/Resume on les/2).
    #[error("message code {code:#04x} is not part of {version}")]
    UnknownCode {
        /// The negotiated version.
        version: LesVersion,
        /// The LES-relative message code.
        code: u64,
    },
    /// alloy-rlp refused an item: malformed header, non-canonical integer or size, leading
    /// zeros, overflow, wrong fixed length, truncated input.
    #[error("{context}: {source}")]
    Rlp {
        /// What was being decoded.
        context: &'static str,
        /// The alloy-rlp error.
        source: alloy_rlp::Error,
    },
    /// Bytes follow the single RLP item that should have been the whole input.
    #[error("{context}: {extra} trailing bytes")]
    TrailingBytes {
        /// What was being decoded.
        context: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// A list was expected, a byte string was found.
    #[error("{context}: expected a list, found a byte string")]
    ExpectedList {
        /// What was being decoded.
        context: &'static str,
    },
    /// A byte string was expected, a list was found.
    #[error("{context}: expected a byte string, found a list")]
    ExpectedString {
        /// What was being decoded.
        context: &'static str,
    },
    /// A fixed-shape list has the wrong number of elements.
    #[error("{context}: expected {expected} elements, found {found}")]
    WrongElementCount {
        /// What was being decoded.
        context: &'static str,
        /// How many elements the shape has (for shapes with alternatives, the preferred one).
        expected: usize,
        /// How many were found.
        found: usize,
    },
    /// A byte string has a length the field does not allow.
    #[error("{context}: a {found}-byte string is not allowed here")]
    InvalidLength {
        /// What was being decoded.
        context: &'static str,
        /// The string's length.
        found: usize,
    },
    /// An integer field holds a value outside its defined set.
    #[error("{context}: unknown value {value}")]
    UnknownValue {
        /// What was being decoded.
        context: &'static str,
        /// The value found.
        value: u64,
    },
    /// A text field is not UTF-8.
    #[error("{context}: not valid UTF-8")]
    InvalidUtf8 {
        /// What was being decoded.
        context: &'static str,
    },
    /// A Status message is well formed RLP but not an acceptable Status.
    #[error("Status: {0}")]
    Status(#[from] StatusError),
}

impl MsgError {
    pub(crate) fn rlp(context: &'static str) -> impl FnOnce(alloy_rlp::Error) -> MsgError {
        move |source| MsgError::Rlp { context, source }
    }
}
