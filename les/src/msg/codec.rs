//! Strict RLP list walking for the LES decoders, and list building for the encoders.
//!
//! alloy-rlp decodes single values strictly (canonical integers and sizes, exact-length
//! arrays, bounds-checked headers) but has no cursor that walks a list of a known shape and
//! says *which* field of *which* message failed, nor a way to keep an item's exact bytes.
//! This file adds only that; every scalar still goes through alloy-rlp's `Decodable`.

use super::MsgError;
use alloy_primitives::Bytes;
use alloy_rlp::{BufMut, Decodable, Encodable, Header};

/// One RLP item as it appears in the input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Item<'a> {
    /// Header and payload, exactly as received.
    pub raw: &'a [u8],
    /// The payload: a string's bytes, or a list's concatenated elements.
    pub payload: &'a [u8],
    /// Whether the item is a list.
    pub is_list: bool,
}

impl<'a> Item<'a> {
    /// Decodes the item as `T`, which must consume it entirely.
    pub fn decode<T: Decodable>(self, context: &'static str) -> Result<T, MsgError> {
        let mut rest = self.raw;
        let value = T::decode(&mut rest).map_err(MsgError::rlp(context))?;
        if !rest.is_empty() {
            return Err(MsgError::TrailingBytes { context, extra: rest.len() });
        }
        Ok(value)
    }

    /// The payload of a byte-string item.
    pub fn string(self, context: &'static str) -> Result<&'a [u8], MsgError> {
        if self.is_list {
            return Err(MsgError::ExpectedString { context });
        }
        Ok(self.payload)
    }

    /// Walks a list item.
    pub fn list(self, context: &'static str) -> Result<ListReader<'a>, MsgError> {
        if !self.is_list {
            return Err(MsgError::ExpectedList { context });
        }
        Ok(ListReader { rest: self.payload, context })
    }
}

/// Splits the next item off `buf`. Only the item's own header is checked (canonical, and its
/// payload present in full); a list's elements are checked when they are walked.
pub(crate) fn take_item<'a>(
    buf: &mut &'a [u8],
    context: &'static str,
) -> Result<Item<'a>, MsgError> {
    let start: &'a [u8] = buf;
    let mut after_header = start;
    let header = Header::decode(&mut after_header).map_err(MsgError::rlp(context))?;
    // Header::decode leaves a single byte below 0x80 in place: that byte is its own payload.
    let header_len = start.len() - after_header.len();
    let too_short = MsgError::Rlp { context, source: alloy_rlp::Error::InputTooShort };
    let total = header_len.checked_add(header.payload_length).ok_or(too_short.clone())?;
    let (raw, rest) = start.split_at_checked(total).ok_or(too_short.clone())?;
    let (_, payload) = raw.split_at_checked(header_len).ok_or(too_short)?;
    *buf = rest;
    Ok(Item { raw, payload, is_list: header.list })
}

/// The single item that must make up all of `input`.
pub(crate) fn exactly_one_item<'a>(
    input: &'a [u8],
    context: &'static str,
) -> Result<Item<'a>, MsgError> {
    let mut rest = input;
    let item = take_item(&mut rest, context)?;
    if !rest.is_empty() {
        return Err(MsgError::TrailingBytes { context, extra: rest.len() });
    }
    Ok(item)
}

/// A cursor over the elements of one list.
#[derive(Debug, Clone)]
pub(crate) struct ListReader<'a> {
    rest: &'a [u8],
    context: &'static str,
}

impl<'a> ListReader<'a> {
    /// Walks `input`, which must be exactly one list.
    pub fn top_level(input: &'a [u8], context: &'static str) -> Result<Self, MsgError> {
        exactly_one_item(input, context)?.list(context)
    }

    /// Counts the remaining elements (checking each element's header, allocating nothing).
    pub fn count(&self) -> Result<usize, MsgError> {
        let mut rest = self.rest;
        let mut found = 0usize;
        while !rest.is_empty() {
            take_item(&mut rest, self.context)?;
            found += 1;
        }
        Ok(found)
    }

    /// Requires exactly `expected` elements.
    pub fn with_count(self, expected: usize) -> Result<Self, MsgError> {
        let found = self.count()?;
        if found != expected {
            return Err(MsgError::WrongElementCount { context: self.context, expected, found });
        }
        Ok(self)
    }

