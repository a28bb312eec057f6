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
    /// For a message: the position of the message it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    /// For a message: the room's members it mentions (`@name` in its text), as the auth API resolved them when the
    /// gateway accepted it; never what a client claimed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<UserRef>,
    /// For a change to an earlier message (an edit, a deletion, a reaction) rather than a message: what it
    /// changes. An edit's new text is `body`; a deletion's and a reaction's `body` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
}

/// A change to an earlier message of the room, an event on the room's chain like a message. `target` is the
/// message's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// The author replaced the text with the event's `body`.
    Edit {
        /// The message edited.
        target: u64,
    },
    /// The author or the room's owner deleted the message.
    Delete {
        /// The message deleted.
        target: u64,
    },
    /// The event's author added (`on`) or took back a reaction.
    React {
        /// The message reacted to.
        target: u64,
        /// The emoji.
        emoji: String,
        /// Added or taken back.
        on: bool,
    },
}

impl Change {
    /// The position of the message changed.
    pub fn target(&self) -> u64 {
        match self {
            Change::Edit { target } | Change::Delete { target } | Change::React { target, .. } => *target,
        }
    }

    /// The kind as history names it: `edit`, `delete` or `react`.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Edit { .. } => "edit",
            Change::Delete { .. } => "delete",
            Change::React { .. } => "react",
        }
    }
}

impl StoredMessage {
    /// A message (not a change) as the gateway accepts it now.
    pub fn message(id: ClientMsgId, user: UserRef, body: String, reply_to: Option<u64>) -> Self {
        Self {
            id,
            user,
            body,
            ts: timestamp(Utc::now()),
            reply_to,
            mentions: Vec::new(),
            change: None,
        }
    }

    /// A change to an earlier message as the gateway accepts it now.
    pub fn change(id: ClientMsgId, user: UserRef, body: String, change: Change) -> Self {
        Self {
            id,
            user,
            body,
            ts: timestamp(Utc::now()),
            reply_to: None,
            mentions: Vec::new(),
            change: Some(change),
        }
    }

    /// The frame for this event at position `seq` in `room`, whose previous event is at `prev`: a `message`, or
    /// the `edited`, `deleted` or `reacted` of a change.
    pub fn into_frame(self, room: RoomId, seq: u64, prev: u64) -> ServerFrame {
        let Self {
            id,
            user,
            body,
            ts,
            reply_to,
            mentions,
            change,
        } = self;
        match change {
            None => ServerFrame::Message {
                room,
                seq,
                prev,
                id,
                user,
                body,
                ts,
                reply_to,
                mentions,
            },
            Some(Change::Edit { target }) => ServerFrame::Edited {
                room,
                seq,
                prev,
                id,
                user,
                target,
                body,
                ts,
            },
            Some(Change::Delete { target }) => ServerFrame::Deleted {
                room,
                seq,
                prev,
                id,
                user,
                target,
                ts,
            },
            Some(Change::React { target, emoji, on }) => ServerFrame::Reacted {
                room,
                seq,
                prev,
                id,
                user,
                target,
                emoji,
                on,
                ts,
            },
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
    /// The message (or the change event) as its author sent it; a message's `body` is its current text: the
    /// newest edit's, or empty once deleted.
    #[serde(flatten)]
    pub message: StoredMessage,
    /// A message's newest edit folded in, if it was edited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<EditMark>,
    /// A deleted message's tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Tombstone>,
    /// A message's reactions: each emoji with how many reacted with it and whether the caller did, most first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionCount>,
    /// The position of the newest reaction event folded into `reactions` (0: none). A reaction event at or below
    /// it is counted already.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reactions_seq: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// When a message was last edited, and by which edit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EditMark {
    /// The edit event's position: an edit event at or below it is folded in already.
    pub seq: u64,
    /// When it was accepted (RFC 3339).
    pub at: String,
}

/// What is left of a deleted message: who deleted it and when; its text is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tombstone {
    /// The user id of who deleted it (its author, or the room's owner).
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
}

/// One emoji's reactions to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReactionCount {
    /// The emoji.
    pub emoji: String,
    /// How many users reacted with it.
    pub count: u32,
    /// Whether the caller is one of them.
    pub me: bool,
    /// Their user ids, in the order they reacted: a client folding later reaction events needs to know who is
    /// counted already.
    pub users: Vec<String>,
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

/// How many connections some users hold on one gateway, on [`crate::subject::gateway_user_connections`] (the
/// users whose count changed lately) or in answer to [`crate::subject::gateway_user_connections_sync`] (every
/// user with a connection there). Counts are absolute, not changes, so a message seen twice does no harm; a user
/// whose last connection there closed is sent with 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConnectionCounts {
    /// The gateway's id.
    pub gateway: String,
    /// The gateway's process instance (as in [`GatewayInfo::instance`]): counts of an earlier instance under the
    /// same id are dropped when a new one speaks.
    pub instance: String,
    /// (user id, connections on this gateway) pairs.
    pub counts: Vec<(String, u32)>,
}

