//! Connections accepted but not yet upgraded to a WebSocket: the pending pool. It is capped in all and per client
//! address, so sockets that never finish (or never start) their HTTP request cannot take the gateway's file
//! descriptors, and it is fair: when it is full a newcomer is let in by shedding an idle pending connection (one
//! from the address holding the most, the longest waiting of those) rather than refused, so an attacker who fills
//! the pool closes only their own sockets. While the pool is under pressure (half full or more), idle connections
//! get a short header timeout instead of the full one.
//!
//! A connection is idle while the gateway waits for its request head; once the head is read and the request is
//! being answered (the token checked, the upgrade answered) it is busy and never shed.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::metrics;

/// The caps, the header timeout under pressure, and the pool of pending connections.
#[derive(Debug)]
pub struct PendingLimits {
    max: usize,
    /// 0: no per-address cap.
    max_per_address: usize,
    /// How long an idle pending connection may wait while the pool is at least half full.
    pressure_timeout: Duration,
    pool: Mutex<Pool>,
}

/// The pending connections, oldest first (ids only grow), and how many each address holds.
#[derive(Debug, Default)]
struct Pool {
    next_id: u64,
    entries: BTreeMap<u64, Entry>,
    by_address: HashMap<IpAddr, usize>,
    /// Set while connections are being shed: when it began and how many so far (logged once at each end).
    shedding: Option<(Instant, u64)>,
}

#[derive(Debug)]
struct Entry {
    address: IpAddr,
    since: Instant,
    shared: Arc<Shared>,
}

/// What a pending connection's task and the pool both see.
#[derive(Debug, Default)]
struct Shared {
    /// A request is being answered: not to be shed.
    busy: AtomicBool,
    /// Notified once when the pool sheds this connection; its task then closes it.
    shed: Notify,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The gateway's, with every pending connection busy (none could be shed).
    Gateway,
    /// The client address's.
    Address,
}

impl Full {
    /// The metrics label.
    pub fn scope(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Address => "address",
        }
    }
}

/// Why a pending connection was shed to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The pool was full; it came from the address holding the most pending connections.
    BusiestAddress,
    /// The pool was full and no address held more than one: it had waited longest.
    Oldest,
    /// The pool was under pressure and it had been idle longer than the short header timeout.
    SlowUnderPressure,
}

impl Shed {
    /// The metrics label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::BusiestAddress => "busiest_address",
            Self::Oldest => "oldest",
            Self::SlowUnderPressure => "slow_under_pressure",
        }
    }

    /// Every reason, for the metrics' start-up zeros.
    pub const ALL: [Shed; 3] = [Self::BusiestAddress, Self::Oldest, Self::SlowUnderPressure];
}

/// A pending connection's place, given back when dropped (or taken back when the pool sheds it).
#[derive(Debug)]
pub struct Pending {
    limits: Arc<PendingLimits>,
    id: u64,
    shared: Arc<Shared>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut pool = self.limits.pool();
        // Already gone when the pool shed it.
        if pool.entries.contains_key(&self.id) {
            self.limits.release(&mut pool, self.id);
        }
    }
}

impl Pending {
    /// Completes when the pool sheds this connection; it must then be closed.
    pub async fn shed(&self) {
        self.shared.shed.notified().await;
    }

    /// Marks the connection busy (a request is being answered) until the guard is dropped.
    pub fn busy(&self) -> BusyGuard {
        self.shared.busy.store(true, Ordering::Relaxed);
        BusyGuard(Arc::clone(&self.shared))
    }
}

/// Holds a pending connection busy; see [`Pending::busy`].
#[derive(Debug)]
pub struct BusyGuard(Arc<Shared>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Relaxed);
    }
}

/// Each admission under pressure sheds at most this many slow connections, so its work stays bounded.
const SHED_PER_ADMISSION: usize = 32;

