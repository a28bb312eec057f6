//! The gateway fleet: each gateway announces itself on a core-NATS heartbeat every interval (its id, public URL,
//! load and whether it is draining), and watches the others' heartbeats. A gateway silent for three intervals is
//! taken as dead: every room drops the presence of its users, and the per-user connection cap stops counting its
//! connections ([`crate::census`]). The auth API reads the same heartbeats to hand out the least-loaded gateway.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use natter_proto::bus::GatewayInfo;
use natter_proto::subject;

use crate::state::Gateway;

/// This gateway's current registration.
pub fn info(gw: &Gateway, url: &str) -> GatewayInfo {
    GatewayInfo {
        id: gw.id.clone(),
        url: url.to_owned(),
        connections: gw.open_connections() as u64,
        draining: gw.draining.load(std::sync::atomic::Ordering::Relaxed),
        instance: gw.instance.clone(),
    }
}

/// Publishes one heartbeat now.
pub async fn beat(gw: &Gateway, url: &str) {
    if let Ok(payload) = serde_json::to_vec(&info(gw, url)) {
        let _ = gw
            .hub
            .nats()
            .publish(subject::gateway_heartbeat(), payload.into())
            .await;
    }
}

/// Announces this gateway until the task is aborted.
pub async fn announce(gw: Gateway, url: String) {
    let mut tick = tokio::time::interval(gw.config.heartbeat_interval);
    loop {
        tick.tick().await;
        beat(&gw, &url).await;
    }
}

/// Watches the other gateways' heartbeats and reports the ones that fall silent. Presence heals itself: when a
/// gateway taken for dead speaks again (NATS froze, or it was cut off), or one comes back restarted under the same
/// id, every room asks the fleet again who is online in it.
pub async fn watch(gw: Gateway) {
    let mut beats = match gw.hub.nats().subscribe(subject::gateway_heartbeat()).await {
        Ok(sub) => sub,
        Err(err) => {
            tracing::error!(error = %err, "cannot watch gateway heartbeats; dead gateways' presence will linger");
            return;
        }
    };
    let silence = gw.config.heartbeat_interval * 3;
    let mut fleet = Fleet::default();
    let mut check = tokio::time::interval(gw.config.heartbeat_interval.min(Duration::from_secs(1)));
    loop {
        tokio::select! {
            Some(msg) = beats.next() => {
                if let Ok(info) = serde_json::from_slice::<GatewayInfo>(&msg.payload)
                    && info.id != gw.id
                    && fleet.heard(&info.id, &info.instance, Instant::now())
                {
                    tracing::info!(gateway = %info.id, "gateway back (or restarted); resyncing presence and connection counts");
                    gw.hub.resync_presence();
                    // Its counts from before are stale (a restart's connections are gone); ask for them afresh.
                    gw.census.gateway_gone(&info.id);
                    gw.census.resync();
                }
            }
            _ = check.tick() => {
                for id in fleet.silent(silence, Instant::now()) {
                    tracing::warn!(gateway = %id, "gateway fell silent; expiring its users' presence");
                    gw.hub.gateway_gone(&id);
                    gw.census.gateway_gone(&id);
                }
            }
        }
    }
}

/// What a gateway knows of the others from their heartbeats.
#[derive(Debug, Default)]
struct Fleet {
    /// Gateway id → when it was last heard and its instance.
    seen: HashMap<String, (Instant, String)>,
    /// Gateways taken for dead (and not heard since).
    dead: HashSet<String>,
}

impl Fleet {
    /// Notes a heartbeat. Returns whether presence needs resyncing: the gateway was taken for dead, or it is a new
    /// instance under a known id.
    fn heard(&mut self, id: &str, instance: &str, now: Instant) -> bool {
        let returned = self.dead.remove(id);
        let previous = self.seen.insert(id.to_owned(), (now, instance.to_owned()));
        let restarted = previous.is_some_and(|(_, before)| before != instance);
        returned || restarted
    }

    /// Gateways silent for longer than `silence`, taken for dead from now.
    fn silent(&mut self, silence: Duration, now: Instant) -> Vec<String> {
        let dead: Vec<String> = self
            .seen
            .iter()
            .filter(|(_, (at, _))| now.duration_since(*at) > silence)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &dead {
            self.seen.remove(id);
            self.dead.insert(id.clone());
        }
        dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_back_from_the_dead_or_restarted_asks_for_a_resync_and_a_steady_one_does_not() {
        let mut fleet = Fleet::default();
        let start = Instant::now();
        let silence = Duration::from_secs(6);
        assert!(!fleet.heard("g2", "a", start), "first heard: nothing to heal");
        assert!(!fleet.heard("g2", "a", start + Duration::from_secs(2)));
        assert!(fleet.silent(silence, start + Duration::from_secs(5)).is_empty());
        assert_eq!(
            fleet.silent(silence, start + Duration::from_secs(9)),
            vec!["g2".to_owned()]
        );
        assert!(
            fleet.silent(silence, start + Duration::from_secs(10)).is_empty(),
            "reported once"
        );
        assert!(
            fleet.heard("g2", "a", start + Duration::from_secs(11)),
            "back from the dead"
        );
        assert!(!fleet.heard("g2", "a", start + Duration::from_secs(12)));
        assert!(
            fleet.heard("g2", "b", start + Duration::from_secs(13)),
            "restarted under the same id"
        );
        assert!(!fleet.heard("g2", "b", start + Duration::from_secs(14)));
    }
}
