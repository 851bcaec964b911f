//! Wall-clock time, injectable so tests can freeze it.
//!
//! Everything wif-helper stores or compares is Unix seconds in UTC: expiry
//! times from AWS and Google are parsed as UTC and never as local time (the
//! Python original's bug), so `TZ` cannot move an expiry.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch, UTC.
    fn now_unix(&self) -> i64;

    /// The same instant as a `SystemTime` (for signing), whole seconds.
    fn now_system(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(self.now_unix()).unwrap_or(0))
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place that reads the wall clock
    fn now_unix(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            // A clock before 1970 is broken; treat it as the epoch so every
            // cached entry looks fresh-or-stale by its own numbers, never panic.
            Err(_) => 0,
        }
    }
}

/// A clock frozen at one instant (tests).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now_unix(&self) -> i64 {
        self.0
    }
}
