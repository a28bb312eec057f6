//! NATS subject builders: the only place a subject string is made.
//!
//! Each builder takes a validated [`RoomId`], so a hostile room name can never widen a subscription or escape
//! its subject. Version `v1` is part of every subject so a future wire change can run beside this one.

use crate::RoomId;

/// Prefix of every subject Natter uses.
pub const PREFIX: &str = "chat.v1";

/// The subject a chat message is published to (captured by the JetStream chat stream).
pub fn room_messages(room: &RoomId) -> String {
    format!("{PREFIX}.room.{room}.msg")
}

/// The filter matching every room's message subject: the chat stream's subject.
pub fn all_room_messages() -> String {
    format!("{PREFIX}.room.*.msg")
}

/// The subject JetStream republishes a room's stored messages to, in stream order, with their sequences.
pub fn room_live(room: &RoomId) -> String {
    format!("{PREFIX}.live.room.{room}")
}

/// The republish destination template for the chat stream (`{{wildcard(1)}}` is the room id).
pub fn live_republish_template() -> String {
    format!("{PREFIX}.live.room.{{{{wildcard(1)}}}}")
}

/// Everything ephemeral about a room (typing, presence, presence sync): what a gateway subscribes to, next to
/// the room's live subject, while it has local members.
pub fn room_ephemeral(room: &RoomId) -> String {
    format!("{PREFIX}.ephemeral.{room}.>")
}

/// The subject ephemeral typing drafts of a room travel on (core NATS).
pub fn room_typing(room: &RoomId) -> String {
    format!("{PREFIX}.ephemeral.{room}.typing")
}

/// The subject presence changes of a room travel on (core NATS).
pub fn room_presence(room: &RoomId) -> String {
    format!("{PREFIX}.ephemeral.{room}.presence")
}

/// The subject a gateway asks every other gateway on, for who is online in a room (request, many replies).
pub fn room_presence_sync(room: &RoomId) -> String {
    format!("{PREFIX}.ephemeral.{room}.sync")
}

/// The subject gateways announce themselves on every few seconds.
pub fn gateway_heartbeat() -> String {
    format!("{PREFIX}.gateway.heartbeat")
}

/// The subject gateways ask the auth-api on whether a user may join a room (request/reply, queue group).
pub fn room_access() -> String {
    format!("{PREFIX}.auth.room_access")
}

/// The subject the auth API announces a room's lifecycle changes on ([`crate::bus::RoomEvent`], core NATS).
pub fn room_events(room: &RoomId) -> String {
    format!("{PREFIX}.events.room.{room}")
}

/// The filter matching every room's lifecycle events: what each gateway subscribes to once.
pub fn all_room_events() -> String {
    format!("{PREFIX}.events.room.*")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str) -> RoomId {
        RoomId::parse(id).expect("valid room id")
    }

    #[test]
    fn subjects_have_one_token_per_room() {
        let r = room("lobby");
        assert_eq!(room_messages(&r), "chat.v1.room.lobby.msg");
        assert_eq!(room_live(&r), "chat.v1.live.room.lobby");
        assert_eq!(room_typing(&r), "chat.v1.ephemeral.lobby.typing");
        assert_eq!(room_presence(&r), "chat.v1.ephemeral.lobby.presence");
        assert_eq!(room_ephemeral(&r), "chat.v1.ephemeral.lobby.>");
        assert_eq!(all_room_messages(), "chat.v1.room.*.msg");
        assert_eq!(live_republish_template(), "chat.v1.live.room.{{wildcard(1)}}");
        assert_eq!(room_presence_sync(&r), "chat.v1.ephemeral.lobby.sync");
        assert_eq!(gateway_heartbeat(), "chat.v1.gateway.heartbeat");
        assert_eq!(room_access(), "chat.v1.auth.room_access");
        assert_eq!(room_events(&r), "chat.v1.events.room.lobby");
        assert_eq!(all_room_events(), "chat.v1.events.room.*");
        for subject in [
            room_messages(&r),
            room_live(&r),
            room_typing(&r),
            room_presence(&r),
            room_presence_sync(&r),
            room_events(&r),
        ] {
            assert!(subject.split('.').all(|t| !t.is_empty() && t != "*" && t != ">"));
        }
    }
}
