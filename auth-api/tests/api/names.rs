//! Names that cannot spoof: user and room names holding a direction control, an invisible format character or a
//! control character are refused where they are made, with the character named, and nothing is stored.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{access, spawn_app};

/// Names that would show as another name or reorder what is around them, with the character each is refused for.
const SPOOFS: [(&str, &str); 10] = [
    ("evil\u{202E}gpj", "U+202E"),
    ("\u{202D}admin", "U+202D"),
    ("ann\u{2066}a\u{2069}", "U+2066"),
    ("bob\u{200F}", "U+200F"),
    ("admin\u{200B}", "U+200B"),
    ("ad\u{200D}min", "U+200D"),
    ("\u{FEFF}carol", "U+FEFF"),
    ("dave\u{2060}", "U+2060"),
    ("eve\u{0007}", "U+0007"),
    ("frank\u{001B}[2J", "U+001B"),
];

#[tokio::test]
async fn user_names_that_could_spoof_are_refused_at_register_and_guest() {
    let app = spawn_app().await;
    for (name, found) in SPOOFS {
        for reply in [
            app.post("/api/register", json!({"username": name, "password": "correct horse"}))
                .await,
            app.post("/api/guest", json!({"username": name})).await,
        ] {
            reply.assert_error(422, "invalid_username");
            let message = reply.body["error"]["message"].as_str().expect("a message");
            assert!(
                message.contains(found) && message.contains("look like another"),
                "{name:?}: {message}"
            );
        }
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(users, 0, "nothing was made");
}

#[tokio::test]
async fn room_names_that_could_spoof_are_refused_and_ordinary_ones_of_any_script_are_not() {
    let app = spawn_app().await;
    let owner = app.register("gina").await;
    let create = |name: &str| {
        app.call(
            Method::POST,
            "/api/rooms",
            Some(access(&owner)),
            Some(json!({"name": name})),
        )
    };
    for (name, found) in SPOOFS.into_iter().chain([
        ("General\u{2028}Announcements", "U+2028"),
        ("\u{3164}", "U+3164"),
        ("  \u{200B}  ", "U+200B"),
    ]) {
        let reply = create(name).await;
        reply.assert_error(422, "invalid_room_name");
        let message = reply.body["error"]["message"].as_str().expect("a message");
        assert!(
            message.starts_with("room name must not hold") && message.contains(found),
            "{name:?}: {message}"
        );
    }
    let rooms: i64 = sqlx::query_scalar("SELECT count(*) FROM rooms")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(rooms, 0, "nothing was made");

    for name in ["Café", "Ελληνικά", "עברית", "العربية", "日本語", "party 🎉 ❤\u{FE0F}"] {
        let reply = create(name).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{name:?}: {}", reply.body);
        assert_eq!(reply.body["name"], name);
    }
}
