//! Reads and writes of chat messages in the stream: publishing one and waiting for its stored-ack, and reading
//! a room's stored messages after a sequence (a rejoining client's replay, a room's gap fill).

use std::time::Duration;

use async_nats::jetstream::{
    self, ErrorCode,
    stream::{DeleteMessageErrorKind, DirectGetErrorKind, RawMessageErrorKind},
};
use natter_proto::bus::{StoredMessage, message_dedup_id};
use natter_proto::{RoomId, subject};

/// Why a publish was not confirmed. Either way the message may still have been stored: the client library
/// keeps what it could not send and sends it on reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// The message could not be encoded.
    Encode,
    /// NATS or JetStream answered with an error.
    Refused,
    /// No stored-ack within the timeout.
    Timeout,
    /// Stored, but no persister confirmed it in PostgreSQL within the timeout (a gateway acking after
    /// persistence).
    NotPersisted,
}

impl PublishError {
    /// A short label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            PublishError::Encode => "encode",
            PublishError::Refused => "error",
            PublishError::Timeout => "timeout",
            PublishError::NotPersisted => "not_persisted",
        }
    }
}

/// JetStream's stored-ack of a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The message's stream sequence.
    pub seq: u64,
    /// Whether it was a resend of a message already stored (`seq` is then the first one's).
    pub duplicate: bool,
}

/// Publishes a chat message under its author's dedup id (a resend with the same id is stored once). Resolves once
/// the message is handed to the connection (in call order: two publishes from one caller are stored in that
/// order), to a future of JetStream's stored-ack. Both steps together take at most `timeout`.
pub async fn publish(
    js: &jetstream::Context,
    room: &RoomId,
    user_id: &str,
    stored: &StoredMessage,
    timeout: Duration,
) -> Result<impl Future<Output = Result<Stored, PublishError>> + Send + 'static, PublishError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let payload = serde_json::to_vec(stored).map_err(|_| PublishError::Encode)?;
    let dedup_id = message_dedup_id(user_id, &stored.id);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, dedup_id.as_str());
    let sent = tokio::time::timeout_at(
        deadline,
        js.publish_with_headers(subject::room_messages(room), headers, payload.into()),
    )
    .await;
    let ack = match sent {
        Ok(Ok(ack)) => ack,
        Ok(Err(err)) => {
            // The caller says so at WARN, once a second however many fail (an outage refuses every send alike);
            // JetStream's words are here.
            tracing::debug!(room = %room, error = %err, "publish failed");
            return Err(PublishError::Refused);
        }
        Err(_) => return Err(PublishError::Timeout),
    };
    let room = room.clone();
    let js = js.clone();
    Ok(async move {
        match tokio::time::timeout_at(deadline, ack).await {
            Ok(Ok(ack)) if ack.duplicate => {
                match tokio::time::timeout_at(deadline, stored_at(&js, ack.sequence, dedup_id.as_str())).await {
                    Ok(true) => Ok(Stored {
                        seq: ack.sequence,
                        duplicate: true,
                    }),
                    Ok(false) => {
                        tracing::warn!(room = %room, seq = ack.sequence, "a resend was acked as a duplicate of a message the stream does not hold; not confirmed");
                        Err(PublishError::Refused)
                    }
                    Err(_) => Err(PublishError::Timeout),
                }
            }
            Ok(Ok(ack)) => Ok(Stored {
                seq: ack.sequence,
                duplicate: false,
            }),
            Ok(Err(err)) => {
                tracing::debug!(room = %room, error = %err, "publish not confirmed");
                Err(PublishError::Refused)
            }
            Err(_) => Err(PublishError::Timeout),
        }
    })
}

