//! Messages that travel between Natter processes over NATS (not over the WebSocket).
//!
//! Each type is the JSON payload of one subject family built in [`crate::subject`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::frame::{ServerFrame, UserRef};
use crate::{ClientMsgId, RoomId};

/// Name of the JetStream stream holding every chat message.
pub const CHAT_STREAM: &str = "CHAT";

/// How long JetStream remembers a `Nats-Msg-Id` to drop a resend of the same message.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A gateway whose last heartbeat is older than this is no longer assigned to clients.
pub const GATEWAY_TTL: Duration = Duration::from_secs(10);

/// A chat message as the gateway accepted it: the payload in the stream (subject
/// [`crate::subject::room_messages`]), and the part of every later form of it that its author made. The persister
/// stores it as a row, the history API answers with it ([`HistoryMessage`]), the gateway sends it as a `message`
/// frame ([`StoredMessage::into_frame`]); a field added here reaches all three.
///
/// Its sequence and its room's previous sequence are not in the payload: they come from JetStream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredMessage {
    /// The id the author's client chose.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: ClientMsgId,
    /// The author.
    pub user: UserRef,
    /// The text.
    pub body: String,
    /// When the gateway accepted it (RFC 3339, UTC, to the millisecond: [`timestamp`]).
    pub ts: String,
}

impl StoredMessage {
    /// The `message` frame for this message at position `seq` in `room`, whose previous message is at `prev`.
    pub fn into_frame(self, room: RoomId, seq: u64, prev: u64) -> ServerFrame {
        ServerFrame::Message {
            room,
            seq,
            prev,
            id: self.id,
            user: self.user,
            body: self.body,
            ts: self.ts,
        }
    }

    /// When the gateway accepted it, or why its `ts` is not a time.
    pub fn accepted_at(&self) -> Result<DateTime<Utc>, chrono::ParseError> {
        DateTime::parse_from_rfc3339(&self.ts).map(|ts| ts.with_timezone(&Utc))
    }
}

/// A time as messages carry it: RFC 3339 in UTC, to the millisecond (`2026-01-01T00:00:00.000Z`).
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A chat message as history holds it: where it is, and what its author sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryMessage {
    /// Its position: the stream's epoch plus its sequence in the stream, the same `seq` as on the WebSocket
    /// (docs/protocol.md).
    pub seq: u64,
    /// The message.
    #[serde(flatten)]
    pub message: StoredMessage,
}

/// The `Nats-Msg-Id` of a message: author and client id together, so two users' ids never collide and a resend
/// by the same author is stored once.
pub fn message_dedup_id(user_id: &str, id: &ClientMsgId) -> String {
    format!("{user_id}:{id}")
}

/// A presence change on one gateway, on [`crate::subject::room_presence`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEvent {
    /// The gateway whose local members changed.
    pub gateway: String,
    /// Users that came online in the room on that gateway.
    #[serde(default)]
    pub joined: Vec<UserRef>,
    /// Users that went offline in the room on that gateway.
    #[serde(default)]
    pub left: Vec<UserRef>,
}

/// A gateway's answer to a presence sync request: who is online in the room on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceSnapshot {
    /// The answering gateway.
    pub gateway: String,
    /// Its local online users in the room.
    pub users: Vec<UserRef>,
}

/// A gateway's heartbeat, on [`crate::subject::gateway_heartbeat`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// The gateway's id.
    pub id: String,
    /// The WebSocket URL clients should use to reach it directly.
    pub url: String,
    /// Open client connections.
    pub connections: u64,
    /// Whether it is draining (takes no new clients).
    pub draining: bool,
    /// Random per process start: a gateway restarted under the same id has a new one, so the fleet knows its
    /// users from before are gone.
    #[serde(default)]
    pub instance: String,
}

/// A gateway's question to the auth-api: may this user join this room?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomAccessRequest {
    /// The room.
    pub room: RoomId,
    /// The user id (`sub` of their token).
    pub user: String,
}

/// The auth-api's answer to a [`RoomAccessRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomAccess {
    /// The room is public: this user and every other may join it (a gateway may remember that for the room).
    Public,
    /// The room is private and the user is a member.
    Allowed,
    /// The room is private and the user is not a member.
    Denied,
    /// There is no such room.
    NotFound,
}

/// A typing update, on [`crate::subject::room_typing`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingEvent {
    /// Who is typing.
    pub user: UserRef,
    /// The draft; empty clears it.
    pub text: String,
}

/// The NATS KV bucket of revoked sessions: key = the session id (`sid` of its access tokens), value a
/// [`RevokedSession`]. Entries outlive every access token of the session (the bucket's max age is the access-token
/// lifetime plus leeway), so a gateway that starts or reconnects later still refuses them.
pub const REVOKED_SESSIONS_BUCKET: &str = "natter_revoked_sessions";

