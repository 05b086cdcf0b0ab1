//! Capabilities (`[name, version]` pairs in Hello) and the negotiation that turns two
//! capability lists into the shared set and the message-ID range of each shared
//! capability.
//!
//! How many message codes a capability uses is that capability's own fact (LES: see the
//! `msg` module), so it comes in as [`CapabilitySpec::message_count`].

use super::BASE_PROTOCOL_LENGTH;
use alloy_rlp::{Decodable, Encodable, Header};
use std::collections::BTreeMap;

/// Longest capability name devp2p allows, in bytes.
pub const MAX_CAPABILITY_NAME_LEN: usize = 8;

/// A capability as advertised in Hello: `[name, version]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Capability {
    /// ASCII name of at most [`MAX_CAPABILITY_NAME_LEN`] bytes, case-sensitive.
    pub name: String,
    /// Version number.
    pub version: u64,
}

/// What is wrong with a capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// The name is longer than [`MAX_CAPABILITY_NAME_LEN`] bytes.
    #[error("capability name of {len} bytes is longer than {MAX_CAPABILITY_NAME_LEN}")]
    NameTooLong {
        /// Length of the name in bytes.
        len: usize,
    },
    /// The name contains a byte outside ASCII.
    #[error("capability name is not ASCII")]
    NameNotAscii,
    /// The RLP is not `[name: string, version: integer]` exactly.
    #[error("malformed capability: {0}")]
    Rlp(alloy_rlp::Error),
}

fn check_name(name: &[u8]) -> Result<(), CapabilityError> {
    if name.len() > MAX_CAPABILITY_NAME_LEN {
        return Err(CapabilityError::NameTooLong { len: name.len() });
    }
    if !name.is_ascii() {
        return Err(CapabilityError::NameNotAscii);
    }
    Ok(())
}

impl Capability {
    /// A capability with a checked name.
    pub fn new(name: impl Into<String>, version: u64) -> Result<Self, CapabilityError> {
        let name = name.into();
        check_name(name.as_bytes())?;
        Ok(Self { name, version })
    }

    /// Checks the name rules (fields are public, so a value may have been built without
    /// [`Capability::new`]).
    pub fn validate(&self) -> Result<(), CapabilityError> {
        check_name(self.name.as_bytes())
    }

    fn payload_length(&self) -> usize {
        self.name.as_bytes().length() + self.version.length()
    }

    /// Decodes `[name, version]` strictly (exactly two elements, canonical integer,
    /// valid name) and advances `buf` past it.
    pub fn decode(buf: &mut &[u8]) -> Result<Self, CapabilityError> {
        let mut payload = Header::decode_bytes(buf, true).map_err(CapabilityError::Rlp)?;
        let name = Header::decode_bytes(&mut payload, false).map_err(CapabilityError::Rlp)?;
        let version = u64::decode(&mut payload).map_err(CapabilityError::Rlp)?;
        if !payload.is_empty() {
            return Err(CapabilityError::Rlp(alloy_rlp::Error::ListLengthMismatch {
                expected: 0,
                got: payload.len(),
            }));
        }
        check_name(name)?;
        // check_name proved the bytes are ASCII, hence UTF-8.
        let name = String::from_utf8(name.to_vec()).map_err(|_| CapabilityError::NameNotAscii)?;
        Ok(Self { name, version })
    }
}

impl Encodable for Capability {
    fn encode(&self, out: &mut dyn alloy_rlp::BufMut) {
        Header { list: true, payload_length: self.payload_length() }.encode(out);
        self.name.as_bytes().encode(out);
        self.version.encode(out);
    }

    fn length(&self) -> usize {
        let payload_length = self.payload_length();
        payload_length + alloy_rlp::length_of_length(payload_length)
    }
}

/// A capability we support, with the number of message codes it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilitySpec {
    /// Name, as in [`Capability::name`].
    pub name: String,
    /// Version.
    pub version: u64,
    /// How many consecutive message IDs this capability occupies (les/2: 22, les/3+: 24).
    pub message_count: u64,
}

impl CapabilitySpec {
    /// The capability to advertise in Hello.
    pub fn capability(&self) -> Capability {
        Capability { name: self.name.clone(), version: self.version }
    }
}

/// A capability both sides share, with its place in the message-ID space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCapability {
    /// Name.
    pub name: String,
    /// The highest version both sides advertise for this name.
    pub version: u64,
    /// Wire ID of this capability's relative code 0.
    pub offset: u64,
    /// Number of message IDs it occupies, from `offset`.
    pub message_count: u64,
}

impl SharedCapability {
    /// The wire message ID of `relative_code`, or `None` if the code is outside this
    /// capability's range.
    pub fn wire_id(&self, relative_code: u64) -> Option<u64> {
        if relative_code < self.message_count {
            self.offset.checked_add(relative_code)
        } else {
            None
        }
    }

