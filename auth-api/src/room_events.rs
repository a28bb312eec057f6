//! Telling the gateways about room changes made through the API (a room deleted, a member leaving or removed), so
//! they take the affected sockets out of the room instead of letting them go on reading it.
//!
//! Events go out on core NATS after the database change has committed. A lost one is not fatal: a gateway that
//! was disconnected revalidates its rooms when it is back, and a leave repeated by the client publishes again.

use std::time::Duration;

use natter_proto::RoomId;
use natter_proto::bus::RoomEvent;
use natter_proto::frame::PersonalEvent;

/// How long a request waits for its event to be flushed to NATS before it answers anyway.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Publishes `event` about `room`, and waits (briefly) for it to leave. Failures are logged, not returned: the
/// change is already committed, and gateways catch up by revalidating.
pub async fn publish(nats: Option<&async_nats::Client>, room: &RoomId, event: RoomEvent) {
    let Some(nats) = nats else { return };
    // A plain enum of strings always serializes.
    let payload = serde_json::to_vec(&event).expect("a room event serializes");
    let sent = async {
        nats.publish(natter_proto::subject::room_events(room), payload.into())
            .await
            .map_err(|e| e.to_string())?;
        nats.flush().await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(FLUSH_TIMEOUT, sent).await {
        Ok(Ok(())) => tracing::debug!(room = %room, ?event, "room event published"),
        Ok(Err(err)) => {
            tracing::warn!(room = %room, ?event, error = %err, "cannot publish a room event; gateways will revalidate")
        }
        Err(_) => tracing::warn!(room = %room, ?event, timeout = ?FLUSH_TIMEOUT,
            "publishing a room event timed out; gateways will revalidate"),
    }
}

/// Publishes a personal event to each of `users` (every connection of theirs gets it), without waiting for it to
/// leave: personal events are not kept, and a client re-reads its rooms on every connection anyway.
pub async fn tell_users(nats: Option<&async_nats::Client>, users: &[uuid::Uuid], event: PersonalEvent) {
    let Some(nats) = nats else { return };
    let payload = serde_json::to_vec(&event).expect("a personal event serializes");
    for user in users {
        // A UUID is a safe subject token.
        if let Err(err) = nats
            .publish(
                natter_proto::subject::user_events(&user.to_string()),
                payload.clone().into(),
            )
            .await
        {
            tracing::debug!(%user, error = %err, "cannot publish a personal event");
        }
    }
}