/// Why a session was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// The user logged out.
    Logout,
    /// A spent refresh token of the session was used again: taken as theft, every token of it is revoked.
    RefreshReuse,
}

/// A revoked session, as stored in [`REVOKED_SESSIONS_BUCKET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedSession {
    /// The session's user (`sub`).
    pub user: String,
    /// Why it was revoked.
    pub reason: RevokeReason,
}

/// A change to a room that gateways must apply to the sockets already in it, on [`crate::subject::room_events`]
/// (core NATS; a gateway that was disconnected revalidates its rooms instead of relying on having seen it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomEvent {
    /// The room was deleted: every member is taken out of it.
    Deleted,
    /// The user left the room through the API: their sockets are taken out of it too.
    MemberLeft {
        /// The user id.
        user: String,
    },
    /// The room's owner removed the user from it.
    MemberRemoved {
        /// The user id.
        user: String,
    },
}

impl RoomEvent {
    /// The user the event is about, or `None` for the whole room.
    pub fn user(&self) -> Option<&str> {
        match self {
            Self::Deleted => None,
            Self::MemberLeft { user } | Self::MemberRemoved { user } => Some(user),
        }
    }

    /// The `reason` of the `left` frame the affected sockets get (docs/protocol.md).
    pub fn left_reason(&self) -> &'static str {
        match self {
            Self::Deleted => crate::frame::left_reason::ROOM_DELETED,
            Self::MemberLeft { .. } => crate::frame::left_reason::MEMBER_LEFT,
            Self::MemberRemoved { .. } => crate::frame::left_reason::MEMBER_REMOVED,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stored() -> StoredMessage {
        StoredMessage {
            id: ClientMsgId::parse("m1").expect("id"),
            user: UserRef {
                id: "u1".into(),
                name: "alice".into(),
            },
            body: "hi".into(),
            ts: timestamp(DateTime::from_timestamp(1_767_225_600, 5_000_000).expect("time")),
        }
    }

    #[test]
    fn a_stored_message_has_one_shape_in_the_stream_in_history_and_on_the_wire() {
        let message = stored();
        assert_eq!(message.ts, "2026-01-01T00:00:00.005Z");
        assert_eq!(
            message.accepted_at().expect("a time"),
            DateTime::from_timestamp(1_767_225_600, 5_000_000).expect("time")
        );
        let payload = json!({"id": "m1", "user": {"id": "u1", "name": "alice"}, "body": "hi",
                             "ts": "2026-01-01T00:00:00.005Z"});
        assert_eq!(serde_json::to_value(&message).expect("json"), payload);

        let history = HistoryMessage {
            seq: 9,
            message: message.clone(),
        };
        let mut with_seq = payload.clone();
        with_seq["seq"] = json!(9);
        assert_eq!(serde_json::to_value(&history).expect("json"), with_seq);
        assert_eq!(
            serde_json::from_value::<HistoryMessage>(with_seq).expect("parses"),
            history
        );

        let frame =
            serde_json::to_value(message.into_frame(RoomId::parse("lobby").expect("room"), 9, 4)).expect("json");
        let mut want = payload;
        want["type"] = json!("message");
        want["room"] = json!("lobby");
        want["seq"] = json!(9);
        want["prev"] = json!(4);
        assert_eq!(frame, want);
    }

    #[test]
    fn room_events_and_revocations_have_stable_shapes() {
        let cases = [
            (RoomEvent::Deleted, json!({"kind": "deleted"})),
            (
                RoomEvent::MemberLeft { user: "u1".into() },
                json!({"kind": "member_left", "user": "u1"}),
            ),
            (
                RoomEvent::MemberRemoved { user: "u2".into() },
                json!({"kind": "member_removed", "user": "u2"}),
            ),
        ];
        for (event, want) in cases {
            assert_eq!(serde_json::to_value(&event).expect("json"), want);
            assert_eq!(serde_json::from_value::<RoomEvent>(want).expect("parses"), event);
        }
        assert_eq!(RoomEvent::Deleted.user(), None);
        assert_eq!(
            RoomEvent::MemberRemoved { user: "u2".into() }.left_reason(),
            "member_removed"
        );
        let revoked = RevokedSession {
            user: "u1".into(),
            reason: RevokeReason::RefreshReuse,
        };
        assert_eq!(
            serde_json::to_value(&revoked).expect("json"),
            json!({"user": "u1", "reason": "refresh_reuse"})
        );
    }

    #[test]
    fn a_time_that_is_not_rfc_3339_is_refused() {
        let mut message = stored();
        message.ts = "yesterday".into();
        assert!(message.accepted_at().is_err());
    }
}
