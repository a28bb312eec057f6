//! Fixed-window rate limits keyed by a string (a user name, a client address).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Allows `max` hits per key per `window`.
#[derive(Debug)]
pub struct RateLimiter {
    name: &'static str,
    max: u32,
    window: Duration,
    /// Key → (window start, hits in it). Pruned of stale windows when it grows, so memory stays bounded by the
    /// number of keys active within one window.
    hits: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Keys held before stale ones are pruned.
const PRUNE_AT: usize = 10_000;

impl RateLimiter {
    /// A limiter named `name` (used as the metrics label).
    pub fn new(name: &'static str, max: u32, window: Duration) -> Self {
        Self {
            name,
            max,
            window,
            hits: Mutex::new(HashMap::new()),
        }
    }

    /// Records a hit for `key`. Returns the time until the next allowed hit when over the limit.
    pub fn hit(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update; the counts are still usable.
        let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        if hits.len() >= PRUNE_AT {
            hits.retain(|_, (start, _)| now.duration_since(*start) < self.window);
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
