//! PostgreSQL going away under a running persister: what it holds is kept in progress at JetStream, retried, and
//! written as soon as the database answers again, each message once; `/readyz` says so meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull;
use futures::StreamExt;
use natter_persister::keep_alive::KeepAlive;
use natter_test_support::{NatsServer, PgServer};
use sqlx::PgPool;

use super::{backlog, count, metric, payload, persister, publish, stream_context, wait_count};

/// The status `/readyz` at `addr` answers with, if it answers.
async fn readyz(addr: std::net::SocketAddr) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
    conn.write_all(b"GET /readyz HTTP/1.0\r\nHost: persister\r\n\r\n")
        .await
        .ok()?;
    // "HTTP/1.x NNN"
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).await.ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_postgres_loses_and_doubles_nothing() {
    let nats = NatsServer::start();
    let mut pg = PgServer::start();
    let db_url = pg.create_database().await;
    let js = stream_context(&nats).await;
    let _p = persister(&nats, &db_url, &["--ack-wait", "3s"]).await;
    publish(&js, "lobby", (0..100).map(|i| payload(i, "before"))).await;
    wait_count(&db_url, "SELECT count(*) FROM messages", 100).await;

    tokio::task::block_in_place(|| pg.kill());
    publish(&js, "lobby", (100..300).map(|i| payload(i, "during"))).await;
    // Longer than the ack wait: what JetStream hands out again meanwhile is stored once all the same.
    tokio::time::sleep(Duration::from_secs(5)).await;
    tokio::task::block_in_place(|| pg.restart());
    publish(&js, "lobby", (300..400).map(|i| payload(i, "after"))).await;
    wait_count(&db_url, "SELECT count(*) FROM messages", 400).await;
    wait_count(&db_url, "SELECT count(DISTINCT client_id) FROM messages", 400).await;
}

/// The ack wait of the test below: far longer than it may take, so that a pass can only come from the persister
/// writing what it held, never from JetStream handing the messages out again.
const LONG_ACK_WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_held_through_an_outage_are_stored_once_as_soon_as_postgres_is_back() {
    let nats = NatsServer::start();
    let mut pg = PgServer::start();
    let db_url = pg.create_database().await;
    let js = stream_context(&nats).await;
    // Small batches: the messages held are spread over both writers, the batch waiting for one, the batch
    // gathering and the pull stream.
    let p = persister(&nats, &db_url, &["--ack-wait", "60s", "--batch-size", "20"]).await;
    publish(&js, "lobby", (0..10).map(|i| payload(i, "before"))).await;
    wait_count(&db_url, "SELECT count(*) FROM messages", 10).await;
    assert_eq!(readyz(p.addr).await, Some(200), "ready while PostgreSQL answers");

    tokio::task::block_in_place(|| pg.kill());
    let outage = Instant::now();
    publish(&js, "lobby", (10..310).map(|i| payload(i, "during"))).await;
    let mut held = 0;
    for _ in 0..100 {
        held = backlog(&js).await.1;
        if held >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        held >= 40,
        "the persister pulled at least two batches' worth and holds them: {held}"
    );
    // Down for 6 s: longer than the pull stream's heartbeat may be missed (twice its 2 s) while the persister
    // holds a full batch and reads nothing more.
    let mut answers = Vec::new();
    let mut lags = Vec::new();
    while outage.elapsed() < Duration::from_secs(6) {
        answers.push(readyz(p.addr).await);
        lags.push(metric("natter_persister_lag_seconds").unwrap_or(-1.0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !answers.is_empty() && answers.iter().all(|a| *a == Some(503)),
        "/readyz answers 503 throughout the outage: {answers:?}"
    );
    // The history lag keeps moving while nothing can be written (an alert on it must see the outage): by the end
    // it is the age of the oldest message held, published at the outage's start.
    let last = lags.last().copied().unwrap_or(-1.0);
    assert!(
        last >= 3.0 && lags.windows(2).any(|w| w[1] > w[0]),
        "the lag grows through a 6 s outage: {lags:?}"
    );

    tokio::task::block_in_place(|| pg.restart());
    let back = Instant::now();
    wait_count(&db_url, "SELECT count(*) FROM messages", 310).await;
    let stored_after = back.elapsed();
    // Every message was delivered after the outage began, so none can have been handed out again before
    // `outage + LONG_ACK_WAIT`.
    assert!(
        outage.elapsed() < LONG_ACK_WAIT / 2,
        "stored {stored_after:?} after PostgreSQL came back, {:?} after the outage began: long before the {LONG_ACK_WAIT:?} \
         ack wait could have handed anything out again",
        outage.elapsed()
    );
    let pool = PgPool::connect(&db_url).await.expect("db");
    assert_eq!(
        count(&pool, "SELECT count(DISTINCT client_id) FROM messages").await,
        310
    );
    assert_eq!(
        metric("natter_persister_redeliveries_total"),
        Some(0.0),
        "nothing was delivered twice"
    );
    assert_eq!(metric("natter_persister_duplicates_skipped_total"), Some(0.0));

    let mut ready = None;
    for _ in 0..50 {
        ready = readyz(p.addr).await;
        if ready == Some(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ready, Some(200), "/readyz recovers by itself");
    let mut acked = (u64::MAX, usize::MAX);
    for _ in 0..50 {
        acked = backlog(&js).await;
        if acked == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(acked, (0, 0), "everything acked after its commit");
}

#[tokio::test]
async fn a_held_batch_is_kept_in_progress_until_it_is_let_go() {
    let nats = NatsServer::start();
    let js = stream_context(&nats).await;
    publish(&js, "lobby", (0..5).map(|i| payload(i, "held"))).await;
    let consumer = js
        .get_stream("CHAT")
        .await
        .expect("stream")
        .create_consumer(pull::Config {
            durable_name: Some("held".into()),
            ack_wait: Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let fetch = |expires: Duration| {
        let consumer = consumer.clone();
        async move {
            let batch = consumer
                .fetch()
                .max_messages(5)
                .expires(expires)
                .messages()
                .await
                .expect("fetch");
            batch.map(|m| m.expect("message")).collect::<Vec<_>>().await
        }
    };
    let held = fetch(Duration::from_secs(2)).await;
    assert_eq!(held.len(), 5);

    let every = Duration::from_millis(300);
    let alive = KeepAlive::start(Arc::new(held), every, tokio::time::Instant::now() + every);
    // Three ack waits later none has come back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        fetch(Duration::from_millis(500)).await.is_empty(),
        "kept in progress, nothing is handed out again"
    );

    drop(alive);
    let again = fetch(Duration::from_secs(3)).await;
    let delivered: Vec<i64> = again.iter().map(|m| m.info().expect("metadata").delivered).collect();
    assert_eq!(
        delivered,
        vec![2; 5],
        "let go, each is handed out again after the ack wait"
    );
}
