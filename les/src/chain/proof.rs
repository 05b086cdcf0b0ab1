//! Merkle-Patricia state proofs: accounts in the state trie, slots in a storage trie, and
//! contract code against its hash.
//!
//! Two proof forms arrive:
//! - ordered (`eth_getProof`/EIP-1186 `accountProof`, `storageProof[].proof`): the nodes from
//!   the root down the key's path, one proof per key;
//! - LES `ProofsV2`: one unordered, de-duplicated set of nodes that covers every key of a
//!   request, possibly across several tries (an account and its storage).
//!
//! alloy-trie verifies an ordered proof for a known key and expected value, but it neither
//! picks a path out of an unordered node set nor tells which value a key holds. The walk in
//! [`NodeSet::get`] is therefore hand-written: it follows the key's nibbles from the root,
//! fetching each hashed node by `keccak256(node)` and decoding it with alloy's `TrieNode`, and
//! records the ordered path. That path and the value found are then checked again by
//! `alloy_trie::proof::verify_proof`, so a bug in the walk cannot make a bad proof pass.
//!
//! Both tries are "secure": an account's key is `keccak256(address)`, a slot's key is
//! `keccak256(slot)`.

use alloy_primitives::map::{HashMap, HashSet};
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_trie::nodes::{RlpNode, TrieNode};
use alloy_trie::proof::{ProofVerificationError, verify_proof};
use alloy_trie::{EMPTY_ROOT_HASH, Nibbles, TrieAccount};

/// Nibbles in a secure-trie key (a 32-byte hash).
const KEY_NIBBLES: usize = 64;

/// A reference to a child node is the node's hash as a 32-byte RLP string.
const HASH_REFERENCE_PREFIX: u8 = alloy_rlp::EMPTY_STRING_CODE + 32;

/// Nodes shorter than this are embedded in their parent instead of referenced by hash.
const MAX_EMBEDDED_NODE_LEN: usize = 31;

/// The state-trie key of an account.
pub fn account_key(address: &Address) -> B256 {
    keccak256(address)
}

/// The storage-trie key of a slot.
pub fn storage_key(slot: &B256) -> B256 {
    keccak256(slot)
}

/// A proof does not establish the value of a key.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The path needs a node that the proof does not contain.
    #[error("proof for key {key} under root {root} lacks node {hash}")]
    MissingNode {
        /// The trie root the key was looked up under.
        root: B256,
        /// The key being proven.
        key: B256,
        /// The hash of the missing node.
        hash: B256,
    },
    /// A node on the path is not a well-formed trie node.
    #[error("malformed trie node {hash}: {source}")]
    MalformedNode {
        /// Hash of the node (for an embedded node, of the hashed node containing it).
        hash: B256,
        /// The decoding error.
        source: alloy_rlp::Error,
    },
    /// A node on the path is structurally impossible for a secure trie (an empty node below
    /// the root, a child reference that is neither a hash nor a short node, an empty
    /// extension, or a path that runs past the 64 key nibbles).
    #[error("invalid trie structure at node {hash}")]
    InvalidStructure {
        /// Hash of the node (for an embedded node, of the hashed node containing it).
        hash: B256,
    },
    /// alloy-trie's verifier rejected the path the walk extracted.
    #[error("proof rejected: {0}")]
    Rejected(ProofVerificationError),
    /// The proven account leaf is not `rlp([nonce, balance, storageRoot, codeHash])`.
    #[error("malformed account: {0}")]
    MalformedAccount(alloy_rlp::Error),
    /// The proven storage leaf is not `rlp(minimal big-endian value)` of at most 32 bytes.
    #[error("malformed storage value: {0}")]
    MalformedStorageValue(alloy_rlp::Error),
    /// A storage leaf holds zero; zero slots are deleted from the trie, never stored.
    #[error("storage leaf holds zero")]
    ZeroStorageValue,
    /// The node set has nodes no requested key used (geth rejects such replies).
    #[error("{} unused nodes in the proof, first {}", unused.len(), unused.first().copied().unwrap_or_default())]
    UnusedNodes {
        /// Hashes of the unused nodes, sorted.
        unused: Vec<B256>,
    },
}

