//! Scenario table for the ULC quorum state machine: each row is a named sequence of signed
//! announcements (and resets / warm starts) with the outcome expected after every step and
//! the accepted head expected at the end.

use alloy_primitives::{B256, U256, keccak256};
use les::announce::{AnnouncedHead, SignedAnnouncement};
use les::crypto::{NodeId, NodeKey, RecoverableSignature};
use les::ulc::{DropReason, RestoreError, Ulc, UlcConfig, UlcError, UlcEvent};
use std::ops::RangeInclusive;

/// Mainnet terminal total difficulty: the TD every post-merge announcement carries.
fn ttd() -> U256 {
    U256::from(58_750_000_000_000_000_000_000_u128)
}

fn trusted_key(index: usize) -> NodeKey {
    NodeKey::from_bytes(&keccak256(format!("trusted-{index}")).0).unwrap()
}

fn untrusted_key(index: usize) -> NodeKey {
    NodeKey::from_bytes(&keccak256(format!("untrusted-{index}")).0).unwrap()
}

/// A head named by a label; the hash is keccak256 of the label.
#[derive(Clone, Copy, Debug)]
struct H {
    label: &'static str,
    number: u64,
    td_below_ttd: u64,
}

impl H {
    fn head(self) -> AnnouncedHead {
        head_of(self.label, self.number, self.td_below_ttd)
    }
}

fn head_of(label: &str, number: u64, td_below_ttd: u64) -> AnnouncedHead {
    AnnouncedHead {
        hash: keccak256(label.as_bytes()),
        number,
        td: ttd() - U256::from(td_below_ttd),
    }
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Trusted(usize),
    Untrusted(usize),
}

impl Who {
    fn key(self) -> NodeKey {
        match self {
            Who::Trusted(index) => trusted_key(index),
            Who::Untrusted(index) => untrusted_key(index),
        }
    }
}

/// Which signature travels with the announcement.
#[derive(Clone, Copy, Debug)]
enum Sig {
    /// The sender's own signature over the announced head.
    Own,
    /// The sender's own valid signature over a different head.
    ReplayOf(H),
    /// Someone else's valid signature over the announced head.
    By(Who),
    /// The sender's signature turned into its high-s twin.
    HighS,
    /// The sender's signature with v = 27.
    V27,
    /// 65 bytes of noise.
    Garbage,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Why {
    Td,
    Inconsistent,
    Backwards,
}

/// An expected event; servers by index, heads by label.
#[derive(Clone, Debug)]
enum Ev {
    Accepted(&'static str, u64, &'static [usize]),
    Dropped(usize, Why),
    Disagreement(u64, &'static [(usize, &'static str)]),
}

#[derive(Clone, Debug)]
enum Expect {
    Events(Vec<Ev>),
    Untrusted,
    DroppedServer,
    BadSignature,
}

#[derive(Clone, Debug)]
enum Step {
    Announce {
        from: Who,
        head: H,
        sig: Sig,
        depth: u64,
        expect: Expect,
    },
    /// Trusted server announces `{prefix}{n}` at every n in the range; each must be `Ok`.
    Range {
        server: usize,
        prefix: &'static str,
        numbers: RangeInclusive<u64>,
    },
    Reset {
        server: usize,
        expect: Vec<Ev>,
    },
    /// Replace the state machine by a warm start from this head signed by these servers.
    Restore {
        head: H,
        signers: &'static [usize],
    },
}

impl Step {
    fn depth(self, reorg_depth: u64) -> Self {
        match self {
            Step::Announce { from, head, sig, expect, .. } => {
                Step::Announce { from, head, sig, depth: reorg_depth, expect }
            }
            other => other,
        }
    }

    fn sig(self, signature: Sig) -> Self {
        match self {
            Step::Announce { from, head, depth, expect, .. } => {
                Step::Announce { from, head, sig: signature, depth, expect }
            }
            other => other,
        }
    }

    fn td_below_ttd(self, amount: u64) -> Self {
        match self {
            Step::Announce { from, head, sig, depth, expect } => Step::Announce {
                from,
                head: H { td_below_ttd: amount, ..head },
                sig,
                depth,
                expect,
            },
            other => other,
        }
    }

    fn expect(self, expected: Expect) -> Self {
        match self {
            Step::Announce { from, head, sig, depth, .. } => {
                Step::Announce { from, head, sig, depth, expect: expected }
            }
            other => other,
        }
    }

