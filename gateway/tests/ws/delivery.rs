//! Ordered, acknowledged, deduplicated, recoverable delivery across gateways.

use async_nats::jetstream;
use serde_json::json;

use crate::helpers::{Client, Stack};

#[tokio::test]
async fn messages_cross_gateways_in_order_with_acks() {
    let stack = Stack::start().await;
    let (a, b) = (stack.gateway(&[]).await, stack.gateway(&[]).await);
    let (alice_token, _) = stack.user("alice").await;
    let (bob_token, _) = stack.user("bob").await;
    let room = stack.room(&alice_token, false).await;

    let mut alice = Client::connect(&a, &alice_token).await;
    let mut bob = Client::connect(&b, &bob_token).await;
    let joined = alice.join(&room, None).await;
    assert_eq!(
        (joined["seq"].as_u64(), joined["recovered"].as_bool()),
        (Some(0), Some(true)),
        "{joined}"
    );
    bob.join(&room, None).await;

    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push(alice.say(&room, &format!("m{i}"), &format!("hello {i}")).await);
    }
    assert!(
        acked.windows(2).all(|w| w[0] < w[1]),
        "acks carry increasing sequences: {acked:?}"
    );

    let mut prev = 0;
    for (i, seq) in acked.iter().enumerate() {
        let msg = bob.recv_type("message").await;
        assert_eq!(msg["id"], format!("m{i}"), "in order: {msg}");
        assert_eq!(msg["body"], format!("hello {i}"));
        assert_eq!(msg["seq"].as_u64(), Some(*seq), "the seq the sender was acked with");
        assert_eq!(
            msg["prev"].as_u64(),
            Some(prev),
            "prev names the previous message: {msg}"
        );
        assert_eq!(msg["user"]["name"], "alice");
        assert!(msg["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{msg}");
        prev = *seq;
    }
    // The sender sees its own messages too, in the same order.
    for i in 0..20 {
        assert_eq!(alice.recv_type("message").await["id"], format!("m{i}"));
    }
}

#[tokio::test]
async fn a_resent_message_is_stored_once() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (token, _) = stack.user("carol").await;
    let (other_token, _) = stack.user("dave").await;
    let room = stack.room(&token, false).await;
    let mut carol = Client::connect(&gw, &token).await;
    let mut dave = Client::connect(&gw, &other_token).await;
    carol.join(&room, None).await;
    dave.join(&room, None).await;

    let first = carol.say(&room, "same-id", "once").await;
    let again = carol.say(&room, "same-id", "once").await;
    assert_eq!(first, again, "the resend is acked with the original sequence");
    let next = carol.say(&room, "other-id", "twice").await;

    assert_eq!(dave.recv_type("message").await["seq"].as_u64(), Some(first));
    let msg = dave.recv_type("message").await;
    assert_eq!(
        (msg["id"].as_str(), msg["seq"].as_u64()),
        (Some("other-id"), Some(next)),
        "no duplicate between"
    );

    // The same client id from another user is a different message.
    let from_dave = dave.say(&room, "same-id", "mine").await;
    assert_ne!(from_dave, first);

    let js = jetstream::new(async_nats::connect(stack.nats.url()).await.expect("nats"));
    let mut stream = js.get_stream("CHAT").await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 3);
}

