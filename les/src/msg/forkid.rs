//! EIP-2124 fork identifiers (with the EIP-6122 timestamp extension): computing our own and
//! filtering a peer's, plus the Ethereum mainnet fork schedule they are computed from.
//!
//! Written here rather than taken from `alloy_eips::eip2124` because LES peers are geth
//! nodes and must be filtered exactly as geth's `core/forkid` filters them (its checksum
//! table walk and its rule-1a timestamp heuristic); alloy's `ForkFilter` is a cached,
//! differently structured variant. The checksum itself is `crc32fast`.

use alloy_primitives::{B256, b256};
use alloy_rlp::{RlpDecodable, RlpEncodable};
use std::iter;

/// A fork identifier `[forkHash: B_4, forkNext: P]` as sent in the les/4 `forkID` Status key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, RlpEncodable, RlpDecodable)]
pub struct ForkId {
    /// CRC32 (IEEE) of the genesis hash followed by every passed fork's activation
    /// (8-byte big-endian), big-endian. Always four bytes on the wire, leading zeros kept.
    pub hash: [u8; 4],
    /// The next scheduled fork's block number or timestamp, 0 if none is known.
    pub next: u64,
}

/// Why a peer's fork ID was refused (geth's two filter errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForkIdError {
    /// The peer is on an older fork state and does not know the fork we passed next.
    #[error("remote node needs a software update")]
    RemoteStale,
    /// The peer is on another chain, or it knows of a fork we have already passed without
    /// applying it.
    #[error("local node is incompatible or needs a software update")]
    LocalIncompatibleOrStale,
}

/// Mainnet's network ID (the Status `networkId`).
pub const MAINNET_NETWORK_ID: u64 = 1;

/// Mainnet's genesis block hash.
pub const MAINNET_GENESIS_HASH: B256 =
    b256!("d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3");

/// Mainnet's genesis timestamp.
pub const MAINNET_GENESIS_TIME: u64 = 0;

/// Mainnet forks activated by block number (geth `MainnetChainConfig`, every `*Block`
/// field that is set). Several forks share a block; the fork ID counts each block once.
pub const MAINNET_BLOCK_FORKS: &[(&str, u64)] = &[
    ("Homestead", 1_150_000),
    ("DAO", 1_920_000),
    ("Tangerine Whistle (EIP-150)", 2_463_000),
    ("Spurious Dragon (EIP-155)", 2_675_000),
    ("Spurious Dragon (EIP-158)", 2_675_000),
    ("Byzantium", 4_370_000),
    ("Constantinople", 7_280_000),
    ("Petersburg", 7_280_000),
    ("Istanbul", 9_069_000),
    ("Muir Glacier", 9_200_000),
    ("Berlin", 12_244_000),
    ("London", 12_965_000),
    ("Arrow Glacier", 13_773_000),
    ("Gray Glacier", 15_050_000),
];

/// Mainnet forks activated by block timestamp (geth `MainnetChainConfig`, every `*Time`
/// field that is set).
pub const MAINNET_TIME_FORKS: &[(&str, u64)] = &[
    ("Shanghai", 1_681_338_455),
    ("Cancun", 1_710_338_135),
    ("Prague", 1_746_612_311),
    ("Osaka", 1_764_798_551),
    ("BPO1", 1_765_290_071),
    ("BPO2", 1_767_747_671),
];

/// geth's `timestampThreshold` (mainnet's launch time): a `forkNext` above it is taken to be
/// a timestamp when checking whether the peer's next fork has already passed locally.
const TIMESTAMP_THRESHOLD: u64 = 1_438_269_973;

/// A chain's fork schedule, normalised as EIP-2124 requires: block forks ascending without
/// duplicates or block 0, then time forks ascending without duplicates or any at or before
/// the genesis time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkSchedule {
    genesis_hash: B256,
    block_forks: Vec<u64>,
    time_forks: Vec<u64>,
}

