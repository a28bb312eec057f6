//! What reaches live connections from outside them: a room's lifecycle events (deleted, a member left or was
//! removed, through the auth API), revoked sessions (logout, a refresh token used twice), and catching up on both
//! after NATS was away.
//!
//! Room events travel on core NATS, so a gateway may miss some: while it was disconnected, when the NATS client
//! dropped messages for a subscription that fell behind, or when the auth API could not publish one. When its
//! connection comes back or messages were dropped, it forgets every access answer and has every room ask again
//! about its users at once; and every room asks again every `--access-recheck-interval` anyway (see
//! [`crate::room`]), which bounds how long a lost event goes unnoticed. Revocations live in a KV bucket the
//! gateway follows, so none is missed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use natter_proto::bus::RoomEvent;
use natter_proto::frame::PersonalEvent;
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

/// Follows every user's personal events, passing each to that user's connections here (a `personal` frame).
pub async fn follow_users(gw: Gateway, mut events: async_nats::Subscriber) {
    while let Some(msg) = events.next().await {
        // The user id is the subject's last token: chat.v1.user.<id>.
        let user = msg.subject.rsplit('.').next().unwrap_or_default();
        match serde_json::from_slice::<PersonalEvent>(&msg.payload) {
            Ok(event) => gw.personal_event(user, event),
            Err(err) => tracing::warn!(subject = %msg.subject, error = %err, "unreadable personal event"),
        }
    }
}

/// Subscribes to every user's personal events.
pub async fn subscribe_users(nats: &async_nats::Client) -> anyhow::Result<async_nats::Subscriber> {
    nats.subscribe(subject::all_user_events())
        .await
        .map_err(|e| anyhow::anyhow!("failed to subscribe to personal events: {e}"))
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

/// Least time between two catch-ups after dropped messages: a gateway under load may have room subscriptions
/// fall behind again and again, and each catch-up asks the auth API about every room.
const SLOW_CONSUMER_CATCH_UP_GAP: Duration = Duration::from_secs(10);

/// After each NATS reconnect, and after messages were dropped for a subscription that fell behind (at most once
/// per [`SLOW_CONSUMER_CATCH_UP_GAP`], then once more for what was dropped meanwhile), has the gateway catch up on
/// what it may have missed (see [`Gateway::catch_up`]).
pub async fn catch_up_after_missed_events(gw: Gateway) {
    let mut reconnects = natter_service::nats_reconnects();
    let mut slow = natter_service::nats_slow_consumers();
    let mut slow_caught_up: Option<Instant> = None;
    loop {
        tokio::select! {
            changed = reconnects.changed() => {
                if changed.is_err() {
                    return;
                }
                tracing::info!("NATS is back; revalidating room access and presence");
                gw.catch_up("reconnect");
            }
            changed = slow.changed() => {
                if changed.is_err() {
                    return;
                }
                if let Some(at) = slow_caught_up {
                    tokio::time::sleep_until((at + SLOW_CONSUMER_CATCH_UP_GAP).into()).await;
                }
                // Whatever was dropped until now is covered by this catch-up.
                slow.borrow_and_update();
                tracing::warn!("NATS dropped messages for a subscription; revalidating room access and presence");
                gw.catch_up("slow_consumer");
                slow_caught_up = Some(Instant::now());
            }
        }
    }
}