impl PendingLimits {
    /// At most `max` pending connections, and `max_per_address` from one address (0: no such cap); idle ones shed
    /// after `pressure_timeout` while the pool is at least half full.
    pub fn new(max: usize, max_per_address: usize, pressure_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_address,
            pressure_timeout,
            pool: Mutex::new(Pool::default()),
        })
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        // A poisoned lock means a panic mid-update of plain bookkeeping; it is still usable.
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a connection from `address`: refused over the address's cap; when the pool is full, an
    /// idle connection is shed to make room (refused only when every pending connection is busy).
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Pending, Full> {
        let now = Instant::now();
        let mut pool = self.pool();
        let from_address = pool.by_address.get(&address).copied().unwrap_or(0);
        if self.max_per_address > 0 && from_address >= self.max_per_address {
            return Err(Full::Address);
        }
        if pool.entries.len() * 2 >= self.max {
            self.shed_slow(&mut pool, now);
        }
        if pool.entries.len() >= self.max {
            let Some((victim, why)) = self.victim(&pool) else {
                return Err(Full::Gateway);
            };
            self.shed(&mut pool, victim, why);
        }
        let id = pool.next_id;
        pool.next_id += 1;
        let shared = Arc::new(Shared::default());
        pool.entries.insert(
            id,
            Entry {
                address,
                since: now,
                shared: Arc::clone(&shared),
            },
        );
        *pool.by_address.entry(address).or_insert(0) += 1;
        drop(pool);
        ::metrics::gauge!(metrics::PENDING).increment(1.0);
        Ok(Pending {
            limits: Arc::clone(self),
            id,
            shared,
        })
    }

    /// Sheds idle connections older than the short timeout, oldest first, at most [`SHED_PER_ADMISSION`].
    fn shed_slow(&self, pool: &mut Pool, now: Instant) {
        let slow: Vec<u64> = pool
            .entries
            .iter()
            .take_while(|(_, e)| now.duration_since(e.since) >= self.pressure_timeout)
            .filter(|(_, e)| !e.shared.busy.load(Ordering::Relaxed))
            .map(|(id, _)| *id)
            .take(SHED_PER_ADMISSION)
            .collect();
        for id in slow {
            self.shed(pool, id, Shed::SlowUnderPressure);
        }
    }

    /// The idle connection to shed from a full pool: the longest waiting of the address holding the most, or the
    /// longest waiting of all when no address holds more than one.
    fn victim(&self, pool: &Pool) -> Option<(u64, Shed)> {
        let idle = || {
            pool.entries
                .iter()
                .filter(|(_, e)| !e.shared.busy.load(Ordering::Relaxed))
        };
        let mut held: HashMap<IpAddr, usize> = HashMap::new();
        for (_, entry) in idle() {
            *held.entry(entry.address).or_insert(0) += 1;
        }
        let (busiest, most) = held.into_iter().max_by_key(|(_, n)| *n)?;
        if most > 1 {
            let (id, _) = idle().find(|(_, e)| e.address == busiest)?;
            Some((*id, Shed::BusiestAddress))
        } else {
            let (id, _) = idle().next()?;
            Some((*id, Shed::Oldest))
        }
    }

    fn shed(&self, pool: &mut Pool, id: u64, why: Shed) {
        let Some(entry) = self.release(pool, id) else { return };
        entry.shared.shed.notify_one();
        ::metrics::counter!(metrics::PENDING_SHED, "reason" => why.reason()).increment(1);
        match &mut pool.shedding {
            Some((_, shed)) => *shed += 1,
            None => {
                pool.shedding = Some((Instant::now(), 1));
                tracing::warn!(
                    pending = pool.entries.len(),
                    max = self.max,
                    reason = why.reason(),
                    from = %entry.address,
                    "pending connections are piling up (many sockets not finishing their HTTP request): shedding \
                     idle ones to let others in; logged again when it is over"
                );
            }
        }
    }

    /// Takes a connection out of the pool; logs the end of a shedding spell once the pool is back under a quarter.
    fn release(&self, pool: &mut Pool, id: u64) -> Option<Entry> {
        let entry = pool.entries.remove(&id)?;
        if let Some(n) = pool.by_address.get_mut(&entry.address) {
            *n -= 1;
            if *n == 0 {
                pool.by_address.remove(&entry.address);
            }
        }
        ::metrics::gauge!(metrics::PENDING).decrement(1.0);
        if pool.entries.len() * 4 < self.max
            && let Some((since, shed)) = pool.shedding.take()
        {
            tracing::info!(
                shed,
                lasted = ?since.elapsed(),
                "pending connections back to normal: stopped shedding"
            );
        }
        Some(entry)
    }

    /// Pending connections now.
    pub fn count(&self) -> usize {
        self.pool().entries.len()
    }
}

