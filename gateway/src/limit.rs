//! Rate limits per connection: a token bucket per kind of frame.

use std::time::Instant;

/// A token-bucket rate limit: `rate` per second with a burst of twice that, or of its own size.
pub struct Bucket {
    tokens: f32,
    rate: f32,
    burst: f32,
    at: Instant,
}

impl Bucket {
    /// A full bucket refilling at `rate` per second, holding twice that.
    pub fn new(rate: u32) -> Self {
        Self::with_burst(rate, rate.saturating_mul(2))
    }

    /// A full bucket refilling at `rate` per second, holding `burst` (at least one).
    pub fn with_burst(rate: u32, burst: u32) -> Self {
        let burst = burst.max(1) as f32;
        Self {
            tokens: burst,
            rate: rate as f32,
            burst,
            at: Instant::now(),
        }
    }

    /// Takes one token; false when the limit is reached.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f32() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_of_twice_the_rate_then_refuses() {
        let mut bucket = Bucket::new(5);
        assert_eq!((0..20).filter(|_| bucket.take()).count(), 10);
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(bucket.take(), "refilled at 5 per second");
    }

    #[test]
    fn a_burst_of_its_own_size_then_the_rate() {
        let mut bucket = Bucket::with_burst(1, 64);
        assert_eq!((0..100).filter(|_| bucket.take()).count(), 64);
    }
}
