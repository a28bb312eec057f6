//! Wire protocol v1: the JSON text frames exchanged over the gateway's WebSocket.
//!
//! Frames are internally tagged by `type` in snake_case. The names are the public contract documented in
//! `docs/protocol.md`; changing one is a protocol version change.

use serde::{Deserialize, Serialize};

use crate::{ClientMsgId, RoomId};

/// The protocol version these frames belong to.
pub const PROTOCOL_VERSION: u32 = 1;

/// A frame sent by a client to a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Join a room; with `since`, replay what was missed after that sequence.
    Join {
        /// The room to join.
        room: RoomId,
        /// The last sequence the client saw in this room; absent for live messages only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// Leave a room.
    Leave {
        /// The room to leave.
        room: RoomId,
    },
    /// Send a chat message.
    Send {
        /// The room to send to.
        room: RoomId,
        /// The client-chosen id; a resend with the same id is stored once.
        id: ClientMsgId,
        /// The message text.
        body: String,
        /// The `seq` of the message of the same room this one answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
    },
    /// Replace the text of one of the user's own messages.
    Edit {
        /// The room of the message.
        room: RoomId,
        /// The client-chosen id of this change; a resend with the same id is stored once.
        id: ClientMsgId,
        /// The `seq` of the message to edit.
        target: u64,
        /// The new text (the rules of `send`'s body).
        body: String,
    },
    /// Delete a message: the user's own, or any in a room the user owns.
    Delete {
        /// The room of the message.
        room: RoomId,
        /// The client-chosen id of this change.
        id: ClientMsgId,
        /// The `seq` of the message to delete.
        target: u64,
    },
    /// Add (`on`) or take back (`on: false`) the user's reaction with one emoji to a message.
    React {
        /// The room of the message.
        room: RoomId,
        /// The client-chosen id of this change.
        id: ClientMsgId,
        /// The `seq` of the message reacted to.
        target: u64,
        /// One emoji ([`crate::text::single_emoji`]).
        emoji: String,
        /// Whether the reaction is added (true) or taken back (false).
        on: bool,
    },
    /// Stream the current draft; an empty text clears it.
    Typing {
        /// The room being typed in.
        room: RoomId,
        /// The draft as typed so far.
        text: String,
    },
    /// Ask for a pong carrying the same id.
    Ping {
        /// Echoed back in the pong.
        id: String,
    },
    /// Replace the connection's access token before it expires.
    Refresh {
        /// A fresh access JWT.
        token: String,
    },
}

/// Why a connection was taken out of a room: the `reason` of a [`ServerFrame::Left`] it did not ask for.
pub mod left_reason {
    /// The room was deleted.
    pub const ROOM_DELETED: &str = "room_deleted";
    /// The user left the room through the API (another tab or device).
    pub const MEMBER_LEFT: &str = "member_left";
    /// The room's owner or a moderator removed the user.
    pub const MEMBER_REMOVED: &str = "member_removed";
    /// The room's owner or a moderator banned the user.
    pub const BANNED: &str = "banned";
    /// One of a direct conversation's two people blocked the other.
    pub const BLOCKED: &str = "blocked";
    /// Asked again (periodically, or after the gateway may have missed room events), the auth API no longer lets the
    /// user in.
    pub const ACCESS_REVOKED: &str = "access_revoked";
}

/// A user as shown to other users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserRef {
    /// The user's stable id.
    pub id: String,
    /// The user's name.
    pub name: String,
}

/// An event of one user's own, pushed to every connection of theirs (subject `chat.v1.user.{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PersonalEvent {
    /// The user's read cursor in a room moved (on any device): the room's counts as they now are.
    Read {
        /// The room.
        room: RoomId,
        /// The cursor.
        read_seq: i64,
        /// Unread messages after it.
        unread: i64,
        /// Of those, the ones that mention the user.
        mentions: i64,
    },
    /// The user's rooms changed: a conversation was started with them, they joined, left, were removed or banned,
    /// a room of theirs was deleted. The client re-reads its rooms.
    Rooms {
        /// The room concerned.
        room: RoomId,
    },
    /// A message mentioning the user was stored: told even to connections not in the room, once it is acked.
    Mentioned {
        /// The room.
        room: RoomId,
        /// The message's position.
        seq: u64,
        /// Its author.
        by: UserRef,
    },
}

