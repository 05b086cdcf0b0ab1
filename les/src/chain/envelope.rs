//! The network form of EIP-2718 lists (transactions in a body, receipts of a block) and the
//! generic RLP item splitting the other decoders share.
//!
//! Inside an RLP list a legacy envelope is itself a list, and a typed envelope is a byte string
//! wrapping `type || rlp(payload)`. alloy's `network_decode` also accepts a typed envelope
//! without its string wrapper (for backwards compatibility, see its docs), so the wrapper is
//! checked here before handing the consensus (EIP-2718) bytes to `decode_2718_exact`.

use alloy_eips::eip2718::{Decodable2718, Eip2718Error, Encodable2718};
use alloy_primitives::B256;
use alloy_rlp::Header;

/// Largest EIP-2718 type byte; `0x80..` starts an RLP string or list, `0x00` is legacy.
const MAX_TYPE_BYTE: u8 = 0x7f;

/// One RLP item and its payload, borrowed from the input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RlpItem<'a> {
    /// Whether the item is a list.
    pub list: bool,
    /// The whole item: header and payload.
    pub full: &'a [u8],
    /// The payload (for a single byte `0x00..=0x7f`, that byte).
    pub payload: &'a [u8],
}

/// Takes the next RLP item off `buf`.
pub(crate) fn next_item<'a>(buf: &mut &'a [u8]) -> Result<RlpItem<'a>, alloy_rlp::Error> {
    let start: &'a [u8] = buf;
    let mut rest: &'a [u8] = buf;
    let header = Header::decode(&mut rest)?;
    let header_len = start.len() - rest.len();
    let payload = rest.get(..header.payload_length).ok_or(alloy_rlp::Error::InputTooShort)?;
    let full_len =
        header_len.checked_add(header.payload_length).ok_or(alloy_rlp::Error::InputTooShort)?;
    let (full, after) = start.split_at_checked(full_len).ok_or(alloy_rlp::Error::InputTooShort)?;
    *buf = after;
    Ok(RlpItem { list: header.list, full, payload })
}

/// Splits `bytes`, which must be exactly one RLP list, into its elements.
///
/// Every element consumes at least one input byte, so the vector is bounded by the input size.
pub(crate) fn list_elements(bytes: &[u8]) -> Result<Vec<RlpItem<'_>>, alloy_rlp::Error> {
    let mut buf = bytes;
    let list = next_item(&mut buf)?;
    if !buf.is_empty() {
        return Err(alloy_rlp::Error::UnexpectedLength);
    }
    if !list.list {
        return Err(alloy_rlp::Error::UnexpectedString);
    }
    let mut payload = list.payload;
    let mut elements = Vec::new();
    while !payload.is_empty() {
        elements.push(next_item(&mut payload)?);
    }
    Ok(elements)
}

/// A list of EIP-2718 envelopes did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The list itself is malformed, is not a list, or has trailing bytes.
    #[error("malformed envelope list: {0}")]
    List(alloy_rlp::Error),
    /// A typed envelope is not a byte string starting with a type byte `0x01..=0x7f`.
    #[error("element {index}: typed envelope not wrapped as a byte string of type || payload")]
    BadTypedWrapper {
        /// Position in the list.
        index: usize,
    },
    /// The type byte names no transaction type this crate knows.
    #[error("element {index}: unsupported type {ty:#04x}")]
    UnsupportedType {
        /// Position in the list.
        index: usize,
        /// The type byte.
        ty: u8,
    },
    /// The envelope's payload is malformed.
    #[error("element {index}: {source}")]
    Rlp {
        /// Position in the list.
        index: usize,
        /// What alloy's decoder reported.
        source: alloy_rlp::Error,
    },
    /// alloy reported an EIP-2718 error this crate does not know (the enum is non-exhaustive).
    #[error("element {index}: undecodable envelope")]
    Undecodable {
        /// Position in the list.
        index: usize,
    },
    /// The envelope decodes, but re-encoding it gives different bytes; the roots would then be
    /// computed over something other than what was received.
    #[error("element {index}: not in canonical encoding")]
    NonCanonical {
        /// Position in the list.
        index: usize,
    },
}

