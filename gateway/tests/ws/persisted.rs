//! `--ack-after persisted`: a send is acked only once a persister committed it to PostgreSQL; while no persister
//! can write, sends are answered `publish_failed`, and a resend with the same id is acked with the same seq once
//! one can.

use serde_json::{Value, json};

use crate::helpers::{Client, GatewayProc, Stack};

/// The gateway flags of these tests: acks after persistence, a send given up on after the shortest timeout.
const PERSISTED: [&str; 4] = ["--ack-after", "persisted", "--persisted-ack-timeout", "5s"];

/// The history row of the message with client id `id`, as (position, user id, body), if PostgreSQL has it.
async fn history_row(stack: &Stack, id: &str) -> Option<(i64, String, String)> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&stack.db_url)
        .await
        .expect("connect to history");
    let row = sqlx::query_as("SELECT position, user_id, body FROM messages WHERE client_id = $1")
        .bind(id)
        .fetch_optional(&mut conn)
        .await
        .expect("query history");
    let _ = conn.close().await;
    row
}

/// Sends a message and returns the answer to it: its `ack`, or the `error` that refers to it.
async fn send(client: &mut Client, room: &str, id: &str, body: &str) -> Value {
    client
        .send(json!({"type": "send", "room": room, "id": id, "body": body}))
        .await;
    loop {
        let frame = client.recv().await;
        let answers = match frame["type"].as_str() {
            Some("ack") => frame["id"] == id,
            Some("error") => frame["ref"] == id,
            _ => false,
        };
        if answers {
            return frame;
        }
    }
}

/// Resends `id` until it is acked (each attempt may be answered `publish_failed` while the persister catches up);
/// returns the ack's seq.
async fn resend_until_acked(client: &mut Client, room: &str, id: &str, body: &str) -> u64 {
    for _ in 0..6 {
        let answer = send(client, room, id, body).await;
        if answer["type"] == "ack" {
            return answer["seq"].as_u64().expect("ack seq");
        }
        assert_eq!(answer["code"], "publish_failed", "{answer}");
    }
    panic!("the resend of {id} was never acked");
}

#[tokio::test]
async fn an_ack_means_the_message_is_already_in_postgres() {
    let stack = Stack::start().await;
    let _persister = stack.persister().await;
    let gw = stack.gateway(&PERSISTED).await;
    let (token, user) = stack.user("pia").await;
    let room = stack.room(&token, false).await;
    let mut client = Client::connect(&gw, &token).await;
    client.join(&room, None).await;

    for i in 0..10 {
        let id = format!("p{i}");
        let answer = send(&mut client, &room, &id, &format!("kept {i}")).await;
        assert_eq!(answer["type"], "ack", "{answer}");
        // Read at once, before anything else happens: the ack came after the commit.
        let row = history_row(&stack, &id).await;
        let seq = answer["seq"].as_u64().expect("ack seq");
        assert_eq!(
            row,
            Some((i64::try_from(seq).expect("position"), user.clone(), format!("kept {i}"))),
            "acked message {id} is in history at its seq"
        );
    }
    let metrics = gw.metrics().await;
    assert!(
        natter_test_support::metrics_page::value(
            &metrics,
            "natter_gateway_persisted_confirmations_total{via=\"notice\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "confirmed by the persister's notices:\n{metrics}"
    );
    assert_eq!(
        natter_test_support::metrics_page::value(&metrics, "natter_gateway_sends_awaiting_persistence"),
        Some(0.0),
        "nothing waits once all are acked"
    );
}

/// A sender and a watcher of `names` in a new room on `gw`, and the room, once a first send was acked and seen.
async fn sender_and_watcher(stack: &Stack, gw: &GatewayProc, names: [&str; 2]) -> (Client, Client, String) {
    let (token, _) = stack.user(names[0]).await;
    let (other, _) = stack.user(names[1]).await;
    let room = stack.room(&token, false).await;
    let mut sender = Client::connect(gw, &token).await;
    let mut watcher = Client::connect(gw, &other).await;
    sender.join(&room, None).await;
    watcher.join(&room, None).await;
    let first = send(&mut sender, &room, "before", "written").await;
    assert_eq!(first["type"], "ack", "{first}");
    assert_eq!(watcher.recv_type("message").await["id"], "before");
    (sender, watcher, room)
}

/// Sends `id` while nothing can write history: it is answered `publish_failed`, yet JetStream stored it and the
/// room saw it. Returns the seq it was stored at, the one a resend must be acked with.
async fn unacked_but_stored(sender: &mut Client, watcher: &mut Client, room: &str, id: &str) -> u64 {
    let answer = send(sender, room, id, "held by JetStream").await;
    assert_eq!(
        answer["code"], "publish_failed",
        "not acked while history cannot take it: {answer}"
    );
    let seen = watcher.recv_type("message").await;
    assert_eq!(seen["id"], id, "{seen}");
    seen["seq"].as_u64().expect("seq")
}

#[tokio::test]
async fn without_a_persister_sends_are_not_acked_and_a_resend_after_its_return_is() {
    let stack = Stack::start().await;
    // A short ack wait, so a message the killed persister may have been handed comes back soon.
    let persister = stack.persister_with(&["--ack-wait", "3s"]).await;
    let gw = stack.gateway(&PERSISTED).await;
    let (mut sender, mut watcher, room) = sender_and_watcher(&stack, &gw, ["quinn", "rita"]).await;

    drop(persister);
    let stored = unacked_but_stored(&mut sender, &mut watcher, &room, "while-away").await;
    assert_eq!(history_row(&stack, "while-away").await, None, "not in history yet");

    let _back = stack.persister_with(&["--ack-wait", "3s"]).await;
    let seq = resend_until_acked(&mut sender, &room, "while-away", "held by JetStream").await;
    assert_eq!(seq, stored, "the resend is acked with the stored seq");
    assert!(
        history_row(&stack, "while-away").await.is_some(),
        "and it is in history"
    );
    let metrics = gw.metrics().await;
    assert!(
        natter_test_support::metrics_page::value(
            &metrics,
            "natter_gateway_publish_failures_total{reason=\"not_persisted\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    // Counted against send availability, and not timed as an ack: only the acked sends are.
    let value = |series: &str| natter_test_support::metrics_page::value(&metrics, series);
    assert!(
        value("natter_gateway_sends_total{outcome=\"failed\"}").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert_eq!(
        value("natter_gateway_ack_latency_seconds_count"),
        value("natter_gateway_sends_total{outcome=\"acked\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_sends_are_not_acked_and_a_resend_after_its_return_is() {
    let mut stack = Stack::start_own_postgres().await;
    let _persister = stack.persister().await;
    let gw = stack.gateway(&PERSISTED).await;
    let (mut sender, mut watcher, room) = sender_and_watcher(&stack, &gw, ["sam", "tess"]).await;

    tokio::task::block_in_place(|| stack.postgres_mut().kill());
    let stored = unacked_but_stored(&mut sender, &mut watcher, &room, "db-down").await;

    tokio::task::block_in_place(|| stack.postgres_mut().restart());
    let seq = resend_until_acked(&mut sender, &room, "db-down", "held by JetStream").await;
    assert_eq!(seq, stored, "the resend is acked with the stored seq");
    assert_eq!(
        history_row(&stack, "db-down").await.map(|row| row.0),
        Some(i64::try_from(seq).expect("position")),
        "in history at that seq"
    );
}
