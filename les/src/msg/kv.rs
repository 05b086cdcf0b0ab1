//! The key/value list carried by Status and Announce: `[[key, value], ...]` where each key
//! is a byte string and each value is one RLP item embedded as-is (geth `rlp.RawValue`), not
//! a byte string wrapping RLP.

use super::MsgError;
use super::codec::{ListReader, RawItem, exactly_one_item};
use alloy_primitives::Bytes;
use alloy_rlp::{BufMut, Decodable, Encodable, Header};

/// Bytes added per entry when sizing a list (geth `keyValueList.decode`: `len(key) +
/// len(value) + 8`).
pub const KV_ENTRY_OVERHEAD: u64 = 8;

/// An ordered key/value list with raw RLP values.
///
/// Entries keep their received order and bytes, so a decoded list re-encodes byte for byte.
/// Lookups follow geth, which builds a map from the list: with duplicate keys the **last**
/// entry wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvList {
    entries: Vec<(Bytes, Bytes)>,
}

impl KvList {
    /// An empty list (encodes as `c0`).
    pub const fn new() -> Self {
        Self { entries: Vec::new() }
    }

    /// Number of entries, duplicates included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in order, as (key, raw RLP value).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().map(|(key, value)| (key.as_ref(), value.as_ref()))
    }

    /// The raw RLP value of `key` (the last one if the key repeats).
    pub fn get_raw(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k.as_ref() == key.as_bytes())
            .map(|(_, value)| value.as_ref())
    }

    /// Whether `key` is present (how flags such as `serveHeaders` are tested).
    pub fn contains(&self, key: &str) -> bool {
        self.get_raw(key).is_some()
    }

    /// The value of `key` decoded as `T` (which must consume the whole value), or `None` if
    /// the key is absent.
    pub fn get<T: Decodable>(&self, key: &'static str) -> Result<Option<T>, MsgError> {
        self.get_raw(key).map(|raw| exactly_one_item(raw, key)?.decode(key)).transpose()
    }

    /// Sets `key` to an already-encoded RLP item. An existing entry for `key` keeps its
    /// position (earlier duplicates are dropped); a new key is appended.
    pub fn insert_raw(&mut self, key: &str, value: Bytes) -> Result<(), MsgError> {
        exactly_one_item(&value, "key/value list value")?;
        self.set(key, value);
        Ok(())
    }

    /// Sets `key` to the RLP encoding of `value` (same placement rule as
    /// [`insert_raw`](Self::insert_raw)).
    pub fn insert<T: Encodable + ?Sized>(&mut self, key: &str, value: &T) {
        self.set(key, Bytes::from(alloy_rlp::encode(value)));
    }

    /// Sets a flag key, whose value geth sends as the empty string `80` and receivers only
    /// test for presence.
    pub fn insert_flag(&mut self, key: &str) {
        self.set(key, Bytes::from_static(&[alloy_rlp::EMPTY_STRING_CODE]));
    }

    /// Removes every entry for `key`, returning the value that lookups saw.
    pub fn remove(&mut self, key: &str) -> Option<Bytes> {
        let last = self.get_raw(key).map(Bytes::copy_from_slice);
        self.entries.retain(|(k, _)| k.as_ref() != key.as_bytes());
        last
    }

    /// Appends an entry without looking for an existing one (keeps duplicates, as a peer
    /// may send them).
    pub(crate) fn push_raw(&mut self, key: Bytes, value: Bytes) {
        self.entries.push((key, value));
    }

    /// The size geth charges for the list: the sum over entries of
    /// `len(key) + len(raw value) + 8` (checked against
    /// [`MAX_STATUS_KV_BYTES`](super::MAX_STATUS_KV_BYTES) for Status, and against the
    /// client's update token bucket for Announce).
    pub fn accounted_size(&self) -> u64 {
        self.entries.iter().fold(0u64, |sum, (key, value)| {
            sum.saturating_add(key.len() as u64)
                .saturating_add(value.len() as u64)
                .saturating_add(KV_ENTRY_OVERHEAD)
        })
    }

    /// Decodes a list that must make up all of `input`.
    pub fn decode(input: &[u8]) -> Result<Self, MsgError> {
        Self::read(ListReader::top_level(input, "key/value list")?)
    }

    /// Reads the entries of an already opened list.
    pub(crate) fn read(list: ListReader<'_>) -> Result<Self, MsgError> {
        let entries = list.collect(|entry| {
            let mut entry = entry.list("key/value entry")?.with_count(2)?;
            let key = entry.string("key/value entry key")?;
            let value = entry.item("key/value entry value")?;
            Ok((Bytes::copy_from_slice(key), Bytes::copy_from_slice(value.raw)))
        })?;
        Ok(Self { entries })
    }

    fn set(&mut self, key: &str, value: Bytes) {
        match self.entries.iter().rposition(|(k, _)| k.as_ref() == key.as_bytes()) {
            Some(last) => {
                if let Some(entry) = self.entries.get_mut(last) {
                    entry.1 = value;
                }
                let mut index = 0usize;
                self.entries.retain(|(k, _)| {
                    let keep = index >= last || k.as_ref() != key.as_bytes();
                    index += 1;
                    keep
                });
            }
            None => self.entries.push((Bytes::copy_from_slice(key.as_bytes()), value)),
        }
    }

    fn entry_payload_length(key: &[u8], value: &[u8]) -> usize {
        key.length() + value.len()
    }

    fn payload_length(&self) -> usize {
        self.entries
            .iter()
            .map(|(key, value)| {
                let payload = Self::entry_payload_length(key, value);
                payload + alloy_rlp::length_of_length(payload)
            })
            .sum()
    }
}