/// What a connection over a cap gets before it is closed.
pub const FULL_RESPONSE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn shed_now(p: &Pending) -> bool {
        use std::future::Future;
        let mut fut = std::pin::pin!(p.shed());
        let waker = std::task::Waker::noop();
        fut.as_mut().poll(&mut std::task::Context::from_waker(waker)).is_ready()
    }

    #[test]
    fn the_address_cap_holds_and_places_come_back() {
        let limits = PendingLimits::new(10, 2, Duration::from_secs(60));
        let a = ip("127.0.0.2");
        let first = limits.admit(a).expect("room");
        let second = limits.admit(a).expect("room");
        assert_eq!(limits.admit(a).err(), Some(Full::Address));
        drop(first);
        assert_eq!(limits.count(), 1);
        let again = limits.admit(a).expect("a place came back");
        drop((second, again));
        assert_eq!(limits.count(), 0);
        let unlimited = PendingLimits::new(10, 0, Duration::from_secs(60));
        let held: Vec<_> = (0..10)
            .map(|_| unlimited.admit(a).expect("no per-address cap"))
            .collect();
        assert_eq!(unlimited.count(), 10);
        drop(held);
        assert_eq!(unlimited.count(), 0);
    }

    #[test]
    fn a_full_pool_sheds_the_busiest_address_oldest_first_and_lets_the_newcomer_in() {
        let limits = PendingLimits::new(6, 0, Duration::from_secs(60));
        let attacker: Vec<_> = (0..4).map(|_| limits.admit(ip("10.0.0.1")).expect("room")).collect();
        let others: Vec<_> = ["10.0.0.2", "10.0.0.3"]
            .iter()
            .map(|a| limits.admit(ip(a)).expect("room"))
            .collect();
        let newcomer = limits.admit(ip("10.0.0.9")).expect("a full pool makes room");
        assert_eq!(limits.count(), 6);
        assert!(shed_now(&attacker[0]), "the busiest address's oldest goes");
        assert!(attacker[1..].iter().chain(&others).all(|p| !shed_now(p)));
        assert!(!shed_now(&newcomer));
        // Dropping the shed one does not give its place back twice.
        drop(attacker);
        assert_eq!(limits.count(), 3);
        drop((others, newcomer));
        assert_eq!(limits.count(), 0);
    }

    #[test]
    fn with_one_connection_per_address_the_oldest_goes_and_busy_ones_are_never_shed() {
        let limits = PendingLimits::new(3, 0, Duration::from_secs(60));
        let first = limits.admit(ip("10.0.0.1")).expect("room");
        let _busy = first.busy();
        let second = limits.admit(ip("10.0.0.2")).expect("room");
        let third = limits.admit(ip("10.0.0.3")).expect("room");
        let fourth = limits.admit(ip("10.0.0.4")).expect("room");
        assert!(!shed_now(&first), "busy: answering its request");
        assert!(shed_now(&second), "the oldest idle one");
        assert!(!shed_now(&third) && !shed_now(&fourth));
        let all_busy: Vec<_> = [&first, &third, &fourth].iter().map(|p| p.busy()).collect();
        assert_eq!(limits.admit(ip("10.0.0.5")).err(), Some(Full::Gateway));
        drop(all_busy);
        drop(_busy);
        assert!(limits.admit(ip("10.0.0.5")).is_ok(), "idle again, so sheddable");
    }

    #[test]
    fn under_pressure_idle_connections_past_the_short_timeout_go() {
        let limits = PendingLimits::new(4, 0, Duration::ZERO);
        let a = limits.admit(ip("10.0.0.1")).expect("room");
        let b = limits.admit(ip("10.0.0.2")).expect("room");
        let _busy = b.busy();
        // Half full: each admission sheds the idle ones older than the (zero) short timeout.
        let c = limits.admit(ip("10.0.0.3")).expect("room");
        assert!(shed_now(&a), "idle past the pressure timeout");
        assert!(!shed_now(&b), "busy");
        assert!(!shed_now(&c), "the newcomer itself");
        let relaxed = PendingLimits::new(4, 0, Duration::ZERO);
        let d = relaxed.admit(ip("10.0.0.1")).expect("room");
        let _e = relaxed.admit(ip("10.0.0.2")).expect("room");
        assert!(!shed_now(&d), "under half full, nothing is shed");
    }
}
