//! The history API: keyset pages both ways, every message once and in order, private rooms for members only.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn store(app: &TestApp, room: &str, seq: i64) {
    store_in(app, room, 0, seq).await;
}

/// Stores a message at `seq` of the stream epoch `epoch`; its position (`seq` in the API) is `epoch + seq`.
async fn store_in(app: &TestApp, room: &str, epoch: i64, seq: i64) {
    sqlx::query(
        "INSERT INTO messages (epoch, seq, room_id, client_id, user_id, user_name, body, sent_at) \
         VALUES ($1, $2, $3, $4, 'u1', 'alice', $5, now())",
    )
    .bind(epoch)
    .bind(seq)
    .bind(room)
    .bind(format!("m{epoch}-{seq}"))
    .bind(format!("body {seq}"))
    .execute(&app.db)
    .await
    .expect("insert a message");
}

/// A stream epoch (its creation time in Unix microseconds) after the rows of epoch 0.
const LATER_EPOCH: i64 = 1_795_456_800_000_000;

fn seqs(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

#[tokio::test]
async fn pages_cover_every_message_once_in_order_both_ways() {
    let app = spawn_app().await;
    let token = app.token_for("hank").await;
    let room = app
        .call(Method::POST, "/api/rooms", Some(&token), Some(json!({"name": "h"})))
        .await
        .body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // 120 messages in the room, interleaved with another room's (sequences are stream-wide), over two epochs of
    // the stream: the second one's sequences start again at 1, its positions after every one of the first.
    let mut expected = Vec::new();
    for i in 1..=240 {
        let (epoch, seq) = if i <= 120 { (0, i) } else { (LATER_EPOCH, i - 120) };
        if i % 2 == 0 {
            store_in(&app, &room, epoch, seq).await;
            expected.push(epoch + seq);
        } else {
            store_in(&app, "elsewhere", epoch, seq).await;
        }
    }

    // Backwards from the newest.
    let mut seen: Vec<i64> = Vec::new();
    let mut path = format!("/api/rooms/{room}/messages?limit=50");
    loop {
        let page = app.get(&path, Some(&token)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let batch = seqs(&page.body);
        assert!(batch.windows(2).all(|w| w[0] > w[1]), "newest first: {batch:?}");
        seen.extend(&batch);
        if page.body["has_more"] == false {
            break;
        }
        path = format!(
            "/api/rooms/{room}/messages?limit=50&before={}",
            batch.last().expect("a message")
        );
    }
    let mut descending = expected.clone();
    descending.reverse();
    assert_eq!(seen, descending, "every message once");

    // Forwards from the start.
    let mut seen: Vec<i64> = Vec::new();
    let mut after: i64 = 0;
    loop {
        let page = app
            .get(
                &format!("/api/rooms/{room}/messages?limit=70&after={after}"),
                Some(&token),
            )
            .await;
        let batch = seqs(&page.body);
        seen.extend(&batch);
        if page.body["has_more"] == false {
            break;
        }
        after = *batch.last().expect("a message");
    }
    assert_eq!(seen, expected);
    let first = &app
        .get(&format!("/api/rooms/{room}/messages?after=0&limit=1"), Some(&token))
        .await
        .body["messages"][0];
    assert_eq!(
        (first["id"].as_str(), first["user"]["name"].as_str()),
        (Some("m0-2"), Some("alice"))
    );
}

#[tokio::test]
async fn history_checks_its_input_and_private_rooms() {
    let app = spawn_app().await;
    let owner = app.token_for("ivy").await;
    let outsider = app.token_for("jack").await;
    let room = app
        .call(
            Method::POST,
            "/api/rooms",
            Some(&owner),
            Some(json!({"name": "p", "private": true})),
        )
        .await
        .body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    store(&app, &room, 1).await;
    assert_eq!(
        seqs(&app.get(&format!("/api/rooms/{room}/messages"), Some(&owner)).await.body),
        vec![1]
    );
    app.get(&format!("/api/rooms/{room}/messages"), Some(&outsider))
        .await
        .assert_error(403, "room_private");
    app.get(&format!("/api/rooms/{room}/messages"), None)
        .await
        .assert_error(401, "missing_token");
    for bad in ["limit=0", "limit=201", "before=1&after=2", "before=abc"] {
        app.get(&format!("/api/rooms/{room}/messages?{bad}"), Some(&owner))
            .await
            .assert_error(400, "invalid_query");
    }
    app.get("/api/rooms/nosuch/messages", Some(&owner))
        .await
        .assert_error(404, "room_not_found");
}

#[tokio::test]
async fn deleting_a_room_deletes_its_history_and_no_other_room_s() {
    let app = spawn_app().await;
    let token = app.token_for("ines").await;
    let mut rooms = Vec::new();
    for name in ["gone", "kept"] {
        let created = app
            .call(Method::POST, "/api/rooms", Some(&token), Some(json!({"name": name})))
            .await;
        rooms.push(created.body["id"].as_str().expect("id").to_owned());
    }
    for seq in 1..=6 {
        store(&app, &rooms[(seq % 2) as usize], seq).await;
    }
    let deleted = app
        .call(Method::DELETE, &format!("/api/rooms/{}", rooms[0]), Some(&token), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let left: Vec<(String, i64)> = sqlx::query_as("SELECT room_id, seq FROM messages ORDER BY seq")
        .fetch_all(&app.db)
        .await
        .expect("rows");
    assert_eq!(
        left,
        vec![(rooms[1].clone(), 1), (rooms[1].clone(), 3), (rooms[1].clone(), 5)]
    );
    let page = app
        .get(&format!("/api/rooms/{}/messages", rooms[1]), Some(&token))
        .await;
    assert_eq!(seqs(&page.body), vec![5, 3, 1]);
}
