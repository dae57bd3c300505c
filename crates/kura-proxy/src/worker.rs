//! Worker threads: kura serves with one single-threaded tokio runtime per worker thread
//! (thread-per-core, as nginx workers or Envoy), each accepting on its own `SO_REUSEPORT`
//! socket. A connection, its requests and the upstream connections they use stay on one
//! thread: no work stealing and no cross-thread wakeups on the request path. Measured here,
//! tokio's work-stealing runtime cost ~5 µs of CPU per proxied request more than this.
//!
//! Each worker has a slot number; per-backend idle connection stacks are per slot, so a
//! worker reuses the upstream connections whose tasks run on its own thread. Slot 0 is the
//! control runtime (admin, health checks, reloads).

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
