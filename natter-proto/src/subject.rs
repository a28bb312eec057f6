//! NATS subject builders: the only place a subject string is made.
//!
//! Each builder takes a validated [`RoomId`], so a hostile room name can never widen a subscription or escape
//! its subject. Version `v1` is part of every subject so a future wire change can run beside this one.

use crate::RoomId;

/// Prefix of every subject Natter uses.
pub const PREFIX: &str = "chat.v1";

/// How many partitions the rooms' messages are spread over, fleet-wide: each persister reads a share of them
/// (docs/architecture.md, "Persister and history"). Part of every message subject, so changing it moves rooms
/// between partitions: it is a constant of the wire, not a setting.
pub const PARTITIONS: u8 = 16;

/// The partition a room's messages belong to: FNV-1a (32-bit) of the room id's bytes, modulo [`PARTITIONS`].
/// Stable across versions, platforms and processes (its values are fixed by a test), since every gateway and
/// persister must agree on it.
pub fn partition(room: &RoomId) -> u8 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let hash = room
        .as_str()
        .bytes()
        .fold(OFFSET, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(PRIME));
    // The remainder is below PARTITIONS, itself a u8.
    (hash % u32::from(PARTITIONS)) as u8
}

/// The subject a chat message is published to (captured by the JetStream chat stream): the room is the fourth
/// token, its partition the sixth.
pub fn room_messages(room: &RoomId) -> String {
    format!("{PREFIX}.room.{room}.msg.{}", partition(room))
}

/// The filter matching every room's message subject: the chat stream's subject.
pub fn all_room_messages() -> String {
    format!("{PREFIX}.room.*.msg.*")
}

/// The filter matching the message subjects of every room in partition `partition` (below [`PARTITIONS`]): what
/// the persister reading that partition consumes.
pub fn partition_messages(partition: u8) -> String {
    format!("{PREFIX}.room.*.msg.{partition}")
}

/// The chat stream's subject before messages were partitioned. Nothing publishes to it any more; a stream still
/// made with it is recognised and updated in place (natter-stream's `ensure`).
pub fn unpartitioned_room_messages() -> String {
    format!("{PREFIX}.room.*.msg")
}

/// The subject JetStream republishes a room's stored messages to, in stream order, with their sequences: the
/// room's message subject under `live` (the partition comes along because nats-server 2.9 refuses a republish
/// destination that drops one of its source's wildcards).
pub fn room_live(room: &RoomId) -> String {
    format!("{PREFIX}.live.room.{room}.{}", partition(room))
}