/// Decodes a list of envelopes in network form and computes the ordered-trie root (key
/// `rlp(index)`, value the EIP-2718 encoding) over the received bytes.
pub(crate) fn decode_envelope_list<T>(bytes: &[u8]) -> Result<(Vec<T>, B256), EnvelopeError>
where
    T: Decodable2718 + Encodable2718,
{
    let elements = list_elements(bytes).map_err(EnvelopeError::List)?;
    let mut decoded = Vec::with_capacity(elements.len());
    let mut consensus_forms: Vec<&[u8]> = Vec::with_capacity(elements.len());
    for (index, element) in elements.iter().enumerate() {
        let consensus = if element.list {
            element.full
        } else {
            // A one-byte item is its own payload, so `full == payload` rules out a string that
            // is not wrapped at all.
            match element.payload.first() {
                Some(&ty)
                    if (1..=MAX_TYPE_BYTE).contains(&ty)
                        && element.full.len() != element.payload.len() =>
                {
                    element.payload
                }
                _ => return Err(EnvelopeError::BadTypedWrapper { index }),
            }
        };
        let value = T::decode_2718_exact(consensus).map_err(|error| match error {
            Eip2718Error::RlpError(source) => EnvelopeError::Rlp { index, source },
            Eip2718Error::UnexpectedType(ty) => EnvelopeError::UnsupportedType { index, ty },
            _ => EnvelopeError::Undecodable { index },
        })?;
        if value.encoded_2718() != consensus {
            return Err(EnvelopeError::NonCanonical { index });
        }
        decoded.push(value);
        consensus_forms.push(consensus);
    }
    let root = alloy_trie::root::ordered_trie_root_encoded(&consensus_forms);
    Ok((decoded, root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::ReceiptEnvelope;

    #[test]
    fn list_elements_rejects_trailing_bytes_and_strings() {
        assert_eq!(list_elements(&[0xc0, 0x00]).unwrap_err(), alloy_rlp::Error::UnexpectedLength);
        assert_eq!(list_elements(&[0x80]).unwrap_err(), alloy_rlp::Error::UnexpectedString);
        assert_eq!(list_elements(&[0xc2, 0x01]).unwrap_err(), alloy_rlp::Error::InputTooShort);
        let elements = list_elements(&[0xc3, 0x01, 0x81, 0x80]).unwrap();
        assert_eq!(elements.len(), 2);
        assert_eq!(elements[0].full, &[0x01]);
        assert_eq!(elements[1].payload, &[0x80]);
    }

    #[test]
    fn typed_envelope_must_be_wrapped_in_a_string() {
        // A type-2 receipt `02 || rlp([status 1, cumulativeGas 0, bloom, []])`.
        let receipt: ReceiptEnvelope = ReceiptEnvelope::Eip1559(Default::default());
        let inner = receipt.encoded_2718();
        assert_eq!(inner[0], 0x02);
        // Wrapped (network form): accepted.
        let mut wrapped = Vec::new();
        alloy_rlp::Header { list: false, payload_length: inner.len() }.encode(&mut wrapped);
        wrapped.extend_from_slice(&inner);
        let mut list = Vec::new();
        alloy_rlp::Header { list: true, payload_length: wrapped.len() }.encode(&mut list);
        list.extend_from_slice(&wrapped);
        let (receipts, _) = decode_envelope_list::<ReceiptEnvelope>(&list).unwrap();
        assert_eq!(receipts, vec![receipt]);
        // Unwrapped `02 || list` inside the list: rejected (alloy's network_decode would take it).
        let mut bare = Vec::new();
        alloy_rlp::Header { list: true, payload_length: inner.len() }.encode(&mut bare);
        bare.extend_from_slice(&inner);
        assert!(matches!(
            decode_envelope_list::<ReceiptEnvelope>(&bare),
            Err(EnvelopeError::BadTypedWrapper { index: 0 })
        ));
    }
}
