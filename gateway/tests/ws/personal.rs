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
    // The phone itself hears it too (its own other tabs are connections like any other); ann hears nothing of it
    // (the auth API publishes its events on its own: "your rooms changed" for the room ann made may come only now).
    while phone.recv_type("personal").await["event"]["kind"] != "read" {}
    ann.send(json!({"type": "ping", "id": "p"})).await;
    ann.recv_type("pong").await;
    let heard = ann.queued("personal");
    assert!(heard.iter().all(|f| f["event"]["kind"] == "rooms"), "{heard:?}");

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

#[tokio::test]
async fn a_mention_reaches_every_connection_of_the_member_named_even_outside_the_room() {
    let stack = Stack::start().await;
    let (a, b) = (stack.gateway(&[]).await, stack.gateway(&[]).await);
    let (cleo_token, cleo_id) = stack.user("cleo").await;
    let (dev_token, dev_id) = stack.user("dev").await;
    let (outsider_token, _) = stack.user("eli").await;
    let room = stack.room(&cleo_token, false).await;
    let (status, body) = stack
        .post_with(&format!("/api/rooms/{room}/join"), Some(&dev_token), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    // dev is connected on both gateways and in no room; eli, not a member, is connected too.
    let mut dev_phone = Client::connect(&a, &dev_token).await;
    let mut dev_laptop = Client::connect(&b, &dev_token).await;
    let mut outsider = Client::connect(&b, &outsider_token).await;
    let mut cleo = Client::connect(&a, &cleo_token).await;
    cleo.join(&room, None).await;
    let seq = cleo.say(&room, "m1", "@dev @eli @cleo look at this").await;
    for device in [&mut dev_phone, &mut dev_laptop] {
        // dev's join through the API tells dev's connections "your rooms changed": maybe only now, as the auth API
        // publishes its events on its own.
        let frame = loop {
            let frame = device.recv_type("personal").await;
            if frame["event"]["kind"] != "rooms" {
                break frame;
            }
        };
        assert_eq!(
            frame["event"],
            json!({"kind": "mentioned", "room": room, "seq": seq, "by": {"id": cleo_id, "name": "cleo"}}),
            "{dev_id}"
        );
    }
    // Neither the author nor a non-member named in the text hears of it (the author may hear of the room it made).
    for client in [&mut cleo, &mut outsider] {
        client.send(json!({"type": "ping", "id": "p"})).await;
        client.recv_type("pong").await;
        let heard = client.queued("personal");
        assert!(heard.iter().all(|f| f["event"]["kind"] == "rooms"), "{heard:?}");
    }
}
