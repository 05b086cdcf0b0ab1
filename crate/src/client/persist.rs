//! The accepted head and recent headers in the store, so a reload resumes at once from the
//! last head (stale until a fresh quorum confirms it). The evidence is kept with the head
//! and re-verified on restore: storage is not trusted more than the network.

use crate::store::{SCHEMA_VERSION, Store, StoreError, StoreWrite, Table};
use alloy_primitives::B256;
use les::announce::SignedAnnouncement;
use les::chain::SealedHeader;
use les::crypto::NodeId;
use les::ulc::{Ulc, UlcConfig};

const HEAD_HEADER: &str = "header";
const HEAD_EVIDENCE: &str = "evidence";
const SCHEMA_KEY: &str = "schema";
/// Key of the install time in `metrics`.
pub const INSTALL_TIME: &str = "installTime";
/// Recent headers kept in the store below the head.
pub const KEPT_HEADERS: u64 = 256;

/// Store key of the header at `number`: fixed-width hex, so keys sort by number.
pub fn header_key(number: u64) -> String {
    format!("{number:016x}")
}

/// What a warm start restores.
pub struct Restored {
    /// The ULC state with the stale accepted head.
    pub ulc: Ulc,
    /// The head's header.
    pub head: SealedHeader,
    /// Canonical headers below it, contiguous by parent hash, highest first.
    pub ancestors: Vec<SealedHeader>,
}

/// Writes the schema version if the store has none; returns the install time (written now
/// if the store is new).
pub async fn open(store: &impl Store, now_millis: u64) -> Result<u64, StoreError> {
    if store.get(Table::Meta, SCHEMA_KEY).await?.is_none() {
        store
            .write(vec![
                StoreWrite::Put(
                    Table::Meta,
                    SCHEMA_KEY.into(),
                    SCHEMA_VERSION.to_be_bytes().to_vec(),
                ),
                StoreWrite::Put(
                    Table::Metrics,
                    INSTALL_TIME.into(),
                    now_millis.to_be_bytes().to_vec(),
                ),
            ])
            .await?;
    }
    let install = store.get(Table::Metrics, INSTALL_TIME).await?;
    Ok(install
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map_or(now_millis, u64::from_be_bytes))
}

/// The writes that persist a newly accepted head, its evidence and its header.
pub fn head_writes(
    head: &SealedHeader,
    evidence: &[(NodeId, SignedAnnouncement)],
) -> Vec<StoreWrite> {
    let announcements: Vec<SignedAnnouncement> = evidence.iter().map(|(_, a)| *a).collect();
    vec![
        StoreWrite::Put(Table::Head, HEAD_HEADER.into(), head.encoded()),
        StoreWrite::Put(Table::Head, HEAD_EVIDENCE.into(), alloy_rlp::encode(&announcements)),
        StoreWrite::Put(Table::Headers, header_key(head.number()), head.encoded()),
    ]
}

/// Restores the last accepted head if the store has one whose evidence still verifies
/// under `config` (a changed trusted set may invalidate it; then the client starts cold).
pub async fn restore(
    store: &impl Store,
    config: &UlcConfig,
) -> Result<Option<Restored>, StoreError> {
    let (Some(header), Some(evidence)) =
        (store.get(Table::Head, HEAD_HEADER).await?, store.get(Table::Head, HEAD_EVIDENCE).await?)
    else {
        return Ok(None);
    };
    let Ok(head) = SealedHeader::decode(&header) else { return Ok(None) };
    let Ok(announcements) = alloy_rlp::decode_exact::<Vec<SignedAnnouncement>>(&evidence) else {
        return Ok(None);
    };
    let Some(announced) = announcements.first().map(|a| a.head) else { return Ok(None) };
    if announced.hash != head.hash() {
        return Ok(None);
    }
    let mut pairs = Vec::new();
    for announcement in announcements {
        let Ok(signer) = announcement.signer() else { return Ok(None) };
        pairs.push((signer, announcement));
    }
    let Ok(ulc) = Ulc::restore(config.clone(), announced, pairs) else { return Ok(None) };

    let mut ancestors = Vec::new();
    let mut expected_parent: B256 = head.parent_hash();
    for number in (head.number().saturating_sub(KEPT_HEADERS)..head.number()).rev() {
        let Some(rlp) = store.get(Table::Headers, &header_key(number)).await? else { break };
        match SealedHeader::decode_expecting(&rlp, expected_parent) {
            Ok(header) => {
                expected_parent = header.parent_hash();
                ancestors.push(header);
            }
            Err(_) => break,
        }
    }
    Ok(Some(Restored { ulc, head, ancestors }))
}

/// Deletes stored headers more than [`KEPT_HEADERS`] below `head_number`, and any above it
/// (left from a chain that was reorganised away).
pub async fn prune(store: &impl Store, head_number: u64) -> Result<(), StoreError> {
    let low = head_number.saturating_sub(KEPT_HEADERS);
    let stale: Vec<StoreWrite> = store
        .keys(Table::Headers)
        .await?
        .into_iter()
        .filter(|key| u64::from_str_radix(key, 16).is_ok_and(|n| n < low || n > head_number))
        .map(|key| StoreWrite::Delete(Table::Headers, key))
        .collect();
    if stale.is_empty() { Ok(()) } else { store.write(stale).await }
}
