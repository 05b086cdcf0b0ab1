//! Flow control end to end: a client estimate and a server buffer driven together, by
//! hand-computed scenarios with geth's default parameters and by property tests that
//! check the point of the whole scheme: the client's estimate never exceeds the server's
//! real buffer, so a client that obeys `can_send` never causes a buffer underrun.

use les::flow::{ClientBuffer, CostTable, FlowParams, SendDelay, ServerBufferEstimate};
use les::msg::RequestCost;
use les::time::Timestamp;
use proptest::prelude::*;
use std::time::Duration;

const GET_BLOCK_HEADERS: u64 = 0x02;
const GET_HELPER_TRIE_PROOFS: u64 = 0x11;

fn ms(millis: u64) -> Timestamp {
    Timestamp::from_millis(millis)
}

#[test]
fn geth_defaults_three_full_helper_trie_requests_then_wait() {
    // BL 96,000,000, MRR 16,000/ms; 16 helper-trie proofs cost 32,000,000.
    let params = FlowParams::geth_default();
    let mut server = ClientBuffer::new(params.clone(), ms(0));
    let mut client = ServerBufferEstimate::new(params, ms(0));
    let cost = client.request_cost(GET_HELPER_TRIE_PROOFS, 16).unwrap();
    assert_eq!(cost, 32_000_000);

    let mut tickets = Vec::new();
    for id in 0..2 {
        assert_eq!(client.can_send(cost, ms(0)), Ok(()));
        client.on_send(id, cost, ms(0));
        tickets.push(server.accept(GET_HELPER_TRIE_PROOFS, 16, ms(0)).unwrap());
    }
    // The third needs 32,000,000 + 16,000 margin but only 32,000,000 is left: 1 ms.
    assert_eq!(client.can_send(cost, ms(0)), Err(SendDelay::Wait(Duration::from_millis(1))));
    // Not recharging yet (no reply), so waiting alone does not help the estimate.
    assert_eq!(client.can_send(cost, ms(5)), Err(SendDelay::Wait(Duration::from_millis(1))));

    // The server answers the first at 5 ms having used 1,000,000: BV = 32,000,000 + 80,000
    // recharge + 31,000,000 refund + 32,000,000 for the second request accepted later.
    let first = tickets.remove(0);
    let bv = server.complete(first, 1_000_000, ms(5));
    assert_eq!(bv, 95_080_000);
    client.on_reply(0, bv, ms(5)).unwrap();
    assert_eq!(client.buffer_estimate(ms(5)), 63_080_000);
    assert_eq!(server.buffer_value(ms(5)), 63_080_000);
    assert_eq!(client.can_send(cost, ms(5)), Ok(()));
    // Both keep recharging at 16,000/ms.
    assert_eq!(client.buffer_estimate(ms(105)), 64_680_000);
    assert_eq!(server.buffer_value(ms(105)), 64_680_000);
}

#[test]
fn geth_defaults_header_request_cost() {
    let params = FlowParams::geth_default();
    let client = ServerBufferEstimate::new(params, ms(0));
    assert_eq!(client.request_cost(GET_BLOCK_HEADERS, 192), Some(11_820_000));
    assert_eq!(client.request_cost(GET_BLOCK_HEADERS, 1), Some(360_000));
}

#[test]
fn underrun_freeze_resume_round_trip() {
    let params = FlowParams::geth_default();
    let mut server = ClientBuffer::new(params.clone(), ms(0));
    let mut client = ServerBufferEstimate::new(params, ms(0));
    // A misbehaving client ignores can_send.
    for id in 0..3 {
        client.on_send(id, 32_000_000, ms(0));
        let ticket = server.accept(GET_HELPER_TRIE_PROOFS, 16, ms(0)).unwrap();
        server.complete(ticket, 32_000_000, ms(0));
    }
    client.on_send(3, 32_000_000, ms(0));
    assert!(server.accept(GET_HELPER_TRIE_PROOFS, 16, ms(0)).is_err());
    server.freeze(ms(0), Duration::ZERO);
    client.on_stop();
    assert_eq!(client.can_send(1, ms(1)), Err(SendDelay::Frozen));
    // BV must exceed 12,000,000: 12,000,001 / 16,000 per ms = 750.0000625 ms.
    let at = server.resume_at().unwrap();
    assert_eq!(at, Timestamp::from_nanos(750_000_063));
    let bv = server.try_resume(at).unwrap();
    client.on_resume(bv, at);
    assert_eq!(client.buffer_estimate(at), 12_000_001);
    assert_eq!(client.pending_requests(), 0);
    assert_eq!(client.can_send(11_000_000, at), Ok(()));
}

