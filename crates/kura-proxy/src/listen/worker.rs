//! Worker threads run in one of two modes (`server.work_stealing`):
//!
//! - work stealing (default): one tokio multi-thread runtime; an idle worker takes tasks from a
//!   busy one, which keeps tail latency low when the cores are shared with other busy
//!   processes (measured here: p99 4–5 ms where thread-per-core had 30+ ms).
//! - thread-per-core: one single-threaded runtime per worker thread (as nginx workers or
//!   Envoy), each accepting on its own `SO_REUSEPORT` socket; a connection, its requests and
//!   their upstream connections stay on one thread, with no cross-thread wakeups. Cheaper per
//!   request (measured here: ~5 µs of CPU less per proxied request) on cores kura has alone.
//!
//! Each thread has a slot number; per-backend idle connection stacks are per slot, so a
//! per-core worker reuses the upstream connections whose tasks run on its own thread. All
//! work-stealing workers share slot 1; slot 0 is the control runtime (admin, health checks).

use std::cell::Cell;

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// The current thread's slot: 1..=workers on worker threads, 0 elsewhere.
pub fn slot() -> usize {
    SLOT.with(Cell::get)
}

pub(crate) fn set_slot(slot: usize) {
    SLOT.with(|s| s.set(slot));
}
