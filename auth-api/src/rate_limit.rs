//! Rate limits keyed by a string (a user name, a client address, a user id): fixed windows whose hits can be
//! taken back ([`RateLimiter`], for login budgets), and token buckets ([`TokenBuckets`], for per-user budgets on
//! authenticated routes). Both hold a bounded number of keys.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Allows `max` hits per key per `window`.
#[derive(Debug)]
pub struct RateLimiter {
    name: &'static str,
    max: u32,
    window: Duration,
    /// Most keys held at all (`MAX_KEYS` outside tests).
    max_keys: usize,
    /// Hits per key. Pruned of stale windows when it grows, so memory stays bounded by the number of keys
    /// active within one window (and by `MAX_KEYS`).
    hits: Mutex<Windows>,
}

#[derive(Debug)]
struct Windows {
    /// Key → (window start, hits in it).
    by_key: HashMap<String, (Instant, u32)>,
    /// When stale windows were last pruned: at most every tenth of a window, so a flood of new keys does not
    /// make every hit scan the whole map.
    pruned_at: Instant,
}

/// Keys held before stale ones are pruned.
const PRUNE_AT: usize = 10_000;
/// Most keys held at all. Past it, the tenth of the keys least recently started or used is forgotten to make room
/// ([`evict_oldest`]): refusing newcomers instead would let a flood of spoofed or IPv6 addresses lock every new
/// client out of login and sign-up. What is forgotten is the counts of those who have been quiet longest.
const MAX_KEYS: usize = 200_000;

/// Forgets the tenth of `map`'s keys (at least one) whose instant is oldest: room for newcomers in one pass
/// every tenth of the map's size, so a flood of new keys costs a constant amortised time per key.
fn evict_oldest<V>(map: &mut HashMap<String, (Instant, V)>) {
    let mut times: Vec<Instant> = map.values().map(|(at, _)| *at).collect();
    if times.is_empty() {
        return;
    }
    let nth = (times.len() / 10).max(1) - 1;
    let (_, cutoff, _) = times.select_nth_unstable(nth);
    let cutoff = *cutoff;
    let mut left = nth + 1;
    map.retain(|_, (at, _)| {
        if *at <= cutoff && left > 0 {
            left -= 1;
            false
        } else {
            true
        }
    });
    metrics::counter!(crate::metrics::RATE_LIMIT_EVICTIONS).increment(1);
}

impl RateLimiter {
    /// A limiter named `name` (used as the metrics label).
    pub fn new(name: &'static str, max: u32, window: Duration) -> Self {
        let windows = Windows {
            by_key: HashMap::new(),
            pruned_at: Instant::now(),
        };
        Self {
            name,
            max,
            window,
            max_keys: MAX_KEYS,
            hits: Mutex::new(windows),
        }
    }

    /// Records a hit for `key`. Returns the time until the next allowed hit when over the limit.
    pub fn hit(&self, key: &str) -> Result<(), Duration> {
        self.take(key).map(|_| ())
    }

    /// Takes back a hit [`RateLimiter::take`] counted for `key`, unless its window has ended since (a new window
    /// started from zero without it).
    pub fn refund(&self, key: &str, hit: Hit) {
        let mut windows = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((start, count)) = windows.by_key.get_mut(key)
            && *start == hit.window
        {
            *count = count.saturating_sub(1);
        }
    }

    /// Forgets every hit of `key`.
    pub fn reset(&self, key: &str) {
        self.hits.lock().unwrap_or_else(|p| p.into_inner()).by_key.remove(key);
    }

