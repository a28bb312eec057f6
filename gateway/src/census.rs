//! The fleet-wide count of each user's connections, so `--max-connections-per-user` holds across the gateway fleet
//! and not per gateway.
//!
//! Each gateway counts its own users' connections ([`Census::admit`], [`Census::release`]) and, every
//! [`PUBLISH_EVERY`], tells the others the counts that changed (absolute counts, on core NATS). Each keeps the
//! others' counts by gateway; a gateway whose heartbeat stops has its counts dropped ([`Census::gateway_gone`]),
//! and a gateway starting (or one taken for dead speaking again) asks every other for all their counts. A connect
//! is refused when the user's connections here plus those elsewhere reach the cap. Nothing on the connect path
//! waits for NATS: the remote counts are already in memory. Two connects racing on two gateways can both pass
//! before either hears of the other, so the cap can be exceeded by at most (gateways - 1) for about
//! [`PUBLISH_EVERY`]; see docs/security.md ("Connection limits").

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use natter_proto::bus::UserConnectionCounts;
use natter_proto::subject;
use tokio::sync::Notify;

use crate::metrics;
use crate::state::Gateway;

/// How often the counts that changed are published: often enough that a race past the cap is short, seldom
/// enough that a connect storm is one message per interval, not one per connect.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// Most (user, count) pairs in one message, so a large gateway's answer to a sync stays far below NATS's 1 MB
/// payload limit (a user id is 36 characters; ~50 bytes a pair).
const PAIRS_PER_MESSAGE: usize = 2_000;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The gateway holds `--max-connections`.
    Gateway,
    /// The user holds the cap on this gateway alone.
    User,
    /// The user's connections here are under the cap; with those on other gateways they reach it.
    Fleet,
}

/// This gateway's users' connection counts, and the other gateways' as they told them.
#[derive(Debug, Default)]
pub struct Census {
    local: Mutex<Local>,
    remote: Mutex<Remote>,
    /// Woken when the fleet's counts should be asked for again (a gateway came back or restarted).
    resync: Notify,
}

#[derive(Debug, Default)]
struct Local {
    /// User id → connections on this gateway (users with none are absent).
    counts: HashMap<Arc<str>, u32>,
    /// Users whose count changed since the last publish. The key is the same allocation as in `counts`.
    changed: HashSet<Arc<str>>,
}

#[derive(Debug, Default)]
struct Remote {
    /// User id → connections on every other gateway together (users with none are absent).
    totals: HashMap<String, u32>,
    /// Gateway id → its instance and its users' counts.
    gateways: HashMap<String, RemoteGateway>,
}

#[derive(Debug, Default)]
struct RemoteGateway {
    instance: String,
    counts: HashMap<String, u32>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update of plain maps; the counts are still usable.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Remote {
    /// Sets `gateway`'s count of `user` to `count`, keeping the total right.
    fn set(&mut self, gateway: &str, user: &str, count: u32) {
        let counts = &mut self.gateways.entry(gateway.to_owned()).or_default().counts;
        let before = if count == 0 {
            counts.remove(user)
        } else {
            counts.insert(user.to_owned(), count)
        }
        .unwrap_or(0);
        if before == count {
            return;
        }
        let total = self.totals.entry(user.to_owned()).or_insert(0);
        *total = (*total + count).saturating_sub(before);
        if *total == 0 {
            self.totals.remove(user);
        }
    }

    /// Forgets every count of `gateway`.
    fn drop_gateway(&mut self, gateway: &str) {
        let Some(gone) = self.gateways.remove(gateway) else {
            return;
        };
        for (user, count) in gone.counts {
            if let Some(total) = self.totals.get_mut(&user) {
                *total = total.saturating_sub(count);
                if *total == 0 {
                    self.totals.remove(&user);
                }
            }
        }
    }
}

impl Census {
    /// Counts a new connection of `user` unless the user holds `cap` over the fleet or `gateway_full` says the
    /// gateway is full (asked under the same lock, so admissions are serialized). Returns the user's key, to give
    /// back to [`Census::release`].
    pub fn admit(&self, user: &str, cap: usize, gateway_full: impl FnOnce() -> bool) -> Result<Arc<str>, Refused> {
        let mut local = lock(&self.local);
        let here = local.counts.get(user).copied().unwrap_or(0);
        let cap = u32::try_from(cap).unwrap_or(u32::MAX);
        if here >= cap {
            return Err(Refused::User);
        }
        let elsewhere = lock(&self.remote).totals.get(user).copied().unwrap_or(0);
        if here.saturating_add(elsewhere) >= cap {
            return Err(Refused::Fleet);
        }
        if gateway_full() {
            return Err(Refused::Gateway);
        }
        let key = match local.counts.get_key_value(user) {
            Some((key, _)) => key.clone(),
            None => Arc::from(user),
        };
        *local.counts.entry(key.clone()).or_insert(0) += 1;
        local.changed.insert(key.clone());
        Ok(key)
    }

