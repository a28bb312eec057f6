//! Read cursors and unread counts: per user and room, kept by the API, the same from every device.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::helpers::spawn_app;

/// Stores a message as the persister would.
async fn store(app: &TestApp, room: &str, seq: i64, author: &str) {
    sqlx::query(
        "INSERT INTO messages (seq, room_id, client_id, user_id, user_name, body, sent_at) \
         VALUES ($1, $2, $3, $4, 'someone', 'text', now())",
    )
    .bind(seq)
    .bind(room)
    .bind(format!("m{seq}"))
    .bind(author)
    .execute(&app.db)
    .await
    .expect("insert a message");
}

struct User {
    id: String,
    token: String,
}

async fn user(app: &TestApp, name: &str) -> User {
    let body = app.register(name).await;
    User {
        id: body["user"]["id"].as_str().expect("user id").to_owned(),
        token: body["access_token"].as_str().expect("token").to_owned(),
    }
}

async fn create_room(app: &TestApp, owner: &User, name: &str, private: bool) -> String {
    let reply = app
        .call(
            Method::POST,
            "/api/rooms",
            Some(&owner.token),
            Some(json!({"name": name, "private": private})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().expect("id").to_owned()
}

async fn room_as(app: &TestApp, who: &User, id: &str) -> Value {
    let list = app.get("/api/rooms", Some(&who.token)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    list.body
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("room {id} not listed: {}", list.body))
}

async fn mark(app: &TestApp, who: &User, room: &str, seq: Value) -> crate::helpers::Reply {
    app.call(
        Method::PUT,
        &format!("/api/rooms/{room}/read"),
        Some(&who.token),
        Some(json!({ "seq": seq })),
    )
    .await
}

#[tokio::test]
async fn unread_counts_follow_the_cursor_and_skip_own_messages() {
    let app = spawn_app().await;
    let owner = user(&app, "rhea").await;
    let reader = user(&app, "remy").await;
    let room = create_room(&app, &owner, "news", false).await;
    // Two messages before the reader joins: already read for a new member.
    store(&app, &room, 1, &owner.id).await;
    store(&app, &room, 3, &owner.id).await;
    store(&app, "elsewhere", 4, &owner.id).await;
    let before = room_as(&app, &reader, &room).await;
    assert_eq!(
        (before["last_seq"].as_i64(), before["unread"].as_i64()),
        (Some(3), Some(0)),
        "{before}"
    );
    let joined = app
        .call(
            Method::POST,
            &format!("/api/rooms/{room}/join"),
            Some(&reader.token),
            None,
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    assert_eq!(
        joined.body["read_seq"], 3,
        "a new member starts at the last stored message"
    );
    assert_eq!(joined.body["unread"], 0);

    // Three more from the owner and one of the reader's own.
    for seq in [5, 6, 8] {
        store(&app, &room, seq, &owner.id).await;
    }
    store(&app, &room, 9, &reader.id).await;
    let listed = room_as(&app, &reader, &room).await;
    assert_eq!(listed["last_seq"], 9);
    assert_eq!(listed["unread"], 3, "own messages are never unread: {listed}");
    // The owner never read anything: everyone else's messages count, their own do not.
    assert_eq!(room_as(&app, &owner, &room).await["unread"], 1);

    let cursor = mark(&app, &reader, &room, json!(6)).await;
    assert_eq!(cursor.status, StatusCode::OK, "{}", cursor.body);
    assert_eq!(
        cursor.body,
        json!({"room": room, "read_seq": 6, "last_seq": 9, "unread": 1, "mentions": 0})
    );
    // A lower cursor never moves it back (two devices racing).
    let cursor = mark(&app, &reader, &room, json!(2)).await;
    assert_eq!(cursor.body["read_seq"], 6);
    // Another device of the same user sees the same count.
    let login = app
        .post("/api/login", json!({"username": "remy", "password": "correct horse"}))
        .await;
    let other_device = User {
        id: reader.id.clone(),
        token: login.body["access_token"].as_str().expect("token").to_owned(),
    };
    let there = room_as(&app, &other_device, &room).await;
    assert_eq!(
        (there["read_seq"].as_i64(), there["unread"].as_i64()),
        (Some(6), Some(1))
    );
    // A cursor may run ahead of stored history: live messages arrive before the persister stores them.
    let ahead = mark(&app, &reader, &room, json!(12)).await;
    assert_eq!(
        (ahead.body["read_seq"].as_i64(), ahead.body["unread"].as_i64()),
        (Some(12), Some(0))
    );
    store(&app, &room, 12, &owner.id).await;
    store(&app, &room, 13, &owner.id).await;
    assert_eq!(room_as(&app, &reader, &room).await["unread"], 1);
}

#[tokio::test]
async fn unread_counts_stop_at_the_cap() {
    let app = spawn_app().await;
    let owner = user(&app, "cara").await;
    let reader = user(&app, "cole").await;
    let room = create_room(&app, &owner, "busy", false).await;
    app.call(
        Method::POST,
        &format!("/api/rooms/{room}/join"),
        Some(&reader.token),
        None,
    )
    .await;
    sqlx::query(
        "INSERT INTO messages (seq, room_id, client_id, user_id, user_name, body, sent_at) \
         SELECT s, $1, 'm' || s, $2, 'cara', 'x', now() FROM generate_series(1, 1500) s",
    )
    .bind(&room)
    .bind(&owner.id)
    .execute(&app.db)
    .await
    .expect("bulk insert");
    let listed = room_as(&app, &reader, &room).await;
    assert_eq!(
        (listed["last_seq"].as_i64(), listed["unread"].as_i64()),
        (Some(1500), Some(1000))
    );
}

#[tokio::test]
async fn only_members_keep_a_cursor_and_bad_positions_are_refused() {
    let app = spawn_app().await;
    let owner = user(&app, "nell").await;
    let outsider = user(&app, "nico").await;
    let public = create_room(&app, &owner, "open", false).await;
    let private = create_room(&app, &owner, "closed", true).await;

    mark(&app, &outsider, &public, json!(1))
        .await
        .assert_error(403, "not_member");
    mark(&app, &outsider, &private, json!(1))
        .await
        .assert_error(403, "room_private");
    mark(&app, &owner, "nosuchroom", json!(1))
        .await
        .assert_error(404, "room_not_found");
    mark(&app, &owner, "bad.room", json!(1))
        .await
        .assert_error(400, "invalid_room_id");
    for bad in [json!(-1), json!(9_007_199_254_740_992_i64)] {
        mark(&app, &owner, &public, bad).await.assert_error(422, "invalid_seq");
    }
    for bad in [json!("7"), json!(1.5), Value::Null] {
        mark(&app, &owner, &public, bad).await.assert_error(422, "invalid_body");
    }
    let no_token = app
        .call(
            Method::PUT,
            &format!("/api/rooms/{public}/read"),
            None,
            Some(json!({"seq": 1})),
        )
        .await;
    no_token.assert_error(401, "missing_token");
    // Non-members see a public room's last position but no unread count.
    let seen = room_as(&app, &outsider, &public).await;
    assert_eq!(
        (seen["joined"].as_bool(), seen["unread"].as_i64()),
        (Some(false), Some(0))
    );
}