    fn events(self, events: Vec<Ev>) -> Self {
        self.expect(Expect::Events(events))
    }

    fn accepts(self, label: &'static str, number: u64, backers: &'static [usize]) -> Self {
        self.events(vec![Ev::Accepted(label, number, backers)])
    }
}

fn ann(server: usize, label: &'static str, number: u64) -> Step {
    announce(Who::Trusted(server), label, number)
}

fn announce(from: Who, label: &'static str, number: u64) -> Step {
    Step::Announce {
        from,
        head: H { label, number, td_below_ttd: 0 },
        sig: Sig::Own,
        depth: 0,
        expect: Expect::Events(vec![]),
    }
}

fn range(server: usize, prefix: &'static str, numbers: RangeInclusive<u64>) -> Step {
    Step::Range { server, prefix, numbers }
}

fn reset(server: usize) -> Step {
    Step::Reset { server, expect: vec![] }
}

struct Scenario {
    name: &'static str,
    trusted: usize,
    fraction: u32,
    steps: Vec<Step>,
    /// Accepted head at the end: label, number, stale.
    final_head: Option<(&'static str, u64, bool)>,
    disagreements: u64,
}

fn scenarios() -> Vec<Scenario> {
    use Ev::*;
    vec![
        Scenario {
            name: "1 of 1 accepts each new head",
            trusted: 1,
            fraction: 75,
            steps: vec![
                ann(0, "a1", 1).accepts("a1", 1, &[0]),
                ann(0, "a2", 2).accepts("a2", 2, &[0]),
            ],
            final_head: Some(("a2", 2, false)),
            disagreements: 0,
        },
        Scenario {
            name: "2 of 3 at 67% is not a quorum",
            trusted: 3,
            fraction: 67,
            steps: vec![ann(0, "a1", 1), ann(1, "a1", 1)],
            final_head: None,
            disagreements: 0,
        },
        Scenario {
            name: "3 of 3 at 67% is a quorum",
            trusted: 3,
            fraction: 67,
            steps: vec![
                ann(0, "a1", 1),
                ann(1, "a1", 1),
                ann(2, "a1", 1).accepts("a1", 1, &[0, 1, 2]),
            ],
            final_head: Some(("a1", 1, false)),
            disagreements: 0,
        },
        Scenario {
            name: "3 of 4 at 75% is a quorum, the 4th vote changes nothing",
            trusted: 4,
            fraction: 75,
            steps: vec![
                ann(0, "a1", 1),
                ann(1, "a1", 1),
                ann(2, "a1", 1).accepts("a1", 1, &[0, 1, 2]),
                ann(3, "a1", 1),
            ],
            final_head: Some(("a1", 1, false)),
            disagreements: 0,
        },
        Scenario {
            // Unclamped, 0% would accept 1 of 101 (100 * 1 / 101 = 0 >= 0).
            name: "fraction 0 is clamped to 1",
            trusted: 101,
            fraction: 0,
            steps: vec![ann(0, "a1", 1), ann(1, "a1", 1).accepts("a1", 1, &[0, 1])],
            final_head: Some(("a1", 1, false)),
            disagreements: 0,
        },
        Scenario {
            // Unclamped, 150% could never be met.
            name: "fraction 150 is clamped to 100",
            trusted: 2,
            fraction: 150,
            steps: vec![ann(0, "a1", 1), ann(1, "a1", 1).accepts("a1", 1, &[0, 1])],
            final_head: Some(("a1", 1, false)),
            disagreements: 0,
        },
        Scenario {
            name: "lagging servers: the head moves only when the quorum reaches it",
            trusted: 3,
            fraction: 67,
            steps: vec![
                range(0, "a", 1..=4),
                ann(1, "a1", 1),
                ann(1, "a2", 2),
                ann(2, "a1", 1).accepts("a1", 1, &[0, 1, 2]),
                ann(2, "a2", 2).accepts("a2", 2, &[0, 1, 2]),
                ann(1, "a3", 3),
                ann(2, "a3", 3).accepts("a3", 3, &[0, 1, 2]),
            ],
            final_head: Some(("a3", 3, false)),
            disagreements: 0,
        },
        Scenario {
            name: "reorg at the same height followed by a quorum moves the head",
            trusted: 3,
            fraction: 67,
            steps: vec![
                ann(0, "a10", 10),
                ann(1, "a10", 10),
                ann(2, "a10", 10).accepts("a10", 10, &[0, 1, 2]),
                ann(0, "b10", 10)
                    .depth(1)
                    .events(vec![Disagreement(10, &[(0, "b10"), (1, "a10"), (2, "a10")])]),
                ann(1, "b10", 10).depth(1),
                ann(2, "b10", 10).depth(1).accepts("b10", 10, &[0, 1, 2]),
            ],
            final_head: Some(("b10", 10, false)),
            disagreements: 1,
        },
        Scenario {
            name: "reorg to a lower number followed by a quorum moves the head down",
            trusted: 3,
            fraction: 67,
            steps: vec![
                range(0, "a", 9..=10),
                range(1, "a", 9..=10),
                ann(2, "a9", 9).accepts("a9", 9, &[0, 1, 2]),
                ann(2, "a10", 10).accepts("a10", 10, &[0, 1, 2]),
                // Depth 2 from 10 puts the fork at 8, below the new head at 9.
                ann(0, "c9", 9)
                    .depth(2)
                    .events(vec![Disagreement(9, &[(0, "c9"), (1, "a9"), (2, "a9")])]),
                ann(1, "c9", 9).depth(2),
                ann(2, "c9", 9).depth(2).accepts("c9", 9, &[0, 1, 2]),
            ],
            final_head: Some(("c9", 9, false)),
            disagreements: 1,
        },
        Scenario {
            name: "a reorg by a minority does not move the head",
            trusted: 4,
            fraction: 75,
            steps: vec![
                ann(0, "a10", 10),
                ann(1, "a10", 10),
                ann(2, "a10", 10).accepts("a10", 10, &[0, 1, 2]),
                ann(3, "a10", 10),
                ann(0, "b10", 10).depth(1).events(vec![Disagreement(
                    10,
                    &[(0, "b10"), (1, "a10"), (2, "a10"), (3, "a10")],
                )]),
            ],
            final_head: Some(("a10", 10, false)),
            disagreements: 1,
        },
        Scenario {
            name: "reorg to a longer branch prunes the abandoned branch's votes",
            trusted: 2,
            fraction: 100,
            steps: vec![
                range(0, "a", 8..=9),
                ann(1, "a8", 8).accepts("a8", 8, &[0, 1]),
                // Server 0 moves to branch b from fork 8; its vote for a9 must vanish.
                ann(0, "b10", 10).depth(1),
                ann(1, "a9", 9),
                // Server 0 holds nothing at 9 any more, so no disagreement either.
                ann(1, "b9", 9).depth(1),
                ann(1, "b10", 10).accepts("b10", 10, &[0, 1]),
            ],
            final_head: Some(("b10", 10, false)),
            disagreements: 0,
        },
        Scenario {
            name: "a dropped server's lost vote does not move the head back",
            trusted: 4,
            fraction: 75,
            steps: vec![
                range(0, "a", 9..=10),
                range(1, "a", 9..=10),
                ann(2, "a9", 9).accepts("a9", 9, &[0, 1, 2]),
                ann(3, "a9", 9),
                ann(2, "a10", 10).accepts("a10", 10, &[0, 1, 2]),
                // a10 keeps 2 of 4 votes, a9 keeps 3 of 4, but nobody left a10's chain.
                ann(0, "x8", 8).events(vec![Dropped(0, Why::Backwards)]),
                ann(0, "a11", 11).expect(Expect::DroppedServer),
            ],
            final_head: Some(("a10", 10, false)),
            disagreements: 0,
        },
        Scenario {
            name: "reconnect (reset) does not move the head back",
            trusted: 4,
            fraction: 75,
            steps: vec![
                range(0, "a", 9..=10),
                range(1, "a", 9..=10),
                ann(2, "a9", 9).accepts("a9", 9, &[0, 1, 2]),
                ann(3, "a9", 9),
                ann(2, "a10", 10).accepts("a10", 10, &[0, 1, 2]),
                reset(0),
                ann(0, "a10", 10),
            ],
            final_head: Some(("a10", 10, false)),
            disagreements: 0,
        },
        Scenario {
            name: "equivocation without reorg depth drops the server and discards its votes",
            trusted: 3,
            fraction: 50,
            steps: vec![
                ann(0, "a10", 10).events(vec![]),
                ann(0, "b10", 10).events(vec![Dropped(0, Why::Backwards)]),
                ann(0, "c11", 11).expect(Expect::DroppedServer),
                // 1 of 3 is 33% < 50%: server 0's a10 no longer helps.
                ann(1, "a10", 10),
                ann(2, "a10", 10).accepts("a10", 10, &[1, 2]),
            ],
            final_head: Some(("a10", 10, false)),
            disagreements: 0,
        },
        Scenario {
            name: "equivocation with reorg depth replaces the server's vote",
            trusted: 3,
            fraction: 50,
            steps: vec![
                ann(0, "a10", 10),
                ann(0, "b10", 10).depth(1),
                ann(1, "a10", 10).events(vec![Disagreement(10, &[(0, "b10"), (1, "a10")])]),
                ann(2, "b10", 10).accepts("b10", 10, &[0, 2]),
            ],
            final_head: Some(("b10", 10, false)),
            disagreements: 1,
        },
        Scenario {
            name: "a dropped server is re-admitted after reset",
            trusted: 2,
            fraction: 100,
            steps: vec![
                ann(0, "a10", 10),
                ann(0, "a9", 9).events(vec![Dropped(0, Why::Backwards)]),
                ann(1, "a9", 9),
                ann(0, "a9", 9).expect(Expect::DroppedServer),
                reset(0),
                ann(0, "a9", 9).accepts("a9", 9, &[0, 1]),
            ],
            final_head: Some(("a9", 9, false)),
            disagreements: 0,
        },
        Scenario {
            name: "replayed signatures are refused and change nothing",
            trusted: 3,
            fraction: 67,
            steps: vec![
                ann(0, "a10", 10),
                // Server 0's genuine signature, but over a10.
                ann(0, "b11", 11)
                    .sig(Sig::ReplayOf(H { label: "a10", number: 10, td_below_ttd: 0 }))
                    .expect(Expect::BadSignature),
                // Server 1's genuine signature over b11, relayed as server 0's.
                ann(0, "b11", 11).sig(Sig::By(Who::Trusted(1))).expect(Expect::BadSignature),
                ann(1, "a10", 10),
                ann(2, "a10", 10).accepts("a10", 10, &[0, 1, 2]),
                ann(1, "b11", 11),
                ann(2, "b11", 11),
                ann(0, "b11", 11).accepts("b11", 11, &[0, 1, 2]),
            ],
            final_head: Some(("b11", 11, false)),
            disagreements: 0,
        },
        Scenario {
            name: "forged and malformed signatures are refused",
            trusted: 3,
            fraction: 67,
            steps: vec![
                ann(1, "a10", 10),
                ann(2, "a10", 10),
                ann(0, "a10", 10).sig(Sig::By(Who::Untrusted(9))).expect(Expect::BadSignature),
                ann(0, "a10", 10).sig(Sig::HighS).expect(Expect::BadSignature),
                ann(0, "a10", 10).sig(Sig::V27).expect(Expect::BadSignature),
                ann(0, "a10", 10).sig(Sig::Garbage).expect(Expect::BadSignature),
            ],
            final_head: None,
            disagreements: 0,
        },
        Scenario {
            name: "an unknown signer is ignored",
            trusted: 1,
            fraction: 100,
            steps: vec![announce(Who::Untrusted(7), "a10", 10).expect(Expect::Untrusted)],
            final_head: None,
            disagreements: 0,
        },
        Scenario {
            name: "an untrusted server cannot complete a quorum",
            trusted: 3,
            fraction: 67,
            steps: vec![
                ann(0, "a10", 10),
                ann(1, "a10", 10),
                announce(Who::Untrusted(1), "a10", 10).expect(Expect::Untrusted),
                announce(Who::Untrusted(1), "z99", 99).expect(Expect::Untrusted),
                ann(2, "a10", 10).accepts("a10", 10, &[0, 1, 2]),
            ],
            final_head: Some(("a10", 10, false)),
            disagreements: 0,
        },
        Scenario {
            name: "TD decrease drops the server",
            trusted: 2,
            fraction: 100,
            steps: vec![
                ann(0, "a10", 10),
                ann(0, "a11", 11).td_below_ttd(1).events(vec![Dropped(0, Why::Td)]),
                ann(1, "a10", 10),
                ann(0, "a12", 12).expect(Expect::DroppedServer),
            ],
            final_head: None,
            disagreements: 0,
        },
        Scenario {
            name: "a hash announced again at another number drops the server",
            trusted: 1,
            fraction: 100,
            steps: vec![
                ann(0, "a10", 10).accepts("a10", 10, &[0]),
                ann(0, "a10", 11).events(vec![Dropped(0, Why::Inconsistent)]),
            ],
            final_head: Some(("a10", 10, false)),
            disagreements: 0,
        },
        Scenario {
            name: "an exact duplicate is ignored and not counted twice",
            trusted: 2,
            fraction: 100,
            steps: vec![ann(0, "a10", 10), ann(0, "a10", 10), ann(0, "a10", 10)],
            final_head: None,
            disagreements: 0,
        },
        Scenario {
            name: "FIFO keeps exactly the last 64 announcements",
            trusted: 2,
            fraction: 100,
            steps: vec![
                range(0, "c", 1..=70),
                // 70 - 64 = 6 entries (c1..c6) were evicted.
                ann(1, "c6", 6),
                ann(1, "c7", 7).accepts("c7", 7, &[0, 1]),
                ann(1, "c70", 70).accepts("c70", 70, &[0, 1]),
            ],
            final_head: Some(("c70", 70, false)),
            disagreements: 0,
        },
        Scenario {
            name: "disagreement is reported once per height and does not block later heads",
            trusted: 3,
            fraction: 67,
            steps: vec![
                ann(0, "a10", 10),
                ann(1, "b10", 10).events(vec![Disagreement(10, &[(0, "a10"), (1, "b10")])]),
                ann(2, "c10", 10),
                ann(0, "d11", 11),
                ann(1, "d11", 11),
                ann(2, "d11", 11).accepts("d11", 11, &[0, 1, 2]),
            ],
            final_head: Some(("d11", 11, false)),
            disagreements: 1,
        },
        Scenario {
            name: "two quorum-backed heads at the top height (fraction 50) keep the head",
            trusted: 2,
            fraction: 50,
            steps: vec![
                ann(0, "a10", 10).accepts("a10", 10, &[0]),
                ann(1, "b10", 10).events(vec![Disagreement(10, &[(0, "a10"), (1, "b10")])]),
            ],
            final_head: Some(("a10", 10, false)),
            disagreements: 1,
        },
        Scenario {
            name: "warm start: restored head is stale until a fresh quorum confirms it",
            trusted: 3,
            fraction: 67,
            steps: vec![
                Step::Restore {
                    head: H { label: "a10", number: 10, td_below_ttd: 0 },
                    signers: &[0, 1, 2],
                },
                ann(0, "a10", 10),
                ann(1, "a10", 10),
                ann(2, "a10", 10).accepts("a10", 10, &[0, 1, 2]),
            ],
            final_head: Some(("a10", 10, false)),
            disagreements: 0,
        },
        Scenario {
            name: "warm start: no fresh quorum keeps the stale head",
            trusted: 3,
            fraction: 67,
            steps: vec![
                Step::Restore {
                    head: H { label: "a10", number: 10, td_below_ttd: 0 },
                    signers: &[2, 0, 1],
                },
                ann(0, "a11", 11),
                ann(1, "a11", 11),
            ],
            final_head: Some(("a10", 10, true)),
            disagreements: 0,
        },
        Scenario {
            name: "warm start: a fresh quorum on a lower head replaces the stale one",
            trusted: 3,
            fraction: 67,
            steps: vec![
                Step::Restore {
                    head: H { label: "a10", number: 10, td_below_ttd: 0 },
                    signers: &[0, 1, 2],
                },
                ann(0, "c9", 9),
                ann(1, "c9", 9),
                ann(2, "c9", 9).accepts("c9", 9, &[0, 1, 2]),
            ],
            final_head: Some(("c9", 9, false)),
            disagreements: 0,
        },
    ]
}

/// What an event looks like with indices and labels resolved, for comparison.
#[derive(Debug, PartialEq)]
enum Seen {
    Accepted { head: AnnouncedHead, backers: Vec<NodeId> },
    Dropped { server: NodeId, why: Why },
    Disagreement { number: u64, heads: Vec<(NodeId, B256)> },
}

fn resolve(expected: &Ev) -> Seen {
    match expected {
        Ev::Accepted(label, number, backers) => {
            let mut backers: Vec<NodeId> =
                backers.iter().map(|&i| trusted_key(i).node_id()).collect();
            backers.sort();
            Seen::Accepted { head: head_of(label, *number, 0), backers }
        }
        Ev::Dropped(server, why) => {
            Seen::Dropped { server: trusted_key(*server).node_id(), why: *why }
        }
        Ev::Disagreement(number, heads) => {
            let mut heads: Vec<(NodeId, B256)> = heads
                .iter()
                .map(|&(i, label)| (trusted_key(i).node_id(), keccak256(label.as_bytes())))
                .collect();
            heads.sort();
            Seen::Disagreement { number: *number, heads }
        }
    }
}

fn observe(event: &UlcEvent, config: &UlcConfig) -> Seen {
    match event {
        UlcEvent::HeadAccepted { head, evidence } => {
            // The evidence must stand on its own: distinct trusted signers, each signature
            // valid for exactly this head, enough of them.
            for (server, announcement) in evidence {
                assert!(config.is_trusted(server));
                assert_eq!(announcement.head, *head);
                assert_eq!(announcement.verify(server), Ok(()));
            }
            let backers: Vec<NodeId> = evidence.iter().map(|(server, _)| *server).collect();
            assert!(backers.windows(2).all(|pair| pair[0] < pair[1]), "evidence sorted, distinct");
            assert!(config.is_quorum(backers.len()));
            Seen::Accepted { head: *head, backers }
        }
        UlcEvent::ServerDropped { server, reason } => Seen::Dropped {
            server: *server,
            why: match reason {
                DropReason::TdDecreased { .. } => Why::Td,
                DropReason::InconsistentHash { .. } => Why::Inconsistent,
                DropReason::BackwardsWithoutReorg { .. } => Why::Backwards,
            },
        },
        UlcEvent::Disagreement { number, heads } => {
            Seen::Disagreement { number: *number, heads: heads.clone() }
        }
    }
}

fn signature_for(from: Who, head: &AnnouncedHead, sig: Sig) -> RecoverableSignature {
    let own = head.sign(&from.key());
    match sig {
        Sig::Own => own,
        Sig::ReplayOf(other) => other.head().sign(&from.key()),
        Sig::By(signer) => head.sign(&signer.key()),
        Sig::HighS => {
            let order = U256::from_str_radix(
                "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
                16,
            )
            .unwrap();
            let s = U256::from_be_slice(&own[32..64]);
            let mut high = own;
            high[32..64].copy_from_slice(&(order - s).to_be_bytes::<32>());
            high[64] ^= 1;
            high
        }
        Sig::V27 => {
            let mut bad = own;
            bad[64] = 27;
            bad
        }
        Sig::Garbage => {
            let mut noise = [0u8; 65];
            noise[..32].copy_from_slice(keccak256(b"noise r").as_slice());
            noise[32..64].copy_from_slice(keccak256(b"noise s").as_slice());
            noise
        }
    }
}

fn run(scenario: &Scenario) {
    let name = scenario.name;
    let config =
        UlcConfig::new((0..scenario.trusted).map(|i| trusted_key(i).node_id()), scenario.fraction)
            .unwrap();
    let mut ulc = Ulc::new(config.clone());
    for (index, step) in scenario.steps.iter().enumerate() {
        let at = format!("{name}: step {index} {step:?}");
        match step {
            Step::Announce { from, head, sig, depth, expect } => {
                let head = head.head();
                let id = from.key().node_id();
                let signature = signature_for(*from, &head, *sig);
                let before = ulc.accepted_head().cloned();
                let result = ulc.on_announcement(id, head, &signature, *depth);
                match (expect, result) {
                    (Expect::Events(expected), Ok(events)) => {
                        let seen: Vec<Seen> = events.iter().map(|e| observe(e, &config)).collect();
                        let wanted: Vec<Seen> = expected.iter().map(resolve).collect();
                        assert_eq!(seen, wanted, "{at}");
                    }
                    (Expect::Untrusted, Err(UlcError::UntrustedServer { server })) => {
                        assert_eq!(server, id, "{at}");
                        assert_eq!(ulc.accepted_head(), before.as_ref(), "{at}");
                    }
                    (Expect::DroppedServer, Err(UlcError::DroppedServer { server, .. })) => {
                        assert_eq!(server, id, "{at}");
                        assert_eq!(ulc.accepted_head(), before.as_ref(), "{at}");
                    }
                    (Expect::BadSignature, Err(UlcError::BadSignature { server, .. })) => {
                        assert_eq!(server, id, "{at}");
                        assert_eq!(ulc.accepted_head(), before.as_ref(), "{at}");
                    }
                    (expect, result) => panic!("{at}: expected {expect:?}, got {result:?}"),
                }
            }
            Step::Range { server, prefix, numbers } => {
                let key = trusted_key(*server);
                for number in numbers.clone() {
                    let head = head_of(&format!("{prefix}{number}"), number, 0);
                    let result = ulc.on_announcement(key.node_id(), head, &head.sign(&key), 0);
                    assert!(result.is_ok(), "{at}: {number}: {result:?}");
                }
            }
            Step::Reset { server, expect } => {
                let events = ulc.reset_server(&trusted_key(*server).node_id()).unwrap();
                let seen: Vec<Seen> = events.iter().map(|e| observe(e, &config)).collect();
                let wanted: Vec<Seen> = expect.iter().map(resolve).collect();
                assert_eq!(seen, wanted, "{at}");
            }
            Step::Restore { head, signers } => {
                let head = head.head();
                let evidence = signers
                    .iter()
                    .map(|&i| (trusted_key(i).node_id(), head.signed(&trusted_key(i))))
                    .collect();
                ulc = Ulc::restore(config.clone(), head, evidence).unwrap();
                let restored = ulc.accepted_head().unwrap();
                assert!(restored.is_stale(), "{at}");
                assert_eq!(*restored.head(), head, "{at}");
            }
        }
    }
    let final_head = ulc.accepted_head().map(|accepted| (*accepted.head(), accepted.is_stale()));
    let wanted =
        scenario.final_head.map(|(label, number, stale)| (head_of(label, number, 0), stale));
    assert_eq!(final_head, wanted, "{name}: final head");
    assert_eq!(ulc.disagreement_count(), scenario.disagreements, "{name}: disagreements");
}

#[test]
fn scenario_table() {
    let table = scenarios();
    let mut names: Vec<&str> = table.iter().map(|s| s.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), table.len(), "scenario names are unique");
    for scenario in &table {
        run(scenario);
    }
}

