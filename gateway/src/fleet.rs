//! The gateway fleet: each gateway announces itself on a core-NATS heartbeat every interval (its id, public URL,
//! load and whether it is draining), and watches the others' heartbeats. A gateway silent for three intervals is
//! taken as dead: every room drops the presence of its users. The auth API reads the same heartbeats to hand out
//! the least-loaded gateway.

use std::collections::HashMap;
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

/// Watches the other gateways' heartbeats and reports the ones that fall silent.
pub async fn watch(gw: Gateway) {
    let mut beats = match gw.hub.nats().subscribe(subject::gateway_heartbeat()).await {
        Ok(sub) => sub,
        Err(err) => {
            tracing::error!(error = %err, "cannot watch gateway heartbeats; dead gateways' presence will linger");
            return;
        }
    };
    let silence = gw.config.heartbeat_interval * 3;
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let mut check = tokio::time::interval(gw.config.heartbeat_interval.min(Duration::from_secs(1)));
    loop {
        tokio::select! {
            Some(msg) = beats.next() => {
                if let Ok(info) = serde_json::from_slice::<GatewayInfo>(&msg.payload)
                    && info.id != gw.id
                {
                    seen.insert(info.id, Instant::now());
                }
            }
            _ = check.tick() => {
                let dead: Vec<String> =
                    seen.iter().filter(|(_, at)| at.elapsed() > silence).map(|(id, _)| id.clone()).collect();
                for id in dead {
                    seen.remove(&id);
                    tracing::info!(gateway = %id, "gateway fell silent; expiring its users' presence");
                    gw.hub.gateway_gone(&id);
                }
            }
        }
    }
}
