//! What reaches live connections from outside them: a room's lifecycle events (deleted, a member left or was
//! removed, through the auth API), revoked sessions (logout, a refresh token used twice), and catching up on both
//! after NATS was away.
//!
//! Room events travel on core NATS, so a gateway that was disconnected may have missed some: when its connection
//! comes back, it forgets every access answer and has each connection ask again about its rooms. Revocations live
//! in a KV bucket the gateway follows, so none is missed.

use std::sync::Arc;

use futures::StreamExt;
use natter_proto::bus::RoomEvent;
use natter_proto::{RoomId, subject};

use crate::state::Gateway;

/// Applies room events until the subscription ends (the process stops).
pub async fn follow_rooms(gw: Gateway, mut events: async_nats::Subscriber) {
    while let Some(msg) = events.next().await {
        // The room is the subject's last token: chat.v1.events.room.<room>.
        let room = msg.subject.rsplit('.').next().and_then(|id| RoomId::parse(id).ok());
        let event = serde_json::from_slice::<RoomEvent>(&msg.payload);
        match (room, event) {
            (Some(room), Ok(event)) => {
                tracing::info!(%room, ?event, "room event");
                gw.room_event(&room, &event);
            }
            (_, Err(err)) => tracing::warn!(subject = %msg.subject, error = %err, "unreadable room event"),
            (None, _) => tracing::warn!(subject = %msg.subject, "room event for an invalid room id"),
        }
    }
}

/// Subscribes to every room's events.
pub async fn subscribe_rooms(nats: &async_nats::Client) -> anyhow::Result<async_nats::Subscriber> {
    nats.subscribe(subject::all_room_events())
        .await
        .map_err(|e| anyhow::anyhow!("failed to subscribe to room events: {e}"))
}

/// Follows revoked sessions, closing the live connections of each.
pub async fn follow_revocations(gw: Gateway, store: async_nats::jetstream::kv::Store) {
    let revoked = Arc::clone(&gw.revoked);
    let on_revoke = {
        let gw = gw.clone();
        move |sid: &str, _| gw.session_revoked(sid)
    };
    natter_stream::sessions::follow(store, revoked, on_revoke).await;
}

/// After each NATS reconnect, has the gateway catch up on what it may have missed (see [`Gateway::revalidate`]).
pub async fn catch_up_after_reconnects(gw: Gateway) {
    let mut reconnects = natter_service::nats_reconnects();
    while reconnects.changed().await.is_ok() {
        tracing::info!("NATS is back; revalidating room access and presence");
        gw.revalidate();
    }
}
