//! Rate limits per connection: a token bucket per kind of frame.

use std::time::Instant;

/// A token-bucket rate limit: `rate` per second with a burst of twice that.
pub struct Bucket {
    tokens: f32,
    rate: f32,
    at: Instant,
}

impl Bucket {
    /// A full bucket refilling at `rate` per second.
    pub fn new(rate: u32) -> Self {
        let rate = rate as f32;
        Self {
            tokens: rate * 2.0,
            rate,
            at: Instant::now(),
        }
    }

    /// Takes one token; false when the limit is reached.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f32() * self.rate).min(self.rate * 2.0);
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
}
