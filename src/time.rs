//! Caller-supplied time.
//!
//! The table never reads a clock. Every operation that needs the time takes a [`Timestamp`] from the
//! caller: a pipeline replays the packets' own timestamps, a live dataplane passes a monotonic clock
//! reading (see [`MonotonicClock`]), and tests pass a virtual clock.
#![forbid(unsafe_code)]

use std::fmt;
use std::time::{Duration, Instant};

/// A point in time, in nanoseconds since an epoch of the caller's choosing.
///
/// Only differences matter to the table, so any epoch works (the Unix epoch for packet timestamps,
/// the start of the process for a [`MonotonicClock`]). Arithmetic saturates: a timestamp never wraps.
///
/// # Examples
///
/// ```
/// use flowtable::Timestamp;
/// use std::time::Duration;
///
/// let t = Timestamp::from_secs(10);
/// assert_eq!(t + Duration::from_millis(500), Timestamp::from_millis(10_500));
/// assert_eq!(Timestamp::from_micros(1_619_605_821_437_184).as_nanos(), 1_619_605_821_437_184_000);
/// ```
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The earliest timestamp.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The latest timestamp; a flow whose deadline is `MAX` never expires.
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// A timestamp `ns` nanoseconds after the epoch.
    pub const fn from_nanos(ns: u64) -> Self {
        Timestamp(ns)
    }
    /// A timestamp `us` microseconds after the epoch (saturating).
    pub const fn from_micros(us: u64) -> Self {
        Timestamp(us.saturating_mul(1_000))
    }
    /// A timestamp `ms` milliseconds after the epoch (saturating).
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms.saturating_mul(1_000_000))
    }
    /// A timestamp `s` seconds after the epoch (saturating).
    pub const fn from_secs(s: u64) -> Self {
        Timestamp(s.saturating_mul(1_000_000_000))
    }
    /// A packet timestamp as capture files store it: seconds and nanoseconds since the Unix epoch.
    pub const fn from_secs_nanos(secs: u64, nanos: u32) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos as u64))
    }
    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    /// `self + d`, saturating at [`Timestamp::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(duration_nanos(d)))
    }
    /// `self - d`, saturating at [`Timestamp::ZERO`].
    pub fn saturating_sub(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_sub(duration_nanos(d)))
    }
    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        self.saturating_sub(d)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}.{:09})", self.0 / 1_000_000_000, self.0 % 1_000_000_000)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.0 / 1_000_000_000, self.0 % 1_000_000_000)
    }
}

/// A helper that turns [`Instant`] readings into [`Timestamp`]s, for live traffic.
///
/// The table itself never calls this: the caller reads the clock once per batch of packets and
/// passes the value in.
///
/// # Examples
///
/// ```
/// use flowtable::MonotonicClock;
///
/// let clock = MonotonicClock::new();
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b >= a);
/// ```
#[derive(Copy, Clone, Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose epoch is the moment of this call (a timestamp of zero).
    pub fn new() -> Self {
        MonotonicClock { origin: Instant::now() }
    }
    /// The current time as a [`Timestamp`].
    pub fn now(&self) -> Timestamp {
        self.at(Instant::now())
    }
    /// The [`Timestamp`] of an `Instant` taken elsewhere (for example when a batch was received).
    pub fn at(&self, instant: Instant) -> Timestamp {
        Timestamp(duration_nanos(instant.saturating_duration_since(self.origin)))
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Timestamp::MAX + Duration::from_secs(1), Timestamp::MAX);
        assert_eq!(Timestamp::ZERO - Duration::from_secs(1), Timestamp::ZERO);
        assert_eq!(Timestamp::from_secs(1).saturating_duration_since(Timestamp::from_secs(3)), Duration::ZERO);
        assert_eq!(Timestamp::from_secs(u64::MAX), Timestamp::MAX);
    }

    #[test]
    fn display_is_epoch_seconds_with_nine_digits() {
        let t = Timestamp::from_secs_nanos(1_619_605_821, 437_184_000);
        assert_eq!(t.to_string(), "1619605821.437184000");
    }
}
