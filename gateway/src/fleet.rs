//! The gateway fleet: each gateway announces itself every heartbeat interval (a KV registration the auth API
//! reads for direct ingress, and a core-NATS heartbeat), and watches the others' heartbeats. A gateway silent
//! for three intervals is taken as dead: every room drops the presence of its users.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use natter_proto::bus::{GATEWAY_BUCKET, GATEWAY_TTL, GatewayInfo};
use natter_proto::subject;

use crate::state::Gateway;

/// Opens the registration bucket, creating it if missing.
pub async fn registry(js: &jetstream::Context) -> anyhow::Result<kv::Store> {
    if let Ok(store) = js.get_key_value(GATEWAY_BUCKET).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: GATEWAY_BUCKET.to_owned(),
        history: 1,
        max_age: GATEWAY_TTL,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("failed to create the {GATEWAY_BUCKET} bucket: {e}"))
}

/// This gateway's current registration.
pub fn info(gw: &Gateway, url: &str) -> GatewayInfo {
    GatewayInfo {
        id: gw.id.clone(),
        url: url.to_owned(),
        connections: gw.open_connections() as u64,
        draining: gw.draining.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// Announces this gateway until the task is aborted.
pub async fn announce(gw: Gateway, registry: kv::Store, url: String) {
    let mut tick = tokio::time::interval(gw.config.heartbeat_interval);
    loop {
        tick.tick().await;
        let Ok(payload) = serde_json::to_vec(&info(&gw, &url)) else {
            continue;
        };
        if let Err(err) = registry.put(&gw.id, payload.clone().into()).await {
            tracing::warn!(error = %err, "failed to refresh the gateway registration");
        }
        let _ = gw
            .hub
            .nats()
            .publish(subject::gateway_heartbeat(), payload.into())
            .await;
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
