//! The one place that reads the clock. Protocol cores take `now: Instant`
//! as an argument; drivers get it from here.

pub use std::time::{Duration, Instant};

/// The monotonic time now. Drivers call this; cores never do.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}

/// Wall-clock time, for RTCP NTP timestamps, SIP Date headers and records.
#[allow(clippy::disallowed_methods)]
pub fn wall_now() -> std::time::SystemTime {
    std::time::SystemTime::now()
}