    /// Whether every element has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element.
    pub fn item(&mut self, context: &'static str) -> Result<Item<'a>, MsgError> {
        if self.rest.is_empty() {
            return Err(MsgError::Rlp { context, source: alloy_rlp::Error::InputTooShort });
        }
        take_item(&mut self.rest, context)
    }

    /// The next element, decoded as `T`.
    pub fn value<T: Decodable>(&mut self, context: &'static str) -> Result<T, MsgError> {
        self.item(context)?.decode(context)
    }

    /// The next element, which must be a list.
    pub fn list(&mut self, context: &'static str) -> Result<ListReader<'a>, MsgError> {
        self.item(context)?.list(context)
    }

    /// The next element, which must be a byte string.
    pub fn string(&mut self, context: &'static str) -> Result<&'a [u8], MsgError> {
        self.item(context)?.string(context)
    }

    /// Reads every remaining element with `read`, growing the vector one element at a time.
    pub fn collect<T>(
        mut self,
        mut read: impl FnMut(Item<'a>) -> Result<T, MsgError>,
    ) -> Result<Vec<T>, MsgError> {
        let mut out = Vec::new();
        while !self.is_empty() {
            let context = self.context;
            out.push(read(self.item(context)?)?);
        }
        Ok(out)
    }
}

/// An RLP list of heterogeneous fields, for encoders.
pub(crate) struct ListOf<'a>(pub &'a [&'a dyn Encodable]);

impl ListOf<'_> {
    fn payload_length(&self) -> usize {
        self.0.iter().map(|field| field.length()).sum()
    }
}

impl Encodable for ListOf<'_> {
    fn encode(&self, out: &mut dyn BufMut) {
        Header { list: true, payload_length: self.payload_length() }.encode(out);
        for field in self.0 {
            field.encode(out);
        }
    }

    fn length(&self) -> usize {
        let payload_length = self.payload_length();
        payload_length + alloy_rlp::length_of_length(payload_length)
    }
}

/// An item that is already RLP, written as-is.
pub(crate) struct RawItem<'a>(pub &'a [u8]);

impl Encodable for RawItem<'_> {
    fn encode(&self, out: &mut dyn BufMut) {
        out.put_slice(self.0);
    }

    fn length(&self) -> usize {
        self.0.len()
    }
}

/// A list whose elements are already RLP items, written as-is.
pub(crate) struct RawList<'a>(pub &'a [Bytes]);

impl RawList<'_> {
    fn payload_length(&self) -> usize {
        self.0.iter().map(|item| item.len()).sum()
    }
}

impl Encodable for RawList<'_> {
    fn encode(&self, out: &mut dyn BufMut) {
        Header { list: true, payload_length: self.payload_length() }.encode(out);
        for item in self.0 {
            out.put_slice(item);
        }
    }

    fn length(&self) -> usize {
        let payload_length = self.payload_length();
        payload_length + alloy_rlp::length_of_length(payload_length)
    }
}

/// Implements `Encodable` for a type whose encoding is one list built with [`ListOf`].
macro_rules! encode_as_list {
    ($ty:ty, |$this:ident| $fields:expr) => {
        impl alloy_rlp::Encodable for $ty {
            fn encode(&self, out: &mut dyn alloy_rlp::BufMut) {
                let $this = self;
                $crate::msg::codec::ListOf(&$fields).encode(out)
            }

            fn length(&self) -> usize {
                let $this = self;
                $crate::msg::codec::ListOf(&$fields).length()
            }
        }
    };
}
pub(crate) use encode_as_list;

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::hex;

    #[test]
    fn take_item_keeps_exact_bytes() {
        let input = hex!("c3010203 05 83616263");
        let mut rest = &input[..];
        let list = take_item(&mut rest, "t").unwrap();
        assert!(list.is_list);
        assert_eq!(list.raw, &hex!("c3010203"));
        assert_eq!(list.payload, &hex!("010203"));
        let single = take_item(&mut rest, "t").unwrap();
        assert_eq!((single.raw, single.payload, single.is_list), (&[5u8][..], &[5u8][..], false));
        let string = take_item(&mut rest, "t").unwrap();
        assert_eq!(string.payload, b"abc");
        assert!(rest.is_empty());
    }

    #[test]
    fn take_item_rejects_truncated_and_non_canonical_headers() {
        for bad in [&hex!("c401")[..], &hex!("8161")[..], &hex!("b80161")[..], &hex!("")[..]] {
            let mut rest = bad;
            assert!(matches!(take_item(&mut rest, "t"), Err(MsgError::Rlp { .. })), "{bad:x?}");
        }
    }

    #[test]
    fn with_count_reports_found_elements() {
        let input = hex!("c3010203");
        let reader = ListReader::top_level(&input, "t").unwrap();
        assert_eq!(
            reader.with_count(2).unwrap_err(),
            MsgError::WrongElementCount { context: "t", expected: 2, found: 3 }
        );
    }

    #[test]
    fn raw_list_encoding_matches_header_plus_items() {
        let items = [Bytes::from_static(&hex!("c0")), Bytes::from_static(&hex!("05"))];
        assert_eq!(alloy_rlp::encode(RawList(&items)), hex!("c2c005"));
        assert_eq!(RawList(&items).length(), 3);
    }
}