    /// Gives back a connection [`Census::admit`] counted.
    pub fn release(&self, user: &Arc<str>) {
        let mut local = lock(&self.local);
        if let Some(count) = local.counts.get_mut(user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                local.counts.remove(user);
            }
        }
        local.changed.insert(user.clone());
    }

    /// Connections `user` holds on this gateway.
    pub fn local_count(&self, user: &str) -> u32 {
        lock(&self.local).counts.get(user).copied().unwrap_or(0)
    }

    /// Connections `user` holds on other gateways, as far as this one knows.
    pub fn remote_count(&self, user: &str) -> u32 {
        lock(&self.remote).totals.get(user).copied().unwrap_or(0)
    }

    /// The counts changed since the last call, taken (a user whose last connection closed has 0).
    fn take_changes(&self) -> Vec<(String, u32)> {
        let mut local = lock(&self.local);
        let changed = std::mem::take(&mut local.changed);
        changed
            .into_iter()
            .map(|user| {
                let count = local.counts.get(&user).copied().unwrap_or(0);
                (user.to_string(), count)
            })
            .collect()
    }

    /// Every user's count on this gateway.
    fn snapshot(&self) -> Vec<(String, u32)> {
        lock(&self.local)
            .counts
            .iter()
            .map(|(user, count)| (user.to_string(), *count))
            .collect()
    }

    /// Takes in counts another gateway sent. Counts of an earlier instance of that gateway are dropped first.
    fn apply(&self, counts: UserConnectionCounts) {
        let mut remote = lock(&self.remote);
        let known = remote.gateways.get(&counts.gateway).map(|g| g.instance.as_str());
        if known != Some(counts.instance.as_str()) {
            remote.drop_gateway(&counts.gateway);
            remote.gateways.insert(
                counts.gateway.clone(),
                RemoteGateway {
                    instance: counts.instance.clone(),
                    counts: HashMap::new(),
                },
            );
        }
        for (user, count) in &counts.counts {
            remote.set(&counts.gateway, user, *count);
        }
        ::metrics::gauge!(metrics::REMOTE_USERS).set(remote.totals.len() as f64);
    }

    /// Forgets the counts of gateway `id` (its heartbeat stopped: its connections are gone with it).
    pub fn gateway_gone(&self, id: &str) {
        let mut remote = lock(&self.remote);
        remote.drop_gateway(id);
        ::metrics::gauge!(metrics::REMOTE_USERS).set(remote.totals.len() as f64);
    }

    /// Asks the fleet for its counts again (a gateway taken for dead speaks again, or one restarted).
    pub fn resync(&self) {
        self.resync.notify_one();
    }
}

/// Publishes `pairs` as this gateway's counts on `subject`, in messages of at most [`PAIRS_PER_MESSAGE`] pairs.
async fn send(gw: &Gateway, subject: String, pairs: Vec<(String, u32)>, kind: &'static str) {
    for chunk in pairs.chunks(PAIRS_PER_MESSAGE) {
        let message = UserConnectionCounts {
            gateway: gw.id.clone(),
            instance: gw.instance.clone(),
            counts: chunk.to_vec(),
        };
        let payload = match serde_json::to_vec(&message) {
            Ok(payload) => Bytes::from(payload),
            Err(err) => {
                tracing::warn!(error = %err, "cannot encode users' connection counts");
                return;
            }
        };
        // Core NATS: a publish only fails when the client's buffer is closed; the counts are then out of date
        // until the user's next change here, or until this gateway is taken for dead and asked again.
        if gw.hub.nats().publish(subject.clone(), payload).await.is_ok() {
            ::metrics::counter!(metrics::USER_COUNTS_SENT, "kind" => kind).increment(1);
        }
    }
}

/// Publishes the counts that changed every [`PUBLISH_EVERY`] until the task is aborted.
pub async fn publish(gw: Gateway) {
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let changes = gw.census.take_changes();
        if !changes.is_empty() {
            send(&gw, subject::gateway_user_connections(), changes, "update").await;
        }
    }
}

