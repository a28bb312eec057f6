//! The test services are real: a JetStream publish is stored and survives a crash and restart; PostgreSQL
//! answers queries, gives each test its own database, and comes back after a crash.

use futures::StreamExt;
use natter_test_support::{NatsServer, PgServer, TestDb};
use sqlx::Connection;

#[tokio::test]
async fn nats_server_stores_jetstream_messages_across_a_crash() {
    let mut nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.expect("connect to nats");
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "T".into(),
        subjects: vec!["t.>".into()],
        ..Default::default()
    })
    .await
    .expect("create stream");
    let ack = js
        .publish("t.a", "one".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    assert_eq!(ack.sequence, 1);

    nats.restart();
    let client = async_nats::connect(nats.url()).await.expect("reconnect to nats");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("T").await.expect("stream survives restart");
    assert_eq!(stream.info().await.expect("stream info").state.messages, 1);
    let ack = js
        .publish("t.a", "two".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    assert_eq!(ack.sequence, 2);

    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut sub = client.subscribe("core.x").await.expect("subscribe");
    client.publish("core.x", "hi".into()).await.expect("publish core");
    let msg = sub.next().await.expect("core message arrives");
    assert_eq!(&msg.payload[..], b"hi");
}

#[tokio::test]
async fn postgres_gives_each_test_its_own_database() {
    let a = TestDb::create().await;
    let b = TestDb::create().await;
    assert_ne!(a.url(), b.url());
    let mut conn = sqlx::PgConnection::connect(a.url()).await.expect("connect");
    sqlx::query("CREATE TABLE x (v int)")
        .execute(&mut conn)
        .await
        .expect("create table");
    let mut other = sqlx::PgConnection::connect(b.url()).await.expect("connect");
    let err = sqlx::query("SELECT * FROM x")
        .execute(&mut other)
        .await
        .expect_err("table is not shared");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn postgres_comes_back_after_a_crash_with_its_data() {
    let mut pg = PgServer::start();
    let url = pg.create_database().await;
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql("CREATE TABLE x (v int); INSERT INTO x VALUES (42)")
        .execute(&mut conn)
        .await
        .expect("write");
    drop(conn);
    pg.kill();
    assert!(
        sqlx::PgConnection::connect(&url).await.is_err(),
        "a killed server refuses connections"
    );
    pg.restart();
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("reconnect");
    let (v,): (i32,) = sqlx::query_as("SELECT v FROM x")
        .fetch_one(&mut conn)
        .await
        .expect("read");
    assert_eq!(v, 42);
}