/// Whether the chat stream's leader holds the message of dedup id `id` at `seq`: asked before a duplicate's ack is
/// trusted. A stream leader cut off from its quorum answers a resend as a duplicate of a first try it proposed but
/// could not commit, with that try's sequence, though no replica keeps the message: seen on nats-server 2.10.26
/// (docs/faults.md, C2). The leader's read (`$JS.API.STREAM.MSG.GET`) sees only what was committed.
async fn stored_at(js: &jetstream::Context, seq: u64, id: &str) -> bool {
    let Ok(stream) = js.get_stream_no_info(natter_proto::bus::CHAT_STREAM).await else {
        return false;
    };
    match stream.get_raw_message(seq).await {
        Ok(message) => message
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .is_some_and(|value| value.as_str() == id),
        Err(err) => {
            tracing::debug!(seq, error = %err, "cannot read a duplicate's first try from the stream's leader");
            false
        }
    }
}

/// A room's stored messages after a sequence, each with its sequence and the room's previous one.
#[derive(Debug, Default)]
pub struct Replay {
    /// Whether every message after `since` up to `until` is included: not when the stream no longer holds all of
    /// them, when there are more than the cap, or when `since` is ahead of the room.
    pub recovered: bool,
    /// `(seq, prev, message)`, in order.
    pub messages: Vec<(u64, u64, StoredMessage)>,
}

impl Replay {
    fn lost() -> Self {
        Self::default()
    }
}

/// The room's first stored event at or after stream sequence `from`, if there is one.
///
/// Read with a direct get, which any replica of the stream may answer (spreading the reads), and, when that finds
/// nothing, asked again of the stream's leader: a replica that is behind (a node back from a partition or a
/// restart, catching up) does not hold the newest messages yet, and NATS routes a client's direct get to the
/// replica on its own server when there is one, so a gateway connected to that node would be told "not found"
/// for as long as the node catches up. The leader holds every acknowledged message.
pub async fn next_event(
    stream: &jetstream::stream::Stream,
    room: &RoomId,
    from: u64,
) -> Result<Option<jetstream::message::StreamMessage>, String> {
    let subject = subject::room_messages(room);
    match stream.direct_get_next_for_subject(&subject, Some(from)).await {
        Ok(msg) => Ok(Some(msg)),
        Err(err) if matches!(err.kind(), DirectGetErrorKind::NotFound) => {
            match stream.get_first_raw_message_by_subject(&subject, from).await {
                Ok(msg) => Ok(Some(msg)),
                Err(err) if matches!(err.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
                Err(err) => Err(format!("the stream's leader: {err}")),
            }
        }
        Err(err) => Err(err.to_string()),
    }
}

/// The position of the room's newest stored event: from any replica, and from the leader when that one has none
/// or none at `at_least` or later (a replica behind: see [`next_event`]).
async fn last_event(stream: &jetstream::stream::Stream, room: &RoomId, at_least: u64) -> Option<u64> {
    let subject = subject::room_messages(room);
    let replica = stream
        .direct_get_last_for_subject(&subject)
        .await
        .ok()
        .map(|m| m.sequence);
    if replica.is_some_and(|seq| seq >= at_least) {
        return replica;
    }
    let leader = stream
        .get_last_raw_message_by_subject(&subject)
        .await
        .ok()
        .map(|m| m.sequence);
    replica.max(leader)
}

/// Reads a room's stored messages after `since` up to `until`, at most `cap` of them.
pub async fn replay(stream: &jetstream::stream::Stream, room: &RoomId, since: u64, until: u64, cap: usize) -> Replay {
    // The caller may not have seen the newest message yet (a sender's ack can arrive before the republish):
    // ahead of the room is only unrecoverable when ahead of the stream too.
    let mut until = until;
    if since > until {
        match last_event(stream, room, since).await {
            Some(last) if since <= last => until = last,
            _ => return Replay::lost(),
        }
    }
    if since == until {
        return Replay {
            recovered: true,
            messages: Vec::new(),
        };
    }
    let mut info = stream.clone();
    let first_kept = match info.info().await {
        Ok(info) => info.state.first_sequence,
        Err(_) => stream.cached_info().state.first_sequence,
    };
    if since + 1 < first_kept {
        return Replay::lost();
    }
    let mut messages = Vec::new();
    let mut next = since + 1;
    let mut prev = since;
    while next <= until {
        let msg = match next_event(stream, room, next).await {
            Ok(Some(msg)) => msg,
            Ok(None) => break,
            Err(err) => {
                tracing::warn!(room = %room, error = %err, "replay read failed");
                return Replay::lost();
            }
        };
        let seq = msg.sequence;
        if seq > until {
            break;
        }
        if messages.len() >= cap {
            return Replay::lost();
        }
        if let Ok(stored) = serde_json::from_slice::<StoredMessage>(&msg.payload) {
            messages.push((seq, prev, stored));
        }
        prev = seq;
        next = seq + 1;
    }
    Replay {
        recovered: true,
        messages,
    }
}

/// What the stream holds at one sequence, for a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The room's event stored there.
    Found(StoredMessage),
    /// Nothing is there, though the stream still covers the sequence: it was erased (a deleted message).
    Erased,
    /// No event of this room is there: another room's, an unreadable one, or beyond what the stream holds.
    Absent,
}

