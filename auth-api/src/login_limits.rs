//! Limits on password guessing that do not let a guesser lock a user out, shared by every auth API instance.
//!
//! Only failed logins count, in two budgets: per (user, client address), so guessing from one address is slow,
//! and per user, a slower one over every address, so guessing from many addresses is slow too. The per-user
//! budget does not apply to an address the user logged in from recently, so a guesser spending it cannot keep
//! the user out from where they usually log in. The budgets and the known addresses live in PostgreSQL (tables
//! `login_failures` and `login_known_addresses`), so guesses spread over several instances meet one budget and a
//! restart forgets nothing. Each budget check is one statement that counts and decides under the row's lock, so
//! instances racing cannot pass more than the budget. There is no in-memory fallback: a login needs the password
//! hash from the same database, so with the database down it fails anyway. See docs/security.md ("Login
//! guessing").

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The window of the per-(user, address) failure budget.
pub const PAIR_WINDOW: Duration = Duration::from_secs(60);
/// The window of the per-user failure budget.
pub const USER_WINDOW: Duration = Duration::from_secs(3600);
/// How long an address stays known for a user after a successful login from it.
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often ended windows and addresses not seen within [`KNOWN_FOR`] are deleted.
pub const CLEAN_EVERY: Duration = Duration::from_secs(60);

/// Why an attempt may not go ahead.
#[derive(Debug, thiserror::Error)]
pub enum LoginLimitError {
    /// A budget that applies is spent; the attempt may be made again after this long.
    #[error("too many failed logins; retry in {0:?}")]
    Limited(Duration),
    /// The budgets could not be read or written.
    #[error("the login budgets could not be checked")]
    Database(#[from] sqlx::Error),
}

/// One of the two failure budgets: its scope in `login_failures`, its size and window.
#[derive(Debug, Clone, Copy)]
struct Budget {
    /// The `scope` column's value, also the metrics label (prefixed).
    scope: &'static str,
    /// The metrics label of refusals.
    name: &'static str,
    max: u32,
    window: Duration,
}

/// The failure budgets and the addresses users logged in from, kept in the database. Cheap to share.
#[derive(Debug)]
pub struct LoginLimits {
    db: PgPool,
    per_pair: Budget,
    per_user: Budget,
    known_for: Duration,
}

/// A failure [`Budget::take`] counted: the window it went into, so it can be taken back from that window only.
#[derive(Debug, Clone, Copy)]
struct Hit {
    window: DateTime<Utc>,
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
    /// [`USER_WINDOW`] from addresses the user has not logged in from within [`KNOWN_FOR`], counted in `db`.
    pub fn new(db: PgPool, per_pair: u32, per_user: u32) -> Self {
        Self {
            db,
            per_pair: Budget {
                scope: "pair",
                name: "login_failures_per_user_address",
                max: per_pair,
                window: PAIR_WINDOW,
            },
            per_user: Budget {
                scope: "user",
                name: "login_failures_per_user",
                max: per_user,
                window: USER_WINDOW,
            },
            known_for: KNOWN_FOR,
        }
    }

    /// Starts an attempt on `user` (the name's key) from `addr`, or says how long to wait when a budget that
    /// applies is spent.
    pub async fn begin(&self, user: &str, addr: IpAddr) -> Result<Attempt<'_>, LoginLimitError> {
        let pair_key = format!("{addr} {user}");
        let pair = self.take(self.per_pair, &pair_key).await?;
        let per_user = if self.knows(user, addr).await? {
            None
        } else {
            match self.take(self.per_user, user).await {
                Ok(hit) => Some(hit),
                Err(err) => {
                    // Not attempted: it does not count against the pair either.
                    self.refund(self.per_pair, &pair_key, pair).await?;
                    return Err(err);
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
    pub async fn remember(&self, user: &str, addr: IpAddr) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO login_known_addresses (user_key, address, last_seen) VALUES ($1, $2, now()) \
             ON CONFLICT (user_key, address) DO UPDATE SET last_seen = now()",
        )
        .bind(user)
        .bind(addr.to_string())
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Deletes ended windows and addresses not seen within [`KNOWN_FOR`], so both tables hold only what still
    /// matters. Every instance runs it every [`CLEAN_EVERY`]; running it twice at once is harmless.
    pub async fn clean(&self) -> Result<u64, sqlx::Error> {
        let failures = sqlx::query(
            "DELETE FROM login_failures WHERE \
             (scope = $1 AND window_start <= now() - make_interval(secs => $2)) OR \
             (scope = $3 AND window_start <= now() - make_interval(secs => $4))",
        )
        .bind(self.per_pair.scope)
        .bind(self.per_pair.window.as_secs_f64())
        .bind(self.per_user.scope)
        .bind(self.per_user.window.as_secs_f64())
        .execute(&self.db)
        .await?;
        let known =
            sqlx::query("DELETE FROM login_known_addresses WHERE last_seen <= now() - make_interval(secs => $1)")
                .bind(self.known_for.as_secs_f64())
                .execute(&self.db)
                .await?;
        Ok(failures.rows_affected() + known.rows_affected())
    }

    /// Whether `user` logged in from `addr` within [`KNOWN_FOR`].
    async fn knows(&self, user: &str, addr: IpAddr) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM login_known_addresses \
             WHERE user_key = $1 AND address = $2 AND last_seen > now() - make_interval(secs => $3))",
        )
        .bind(user)
        .bind(addr.to_string())
        .bind(self.known_for.as_secs_f64())
        .fetch_one(&self.db)
        .await
    }

