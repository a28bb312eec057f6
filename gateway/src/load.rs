//! Whether this gateway keeps up, and shedding when it does not.
//!
//! Every batch a room task delivers tells the meter how late it is: the time from the moment a gateway accepted
//! the batch's oldest message (its `ts`) to the moment its frames were handed to members' sockets. The meter
//! smooths those samples, and once the smoothed lag passes `--shed-lag` it refuses a share of new sends with
//! `overloaded`: none at the bound, rising in proportion to all of them at twice the bound. What was acknowledged is
//! still delivered in time, and the refused senders know to send again later with the same id.
//!
//! Refusing a share rather than everything matters under a sustained overload: refusing every send drains the
//! backlog, the lag falls under the bound, and every refused sender comes back at once to push it over again, so
//! the gateway swings between taking nothing and taking too much. A share settles where the gateway takes what it
//! can deliver in time. Refusals are spread evenly over the sends (by a low-discrepancy sequence, not chance), so
//! no sender is singled out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::metrics;

/// A measurement older than this no longer describes the gateway (nothing was delivered since).
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Each new sample moves the smoothed lag this share of the way towards it.
const SMOOTHING: f64 = 0.125;

/// The delivery lag meter of one gateway.
pub struct Load {
    /// Lag over which sends are refused; zero never sheds.
    shed_over: Duration,
    started: Instant,
    /// The smoothed lag, in microseconds.
    lag_us: AtomicU64,
    /// When it was last measured, in milliseconds since `started`.
    measured_ms: AtomicU64,
    /// Sends asked about so far: the place of each in the sequence that spreads refusals.
    asked: AtomicU64,
}

impl Load {
    /// A meter that sheds sends while the lag is over `shed_over` (zero: never).
    pub fn new(shed_over: Duration) -> Self {
        Self {
            shed_over,
            started: Instant::now(),
            lag_us: AtomicU64::new(0),
            measured_ms: AtomicU64::new(0),
            asked: AtomicU64::new(0),
        }
    }

    /// Records the lag of a batch whose oldest message was accepted at `accepted_ms` (Unix milliseconds).
    pub fn delivered(&self, accepted_ms: i64) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // Clocks of other hosts may be a little ahead: a negative lag is no lag.
        let sample = now_ms.saturating_sub(accepted_ms).max(0) as f64 * 1000.0;
        // Room tasks on several threads record at once; a sample lost to a race between load and store is one of
        // hundreds a second, so the smoothing needs no lock.
        let smoothed = match self.lag() {
            Some(lag) => {
                let old = lag.as_micros() as f64;
                old + (sample - old) * SMOOTHING
            }
            None => sample,
        };
        self.lag_us.store(smoothed as u64, Ordering::Relaxed);
        self.measured_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        metrics::hot().delivery_latency.record(sample / 1e6);
        metrics::hot().delivery_lag.set(smoothed / 1e6);
        metrics::hot().shed_share.set(self.share());
    }

    /// The smoothed lag, if it was measured recently.
    pub fn lag(&self) -> Option<Duration> {
        let measured = Duration::from_millis(self.measured_ms.load(Ordering::Relaxed));
        (self.started.elapsed().saturating_sub(measured) < FRESH_FOR)
            .then(|| Duration::from_micros(self.lag_us.load(Ordering::Relaxed)))
    }

    /// The share of new sends refused now, from 0 (the lag is at or under the bound, or unknown) to 1 (it is twice
    /// the bound or more).
    pub fn share(&self) -> f64 {
        if self.shed_over.is_zero() {
            return 0.0;
        }
        self.lag().map_or(0.0, |lag| {
            let bound = self.shed_over.as_secs_f64();
            ((lag.as_secs_f64() - bound) / bound).clamp(0.0, 1.0)
        })
    }

    /// Whether this new send should be refused.
    pub fn overloaded(&self) -> bool {
        let share = self.share();
        if share <= 0.0 {
            return false;
        }
        // The fractional parts of n·φ cover [0, 1) evenly for any run of consecutive n, so over any stretch of
        // sends the share refused is the share asked for.
        let n = self.asked.fetch_add(1, Ordering::Relaxed);
        let place = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
        place < share
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

    /// Feeds the meter the same lag until the smoothing has all but reached it.
    fn settle_at(load: &Load, lag_ms: i64) {
        for _ in 0..200 {
            load.delivered(now_ms() - lag_ms);
        }
    }

    fn refused_of(load: &Load, sends: usize) -> usize {
        (0..sends).filter(|_| load.overloaded()).count()
    }

    #[test]
    fn sheds_nothing_until_the_smoothed_lag_is_over_the_bound() {
        let load = Load::new(Duration::from_millis(200));
        assert!(!load.overloaded(), "nothing measured yet");
        settle_at(&load, 50);
        assert_eq!(refused_of(&load, 1_000), 0);
        // One late batch among timely ones moves the smoothed lag only part of the way.
        load.delivered(now_ms() - 900);
        assert!(
            load.lag().is_some_and(|lag| lag < Duration::from_millis(200)),
            "{:?}",
            load.lag()
        );
        assert_eq!(refused_of(&load, 1_000), 0);
    }

    #[test]
    fn refuses_a_share_that_grows_with_the_lag_over_the_bound() {
        let load = Load::new(Duration::from_millis(200));
        settle_at(&load, 300);
        let share = load.share();
        assert!((0.45..0.55).contains(&share), "half way to twice the bound: {share}");
        // Spread evenly: any run of sends is refused in that share, give or take a send.
        let refused = refused_of(&load, 1_000) as f64;
        assert!(
            (refused - 1_000.0 * share).abs() <= 2.0,
            "{refused} refused of 1000 at {share}"
        );
        let refused = refused_of(&load, 10) as f64;
        assert!(
            (refused - 10.0 * share).abs() <= 2.0,
            "{refused} refused of 10 at {share}"
        );
        settle_at(&load, 1_000);
        assert_eq!(load.share(), 1.0);
        assert_eq!(refused_of(&load, 1_000), 1_000);
        // As the lag falls back, so does the share, down to nothing.
        settle_at(&load, 100);
        assert_eq!(refused_of(&load, 1_000), 0);
        settle_at(&load, -5_000);
        assert_eq!(load.lag(), Some(Duration::ZERO), "a clock ahead is no lag");
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