/// A frame sent by a gateway to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The first frame on every connection.
    Hello {
        /// This connection's id.
        conn: String,
        /// The id of the gateway serving it.
        gateway: String,
        /// The authenticated user.
        user: UserRef,
        /// Whether the user's personal events since their last connection will be delivered. Always `false`: they
        /// are not kept, so a client re-reads what they tell of (its rooms, their unread counts) after each
        /// `hello`, as after a `joined` with `recovered: false`. (Absent from older gateways' frames: `false`.)
        #[serde(default)]
        personal_recovered: bool,
    },
    /// The room was joined.
    Joined {
        /// The room.
        room: RoomId,
        /// The room's last sequence once any replay below is complete.
        seq: u64,
        /// Whether every message after `since` was (or will be) replayed; false means reload from history.
        recovered: bool,
        /// Who is online in the room.
        members: Vec<UserRef>,
    },
    /// A chat message.
    Message {
        /// The room.
        room: RoomId,
        /// The message's position in the room.
        seq: u64,
        /// The position of the previous message in the same room (0 for the first).
        prev: u64,
        /// The id the author's client chose.
        id: ClientMsgId,
        /// The author.
        user: UserRef,
        /// The text.
        body: String,
        /// When the gateway accepted it (RFC 3339).
        ts: String,
        /// The `seq` of the message this one answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        /// The room's members the text mentions (`@name`), resolved by the server.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<UserRef>,
    },
    /// A message's text was replaced by its author: an event on the room's chain, with its own `seq` and `prev`.
    Edited {
        /// The room.
        room: RoomId,
        /// This event's position in the room.
        seq: u64,
        /// The position of the previous event in the room.
        prev: u64,
        /// The id the editor's client chose for the change.
        id: ClientMsgId,
        /// The editor (the message's author).
        user: UserRef,
        /// The `seq` of the message edited.
        target: u64,
        /// The new text.
        body: String,
        /// When the gateway accepted the change (RFC 3339).
        ts: String,
    },
    /// A message was deleted: its text is gone everywhere. An event on the room's chain.
    Deleted {
        /// The room.
        room: RoomId,
        /// This event's position in the room.
        seq: u64,
        /// The position of the previous event in the room.
        prev: u64,
        /// The id the deleter's client chose for the change.
        id: ClientMsgId,
        /// Who deleted it: its author, or the room's owner.
        user: UserRef,
        /// The `seq` of the message deleted.
        target: u64,
        /// When the gateway accepted the change (RFC 3339).
        ts: String,
    },
    /// A user added or took back a reaction to a message. An event on the room's chain.
    Reacted {
        /// The room.
        room: RoomId,
        /// This event's position in the room.
        seq: u64,
        /// The position of the previous event in the room.
        prev: u64,
        /// The id the reacting client chose for the change.
        id: ClientMsgId,
        /// Who reacted.
        user: UserRef,
        /// The `seq` of the message reacted to.
        target: u64,
        /// The emoji.
        emoji: String,
        /// Added (true) or taken back (false).
        on: bool,
        /// When the gateway accepted the change (RFC 3339).
        ts: String,
    },
    /// The client's message or change was stored with this sequence.
    Ack {
        /// The room.
        room: RoomId,
        /// The client-chosen id of the acknowledged message or change.
        id: ClientMsgId,
        /// The stored sequence.
        seq: u64,
    },
    /// Users joined or left the room.
    Presence {
        /// The room.
        room: RoomId,
        /// Users who came online in the room.
        #[serde(default)]
        joined: Vec<UserRef>,
        /// Users who went offline in the room.
        #[serde(default)]
        left: Vec<UserRef>,
    },
    /// Another user's live draft.
    Typing {
        /// The room.
        room: RoomId,
        /// Who is typing.
        user: UserRef,
        /// The draft; empty when cleared.
        text: String,
    },
    /// The room was left: asked for by the client (no `reason`), or the connection was taken out of it.
    Left {
        /// The room.
        room: RoomId,
        /// Why the connection was taken out of the room (one of [`left_reason`]); absent for the client's own
        /// `leave`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Something happened to the user elsewhere (another device, the API, another person): see [`PersonalEvent`].
    Personal {
        /// What happened.
        event: PersonalEvent,
    },
    /// Answer to a ping.
    Pong {
        /// The ping's id.
        id: String,
    },
    /// Something the client sent could not be done.
    Error {
        /// A stable machine-readable code.
        code: String,
        /// Human text.
        message: String,
        /// The id of the frame this answers, if it had one.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn room() -> RoomId {
        RoomId::parse("lobby").expect("valid room")
    }

    fn user() -> UserRef {
        UserRef {
            id: "u1".into(),
            name: "alice".into(),
        }
    }

    /// Asserts that `frame` serializes to exactly `wire` and that `wire` parses back to `frame`.
    fn round_trip<T>(frame: T, wire: Value)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        assert_eq!(serde_json::to_value(&frame).expect("serializes"), wire);
        let back: T = serde_json::from_value(wire).expect("parses");
        assert_eq!(back, frame);
    }

    #[test]
    fn client_frames_round_trip() {
        round_trip(
            ClientFrame::Join {
                room: room(),
                since: Some(7),
            },
            json!({"type":"join","room":"lobby","since":7}),
        );
        round_trip(
            ClientFrame::Join {
                room: room(),
                since: None,
            },
            json!({"type":"join","room":"lobby"}),
        );
        round_trip(
            ClientFrame::Leave { room: room() },
            json!({"type":"leave","room":"lobby"}),
        );
        round_trip(
            ClientFrame::Send {
                room: room(),
                id: ClientMsgId::parse("m1").expect("valid id"),
                body: "hi".into(),
                reply_to: None,
            },
            json!({"type":"send","room":"lobby","id":"m1","body":"hi"}),
        );
        round_trip(
            ClientFrame::Send {
                room: room(),
                id: ClientMsgId::parse("m2").expect("valid id"),
                body: "yes".into(),
                reply_to: Some(9),
            },
            json!({"type":"send","room":"lobby","id":"m2","body":"yes","reply_to":9}),
        );
        round_trip(
            ClientFrame::Edit {
                room: room(),
                id: ClientMsgId::parse("e1").expect("valid id"),
                target: 9,
                body: "fixed".into(),
            },
            json!({"type":"edit","room":"lobby","id":"e1","target":9,"body":"fixed"}),
        );
        round_trip(
            ClientFrame::Delete {
                room: room(),
                id: ClientMsgId::parse("d1").expect("valid id"),
                target: 9,
            },
            json!({"type":"delete","room":"lobby","id":"d1","target":9}),
        );
        round_trip(
            ClientFrame::React {
                room: room(),
                id: ClientMsgId::parse("r1").expect("valid id"),
                target: 9,
                emoji: "👍".into(),
                on: false,
            },
            json!({"type":"react","room":"lobby","id":"r1","target":9,"emoji":"👍","on":false}),
        );
        round_trip(
            ClientFrame::Typing {
                room: room(),
                text: "h".into(),
            },
            json!({"type":"typing","room":"lobby","text":"h"}),
        );
        round_trip(ClientFrame::Ping { id: "p".into() }, json!({"type":"ping","id":"p"}));
        round_trip(
            ClientFrame::Refresh { token: "t".into() },
            json!({"type":"refresh","token":"t"}),
        );
    }

    #[test]
    fn server_frames_round_trip() {
        round_trip(
            ServerFrame::Hello {
                conn: "c".into(),
                gateway: "g".into(),
                user: user(),
                personal_recovered: false,
            },
            json!({"type":"hello","conn":"c","gateway":"g","user":{"id":"u1","name":"alice"},"personal_recovered":false}),
        );
        round_trip(
            ServerFrame::Joined {
                room: room(),
                seq: 9,
                recovered: true,
                members: vec![user()],
            },
            json!({"type":"joined","room":"lobby","seq":9,"recovered":true,"members":[{"id":"u1","name":"alice"}]}),
        );
        round_trip(
            ServerFrame::Message {
                room: room(),
                seq: 9,
                prev: 4,
                id: ClientMsgId::parse("m1").expect("valid id"),
                user: user(),
                body: "hi".into(),
                ts: "2026-01-01T00:00:00Z".into(),
                reply_to: None,
                mentions: Vec::new(),
            },
            json!({"type":"message","room":"lobby","seq":9,"prev":4,"id":"m1",
                   "user":{"id":"u1","name":"alice"},"body":"hi","ts":"2026-01-01T00:00:00Z"}),
        );
        round_trip(
            ServerFrame::Message {
                room: room(),
                seq: 10,
                prev: 9,
                id: ClientMsgId::parse("m2").expect("valid id"),
                user: user(),
                body: "yes".into(),
                ts: "2026-01-01T00:00:00Z".into(),
                reply_to: Some(9),
                mentions: vec![UserRef {
                    id: "u2".into(),
                    name: "bob".into(),
                }],
            },
            json!({"type":"message","room":"lobby","seq":10,"prev":9,"id":"m2",
                   "user":{"id":"u1","name":"alice"},"body":"yes","ts":"2026-01-01T00:00:00Z","reply_to":9,
                   "mentions":[{"id":"u2","name":"bob"}]}),
        );
        round_trip(
            ServerFrame::Edited {
                room: room(),
                seq: 11,
                prev: 10,
                id: ClientMsgId::parse("e1").expect("valid id"),
                user: user(),
                target: 9,
                body: "hello".into(),
                ts: "2026-01-01T00:00:01Z".into(),
            },
            json!({"type":"edited","room":"lobby","seq":11,"prev":10,"id":"e1","user":{"id":"u1","name":"alice"},
                   "target":9,"body":"hello","ts":"2026-01-01T00:00:01Z"}),
        );
        round_trip(
            ServerFrame::Deleted {
                room: room(),
                seq: 12,
                prev: 11,
                id: ClientMsgId::parse("d1").expect("valid id"),
                user: user(),
                target: 9,
                ts: "2026-01-01T00:00:02Z".into(),
            },
            json!({"type":"deleted","room":"lobby","seq":12,"prev":11,"id":"d1","user":{"id":"u1","name":"alice"},
                   "target":9,"ts":"2026-01-01T00:00:02Z"}),
        );
        round_trip(
            ServerFrame::Reacted {
                room: room(),
                seq: 13,
                prev: 12,
                id: ClientMsgId::parse("r1").expect("valid id"),
                user: user(),
                target: 10,
                emoji: "🎉".into(),
                on: true,
                ts: "2026-01-01T00:00:03Z".into(),
            },
            json!({"type":"reacted","room":"lobby","seq":13,"prev":12,"id":"r1","user":{"id":"u1","name":"alice"},
                   "target":10,"emoji":"🎉","on":true,"ts":"2026-01-01T00:00:03Z"}),
        );
        round_trip(
            ServerFrame::Ack {
                room: room(),
                id: ClientMsgId::parse("m1").expect("valid id"),
                seq: 9,
            },
            json!({"type":"ack","room":"lobby","id":"m1","seq":9}),
        );
        round_trip(
            ServerFrame::Presence {
                room: room(),
                joined: vec![user()],
                left: vec![],
            },
            json!({"type":"presence","room":"lobby","joined":[{"id":"u1","name":"alice"}],"left":[]}),
        );
        round_trip(
            ServerFrame::Typing {
                room: room(),
                user: user(),
                text: "dr".into(),
            },
            json!({"type":"typing","room":"lobby","user":{"id":"u1","name":"alice"},"text":"dr"}),
        );
        round_trip(
            ServerFrame::Left {
                room: room(),
                reason: None,
            },
            json!({"type":"left","room":"lobby"}),
        );
        round_trip(
            ServerFrame::Left {
                room: room(),
                reason: Some(left_reason::ROOM_DELETED.into()),
            },
            json!({"type":"left","room":"lobby","reason":"room_deleted"}),
        );
        round_trip(ServerFrame::Pong { id: "p".into() }, json!({"type":"pong","id":"p"}));
        round_trip(
            ServerFrame::Error {
                code: "bad_frame".into(),
                message: "no".into(),
                reference: Some("m1".into()),
            },
            json!({"type":"error","code":"bad_frame","message":"no","ref":"m1"}),
        );
        round_trip(
            ServerFrame::Error {
                code: "bad_frame".into(),
                message: "no".into(),
                reference: None,
            },
            json!({"type":"error","code":"bad_frame","message":"no"}),
        );
    }

    #[test]
    fn malformed_client_frames_are_refused() {
        for bad in [
            r#"{"type":"join","room":"a.b"}"#,
            r#"{"type":"join","room":"*"}"#,
            r#"{"type":"explode"}"#,
            r#"{"room":"lobby"}"#,
            r#"{"type":"join","room":"lobby","extra":1}"#,
            r#"{"type":"send","room":"lobby","id":"a b","body":"x"}"#,
            r#"{"type":"join","room":"lobby","since":-1}"#,
            r#"{"type":"edit","room":"lobby","id":"e1","body":"x"}"#,
            r#"{"type":"delete","room":"lobby","id":"d1","target":"9"}"#,
            r#"{"type":"react","room":"lobby","id":"r1","target":9,"emoji":"👍"}"#,
            r#"{"type":"send","room":"lobby","id":"m1","body":"x","reply_to":-3}"#,
            r#"[1,2]"#,
            "not json",
        ] {
            assert!(
                serde_json::from_str::<ClientFrame>(bad).is_err(),
                "{bad} must be refused"
            );
        }
    }
}