    /// Records a hit for `key` that may be taken back with [`RateLimiter::refund`]. Returns the time until the
    /// next allowed hit when over the limit.
    pub fn take(&self, key: &str) -> Result<Hit, Duration> {
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update; the counts are still usable.
        let mut windows = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        let Windows {
            by_key: hits,
            pruned_at,
        } = &mut *windows;
        if hits.len() >= PRUNE_AT.min(self.max_keys) && !hits.contains_key(key) {
            if now.duration_since(*pruned_at) >= self.window / 10 {
                hits.retain(|_, (start, _)| now.duration_since(*start) < self.window);
                *pruned_at = now;
            }
            if hits.len() >= self.max_keys {
                evict_oldest(hits);
            }
        }
        let entry = hits.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.max {
            metrics::counter!(crate::metrics::RATE_LIMITED, "limit" => self.name).increment(1);
            return Err(self.window.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 += 1;
        Ok(Hit { window: entry.0 })
    }
}

/// A hit counted by [`RateLimiter::take`]: which window it went into.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    window: Instant,
}

/// A token bucket per key: each key may spend `capacity` at once, and gets `capacity` back per `period`, evenly
/// (so a steady `capacity` per `period`, with bursts up to `capacity`).
#[derive(Debug)]
pub struct TokenBuckets {
    name: &'static str,
    capacity: f64,
    /// Tokens added per second.
    refill: f64,
    /// How long an empty bucket takes to fill.
    period: Duration,
    /// Most keys held at all (`MAX_KEYS` outside tests).
    max_keys: usize,
    buckets: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    /// Key → (when its level was last updated, its level then).
    by_key: HashMap<String, (Instant, f64)>,
    /// When full buckets were last dropped (a full bucket is the same as none).
    pruned_at: Instant,
}

impl TokenBuckets {
    /// Buckets named `name` (the metrics label) of `capacity` tokens, filled in `period`.
    pub fn new(name: &'static str, capacity: u32, period: Duration) -> Self {
        let capacity = f64::from(capacity.max(1));
        Self {
            name,
            capacity,
            refill: capacity / period.as_secs_f64().max(f64::MIN_POSITIVE),
            period,
            max_keys: MAX_KEYS,
            buckets: Mutex::new(Buckets {
                by_key: HashMap::new(),
                pruned_at: Instant::now(),
            }),
        }
    }

    /// The limit's name (the metrics label).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Spends a token of `key`'s bucket. Returns the time until one is back when it is empty.
    pub fn spend(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update; the levels are still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Buckets { by_key, pruned_at } = &mut *buckets;
        if by_key.len() >= PRUNE_AT.min(self.max_keys) && !by_key.contains_key(key) {
            if now.duration_since(*pruned_at) >= self.period / 10 {
                let (capacity, refill) = (self.capacity, self.refill);
                by_key.retain(|_, (at, level)| *level + now.duration_since(*at).as_secs_f64() * refill < capacity);
                *pruned_at = now;
            }
            if by_key.len() >= self.max_keys {
                evict_oldest(by_key);
            }
        }
        let (at, level) = by_key.entry(key.to_owned()).or_insert((now, self.capacity));
        let current = (*level + now.duration_since(*at).as_secs_f64() * self.refill).min(self.capacity);
        *at = now;
        if current < 1.0 {
            *level = current;
            metrics::counter!(crate::metrics::RATE_LIMITED, "limit" => self.name).increment(1);
            return Err(self.wait_for(current));
        }
        *level = current - 1.0;
        Ok(())
    }

