//! What the client core needs from its environment besides sockets and storage: a monotonic
//! clock, wall-clock time, timers and a way to run tasks. The browser gives these through
//! `performance.now`, `setTimeout` and `spawn_local`; native tests through tokio's
//! current-thread runtime. The core is single-threaded in both (`Rc`, no `Send`).

use futures_util::future::LocalBoxFuture;
use les::time::Timestamp;
use std::time::Duration;

/// The environment the client core runs in.
pub trait Runtime: Clone + 'static {
    /// Monotonic time, for the LES session and for latency figures.
    fn now(&self) -> Timestamp;
    /// Milliseconds since the Unix epoch, for head age and install time.
    fn unix_millis(&self) -> u64;
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> LocalBoxFuture<'static, ()>;
    /// Runs `task` concurrently on the current thread.
    fn spawn(&self, task: LocalBoxFuture<'static, ()>);
}
