//! Personal events: pushed to every connection of a user over every gateway, not polled.

use serde_json::json;

use crate::helpers::{Client, Stack};

#[tokio::test]
async fn a_read_cursor_moved_on_one_device_reaches_the_users_other_connections_on_other_gateways() {
    let stack = Stack::start().await;
    let _persister = stack.persister().await;
    let (a, b) = (stack.gateway(&[]).await, stack.gateway(&[]).await);
    let (ann_token, _) = stack.user("ann").await;
    let (bob_token, _) = stack.user("bob").await;
    let room = stack.room(&ann_token, false).await;
    let (status, body) = stack
        .post_with(&format!("/api/rooms/{room}/join"), Some(&bob_token), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    // bob's phone on one gateway, his laptop on another; ann writes.
    let mut phone = Client::connect(&a, &bob_token).await;
    let mut laptop = Client::connect(&b, &bob_token).await;
    let mut ann = Client::connect(&a, &ann_token).await;
    ann.join(&room, None).await;
    let mut last = 0;
    for i in 0..3 {
        last = ann.say(&room, &format!("m{i}"), "unread for bob").await;
    }
    // Once stored, the phone reads up to the last: the laptop hears at once, with the room's counts now.
    let started = std::time::Instant::now();
    let cursor = loop {
        let (status, body) = stack
            .put_with(&format!("/api/rooms/{room}/read"), &bob_token, json!({"seq": last}))
            .await;
        assert_eq!(status, 200, "{body}");
        if body["last_seq"].as_u64() == Some(last) {
            break body;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "never stored: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let heard = loop {
        let frame = laptop.recv_type("personal").await;
        if frame["event"]["read_seq"].as_u64() == Some(last) {
            break frame;
        }
    };
    assert_eq!(
        heard["event"],
        json!({"kind": "read", "room": room, "read_seq": last, "unread": 0, "mentions": 0}),
        "{cursor}"
    );
    // The phone itself hears it too (its own other tabs are connections like any other); ann hears nothing.
    phone.recv_type("personal").await;
    ann.send(json!({"type": "ping", "id": "p"})).await;
    ann.recv_type("pong").await;
    assert!(ann.queued("personal").is_empty());

    // A conversation started with bob reaches both his devices as "your rooms changed".
    let (status, made) = stack
        .post_with("/api/conversations/direct", Some(&ann_token), json!({"user": "bob"}))
        .await;
    assert_eq!(status, 201, "{made}");
    for device in [&mut phone, &mut laptop] {
        let frame = loop {
            let frame = device.recv_type("personal").await;
            if frame["event"]["kind"] == "rooms" {
                break frame;
            }
        };
        assert_eq!(frame["event"]["room"], made["id"]);
    }
}