/// Follows the other gateways' counts, answers their requests for all of this gateway's, and asks for theirs at
/// start and whenever [`Census::resync`] is called, until the task is aborted.
pub async fn follow(gw: Gateway) {
    let nats = gw.hub.nats().clone();
    let inbox = nats.new_inbox();
    let subscribed = async {
        let updates = nats.subscribe(subject::gateway_user_connections()).await?;
        let asks = nats.subscribe(subject::gateway_user_connections_sync()).await?;
        let answers = nats.subscribe(inbox.clone()).await?;
        Ok::<_, async_nats::SubscribeError>((updates, asks, answers))
    };
    let (updates, mut asks, answers) = match subscribed.await {
        Ok(subs) => subs,
        Err(err) => {
            tracing::error!(error = %err, "cannot follow other gateways' connection counts; the per-user cap holds per gateway only");
            return;
        }
    };
    let mut counts = futures::stream::select(updates, answers);
    let ask = |nats: async_nats::Client, inbox: String| async move {
        if let Err(err) = nats
            .publish_with_reply(subject::gateway_user_connections_sync(), inbox, Bytes::new())
            .await
        {
            tracing::warn!(error = %err, "cannot ask the fleet for users' connection counts");
        }
    };
    ask(nats.clone(), inbox.clone()).await;
    loop {
        tokio::select! {
            Some(msg) = counts.next() => {
                match serde_json::from_slice::<UserConnectionCounts>(&msg.payload) {
                    Ok(message) if message.gateway != gw.id => {
                        ::metrics::counter!(metrics::USER_COUNTS_RECEIVED).increment(1);
                        gw.census.apply(message);
                    }
                    Ok(_) => {}
                    Err(err) => tracing::debug!(error = %err, "unreadable connection counts; ignored"),
                }
            }
            Some(msg) = asks.next() => {
                // Its own question reaches this gateway too; the answer would be ignored, so none is sent.
                if let Some(reply) = msg.reply
                    && !reply.as_str().starts_with(inbox.as_str())
                {
                    send(&gw, reply.to_string(), gw.census.snapshot(), "sync").await;
                }
            }
            () = gw.census.resync.notified() => ask(nats.clone(), inbox.clone()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(gateway: &str, instance: &str, pairs: &[(&str, u32)]) -> UserConnectionCounts {
        UserConnectionCounts {
            gateway: gateway.into(),
            instance: instance.into(),
            counts: pairs.iter().map(|(u, n)| ((*u).to_owned(), *n)).collect(),
        }
    }

    #[test]
    fn the_cap_counts_connections_on_other_gateways() {
        let census = Census::default();
        let ann = census.admit("ann", 3, || false).expect("first");
        census.apply(counts("g2", "a", &[("ann", 1)]));
        let _second = census.admit("ann", 3, || false).expect("one here, one there");
        assert_eq!(census.admit("ann", 3, || false).err(), Some(Refused::Fleet));
        census.release(&ann);
        let _third = census.admit("ann", 3, || false).expect("one closed here");
        census.apply(counts("g2", "a", &[("ann", 0)]));
        assert_eq!(census.remote_count("ann"), 0);
        let _fourth = census.admit("ann", 3, || false).expect("the one there closed");
        assert_eq!(census.admit("ann", 3, || false).err(), Some(Refused::User));
        assert_eq!(census.admit("bob", 3, || true).err(), Some(Refused::Gateway));
        assert_eq!(census.local_count("bob"), 0, "a refusal counts nothing");
    }

    #[test]
    fn a_gone_or_restarted_gateway_takes_its_counts_with_it() {
        let census = Census::default();
        census.apply(counts("g2", "a", &[("ann", 2), ("bob", 1)]));
        census.apply(counts("g3", "x", &[("ann", 1)]));
        assert_eq!(census.remote_count("ann"), 3);
        census.gateway_gone("g2");
        assert_eq!((census.remote_count("ann"), census.remote_count("bob")), (1, 0));
        census.apply(counts("g3", "y", &[("bob", 1)]));
        assert_eq!(
            (census.remote_count("ann"), census.remote_count("bob")),
            (0, 1),
            "a new instance of g3 has none of the old one's connections"
        );
    }

    #[test]
    fn changes_are_published_once_with_absolute_counts() {
        let census = Census::default();
        let a = census.admit("ann", 5, || false).expect("room");
        let _b = census.admit("ann", 5, || false).expect("room");
        let c = census.admit("cy", 5, || false).expect("room");
        census.release(&c);
        let mut changes = census.take_changes();
        changes.sort();
        assert_eq!(changes, vec![("ann".to_owned(), 2), ("cy".to_owned(), 0)]);
        assert!(census.take_changes().is_empty());
        census.release(&a);
        assert_eq!(census.take_changes(), vec![("ann".to_owned(), 1)]);
        assert_eq!(census.snapshot(), vec![("ann".to_owned(), 1)]);
    }
}