    /// Counts a failure for `key` in `budget`, or says how long until the budget has room. One statement: the
    /// upsert decides under the row's lock whether the window has ended (start a new one at 1), has room (add
    /// one) or is spent (leave it), so concurrent takes from any number of instances pass at most `max`.
    async fn take(&self, budget: Budget, key: &str) -> Result<Hit, LoginLimitError> {
        // A spent window is not updated, so the upsert returns no row for it; the second part of the union then
        // reads the row for its Retry-After. It can miss a row another transaction inserted after this
        // statement's snapshot was taken (the upsert sees it, the plain read does not): then the whole window is
        // the wait, which only overstates it.
        let row: Option<(DateTime<Utc>, bool, f64)> = sqlx::query_as(
            "WITH hit AS ( \
                INSERT INTO login_failures AS f (scope, key, window_start, failures) VALUES ($1, $2, now(), 1) \
                ON CONFLICT (scope, key) DO UPDATE SET \
                    window_start = CASE WHEN f.window_start <= now() - make_interval(secs => $3) \
                        THEN now() ELSE f.window_start END, \
                    failures = CASE WHEN f.window_start <= now() - make_interval(secs => $3) \
                        THEN 1 ELSE f.failures + 1 END \
                WHERE f.window_start <= now() - make_interval(secs => $3) OR f.failures < $4 \
                RETURNING window_start \
             ) \
             SELECT window_start, true, 0::float8 FROM hit \
             UNION ALL \
             SELECT window_start, false, \
                 extract(epoch FROM window_start + make_interval(secs => $3) - now())::float8 \
             FROM login_failures WHERE scope = $1 AND key = $2 AND NOT EXISTS (SELECT 1 FROM hit)",
        )
        .bind(budget.scope)
        .bind(key)
        .bind(budget.window.as_secs_f64())
        .bind(i64::from(budget.max))
        .fetch_optional(&self.db)
        .await?;
        match row {
            Some((window, true, _)) => Ok(Hit { window }),
            refused => {
                metrics::counter!(crate::metrics::RATE_LIMITED, "limit" => budget.name).increment(1);
                let wait = match refused {
                    Some((_, _, secs)) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs),
                    Some(_) => Duration::ZERO,
                    None => budget.window,
                };
                Err(LoginLimitError::Limited(wait.min(budget.window)))
            }
        }
    }

    /// Takes back a failure [`LoginLimits::take`] counted for `key`, unless its window has ended since (a new
    /// window started from zero without it).
    async fn refund(&self, budget: Budget, key: &str, hit: Hit) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE login_failures SET failures = failures - 1 \
             WHERE scope = $1 AND key = $2 AND window_start = $3 AND failures > 0",
        )
        .bind(budget.scope)
        .bind(key)
        .bind(hit.window)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Forgets every failure of `key` in `budget`.
    async fn reset(&self, budget: Budget, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM login_failures WHERE scope = $1 AND key = $2")
            .bind(budget.scope)
            .bind(key)
            .execute(&self.db)
            .await?;
        Ok(())
    }
}

