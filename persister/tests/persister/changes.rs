//! Changes to messages (edits, deletions, reactions) applied to history once, whatever is delivered again: a
//! full redelivery of the stream after everything was committed (every consumer gone, a new persister reading
//! from the start) leaves history as it was, an older edit or reaction coming again after a newer one included.

use std::time::Duration;

use async_nats::jetstream;
use natter_test_support::{NatsServer, TestDb};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{backlog, persister, publish, stream_context, wait_count};

fn event(id: &str, user: &str, body: &str, change: Option<Value>) -> bytes::Bytes {
    let mut payload = json!({"id": id, "user": {"id": user, "name": user}, "body": body,
                             "ts": "2026-11-23T12:00:00.000Z"});
    if let Some(change) = change {
        payload["change"] = change;
    }
    payload.to_string().into()
}

/// What history holds of the room: each message's body, edit and deletion, the edits' bodies, the reactions.
async fn state(pool: &PgPool) -> Value {
    let messages: Vec<(i64, String, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT position, body, edit_position, deleted_by FROM messages WHERE kind = 'message' ORDER BY position",
    )
    .fetch_all(pool)
    .await
    .expect("messages");
    let edits: Vec<(i64, String)> =
        sqlx::query_as("SELECT position, body FROM messages WHERE kind = 'edit' ORDER BY position")
            .fetch_all(pool)
            .await
            .expect("edits");
    let reactions: Vec<(i64, String, String, bool)> =
        sqlx::query_as("SELECT target, emoji, user_id, present FROM reactions ORDER BY target, emoji, user_id")
            .fetch_all(pool)
            .await
            .expect("reactions");
    json!({"messages": messages, "edits": edits, "reactions": reactions})
}

async fn settled(js: &jetstream::Context) {
    for _ in 0..300 {
        if backlog(js).await == (0, 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the persister never caught up: {:?}", backlog(js).await);
}

#[tokio::test]
async fn changes_apply_once_and_a_full_redelivery_changes_nothing() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let js = stream_context(&nats).await;
    let mut stream = js.get_stream("CHAT").await.expect("stream");
    let epoch = natter_stream::epoch::of(stream.info().await.expect("info"));
    let first = publish(
        &js,
        "lobby",
        [event("m0", "u1", "helo", None), event("m1", "u2", "regret", None)],
    )
    .await;
    let (m0, m1) = (epoch + first[0], epoch + first[1]);
    let edit =
        |id: &str, target: u64, body: &str| event(id, "u1", body, Some(json!({"kind": "edit", "target": target})));
    let react = |id: &str, user: &str, emoji: &str, on: bool| {
        event(
            id,
            user,
            "",
            Some(json!({"kind": "react", "target": m0, "emoji": emoji, "on": on})),
        )
    };
    let changes = publish(
        &js,
        "lobby",
        [
            edit("e1", m0, "hello"),
            edit("e2", m0, "hello!"),
            react("r1", "u2", "👍", true),
            react("r2", "u3", "👍", true),
            react("r3", "u3", "👍", false),
            react("r4", "u2", "🎉", true),
            event(
                "e3",
                "u2",
                "regret, edited",
                Some(json!({"kind": "edit", "target": m1})),
            ),
            event("d1", "u2", "", Some(json!({"kind": "delete", "target": m1}))),
            // An edit stored after the deletion (accepted by a gateway before it learnt of it).
            event(
                "e4",
                "u2",
                "regret, edited again",
                Some(json!({"kind": "edit", "target": m1})),
            ),
        ],
    )
    .await;
    let _p = persister(&nats, db.url(), &[]).await;
    wait_count(db.url(), "SELECT count(*) FROM messages", 11).await;
    settled(&js).await;
    let pool = PgPool::connect(db.url()).await.expect("db");
    let applied = state(&pool).await;
    let (e2, e3, e4) = (epoch + changes[1], epoch + changes[6], epoch + changes[8]);
    assert_eq!(
        applied["messages"],
        json!([[m0, "hello!", e2, null], [m1, "", null, "u2"]]),
        "the newest edit; a tombstone: {applied}"
    );
    assert_eq!(
        applied["edits"],
        json!([[epoch + changes[0], "hello"], [e2, "hello!"], [e3, ""], [e4, ""]]),
        "a deleted message's edits keep no text: {applied}"
    );
    assert_eq!(
        applied["reactions"],
        json!([[m0, "🎉", "u2", true], [m0, "👍", "u2", true], [m0, "👍", "u3", false]]),
        "{applied}"
    );
    // Gone from the stream too: the message and its edits.
    for seq in [first[1], changes[6], changes[8]] {
        assert!(
            stream.direct_get(seq).await.is_err(),
            "stream sequence {seq} still holds a deleted text"
        );
    }
    assert!(stream.direct_get(first[0]).await.is_ok());

    // Every consumer gone and a new persister reading the stream from its start: everything comes again, in
    // order, the older edit and reactions after the newer ones were applied.
    drop(_p);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let names: Vec<String> = {
        use futures::TryStreamExt;
        stream.consumer_names().try_collect().await.expect("consumers")
    };
    for name in names {
        stream.delete_consumer(&name).await.expect("delete consumer");
    }
    let _p = persister(&nats, db.url(), &[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    settled(&js).await;
    assert_eq!(state(&pool).await, applied, "a redelivery changed history");
    assert_eq!(
        crate::count(&pool, "SELECT count(*) FROM messages").await,
        11,
        "each event stored once"
    );
}
