//! The state an execution reads: proven accounts, slots and block hashes cached per block,
//! code cached by hash across blocks, and [`CallDb`], the revm database over them that
//! records what it lacks (see the module docs of [`crate::evm`]).

use super::{AccountOverride, StateOverrides};
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_trie::TrieAccount;
use revm::bytecode::Bytecode;
use revm::primitives::KECCAK_EMPTY;
use revm::state::AccountInfo;
use revm::{Database, DatabaseRef};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;

/// How many blocks' state is kept: a dapp reads at the head, which moves every few seconds;
/// a few blocks cover calls made just before a new head and `blockTag` reads of recent ones.
const BLOCKS_KEPT: usize = 4;
/// How much code (bytes) is kept across blocks before the oldest is dropped.
const CODE_BYTES_KEPT: usize = 8 << 20;

/// What is known of one block's state, every entry proven against its state root.
#[derive(Debug, Default)]
pub struct BlockState {
    /// Accounts; `None` for one proven absent.
    pub accounts: HashMap<Address, Option<TrieAccount>>,
    /// Slots by account.
    pub storage: HashMap<Address, HashMap<U256, U256>>,
    /// Hashes of the 256 blocks before this one, verified by the parent-hash chain.
    pub block_hashes: HashMap<u64, B256>,
}

/// The caches of one provider.
#[derive(Debug, Default)]
pub struct Caches {
    blocks: VecDeque<(B256, BlockState)>,
    code: HashMap<B256, Bytecode>,
    code_order: VecDeque<B256>,
    code_bytes: usize,
}

impl Caches {
    /// The state of block `hash`, created empty if it is not cached (dropping the oldest).
    pub fn block_mut(&mut self, hash: B256) -> &mut BlockState {
        let index = match self.blocks.iter().position(|(h, _)| *h == hash) {
            Some(index) => index,
            None => {
                if self.blocks.len() >= BLOCKS_KEPT {
                    self.blocks.pop_front();
                }
                self.blocks.push_back((hash, BlockState::default()));
                self.blocks.len() - 1
            }
        };
        &mut self.blocks[index].1
    }

    /// The cached state of block `hash`, if any.
    pub fn block(&self, hash: B256) -> Option<&BlockState> {
        self.blocks.iter().find(|(h, _)| *h == hash).map(|(_, state)| state)
    }

    /// Code by hash.
    pub fn code(&self, hash: &B256) -> Option<&Bytecode> {
        self.code.get(hash)
    }

    /// Adds code checked against `hash` (the core checked it), dropping the oldest code
    /// beyond the size bound.
    pub fn insert_code(&mut self, hash: B256, code: Bytes) {
        if self.code.contains_key(&hash) {
            return;
        }
        self.code_bytes += code.len();
        self.code.insert(hash, Bytecode::new_raw(code));
        self.code_order.push_back(hash);
        while self.code_bytes > CODE_BYTES_KEPT && self.code_order.len() > 1 {
            let Some(old) = self.code_order.pop_front() else { break };
            if let Some(code) = self.code.remove(&old) {
                self.code_bytes -= code.original_bytes().len();
            }
        }
    }
}

/// What a run lacked, to be fetched before the next run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Missing {
    /// Accounts to prove, with the slots wanted of each (possibly none).
    pub accounts: BTreeMap<Address, BTreeSet<B256>>,
    /// Code by hash, with an account that has it (the core asks for code by account).
    pub code: BTreeMap<B256, Address>,
    /// Block numbers whose hash `BLOCKHASH` asked for.
    pub block_hashes: BTreeSet<u64>,
    /// Code was asked for by a hash no account of this run has: it cannot be fetched, so
    /// the run's result must not stand (revm loads code only after its account, so this is
    /// a broken invariant, not a state to wait out).
    pub orphan_code: Option<B256>,
}

impl Missing {
    /// Nothing lacked: the run's result stands.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
            && self.code.is_empty()
            && self.block_hashes.is_empty()
            && self.orphan_code.is_none()
    }
}

/// The revm database of one run over block state, code and overrides. Reads never fail:
/// what is not cached is recorded in [`CallDb::missing`] and answered with a placeholder
/// (the run is then discarded).
pub struct CallDb<'a> {
    block: Option<&'a BlockState>,
    caches: &'a Caches,
    overrides: &'a StateOverrides,
    /// Code of the overrides, by hash.
    override_code: HashMap<B256, Bytecode>,
    /// What this run lacked.
    pub missing: Missing,
    /// The account whose code has a given hash (for asking the core by account).
    code_owner: HashMap<B256, Address>,
}