/// The republish destination template for the chat stream (`{{wildcard(1)}}` is the room id, `{{wildcard(2)}}`
/// its partition).
pub fn live_republish_template() -> String {
    format!("{PREFIX}.live.room.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}")
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

/// The subject a gateway tells the others on how many connections some users hold on it
/// ([`crate::bus::UserConnectionCounts`], core NATS), so a per-user connection cap holds across the fleet.
pub fn gateway_user_connections() -> String {
    format!("{PREFIX}.gateway.user_connections")
}

/// The subject a starting gateway asks every other gateway on for their users' connection counts (request, many
/// replies: each answers with [`crate::bus::UserConnectionCounts`] messages to the reply subject).
pub fn gateway_user_connections_sync() -> String {
    format!("{PREFIX}.gateway.user_connections_sync")
}

/// The subject gateways ask the auth-api on whether a user may join a room (request/reply, queue group).
pub fn room_access() -> String {
    format!("{PREFIX}.auth.room_access")
}

/// The subject gateways ask the auth API on which of the names a message mentions are the room's members
/// ([`crate::bus::MentionRequest`], answered with the members as `UserRef`s; request/reply, queue group).
pub fn mentions() -> String {
    format!("{PREFIX}.auth.mentions")
}

/// The subject gateways ask the auth API on which of a room's connected users are its members, who see its live
/// drafts ([`crate::bus::MembersRequest`], answered with their ids; request/reply, queue group).
pub fn members() -> String {
    format!("{PREFIX}.auth.members")
}

/// The subject of one user's personal events ([`crate::frame::PersonalEvent`], core NATS): `user` is a user id,
/// which the caller has checked is a safe subject token (a UUID).
pub fn user_events(user: &str) -> String {
    format!("{PREFIX}.user.{user}")
}

/// The filter matching every user's personal events: what each gateway subscribes to once.
pub fn all_user_events() -> String {
    format!("{PREFIX}.user.*")
}

/// The subject the auth API announces a room's lifecycle changes on ([`crate::bus::RoomEvent`], core NATS).
pub fn room_events(room: &RoomId) -> String {
    format!("{PREFIX}.events.room.{room}")
}

/// The filter matching every room's lifecycle events: what each gateway subscribes to once.
pub fn all_room_events() -> String {
    format!("{PREFIX}.events.room.*")
}

/// The subject a persister announces, right after a batch's commit, which stream sequences of a room it wrote to
/// history ([`crate::bus::PersistedSeqs`], core NATS): what a gateway with `--ack-after persisted` waits for.
pub fn persisted_notice(room: &RoomId) -> String {
    format!("{PREFIX}.persisted.room.{room}")
}

/// The filter matching every room's persisted notices: what such a gateway subscribes to once.
pub fn all_persisted_notices() -> String {
    format!("{PREFIX}.persisted.room.*")
}

/// The subject a gateway asks the persisters on which of some stream sequences history holds (request/reply,
/// queue group): for a notice it may have missed, and for a resend JetStream called a duplicate.
pub fn persisted_ask() -> String {
    format!("{PREFIX}.persisted.ask")
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
        assert_eq!(room_messages(&r), "chat.v1.room.lobby.msg.3");
        assert_eq!(room_live(&r), "chat.v1.live.room.lobby.3");
        assert_eq!(room_typing(&r), "chat.v1.ephemeral.lobby.typing");
        assert_eq!(room_presence(&r), "chat.v1.ephemeral.lobby.presence");
        assert_eq!(room_ephemeral(&r), "chat.v1.ephemeral.lobby.>");
        assert_eq!(all_room_messages(), "chat.v1.room.*.msg.*");
        assert_eq!(partition_messages(3), "chat.v1.room.*.msg.3");
        assert_eq!(unpartitioned_room_messages(), "chat.v1.room.*.msg");
        assert_eq!(
            live_republish_template(),
            "chat.v1.live.room.{{wildcard(1)}}.{{wildcard(2)}}"
        );
        assert_eq!(room_presence_sync(&r), "chat.v1.ephemeral.lobby.sync");
        assert_eq!(gateway_heartbeat(), "chat.v1.gateway.heartbeat");
        assert_eq!(gateway_user_connections(), "chat.v1.gateway.user_connections");
        assert_eq!(gateway_user_connections_sync(), "chat.v1.gateway.user_connections_sync");
        assert_eq!(room_access(), "chat.v1.auth.room_access");
        assert_eq!(mentions(), "chat.v1.auth.mentions");
        assert_eq!(members(), "chat.v1.auth.members");
        assert_eq!(room_events(&r), "chat.v1.events.room.lobby");
        assert_eq!(all_room_events(), "chat.v1.events.room.*");
        assert_eq!(persisted_notice(&r), "chat.v1.persisted.room.lobby");
        assert_eq!(all_persisted_notices(), "chat.v1.persisted.room.*");
        assert_eq!(persisted_ask(), "chat.v1.persisted.ask");
        for subject in [
            room_messages(&r),
            room_live(&r),
            room_typing(&r),
            room_presence(&r),
            room_presence_sync(&r),
            room_events(&r),
            persisted_notice(&r),
        ] {
            assert!(subject.split('.').all(|t| !t.is_empty() && t != "*" && t != ">"));
        }
    }

    #[test]
    fn partitions_are_fnv1a_of_the_room_id_and_never_change() {
        // Fixed values: a change here moves rooms between partitions under a running fleet. ("a" hashes to
        // 0xe40c292c, FNV-1a's published value, and 0xe40c292c mod 16 is 12.)
        for (id, want) in [
            ("a", 12),
            ("0", 15),
            ("Z", 13),
            ("lobby", 3),
            ("general", 11),
            ("room-42", 3),
            ("bench0", 11),
            ("bench1", 8),
            ("abc123def456", 3),
        ] {
            assert_eq!(partition(&room(id)), want, "{id}");
        }
        let mut seen = [0usize; PARTITIONS as usize];
        for i in 0..1600 {
            seen[usize::from(partition(&room(&format!("r{i}"))))] += 1;
        }
        assert!(
            seen.iter().all(|n| (50..=150).contains(n)),
            "1600 rooms spread over every partition: {seen:?}"
        );
        for r in ["lobby", "a", "general"].map(room) {
            assert!(
                room_messages(&r).ends_with(&format!(".msg.{}", partition(&r))),
                "a room's subject carries its partition"
            );
        }
    }
}