    /// The relative code of `wire_id` if it falls in this capability's range.
    pub fn relative_code(&self, wire_id: u64) -> Option<u64> {
        let relative = wire_id.checked_sub(self.offset)?;
        (relative < self.message_count).then_some(relative)
    }
}

/// Negotiates the shared capabilities (devp2p rules):
///
/// 1. keep the capabilities with equal name and version on both sides;
/// 2. per name keep only the highest such version;
/// 3. sort by name, byte-wise;
/// 4. give each a compact range of message IDs starting at [`BASE_PROTOCOL_LENGTH`].
///
/// The result is sorted by offset. An empty result means no capability matches (geth
/// then disconnects with "useless peer"). If `local` lists the same name and version
/// twice, the first entry's message count is used. A capability whose range would not
/// fit below 2^64 ends the list (impossible with real message counts).
pub fn negotiate(local: &[CapabilitySpec], remote: &[Capability]) -> Vec<SharedCapability> {
    // BTreeMap over &str iterates in byte-wise order, which is the devp2p sort order.
    let mut best: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for theirs in remote {
        let Some(ours) =
            local.iter().find(|spec| spec.name == theirs.name && spec.version == theirs.version)
        else {
            continue;
        };
        best.entry(ours.name.as_str())
            .and_modify(|(version, count)| {
                if ours.version > *version {
                    *version = ours.version;
                    *count = ours.message_count;
                }
            })
            .or_insert((ours.version, ours.message_count));
    }

    let mut shared = Vec::with_capacity(best.len());
    let mut offset = BASE_PROTOCOL_LENGTH;
    for (name, (version, message_count)) in best {
        let Some(next) = offset.checked_add(message_count) else { break };
        shared.push(SharedCapability { name: name.to_owned(), version, offset, message_count });
        offset = next;
    }
    shared
}

