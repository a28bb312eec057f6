//! Connections accepted but not yet upgraded to a WebSocket: capped in all and per client address, so sockets
//! that never finish (or never start) their HTTP request cannot take the gateway's file descriptors. A socket over
//! a cap is answered 503 and closed at once; the others hold a [`Pending`] place until they upgrade or end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::metrics;

/// The caps and the count of pending connections.
#[derive(Debug)]
pub struct PendingLimits {
    max: usize,
    /// 0: no per-address cap.
    max_per_address: usize,
    /// Pending connections in all and per address.
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    all: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The gateway's.
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

/// A pending connection's place, given back when dropped.
#[derive(Debug)]
pub struct Pending {
    limits: Arc<PendingLimits>,
    address: IpAddr,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut counts = self.limits.counts();
        counts.all -= 1;
        if let Some(n) = counts.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                counts.by_address.remove(&self.address);
            }
        }
        ::metrics::gauge!(metrics::PENDING).decrement(1.0);
    }
}

impl PendingLimits {
    /// At most `max` pending connections, and `max_per_address` from one address (0: no such cap).
    pub fn new(max: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_address,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // A poisoned lock means a panic mid-update of plain counters; they are still consistent.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a connection from `address`, unless a cap is reached.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Pending, Full> {
        let mut counts = self.counts();
        if counts.all >= self.max {
            return Err(Full::Gateway);
        }
        let from_address = counts.by_address.get(&address).copied().unwrap_or(0);
        if self.max_per_address > 0 && from_address >= self.max_per_address {
            return Err(Full::Address);
        }
        counts.all += 1;
        *counts.by_address.entry(address).or_insert(0) += 1;
        drop(counts);
        ::metrics::gauge!(metrics::PENDING).increment(1.0);
        Ok(Pending {
            limits: Arc::clone(self),
            address,
        })
    }

    /// Pending connections now.
    pub fn count(&self) -> usize {
        self.counts().all
    }
}

/// What a connection over a cap gets before it is closed.
pub const FULL_RESPONSE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_in_all_and_per_address_and_places_come_back() {
        let limits = PendingLimits::new(3, 2);
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "127.0.0.3".parse().expect("ip");
        let first = limits.admit(a).expect("room");
        let second = limits.admit(a).expect("room");
        assert_eq!(limits.admit(a).err(), Some(Full::Address));
        let third = limits.admit(b).expect("another address has room");
        assert_eq!(limits.admit(b).err(), Some(Full::Gateway));
        drop(first);
        assert_eq!(limits.count(), 2);
        let again = limits.admit(a).expect("a place came back");
        drop((second, third, again));
        assert_eq!(limits.count(), 0);
        let unlimited = PendingLimits::new(10, 0);
        let held: Vec<_> = (0..10)
            .map(|_| unlimited.admit(a).expect("no per-address cap"))
            .collect();
        assert_eq!(unlimited.admit(a).err(), Some(Full::Gateway));
        drop(held);
    }
}