impl ForkSchedule {
    /// Builds a schedule from activations in any order.
    pub fn new(
        genesis_hash: B256,
        genesis_time: u64,
        block_forks: impl IntoIterator<Item = u64>,
        time_forks: impl IntoIterator<Item = u64>,
    ) -> Self {
        let mut block_forks: Vec<u64> = block_forks.into_iter().filter(|&b| b > 0).collect();
        block_forks.sort_unstable();
        block_forks.dedup();
        let mut time_forks: Vec<u64> =
            time_forks.into_iter().filter(|&t| t > genesis_time).collect();
        time_forks.sort_unstable();
        time_forks.dedup();
        Self { genesis_hash, block_forks, time_forks }
    }

    /// Ethereum mainnet's schedule.
    pub fn mainnet() -> Self {
        Self::new(
            MAINNET_GENESIS_HASH,
            MAINNET_GENESIS_TIME,
            MAINNET_BLOCK_FORKS.iter().map(|&(_, block)| block),
            MAINNET_TIME_FORKS.iter().map(|&(_, time)| time),
        )
    }

    /// The genesis hash the checksums start from.
    pub fn genesis_hash(&self) -> B256 {
        self.genesis_hash
    }

    /// The normalised block-number activations.
    pub fn block_forks(&self) -> &[u64] {
        &self.block_forks
    }

    /// The normalised timestamp activations.
    pub fn time_forks(&self) -> &[u64] {
        &self.time_forks
    }

    /// Our fork ID at a head with this number and timestamp.
    pub fn fork_id(&self, head_number: u64, head_time: u64) -> ForkId {
        let mut checksum = crc32fast::hash(self.genesis_hash.as_slice());
        let passed_blocks = self.block_forks.iter().map(|&fork| (fork, head_number));
        let passed_times = self.time_forks.iter().map(|&fork| (fork, head_time));
        for (fork, head) in passed_blocks.chain(passed_times) {
            if fork > head {
                return ForkId { hash: checksum.to_be_bytes(), next: fork };
            }
            checksum = checksum_update(checksum, fork);
        }
        ForkId { hash: checksum.to_be_bytes(), next: 0 }
    }

    /// The EIP-2124 filter: whether a peer announcing `remote` is compatible with us at a head
    /// with this number and timestamp. Accepts when the checksums match and the peer's next
    /// fork has not already passed locally; when the peer's checksum is one of our past states
    /// and its next fork is the one we applied next (peer syncing); or when its checksum is
    /// one of our future states (we are syncing). Rejects everything else.
    pub fn validate(
        &self,
        head_number: u64,
        head_time: u64,
        remote: ForkId,
    ) -> Result<(), ForkIdError> {
        let forks: Vec<u64> = self.block_forks.iter().chain(&self.time_forks).copied().collect();
        // checksums[k] = fork hash after the first k forks (0 = genesis only).
        let mut checksums = Vec::with_capacity(forks.len() + 1);
        let mut checksum = crc32fast::hash(self.genesis_hash.as_slice());
        checksums.push(checksum.to_be_bytes());
        for &fork in &forks {
            checksum = checksum_update(checksum, fork);
            checksums.push(checksum.to_be_bytes());
        }
        // A never-passed sentinel fork ends the walk. Without time forks it counts as a block
        // fork, so a block-only chain never compares block numbers with timestamps.
        let block_fork_count = if self.time_forks.is_empty() {
            self.block_forks.len() + 1
        } else {
            self.block_forks.len()
        };
        let forks_with_sentinel = forks.iter().copied().chain(iter::once(u64::MAX));
        for (index, fork) in forks_with_sentinel.enumerate() {
            let head = if index < block_fork_count { head_number } else { head_time };
            if head >= fork {
                continue;
            }
            // `index` is our first unpassed fork, so checksums[index] is our current state.
            if checksums.get(index) == Some(&remote.hash) {
                let remote_next_passed = remote.next > 0
                    && (head >= remote.next
                        || (remote.next > TIMESTAMP_THRESHOLD && head_time >= remote.next));
                return if remote_next_passed {
                    Err(ForkIdError::LocalIncompatibleOrStale)
                } else {
                    Ok(())
                };
            }
            // The peer is at one of our past states: it must be about to apply the fork we
            // applied next.
            let past = checksums.iter().zip(&forks).take(index);
            if let Some((_, &following)) = past.into_iter().find(|(sum, _)| **sum == remote.hash) {
                return if following == remote.next {
                    Ok(())
                } else {
                    Err(ForkIdError::RemoteStale)
                };
            }
            // The peer is at one of our future states: we are behind.
            if checksums.iter().skip(index + 1).any(|sum| *sum == remote.hash) {
                return Ok(());
            }
            return Err(ForkIdError::LocalIncompatibleOrStale);
        }
        // Only reachable with a head at u64::MAX; geth accepts rather than rejects here.
        Ok(())
    }
}

