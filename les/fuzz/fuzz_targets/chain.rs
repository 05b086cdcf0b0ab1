//! Chain data a server sends: headers, bodies (verified against a default header, senders
//! recovered), receipts, and proof node sets walked from a root taken from the input.
#![no_main]

use alloy_consensus::Header;
use alloy_primitives::{Address, B256, Bytes};
use les::chain::{BlockBody, BlockReceipts, NodeSet, SealedHeader, verify_chain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else { return };
    match mode & 0x03 {
        0 => {
            if let Ok(header) = SealedHeader::decode(rest) {
                assert_eq!(SealedHeader::decode(&header.encoded()).expect("re-decodes"), header);
                let _ = verify_chain(std::slice::from_ref(&header), &header);
            }
        }
        1 => {
            if let Ok(body) = BlockBody::decode(rest) {
                let _ = body.verify(&Header::default());
                let _ = body.recover_senders();
                let _ = body.encode();
            }
        }
        2 => {
            if let Ok(receipts) = BlockReceipts::decode(rest) {
                let _ = receipts.verify(&Header::default());
            }
        }
        _ => walk_node_set(rest),
    }
});

/// Input: `root(32) || key(32) || nodes separated by 0xff 0xfe`.
fn walk_node_set(input: &[u8]) {
    let Some((root, rest)) = input.split_first_chunk::<32>() else { return };
    let Some((key, rest)) = rest.split_first_chunk::<32>() else { return };
    let (root, key) = (B256::from(*root), B256::from(*key));
    let mut nodes = Vec::new();
    let mut remaining = rest;
    while !remaining.is_empty() {
        let end = remaining.windows(2).position(|w| w == [0xff, 0xfe]).unwrap_or(remaining.len());
        nodes.push(Bytes::copy_from_slice(&remaining[..end]));
        remaining = remaining.get(end + 2..).unwrap_or_default();
    }
    // A root that is a node's own hash makes the walk go somewhere.
    let roots = [root, nodes.first().map_or(root, alloy_primitives::keccak256)];
    for root in roots {
        let mut set = NodeSet::new(nodes.iter().cloned());
        let _ = set.get(root, key);
        let _ = set.account(root, &Address::from_slice(&key[..20]));
        let _ = set.storage(root, &key);
        let _ = set.finish();
    }
}