#[tokio::test]
async fn a_replay_that_fills_the_queue_then_gets_the_live_messages_held_meanwhile() {
    // An 8-frame queue and small socket buffers on both ends: a rejoin's replay of 60 messages of 4 KB cannot fit
    // until the client reads, and live messages sent meanwhile wait for it in the room.
    let stack = Stack::start().await;
    let gw = stack
        .gateway(&[
            "--outbound-queue",
            "8",
            "--socket-send-buffer",
            "4096",
            "--max-body-chars",
            "8000",
            "--sends-per-second",
            "100000",
        ])
        .await;
    let (alice_token, _) = stack.user("hank").await;
    let (bob_token, _) = stack.user("iris").await;
    let room = stack.room(&alice_token, false).await;
    let mut alice = Client::connect(&gw, &alice_token).await;
    alice.join(&room, None).await;
    let body = "x".repeat(4000);

    let mut bob = Client::connect(&gw, &bob_token).await;
    bob.join(&room, None).await;
    let seen = alice.say(&room, "seen", "seen").await;
    assert_eq!(bob.recv_type("message").await["seq"].as_u64(), Some(seen));
    drop(bob);
    let mut expected = Vec::new();
    for i in 0..60 {
        expected.push(alice.say(&room, &format!("gap{i}"), &body).await);
    }

    let mut bob = Client::connect_with_receive_buffer(&gw, &bob_token, 4096).await;
    bob.send(json!({"type": "join", "room": room, "since": seen})).await;
    // Not reading: the replay stalls in the queue while these go live.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for i in 0..20 {
        expected.push(alice.say(&room, &format!("live{i}"), &body).await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let joined = bob.recv_type("joined").await;
    assert_eq!(joined["recovered"], true, "{joined}");
    let mut prev = seen;
    for seq in &expected {
        let msg = bob.recv_type("message").await;
        assert_eq!(
            (msg["seq"].as_u64(), msg["prev"].as_u64()),
            (Some(*seq), Some(prev)),
            "{msg}"
        );
        prev = *seq;
    }
    // Still connected, and live messages now come straight through.
    let live = alice.say(&room, "after", "after").await;
    assert_eq!(bob.recv_type("message").await["seq"].as_u64(), Some(live));
    let metrics = gw.metrics().await;
    assert_eq!(
        natter_test_support::metrics_page::value(&metrics, "natter_gateway_slow_consumer_disconnects_total"),
        Some(0.0),
        "a client that reads is not shed for its own replay: {metrics}"
    );
}

#[tokio::test]
async fn rejoining_with_a_position_replays_exactly_the_gap() {
    let stack = Stack::start().await;
    let (a, b) = (stack.gateway(&[]).await, stack.gateway(&[]).await);
    let (alice_token, _) = stack.user("erin").await;
    let (bob_token, _) = stack.user("frank").await;
    let room = stack.room(&alice_token, false).await;
    let other_room = stack.room(&alice_token, false).await;

    let mut alice = Client::connect(&a, &alice_token).await;
    alice.join(&room, None).await;
    alice.join(&other_room, None).await;
    let mut bob = Client::connect(&b, &bob_token).await;
    bob.join(&room, None).await;
    let seen = alice.say(&room, "before", "seen by bob").await;
    assert_eq!(bob.recv_type("message").await["seq"].as_u64(), Some(seen));
    drop(bob);

    // Missed while away, interleaved with another room's traffic.
    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push(alice.say(&room, &format!("gap{i}"), "missed").await);
        alice.say(&other_room, &format!("noise{i}"), "elsewhere").await;
    }

    let mut bob = Client::connect(&b, &bob_token).await;
    let joined = bob.join(&room, Some(seen)).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(joined["seq"].as_u64(), missed.last().copied());
    let mut prev = seen;
    for seq in &missed {
        let msg = bob.recv_type("message").await;
        assert_eq!(
            (msg["seq"].as_u64(), msg["prev"].as_u64()),
            (Some(*seq), Some(prev)),
            "{msg}"
        );
        assert_eq!(msg["room"], room.as_str());
        prev = *seq;
    }
    // Then live, with no duplicate of the replay.
    let live = alice.say(&room, "after", "live").await;
    let msg = bob.recv_type("message").await;
    assert_eq!(
        (msg["id"].as_str(), msg["seq"].as_u64(), msg["prev"].as_u64()),
        (Some("after"), Some(live), Some(prev))
    );

    // Rejoining at the head replays nothing.
    bob.send(json!({"type": "leave", "room": room})).await;
    bob.recv_type("left").await;
    let joined = bob.join(&room, Some(live)).await;
    assert_eq!(
        (joined["recovered"].as_bool(), joined["seq"].as_u64()),
        (Some(true), Some(live))
    );
    bob.send(json!({"type": "ping", "id": "p"})).await;
    assert_eq!(bob.recv().await["type"], "pong", "no replayed message before the pong");
}

