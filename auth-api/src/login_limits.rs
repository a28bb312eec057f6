//! Limits on password guessing that do not let a guesser lock a user out.
//!
//! Only failed logins count, in two budgets: per (user, client address), so guessing from one address is slow,
//! and per user, a slower one over every address, so guessing from many addresses is slow too. The per-user
//! budget does not apply to an address the user logged in from recently, so a guesser spending it cannot keep
//! the user out from where they usually log in. See docs/security.md ("Login guessing").

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::rate_limit::{Hit, RateLimiter};

/// The window of the per-(user, address) failure budget.
pub const PAIR_WINDOW: Duration = Duration::from_secs(60);
/// The window of the per-user failure budget.
pub const USER_WINDOW: Duration = Duration::from_secs(3600);
/// How long an address stays known for a user after a successful login from it.
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most (user, address) pairs remembered; past it the least recently seen tenth is forgotten.
const KNOWN_MAX: usize = 100_000;

/// The failure budgets and the addresses users logged in from. One per process.
#[derive(Debug)]
pub struct LoginLimits {
    per_pair: RateLimiter,
    per_user: RateLimiter,
    known: KnownAddresses,
}

/// One login attempt, counted as a failure in each budget that applies until [`Attempt::succeeded`] says
/// otherwise. Counting before the password is checked keeps concurrent guesses within the budgets; an attempt
/// that ends in any other way (a wrong password, an error) stays counted.
#[must_use = "an attempt counts as failed unless it is marked succeeded"]
pub struct Attempt<'a> {
    limits: &'a LoginLimits,
    user: String,
    addr: IpAddr,
    pair: (String, Hit),
    per_user: Option<Hit>,
}

impl LoginLimits {
    /// At most `per_pair` failures per (user, address) per [`PAIR_WINDOW`], and `per_user` failures per user per
    /// [`USER_WINDOW`] from addresses the user has not logged in from within [`KNOWN_FOR`].
    pub fn new(per_pair: u32, per_user: u32) -> Self {
        Self {
            per_pair: RateLimiter::new("login_failures_per_user_address", per_pair, PAIR_WINDOW),
            per_user: RateLimiter::new("login_failures_per_user", per_user, USER_WINDOW),
            known: KnownAddresses::new(KNOWN_MAX, KNOWN_FOR),
        }
    }

    /// Starts an attempt on `user` (the name's key) from `addr`, or says how long to wait when a budget that
    /// applies is spent.
    pub fn begin(&self, user: &str, addr: IpAddr) -> Result<Attempt<'_>, Duration> {
        let pair_key = format!("{addr} {user}");
        let pair = self.per_pair.take(&pair_key)?;
        let per_user = if self.known.knows(user, addr) {
            None
        } else {
            match self.per_user.take(user) {
                Ok(hit) => Some(hit),
                Err(wait) => {
                    // Not attempted: it does not count against the pair either.
                    self.per_pair.refund(&pair_key, pair);
                    return Err(wait);
                }
            }
        };
        Ok(Attempt {
            limits: self,
            user: user.to_owned(),
            addr,
            pair: (pair_key, pair),
            per_user,
        })
    }

    /// Notes a successful sign-in of `user` from `addr` that went through no [`Attempt`] (a registration).
    pub fn remember(&self, user: &str, addr: IpAddr) {
        self.known.remember(user, addr);
    }
}

impl Attempt<'_> {
    /// The password was right: nothing is counted, earlier failures from this address are forgiven, and the
    /// address is known for the user from now on.
    pub fn succeeded(self) {
        let limits = self.limits;
        limits.per_pair.reset(&self.pair.0);
        if let Some(hit) = self.per_user {
            limits.per_user.refund(&self.user, hit);
        }
        limits.known.remember(&self.user, self.addr);
    }
}

/// (user, address) pairs with a successful login, each with when it was last seen; bounded.
#[derive(Debug)]
struct KnownAddresses {
    max: usize,
    ttl: Duration,
    seen: Mutex<HashMap<(String, IpAddr), Instant>>,
}