/// How the walk reached the next node.
enum NodeRef {
    /// By hash: the node must come from the set.
    Hashed(B256),
    /// Embedded in its parent (RLP shorter than 32 bytes).
    Embedded(RlpNode),
}

/// The unordered, de-duplicated node set of a `ProofsV2` reply, keyed by `keccak256(node)`.
///
/// Look keys up with [`NodeSet::get`], [`NodeSet::account`] and [`NodeSet::storage`] (several
/// keys and several tries may share one set), then call [`NodeSet::finish`] to enforce that
/// every node was used.
#[derive(Debug, Clone, Default)]
pub struct NodeSet {
    nodes: HashMap<B256, Bytes>,
    used: HashSet<B256>,
}

impl NodeSet {
    /// Builds the set from raw node RLPs; duplicates collapse into one entry.
    pub fn new(nodes: impl IntoIterator<Item = Bytes>) -> Self {
        let nodes = nodes.into_iter().map(|node| (keccak256(&node), node)).collect();
        Self { nodes, used: HashSet::default() }
    }

    /// Number of distinct nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the set has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Proves the value stored under `key` in the trie with root `root`: `Some(leaf value)` if
    /// present, `None` if the proof shows the key absent.
    pub fn get(&mut self, root: B256, key: B256) -> Result<Option<Vec<u8>>, ProofError> {
        self.get_with_proof(root, key).map(|(_, value)| value)
    }

    /// As [`NodeSet::get`], also returning the proof in EIP-1186 order (the hashed nodes on
    /// the key's path, root first), which is what `eth_getProof` answers with.
    pub fn get_with_proof(
        &mut self,
        root: B256,
        key: B256,
    ) -> Result<(Vec<Bytes>, Option<Vec<u8>>), ProofError> {
        let (path, value) = self.walk(root, key)?;
        verify_proof(root, Nibbles::unpack(key), value.clone(), &path)
            .map_err(ProofError::Rejected)?;
        Ok((path, value))
    }

    /// Proves an account in the state trie; `None` means the account does not exist.
    pub fn account(
        &mut self,
        state_root: B256,
        address: &Address,
    ) -> Result<Option<TrieAccount>, ProofError> {
        self.get(state_root, account_key(address))?.map(|leaf| decode_account(&leaf)).transpose()
    }

    /// Proves a storage slot in an account's storage trie; absent slots are zero.
    pub fn storage(&mut self, storage_root: B256, slot: &B256) -> Result<U256, ProofError> {
        self.get(storage_root, storage_key(slot))?
            .map_or(Ok(U256::ZERO), |leaf| decode_storage_value(&leaf))
    }

    /// As [`NodeSet::account`], with the account's proof in EIP-1186 order.
    pub fn account_with_proof(
        &mut self,
        state_root: B256,
        address: &Address,
    ) -> Result<(Option<TrieAccount>, Vec<Bytes>), ProofError> {
        let (path, leaf) = self.get_with_proof(state_root, account_key(address))?;
        Ok((leaf.map(|leaf| decode_account(&leaf)).transpose()?, path))
    }

    /// As [`NodeSet::storage`], with the slot's proof in EIP-1186 order.
    pub fn storage_with_proof(
        &mut self,
        storage_root: B256,
        slot: &B256,
    ) -> Result<(U256, Vec<Bytes>), ProofError> {
        let (path, leaf) = self.get_with_proof(storage_root, storage_key(slot))?;
        Ok((leaf.map_or(Ok(U256::ZERO), |leaf| decode_storage_value(&leaf))?, path))
    }

    /// Ends verification of a reply: every node in the set must have been on some proven path.
    pub fn finish(self) -> Result<(), ProofError> {
        let mut unused: Vec<B256> =
            self.nodes.keys().filter(|hash| !self.used.contains(*hash)).copied().collect();
        if unused.is_empty() {
            return Ok(());
        }
        unused.sort_unstable();
        Err(ProofError::UnusedNodes { unused })
    }

