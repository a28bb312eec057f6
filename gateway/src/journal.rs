//! The gateway's reads and writes of the chat stream: publishing a message and waiting for its stored-ack, and
//! replaying what a rejoining client missed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use natter_proto::bus::{StoredMessage, message_dedup_id};
use natter_proto::{RoomId, subject};

use crate::fanout::message_frame;
use crate::metrics;

/// Fetches a room's stored messages after `since`, up to `until`, as encoded frames, for a rejoin.
///
/// Returns whether every missed message is included (`recovered`): not when the stream no longer holds all of
/// them, when there are more than the replay cap, or when `since` is ahead of the room.
pub async fn replay(
    stream: &async_nats::jetstream::stream::Stream,
    room: &RoomId,
    since: u64,
    until: u64,
    cap: usize,
) -> (bool, Vec<(u64, Bytes)>) {
    // The room task may not have seen the newest message yet (a sender's ack can arrive before the republish):
    // ahead of the room is only unrecoverable when ahead of the stream too.
    let mut until = until;
    if since > until {
        match stream.direct_get_last_for_subject(subject::room_messages(room)).await {
            Ok(last) if since <= last.sequence => until = last.sequence,
            _ => return (false, Vec::new()),
        }
    }
    if since == until {
        return (true, Vec::new());
    }
    let first_kept = stream.cached_info().state.first_sequence;
    let mut info = stream.clone();
    let first_kept = match info.info().await {
        Ok(info) => info.state.first_sequence,
        Err(_) => first_kept,
    };
    if since + 1 < first_kept {
        return (false, Vec::new());
    }
    let subject = subject::room_messages(room);
    let mut frames = Vec::new();
    let mut next = since + 1;
    let mut prev = since;
    while next <= until {
        let msg = match stream.direct_get_next_for_subject(&subject, Some(next)).await {
            Ok(msg) => msg,
            Err(err) if matches!(err.kind(), async_nats::jetstream::stream::DirectGetErrorKind::NotFound) => break,
            Err(err) => {
                tracing::warn!(room = %room, error = %err, "replay read failed");
                return (false, Vec::new());
            }
        };
        let Some(seq) = crate::fanout::header_u64(&msg.headers, async_nats::header::NATS_SEQUENCE) else {
            break;
        };
        if seq > until {
            break;
        }
        if frames.len() >= cap {
            return (false, Vec::new());
        }
        if let Ok(stored) = serde_json::from_slice::<StoredMessage>(&msg.payload) {
            frames.push((seq, message_frame(room, seq, prev, stored)));
        }
        prev = seq;
        next = seq + 1;
    }
    (true, frames)
}

/// Publishes a chat message to JetStream and waits for the stored-ack. Returns the sequence, or a metrics reason.
pub async fn publish(
    js: &async_nats::jetstream::Context,
    room: &RoomId,
    user_id: &str,
    stored: &StoredMessage,
) -> Result<u64, &'static str> {
    let payload = serde_json::to_vec(stored).map_err(|_| "encode")?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        message_dedup_id(user_id, &stored.id).as_str(),
    );
    let started = Instant::now();
    let ack = tokio::time::timeout(Duration::from_secs(5), async {
        // The first await sends; the second waits for JetStream to confirm it stored the message.
        js.publish_with_headers(subject::room_messages(room), headers, payload.into())
            .await?
            .await
    })
    .await;
    match ack {
        Ok(Ok(ack)) => {
            ::metrics::histogram!(metrics::PUBLISH_LATENCY).record(started.elapsed().as_secs_f64());
            Ok(ack.sequence)
        }
        Ok(Err(err)) => {
            tracing::warn!(room = %room, error = %err, "publish failed");
            Err("error")
        }
        Err(_) => Err("timeout"),
    }
}