fn three_trusted() -> (UlcConfig, Vec<NodeKey>) {
    let keys: Vec<NodeKey> = (0..3).map(trusted_key).collect();
    (UlcConfig::new(keys.iter().map(NodeKey::node_id), 67).unwrap(), keys)
}

#[test]
fn restore_refuses_bad_evidence() {
    let (config, keys) = three_trusted();
    let head = head_of("a10", 10, 0);
    let good: Vec<(NodeId, SignedAnnouncement)> =
        keys.iter().map(|key| (key.node_id(), head.signed(key))).collect();
    assert!(Ulc::restore(config.clone(), head, good.clone()).is_ok());

    let mut tampered = good.clone();
    tampered[1].1.signature[5] ^= 1;
    assert!(matches!(
        Ulc::restore(config.clone(), head, tampered),
        Err(RestoreError::BadSignature { server, .. }) if server == keys[1].node_id()
    ));

    let mut swapped = good.clone();
    swapped[0].0 = keys[2].node_id();
    assert!(matches!(
        Ulc::restore(config.clone(), head, swapped),
        Err(RestoreError::BadSignature { .. })
    ));

    let stranger = untrusted_key(0);
    let mut untrusted = good.clone();
    untrusted[2] = (stranger.node_id(), head.signed(&stranger));
    assert!(matches!(
        Ulc::restore(config.clone(), head, untrusted),
        Err(RestoreError::UntrustedSigner { server }) if server == stranger.node_id()
    ));

    let mut duplicated = good.clone();
    duplicated[2] = duplicated[0];
    assert!(matches!(
        Ulc::restore(config.clone(), head, duplicated),
        Err(RestoreError::DuplicateSigner { .. })
    ));

    let other = head_of("b10", 10, 0);
    let mut other_head = good.clone();
    other_head[0].1 = other.signed(&keys[0]);
    assert!(matches!(
        Ulc::restore(config.clone(), head, other_head),
        Err(RestoreError::EvidenceForOtherHead { .. })
    ));

    assert!(matches!(
        Ulc::restore(config, head, good[..2].to_vec()),
        Err(RestoreError::NoQuorum { agreeing: 2, required: 3 })
    ));
}