impl<'a> CallDb<'a> {
    /// A database over `block`'s cached state (`None`: nothing cached yet).
    pub fn new(
        block: Option<&'a BlockState>,
        caches: &'a Caches,
        overrides: &'a StateOverrides,
    ) -> Self {
        let override_code = overrides
            .values()
            .filter_map(|o| o.code.as_ref())
            .map(|code| (code_hash(code), Bytecode::new_raw(code.clone())))
            .collect();
        Self {
            block,
            caches,
            overrides,
            override_code,
            missing: Missing::default(),
            code_owner: HashMap::new(),
        }
    }

    /// The proven account, `None` for absent; records it if it is not cached.
    fn proven(&mut self, address: Address) -> Option<TrieAccount> {
        match self.block.and_then(|block| block.accounts.get(&address)) {
            Some(account) => *account,
            None => {
                self.missing.accounts.entry(address).or_default();
                None
            }
        }
    }

    fn code_of(&self, hash: &B256) -> Option<Bytecode> {
        if *hash == KECCAK_EMPTY {
            return Some(Bytecode::default());
        }
        self.override_code.get(hash).or_else(|| self.caches.code(hash)).cloned()
    }
}

/// The hash code is stored under (the empty code's is `KECCAK_EMPTY`).
pub fn code_hash(code: &[u8]) -> B256 {
    if code.is_empty() { KECCAK_EMPTY } else { keccak256(code) }
}

fn apply(base: Option<TrieAccount>, o: Option<&AccountOverride>) -> Option<(U256, u64, B256)> {
    let base = base.map(|a| (a.balance, a.nonce, a.code_hash));
    let Some(o) = o.filter(|o| o.balance.is_some() || o.nonce.is_some() || o.code.is_some()) else {
        return base;
    };
    let (balance, nonce, hash) = base.unwrap_or((U256::ZERO, 0, KECCAK_EMPTY));
    Some((
        o.balance.unwrap_or(balance),
        o.nonce.unwrap_or(nonce),
        o.code.as_ref().map_or(hash, |code| code_hash(code)),
    ))
}

impl Database for CallDb<'_> {
    type Error = Infallible;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Infallible> {
        let base = self.proven(address);
        let Some((balance, nonce, hash)) = apply(base, self.overrides.get(&address)) else {
            return Ok(None);
        };
        let code = self.code_of(&hash);
        if code.is_none() {
            self.code_owner.insert(hash, address);
        }
        Ok(Some(AccountInfo { balance, nonce, code_hash: hash, code, ..AccountInfo::default() }))
    }

    fn code_by_hash(&mut self, hash: B256) -> Result<Bytecode, Infallible> {
        if let Some(code) = self.code_of(&hash) {
            return Ok(code);
        }
        match self.code_owner.get(&hash) {
            Some(owner) => {
                self.missing.code.insert(hash, *owner);
            }
            None => self.missing.orphan_code = Some(hash),
        }
        Ok(Bytecode::default())
    }

    fn storage(&mut self, address: Address, index: U256) -> Result<U256, Infallible> {
        let key = B256::from(index.to_be_bytes());
        if let Some(o) = self.overrides.get(&address) {
            if let Some(state) = &o.state {
                return Ok(state.get(&key).map_or(U256::ZERO, |v| U256::from_be_bytes(v.0)));
            }
            if let Some(value) = o.state_diff.as_ref().and_then(|diff| diff.get(&key)) {
                return Ok(U256::from_be_bytes(value.0));
            }
        }
        let cached = self.block.and_then(|b| b.storage.get(&address)).and_then(|s| s.get(&index));
        match cached {
            Some(value) => Ok(*value),
            None => {
                self.missing.accounts.entry(address).or_default().insert(key);
                Ok(U256::ZERO)
            }
        }
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Infallible> {
        match self.block.and_then(|b| b.block_hashes.get(&number)) {
            Some(hash) => Ok(*hash),
            None => {
                self.missing.block_hashes.insert(number);
                Ok(B256::ZERO)
            }
        }
    }
}