/// A gateway's question to the auth-api: may this user join this room?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomAccessRequest {
    /// The room.
    pub room: RoomId,
    /// The user id (`sub` of their token).
    pub user: String,
    /// Whether to answer [`RoomAccess::Owner`] when the user owns or moderates the room (asked before one deletes
    /// another's message; a join does not ask, so its answer is one a gateway may share for the room).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub owner: bool,
    /// A reaction the user is about to add: the answer is [`RoomAccess::TooManyReactions`] when its message has
    /// [`crate::text::MAX_REACTION_EMOJI`] different emoji already and not this one (asked before each reaction
    /// added; an auth API that does not know the field answers as if it were not there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<NewReaction>,
}

/// A gateway's question to the auth API: which of these names, mentioned in a message, are the room's members?
/// Answered with those members as a JSON array of [`UserRef`] (their names as registered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MentionRequest {
    /// The room.
    pub room: RoomId,
    /// The names mentioned ([`crate::text::mentioned_names`]).
    pub names: Vec<String>,
}

/// A gateway's question to the auth API: which of these users, connected to a room, are its members (and so see
/// its live drafts, which people previewing a public room do not)? Answered with the members' ids as a JSON array
/// of strings. At most [`MAX_MEMBERS_ASKED`] users are looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersRequest {
    /// The room.
    pub room: RoomId,
    /// The users' ids.
    pub users: Vec<String>,
}

/// Most users one [`MembersRequest`] asks about.
pub const MAX_MEMBERS_ASKED: usize = 1000;

/// A reaction about to be added, in a [`RoomAccessRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewReaction {
    /// The position of the message reacted to.
    pub target: u64,
    /// The emoji.
    pub emoji: String,
}

/// The auth-api's answer to a [`RoomAccessRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomAccess {
    /// The room is public and bans no one: this user and every other may join it (a gateway may remember that for
    /// the room).
    Public,
    /// The room is private and the user is a member, or public with bans and the user not banned.
    Allowed,
    /// The room is private and the user is not a member.
    Denied,
    /// There is no such room.
    NotFound,
    /// The user owns the room or is one of its moderators (only when the request asked with `owner`): they may
    /// delete others' messages.
    Owner,
    /// The user is banned from the room.
    Banned,
    /// The room is a direct conversation one of whose two people blocked the other.
    Blocked,
    /// The message of the request's `reaction` has as many different emoji as it may, and not this one.
    TooManyReactions,
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

/// A change to a room that gateways must apply to the sockets already in it, or to what they remember of who may
/// join it, on [`crate::subject::room_events`] (core NATS; gateways do not rely on having seen it: a gateway that
/// was disconnected revalidates its rooms, and every gateway asks again about its rooms' users periodically).
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
    /// The room's owner or a moderator removed the user from it.
    MemberRemoved {
        /// The user id.
        user: String,
    },
    /// The room's owner or a moderator banned the user: their sockets are taken out, and what a gateway knew of
    /// the whole room is forgotten (a public room with a ban is no longer open to every user alike).
    MemberBanned {
        /// The user id.
        user: String,
    },
    /// The user joined the private room through the API: a gateway that remembers refusing them forgets it
    /// (nobody is taken out).
    MemberJoined {
        /// The user id.
        user: String,
    },
    /// One of a direct conversation's two people blocked the other: both are taken out of it.
    Blocked,
    /// The block was lifted: gateways forget refusing the conversation (nobody is taken out).
    Unblocked,
}

