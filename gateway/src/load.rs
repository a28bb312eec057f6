//! Whether this gateway keeps up, and shedding when it does not.
//!
//! Every batch a room task delivers tells the meter how late it is: the time from the moment a gateway accepted
//! the batch's oldest message (its `ts`) to the moment its frames were handed to members' sockets. When a
//! saturated box makes that lag grow past `--shed-lag`, new sends are refused with `overloaded` until it falls
//! back: what was acknowledged is still delivered in time, and the refused senders know to send again later with
//! the same id, instead of every message being acknowledged and delivered seconds late.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::metrics;

/// A measurement older than this no longer describes the gateway (nothing was delivered since).
const FRESH_FOR: Duration = Duration::from_secs(1);

/// The delivery lag meter of one gateway.
pub struct Load {
    /// Lag over which sends are refused; zero never sheds.
    shed_over: Duration,
    started: Instant,
    /// The last measured lag, in microseconds.
    lag_us: AtomicU64,
    /// When it was measured, in milliseconds since `started`.
    measured_ms: AtomicU64,
}

impl Load {
    /// A meter that sheds sends while the lag is over `shed_over` (zero: never).
    pub fn new(shed_over: Duration) -> Self {
        Self {
            shed_over,
            started: Instant::now(),
            lag_us: AtomicU64::new(0),
            measured_ms: AtomicU64::new(0),
        }
    }

    /// Records the lag of a batch whose oldest message was accepted at `accepted_ms` (Unix milliseconds).
    pub fn delivered(&self, accepted_ms: i64) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // Clocks of other hosts may be a little ahead: a negative lag is no lag.
        let lag = Duration::from_millis(now_ms.saturating_sub(accepted_ms).max(0) as u64);
        self.lag_us.store(lag.as_micros() as u64, Ordering::Relaxed);
        self.measured_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        metrics::hot().delivery_lag.set(lag.as_secs_f64());
    }

    /// The last measured lag, if it is recent.
    pub fn lag(&self) -> Option<Duration> {
        let measured = Duration::from_millis(self.measured_ms.load(Ordering::Relaxed));
        (self.started.elapsed().saturating_sub(measured) < FRESH_FOR)
            .then(|| Duration::from_micros(self.lag_us.load(Ordering::Relaxed)))
    }

    /// Whether new sends should be refused now.
    pub fn overloaded(&self) -> bool {
        !self.shed_over.is_zero() && self.lag().is_some_and(|lag| lag > self.shed_over)
    }
}

/// Unix milliseconds of an RFC 3339 timestamp (a stored message's `ts`).
pub fn unix_ms(ts: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    #[test]
    fn sheds_only_while_the_measured_lag_is_over_the_bound() {
        let load = Load::new(Duration::from_millis(200));
        assert!(!load.overloaded(), "nothing measured yet");
        load.delivered(now_ms() - 50);
        assert!(!load.overloaded());
        load.delivered(now_ms() - 900);
        assert!(load.overloaded());
        assert!(load.lag().is_some_and(|lag| lag >= Duration::from_millis(900)));
        load.delivered(now_ms() + 5_000);
        assert_eq!(load.lag(), Some(Duration::ZERO), "a clock ahead is no lag");
        assert!(!load.overloaded());
    }

    #[test]
    fn a_zero_bound_never_sheds() {
        let load = Load::new(Duration::ZERO);
        load.delivered(now_ms() - 60_000);
        assert!(!load.overloaded());
    }

    #[test]
    fn reads_stored_timestamps() {
        assert_eq!(unix_ms("1970-01-01T00:00:01.500Z"), Some(1500));
        assert_eq!(unix_ms("yesterday"), None);
    }
}
