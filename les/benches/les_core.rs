//! Criterion benchmarks of the `les` core through its public API: the RLPx handshake and
//! frame codec, announcement signature checks, and the chain-data checks a light client runs
//! on every reply (header decode + hash, account proofs).
//!
//! Run with `cargo bench -p les --bench les_core`. Sample sizes and measurement times are
//! kept small so the whole run fits in a few minutes on a shared 2-core machine; the numbers
//! are for spotting regressions and orders of magnitude, not for publication.
//!
//! The chain groups use the mainnet vectors in `<CARGO_MANIFEST_DIR>/../../shared/vectors`
//! (override with `LES_VECTORS_DIR`); without them those groups are skipped with a message.
//! Every input is checked once before it is timed, so a benchmark can never be measuring an
//! error path.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256, hex};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use les::announce::AnnouncedHead;
use les::chain::{SealedHeader, verify_account, verify_account_proof};
use les::crypto::{NodeId, NodeKey, NodePublicKey, RecoverableSignature};
use les::rlpx::{FrameCodec, Initiator, Recipient, Secrets};
use serde_json::Value;

/// Frame payload sizes for `rlpx/frame`: a small message, a typical large reply, and a
/// frame near the upper end of what LES replies reach.
const FRAME_SIZES: [(&str, usize); 3] = [("1KiB", 1 << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)];

/// Short runs: enough samples for a stable median on an idle core, small enough that all
/// groups together finish well within three minutes.
fn configured() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

// ---------------------------------------------------------------------------------------
// RLPx
// ---------------------------------------------------------------------------------------

/// Static keys for one handshake: the dialer's key, the listener's key and its public key.
fn fresh_keys() -> (NodeKey, NodeKey, NodePublicKey) {
    let initiator_key = NodeKey::random().expect("OS randomness for the initiator key");
    let recipient_key = NodeKey::random().expect("OS randomness for the recipient key");
    let recipient_public = recipient_key.public_key();
    (initiator_key, recipient_key, recipient_public)
}

/// One complete in-memory EIP-8 handshake; returns (initiator secrets, recipient secrets).
fn handshake(
    initiator_key: NodeKey,
    recipient_key: NodeKey,
    recipient_public: NodePublicKey,
) -> (Secrets, Secrets) {
    let mut initiator =
        Initiator::new(initiator_key, recipient_public).expect("valid recipient public key");
    let auth = initiator.auth_packet().expect("auth packet");
    let mut recipient = Recipient::new(recipient_key).expect("OS randomness for the recipient");
    recipient.read_auth(&auth).expect("recipient accepts auth");
    let ack = recipient.ack_packet().expect("ack packet");
    let recipient_secrets = recipient.finish().expect("recipient secrets");
    let initiator_secrets = initiator.read_ack(&ack).expect("initiator accepts ack");
    (initiator_secrets, recipient_secrets)
}

