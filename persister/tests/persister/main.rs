//! The persister against real NATS and real PostgreSQL: every stream message stored exactly once, through
//! redeliveries, a database outage (`outage`), poison messages, a second instance, and persisters sharing the
//! partitions as they come and go (`partitions`).

mod changes;
mod outage;
mod partitions;

use std::time::Duration;

use async_nats::jetstream;
use clap::Parser;
use natter_persister::config::Config;
use natter_persister::startup::Application;
use natter_test_support::{NatsServer, TestDb};
use serde_json::json;
use sqlx::PgPool;

/// A running persister, stopped when dropped.
struct Persister {
    /// Where its `/healthz`, `/readyz` and `/metrics` are served.
    addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn persister(nats: &NatsServer, db_url: &str, args: &[&str]) -> Persister {
    // As the persister is deployed: its own NATS user, allowed only what its role needs.
    let nats_url = nats.url();
    let credentials = natter_test_support::nats_credentials("natter-persister");
    let mut argv = vec![
        "natter-persister",
        "--admin-listen",
        "127.0.0.1:0",
        "--nats-url",
        &nats_url,
        "--database-url",
        db_url,
    ];
    argv.extend(credentials.iter().map(String::as_str));
    argv.extend_from_slice(args);
    let app = Application::build(Config::try_parse_from(argv).expect("config"))
        .await
        .expect("persister builds");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Persister { addr, _stop: stop }
}

fn payload(i: u64, body: &str) -> bytes::Bytes {
    json!({"id": format!("m{i}"), "user": {"id": "u1", "name": "alice"}, "body": body, "ts": "2026-11-23T12:00:00.000Z"})
        .to_string()
        .into()
}

/// Publishes to a room's subject and returns the stored sequences.
async fn publish(js: &jetstream::Context, room: &str, bodies: impl IntoIterator<Item = bytes::Bytes>) -> Vec<u64> {
    let subject = natter_proto::subject::room_messages(&natter_proto::RoomId::parse(room).expect("room id"));
    let mut acks = Vec::new();
    for body in bodies {
        acks.push(js.publish(subject.clone(), body).await.expect("publish"));
    }
    let mut seqs = Vec::new();
    for ack in acks {
        seqs.push(ack.await.expect("stored").sequence);
    }
    seqs
}

async fn stream_context(nats: &NatsServer) -> jetstream::Context {
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("nats"));
    natter_stream::ensure(&js, natter_stream::Limits::new(Duration::from_secs(3600), 1))
        .await
        .expect("stream");
    js
}

async fn count(db: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap_or(-1)
}

/// Waits until `sql` counts `want`, failing after 30 s.
async fn wait_count(db_url: &str, sql: &'static str, want: i64) {
    let mut last = -1;
    for _ in 0..300 {
        if let Ok(db) = PgPool::connect(db_url).await {
            last = count(&db, sql).await;
            db.close().await;
            if last == want {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sql}: wanted {want}, last saw {last}");
}

#[tokio::test]
async fn stream_messages_are_stored_with_their_sequences() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let js = stream_context(&nats).await;
    let _p = persister(&nats, db.url(), &[]).await;
    let seqs = publish(&js, "lobby", (0..50).map(|i| payload(i, &format!("hello {i}")))).await;
    wait_count(db.url(), "SELECT count(*) FROM messages", 50).await;
    let pool = PgPool::connect(db.url()).await.expect("db");
    let stored: Vec<(i64, String, String, String)> =
        sqlx::query_as("SELECT seq, room_id, client_id, body FROM messages ORDER BY seq")
            .fetch_all(&pool)
            .await
            .expect("rows");
    for (i, (seq, room, id, body)) in stored.iter().enumerate() {
        assert_eq!(
            (*seq as u64, room.as_str(), id.as_str(), body.as_str()),
            (
                seqs[i],
                "lobby",
                format!("m{i}").as_str(),
                format!("hello {i}").as_str()
            )
        );
    }
}

/// Stores the rows of messages `m{i}` at stream sequence `seq` as a persister that committed them and died
/// before acking would have (its epoch, its sequence, the acceptance time in the payload); returns a pool on the
/// migrated database.
async fn committed_before_ack(
    js: &jetstream::Context,
    db_url: &str,
    messages: impl IntoIterator<Item = (usize, u64)>,
) -> PgPool {
    let pool = PgPool::connect(db_url).await.expect("db");
    natter_history::migrate(&pool).await.expect("migrate");
    let mut stream = js.get_stream("CHAT").await.expect("stream");
    let epoch = natter_stream::epoch::of(stream.info().await.expect("stream info"));
    for (i, seq) in messages {
        sqlx::query(
            "INSERT INTO messages (epoch, seq, room_id, client_id, user_id, user_name, body, sent_at) \
             VALUES ($1, $2, 'lobby', $3, 'u1', 'alice', 'x', '2026-11-23T12:00:00Z')",
        )
        .bind(epoch as i64)
        .bind(seq as i64)
        .bind(format!("m{i}"))
        .execute(&pool)
        .await
        .expect("insert");
    }
    pool
}

#[tokio::test]
async fn a_redelivery_after_commit_stores_nothing_twice() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let js = stream_context(&nats).await;
    let seqs = publish(&js, "lobby", (0..20).map(|i| payload(i, "x"))).await;
    // A persister committed the first ten and died before acking: the rows are there, the acks never came.
    let pool = committed_before_ack(&js, db.url(), seqs.iter().copied().enumerate().take(10)).await;
    let _p = persister(&nats, db.url(), &[]).await;
    wait_count(db.url(), "SELECT count(*) FROM messages", 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM messages").await,
        20,
        "each message once"
    );
    assert_eq!(backlog(&js).await, (0, 0), "everything acked");
    assert_eq!(metric("natter_persister_duplicates_skipped_total"), Some(10.0));
    assert_eq!(metric("natter_persister_rows_written_total"), Some(10.0));
}