#[test]
fn accepted_evidence_survives_persistence_and_restores() {
    let (config, keys) = three_trusted();
    let mut ulc = Ulc::new(config.clone());
    let head = head_of("a10", 10, 0);
    for key in &keys {
        ulc.on_announcement(key.node_id(), head, &head.sign(key), 0).unwrap();
    }
    let accepted = ulc.accepted_head().unwrap();
    let stored: Vec<(NodeId, Vec<u8>)> =
        accepted.evidence().iter().map(|(id, ev)| (*id, alloy_rlp::encode(ev))).collect();
    let loaded = stored
        .iter()
        .map(|(id, bytes)| (*id, alloy_rlp::decode_exact::<SignedAnnouncement>(bytes).unwrap()))
        .collect();
    let restored = Ulc::restore(config, *accepted.head(), loaded).unwrap();
    assert_eq!(restored.accepted_head().unwrap().head(), accepted.head());
    assert!(restored.accepted_head().unwrap().is_stale());
}

#[test]
fn reset_of_untrusted_server_is_an_error() {
    let (config, _) = three_trusted();
    let mut ulc = Ulc::new(config);
    let stranger = untrusted_key(3).node_id();
    assert_eq!(ulc.reset_server(&stranger), Err(UlcError::UntrustedServer { server: stranger }));
}