impl RoomEvent {
    /// The user the event is about, or `None` for the whole room.
    pub fn user(&self) -> Option<&str> {
        match self {
            Self::Deleted | Self::Blocked | Self::Unblocked => None,
            Self::MemberLeft { user }
            | Self::MemberRemoved { user }
            | Self::MemberBanned { user }
            | Self::MemberJoined { user } => Some(user),
        }
    }

    /// The `reason` of the `left` frame the affected sockets get (docs/protocol.md), or `None` when the event
    /// takes nobody out.
    pub fn left_reason(&self) -> Option<&'static str> {
        match self {
            Self::Deleted => Some(crate::frame::left_reason::ROOM_DELETED),
            Self::MemberLeft { .. } => Some(crate::frame::left_reason::MEMBER_LEFT),
            Self::MemberRemoved { .. } => Some(crate::frame::left_reason::MEMBER_REMOVED),
            Self::MemberBanned { .. } => Some(crate::frame::left_reason::BANNED),
            Self::Blocked => Some(crate::frame::left_reason::BLOCKED),
            Self::MemberJoined { .. } | Self::Unblocked => None,
        }
    }
}

/// Stream sequences of one epoch of the chat stream, as sorted, disjoint, inclusive ranges: what a persister
/// committed to history for one room in one batch (on [`crate::subject::persisted_notice`]), what a gateway asks
/// about on [`crate::subject::persisted_ask`], and the persister's answer (those of them history holds). Ranges,
/// because a batch's sequences are mostly runs; a set, because writers commit batches out of order, so "everything
/// up to N" would claim what is not committed yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedSeqs {
    /// The stream's epoch (natter-stream's `epoch`): sequences of another epoch are other messages.
    pub epoch: u64,
    /// `[first, last]` ranges, ascending; a range whose first is above its last means nothing.
    pub seqs: Vec<(u64, u64)>,
}

impl PersistedSeqs {
    /// Most sequences one ask names: a gateway asks in chunks of at most this many, and a persister looks up no
    /// more than this many of an ask (a hostile range cannot make it read the whole history).
    pub const MAX_ASKED: u64 = 4096;

    /// The sequences `seqs` (any order, repeats allowed) of epoch `epoch`, as ranges.
    pub fn new(epoch: u64, seqs: impl IntoIterator<Item = u64>) -> Self {
        let mut all: Vec<u64> = seqs.into_iter().collect();
        all.sort_unstable();
        all.dedup();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for seq in all {
            match ranges.last_mut() {
                Some((_, last)) if last.checked_add(1) == Some(seq) => *last = seq,
                _ => ranges.push((seq, seq)),
            }
        }
        Self { epoch, seqs: ranges }
    }

    /// Whether `seq` is one of them.
    pub fn contains(&self, seq: u64) -> bool {
        self.seqs.iter().any(|&(first, last)| first <= seq && seq <= last)
    }

    /// How many sequences the ranges name (saturating: a hostile range may name billions).
    pub fn count(&self) -> u64 {
        self.seqs
            .iter()
            .filter(|(first, last)| first <= last)
            .fold(0u64, |n, (first, last)| {
                n.saturating_add(last - first).saturating_add(1)
            })
    }