    /// Follows `key` from `root`, returning the hashed nodes on the path (root first) and the
    /// leaf value if the key is present.
    fn walk(&mut self, root: B256, key: B256) -> Result<(Vec<Bytes>, Option<Vec<u8>>), ProofError> {
        let mut path = Vec::new();
        if root == EMPTY_ROOT_HASH {
            return Ok((path, None));
        }
        let nibbles = Nibbles::unpack(key);
        let mut depth = 0usize;
        let mut next = NodeRef::Hashed(root);
        let mut last_hash = root;
        // Every node consumes at least one nibble or ends the walk, which bounds the loop.
        for _ in 0..=KEY_NIBBLES {
            let node = match &next {
                NodeRef::Hashed(hash) => {
                    let rlp = self.nodes.get(hash).ok_or(ProofError::MissingNode {
                        root,
                        key,
                        hash: *hash,
                    })?;
                    self.used.insert(*hash);
                    path.push(rlp.clone());
                    last_hash = *hash;
                    decode_node(rlp, last_hash)?
                }
                NodeRef::Embedded(rlp) => decode_node(rlp, last_hash)?,
            };
            let invalid = || ProofError::InvalidStructure { hash: last_hash };
            match node {
                TrieNode::EmptyRoot => return Err(invalid()),
                TrieNode::Branch(branch) => {
                    let nibble = nibbles.get(depth).ok_or_else(invalid)?;
                    let branch = branch.as_ref();
                    let Some((_, child)) = branch.children().nth(usize::from(nibble)) else {
                        return Err(invalid());
                    };
                    let Some(child) = child else {
                        return Ok((path, None));
                    };
                    next = child_ref(child).ok_or_else(invalid)?;
                    depth += 1;
                }
                TrieNode::Extension(extension) => {
                    if extension.key.is_empty() {
                        return Err(invalid());
                    }
                    if !nibbles.slice(depth..).starts_with(&extension.key) {
                        return Ok((path, None));
                    }
                    depth += extension.key.len();
                    next = child_ref(&extension.child).ok_or_else(invalid)?;
                }
                TrieNode::Leaf(leaf) => {
                    let value = (nibbles.slice(depth..) == leaf.key).then_some(leaf.value);
                    return Ok((path, value));
                }
            }
        }
        Err(ProofError::InvalidStructure { hash: last_hash })
    }
}

/// Decodes one trie node that must span exactly `rlp`.
fn decode_node(rlp: &[u8], hash: B256) -> Result<TrieNode, ProofError> {
    alloy_rlp::decode_exact(rlp).map_err(|source| ProofError::MalformedNode { hash, source })
}

/// Interprets a branch or extension child: a 32-byte hash string or an embedded short node.
fn child_ref(child: &RlpNode) -> Option<NodeRef> {
    let bytes = child.as_slice();
    if bytes.first() == Some(&HASH_REFERENCE_PREFIX) {
        return child.as_hash().map(NodeRef::Hashed);
    }
    (bytes.len() <= MAX_EMBEDDED_NODE_LEN).then(|| NodeRef::Embedded(child.clone()))
}

fn decode_account(leaf: &[u8]) -> Result<TrieAccount, ProofError> {
    alloy_rlp::decode_exact(leaf).map_err(ProofError::MalformedAccount)
}

fn decode_storage_value(leaf: &[u8]) -> Result<U256, ProofError> {
    let value: U256 = alloy_rlp::decode_exact(leaf).map_err(ProofError::MalformedStorageValue)?;
    if value.is_zero() {
        return Err(ProofError::ZeroStorageValue);
    }
    Ok(value)
}

/// Proves one account from a `ProofsV2` node set, which must contain no other nodes.
pub fn verify_account(
    state_root: B256,
    address: &Address,
    nodes: &[Bytes],
) -> Result<Option<TrieAccount>, ProofError> {
    let mut set = NodeSet::new(nodes.iter().cloned());
    let account = set.account(state_root, address)?;
    set.finish()?;
    Ok(account)
}

/// Proves one storage slot from a `ProofsV2` node set, which must contain no other nodes.
pub fn verify_storage(
    storage_root: B256,
    slot: &B256,
    nodes: &[Bytes],
) -> Result<U256, ProofError> {
    let mut set = NodeSet::new(nodes.iter().cloned());
    let value = set.storage(storage_root, slot)?;
    set.finish()?;
    Ok(value)
}