impl Attempt<'_> {
    /// The password was right: nothing is counted, earlier failures from this address are forgiven, and the
    /// address is known for the user from now on.
    pub async fn succeeded(self) -> Result<(), sqlx::Error> {
        let limits = self.limits;
        limits.reset(limits.per_pair, &self.pair.0).await?;
        if let Some(hit) = self.per_user {
            limits.refund(limits.per_user, &self.user, hit).await?;
        }
        limits.remember(&self.user, self.addr).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natter_test_support::TestDb;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    /// A fresh, migrated database. The [`TestDb`] is returned too: the database lives as long as it does.
    async fn database() -> (TestDb, PgPool) {
        let test_db = TestDb::create().await;
        let db = PgPool::connect(test_db.url())
            .await
            .expect("connects to the test database");
        natter_history::migrate(&db).await.expect("history schema");
        natter_history::run(sqlx::migrate!("./migrations"), &db)
            .await
            .expect("accounts schema");
        (test_db, db)
    }

    async fn fail(limits: &LoginLimits, user: &str, addr: IpAddr) -> Result<(), LoginLimitError> {
        limits.begin(user, addr).await.map(drop)
    }

    async fn succeed(limits: &LoginLimits, user: &str, addr: IpAddr) {
        let attempt = limits.begin(user, addr).await.expect("within the budgets");
        attempt.succeeded().await.expect("recorded");
    }

    #[tokio::test]
    async fn failures_from_one_address_do_not_touch_another_known_address() {
        let (_keep, db) = database().await;
        let limits = LoginLimits::new(db, 2, 3);
        succeed(&limits, "ann", ip(9)).await;
        for _ in 0..2 {
            fail(&limits, "ann", ip(1)).await.expect("within the pair's budget");
        }
        assert!(fail(&limits, "ann", ip(1)).await.is_err(), "the pair's budget is spent");
        fail(&limits, "ann", ip(2)).await.expect("another address");
        let spent = fail(&limits, "ann", ip(3)).await;
        assert!(
            matches!(spent, Err(LoginLimitError::Limited(wait)) if wait <= USER_WINDOW && wait > PAIR_WINDOW),
            "three failures spent the user's budget: {spent:?}"
        );
        for _ in 0..5 {
            succeed(&limits, "ann", ip(9)).await;
        }
        assert!(fail(&limits, "bob", ip(3)).await.is_ok(), "budgets are per user");
    }

    #[tokio::test]
    async fn successes_consume_no_budget_and_forgive_the_pair() {
        let (_keep, db) = database().await;
        let limits = LoginLimits::new(db, 2, 2);
        for last in 1..=10 {
            succeed(&limits, "cy", ip(last)).await;
        }
        fail(&limits, "dee", ip(1)).await.expect("one failure");
        succeed(&limits, "dee", ip(1)).await;
        fail(&limits, "dee", ip(1)).await.expect("the pair starts again");
        fail(&limits, "dee", ip(1)).await.expect("and has its whole budget");
        assert!(fail(&limits, "dee", ip(1)).await.is_err());
    }

    #[tokio::test]
    async fn a_refusal_by_the_user_budget_does_not_spend_the_pair() {
        let (_keep, db) = database().await;
        let limits = LoginLimits::new(db, 1, 1);
        fail(&limits, "eve", ip(1)).await.expect("spends the user's budget");
        assert!(fail(&limits, "eve", ip(2)).await.is_err());
        assert!(
            fail(&limits, "eve", ip(2)).await.is_err(),
            "still refused by the user's budget"
        );
        limits.remember("eve", ip(2)).await.expect("recorded");
        assert!(fail(&limits, "eve", ip(2)).await.is_ok(), "its pair was never charged");
    }

    #[tokio::test]
    async fn concurrent_guesses_through_separate_limiters_stay_within_the_budget() {
        let (_keep, db) = database().await;
        // Two limiters on one database, as two instances have.
        let limiters = [LoginLimits::new(db.clone(), 5, 100), LoginLimits::new(db, 5, 100)];
        let guesses = (0..40).map(|i| fail(&limiters[i % 2], "fay", ip(1)));
        let passed = futures::future::join_all(guesses)
            .await
            .into_iter()
            .filter(Result::is_ok)
            .count();
        assert_eq!(passed, 5);
    }

    #[tokio::test]
    async fn ended_windows_and_old_addresses_are_deleted() {
        let (_keep, db) = database().await;
        let limits = LoginLimits::new(db.clone(), 1, 1);
        fail(&limits, "gus", ip(1)).await.expect("one failure");
        limits.remember("gus", ip(2)).await.expect("recorded");
        limits.remember("hal", ip(3)).await.expect("recorded");
        assert_eq!(limits.clean().await.expect("cleans"), 0, "everything is current");
        // Age the rows as time would.
        sqlx::query("UPDATE login_failures SET window_start = window_start - interval '2 hours'")
            .execute(&db)
            .await
            .expect("ages the windows");
        sqlx::query(
            "UPDATE login_known_addresses SET last_seen = last_seen - interval '31 days' WHERE user_key = 'gus'",
        )
        .execute(&db)
        .await
        .expect("ages an address");
        assert!(
            fail(&limits, "gus", ip(1)).await.is_ok() && fail(&limits, "gus", ip(1)).await.is_err(),
            "an ended window counts as none and a new one starts"
        );
        sqlx::query("UPDATE login_failures SET window_start = window_start - interval '2 hours'")
            .execute(&db)
            .await
            .expect("ages the windows");
        assert_eq!(limits.clean().await.expect("cleans"), 3, "two windows and one address");
        let left: Vec<(String,)> = sqlx::query_as("SELECT user_key FROM login_known_addresses")
            .fetch_all(&db)
            .await
            .expect("reads");
        assert_eq!(left, vec![("hal".to_owned(),)]);
    }
}
