//! Edits, deletions, reactions and replies: each an event on the room's chain, checked by the gateway against
//! the message it targets, delivered to every member across gateways, recovered on rejoin, folded into history.

use serde_json::{Value, json};

use crate::helpers::{Client, Stack, WAIT};

/// Sends a change frame and returns its ack's `seq`, or the error frame's code.
async fn change(client: &mut Client, frame: Value) -> Result<u64, String> {
    let id = frame["id"].as_str().expect("id").to_owned();
    client.send(frame).await;
    loop {
        let next = client.recv().await;
        match next["type"].as_str() {
            Some("ack") if next["id"] == id.as_str() => return Ok(next["seq"].as_u64().expect("seq")),
            Some("error") if next["ref"] == id.as_str() => {
                return Err(next["code"].as_str().expect("code").to_owned());
            }
            _ => {}
        }
    }
}

/// The next frame of `kind` whose `id` is `id`.
async fn event(client: &mut Client, kind: &str, id: &str) -> Value {
    loop {
        let frame = client.recv_type(kind).await;
        if frame["id"] == id {
            return frame;
        }
    }
}

/// The room's history page (newest first) as `token` sees it, once `until` holds of it.
async fn history_until(stack: &Stack, token: &str, room: &str, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let page = stack
            .get_with(&format!("/api/rooms/{room}/messages?limit=200"), token)
            .await;
        let events = page["messages"].as_array().cloned().unwrap_or_default();
        if until(&events) {
            return events;
        }
        assert!(started.elapsed() < WAIT, "history never got there: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn at(events: &[Value], seq: u64) -> Value {
    events.iter().find(|e| e["seq"] == seq).cloned().unwrap_or(Value::Null)
}

#[tokio::test]
async fn changes_reach_every_member_in_order_are_checked_and_fold_into_history() {
    let stack = Stack::start().await;
    let _persister = stack.persister().await;
    let (a, b) = (stack.gateway(&[]).await, stack.gateway(&[]).await);
    let (alice_token, alice_id) = stack.user("olga").await;
    let (bob_token, bob_id) = stack.user("piet").await;
    let room = stack.room(&alice_token, false).await;
    let other_room = stack.room(&alice_token, false).await;
    let mut alice = Client::connect(&a, &alice_token).await;
    alice.join(&room, None).await;
    alice.join(&other_room, None).await;
    let mut bob = Client::connect(&b, &bob_token).await;
    bob.join(&room, None).await;

    let first = alice.say(&room, "a1", "helo").await;
    let bobs = bob.say(&room, "b1", "a secret said too soon").await;
    let elsewhere = alice.say(&other_room, "x1", "in another room").await;

    // An edit by the author reaches the other gateway as an event on the chain, after the last message.
    let edit = json!({"type": "edit", "room": room, "id": "e1", "target": first, "body": "hello"});
    let edited_at = change(&mut alice, edit.clone()).await.expect("the author may edit");
    let edited = event(&mut bob, "edited", "e1").await;
    assert_eq!(
        (
            edited["seq"].as_u64(),
            edited["prev"].as_u64(),
            edited["target"].as_u64(),
            edited["body"].as_str()
        ),
        (Some(edited_at), Some(bobs), Some(first), Some("hello")),
        "{edited}"
    );
    // The same change sent again (a client retrying) is stored once.
    assert_eq!(change(&mut alice, edit).await, Ok(edited_at));

    // Refusals, each with its code.
    let refused = [
        (
            json!({"type": "edit", "room": room, "id": "r1", "target": first, "body": "mine now"}),
            "not_author",
        ),
        (
            json!({"type": "delete", "room": room, "id": "r2", "target": first}),
            "not_author",
        ),
        (
            json!({"type": "edit", "room": room, "id": "r3", "target": bobs, "body": " "}),
            "invalid_body",
        ),
        (
            json!({"type": "react", "room": room, "id": "r4", "target": first, "emoji": "ok", "on": true}),
            "invalid_emoji",
        ),
        (
            json!({"type": "react", "room": room, "id": "r5", "target": 9_000_000_000_000_000u64, "emoji": "👍", "on": true}),
            "not_found",
        ),
        (
            json!({"type": "react", "room": room, "id": "r6", "target": elsewhere, "emoji": "👍", "on": true}),
            "not_found",
        ),
        (
            json!({"type": "edit", "room": room, "id": "r7", "target": edited_at, "body": "an edit of an edit"}),
            "not_found",
        ),
        (
            json!({"type": "send", "room": room, "id": "r8", "body": "re", "reply_to": elsewhere}),
            "not_found",
        ),
        (
            json!({"type": "delete", "room": other_room, "id": "r9", "target": elsewhere}),
            "not_joined",
        ),
    ];
    for (frame, code) in refused {
        assert_eq!(change(&mut bob, frame.clone()).await, Err(code.to_owned()), "{frame}");
    }

    // Reactions: the same reaction sent twice counts once; anyone in the room may react.
    let thumbs = json!({"type": "react", "room": room, "id": "t1", "target": first, "emoji": "👍", "on": true});
    let thumbs_at = change(&mut bob, thumbs.clone()).await.expect("a reaction");
    assert_eq!(change(&mut bob, thumbs).await, Ok(thumbs_at));
    let reacted = event(&mut alice, "reacted", "t1").await;
    assert_eq!(
        (reacted["emoji"].as_str(), reacted["on"].as_bool()),
        (Some("👍"), Some(true)),
        "{reacted}"
    );
    change(
        &mut alice,
        json!({"type": "react", "room": room, "id": "t2", "target": first, "emoji": "👍", "on": true}),
    )
    .await
    .expect("a second user's reaction");
    change(
        &mut alice,
        json!({"type": "react", "room": room, "id": "t3", "target": first, "emoji": "🎉", "on": true}),
    )
    .await
    .expect("another emoji");
    change(
        &mut alice,
        json!({"type": "react", "room": room, "id": "t4", "target": first, "emoji": "🎉", "on": false}),
    )
    .await
    .expect("taken back");

    // A reply names what it answers.
    bob.send(json!({"type": "send", "room": room, "id": "b2", "body": "hi!", "reply_to": first}))
        .await;
    let reply = event(&mut alice, "message", "b2").await;
    assert_eq!(reply["reply_to"].as_u64(), Some(first), "{reply}");

    // The owner deletes another's message (the only change that asks the auth API).
    let deleted_at = change(
        &mut alice,
        json!({"type": "delete", "room": room, "id": "d1", "target": bobs}),
    )
    .await
    .expect("the owner may delete");
    let deleted = event(&mut bob, "deleted", "d1").await;
    assert_eq!(deleted["target"].as_u64(), Some(bobs), "{deleted}");

    // History folds every change in: the edit, the tombstone, the reactions as each caller sees them. (Two
    // writers may commit a room's batches out of order: wait for all nine events, each applied once whatever
    // the order.)
    let events = history_until(&stack, &bob_token, &room, |events| {
        events.len() == 9 && !at(events, bobs)["deleted"].is_null()
    })
    .await;
    let message = at(&events, first);
    assert_eq!(message["body"], "hello", "{message}");
    assert_eq!(message["edited"]["seq"].as_u64(), Some(edited_at), "{message}");
    assert_eq!(
        message["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true, "users": [bob_id, alice_id]}]),
        "{message}"
    );
    let gone = at(&events, bobs);
    assert_eq!(
        (gone["body"].as_str(), gone["deleted"]["by"].as_str()),
        (Some(""), Some(alice_id.as_str())),
        "{gone}"
    );
    assert_eq!(
        at(&events, deleted_at)["kind"],
        Value::Null,
        "events carry their change: {events:?}"
    );
    assert_eq!(at(&events, deleted_at)["change"]["kind"], "delete");
    assert_eq!(at(&events, thumbs_at)["change"]["emoji"], "👍");
    assert_eq!(at(&events, thumbs_at)["user"]["id"], bob_id.as_str());
    let reply_row = events.iter().find(|e| e["id"] == "b2").expect("the reply");
    assert_eq!(reply_row["reply_to"].as_u64(), Some(first));

    // The deleted words are nowhere: not in the table, not in a rejoin's replay of the whole stream.
    let db = sqlx::PgPool::connect(&stack.db_url).await.expect("database");
    let (body, deleted_by): (String, Option<String>) =
        sqlx::query_as("SELECT body, deleted_by FROM messages WHERE room_id = $1 AND position = $2")
            .bind(&room)
            .bind(i64::try_from(bobs).expect("position"))
            .fetch_one(&db)
            .await
            .expect("the tombstone row");
    assert_eq!((body.as_str(), deleted_by.as_deref()), ("", Some(alice_id.as_str())));
    // The persister erases the words from the stream after its commit, before its ack: a rejoin's replay may
    // still carry them for that long, never longer.
    let started = std::time::Instant::now();
    let (replayed, text) = loop {
        let mut late = Client::connect(&b, &bob_token).await;
        late.send(json!({"type": "join", "room": room, "since": 0})).await;
        let joined = late.recv_type("joined").await;
        assert_eq!(joined["recovered"], true, "{joined}");
        let newest = joined["seq"].as_u64().expect("seq");
        let mut replayed = Vec::new();
        while replayed.last().and_then(|f: &Value| f["seq"].as_u64()) != Some(newest) {
            replayed.push(late.recv().await);
        }
        let text = serde_json::to_string(&replayed).expect("json");
        if !text.contains("a secret said too soon") || started.elapsed() > WAIT {
            break (replayed, text);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        !text.contains("a secret said too soon"),
        "the deleted body was replayed: {text}"
    );
    assert!(replayed.iter().any(|f| f["type"] == "deleted"), "{text}");
    // A deleted message takes no more changes.
    assert_eq!(
        change(
            &mut bob,
            json!({"type": "react", "room": room, "id": "t9", "target": bobs, "emoji": "👍", "on": true})
        )
        .await,
        Err("already_deleted".into())
    );
}

#[tokio::test]
async fn an_edit_made_while_a_member_was_away_arrives_on_its_rejoin() {
    let stack = Stack::start().await;
    let (a, b) = (stack.gateway(&[]).await, stack.gateway(&[]).await);
    let (alice_token, _) = stack.user("quinn").await;
    let (bob_token, _) = stack.user("rosa").await;
    let room = stack.room(&alice_token, false).await;
    let mut alice = Client::connect(&a, &alice_token).await;
    alice.join(&room, None).await;
    let mut bob = Client::connect(&b, &bob_token).await;
    bob.join(&room, None).await;
    let first = alice.say(&room, "m1", "teh plan").await;
    event(&mut bob, "message", "m1").await;
    drop(bob);

    let edited_at = change(
        &mut alice,
        json!({"type": "edit", "room": room, "id": "e1", "target": first, "body": "the plan"}),
    )
    .await
    .expect("edit");
    let mut bob = Client::connect(&b, &bob_token).await;
    bob.send(json!({"type": "join", "room": room, "since": first})).await;
    let joined = bob.recv_type("joined").await;
    assert_eq!(
        (joined["recovered"].as_bool(), joined["seq"].as_u64()),
        (Some(true), Some(edited_at)),
        "{joined}"
    );
    let edited = bob.recv_type("edited").await;
    assert_eq!(
        (edited["seq"].as_u64(), edited["prev"].as_u64(), edited["body"].as_str()),
        (Some(edited_at), Some(first), Some("the plan")),
        "{edited}"
    );
}

/// Twenty-one different emoji, each one reaction (the palette's six and others).
const EMOJI: [&str; 21] = [
    "👍", "❤️", "😂", "🎉", "😮", "😢", "👀", "🔥", "✅", "🙏", "💯", "🚀", "🤔", "👏", "😎", "🥳", "🍕", "🌈", "⭐",
    "🎸", "🐢",
];

#[tokio::test]
async fn a_message_takes_twenty_different_emoji_and_then_only_those() {
    let stack = Stack::start().await;
    let _persister = stack.persister().await;
    let gw = stack.gateway(&["--sends-per-second", "100"]).await;
    let (alice_token, _) = stack.user("quinn").await;
    let (bob_token, _) = stack.user("rosa").await;
    let room = stack.room(&alice_token, false).await;
    let mut alice = Client::connect(&gw, &alice_token).await;
    alice.join(&room, None).await;
    let mut bob = Client::connect(&gw, &bob_token).await;
    bob.join(&room, None).await;
    let target = alice.say(&room, "m1", "react to this").await;

    let react = |id: String, emoji: &str, on: bool| json!({"type": "react", "room": room, "id": id, "target": target, "emoji": emoji, "on": on});
    for (i, emoji) in EMOJI[..20].iter().enumerate() {
        let reacted = change(&mut alice, react(format!("a{i}"), emoji, true)).await;
        assert!(reacted.is_ok(), "reaction {i} ({emoji}): {reacted:?}");
    }
    // The limit is counted in the history: once the twenty are stored, a twenty-first emoji is refused.
    history_until(&stack, &alice_token, &room, |events| {
        at(events, target)["reactions"]
            .as_array()
            .is_some_and(|r| r.len() == 20)
    })
    .await;
    assert_eq!(
        change(&mut bob, react("b1".into(), EMOJI[20], true)).await,
        Err("too_many_reactions".into())
    );
    // One already there may still be added by another, and taking one back needs no room.
    assert!(change(&mut bob, react("b2".into(), EMOJI[0], true)).await.is_ok());
    assert!(
        change(&mut alice, react("a-off".into(), EMOJI[19], false))
            .await
            .is_ok()
    );
    // Once one emoji is gone from the message, a new one fits again.
    history_until(&stack, &alice_token, &room, |events| {
        at(events, target)["reactions"]
            .as_array()
            .is_some_and(|r| r.len() == 19)
    })
    .await;
    assert!(change(&mut bob, react("b3".into(), EMOJI[20], true)).await.is_ok());
}

#[tokio::test]
async fn a_moderator_deletes_others_messages_and_a_ban_takes_the_user_out_on_every_gateway_and_keeps_them_out() {
    let stack = Stack::start().await;
    let (a, b) = (stack.gateway(&[]).await, stack.gateway(&[]).await);
    let (owner_token, _) = stack.user("olga").await;
    let (moderator_token, moderator_id) = stack.user("mona").await;
    let (pest_token, pest_id) = stack.user("pest").await;
    let (other_token, _) = stack.user("otto").await;
    let room = stack.room(&owner_token, false).await;
    for token in [&moderator_token, &pest_token] {
        let (status, body) = stack
            .post_with(&format!("/api/rooms/{room}/join"), Some(token), json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let mut mona = Client::connect(&a, &moderator_token).await;
    mona.join(&room, None).await;
    // On the other gateway: its answer for this public room is now "open to all".
    let mut pest = Client::connect(&b, &pest_token).await;
    pest.join(&room, None).await;

    // Not a moderator yet: another's message is not hers to delete.
    let pests = pest.say(&room, "p1", "spam spam spam").await;
    let refused = change(
        &mut mona,
        json!({"type": "delete", "room": room, "id": "d0", "target": pests}),
    )
    .await;
    assert_eq!(refused, Err("not_author".to_owned()));
    let (status, body) = stack
        .put_with(
            &format!("/api/rooms/{room}/members/{moderator_id}/role"),
            &owner_token,
            json!({"role": "moderator"}),
        )
        .await;
    assert_eq!((status, body["role"].as_str()), (200, Some("moderator")), "{body}");
    change(
        &mut mona,
        json!({"type": "delete", "room": room, "id": "d1", "target": pests}),
    )
    .await
    .expect("a moderator may delete");
    event(&mut pest, "deleted", "d1").await;

    // Banned: out of the room at once on the gateway that took the room as open, and kept out on every gateway.
    let (status, body) = stack
        .post_with(
            &format!("/api/rooms/{room}/members/{pest_id}/ban"),
            Some(&moderator_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let left = pest.recv_type("left").await;
    assert_eq!(left, json!({"type": "left", "room": room, "reason": "banned"}));
    pest.send(json!({"type": "join", "room": room})).await;
    assert_eq!(pest.recv_type("error").await["code"], "banned");
    let mut elsewhere = Client::connect(&a, &pest_token).await;
    elsewhere.send(json!({"type": "join", "room": room})).await;
    assert_eq!(elsewhere.recv_type("error").await["code"], "banned");
    // Everyone else still joins, on both gateways.
    for gw in [&a, &b] {
        let mut otto = Client::connect(gw, &other_token).await;
        otto.join(&room, None).await;
    }
}

#[tokio::test]
async fn a_message_carries_the_members_it_mentions_as_the_server_resolved_them_and_history_keeps_them() {
    let stack = Stack::start().await;
    let _persister = stack.persister().await;
    let (a, b) = (stack.gateway(&[]).await, stack.gateway(&[]).await);
    let (ann_token, _) = stack.user("ann").await;
    let (bob_token, bob_id) = stack.user("bob").await;
    let (_, _) = stack.user("eve").await;
    let room = stack.room(&ann_token, false).await;
    let (status, body) = stack
        .post_with(&format!("/api/rooms/{room}/join"), Some(&bob_token), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut ann = Client::connect(&a, &ann_token).await;
    ann.join(&room, None).await;
    let mut bob = Client::connect(&b, &bob_token).await;
    bob.join(&room, None).await;

    // bob is a member, eve is not, nobody is no one: only bob is mentioned, whatever the text claims.
    let seq = ann.say(&room, "m1", "@BOB and @eve and @nobody, look").await;
    let heard = event(&mut bob, "message", "m1").await;
    assert_eq!(heard["mentions"], json!([{"id": bob_id, "name": "bob"}]), "{heard}");
    // A message without an @ mentions no one (and asks nothing).
    ann.say(&room, "m2", "no one here").await;
    let plain = event(&mut bob, "message", "m2").await;
    assert!(plain.get("mentions").is_none(), "{plain}");

    let events = history_until(&stack, &bob_token, &room, |events| events.len() == 2).await;
    assert_eq!(at(&events, seq)["mentions"], json!([{"id": bob_id, "name": "bob"}]));
    let mentions = stack.get_with("/api/mentions", &bob_token).await;
    assert_eq!(mentions["mentions"][0]["seq"].as_u64(), Some(seq), "{mentions}");
}
