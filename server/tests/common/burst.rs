//! Bursts of LES requests that need the upstream (account proofs), sent at once by
//! lespay/1 clients, and when each reply arrived: how the serving queue's order shows from
//! outside (server/tests/pay_service.rs, server/benches/lesd_bench.rs). A binary includes it
//! with `#[path = "common/burst.rs"] mod burst;` beside `mod pay_support;`.

use crate::pay_support::client::{PayClient, WAIT};
use alloy_primitives::{Address, B256};
use les::msg::{GetProofsV2, LesMessage, ProofRequest};
use les::session::Event;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Sends up to `count` account-proof requests at once, as many as the client's flow-control
/// budget allows; their ids.
pub async fn send_proofs(client: &mut PayClient, block: B256, count: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..count {
        let id = client.req_id();
        let account = Address::with_last_byte(u8::try_from(i).unwrap_or(u8::MAX));
        let request = LesMessage::GetProofsV2(GetProofsV2 {
            request_id: id,
            requests: vec![ProofRequest::account(block, account)],
        });
        let now = client.now();
        if client.session.send_request(request, now).is_err() {
            break;
        }
        ids.push(id);
    }
    client.flush().await;
    ids
}

/// Waits for the replies to `ids`; when each arrived, measured from `t0`.
pub async fn replies(
    mut client: PayClient,
    ids: Vec<u64>,
    t0: Instant,
) -> (PayClient, Vec<Duration>) {
    let mut arrived = Vec::new();
    let mut pending: HashSet<u64> = ids.into_iter().collect();
    let deadline = Instant::now() + WAIT;
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "{} replies missing", pending.len());
        assert!(
            client.disconnect_reason().is_none(),
            "disconnected: {:?}",
            client.disconnect_reason()
        );
        let before = client.events.len();
        client.pump(Duration::from_millis(20)).await;
        let at = t0.elapsed();
        for event in client.events.drain(before..).collect::<Vec<_>>() {
            match event {
                Event::Reply(LesMessage::ProofsV2(reply)) if pending.remove(&reply.request_id) => {
                    arrived.push(at);
                }
                other => client.events.push_back(other),
            }
        }
    }
    (client, arrived)
}

pub fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}