/// Proves an account and several of its storage slots from one `ProofsV2` node set covering
/// all of them (the storage root comes from the proven account; an absent account has empty
/// storage). Every node must be used.
pub fn verify_account_and_storage(
    state_root: B256,
    address: &Address,
    slots: &[B256],
    nodes: &[Bytes],
) -> Result<(Option<TrieAccount>, Vec<U256>), ProofError> {
    let mut set = NodeSet::new(nodes.iter().cloned());
    let account = set.account(state_root, address)?;
    let storage_root = account.map_or(EMPTY_ROOT_HASH, |account| account.storage_root);
    let values =
        slots.iter().map(|slot| set.storage(storage_root, slot)).collect::<Result<Vec<_>, _>>()?;
    set.finish()?;
    Ok((account, values))
}

/// Proves an account from an ordered EIP-1186 `accountProof` (root node first).
pub fn verify_account_proof(
    state_root: B256,
    address: &Address,
    proof: &[Bytes],
) -> Result<Option<TrieAccount>, ProofError> {
    verify_ordered(state_root, account_key(address), proof)?
        .map(|leaf| decode_account(&leaf))
        .transpose()
}

/// Proves a storage slot from an ordered EIP-1186 `storageProof[].proof` (root node first).
pub fn verify_storage_proof(
    storage_root: B256,
    slot: &B256,
    proof: &[Bytes],
) -> Result<U256, ProofError> {
    verify_ordered(storage_root, storage_key(slot), proof)?
        .map_or(Ok(U256::ZERO), |leaf| decode_storage_value(&leaf))
}

/// The walk finds the value; alloy's verifier then checks the proof exactly as ordered (so an
/// out-of-order or padded proof fails even though its nodes form a valid set).
fn verify_ordered(root: B256, key: B256, proof: &[Bytes]) -> Result<Option<Vec<u8>>, ProofError> {
    let mut set = NodeSet::new(proof.iter().cloned());
    let (_, value) = set.walk(root, key)?;
    verify_proof(root, Nibbles::unpack(key), value.clone(), proof).map_err(ProofError::Rejected)?;
    Ok(value)
}

/// Contract code does not hash to the account's `codeHash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("code hashes to {got}, account has codeHash {expected}")]
pub struct CodeError {
    /// The account's `codeHash`.
    pub expected: B256,
    /// keccak256 of the code received.
    pub got: B256,
}