mod random_sequences {
    //! Arbitrary announcement sequences: the machine never panics, refused input never
    //! changes the head, every accepted head carries valid quorum evidence, and the same
    //! input always gives the same output.
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Announce { server: usize, branch: u8, number: u64, depth: u64, forged: bool },
        Reset { server: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0usize..5, 0u8..2, 1u64..12, 0u64..4, proptest::bool::weighted(0.1)).prop_map(
                |(server, branch, number, depth, forged)| Op::Announce {
                    server,
                    branch,
                    number,
                    depth,
                    forged
                }
            ),
            1 => (0usize..4).prop_map(|server| Op::Reset { server }),
        ]
    }

    /// Server index 4 is not trusted.
    fn replay(ops: &[Op], fraction: u32) -> Vec<String> {
        let config = UlcConfig::new((0..4).map(|i| trusted_key(i).node_id()), fraction).unwrap();
        let mut ulc = Ulc::new(config.clone());
        let mut log = Vec::new();
        for op in ops {
            match op {
                Op::Announce { server, branch, number, depth, forged } => {
                    let key = if *server == 4 { untrusted_key(0) } else { trusted_key(*server) };
                    let head = head_of(&format!("{branch}-{number}"), *number, 0);
                    let signer = if *forged { untrusted_key(1) } else { key.clone() };
                    let before = ulc.accepted_head().cloned();
                    let result =
                        ulc.on_announcement(key.node_id(), head, &head.sign(&signer), *depth);
                    match &result {
                        Ok(events) => {
                            for event in events {
                                observe(event, &config);
                            }
                        }
                        Err(_) => assert_eq!(ulc.accepted_head(), before.as_ref()),
                    }
                    if *server == 4 || *forged {
                        assert!(result.is_err());
                    }
                    log.push(format!("{result:?}"));
                }
                Op::Reset { server } => {
                    let events = ulc.reset_server(&trusted_key(*server).node_id()).unwrap();
                    for event in &events {
                        observe(event, &config);
                    }
                    log.push(format!("{events:?}"));
                }
            }
            if let Some(accepted) = ulc.accepted_head() {
                assert!(config.is_quorum(accepted.evidence().len()));
                for (server, announcement) in accepted.evidence() {
                    assert_eq!(announcement.head, *accepted.head());
                    assert_eq!(announcement.verify(server), Ok(()));
                }
            }
        }
        log
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn invariants_hold(ops in proptest::collection::vec(op(), 1..80), fraction in 0u32..120) {
            let first = replay(&ops, fraction);
            let second = replay(&ops, fraction);
            prop_assert_eq!(first, second);
        }
    }
}

#[test]
fn drop_reason_and_latest_announcement_follow_the_server() {
    let (config, keys) = three_trusted();
    let mut ulc = Ulc::new(config);
    let id = keys[0].node_id();
    let a10 = head_of("a10", 10, 0);
    let b9 = head_of("b9", 9, 0);
    ulc.on_announcement(id, a10, &a10.sign(&keys[0]), 0).unwrap();
    assert_eq!(ulc.latest_announcement(&id).map(|ev| ev.head), Some(a10));
    ulc.on_announcement(id, b9, &b9.sign(&keys[0]), 1).unwrap();
    assert_eq!(
        ulc.drop_reason(&id),
        Some(&DropReason::BackwardsWithoutReorg { previous: a10, announced: b9, reorg_depth: 1 })
    );
    assert_eq!(ulc.latest_announcement(&id), None);
    ulc.reset_server(&id).unwrap();
    assert_eq!(ulc.drop_reason(&id), None);
    ulc.on_announcement(id, b9, &b9.sign(&keys[0]), 0).unwrap();
    assert_eq!(ulc.latest_announcement(&id).map(|ev| ev.head), Some(b9));
}