impl KnownAddresses {
    fn new(max: usize, ttl: Duration) -> Self {
        Self {
            max,
            ttl,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<(String, IpAddr), Instant>> {
        // A poisoned lock means a panic mid-update of a plain map; its contents are still consistent.
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn knows(&self, user: &str, addr: IpAddr) -> bool {
        self.seen()
            .get(&(user.to_owned(), addr))
            .is_some_and(|at| at.elapsed() < self.ttl)
    }

    fn remember(&self, user: &str, addr: IpAddr) {
        let mut seen = self.seen();
        let key = (user.to_owned(), addr);
        if seen.len() >= self.max && !seen.contains_key(&key) {
            seen.retain(|_, at| at.elapsed() < self.ttl);
            if seen.len() >= self.max {
                // Forget the least recently seen tenth at once, so a full map is not scanned on every login.
                let mut ages: Vec<Instant> = seen.values().copied().collect();
                let cut = (self.max / 10).max(1).min(ages.len() - 1);
                let (_, newest_forgotten, _) = ages.select_nth_unstable(cut);
                let newest_forgotten = *newest_forgotten;
                seen.retain(|_, at| *at > newest_forgotten);
            }
        }
        seen.insert(key, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn failures_from_one_address_do_not_touch_another_known_address() {
        let limits = LoginLimits::new(2, 3);
        limits.begin("ann", ip(9)).expect("first").succeeded();
        for _ in 0..2 {
            drop(limits.begin("ann", ip(1)).expect("within the pair's budget"));
        }
        assert!(limits.begin("ann", ip(1)).is_err(), "the pair's budget is spent");
        drop(limits.begin("ann", ip(2)).expect("another address"));
        assert!(
            limits.begin("ann", ip(3)).is_err(),
            "three failures spent the user's budget"
        );
        for _ in 0..5 {
            limits
                .begin("ann", ip(9))
                .expect("the known address is exempt")
                .succeeded();
        }
        assert!(limits.begin("bob", ip(3)).is_ok(), "budgets are per user");
    }

    #[test]
    fn successes_consume_no_budget_and_forgive_the_pair() {
        let limits = LoginLimits::new(2, 2);
        for last in 1..=10 {
            limits.begin("cy", ip(last)).expect("successes are free").succeeded();
        }
        drop(limits.begin("dee", ip(1)).expect("one failure"));
        limits.begin("dee", ip(1)).expect("then the right password").succeeded();
        drop(limits.begin("dee", ip(1)).expect("the pair starts again"));
        drop(limits.begin("dee", ip(1)).expect("and has its whole budget"));
        assert!(limits.begin("dee", ip(1)).is_err());
    }

    #[test]
    fn a_refusal_by_the_user_budget_does_not_spend_the_pair() {
        let limits = LoginLimits::new(1, 1);
        drop(limits.begin("eve", ip(1)).expect("spends the user's budget"));
        assert!(limits.begin("eve", ip(2)).is_err());
        assert!(
            limits.begin("eve", ip(2)).is_err(),
            "still refused by the user's budget"
        );
        limits.remember("eve", ip(2));
        assert!(limits.begin("eve", ip(2)).is_ok(), "its pair was never charged");
    }

    #[test]
    fn known_addresses_are_bounded_and_keep_the_most_recent() {
        let known = KnownAddresses::new(20, Duration::from_secs(60));
        for last in 0..20 {
            known.remember("fay", ip(last));
        }
        known.remember("fay", ip(0));
        known.remember("gus", ip(100));
        let seen = known.seen().len();
        assert!(seen <= 20, "{seen}");
        assert!(known.knows("gus", ip(100)), "the newest is kept");
        assert!(known.knows("fay", ip(0)), "a pair seen again is recent");
        assert!(!known.knows("fay", ip(1)), "the least recently seen are forgotten");
    }

    #[test]
    fn known_addresses_expire() {
        let known = KnownAddresses::new(10, Duration::from_millis(50));
        known.remember("hal", ip(1));
        assert!(known.knows("hal", ip(1)));
        std::thread::sleep(Duration::from_millis(70));
        assert!(!known.knows("hal", ip(1)));
    }
}
