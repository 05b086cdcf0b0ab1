//! The serving queue: how many LES requests of all clients lesd serves at once, and who goes
//! first when more are waiting.
//!
//! Flow control bounds what each client may ask for, but not the order in which the upstream
//! node works through what they ask together. When every serving slot is busy, a request
//! waits here, and a freed slot goes to the waiting request whose client ranks highest:
//! paying clients before free ones, then larger capacity before smaller, then arrival order.
//! This is research §4.1's "paid clients get priority queueing" and the reason a paying
//! client keeps short response times while the server is busy with free clients (geth's
//! `servingQueue` orders tasks by client priority in the same way).
//!
//! The queue is also lesd's overload signal (research §1.3): a free client's request that
//! finds [`OVERLOAD_FACTOR`] × slots requests already waiting is refused with
//! [`Overloaded`]; the driver then freezes that client (StopMsg, its request dropped) and
//! the client pool lowers the total capacity, which recovers while no overload happens.
//! Paying clients' requests always wait: their flow control bounds them.
//!
//! [`ServingOrder`] is the ordering alone (no I/O, no clock); [`ServingQueue`] hands out
//! [`Permit`]s with it across tasks. A permit frees its slot when dropped, also when the
//! request it was waiting for is abandoned (its client disconnected).

use prometheus_client::metrics::counter::Counter;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Waiting requests per serving slot beyond which the server counts as overloaded.
pub const OVERLOAD_FACTOR: usize = 64;

/// A free client's request refused because the queue is overloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("serving queue overloaded: {waiting} requests waiting for {slots} slots")]
pub struct Overloaded {
    /// Requests waiting.
    pub waiting: usize,
    /// Serving slots.
    pub slots: usize,
}

/// What became of an arriving request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// It took a free slot at once.
    Slot,
    /// It waits for its turn.
    Waits,
    /// Refused: see [`Overloaded`].
    Overloaded(Overloaded),
}

/// Where a client's requests stand in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Rank {
    /// The client holds a positive paid balance.
    pub paid: bool,
    /// Its capacity (what it bought, or the free minimum).
    pub capacity: u64,
}

impl Rank {
    /// The rank of a client of `class` at `capacity`.
    pub fn new(paid: bool, capacity: u64) -> Self {
        Self { paid, capacity }
    }

    /// The label of the class, for metrics.
    pub fn class(self) -> &'static str {
        if self.paid { "paid" } else { "free" }
    }
}

/// One waiting request: ordered by rank, then earlier arrival first.
#[derive(Debug)]
struct Waiting<T> {
    rank: Rank,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Waiting<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T> Eq for Waiting<T> {}

impl<T> PartialOrd for Waiting<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Waiting<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap pops the greatest: the higher rank, and of equal ranks the lower seq.
        self.rank.cmp(&other.rank).then_with(|| other.seq.cmp(&self.seq))
    }
}

/// `slots` slots and the requests waiting for one, in serving order.
#[derive(Debug)]
pub struct ServingOrder<T> {
    slots: usize,
    busy: usize,
    next_seq: u64,
    waiting: BinaryHeap<Waiting<T>>,
    /// Of `waiting`, the requests of free clients.
    waiting_free: usize,
}

/// A slot handed to a waiting request.
#[derive(Debug, PartialEq, Eq)]
pub struct Grant<T> {
    /// Its client's rank.
    pub rank: Rank,
    /// What waited.
    pub item: T,
    /// It was a paying client's request and free clients' requests were waiting: the
    /// priority at work, seen from outside.
    pub ahead_of_free: bool,
}

impl<T> ServingOrder<T> {
    /// `slots` requests at once (at least one).
    pub fn new(slots: usize) -> Self {
        Self {
            slots: slots.max(1),
            busy: 0,
            next_seq: 0,
            waiting: BinaryHeap::new(),
            waiting_free: 0,
        }
    }