/// Read-only view for checks after a run (does the call's target have code?).
impl DatabaseRef for CallDb<'_> {
    type Error = Infallible;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Infallible> {
        let base = self.block.and_then(|b| b.accounts.get(&address)).copied().flatten();
        Ok(apply(base, self.overrides.get(&address)).map(|(balance, nonce, hash)| AccountInfo {
            balance,
            nonce,
            code_hash: hash,
            ..AccountInfo::default()
        }))
    }

    fn code_by_hash_ref(&self, hash: B256) -> Result<Bytecode, Infallible> {
        Ok(self.code_of(&hash).unwrap_or_default())
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Infallible> {
        Ok(self
            .block
            .and_then(|b| b.storage.get(&address))
            .and_then(|s| s.get(&index))
            .copied()
            .unwrap_or_default())
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Infallible> {
        Ok(self.block.and_then(|b| b.block_hashes.get(&number)).copied().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_records_what_it_lacks_and_reads_what_is_cached() {
        let mut caches = Caches::default();
        let block = B256::repeat_byte(1);
        let (a, b) = (Address::repeat_byte(0xa), Address::repeat_byte(0xb));
        let code = Bytes::from_static(&[0x60, 0x00]);
        let account = TrieAccount {
            nonce: 3,
            balance: U256::from(7),
            code_hash: code_hash(&code),
            ..TrieAccount::default()
        };
        let state = caches.block_mut(block);
        state.accounts.insert(a, Some(account));
        state.storage.entry(a).or_default().insert(U256::from(1), U256::from(9));
        let overrides = StateOverrides::default();
        let mut db = CallDb::new(caches.block(block), &caches, &overrides);
        let info = db.basic(a).unwrap().unwrap();
        assert_eq!((info.balance, info.nonce, info.code.is_none()), (U256::from(7), 3, true));
        assert_eq!(db.code_by_hash(account.code_hash).unwrap(), Bytecode::default());
        assert_eq!(db.storage(a, U256::from(1)).unwrap(), U256::from(9));
        assert_eq!(db.storage(a, U256::from(2)).unwrap(), U256::ZERO);
        assert_eq!(db.basic(b).unwrap(), None);
        assert_eq!(db.block_hash(5).unwrap(), B256::ZERO);
        let missing = db.missing.clone();
        assert_eq!(missing.code.get(&account.code_hash), Some(&a));
        assert_eq!(
            missing.accounts.get(&a).map(|s| s.iter().copied().collect::<Vec<_>>()),
            Some(vec![B256::with_last_byte(2)])
        );
        assert!(missing.accounts.contains_key(&b));
        assert!(missing.block_hashes.contains(&5));
    }

    #[test]
    fn overrides_replace_fields_and_storage() {
        let caches = Caches::default();
        let a = Address::repeat_byte(0xa);
        let code = Bytes::from_static(&[0x00]);
        let mut overrides = StateOverrides::default();
        overrides.insert(
            a,
            AccountOverride {
                balance: Some(U256::from(5)),
                code: Some(code.clone()),
                state: Some(BTreeMap::from([(B256::ZERO, B256::with_last_byte(4))])),
                ..AccountOverride::default()
            },
        );
        let mut db = CallDb::new(None, &caches, &overrides);
        let info = db.basic(a).unwrap().unwrap();
        assert_eq!((info.balance, info.code_hash), (U256::from(5), keccak256(&code)));
        assert_eq!(info.code, Some(Bytecode::new_raw(code)));
        assert_eq!(db.storage(a, U256::ZERO).unwrap(), U256::from(4));
        // `state` replaces all storage: other slots are zero and need no proof.
        assert_eq!(db.storage(a, U256::from(1)).unwrap(), U256::ZERO);
        // The account itself is still proven (its nonce comes from the chain).
        assert_eq!(db.missing.accounts.get(&a).map(|s| s.len()), Some(0));
    }

    #[test]
    fn code_cache_is_bounded() {
        let mut caches = Caches::default();
        for i in 0..3u8 {
            caches.insert_code(B256::repeat_byte(i), Bytes::from(vec![i; CODE_BYTES_KEPT / 2]));
        }
        assert!(caches.code(&B256::repeat_byte(0)).is_none());
        assert!(caches.code(&B256::repeat_byte(2)).is_some());
        for i in 0..=BLOCKS_KEPT as u8 {
            caches.block_mut(B256::repeat_byte(i));
        }
        assert!(caches.block(B256::repeat_byte(0)).is_none());
        assert!(caches.block(B256::repeat_byte(BLOCKS_KEPT as u8)).is_some());
    }
}