/// Finds which shared capability a wire message ID belongs to: `(index into shared,
/// relative code)`. `None` for base-protocol IDs (below [`BASE_PROTOCOL_LENGTH`]) and for
/// IDs past the last capability.
pub fn resolve_message_id(shared: &[SharedCapability], wire_id: u64) -> Option<(usize, u64)> {
    shared
        .iter()
        .enumerate()
        .find_map(|(index, cap)| cap.relative_code(wire_id).map(|code| (index, code)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::hex;

    // Message counts used only to exercise offsets; real LES counts live in `msg`.
    const COUNT_A: u64 = 22;
    const COUNT_B: u64 = 24;
    const ETH_COUNT: u64 = 17;

    fn spec(name: &str, version: u64, message_count: u64) -> CapabilitySpec {
        CapabilitySpec { name: name.into(), version, message_count }
    }

    fn cap(name: &str, version: u64) -> Capability {
        Capability::new(name, version).unwrap()
    }

    #[test]
    fn capability_rlp() {
        let les4 = cap("les", 4);
        assert_eq!(alloy_rlp::encode(&les4), hex!("c5836c657304"));
        assert_eq!(les4.length(), 6);
        assert_eq!(Capability::decode(&mut &hex!("c5836c657304")[..]), Ok(les4));
        assert_eq!(Capability::decode(&mut &hex!("c3808080")[..]).map_err(|_| ()), Err(()));
        // Extra element, non-canonical version, name not a string.
        assert!(Capability::decode(&mut &hex!("c6836c65730404")[..]).is_err());
        assert!(Capability::decode(&mut &hex!("c6836c6573820004")[..]).is_err());
        assert!(Capability::decode(&mut &hex!("c3c004")[..]).is_err());
        // Nine-byte and non-ASCII names.
        assert_eq!(
            Capability::decode(&mut &hex!("cb8961616161616161616101")[..]),
            Err(CapabilityError::NameTooLong { len: 9 })
        );
        assert_eq!(
            Capability::decode(&mut &hex!("c482ff0001")[..]).map(|_| ()),
            Err(CapabilityError::NameNotAscii)
        );
        assert_eq!(Capability::new("lespay", 1).map(|c| c.name), Ok("lespay".to_owned()));
        assert_eq!(Capability::new("abcdefghi", 1), Err(CapabilityError::NameTooLong { len: 9 }));
        assert_eq!(Capability::new("lés", 1), Err(CapabilityError::NameNotAscii));
    }

    #[test]
    fn single_capability_starts_at_0x10() {
        let shared = negotiate(&[spec("les", 4, COUNT_B)], &[cap("les", 4)]);
        assert_eq!(
            shared,
            vec![SharedCapability {
                name: "les".into(),
                version: 4,
                offset: 0x10,
                message_count: COUNT_B
            }]
        );
        assert_eq!(shared[0].wire_id(0), Some(0x10));
        assert_eq!(shared[0].wire_id(COUNT_B - 1), Some(0x10 + COUNT_B - 1));
        assert_eq!(shared[0].wire_id(COUNT_B), None);
    }

    #[test]
    fn highest_common_version_wins() {
        let local = [spec("les", 2, COUNT_A), spec("les", 3, COUNT_B), spec("les", 4, COUNT_B)];
        let remote = [cap("les", 2), cap("les", 3), cap("les", 4)];
        let shared = negotiate(&local, &remote);
        assert_eq!(shared.len(), 1);
        assert_eq!((shared[0].version, shared[0].offset), (4, 0x10));

        // Remote order must not matter.
        let reversed: Vec<_> = remote.iter().rev().cloned().collect();
        assert_eq!(negotiate(&local, &reversed), shared);
    }

    #[test]
    fn mixed_versions_use_the_highest_shared_one_and_its_length() {
        // We speak les/2 and les/3, they speak les/2 and les/4: only les/2 is shared.
        let local = [spec("les", 2, COUNT_A), spec("les", 3, COUNT_B)];
        let remote = [cap("les", 4), cap("les", 2)];
        assert_eq!(
            negotiate(&local, &remote),
            vec![SharedCapability {
                name: "les".into(),
                version: 2,
                offset: 0x10,
                message_count: COUNT_A
            }]
        );
        // A higher version advertised by one side only is ignored.
        let local = [spec("les", 2, COUNT_A), spec("les", 3, COUNT_B), spec("les", 4, COUNT_B)];
        let remote = [cap("les", 2), cap("les", 3), cap("les", 5)];
        let shared = negotiate(&local, &remote);
        assert_eq!((shared[0].version, shared[0].message_count), (3, COUNT_B));
    }

    #[test]
    fn eth_sorts_before_les_and_shifts_it() {
        let local = [spec("les", 4, COUNT_B), spec("eth", 66, ETH_COUNT)];
        let remote = [cap("les", 4), cap("eth", 66)];
        let shared = negotiate(&local, &remote);
        assert_eq!(shared[0].name, "eth");
        assert_eq!(shared[0].offset, 0x10);
        assert_eq!(shared[1].name, "les");
        assert_eq!(shared[1].offset, 0x10 + ETH_COUNT);
        assert_eq!(resolve_message_id(&shared, 0x10 + ETH_COUNT), Some((1, 0)));
        assert_eq!(resolve_message_id(&shared, 0x10 + ETH_COUNT - 1), Some((0, ETH_COUNT - 1)));
    }

    #[test]
    fn a_capability_after_les_starts_where_les_ends() {
        let local = [spec("lespay", 1, 6), spec("les", 4, COUNT_B)];
        let remote = [cap("lespay", 1), cap("les", 4)];
        let shared = negotiate(&local, &remote);
        let names: Vec<_> = shared.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["les", "lespay"]);
        assert_eq!(shared[1].offset, 0x10 + COUNT_B);
        assert_eq!(resolve_message_id(&shared, 0x10 + COUNT_B - 1), Some((0, COUNT_B - 1)));
        assert_eq!(resolve_message_id(&shared, 0x10 + COUNT_B), Some((1, 0)));
        assert_eq!(resolve_message_id(&shared, 0x10 + COUNT_B + 5), Some((1, 5)));
        assert_eq!(resolve_message_id(&shared, 0x10 + COUNT_B + 6), None);
        assert_eq!(resolve_message_id(&shared, 0x0f), None);
    }

    #[test]
    fn names_are_compared_case_sensitively_and_sorted_bytewise() {
        let local = [spec("les", 4, 1), spec("LES", 4, 1), spec("a", 1, 1)];
        let remote = [cap("les", 4), cap("LES", 4), cap("a", 1)];
        let names: Vec<_> = negotiate(&local, &remote).into_iter().map(|c| c.name).collect();
        // 'L' (0x4c) < 'a' (0x61) < 'l' (0x6c).
        assert_eq!(names, ["LES", "a", "les"]);
        assert!(negotiate(&[spec("les", 4, 1)], &[cap("LES", 4)]).is_empty());
    }

    #[test]
    fn nothing_shared_gives_nothing() {
        assert!(negotiate(&[spec("les", 4, COUNT_B)], &[cap("eth", 68), cap("les", 1)]).is_empty());
        assert!(negotiate(&[], &[cap("les", 4)]).is_empty());
        assert!(negotiate(&[spec("les", 4, COUNT_B)], &[]).is_empty());
        assert_eq!(resolve_message_id(&[], 0x10), None);
    }

    #[test]
    fn offsets_that_would_overflow_end_the_list() {
        let local = [spec("a", 1, u64::MAX), spec("b", 1, 1)];
        let shared = negotiate(&local, &[cap("a", 1), cap("b", 1)]);
        assert!(shared.is_empty());
        let local = [spec("a", 1, u64::MAX - BASE_PROTOCOL_LENGTH), spec("b", 1, 1)];
        let shared = negotiate(&local, &[cap("a", 1), cap("b", 1)]);
        assert_eq!(shared.len(), 1);
        assert_eq!(shared[0].wire_id(u64::MAX - BASE_PROTOCOL_LENGTH - 1), Some(u64::MAX - 1));
    }
}