    /// A request of a client at `rank` arrives. When it waits, `item` comes back from
    /// [`Self::release`] at its turn; otherwise `item` is dropped. `is_live` tells waiting
    /// items whose request is still wanted: before a free request is refused as an overload,
    /// the abandoned ones (their clients left) are removed, so they cannot cause one.
    pub fn arrive(&mut self, rank: Rank, item: T, is_live: impl Fn(&T) -> bool) -> Arrival {
        if self.busy < self.slots && self.waiting.is_empty() {
            self.busy += 1;
            return Arrival::Slot;
        }
        let limit = self.slots.saturating_mul(OVERLOAD_FACTOR);
        if !rank.paid && self.waiting.len() >= limit {
            self.waiting.retain(|w| is_live(&w.item));
            self.waiting_free = self.waiting.iter().filter(|w| !w.rank.paid).count();
            let waiting = self.waiting.len();
            if waiting >= limit {
                return Arrival::Overloaded(Overloaded { waiting, slots: self.slots });
            }
            if self.busy < self.slots && self.waiting.is_empty() {
                self.busy += 1;
                return Arrival::Slot;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.waiting.push(Waiting { rank, seq, item });
        if !rank.paid {
            self.waiting_free += 1;
        }
        Arrival::Waits
    }

    /// A slot was freed: the next waiting request, which now holds it, or `None` (the slot
    /// is free).
    pub fn release(&mut self) -> Option<Grant<T>> {
        match self.waiting.pop() {
            Some(next) => {
                if !next.rank.paid {
                    self.waiting_free -= 1;
                }
                let ahead_of_free = next.rank.paid && self.waiting_free > 0;
                Some(Grant { rank: next.rank, item: next.item, ahead_of_free })
            }
            None => {
                self.busy = self.busy.saturating_sub(1);
                None
            }
        }
    }

    /// Requests being served.
    pub fn busy(&self) -> usize {
        self.busy
    }

    /// Requests waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// The queue shared by every client task.
#[derive(Debug, Clone)]
pub struct ServingQueue {
    order: Arc<Mutex<ServingOrder<oneshot::Sender<Permit>>>>,
    /// Grants with [`Grant::ahead_of_free`] (a metric's counter).
    paid_ahead: Counter,
}

/// A request's place: its slot now, or a wait for it.
#[derive(Debug)]
pub enum Turn {
    /// A slot was free.
    Now(Permit),
    /// It waits in the queue.
    Waits(oneshot::Receiver<Permit>),
}

impl Turn {
    /// Whether the request had to wait.
    pub fn waits(&self) -> bool {
        matches!(self, Turn::Waits(_))
    }

    /// The slot, once it is this request's turn.
    pub async fn slot(self) -> Permit {
        match self {
            Turn::Now(permit) => permit,
            Turn::Waits(rx) => match rx.await {
                Ok(permit) => permit,
                // Only a waiter pruned as abandoned loses its sender, and that one's request
                // is no longer awaited: no slot to hold.
                Err(_) => Permit { queue: None },
            },
        }
    }
}

/// A serving slot, held while a request is served; dropping it passes the slot on.
#[derive(Debug)]
pub struct Permit {
    queue: Option<ServingQueue>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            queue.release();
        }
    }
}

impl ServingQueue {
    /// A queue of `slots` serving slots, counting in `paid_ahead` the slots that went to a
    /// paying client's request while free ones waited.
    pub fn new(slots: usize, paid_ahead: Counter) -> Self {
        Self { order: Arc::new(Mutex::new(ServingOrder::new(slots))), paid_ahead }
    }