/// Reads the event at stream sequence `seq`, if it is one of `room`'s (the target of an edit, a deletion, a
/// reaction or a reply). One direct get; a miss is asked again of the stream's leader (a replica may be behind: see
/// [`next_event`]), and a miss there also reads the stream's range, to tell an erased message from one the stream
/// never held or no longer holds.
pub async fn lookup(stream: &jetstream::stream::Stream, room: &RoomId, seq: u64) -> Result<Lookup, String> {
    if seq == 0 {
        return Ok(Lookup::Absent);
    }
    let found = match stream.direct_get(seq).await {
        Ok(msg) => Some(msg),
        Err(err) if matches!(err.kind(), DirectGetErrorKind::NotFound) => match stream.get_raw_message(seq).await {
            Ok(msg) => Some(msg),
            Err(err) if matches!(err.kind(), RawMessageErrorKind::NoMessageFound) => None,
            Err(err) => return Err(format!("the stream's leader: {err}")),
        },
        Err(err) => return Err(err.to_string()),
    };
    match found {
        Some(msg) if msg.subject.as_str() == subject::room_messages(room) => {
            Ok(serde_json::from_slice::<StoredMessage>(&msg.payload).map_or(Lookup::Absent, Lookup::Found))
        }
        Some(_) => Ok(Lookup::Absent),
        None => {
            let mut info = stream.clone();
            let state = info.info().await.map_err(|err| err.to_string())?.state.clone();
            Ok(if state.first_sequence <= seq && seq <= state.last_sequence {
                Lookup::Erased
            } else {
                Lookup::Absent
            })
        }
    }
}

/// Erases the event at stream sequence `seq` from the stream (its bytes overwritten), so no replay serves it
/// again. Whether something was erased: what is gone already (erased before, aged out, below the stream's first
/// sequence) is not. Only a request JetStream did not answer is an error, to be tried again; an answer refusing
/// it is final.
pub async fn erase<I>(stream: &jetstream::stream::Stream<I>, seq: u64) -> Result<bool, String> {
    match stream.delete_message(seq).await {
        Ok(done) => Ok(done),
        Err(err) => match err.kind() {
            DeleteMessageErrorKind::JetStream(js) => {
                let gone = [
                    ErrorCode::NO_MESSAGE_FOUND,
                    ErrorCode::SEQUENCE_NOT_FOUND,
                    ErrorCode::STREAM_MESSAGE_DELETE_FAILED,
                ];
                if !gone.contains(&js.error_code()) {
                    tracing::warn!(seq, error = %js, "JetStream refused to erase a message");
                }
                Ok(false)
            }
            _ => Err(err.to_string()),
        },
    }
}

/// Reads a numeric NATS header (`Nats-Sequence`, `Nats-Last-Sequence`).
pub fn header_u64(headers: Option<&async_nats::HeaderMap>, name: async_nats::header::HeaderName) -> Option<u64> {
    headers?.get(name).and_then(|v| AsRef::<str>::as_ref(v).parse().ok())
}