#[tokio::test]
async fn a_batch_with_a_stored_row_and_a_refused_one_stores_the_rest_once() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let js = stream_context(&nats).await;
    let seqs = publish(
        &js,
        "lobby",
        (0..10).map(|i| payload(i, if i == 5 { "a\u{0}b" } else { "x" })),
    )
    .await;
    // Message 2 was committed by a persister that died before acking it.
    let pool = committed_before_ack(&js, db.url(), [(2, seqs[2])]).await;
    let _p = persister(&nats, db.url(), &[]).await;
    wait_count(db.url(), "SELECT count(*) FROM dead_letters", 1).await;
    wait_count(db.url(), "SELECT count(*) FROM messages", 9).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&pool, "SELECT count(*) FROM messages").await, 9);
    assert_eq!(count(&pool, "SELECT count(DISTINCT seq) FROM messages").await, 9);
    assert_eq!(metric("natter_persister_duplicates_skipped_total"), Some(1.0));
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_do_not_block_the_stream() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let js = stream_context(&nats).await;
    let _p = persister(&nats, db.url(), &[]).await;
    let mut bodies = vec![
        payload(0, "fine"),
        bytes::Bytes::from_static(b"not json at all"),
        payload(2, "a\u{0}b"),
    ];
    bodies.extend((3..10).map(|i| payload(i, "after")));
    publish(&js, "lobby", bodies).await;
    wait_count(db.url(), "SELECT count(*) FROM messages", 8).await;
    wait_count(db.url(), "SELECT count(*) FROM dead_letters", 2).await;
    let pool = PgPool::connect(db.url()).await.expect("db");
    let reasons: Vec<String> = sqlx::query_scalar("SELECT reason FROM dead_letters ORDER BY seq")
        .fetch_all(&pool)
        .await
        .expect("rows");
    assert!(reasons[0].contains("undecodable"), "{reasons:?}");
    assert!(reasons[1].contains("refused by PostgreSQL"), "{reasons:?}");
}

#[tokio::test]
async fn two_persisters_share_the_work_and_store_each_message_once() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let js = stream_context(&nats).await;
    let _a = persister(&nats, db.url(), &["--batch-size", "50"]).await;
    let _b = persister(&nats, db.url(), &["--batch-size", "50"]).await;
    publish(&js, "lobby", (0..2000).map(|i| payload(i, "shared"))).await;
    wait_count(db.url(), "SELECT count(*) FROM messages", 2000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pool = PgPool::connect(db.url()).await.expect("db");
    assert_eq!(count(&pool, "SELECT count(*) FROM messages").await, 2000);
}

/// What the persisters' partition consumers have yet to deliver, and have delivered and not had acked, summed over
/// every partition.
async fn backlog(js: &jetstream::Context) -> (u64, usize) {
    use futures::TryStreamExt;
    let infos: Vec<jetstream::consumer::Info> = js
        .get_stream("CHAT")
        .await
        .expect("stream")
        .consumers()
        .try_collect()
        .await
        .expect("consumers");
    infos
        .iter()
        .filter(|info| info.name.starts_with("natter-persister-p"))
        .fold((0, 0), |(pending, acks), info| {
            (pending + info.num_pending, acks + info.num_ack_pending)
        })
}

/// The value of `series` on this process's metrics page, if it has it.
fn metric(series: &str) -> Option<f64> {
    natter_test_support::metrics_page::value(&natter_service::render_metrics(), series)
}