fn bench_handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("rlpx");
    group.throughput(Throughput::Elements(1));
    // Keys are drawn outside the timed region; the handshake still draws its own ephemeral
    // keys and nonces, as it must on a real connection.
    group.bench_function("handshake", |b| {
        b.iter_batched(
            fresh_keys,
            |(initiator_key, recipient_key, recipient_public)| {
                black_box(handshake(initiator_key, recipient_key, recipient_public))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn bench_frame(c: &mut Criterion) {
    let (initiator_key, recipient_key, recipient_public) = fresh_keys();
    let (initiator_secrets, recipient_secrets) =
        handshake(initiator_key, recipient_key, recipient_public);
    // Both codecs live across iterations: the MAC states and CTR keystreams advance in
    // step, exactly as on a long-lived connection.
    let mut sender = FrameCodec::new(initiator_secrets);
    let mut receiver = FrameCodec::new(recipient_secrets);

    let mut group = c.benchmark_group("rlpx/frame");
    for (label, size) in FRAME_SIZES {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let wire = sender.write_frame(&payload).expect("frame within the size limit");
        let frames = receiver.read_frames(&wire).expect("receiver accepts the frame");
        assert_eq!(frames, std::slice::from_ref(&payload), "{label}: frame does not round-trip");

        let size_u64 = u64::try_from(size).expect("frame size fits in u64");
        group.throughput(Throughput::Bytes(size_u64));
        group.bench_function(label, |b| {
            b.iter(|| {
                let wire = sender.write_frame(black_box(&payload)).expect("write_frame");
                let frames = receiver.read_frames(black_box(&wire)).expect("read_frames");
                black_box(frames)
            })
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// Announcements
// ---------------------------------------------------------------------------------------

fn bench_announce(c: &mut Criterion) {
    let server_key = NodeKey::random().expect("OS randomness for the server key");
    let server_id: NodeId = server_key.node_id();
    let head = AnnouncedHead {
        hash: B256::repeat_byte(0xab),
        number: 21_925_176,
        // Mainnet's terminal total difficulty.
        td: U256::from(58_750_003_716_598_352_816_469_u128),
    };
    let signature: RecoverableSignature = head.sign(&server_key);
    head.verify(&signature, &server_id).expect("fresh signature verifies");

    let mut group = c.benchmark_group("announce");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify", |b| {
        b.iter(|| black_box(&head).verify(black_box(&signature), black_box(&server_id)))
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------
// Chain data (mainnet vectors)
// ---------------------------------------------------------------------------------------

fn vectors_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("LES_VECTORS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
        PathBuf::from,
    );
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "skipping chain benchmarks: vectors not found in {} (set LES_VECTORS_DIR)",
            dir.display()
        );
        None
    }
}

fn load(dir: &Path, name: &str) -> Vec<Value> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    match serde_json::from_str(&text) {
        Ok(Value::Array(items)) => items,
        Ok(_) => panic!("{}: expected a JSON array", path.display()),
        Err(error) => panic!("{}: {error}", path.display()),
    }
}

fn field<'a>(entry: &'a Value, key: &str) -> &'a str {
    entry
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("vector entry lacks string field `{key}`"))
}

fn hex_field(entry: &Value, key: &str) -> Vec<u8> {
    hex::decode(field(entry, key)).unwrap_or_else(|error| panic!("`{key}`: {error}"))
}

fn bench_headers(c: &mut Criterion) {
    let Some(dir) = vectors_dir() else { return };
    let entries = load(&dir, "mainnet-headers.json");
    let headers: Vec<Vec<u8>> = entries
        .iter()
        .map(|entry| {
            let rlp = hex_field(entry, "rlp");
            let expected: B256 = field(entry, "hash").parse().expect("`hash` is 32 bytes");
            let sealed = SealedHeader::decode(&rlp).expect("mainnet header decodes");
            assert_eq!(sealed.hash(), expected, "{}: hash mismatch", field(entry, "label"));
            rlp
        })
        .collect();

    let mut group = c.benchmark_group("chain");
    group.throughput(Throughput::Elements(headers.len() as u64));
    group.bench_function("header", |b| {
        b.iter(|| {
            for rlp in &headers {
                let sealed = SealedHeader::decode(black_box(rlp)).expect("header decodes");
                black_box(sealed.hash());
            }
        })
    });
    group.finish();
}

/// One `eth_getProof` account proof with the root it is checked against.
struct AccountProof {
    state_root: B256,
    address: Address,
    ordered: Vec<Bytes>,
    /// The same nodes in reverse, as an LES `ProofsV2` node set need not keep any order.
    node_set: Vec<Bytes>,
    present: bool,
}

fn bench_account_proofs(c: &mut Criterion) {
    let Some(dir) = vectors_dir() else { return };
    let entries = load(&dir, "mainnet-proofs.json");
    let proofs: Vec<AccountProof> = entries
        .iter()
        .map(|entry| {
            let label = field(entry, "label");
            let ordered: Vec<Bytes> = entry
                .get("accountProof")
                .and_then(Value::as_array)
                .unwrap_or_else(|| panic!("{label}: no `accountProof` array"))
                .iter()
                .map(|node| {
                    let text = node.as_str().unwrap_or_else(|| panic!("{label}: node"));
                    Bytes::from(hex::decode(text).unwrap_or_else(|e| panic!("{label}: {e}")))
                })
                .collect();
            let proof = AccountProof {
                state_root: field(entry, "stateRoot").parse().expect("`stateRoot`"),
                address: field(entry, "address").parse().expect("`address`"),
                node_set: ordered.iter().rev().cloned().collect(),
                ordered,
                present: match field(entry, "expect") {
                    "present" => true,
                    "absent" => false,
                    other => panic!("{label}: unknown expectation `{other}`"),
                },
            };
            let by_order = verify_account_proof(proof.state_root, &proof.address, &proof.ordered)
                .unwrap_or_else(|e| panic!("{label}: ordered proof rejected: {e}"));
            let by_set = verify_account(proof.state_root, &proof.address, &proof.node_set)
                .unwrap_or_else(|e| panic!("{label}: node-set proof rejected: {e}"));
            assert_eq!(by_order.is_some(), proof.present, "{label}: presence");
            assert_eq!(by_order, by_set, "{label}: the two forms disagree");
            proof
        })
        .collect();

    let mut group = c.benchmark_group("chain/account_proof");
    group.throughput(Throughput::Elements(proofs.len() as u64));
    group.bench_function("eip1186", |b| {
        b.iter(|| {
            for proof in &proofs {
                black_box(
                    verify_account_proof(
                        proof.state_root,
                        &proof.address,
                        black_box(&proof.ordered),
                    )
                    .expect("ordered proof verifies"),
                );
            }
        })
    });
    group.bench_function("node_set", |b| {
        b.iter(|| {
            for proof in &proofs {
                black_box(
                    verify_account(proof.state_root, &proof.address, black_box(&proof.node_set))
                        .expect("node-set proof verifies"),
                );
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = configured();
    targets = bench_handshake, bench_frame, bench_announce, bench_headers, bench_account_proofs
}
criterion_main!(benches);
