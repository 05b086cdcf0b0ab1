//! Criterion benchmarks of the server's client pool (`les::pay::pool`) with 10,000 clients:
//! the admission decision for a newcomer into a full pool (accepted, which squeezes the
//! weakest client, and rejected), the capacity query, and the periodic refresh that
//! charges and re-ranks every active client.
//!
//! Run with `cargo bench -p les --bench pool`. Short runs, as in `les_core`: the numbers
//! are for orders of magnitude and regressions on a shared machine.
//!
//! The pool: 10,000 slots and 12,000 × the minimum capacity. 5,000 payers (balances spread
//! over two orders of magnitude, the first 2,000 at twice the minimum) and 5,000 free
//! clients with debts, loaded through `restore` as a server does at startup, so it is full
//! by count and by capacity. Every input is checked once before it is timed, so a
//! benchmark never measures the wrong path.

use std::hint::black_box;
use std::time::Duration;

use alloy_primitives::B256;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use les::crypto::NodeId;
use les::pay::balance::{ExpiredValue, LogOffset};
use les::pay::pool::{BalanceSnapshot, ClientPool, FreeId, PoolConfig, PoolError};
use les::time::Timestamp;

const CLIENTS: u64 = 10_000;
const PAYERS: u64 = 5_000;
const RAISED: u64 = 2_000;

fn configured() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

fn node(i: u64) -> NodeId {
    B256::left_padding_from(&i.to_be_bytes())
}

fn addr(i: u64) -> FreeId {
    i.to_be_bytes().to_vec()
}

const NOW: Timestamp = Timestamp::from_nanos(1_000_000_000);

fn full_pool() -> ClientPool {
    let config = PoolConfig::new(0, 0);
    let min = config.min_capacity;
    let config = PoolConfig {
        max_capacity: (CLIENTS + RAISED) * min,
        max_count: CLIENTS as usize,
        ..config
    };
    let mut pool = ClientPool::new(config, Timestamp::ZERO);
    let snapshot = BalanceSnapshot {
        // 1e12 .. 1e14 tokens: hours of connection at the minimum.
        pos: (0..PAYERS)
            .map(|i| {
                (
                    node(i),
                    ExpiredValue::new(1_000_000_000_000 * (1 + i * 99 / PAYERS), LogOffset(0)),
                )
            })
            .collect(),
        // Debts below one bias period's cost, so a debt-free newcomer does not outrank them.
        neg: (PAYERS..CLIENTS)
            .map(|i| (addr(i), ExpiredValue::new(1 + i * 1000, LogOffset(0))))
            .collect(),
        ..BalanceSnapshot::default()
    };
    pool.restore(snapshot, Timestamp::ZERO).expect("empty pool");
    for i in 0..CLIENTS {
        pool.connect(node(i), addr(i), NOW).expect("room for everyone");
    }
    for i in 0..RAISED {
        let got = pool.set_capacity(node(i), 2 * min, NOW).expect("payer");
        assert_eq!(got, 2 * min, "raise {i}");
    }
    while pool.poll_event().is_some() {}
    let info = pool.server_info();
    assert_eq!(info.active_count, CLIENTS as usize);
    assert_eq!(info.free_capacity, 0);
    pool
}

fn bench_admission(c: &mut Criterion) {
    let base = full_pool();
    let rich = node(CLIENTS + 1);
    let poor = node(CLIENTS + 2);
    {
        let mut pool = base.clone();
        pool.add_balance(rich, 10_000_000_000_000, NOW).expect("credit");
        assert!(pool.connect(rich, addr(CLIENTS + 1), NOW).is_ok());
        assert!(matches!(pool.poll_event(), Some(les::pay::pool::PoolEvent::Deactivated { .. })));
        let mut pool = base.clone();
        assert_eq!(pool.connect(poor, addr(CLIENTS + 2), NOW), Err(PoolError::Rejected(poor)));
    }
    let mut group = c.benchmark_group("pool_10k");
    let mut with_rich = base.clone();
    with_rich.add_balance(rich, 10_000_000_000_000, NOW).expect("credit");
    group.bench_function("connect_accepted", |b| {
        b.iter_batched(
            || with_rich.clone(),
            |mut pool| {
                black_box(pool.connect(rich, addr(CLIENTS + 1), NOW)).ok();
                pool
            },
            BatchSize::LargeInput,
        )
    });
    let mut pool = base.clone();
    group.bench_function("connect_rejected", |b| {
        b.iter(|| black_box(pool.connect(poor, addr(CLIENTS + 2), NOW)))
    });

    // A mid-ranked payer at the minimum asks about a 16-step ladder of additions
    // (1e12 .. 3.3e16 tokens, enough at the top to outbid payers).
    let asker = node(RAISED + 1_000);
    let ladder: Vec<i64> = (0..16).map(|k| 1_000_000_000_000i64 << k).collect();
    let replies = base.clone().capacity_query(asker, 0, &ladder, NOW);
    assert!(replies.windows(2).all(|w| w[0] <= w[1]) && replies[15] > replies[0], "{replies:?}");
    // Cold: the curve is built (as far as the largest addition can reach).
    group.bench_function("capacity_query_16_cold", |b| {
        b.iter_batched(
            || base.clone(),
            |mut pool| {
                black_box(pool.capacity_query(asker, 0, &ladder, NOW));
                pool
            },
            BatchSize::LargeInput,
        )
    });
    // Warm: the same question again with nothing changed in between reuses the curve.
    let mut pool = base.clone();
    pool.capacity_query(asker, 0, &ladder, NOW);
    group.bench_function("capacity_query_16_warm", |b| {
        b.iter(|| black_box(pool.capacity_query(asker, 0, &ladder, NOW)))
    });
    // A modest ladder (up to 3.3e13 tokens): only the free clients are squeezed.
    let small: Vec<i64> = (0..16).map(|k| 1_000_000_000i64 << k).collect();
    group.bench_function("capacity_query_16_small_cold", |b| {
        b.iter_batched(
            || base.clone(),
            |mut pool| {
                black_box(pool.capacity_query(asker, 0, &small, NOW));
                pool
            },
            BatchSize::LargeInput,
        )
    });
    // The worst case: an addition that outranks everyone, so the whole pool is squeezed.
    let all = [i64::MAX];
    assert!(base.clone().capacity_query(asker, 0, &all, NOW)[0] > 1_000_000);
    group.bench_function("capacity_query_whole_pool_cold", |b| {
        b.iter_batched(
            || base.clone(),
            |mut pool| {
                black_box(pool.capacity_query(asker, 0, &all, NOW));
                pool
            },
            BatchSize::LargeInput,
        )
    });

    // The periodic refresh (every 10 s by default): all 10,000 charged and re-ranked.
    let later = Timestamp::from_nanos(NOW.as_nanos() + 10_000_000_000);
    group.bench_function("refresh_all", |b| {
        b.iter_batched(
            || base.clone(),
            |mut pool| {
                pool.handle_timeout(later);
                pool
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = configured();
    targets = bench_admission
}
criterion_main!(benches);