    /// How long a bucket at `level` takes to hold a whole token.
    fn wait_for(&self, level: f64) -> Duration {
        Duration::from_secs_f64(((1.0 - level) / self.refill).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_capacity_at_once_then_its_refill_rate() {
        let buckets = TokenBuckets::new("test", 3, Duration::from_millis(300));
        for _ in 0..3 {
            buckets.spend("a").expect("a full bucket");
        }
        let wait = buckets.spend("a").expect_err("empty");
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO, "{wait:?}");
        buckets.spend("b").expect("keys are independent");
        std::thread::sleep(Duration::from_millis(110));
        buckets.spend("a").expect("one token back after a third of the period");
        assert!(buckets.spend("a").is_err(), "only one");
        std::thread::sleep(Duration::from_millis(400));
        for _ in 0..3 {
            buckets.spend("a").expect("full again, never fuller");
        }
        assert!(buckets.spend("a").is_err());
    }

    #[test]
    fn refused_spends_cost_nothing() {
        let buckets = TokenBuckets::new("test", 1, Duration::from_millis(100));
        buckets.spend("a").expect("one");
        for _ in 0..100 {
            assert!(buckets.spend("a").is_err());
        }
        std::thread::sleep(Duration::from_millis(110));
        buckets
            .spend("a")
            .expect("a flood of refusals does not push the next token back");
    }

    #[test]
    fn full_buckets_are_dropped_and_a_flood_of_keys_is_bounded() {
        let buckets = TokenBuckets {
            max_keys: 100,
            ..TokenBuckets::new("test", 2, Duration::from_millis(50))
        };
        for i in 0..100 {
            buckets.spend(&format!("k{i}")).expect("room for it");
        }
        buckets
            .spend("one-too-many")
            .expect("a newcomer is never refused for a full map");
        let held = buckets.buckets.lock().expect("not poisoned").by_key.len();
        assert!(held <= 100, "the map stays bounded ({held} keys)");
        assert!(
            !buckets.buckets.lock().expect("not poisoned").by_key.contains_key("k0"),
            "the least recently used went first"
        );
        buckets.spend("k99").expect("recent keys keep their own bucket");
        std::thread::sleep(Duration::from_millis(60));
        // Every bucket so far is full again; fresh keys fill the map, and the next newcomer drops the full ones.
        let len = || buckets.buckets.lock().expect("not poisoned").by_key.len();
        let mut late = 0;
        while len() < 100 {
            buckets.spend(&format!("late{late}")).expect("room for it");
            late += 1;
        }
        buckets.spend("new").expect("full buckets were dropped");
        assert_eq!(len(), late + 1, "only the buckets not full are kept");
    }

    #[test]
    fn allows_max_hits_per_window_per_key() {
        let limiter = RateLimiter::new("test", 2, Duration::from_millis(200));
        assert!(limiter.hit("a").is_ok());
        assert!(limiter.hit("a").is_ok());
        let wait = limiter.hit("a").expect_err("third hit is limited");
        assert!(wait <= Duration::from_millis(200));
        assert!(limiter.hit("b").is_ok(), "keys are independent");
        std::thread::sleep(Duration::from_millis(220));
        assert!(limiter.hit("a").is_ok(), "a new window allows hits again");
    }

    #[test]
    fn a_refunded_hit_is_not_counted_and_a_reset_forgets_the_key() {
        let limiter = RateLimiter::new("test", 2, Duration::from_secs(60));
        for _ in 0..5 {
            let hit = limiter.take("a").expect("refunded hits leave room");
            limiter.refund("a", hit);
        }
        limiter.hit("a").expect("one");
        limiter.hit("a").expect("two");
        assert!(limiter.hit("a").is_err(), "the limit holds for hits kept");
        limiter.reset("a");
        assert!(limiter.hit("a").is_ok(), "a reset key starts again");
    }

    #[test]
    fn a_refund_after_its_window_ended_does_not_lower_the_new_window() {
        let limiter = RateLimiter::new("test", 1, Duration::from_millis(100));
        let old = limiter.take("a").expect("first");
        std::thread::sleep(Duration::from_millis(120));
        limiter.hit("a").expect("a new window");
        limiter.refund("a", old);
        assert!(limiter.hit("a").is_err(), "the new window's hit still counts");
    }

    #[test]
    fn a_flood_of_distinct_keys_is_bounded_and_never_locks_a_newcomer_out() {
        let limiter = RateLimiter {
            max_keys: 100,
            ..RateLimiter::new("test", 5, Duration::from_secs(60))
        };
        for i in 0..100 {
            assert!(limiter.hit(&format!("k{i}")).is_ok());
        }
        // The newest keys have spent their budget; a flood of newcomers still gets in, each counted.
        for _ in 0..4 {
            limiter.hit("k99").expect("within its budget");
        }
        for i in 0..1000 {
            limiter
                .hit(&format!("flood{i}"))
                .expect("a newcomer is never refused for a full map");
            let held = limiter.hits.lock().expect("not poisoned").by_key.len();
            assert!(held <= 100, "the map stays bounded ({held} keys)");
        }
        limiter.hit("flood999").expect("a newcomer's own count goes on");
    }
}
