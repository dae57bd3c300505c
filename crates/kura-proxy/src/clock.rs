//! A monotonic millisecond clock for deadlines kept in atomics (dead marks, idle times).
//! `Instant` cannot live in an `AtomicU64`; milliseconds since a process-wide epoch can.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since the process epoch; never 0, so 0 can mean "unset".
pub fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

pub fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}
