//! Feeds arbitrary bytes to the client-frame parser, as the gateway does with every text message: whatever
//! arrives, parsing returns a frame or an error and never panics. A frame that parses survives serializing and
//! parsing again unchanged, and every room id in it is a safe NATS subject token: each subject built from it has
//! exactly the intended tokens, none of them empty, a wildcard or holding '.', whitespace or control characters.
//! A client message id is not a subject token (it may hold '.'), but it goes into the `Nats-Msg-Id` header, so
//! it must hold no whitespace or control characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natter_proto::frame::ClientFrame;
use natter_proto::{ClientMsgId, RoomId, bus, subject};

/// A subject token that cannot widen a subscription or split into two tokens.
fn safe_token(token: &str) -> bool {
    !token.is_empty()
        && token != "*"
        && token != ">"
        && !token
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
}

fn check_room(room: &RoomId) {
    let id = room.as_str();
    assert!(safe_token(id), "room id {id:?} is not a safe subject token");
    assert!(id.len() <= RoomId::MAX_LEN, "room id {id:?} is over-long");
    // Every subject built from a room has the room as exactly one token, at its place, and the room's messages
    // carry its partition as their last token.
    let partition = subject::partition(room);
    assert!(partition < subject::PARTITIONS, "room id {id:?} in partition {partition}");
    for subject in [subject::room_messages(room), subject::room_live(room)] {
        assert!(subject.ends_with(&format!(".{partition}")), "{subject:?} ends in its partition");
    }
    let built = [
        (subject::room_messages(room), 3, 6),
        (subject::room_live(room), 4, 6),
        (subject::room_typing(room), 3, 5),
        (subject::room_presence(room), 3, 5),
        (subject::room_presence_sync(room), 3, 5),
        (subject::room_events(room), 4, 5),
    ];
    for (subject, at, count) in built {
        let tokens: Vec<&str> = subject.split('.').collect();
        assert_eq!(tokens.len(), count, "{subject:?} has {count} tokens");
        assert_eq!(tokens[at], id, "{subject:?} holds the room at token {at}");
        assert!(tokens.iter().all(|t| safe_token(t)), "{subject:?} has an unsafe token");
    }
    // The ephemeral subscription ends in the one intended wildcard, and nowhere else.
    let ephemeral = subject::room_ephemeral(room);
    let tokens: Vec<&str> = ephemeral.split('.').collect();
    assert_eq!(tokens.len(), 5, "{ephemeral:?}");
    assert_eq!(tokens[4], ">", "{ephemeral:?}");
    assert!(
        tokens[..4].iter().all(|t| safe_token(t)),
        "{ephemeral:?} has an unsafe token"
    );
}

fn check_message_id(id: &ClientMsgId) {
    let raw = id.as_str();
    assert!(
        !raw.is_empty() && raw.len() <= ClientMsgId::MAX_LEN,
        "message id {raw:?} length"
    );
    let header = bus::message_dedup_id("user", id);
    assert!(
        header.bytes().all(|b| b.is_ascii_graphic()),
        "the Nats-Msg-Id {header:?} is not a safe header value"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(frame) = serde_json::from_str::<ClientFrame>(text) else {
        return;
    };
    // A frame the gateway accepted reads back the same after it is written out.
    let wire = serde_json::to_string(&frame).expect("a parsed frame serializes");
    let again: ClientFrame = serde_json::from_str(&wire).expect("a serialized frame parses");
    assert_eq!(again, frame, "round trip through {wire}");
    match &frame {
        ClientFrame::Join { room, .. } | ClientFrame::Leave { room } | ClientFrame::Typing { room, .. } => {
            check_room(room)
        }
        ClientFrame::Send { room, id, .. } => {
            check_room(room);
            check_message_id(id);
        }
        ClientFrame::Ping { .. } | ClientFrame::Refresh { .. } => {}
    }
});