/// A random but consistent cost table and parameters, in which every request fits in
/// the buffer (a request costing more than BL can never be accepted).
fn arb_params() -> impl Strategy<Value = (FlowParams, u64)> {
    (0u64..1_000_000, 1u64..1_000_000, 1u64..64, 1u64..1_000_000, 1u64..4).prop_map(
        |(base, per_item, max_items, min_recharge, slack)| {
            let largest = base + per_item * max_items;
            let costs: CostTable =
                [RequestCost { code: GET_BLOCK_HEADERS, base_cost: base, request_cost: per_item }]
                    .into_iter()
                    .collect();
            // BL >= largest + MRR: the one-millisecond margin of `can_send` is then never
            // capped, which is what covers requests that take up to 1 ms to arrive.
            (
                FlowParams { buffer_limit: largest * slack + min_recharge, min_recharge, costs },
                max_items,
            )
        },
    )
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    /// Send a request of this many items that reaches the server after this many ns.
    Send(u64, u64),
    Serve {
        pick: usize,
        used_permille: u64,
    },
    Deliver {
        pick: usize,
    },
}

fn arb_op(max_items: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..20_000_000).prop_map(Op::Advance),
        (1..=max_items, 0u64..=1_000_000).prop_map(|(items, latency)| Op::Send(items, latency)),
        (any::<usize>(), 0u64..=1000)
            .prop_map(|(pick, used_permille)| Op::Serve { pick, used_permille }),
        any::<usize>().prop_map(|pick| Op::Deliver { pick }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Requests reach the server as they are sent; the server serves them in any order
    /// and the replies reach the client in any order. The estimate must never exceed the
    /// server's buffer, and nothing the client was allowed to send may underrun.
    #[test]
    fn estimate_is_a_lower_bound_and_obedient_clients_never_underrun(
        (params, ops) in arb_params().prop_flat_map(|(params, max_items)| {
            (Just(params), proptest::collection::vec(arb_op(max_items), 1..200))
        })
    ) {
        let mut now = Timestamp::ZERO;
        let mut server = ClientBuffer::new(params.clone(), now);
        let mut client = ServerBufferEstimate::new(params, now);
        let mut unserved = Vec::new();
        let mut in_transit = Vec::new();
        let mut next_id = 0u64;
        for op in ops {
            match op {
                Op::Advance(nanos) => now = Timestamp::from_nanos(now.as_nanos() + nanos),
                Op::Send(items, _) => {
                    let cost = client.request_cost(GET_BLOCK_HEADERS, items).unwrap();
                    if client.can_send(cost, now).is_ok() {
                        client.on_send(next_id, cost, now);
                        let ticket = server.accept(GET_BLOCK_HEADERS, items, now);
                        prop_assert!(ticket.is_ok(), "underrun: {:?}", ticket);
                        unserved.push((next_id, ticket.unwrap()));
                        next_id += 1;
                    }
                }
                Op::Serve { pick, used_permille } => {
                    if !unserved.is_empty() {
                        let (id, ticket) = unserved.swap_remove(pick % unserved.len());
                        let real = ticket.max_cost() / 1000 * used_permille;
                        let bv = server.complete(ticket, real, now);
                        in_transit.push((id, bv));
                    }
                }
                Op::Deliver { pick } => {
                    if !in_transit.is_empty() {
                        let (id, bv) = in_transit.swap_remove(pick % in_transit.len());
                        prop_assert_eq!(client.on_reply(id, bv, now), Ok(()));
                    }
                }
            }
            let estimate = client.buffer_estimate(now);
            let real = server.buffer_value(now);
            prop_assert!(estimate <= real, "estimate {} > buffer {}", estimate, real);
        }
    }

    /// As above, but requests take up to 1 ms to reach the server (in order). The
    /// estimate may then briefly run ahead of the buffer by up to one millisecond of
    /// recharge, which the margin in `can_send` absorbs: still no underrun.
    #[test]
    fn requests_arriving_within_a_millisecond_never_underrun(
        (params, ops) in arb_params().prop_flat_map(|(params, max_items)| {
            (Just(params), proptest::collection::vec(arb_op(max_items), 1..200))
        })
    ) {
        let mut now = 0u64;
        let mut server = ClientBuffer::new(params.clone(), Timestamp::ZERO);
        let mut client = ServerBufferEstimate::new(params, Timestamp::ZERO);
        let mut to_server: std::collections::VecDeque<(u64, u64, u64)> = Default::default();
        let mut unserved = Vec::new();
        let mut in_transit = Vec::new();
        let mut next_id = 0u64;
        let mut last_arrival = 0u64;
        for op in ops {
            match op {
                Op::Advance(nanos) => {
                    let target = now + nanos;
                    while let Some(&(arrival, id, items)) = to_server.front() {
                        if arrival > target {
                            break;
                        }
                        to_server.pop_front();
                        now = arrival;
                        let ticket = server.accept(GET_BLOCK_HEADERS, items, Timestamp::from_nanos(now));
                        prop_assert!(ticket.is_ok(), "underrun: {:?}", ticket);
                        unserved.push((id, ticket.unwrap()));
                    }
                    now = target;
                }
                Op::Send(items, latency) => {
                    let cost = client.request_cost(GET_BLOCK_HEADERS, items).unwrap();
                    if client.can_send(cost, Timestamp::from_nanos(now)).is_ok() {
                        client.on_send(next_id, cost, Timestamp::from_nanos(now));
                        // TCP keeps order: never arrive before the previous request.
                        last_arrival = last_arrival.max(now + latency);
                        to_server.push_back((last_arrival, next_id, items));
                        next_id += 1;
                    }
                }
                Op::Serve { pick, used_permille } => {
                    if !unserved.is_empty() {
                        let (id, ticket) = unserved.swap_remove(pick % unserved.len());
                        let real = ticket.max_cost() / 1000 * used_permille;
                        in_transit.push((id, server.complete(ticket, real, Timestamp::from_nanos(now))));
                    }
                }
                Op::Deliver { pick } => {
                    if !in_transit.is_empty() {
                        let (id, bv) = in_transit.swap_remove(pick % in_transit.len());
                        prop_assert_eq!(client.on_reply(id, bv, Timestamp::from_nanos(now)), Ok(()));
                    }
                }
            }
        }
    }

    /// Recharge does not depend on how often it is looked at.
    #[test]
    fn recharge_is_independent_of_update_frequency(
        min_recharge in 1u64..10_000_000,
        drain in 0u64..1_000_000_000,
        steps in proptest::collection::vec(0u64..5_000_000, 1..50),
    ) {
        let params = FlowParams { buffer_limit: 1_000_000_000, min_recharge, costs: CostTable::new() };
        let mut stepped = ClientBuffer::new(params.clone(), Timestamp::ZERO);
        let mut once = ClientBuffer::new(params, Timestamp::ZERO);
        stepped.charge(drain, Timestamp::ZERO);
        once.charge(drain, Timestamp::ZERO);
        let mut now = 0u64;
        for step in steps {
            now += step;
            stepped.buffer_value(Timestamp::from_nanos(now));
        }
        let end = Timestamp::from_nanos(now);
        let expected = (1_000_000_000 - drain as u128 + (min_recharge as u128 * now as u128) / 1_000_000).min(1_000_000_000);
        prop_assert_eq!(stepped.buffer_value(end) as u128, expected);
        prop_assert_eq!(once.buffer_value(end) as u128, expected);
    }

    /// Arbitrary values never panic, whatever the order of calls.
    #[test]
    fn arbitrary_inputs_never_panic(
        limit in any::<u64>(), rate in any::<u64>(), base in any::<u64>(), per_item in any::<u64>(),
        calls in proptest::collection::vec((any::<u8>(), any::<u64>(), any::<u64>(), any::<u64>()), 1..60),
    ) {
        let costs: CostTable = [RequestCost { code: 1, base_cost: base, request_cost: per_item }].into_iter().collect();
        let params = FlowParams { buffer_limit: limit, min_recharge: rate, costs };
        let mut server = ClientBuffer::new(params.clone(), Timestamp::ZERO);
        let mut client = ServerBufferEstimate::new(params, Timestamp::ZERO);
        let mut tickets = Vec::new();
        for (kind, a, b, t) in calls {
            let now = Timestamp::from_nanos(t);
            match kind % 12 {
                0 => { if let Ok(ticket) = server.accept(1, a, now) { tickets.push(ticket) } }
                1 => { if let Some(ticket) = tickets.pop() { server.complete(ticket, a, now); } }
                2 => server.charge(a, now),
                3 => { server.freeze(now, Duration::from_nanos(a)); }
                4 => { server.try_resume(now); server.resume_at(); }
                5 => server.update_capacity(a, b, now),
                6 => { let _ = client.can_send(a, now); }
                7 => client.on_send(a % 4, b, now),
                8 => { let _ = client.on_reply(a % 4, b, now); }
                9 => { client.on_stop(); client.on_resume(a, now); }
                10 => client.on_params(a, b, now),
                _ => { client.request_cost(1, a); server.buffer_value(now); client.buffer_estimate(now); }
            }
        }
    }
}