impl Encodable for KvList {
    fn encode(&self, out: &mut dyn BufMut) {
        Header { list: true, payload_length: self.payload_length() }.encode(out);
        for (key, value) in &self.entries {
            let payload_length = Self::entry_payload_length(key, value);
            Header { list: true, payload_length }.encode(out);
            key.as_ref().encode(out);
            RawItem(value).encode(out);
        }
    }

    fn length(&self) -> usize {
        let payload_length = self.payload_length();
        payload_length + alloy_rlp::length_of_length(payload_length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::hex;

    #[test]
    fn values_are_raw_items_not_wrapped_strings() {
        let mut list = KvList::new();
        list.insert("a", &5u64);
        list.insert_raw("b", Bytes::from_static(&hex!("c20102"))).unwrap();
        list.insert_flag("c");
        // [["a", 05], ["b", [1, 2]], ["c", ""]]
        let encoded = alloy_rlp::encode(&list);
        assert_eq!(encoded, hex!("cb c26105 c462c20102 c26380"));
        assert_eq!(list.length(), encoded.len());
        assert_eq!(KvList::decode(&encoded).unwrap(), list);
        assert_eq!(list.get_raw("b"), Some(&hex!("c20102")[..]));
        assert!(list.contains("c"));
    }

    #[test]
    fn duplicate_keys_last_wins_and_round_trip_exactly() {
        // [["k", 1], ["x", 3], ["k", 2]]
        let input = hex!("c9 c26b01 c27803 c26b02");
        let list = KvList::decode(&input).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list.get::<u64>("k").unwrap(), Some(2));
        assert_eq!(alloy_rlp::encode(&list), input);
    }

    #[test]
    fn insert_replaces_last_and_drops_earlier_duplicates() {
        let mut list = KvList::decode(&hex!("c9 c26b01 c27803 c26b02")).unwrap();
        list.insert("k", &9u64);
        assert_eq!(alloy_rlp::encode(&list), hex!("c6 c27803 c26b09"));
        assert_eq!(list.remove("k"), Some(Bytes::from_static(&[9])));
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn entries_must_have_exactly_two_elements() {
        for bad in [&hex!("c4 c36b0102")[..], &hex!("c2 c16b")[..], &hex!("c1 c0")[..]] {
            assert!(matches!(
                KvList::decode(bad),
                Err(MsgError::WrongElementCount { expected: 2, .. })
            ));
        }
        // A list as key is refused.
        assert!(matches!(KvList::decode(&hex!("c3 c2c06b")), Err(MsgError::ExpectedString { .. })));
        // Trailing bytes after the list.
        assert!(matches!(
            KvList::decode(&hex!("c3 c26b01 00")),
            Err(MsgError::TrailingBytes { extra: 1, .. })
        ));
    }

    #[test]
    fn insert_raw_refuses_anything_but_one_item() {
        let mut list = KvList::new();
        assert!(list.insert_raw("k", Bytes::from_static(&hex!("0102"))).is_err());
        assert!(list.insert_raw("k", Bytes::new()).is_err());
        assert!(list.is_empty());
    }

    #[test]
    fn accounted_size_is_key_plus_value_plus_eight() {
        let list = KvList::decode(&hex!("c9 c26b01 c27803 c26b02")).unwrap();
        assert_eq!(list.accounted_size(), 3 * (1 + 1 + 8));
    }
}
