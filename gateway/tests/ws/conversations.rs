//! Direct conversations over two gateways: messages both ways like any room, and a block that closes the
//! conversation to both at once and keeps it closed until it is lifted.

use serde_json::json;

use crate::helpers::{Client, Stack};

/// Waits for the message saying `body` (a sender hears its own messages too).
async fn heard(client: &mut Client, body: &str) {
    while client.recv_type("message").await["body"] != body {}
}

#[tokio::test]
async fn a_direct_conversation_carries_messages_both_ways_and_a_block_closes_it_to_both_until_lifted() {
    let stack = Stack::start().await;
    let (a, b) = (stack.gateway(&[]).await, stack.gateway(&[]).await);
    let (ann_token, _) = stack.user("ann").await;
    let (bob_token, bob_id) = stack.user("bob").await;
    let (status, made) = stack
        .post_with("/api/conversations/direct", Some(&ann_token), json!({"user": "bob"}))
        .await;
    assert_eq!(status, 201, "{made}");
    let dm = made["id"].as_str().expect("id").to_owned();
    let mut ann = Client::connect(&a, &ann_token).await;
    ann.join(&dm, None).await;
    let mut bob = Client::connect(&b, &bob_token).await;
    bob.join(&dm, None).await;
    ann.say(&dm, "a1", "hi bob").await;
    heard(&mut bob, "hi bob").await;
    bob.say(&dm, "b1", "hi ann").await;
    heard(&mut ann, "hi ann").await;

    // A third person cannot take part, whatever they guess.
    let (eve_token, _) = stack.user("eve").await;
    let mut eve = Client::connect(&a, &eve_token).await;
    eve.send(json!({"type": "join", "room": dm})).await;
    assert_eq!(eve.recv_type("error").await["code"], "room_private");

    // ann blocks bob: both are out at once, on both gateways, and told why.
    let (status, body) = stack
        .put_with(&format!("/api/blocks/{bob_id}"), &ann_token, json!({}))
        .await;
    assert_eq!(status, 204, "{body}");
    for client in [&mut ann, &mut bob] {
        let left = client.recv_type("left").await;
        assert_eq!(left, json!({"type": "left", "room": dm, "reason": "blocked"}));
    }
    bob.send(json!({"type": "send", "room": dm, "id": "b2", "body": "hello?"}))
        .await;
    assert_eq!(bob.recv_type("error").await["code"], "not_joined");
    for client in [&mut ann, &mut bob] {
        client.send(json!({"type": "join", "room": dm})).await;
        assert_eq!(client.recv_type("error").await["code"], "blocked");
    }

    // Lifted: open again at once, as soon as each gateway has the room event that makes it forget the refusal it
    // remembers (a join racing the event may still be refused, for at most the 5 s a refusal is remembered).
    assert_eq!(
        stack.delete_with(&format!("/api/blocks/{bob_id}"), &ann_token).await,
        204
    );
    for client in [&mut bob, &mut ann] {
        let lifted = std::time::Instant::now();
        loop {
            client.send(json!({"type": "join", "room": dm})).await;
            let mut answer = client.recv().await;
            while answer["type"] != "joined" && answer["type"] != "error" {
                answer = client.recv().await;
            }
            if answer["type"] == "joined" {
                break;
            }
            assert_eq!(answer["code"], "blocked", "{answer}");
            assert!(
                lifted.elapsed() < std::time::Duration::from_secs(6),
                "still refused 6 s after the block was lifted"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    bob.say(&dm, "b3", "friends again").await;
    heard(&mut ann, "friends again").await;
}