    /// Every sequence named, ascending within each range; the caller bounds it with [`PersistedSeqs::count`].
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.seqs.iter().flat_map(|&(first, last)| first..=last)
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
            reply_to: None,
            mentions: Vec::new(),
            change: None,
        }
    }

    #[test]
    fn changes_travel_in_the_stream_as_events_and_reach_the_wire_as_their_frames() {
        let room = || RoomId::parse("lobby").expect("room");
        let reply = StoredMessage {
            reply_to: Some(3),
            ..stored()
        };
        let wire = json!({"id": "m1", "user": {"id": "u1", "name": "alice"}, "body": "hi",
                          "ts": "2026-01-01T00:00:00.005Z", "reply_to": 3});
        assert_eq!(serde_json::to_value(&reply).expect("json"), wire);
        assert_eq!(serde_json::from_value::<StoredMessage>(wire).expect("parses"), reply);
        assert!(matches!(
            reply.into_frame(room(), 9, 4),
            ServerFrame::Message { reply_to: Some(3), .. }
        ));

        let cases = [
            (
                Change::Edit { target: 3 },
                "hello",
                json!({"kind": "edit", "target": 3}),
                "edited",
            ),
            (
                Change::Delete { target: 3 },
                "",
                json!({"kind": "delete", "target": 3}),
                "deleted",
            ),
            (
                Change::React {
                    target: 3,
                    emoji: "👍".into(),
                    on: true,
                },
                "",
                json!({"kind": "react", "target": 3, "emoji": "👍", "on": true}),
                "reacted",
            ),
        ];
        for (change, body, change_wire, frame_type) in cases {
            let event = StoredMessage {
                body: body.into(),
                change: Some(change.clone()),
                ..stored()
            };
            let payload = serde_json::to_value(&event).expect("json");
            assert_eq!(payload["change"], change_wire);
            assert_eq!(serde_json::from_value::<StoredMessage>(payload).expect("parses"), event);
            assert_eq!(change.target(), 3);
            let frame = serde_json::to_value(event.into_frame(room(), 9, 4)).expect("json");
            assert_eq!(frame["type"], frame_type);
            assert_eq!(
                (frame["seq"].as_u64(), frame["prev"].as_u64(), frame["target"].as_u64()),
                (Some(9), Some(4), Some(3))
            );
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
            edited: None,
            deleted: None,
            reactions: Vec::new(),
            reactions_seq: 0,
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
    fn user_connection_counts_have_a_stable_shape() {
        let counts = UserConnectionCounts {
            gateway: "g1".into(),
            instance: "00ff".into(),
            counts: vec![("u1".into(), 2), ("u2".into(), 0)],
        };
        let want = json!({"gateway": "g1", "instance": "00ff", "counts": [["u1", 2], ["u2", 0]]});
        assert_eq!(serde_json::to_value(&counts).expect("json"), want);
        assert_eq!(
            serde_json::from_value::<UserConnectionCounts>(want).expect("parses"),
            counts
        );
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
            (
                RoomEvent::MemberJoined { user: "u3".into() },
                json!({"kind": "member_joined", "user": "u3"}),
            ),
        ];
        for (event, want) in cases {
            assert_eq!(serde_json::to_value(&event).expect("json"), want);
            assert_eq!(serde_json::from_value::<RoomEvent>(want).expect("parses"), event);
        }
        assert_eq!(RoomEvent::Deleted.user(), None);
        assert_eq!(
            RoomEvent::MemberRemoved { user: "u2".into() }.left_reason(),
            Some("member_removed")
        );
        assert_eq!(RoomEvent::MemberJoined { user: "u3".into() }.left_reason(), None);
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

    #[test]
    fn persisted_sequences_travel_as_ranges() {
        let seqs = PersistedSeqs::new(9, [7, 3, 4, 5, 5, 10, 11, u64::MAX]);
        assert_eq!(seqs.seqs, vec![(3, 5), (7, 7), (10, 11), (u64::MAX, u64::MAX)]);
        assert_eq!(
            serde_json::to_value(&seqs).expect("json"),
            json!({"epoch": 9, "seqs": [[3, 5], [7, 7], [10, 11], [u64::MAX, u64::MAX]]})
        );
        assert!(seqs.contains(4) && seqs.contains(11) && !seqs.contains(6) && !seqs.contains(2));
        assert_eq!(seqs.count(), 7);
        assert_eq!(seqs.iter().take(4).collect::<Vec<_>>(), vec![3, 4, 5, 7]);
        let back: PersistedSeqs =
            serde_json::from_str(r#"{"epoch":9,"seqs":[[5,1],[0,18446744073709551615]]}"#).expect("parses");
        assert!(back.contains(3), "a reversed range names nothing, the other everything");
        assert_eq!(back.count(), u64::MAX, "saturates");
        assert!(serde_json::from_str::<PersistedSeqs>(r#"{"epoch":9,"seqs":[[1]]}"#).is_err());
        assert_eq!(PersistedSeqs::new(1, []).count(), 0);
    }
}
