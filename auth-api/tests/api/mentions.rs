//! Mentions: resolved against the room's members only, counted per room after the read cursor, listed across the
//! caller's rooms newest first; and muting.

use chrono::Utc;
use natter_history::write::{Row, Rows, Writer};
use natter_proto::bus::{Change, MentionRequest, StoredMessage, timestamp};
use natter_proto::frame::UserRef;
use natter_proto::{ClientMsgId, RoomId};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, access, spawn_app};

fn id(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_owned()
}

fn person(tokens: &Value) -> UserRef {
    UserRef {
        id: id(&tokens["user"]),
        name: tokens["user"]["name"].as_str().expect("name").to_owned(),
    }
}

/// An event to write: its room, author, text, the members it mentions, and what it changes.
type Event<'a> = (&'a str, UserRef, &'a str, Vec<UserRef>, Option<Change>);

/// Writes events the way the persister does; returns their positions.
async fn write(app: &TestApp, first_seq: i64, events: Vec<Event<'_>>) -> Vec<u64> {
    let mut rows = Rows::with_capacity(0, events.len());
    let mut seqs = Vec::new();
    for (i, (room, user, body, mentions, change)) in events.into_iter().enumerate() {
        let seq = first_seq + i as i64;
        let now = Utc::now();
        rows.push(Row {
            seq,
            room: RoomId::parse(room).expect("room"),
            message: StoredMessage {
                id: ClientMsgId::parse(&format!("c{seq}")).expect("id"),
                user,
                body: body.to_owned(),
                ts: timestamp(now),
                reply_to: None,
                mentions,
                change,
            },
            sent_at: now,
        });
        seqs.push(seq as u64);
    }
    Writer::new(&app.db_url)
        .expect("writer")
        .write(&rows, &[])
        .await
        .expect("written");
    seqs
}

#[tokio::test]
async fn only_members_are_mentioned_and_each_sees_their_mentions_counted_and_listed() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let eve = app.register("eve").await;
    let lobby = id(&app.create_room(access(&ann), "Lobby", false).await);
    let side = id(&app.create_room(access(&ann), "Side", false).await);
    for room in [&lobby, &side] {
        app.post_as(access(&bob), &format!("/api/rooms/{room}/join")).await;
    }

    // The server decides who is mentioned: bob is a member, eve is not (she is notified of nothing), nobody is
    // no one; names are matched without regard to case and answered as registered.
    let request = MentionRequest {
        room: RoomId::parse(&lobby).expect("room"),
        names: vec!["BOB".into(), "eve".into(), "nobody".into()],
    };
    let members = natter_auth_api::fleet::mentioned_members(&app.db, &request)
        .await
        .expect("answered");
    assert_eq!(members, vec![person(&bob)]);

    let (a, b) = (person(&ann), person(&bob));
    let seqs = write(
        &app,
        1,
        vec![
            (&lobby, a.clone(), "@bob look", vec![b.clone()], None),
            (&lobby, a.clone(), "no mention", vec![], None),
            (&side, a.clone(), "@bob over here", vec![b.clone()], None),
            (&lobby, a.clone(), "@bob this one goes", vec![b.clone()], None),
        ],
    )
    .await;
    write(
        &app,
        5,
        vec![(&lobby, a.clone(), "", vec![], Some(Change::Delete { target: seqs[3] }))],
    )
    .await;

    // Counted per room after the read cursor (a deleted message mentions no one any more).
    let rooms = app.get("/api/rooms", Some(access(&bob))).await;
    let count = |room: &str| {
        rooms
            .body
            .as_array()
            .expect("rooms")
            .iter()
            .find(|r| r["id"] == room)
            .expect("listed")["mentions"]
            .clone()
    };
    assert_eq!((count(&lobby), count(&side)), (json!(1), json!(1)), "{}", rooms.body);
    let read = app
        .call(
            Method::PUT,
            &format!("/api/rooms/{lobby}/read"),
            Some(access(&bob)),
            Some(json!({"seq": seqs[0]})),
        )
        .await;
    // Two unread (a deleted message counts as unread too), no mention among them.
    assert_eq!(
        (read.body["unread"].as_i64(), read.body["mentions"].as_i64()),
        (Some(2), Some(0)),
        "{}",
        read.body
    );

    // Listed newest first across his rooms, with the room's name; paged.
    let page = app.get("/api/mentions?limit=1", Some(access(&bob))).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body["mentions"][0]["seq"].as_u64(), Some(seqs[2]));
    assert_eq!(page.body["mentions"][0]["room_name"], "Side");
    assert_eq!(page.body["has_more"], true);
    let next = app
        .get(&format!("/api/mentions?limit=1&before={}", seqs[2]), Some(access(&bob)))
        .await;
    assert_eq!(next.body["mentions"][0]["seq"].as_u64(), Some(seqs[0]));
    assert_eq!(next.body["mentions"][0]["body"], "@bob look");
    assert_eq!(next.body["has_more"], false);
    // Nobody else's; and not from a room he has left.
    let others = app.get("/api/mentions", Some(access(&eve))).await;
    assert_eq!(others.body["mentions"], json!([]));
    app.post_as(access(&bob), &format!("/api/rooms/{side}/leave")).await;
    let after = app.get("/api/mentions", Some(access(&bob))).await;
    assert_eq!(
        after.body["mentions"].as_array().expect("mentions").len(),
        1,
        "{}",
        after.body
    );
    for bad in ["limit=0", "limit=101", "before=-1", "limit=x"] {
        app.get(&format!("/api/mentions?{bad}"), Some(access(&bob)))
            .await
            .assert_error(400, "invalid_query");
    }
}

#[tokio::test]
async fn a_member_mutes_and_unmutes_a_room_and_only_members_may() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let eve = app.register("eve").await;
    let room = id(&app.create_room(access(&ann), "Noisy", false).await);
    let path = format!("/api/rooms/{room}/mute");
    let mute = async |who: &Value, muted: bool| {
        app.call(Method::PUT, &path, Some(access(who)), Some(json!({"muted": muted})))
            .await
    };
    let muted = mute(&ann, true).await;
    assert_eq!(
        (muted.status, muted.body["muted"].clone()),
        (StatusCode::OK, json!(true)),
        "{}",
        muted.body
    );
    let listed = app.get(&format!("/api/rooms/{room}"), Some(access(&ann))).await;
    assert_eq!(listed.body["muted"], true);
    assert_eq!(mute(&ann, false).await.body["muted"], false);
    mute(&eve, true).await.assert_error(403, "not_member");
}
