//! The on-disk cache of verified chain data: a redb database under `--datadir` with headers by
//! block hash and receipt lists by block hash.
//!
//! Only data keyed by hash is kept: a hash names one block forever, so a reorg can never make
//! an entry wrong (by-number lookups always go to the upstream). Everything written here has
//! already been checked against its header by [`crate::upstream`]; reads still decode strictly
//! and re-hash headers, so a damaged file yields an error instead of bad data.

use alloy_primitives::{B256, Bytes};
use les::chain::{HeaderError, SealedHeader};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Header RLP by block hash.
const HEADERS: TableDefinition<'static, [u8; 32], &[u8]> = TableDefinition::new("headers");
/// A block's receipts by block hash: the RLP list of byte strings, each string holding one
/// receipt in its LES network form (see [`crate::upstream::Upstream::receipts`]).
const RECEIPTS: TableDefinition<'static, [u8; 32], &[u8]> = TableDefinition::new("receipts");

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database file could not be opened or created (for instance, another process holds
    /// it).
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// redb's reason.
        source: Box<redb::DatabaseError>,
    },
    /// A read or write transaction failed.
    #[error("database error: {0}")]
    Database(#[from] Box<redb::Error>),
    /// A stored header does not decode or does not hash to its key.
    #[error("stored header {hash} is corrupt: {source}")]
    CorruptHeader {
        /// The key it was stored under.
        hash: B256,
        /// What is wrong with it.
        source: HeaderError,
    },
    /// A stored receipt list does not decode.
    #[error("stored receipts of block {block} are corrupt: {source}")]
    CorruptReceipts {
        /// The block hash it was stored under.
        block: B256,
        /// The decoding error.
        source: alloy_rlp::Error,
    },
}

/// Converts any redb error into [`StoreError::Database`].
fn db_error(error: impl Into<redb::Error>) -> StoreError {
    StoreError::Database(Box::new(error.into()))
}