#[tokio::test]
async fn a_position_the_stream_no_longer_holds_is_not_recovered() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (token, _) = stack.user("grace").await;
    let room = stack.room(&token, false).await;
    let mut grace = Client::connect(&gw, &token).await;
    grace.join(&room, None).await;
    let first = grace.say(&room, "old", "will expire").await;
    grace.say(&room, "older", "will expire").await;

    // Expiry, as retention would do it: the stream drops everything up to now.
    let js = jetstream::new(async_nats::connect(stack.nats.url()).await.expect("nats"));
    js.get_stream("CHAT")
        .await
        .expect("stream")
        .purge()
        .await
        .expect("purge");
    let kept = grace.say(&room, "new", "kept").await;

    let mut again = Client::connect(&gw, &token).await;
    let joined = again.join(&room, Some(first - 1)).await;
    assert_eq!(
        joined["recovered"], false,
        "messages after the position are gone: {joined}"
    );
    assert_eq!(joined["seq"].as_u64(), Some(kept));
    again.send(json!({"type": "ping", "id": "p"})).await;
    assert_eq!(
        again.recv().await["type"],
        "pong",
        "nothing is replayed when recovery is impossible"
    );

    // A position ahead of the room is not recoverable either.
    let mut third = Client::connect(&gw, &token).await;
    let joined = third.join(&room, Some(kept + 100)).await;
    assert_eq!(joined["recovered"], false, "{joined}");
}

#[tokio::test]
async fn messages_sent_through_a_gateway_are_readable_from_the_history_api() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let _persister = stack.persister().await;
    let (token, _) = stack.user("kim").await;
    let room = stack.room(&token, false).await;
    let mut kim = Client::connect(&gw, &token).await;
    kim.join(&room, None).await;
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push(kim.say(&room, &format!("h{i}"), &format!("kept {i}")).await);
    }
    let stored: Vec<(u64, String)> = history_of(&stack, &room, &token, 10)
        .await
        .into_iter()
        .map(|(seq, _, body)| (seq, body))
        .collect();
    let expected: Vec<(u64, String)> = acked
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, format!("kept {i}")))
        .collect();
    assert_eq!(
        stored, expected,
        "every acknowledged message, with its acked sequence, in order"
    );
}

#[tokio::test]
async fn a_replay_longer_than_the_outbound_queue_arrives_whole() {
    let stack = Stack::start().await;
    let gw = stack
        .gateway(&["--outbound-queue", "16", "--sends-per-second", "100000"])
        .await;
    let (alice_token, _) = stack.user("lena").await;
    let (bob_token, _) = stack.user("mark").await;
    let room = stack.room(&alice_token, false).await;
    let mut alice = Client::connect(&gw, &alice_token).await;
    alice.join(&room, None).await;
    let first = alice.say(&room, "start", "seen").await;
    let mut missed = Vec::new();
    for i in 0..200 {
        missed.push(alice.say(&room, &format!("long{i}"), "missed").await);
    }
    let mut bob = Client::connect(&gw, &bob_token).await;
    let joined = bob.join(&room, Some(first)).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    for seq in &missed {
        assert_eq!(bob.recv_type("message").await["seq"].as_u64(), Some(*seq));
    }
    // And a rejoin at a position the sender was acked for is never "ahead of the room".
    let last = alice.say(&room, "fresh", "just acked").await;
    let mut carol = Client::connect(&gw, &bob_token).await;
    let joined = carol.join(&room, Some(last)).await;
    assert_eq!(joined["recovered"], true, "{joined}");
}

#[tokio::test]
async fn pipelined_sends_are_stored_in_the_order_written_and_each_acked_once() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&["--sends-per-second", "1000"]).await;
    let (token, _) = stack.user("dora").await;
    let room = stack.room(&token, false).await;
    let mut dora = Client::connect(&gw, &token).await;
    dora.join(&room, None).await;

    // Forty sends written back to back, none waiting for its ack, then a ping: while several wait for JetStream
    // at once, each is acked once, with the seq it was stored at, in the order written.
    for i in 0..40 {
        dora.send(json!({"type": "send", "room": room, "id": format!("p{i}"), "body": format!("piped {i}")}))
            .await;
    }
    dora.send(json!({"type": "ping", "id": "after"})).await;
    let mut acks = std::collections::HashMap::new();
    let mut messages = Vec::new();
    let mut ponged = false;
    while acks.len() < 40 || messages.len() < 40 || !ponged {
        let frame = dora.recv().await;
        match frame["type"].as_str() {
            Some("ack") => {
                let first = acks.insert(
                    frame["id"].as_str().unwrap_or_default().to_owned(),
                    frame["seq"].as_u64(),
                );
                assert!(first.is_none(), "each send is acked once: {frame}");
            }
            Some("message") => messages.push((frame["id"].clone(), frame["seq"].as_u64())),
            Some("pong") => ponged = true,
            Some("error") => panic!("no send is refused: {frame}"),
            _ => {}
        }
    }
    let ids: Vec<String> = messages
        .iter()
        .map(|(id, _)| id.as_str().unwrap_or_default().to_owned())
        .collect();
    let written: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    assert_eq!(ids, written, "the room holds them in the order written");
    for (id, seq) in &messages {
        assert_eq!(
            acks.get(id.as_str().unwrap_or_default()).copied().flatten(),
            *seq,
            "acked with its seq"
        );
    }
}

