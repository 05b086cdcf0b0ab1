//! [`WebRuntime`]: the browser's clock, timers and task spawner as a [`Runtime`] for the
//! client core, on a page's main thread or in a worker.
//!
//! It also measures how much main-thread time the client spends: every task it spawns (and
//! every future the bindings wrap with [`WebRuntime::timed`]) adds the time spent inside its
//! `poll` to one counter, which `metrics()` reports as CPU milliseconds. Waiting for the
//! network costs nothing there, only the work done when woken.

use crate::runtime::Runtime;
use futures_util::future::LocalBoxFuture;
use les::time::Timestamp;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;
use wasm_bindgen::JsCast;

/// Browsers run a `setTimeout` longer than 2^31-1 ms at once; longer sleeps are cut to that.
const MAX_TIMEOUT_MS: u64 = i32::MAX as u64;

/// The browser environment of the client core; see the module documentation.
#[derive(Clone)]
pub struct WebRuntime {
    /// `performance` of the current global (window or worker), if it has one.
    performance: Option<web_sys::Performance>,
    cpu: Rc<CpuMeter>,
}

/// Main-thread time spent inside the client's futures.
#[derive(Default)]
struct CpuMeter {
    /// Milliseconds, summed.
    total_ms: Cell<f64>,
    /// How many timed polls are on the stack: only the outermost one counts, so a timed
    /// future polled inside another is not counted twice.
    depth: Cell<u32>,
}

impl Default for WebRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl WebRuntime {
    /// The runtime of the current global scope.
    pub fn new() -> Self {
        // `performance` exists on both Window and WorkerGlobalScope; reading it as a property
        // of the global avoids caring which one we are in.
        let performance = js_sys::Reflect::get(&js_sys::global(), &"performance".into())
            .ok()
            .and_then(|value| value.dyn_into::<web_sys::Performance>().ok());
        Self { performance, cpu: Rc::new(CpuMeter::default()) }
    }

    /// Milliseconds on the monotonic clock (`performance.now()`; `Date.now()` without it).
    pub fn now_ms(&self) -> f64 {
        match &self.performance {
            Some(performance) => performance.now(),
            None => js_sys::Date::now(),
        }
    }

    /// Main-thread milliseconds spent inside the client's tasks and timed futures so far.
    pub fn cpu_ms(&self) -> f64 {
        self.cpu.total_ms.get()
    }

    /// Runs `f` and counts the time it takes as client CPU time.
    pub fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = self.enter();
        let out = f();
        self.leave(start);
        out
    }

    /// `future`, with the time spent in each of its polls counted as client CPU time.
    pub fn timed<F: Future>(&self, future: F) -> Timed<F> {
        Timed { inner: Box::pin(future), runtime: self.clone() }
    }

    fn enter(&self) -> Option<f64> {
        let depth = self.cpu.depth.get();
        self.cpu.depth.set(depth + 1);
        (depth == 0).then(|| self.now_ms())
    }

    fn leave(&self, start: Option<f64>) {
        self.cpu.depth.set(self.cpu.depth.get().saturating_sub(1));
        if let Some(start) = start {
            let spent = (self.now_ms() - start).max(0.0);
            self.cpu.total_ms.set(self.cpu.total_ms.get() + spent);
        }
    }
}

/// A future whose polls are timed; see [`WebRuntime::timed`].
pub struct Timed<F> {
    inner: Pin<Box<F>>,
    runtime: WebRuntime,
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let start = this.runtime.enter();
        let out = this.inner.as_mut().poll(cx);
        this.runtime.leave(start);
        out
    }
}

impl Runtime for WebRuntime {
    fn now(&self) -> Timestamp {
        // performance.now() is fractional milliseconds; keep the sub-millisecond part.
        let ms = self.now_ms().max(0.0);
        Timestamp::from_nanos((ms * 1_000_000.0) as u64)
    }

    fn unix_millis(&self) -> u64 {
        js_sys::Date::now().max(0.0) as u64
    }

    fn sleep(&self, duration: Duration) -> LocalBoxFuture<'static, ()> {
        // gloo's `sleep` panics above u32::MAX ms, and browsers fire an over-long timeout at
        // once; a clamped TimeoutFuture does neither. Round up so a sleep never ends early.
        let ms = duration.as_nanos().div_ceil(1_000_000).min(u128::from(MAX_TIMEOUT_MS)) as u32;
        Box::pin(gloo_timers::future::TimeoutFuture::new(ms))
    }

    fn spawn(&self, task: LocalBoxFuture<'static, ()>) {
        wasm_bindgen_futures::spawn_local(self.timed(task));
    }
}