/// The cache. Cloning is cheap (the database is shared); every write is committed durably
/// before it returns.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// The database file's name inside the data directory.
    pub const FILE_NAME: &'static str = "lesd.redb";

    /// Opens (creating if needed) the store in `datadir`, creating the directory too.
    pub fn open(datadir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(datadir)
            .map_err(|source| StoreError::CreateDir { path: datadir.to_owned(), source })?;
        let path = datadir.join(Self::FILE_NAME);
        let db = Database::create(&path)
            .map_err(|source| StoreError::Open { path: path.clone(), source: Box::new(source) })?;
        // Create both tables up front so readers never meet a missing table.
        let txn = db.begin_write().map_err(db_error)?;
        txn.open_table(HEADERS).map_err(db_error)?;
        txn.open_table(RECEIPTS).map_err(db_error)?;
        txn.commit().map_err(db_error)?;
        Ok(Self { db: Arc::new(db), path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header with this hash, if stored.
    pub fn header(&self, hash: B256) -> Result<Option<SealedHeader>, StoreError> {
        self.get(HEADERS, hash)?
            .map(|rlp| {
                SealedHeader::decode_expecting(&rlp, hash)
                    .map_err(|source| StoreError::CorruptHeader { hash, source })
            })
            .transpose()
    }

    /// Stores a header under its hash (nothing is written if it is already there).
    pub fn put_header(&self, header: &SealedHeader) -> Result<(), StoreError> {
        if self.contains(HEADERS, header.hash())? {
            return Ok(());
        }
        self.put(HEADERS, header.hash(), &header.encoded())
    }

    /// Stores several headers in one durable commit (those already there are skipped).
    pub fn put_headers(&self, headers: &[SealedHeader]) -> Result<(), StoreError> {
        let mut fresh = Vec::with_capacity(headers.len());
        for header in headers {
            if !self.contains(HEADERS, header.hash())? {
                fresh.push(header);
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(db_error)?;
        txn.set_durability(Durability::Immediate).map_err(db_error)?;
        {
            let mut table = txn.open_table(HEADERS).map_err(db_error)?;
            for header in fresh {
                table.insert(header.hash().0, header.encoded().as_slice()).map_err(db_error)?;
            }
        }
        txn.commit().map_err(db_error)
    }

    /// The receipts of the block with this hash, if stored, each in LES network form.
    pub fn receipts(&self, block: B256) -> Result<Option<Vec<Bytes>>, StoreError> {
        self.get(RECEIPTS, block)?
            .map(|rlp| {
                alloy_rlp::decode_exact::<Vec<Bytes>>(&rlp)
                    .map_err(|source| StoreError::CorruptReceipts { block, source })
            })
            .transpose()
    }

    /// Stores a block's verified receipts (nothing is written if they are already there).
    pub fn put_receipts(&self, block: B256, receipts: &[Bytes]) -> Result<(), StoreError> {
        if self.contains(RECEIPTS, block)? {
            return Ok(());
        }
        let mut rlp = Vec::new();
        alloy_rlp::encode_list::<Bytes, Bytes>(receipts, &mut rlp);
        self.put(RECEIPTS, block, &rlp)
    }

    fn get(
        &self,
        table: TableDefinition<'static, [u8; 32], &[u8]>,
        key: B256,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(table).map_err(db_error)?;
        Ok(table.get(key.0).map_err(db_error)?.map(|value| value.value().to_vec()))
    }

    fn contains(
        &self,
        table: TableDefinition<'static, [u8; 32], &[u8]>,
        key: B256,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(table).map_err(db_error)?;
        Ok(table.get(key.0).map_err(db_error)?.is_some())
    }

    fn put(
        &self,
        table: TableDefinition<'static, [u8; 32], &[u8]>,
        key: B256,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(db_error)?;
        txn.set_durability(Durability::Immediate).map_err(db_error)?;
        {
            let mut table = txn.open_table(table).map_err(db_error)?;
            table.insert(key.0, value).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::Header;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lesd-store-{name}-{}-{}",
            std::process::id(),
            les::crypto::random_bytes::<8>().unwrap().map(|b| format!("{b:02x}")).concat()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn headers_and_receipts_survive_reopening() {
        let dir = temp_dir("reopen");
        let header = SealedHeader::seal(Header { number: 42, gas_used: 7, ..Header::default() });
        let other = SealedHeader::seal(Header { number: 43, ..Header::default() });
        let receipts = vec![Bytes::from_static(&[0xc0]), Bytes::from_static(&[0x82, 0x02, 0xc0])];
        {
            let store = Store::open(&dir).unwrap();
            assert_eq!(store.header(header.hash()).unwrap(), None);
            assert_eq!(store.receipts(header.hash()).unwrap(), None);
            store.put_header(&header).unwrap();
            store.put_header(&header).unwrap();
            store.put_headers(&[header.clone(), other.clone()]).unwrap();
            store.put_receipts(header.hash(), &receipts).unwrap();
        }
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.header(header.hash()).unwrap(), Some(header.clone()));
        assert_eq!(store.header(other.hash()).unwrap(), Some(other));
        assert_eq!(store.receipts(header.hash()).unwrap(), Some(receipts));
        assert_eq!(store.header(B256::ZERO).unwrap(), None);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_header_under_the_wrong_key_is_reported_corrupt() {
        let dir = temp_dir("corrupt");
        let store = Store::open(&dir).unwrap();
        let header = SealedHeader::seal(Header { number: 1, ..Header::default() });
        store.put(HEADERS, B256::ZERO, &header.encoded()).unwrap();
        assert!(matches!(
            store.header(B256::ZERO),
            Err(StoreError::CorruptHeader { hash: B256::ZERO, .. })
        ));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_open_of_the_same_file_fails_with_a_typed_error() {
        let dir = temp_dir("locked");
        let store = Store::open(&dir).unwrap();
        assert!(matches!(Store::open(&dir), Err(StoreError::Open { .. })));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
