//! The auth API's side of the gateway fleet, over NATS: answering gateways' room-access checks, and reading
//! gateway registrations to hand clients the least-loaded gateway.

use async_nats::jetstream;
use futures::StreamExt;
use natter_proto::bus::{GATEWAY_BUCKET, GatewayInfo, RoomAccess, RoomAccessRequest};
use natter_proto::subject;
use sqlx::PgPool;
use uuid::Uuid;

/// Queue group of the access responders: each check is answered by one auth-api instance.
const QUEUE_GROUP: &str = "natter-auth-api";

/// Answers room-access checks until the subscription ends.
pub async fn answer_room_access(nats: async_nats::Client, db: PgPool) {
    let mut requests = match nats.queue_subscribe(subject::room_access(), QUEUE_GROUP.into()).await {
        Ok(sub) => sub,
        Err(err) => {
            tracing::error!(error = %err, "cannot answer room-access checks; gateways will refuse joins");
            return;
        }
    };
    while let Some(msg) = requests.next().await {
        let (nats, db) = (nats.clone(), db.clone());
        tokio::spawn(async move {
            let Some(reply) = msg.reply else { return };
            let access = match serde_json::from_slice::<RoomAccessRequest>(&msg.payload) {
                Ok(request) => match room_access(&db, &request).await {
                    Ok(access) => access,
                    Err(err) => {
                        // No reply: the gateway times out and tells its client to retry.
                        tracing::warn!(error = %err, "room-access check failed");
                        return;
                    }
                },
                Err(_) => RoomAccess::NotFound,
            };
            if let Ok(payload) = serde_json::to_vec(&access) {
                let _ = nats.publish(reply, payload.into()).await;
            }
        });
    }
}

/// Public rooms are open to every user; private rooms to their members.
pub async fn room_access(db: &PgPool, request: &RoomAccessRequest) -> Result<RoomAccess, sqlx::Error> {
    let Ok(user) = Uuid::parse_str(&request.user) else {
        return Ok(RoomAccess::Denied);
    };
    let row: Option<(bool, bool)> = sqlx::query_as(
        "SELECT r.private, EXISTS (SELECT 1 FROM memberships m WHERE m.room_id = r.id AND m.user_id = $2) \
         FROM rooms r WHERE r.id = $1",
    )
    .bind(request.room.as_str())
    .bind(user)
    .fetch_optional(db)
    .await?;
    Ok(match row {
        None => RoomAccess::NotFound,
        Some((private, member)) if !private || member => RoomAccess::Allowed,
        Some(_) => RoomAccess::Denied,
    })
}

/// The live, non-draining gateway with the fewest connections.
pub async fn least_loaded_gateway(nats: &async_nats::Client) -> anyhow::Result<Option<GatewayInfo>> {
    let js = jetstream::new(nats.clone());
    let Ok(store) = js.get_key_value(GATEWAY_BUCKET).await else {
        return Ok(None);
    };
    let mut keys = store.keys().await?;
    let mut best: Option<GatewayInfo> = None;
    while let Some(key) = keys.next().await {
        let Ok(key) = key else { continue };
        let Some(value) = store.get(&key).await? else { continue };
        let Ok(info) = serde_json::from_slice::<GatewayInfo>(&value) else {
            continue;
        };
        if !info.draining && best.as_ref().is_none_or(|b| info.connections < b.connections) {
            best = Some(info);
        }
    }
    Ok(best)
}