    fn lock(&self) -> MutexGuard<'_, ServingOrder<oneshot::Sender<Permit>>> {
        // A panic while holding this lock leaves the order consistent (every operation is a
        // single heap step), so a poisoned lock is still usable.
        self.order.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A request of a client at `rank` arrives: decided at once whether it is refused as an
    /// overload (`Err`, only free clients' requests), else a [`Turn`] that resolves to its
    /// slot.
    pub fn arrive(&self, rank: Rank) -> Result<Turn, Overloaded> {
        let (tx, rx) = oneshot::channel();
        let arrival = self.lock().arrive(rank, tx, |tx| !tx.is_closed());
        match arrival {
            Arrival::Slot => Ok(Turn::Now(Permit { queue: Some(self.clone()) })),
            Arrival::Overloaded(overloaded) => Err(overloaded),
            Arrival::Waits => Ok(Turn::Waits(rx)),
        }
    }

    /// (being served, waiting).
    pub fn load(&self) -> (usize, usize) {
        let order = self.lock();
        (order.busy(), order.waiting())
    }

    fn release(&self) {
        loop {
            let next = self.lock().release();
            let Some(grant) = next else { return };
            // Sent outside the lock: a waiter that has gone returns the permit, whose slot
            // then goes to the next one (without running Drop, which would release twice).
            match grant.item.send(Permit { queue: Some(self.clone()) }) {
                Ok(()) => {
                    if grant.ahead_of_free {
                        self.paid_ahead.inc();
                    }
                    return;
                }
                Err(mut unused) => {
                    unused.queue = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn live<T>(_: &T) -> bool {
        true
    }

    const FREE: Rank = Rank { paid: false, capacity: 16_000 };
    const PAID: Rank = Rank { paid: true, capacity: 64_000 };

    #[test]
    fn free_slots_are_taken_at_once_then_requests_wait() {
        let mut order = ServingOrder::new(2);
        assert_eq!(Arrival::Slot, order.arrive(FREE, 1, live));
        assert_eq!(Arrival::Slot, order.arrive(FREE, 2, live));
        assert_eq!(Arrival::Waits, order.arrive(FREE, 3, live));
        assert_eq!((order.busy(), order.waiting()), (2, 1));
        assert_eq!(order.release(), Some(Grant { rank: FREE, item: 3, ahead_of_free: false }));
        assert_eq!((order.busy(), order.waiting()), (2, 0));
        assert_eq!(order.release(), None);
        assert_eq!((order.busy(), order.waiting()), (1, 0));
    }

    #[test]
    fn a_freed_slot_goes_to_the_highest_rank_then_the_earliest() {
        let mut order = ServingOrder::new(1);
        assert_eq!(Arrival::Slot, order.arrive(FREE, "busy", live));
        order.arrive(FREE, "free-1", live);
        order.arrive(Rank { paid: false, capacity: 32_000 }, "free-big", live);
        order.arrive(FREE, "free-2", live);
        order.arrive(PAID, "paid-1", live);
        order.arrive(Rank { paid: true, capacity: 16_000 }, "paid-small", live);
        order.arrive(PAID, "paid-2", live);
        let served: Vec<_> =
            std::iter::from_fn(|| order.release().map(|g| (g.item, g.ahead_of_free))).collect();
        assert_eq!(
            served,
            [
                ("paid-1", true),
                ("paid-2", true),
                ("paid-small", true),
                ("free-big", false),
                ("free-1", false),
                ("free-2", false)
            ]
        );
        assert_eq!((order.busy(), order.waiting()), (0, 0), "the last release freed the slot");
    }

    #[test]
    fn a_slot_handed_on_stays_busy_and_newcomers_queue_by_rank() {
        let mut order = ServingOrder::new(2);
        assert_eq!(Arrival::Slot, order.arrive(FREE, 0, live));
        assert_eq!(Arrival::Slot, order.arrive(FREE, 1, live));
        assert_eq!(Arrival::Waits, order.arrive(FREE, 2, live));
        assert_eq!(Arrival::Waits, order.arrive(PAID, 3, live));
        assert_eq!(order.release(), Some(Grant { rank: PAID, item: 3, ahead_of_free: true }));
        assert_eq!(order.busy(), 2);
        assert_eq!(
            Arrival::Waits,
            order.arrive(PAID, 4, live),
            "queues behind the waiting request, not beside it"
        );
        assert_eq!(order.release(), Some(Grant { rank: PAID, item: 4, ahead_of_free: true }));
        assert_eq!(order.release(), Some(Grant { rank: FREE, item: 2, ahead_of_free: false }));
        assert_eq!(order.release(), None);
        assert_eq!(Arrival::Slot, order.arrive(PAID, 5, live), "the freed slot");
        assert_eq!(Arrival::Waits, order.arrive(PAID, 6, live));
        assert_eq!(order.release().map(|g| g.ahead_of_free), Some(false), "no free one waits");
    }

    #[test]
    fn a_full_queue_refuses_free_requests_and_keeps_taking_paid_ones() {
        let mut order = ServingOrder::new(2);
        assert_eq!(order.arrive(FREE, 0, live), Arrival::Slot);
        assert_eq!(order.arrive(FREE, 1, live), Arrival::Slot);
        for i in 0..2 * OVERLOAD_FACTOR {
            assert_eq!(order.arrive(FREE, i + 2, live), Arrival::Waits);
        }
        let limit = 2 * OVERLOAD_FACTOR;
        assert_eq!(
            order.arrive(FREE, 99, live),
            Arrival::Overloaded(Overloaded { waiting: limit, slots: 2 })
        );
        assert_eq!(order.arrive(PAID, 100, live), Arrival::Waits, "paid requests always wait");
        assert_eq!(order.waiting(), limit + 1);
        // Once the queue drains below the limit, free requests wait again.
        order.release();
        order.release();
        assert_eq!(order.arrive(FREE, 101, live), Arrival::Waits);
    }

    #[test]
    fn abandoned_waiters_are_pruned_before_an_overload_is_declared() {
        let mut order = ServingOrder::new(1);
        assert_eq!(order.arrive(FREE, 0, live), Arrival::Slot);
        for i in 1..=OVERLOAD_FACTOR {
            assert_eq!(order.arrive(FREE, i, live), Arrival::Waits);
        }
        // Every odd one's client has gone: half the queue is dead weight, no overload.
        let wanted = |i: &usize| i.is_multiple_of(2);
        assert_eq!(order.arrive(FREE, 1000, wanted), Arrival::Waits);
        assert_eq!(order.waiting(), OVERLOAD_FACTOR / 2 + 1);
        let served: Vec<usize> = std::iter::from_fn(|| order.release().map(|g| g.item)).collect();
        assert!(served.iter().all(|i| i.is_multiple_of(2)), "{served:?}");
        assert_eq!(order.busy(), 0);
    }

    #[tokio::test]
    async fn permits_pass_slots_in_rank_order_and_abandoned_waiters_lose_nothing() {
        let paid_ahead = Counter::default();
        let queue = ServingQueue::new(1, paid_ahead.clone());
        let first = queue.arrive(FREE).expect("a free slot").slot().await;
        let (served_tx, mut served_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (name, rank) in [("free", FREE), ("gone", PAID), ("paid", PAID)] {
            let (queue, served_tx) = (queue.clone(), served_tx.clone());
            tasks.push(tokio::spawn(async move {
                let permit = queue.arrive(rank).expect("not overloaded").slot().await;
                let _ = served_tx.send(name);
                drop(permit);
            }));
            // Arrival order as listed.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(queue.load(), (1, 3));
        // The first paid waiter gives up (its client went away) before its turn.
        tasks[1].abort();
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
        let mut order = Vec::new();
        for _ in 0..2 {
            let next = tokio::time::timeout(Duration::from_secs(5), served_rx.recv()).await;
            order.push(next.ok().flatten());
        }
        assert_eq!(order, [Some("paid"), Some("free")]);
        for task in tasks {
            let _ = task.await;
        }
        assert_eq!(queue.load(), (0, 0), "every slot came back");
        assert_eq!(paid_ahead.get(), 1, "the paid request went ahead of the free one");
    }
}