/// Checks contract code (a `ContractCodes` entry) against the proven account's `codeHash`.
pub fn verify_code(code_hash: B256, code: &[u8]) -> Result<(), CodeError> {
    let got = keccak256(code);
    if got == code_hash { Ok(()) } else { Err(CodeError { expected: code_hash, got }) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_trie::HashBuilder;
    use alloy_trie::proof::ProofRetainer;

    /// Builds a trie of `entries` with alloy's HashBuilder and returns its root and the proof
    /// nodes for `targets` as geth sends them: the root and hashed nodes only (the retainer
    /// also lists embedded nodes, which geth leaves inside their parents).
    fn trie(entries: &[(B256, Vec<u8>)], targets: &[B256]) -> (B256, Vec<Bytes>) {
        let mut sorted: Vec<(Nibbles, &Vec<u8>)> =
            entries.iter().map(|(key, value)| (Nibbles::unpack(key), value)).collect();
        sorted.sort_by_key(|(key, _)| *key);
        let retainer = ProofRetainer::new(targets.iter().map(Nibbles::unpack).collect());
        let mut builder = HashBuilder::default().with_proof_retainer(retainer);
        for (key, value) in sorted {
            builder.add_leaf(key, value);
        }
        let root = builder.root();
        let nodes = builder
            .take_proof_nodes()
            .into_nodes_sorted()
            .into_iter()
            .filter(|(path, node)| path.is_empty() || node.len() > MAX_EMBEDDED_NODE_LEN)
            .map(|(_, node)| node)
            .collect();
        (root, nodes)
    }

    fn storage_entries(count: u8) -> Vec<(B256, U256)> {
        (1..=count).map(|i| (B256::with_last_byte(i), U256::from(i) * U256::from(1000))).collect()
    }

    fn storage_trie(slots: &[(B256, U256)], targets: &[B256]) -> (B256, Vec<Bytes>) {
        let entries: Vec<_> = slots
            .iter()
            .map(|(slot, value)| (storage_key(slot), alloy_rlp::encode(value)))
            .collect();
        let keys: Vec<_> = targets.iter().map(storage_key).collect();
        trie(&entries, &keys)
    }

    #[test]
    fn embedded_leaves_are_followed_inside_their_branch() {
        // Keys differing only in the last nibble: a root extension of 63 nibbles whose branch
        // and leaves (empty remaining key, 1-byte value) are all embedded, not hashed.
        let keys: Vec<B256> = (1..=3u8).map(B256::with_last_byte).collect();
        let entries: Vec<_> = keys.iter().map(|key| (*key, vec![key[31]])).collect();
        let (root, nodes) = trie(&entries, &[keys[1]]);
        assert_eq!(nodes.len(), 1, "the branch and its leaves are embedded in the root extension");
        let mut set = NodeSet::new(nodes.iter().cloned());
        assert_eq!(set.get(root, keys[1]), Ok(Some(vec![2])));
        assert_eq!(set.get(root, keys[0]), Ok(Some(vec![1])));
        assert_eq!(set.get(root, B256::with_last_byte(9)), Ok(None));
        assert_eq!(set.get(root, B256::repeat_byte(0xff)), Ok(None));
        assert_eq!(set.finish(), Ok(()));
    }

    #[test]
    fn present_and_absent_slots_share_one_node_set() {
        let slots = storage_entries(40);
        let present = slots[7].0;
        let absent = B256::with_last_byte(200);
        let (root, nodes) = storage_trie(&slots, &[present, absent]);
        assert_eq!(
            verify_storage(root, &present, &nodes).map_err(|_| ()),
            Err(()),
            "absent's nodes unused"
        );
        let mut set = NodeSet::new(nodes.iter().cloned());
        assert_eq!(set.storage(root, &present), Ok(slots[7].1));
        assert_eq!(set.storage(root, &absent), Ok(U256::ZERO));
        assert_eq!(set.finish(), Ok(()));
    }

    #[test]
    fn every_slot_of_a_trie_proves_its_value() {
        let slots = storage_entries(40);
        for (slot, value) in &slots {
            let (root, nodes) = storage_trie(&slots, &[*slot]);
            assert_eq!(verify_storage(root, slot, &nodes), Ok(*value));
        }
    }

    #[test]
    fn missing_and_unused_nodes_are_reported() {
        let slots = storage_entries(40);
        let target = slots[3].0;
        let (root, nodes) = storage_trie(&slots, &[target]);
        let mut without_root = nodes.clone();
        without_root.retain(|node| keccak256(node) != root);
        assert!(matches!(
            verify_storage(root, &target, &without_root),
            Err(ProofError::MissingNode { hash, .. }) if hash == root
        ));
        let extra = Bytes::from(alloy_rlp::encode(vec![Bytes::from_static(b"not on the path"); 2]));
        let mut padded = nodes.clone();
        padded.push(extra.clone());
        assert_eq!(
            verify_storage(root, &target, &padded),
            Err(ProofError::UnusedNodes { unused: vec![keccak256(&extra)] })
        );
        // Duplicates are one node, not an unused second copy.
        let mut doubled = nodes.clone();
        doubled.extend(nodes.iter().cloned());
        assert_eq!(verify_storage(root, &target, &doubled), Ok(slots[3].1));
    }

    #[test]
    fn empty_trie_proves_absence_without_nodes() {
        assert_eq!(verify_storage(EMPTY_ROOT_HASH, &B256::ZERO, &[]), Ok(U256::ZERO));
        assert_eq!(verify_account(EMPTY_ROOT_HASH, &Address::ZERO, &[]), Ok(None));
    }

    #[test]
    fn stored_zero_is_rejected() {
        let slot = B256::with_last_byte(1);
        let (root, nodes) =
            trie(&[(storage_key(&slot), alloy_rlp::encode(U256::ZERO))], &[storage_key(&slot)]);
        assert_eq!(verify_storage(root, &slot, &nodes), Err(ProofError::ZeroStorageValue));
    }

    #[test]
    fn code_must_hash_to_code_hash() {
        let code = [0x60, 0x00, 0x60, 0x00, 0xf3];
        assert_eq!(verify_code(keccak256(code), &code), Ok(()));
        assert_eq!(
            verify_code(B256::ZERO, &code),
            Err(CodeError { expected: B256::ZERO, got: keccak256(code) })
        );
    }
}