/// CRC32 of (everything so far || fork as 8 bytes big-endian), continuing from `checksum`.
fn checksum_update(checksum: u32, fork: u64) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(checksum);
    hasher.update(&fork.to_be_bytes());
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::hex;

    fn id(hash: u32, next: u64) -> ForkId {
        ForkId { hash: hash.to_be_bytes(), next }
    }

    /// geth `core/forkid/forkid_test.go` `TestCreation`, mainnet cases.
    #[test]
    fn mainnet_fork_ids() {
        let mainnet = ForkSchedule::mainnet();
        let cases: &[(u64, u64, u32, u64)] = &[
            (0, 0, 0xfc64ec04, 1_150_000),
            (1_149_999, 0, 0xfc64ec04, 1_150_000),
            (1_150_000, 0, 0x97c2c34c, 1_920_000),
            (1_920_000, 0, 0x91d1f948, 2_463_000),
            (2_463_000, 0, 0x7a64da13, 2_675_000),
            (2_675_000, 0, 0x3edd5b10, 4_370_000),
            (4_370_000, 0, 0xa00bc324, 7_280_000),
            (7_280_000, 0, 0x668db0af, 9_069_000),
            (9_069_000, 0, 0x879d6e30, 9_200_000),
            (9_200_000, 0, 0xe029e991, 12_244_000),
            (12_244_000, 0, 0x0eb440f6, 12_965_000),
            (12_965_000, 0, 0xb715077d, 13_773_000),
            (13_773_000, 0, 0x20c327fc, 15_050_000),
            (15_050_000, 0, 0xf0afd0e3, 1_681_338_455),
            (20_000_000, 1_681_338_454, 0xf0afd0e3, 1_681_338_455),
            (20_000_000, 1_681_338_455, 0xdce96c2d, 1_710_338_135),
            (30_000_000, 1_710_338_134, 0xdce96c2d, 1_710_338_135),
            (30_000_000, 1_710_338_135, 0x9f3d2254, 1_746_612_311),
            (30_000_000, 1_746_612_311, 0xc376cf8b, 1_764_798_551),
            (30_000_000, 1_764_798_550, 0xc376cf8b, 1_764_798_551),
            (30_000_000, 1_764_798_551, 0x5167e2a6, 1_765_290_071),
            (30_000_000, 1_765_290_071, 0xcba2a1c0, 1_767_747_671),
            (30_000_000, 1_767_747_670, 0xcba2a1c0, 1_767_747_671),
            (30_000_000, 1_767_747_671, 0x07c9462e, 0),
            (50_000_000, 2_000_000_000, 0x07c9462e, 0),
        ];
        for &(head, time, hash, next) in cases {
            assert_eq!(mainnet.fork_id(head, time), id(hash, next), "head {head} time {time}");
        }
    }

    #[test]
    fn schedule_normalisation() {
        let schedule = ForkSchedule::new(B256::ZERO, 100, [5, 0, 3, 5], [100, 300, 200, 50, 300]);
        assert_eq!(schedule.block_forks(), &[3, 5]);
        assert_eq!(schedule.time_forks(), &[200, 300]);
        let mainnet = ForkSchedule::mainnet();
        assert_eq!(mainnet.block_forks().len(), 12);
        assert_eq!(mainnet.time_forks().len(), 6);
    }

    /// geth `TestEncoding`.
    #[test]
    fn rlp_encoding() {
        assert_eq!(alloy_rlp::encode(id(0, 0)), hex!("c6840000000080"));
        assert_eq!(alloy_rlp::encode(id(0xdeadbeef, 0xbaddcafe)), hex!("ca84deadbeef84baddcafe"));
        assert_eq!(
            alloy_rlp::encode(id(u32::MAX, u64::MAX)),
            hex!("ce84ffffffff88ffffffffffffffff")
        );
        let decoded: ForkId = alloy_rlp::decode_exact(hex!("ca84c376cf8b846930b057")).unwrap();
        assert_eq!(decoded, id(0xc376cf8b, 1_764_798_551));
        // A 3-byte hash, a third element, a non-canonical next are all refused.
        assert!(alloy_rlp::decode_exact::<ForkId>(hex!("c983c376cf846930b057")).is_err());
        assert!(alloy_rlp::decode_exact::<ForkId>(hex!("c784c376cf8b8080")).is_err());
        assert!(alloy_rlp::decode_exact::<ForkId>(hex!("c784c376cf8b8100")).is_err());
    }

    /// geth `TestValidation`.
    #[test]
    fn validation_table() {
        use ForkIdError::{LocalIncompatibleOrStale as Incompatible, RemoteStale as Stale};
        let mainnet = ForkSchedule::mainnet();
        let legacy = ForkSchedule::new(
            MAINNET_GENESIS_HASH,
            MAINNET_GENESIS_TIME,
            MAINNET_BLOCK_FORKS.iter().map(|&(_, b)| b),
            [],
        );
        let max = u64::MAX;
        type Case<'a> = (&'a ForkSchedule, u64, u64, ForkId, Result<(), ForkIdError>);
        let cases: &[Case<'_>] = &[
            // Block based.
            (&legacy, 15_050_000, 0, id(0xf0afd0e3, 0), Ok(())),
            (&legacy, 15_050_000, 0, id(0xf0afd0e3, max), Ok(())),
            (&legacy, 7_279_999, 0, id(0xa00bc324, 0), Ok(())),
            (&legacy, 7_279_999, 0, id(0xa00bc324, 7_280_000), Ok(())),
            (&legacy, 7_279_999, 0, id(0xa00bc324, max), Ok(())),
            (&legacy, 7_280_000, 0, id(0xa00bc324, 7_280_000), Ok(())),
            (&legacy, 7_987_396, 0, id(0xa00bc324, 7_280_000), Ok(())),
            (&legacy, 7_987_396, 0, id(0x3edd5b10, 4_370_000), Ok(())),
            (&legacy, 7_279_999, 0, id(0x668db0af, 0), Ok(())),
            (&legacy, 4_369_999, 0, id(0xa00bc324, 0), Ok(())),
            (&legacy, 7_987_396, 0, id(0xa00bc324, 0), Err(Stale)),
            (&legacy, 7_987_396, 0, id(0x5cddc0e1, 0), Err(Incompatible)),
            (&legacy, 7_279_999, 0, id(0x5cddc0e1, 0), Err(Incompatible)),
            (&legacy, 7_987_396, 0, id(0xafec6b27, 0), Err(Incompatible)),
            (&legacy, 88_888_888, 0, id(0xf0afd0e3, 88_888_888), Err(Incompatible)),
            (&legacy, 7_279_999, 0, id(0xa00bc324, 7_279_999), Err(Incompatible)),
            // Block to timestamp transition.
            (&mainnet, 15_050_000, 0, id(0xf0afd0e3, 0), Ok(())),
            (&mainnet, 15_050_000, 0, id(0xf0afd0e3, 1_681_338_455), Ok(())),
            (&mainnet, 15_050_000, 0, id(0xf0afd0e3, max), Ok(())),
            (&mainnet, 20_000_000, 1_681_338_455, id(0xf0afd0e3, 1_681_338_455), Ok(())),
            (&mainnet, 20_123_456, 1_681_338_456, id(0xf0afd0e3, 1_681_338_455), Ok(())),
            (&mainnet, 20_000_000, 1_681_338_455, id(0x20c327fc, 15_050_000), Ok(())),
            (&mainnet, 15_050_000, 0, id(0xdce96c2d, 0), Ok(())),
            (&mainnet, 13_773_000, 0, id(0xf0afd0e3, 0), Ok(())),
            (&mainnet, 20_000_000, 1_681_338_455, id(0xf0afd0e3, 0), Err(Stale)),
            (&mainnet, 15_050_000, 0, id(checksum_update(0xf0afd0e3, max), 0), Err(Incompatible)),
            (&mainnet, 15_050_000, 0, id(checksum_update(0xdce96c2d, max), 0), Err(Incompatible)),
            (
                &mainnet,
                888_888_888,
                1_660_000_000,
                id(0xf0afd0e3, 1_660_000_000),
                Err(Incompatible),
            ),
            (&mainnet, 19_999_999, 1_667_999_999, id(0xf0afd0e3, 1_667_999_999), Err(Incompatible)),
            // Timestamp based.
            (&mainnet, 20_000_000, 1_681_338_455, id(0xdce96c2d, 0), Ok(())),
            (&mainnet, 20_000_000, 1_681_338_455, id(0xdce96c2d, max), Ok(())),
            (&mainnet, 20_000_000, 1_668_000_000, id(0xdce96c2d, 0), Ok(())),
            (&mainnet, 20_000_000, 1_668_000_000, id(0xdce96c2d, 1_710_338_135), Ok(())),
            (&mainnet, 20_000_000, 1_668_000_000, id(0xdce96c2d, max), Ok(())),
            (&mainnet, 21_000_000, 1_710_338_135, id(0xdce96c2d, 1_710_338_135), Ok(())),
            (&mainnet, 21_123_456, 1_710_338_136, id(0xdce96c2d, 1_710_338_135), Ok(())),
            (&mainnet, 0, 0, id(0x3edd5b10, 1_710_338_135), Ok(())),
            (&mainnet, 21_000_000, 1_700_000_000, id(0x9f3d2254, 0), Ok(())),
            (&mainnet, 21_000_000, 1_678_000_000, id(0xc376cf8b, 0), Ok(())),
            (&mainnet, 21_000_000, 1_710_338_135, id(0xdce96c2d, 0), Err(Stale)),
            (
                &mainnet,
                20_000_000,
                1_681_338_455,
                id(checksum_update(0xdce96c2d, max), 0),
                Err(Incompatible),
            ),
            (
                &mainnet,
                20_000_000,
                1_668_000_000,
                id(checksum_update(0x9f3d2254, max), 0),
                Err(Incompatible),
            ),
            (&mainnet, 20_000_000, 1_681_338_455, id(0x12345678, 0), Err(Incompatible)),
            (&mainnet, 88_888_888, 8_888_888_888, id(0x07c9462e, 8_888_888_888), Err(Incompatible)),
            (&mainnet, 20_999_999, 1_699_999_999, id(0x71147644, 1_700_000_000), Err(Incompatible)),
        ];
        for (index, &(schedule, head, time, remote, expected)) in cases.iter().enumerate() {
            assert_eq!(schedule.validate(head, time, remote), expected, "case {index}");
        }
    }

    #[test]
    fn our_own_current_id_is_always_accepted() {
        let mainnet = ForkSchedule::mainnet();
        for (head, time) in
            [(0, 0), (15_050_000, 0), (22_000_000, 1_750_000_000), (u64::MAX - 1, 1_800_000_000)]
        {
            assert_eq!(mainnet.validate(head, time, mainnet.fork_id(head, time)), Ok(()));
        }
    }
}