/// The room's stored history, oldest first, once it holds `count` messages: (seq, id, body) of each.
async fn history_of(stack: &Stack, room: &str, token: &str, count: usize) -> Vec<(u64, String, String)> {
    let mut page = serde_json::Value::Null;
    for _ in 0..150 {
        page = stack
            .get_with(&format!("/api/rooms/{room}/messages?after=0&limit=200"), token)
            .await;
        if page["messages"].as_array().is_some_and(|m| m.len() >= count) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().expect("seq"),
                m["id"].as_str().expect("id").to_owned(),
                m["body"].as_str().expect("body").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_recreated_stream_is_a_new_epoch_that_overwrites_nothing_and_positions_keep_growing() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let _persister = stack.persister().await;
    let (alice_token, _) = stack.user("lena").await;
    let (bob_token, _) = stack.user("mats").await;
    let room = stack.room(&alice_token, false).await;
    let mut alice = Client::connect(&gw, &alice_token).await;
    alice.join(&room, None).await;
    let mut bob = Client::connect(&gw, &bob_token).await;
    bob.join(&room, None).await;
    let mut old = Vec::new();
    for i in 0..5 {
        let seq = alice.say(&room, &format!("old{i}"), &format!("before {i}")).await;
        assert_eq!(bob.recv_type("message").await["seq"].as_u64(), Some(seq));
        old.push((seq, format!("old{i}"), format!("before {i}")));
    }
    assert_eq!(history_of(&stack, &room, &alice_token, 5).await, old);

    // The operator deletes the stream and creates it again: its sequences start over at 1.
    let js = jetstream::new(async_nats::connect(stack.nats.url()).await.expect("NATS"));
    js.delete_stream(natter_proto::bus::CHAT_STREAM)
        .await
        .expect("stream deleted");
    let _ = js
        .get_or_create_stream(natter_stream::config(natter_stream::Limits::new(
            std::time::Duration::from_secs(3600),
            1,
        )))
        .await
        .expect("stream recreated");

    // Members are sent to rejoin; a position from the old epoch cannot be replayed from the new stream.
    assert_eq!(bob.closed().await, Some(1012), "members rejoin in the new epoch");
    assert_eq!(alice.closed().await, Some(1012));
    let last_old = old.last().expect("old messages").0;
    let mut alice = Client::connect(&gw, &alice_token).await;
    let joined = alice.join(&room, Some(last_old)).await;
    assert_eq!(joined["recovered"], false, "{joined}");
    let mut bob = Client::connect(&gw, &bob_token).await;
    assert_eq!(bob.join(&room, Some(last_old)).await["recovered"], false);

    // New messages are acked after every old one, delivered, stored next to the old ones and readable.
    let mut new = Vec::new();
    let mut prev = 0;
    for i in 0..3 {
        let seq = alice.say(&room, &format!("new{i}"), &format!("after {i}")).await;
        assert!(seq > last_old, "position {seq} after the old epoch's {last_old}");
        let msg = bob.recv_type("message").await;
        assert_eq!(
            (msg["seq"].as_u64(), msg["prev"].as_u64()),
            (Some(seq), Some(prev)),
            "{msg}"
        );
        prev = seq;
        new.push((seq, format!("new{i}"), format!("after {i}")));
    }
    let mut everything = old.clone();
    everything.extend(new.iter().cloned());
    assert_eq!(
        history_of(&stack, &room, &alice_token, 8).await,
        everything,
        "the old epoch's rows are untouched, and the new ones follow them"
    );
    // Paging back from the new epoch reaches the old one.
    let page = stack
        .get_with(
            &format!("/api/rooms/{room}/messages?before={}&limit=2", new[0].0),
            &alice_token,
        )
        .await;
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![old[4].0, old[3].0], "{page}");
    // A rejoin from a position of the new epoch is recovered.
    drop(bob);
    let mut bob = Client::connect(&gw, &bob_token).await;
    let joined = bob.join(&room, Some(new[0].0)).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(bob.recv_type("message").await["seq"].as_u64(), Some(new[1].0));
    let metrics = gw.metrics().await;
    assert_eq!(
        natter_test_support::metrics_page::value(&metrics, "natter_gateway_stream_recreations_total"),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn deleting_a_room_purges_its_messages_from_the_stream() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (token, _) = stack.user("nora").await;
    let room = stack.room(&token, false).await;
    let other = stack.room(&token, false).await;
    let mut nora = Client::connect(&gw, &token).await;
    nora.join(&room, None).await;
    nora.join(&other, None).await;
    for i in 0..3 {
        nora.say(&room, &format!("d{i}"), "deleted with its room").await;
    }
    nora.say(&other, "k", "kept").await;
    let js = jetstream::new(async_nats::connect(stack.nats.url()).await.expect("NATS"));
    let stream = js.get_stream(natter_proto::bus::CHAT_STREAM).await.expect("stream");
    let subject =
        |room: &str| natter_proto::subject::room_messages(&natter_proto::RoomId::parse(room).expect("room id"));
    assert!(stream.direct_get_last_for_subject(subject(&room)).await.is_ok());

    assert_eq!(stack.delete_with(&format!("/api/rooms/{room}"), &token).await, 204);
    let gone = stream.direct_get_last_for_subject(subject(&room)).await;
    assert!(
        gone.is_err_and(|err| matches!(err.kind(), jetstream::stream::DirectGetErrorKind::NotFound)),
        "no gateway can replay a deleted room"
    );
    assert!(
        stream.direct_get_last_for_subject(subject(&other)).await.is_ok(),
        "other rooms keep theirs"
    );
}

#[tokio::test]
async fn rejoins_to_one_room_read_its_gap_from_the_stream_once_and_share_it() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (alice_token, _) = stack.user("rhea").await;
    let room = stack.room(&alice_token, false).await;
    let mut alice = Client::connect(&gw, &alice_token).await;
    alice.join(&room, None).await;
    let seen = alice.say(&room, "seen", "before the storm").await;
    let mut missed = Vec::new();
    for i in 0..6 {
        missed.push(alice.say(&room, &format!("gap{i}"), "missed").await);
    }
    let readers: Vec<String> = {
        let mut tokens = Vec::new();
        for i in 0..8 {
            tokens.push(stack.user(&format!("storm{i}")).await.0);
        }
        tokens
    };
    let before = |page: &str, source: &str| {
        natter_test_support::metrics_page::value(page, &format!("natter_gateway_replays_total{{source=\"{source}\"}}"))
            .unwrap_or(0.0)
    };
    let page = gw.metrics().await;
    let (stream0, shared0) = (before(&page, "stream"), before(&page, "shared"));

    // Eight clients rejoin at once from the same position, and one from half-way through the gap.
    let mut joins = Vec::new();
    for (i, token) in readers.iter().enumerate() {
        let since = if i == 0 { missed[2] } else { seen };
        let expected: Vec<u64> = missed.iter().copied().filter(|seq| *seq > since).collect();
        let (gw, room, token) = (&gw, room.clone(), token.clone());
        joins.push(async move {
            let mut client = Client::connect(gw, &token).await;
            let joined = client.join(&room, Some(since)).await;
            assert_eq!(joined["recovered"], true, "{joined}");
            let mut prev = since;
            for seq in expected {
                let msg = client.recv_type("message").await;
                assert_eq!(
                    (msg["seq"].as_u64(), msg["prev"].as_u64()),
                    (Some(seq), Some(prev)),
                    "{msg}"
                );
                prev = seq;
            }
        });
    }
    futures::future::join_all(joins).await;

    let page = gw.metrics().await;
    let (stream, shared) = (before(&page, "stream") - stream0, before(&page, "shared") - shared0);
    assert_eq!(stream + shared, 8.0, "{page}");
    // One read for the gap, and one more only if the rejoin from half-way read first: the others then need what
    // lies before it, and read only that.
    assert!(
        stream <= 2.0,
        "the room's gap read from the stream at most twice, the rest shared: {page}"
    );

    // A message after the window: the next rejoin reads only what the window lacks, and still gets it all.
    let later = alice.say(&room, "later", "after the storm").await;
    let mut last = Client::connect(&gw, &readers[1]).await;
    let joined = last.join(&room, Some(seen)).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    let mut prev = seen;
    for seq in missed.iter().copied().chain([later]) {
        let msg = last.recv_type("message").await;
        assert_eq!(
            (msg["seq"].as_u64(), msg["prev"].as_u64()),
            (Some(seq), Some(prev)),
            "{msg}"
        );
        prev = seq;
    }
}