#[tokio::test]
async fn every_series_exists_from_start_up_and_the_stream_size_is_reported() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let js = stream_context(&nats).await;
    let _p = persister(&nats, db.url(), &[]).await;
    let page = natter_service::render_metrics();
    for name in natter_persister::metrics::ALL {
        assert!(
            natter_test_support::metrics_page::has(&page, name),
            "{name} is missing from a fresh persister's page:\n{page}"
        );
    }
    assert_eq!(metric("natter_persister_dead_lettered_total"), Some(0.0));
    assert_eq!(metric("natter_nats_connected"), Some(1.0));

    publish(&js, "lobby", (0..3).map(|i| payload(i, "hi"))).await;
    wait_count(db.url(), "SELECT count(*) FROM messages", 3).await;
    // The stream's size is asked every five seconds.
    for _ in 0..150 {
        if metric("natter_stream_last_seq") == Some(3.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric("natter_stream_last_seq"), Some(3.0));
    assert_eq!(metric("natter_stream_messages"), Some(3.0));
    assert_eq!(metric("natter_persister_rows_written_total"), Some(3.0));
    // The broker's health as the stream's info tells it: one server, its leader current, the byte cap set.
    assert_eq!(metric("natter_stream_leader"), Some(1.0));
    assert_eq!(metric("natter_stream_replicas{state=\"current\"}"), Some(1.0));
    assert_eq!(metric("natter_stream_replicas{state=\"offline\"}"), Some(0.0));
    assert_eq!(metric("natter_stream_replicas_configured"), Some(1.0));
    assert_eq!(
        metric("natter_stream_max_bytes"),
        Some(natter_stream::DEFAULT_MAX_BYTES as f64)
    );
}

#[tokio::test]
async fn a_stream_recreated_under_a_running_persister_is_a_new_epoch_stored_beside_the_old() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let js = stream_context(&nats).await;
    let _p = persister(&nats, db.url(), &[]).await;
    let old = publish(&js, "lobby", (0..10).map(|i| payload(i, "old"))).await;
    wait_count(db.url(), "SELECT count(*) FROM messages", 10).await;

    // Deleted and created again: the same sequences, 1 to 10, come back with other messages.
    js.delete_stream("CHAT").await.expect("deleted");
    let _ = js
        .get_or_create_stream(natter_stream::config(natter_stream::Limits::new(
            Duration::from_secs(3600),
            1,
        )))
        .await
        .expect("recreated");
    let new = publish(&js, "lobby", (10..20).map(|i| payload(i, "new"))).await;
    assert_eq!(new, old, "the new stream numbers its messages from the start again");
    wait_count(db.url(), "SELECT count(*) FROM messages", 20).await;

    let pool = PgPool::connect(db.url()).await.expect("db");
    let rows: Vec<(i64, i64, String, String)> =
        sqlx::query_as("SELECT epoch, seq, client_id, body FROM messages ORDER BY position")
            .fetch_all(&pool)
            .await
            .expect("rows");
    let epochs: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert!(
        epochs[0] > 0 && epochs[10] > epochs[0],
        "two epochs, the new one later: {epochs:?}"
    );
    for (i, (epoch, seq, id, body)) in rows.iter().enumerate() {
        let (want_epoch, want_body) = if i < 10 {
            (epochs[0], "old")
        } else {
            (epochs[10], "new")
        };
        assert_eq!(
            (*epoch, *seq as u64, id.as_str(), body.as_str()),
            (want_epoch, old[i % 10], format!("m{i}").as_str(), want_body),
            "nothing of the old epoch overwritten, nothing of the new one dropped"
        );
    }
    let mut stream = js.get_stream("CHAT").await.expect("stream");
    assert_eq!(
        natter_stream::epoch::of(stream.info().await.expect("info")),
        epochs[10] as u64,
        "rows carry the stream's epoch"
    );
}

#[tokio::test]
async fn two_persisters_store_a_recreated_stream_under_its_new_epoch_once() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let js = stream_context(&nats).await;
    let _a = persister(&nats, db.url(), &["--batch-size", "5"]).await;
    let _b = persister(&nats, db.url(), &["--batch-size", "5"]).await;
    publish(&js, "lobby", (0..50).map(|i| payload(i, "old"))).await;
    wait_count(db.url(), "SELECT count(*) FROM messages", 50).await;

    js.delete_stream("CHAT").await.expect("deleted");
    let mut stream = js
        .get_or_create_stream(natter_stream::config(natter_stream::Limits::new(
            Duration::from_secs(3600),
            1,
        )))
        .await
        .expect("recreated");
    let new_epoch = natter_stream::epoch::of(stream.info().await.expect("info")) as i64;
    // Sent a few at a time, so that both persisters' pull requests are open on the new stream.
    for chunk in 0..10 {
        publish(
            &js,
            "lobby",
            (50 + chunk * 10..60 + chunk * 10).map(|i| payload(i, "new")),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_count(
        db.url(),
        "SELECT count(DISTINCT client_id) FROM messages WHERE body = 'new'",
        100,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pool = PgPool::connect(db.url()).await.expect("db");
    let epochs: Vec<(i64, i64)> =
        sqlx::query_as("SELECT epoch, count(*) FROM messages WHERE body = 'new' GROUP BY epoch")
            .fetch_all(&pool)
            .await
            .expect("rows");
    assert_eq!(
        epochs,
        vec![(new_epoch, 100)],
        "every new message once, under the new epoch"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM messages").await, 150);
}
