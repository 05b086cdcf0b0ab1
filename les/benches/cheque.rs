//! Criterion benchmarks of payment-channel cheques: what a server pays to check one cheque
//! (`verify`: EIP-712 digest, ecrecover, compare with the channel's payer, as the Pay path
//! does before touching storage), the parts of that separately, and what a client pays to
//! sign one.
//!
//! Run with `cargo bench -p les --bench cheque`. Throughput is reported per cheque, so
//! criterion prints cheques per second next to the time. Short runs, as in `les_core`.

use std::hint::black_box;
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use les::crypto::NodeKey;
use les::pay::cheque::{Cheque, ChequeDomain, key_address};
use les::pay::messages::ChannelProof;

fn configured() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

fn setup() -> (NodeKey, ChequeDomain, Cheque) {
    let key = NodeKey::from_bytes(&[0x5a; 32]).expect("valid scalar");
    let domain = ChequeDomain { chain_id: 31337, contract: Address::repeat_byte(0x11) };
    let cheque = Cheque {
        channel_id: B256::repeat_byte(0x22),
        payee: Address::repeat_byte(0x33),
        cumulative: U256::from(10u64).pow(U256::from(18)),
    };
    (key, domain, cheque)
}

fn bench_cheque(c: &mut Criterion) {
    let (key, domain, cheque) = setup();
    let payer = key_address(&key);
    let signature = cheque.sign(&key, &domain);
    // The input must be a valid cheque, or the benchmark would time an error path.
    assert_eq!(cheque.recover(&domain, &signature), Ok(payer));
    let proof =
        ChannelProof { channel_id: cheque.channel_id, cumulative: cheque.cumulative, signature }
            .encode();

    let mut group = c.benchmark_group("cheque");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify", |b| {
        b.iter(|| {
            let ok = cheque.recover(black_box(&domain), black_box(&signature)) == Ok(payer);
            black_box(ok)
        })
    });
    group.bench_function("decode_proof_and_verify", |b| {
        b.iter(|| {
            let proof = ChannelProof::decode(black_box(&proof)).expect("valid proof");
            let ok = proof.cheque(cheque.payee).recover(&domain, &proof.signature) == Ok(payer);
            black_box(ok)
        })
    });
    group.bench_function("digest", |b| b.iter(|| black_box(&cheque).digest(black_box(&domain))));
    group.bench_function("sign", |b| b.iter(|| black_box(&cheque).sign(&key, black_box(&domain))));
    group.finish();
}

criterion_group! {
    name = benches;
    config = configured();
    targets = bench_cheque
}
criterion_main!(benches);
