//! Messages that travel between Natter processes over NATS (not over the WebSocket).
//!
//! Each type is the JSON payload of one subject family built in [`crate::subject`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::frame::UserRef;
use crate::{ClientMsgId, RoomId};

/// Name of the JetStream stream holding every chat message.
pub const CHAT_STREAM: &str = "CHAT";

/// How long JetStream remembers a `Nats-Msg-Id` to drop a resend of the same message.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A gateway whose last heartbeat is older than this is no longer assigned to clients.
pub const GATEWAY_TTL: Duration = Duration::from_secs(10);

/// The payload of a chat message as stored in the stream (subject [`crate::subject::room_messages`]).
///
/// Its sequence and its room's previous sequence are not in the payload: they come from JetStream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// The id the author's client chose.
    pub id: ClientMsgId,
    /// The author.
    pub user: UserRef,
    /// The text.
    pub body: String,
    /// When the gateway accepted it (RFC 3339, UTC).
    pub ts: String,
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
