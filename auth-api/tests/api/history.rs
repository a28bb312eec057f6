//! The history API: keyset pages both ways, every message once and in order, private rooms for members only.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn store(app: &TestApp, room: &str, seq: i64) {
    sqlx::query(
        "INSERT INTO messages (seq, room_id, client_id, user_id, user_name, body, sent_at) \
         VALUES ($1, $2, $3, 'u1', 'alice', $4, now())",
    )
    .bind(seq)
    .bind(room)
    .bind(format!("m{seq}"))
    .bind(format!("body {seq}"))
    .execute(&app.db)
    .await
    .expect("insert a message");
}

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
    // 120 messages in the room, interleaved with another room's (sequences are stream-wide).
    let mut expected = Vec::new();
    for i in 1..=240 {
        if i % 2 == 0 {
            store(&app, &room, i).await;
            expected.push(i);
        } else {
            store(&app, "elsewhere", i).await;
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
        (Some("m2"), Some("alice"))
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
