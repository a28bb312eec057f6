//! Persisters sharing the chat stream's partitions, as real processes: each partition read by one persister at a
//! time, its lease in the bucket; a persister killed, added or stopped moves partitions without a message missing
//! or stored twice; a stream recreated under them is stored under its new epoch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use natter_persister::leases;
use natter_proto::RoomId;
use natter_proto::subject::{self, PARTITIONS};
use natter_test_support::metrics_page;
use natter_test_support::stack::{Program, Stack};
use serde_json::json;
use sqlx::PgPool;

/// Rooms, `per` in each partition, found by trying names in order (a room's partition is a hash of its id).
fn rooms(per: usize) -> Vec<RoomId> {
    let mut by_partition: BTreeMap<u8, Vec<RoomId>> = BTreeMap::new();
    for i in 0.. {
        let room = RoomId::parse(&format!("room{i}")).expect("room id");
        let rooms = by_partition.entry(subject::partition(&room)).or_default();
        if rooms.len() < per {
            rooms.push(room);
        }
        if by_partition.len() == usize::from(PARTITIONS) && by_partition.values().all(|r| r.len() == per) {
            break;
        }
    }
    by_partition.into_values().flatten().collect()
}

/// A chat message with client id `id` and body `body`, accepted now.
fn message(id: &str, body: &str) -> bytes::Bytes {
    json!({"id": id, "user": {"id": "u1", "name": "alice"}, "body": body,
           "ts": natter_proto::bus::timestamp(chrono::Utc::now())})
    .to_string()
    .into()
}

async fn jetstream(stack: &Stack) -> jetstream::Context {
    jetstream::new(async_nats::connect(stack.nats.url()).await.expect("NATS"))
}

/// Publishes messages `{tag}{i}` round the rooms at `per_second` until `stop` turns true, waiting for each one's
/// stored-ack; returns how many were stored. A publish that fails (the stream being recreated) is sent again.
fn publish_steadily(
    js: jetstream::Context,
    tag: &'static str,
    per_second: u64,
    stop: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let rooms = rooms(3);
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
        let mut sent = 0u64;
        while stop.load(Ordering::Relaxed) == 0 {
            tick.tick().await;
            let room = &rooms[sent as usize % rooms.len()];
            let body = message(&format!("{tag}{sent}"), tag);
            loop {
                let stored = match js.publish(subject::room_messages(room), body.clone()).await {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                };
                if stored {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            sent += 1;
        }
        sent
    })
}

/// The holder of each partition's lease, as the bucket says now.
async fn holders(js: &jetstream::Context) -> BTreeMap<u8, String> {
    let kv = js.get_key_value(leases::BUCKET).await.expect("the lease bucket");
    let mut holders = BTreeMap::new();
    for partition in 0..PARTITIONS {
        if let Some(entry) = kv.entry(leases::key(partition)).await.expect("a lease")
            && entry.operation == jetstream::kv::Operation::Put
        {
            holders.insert(partition, String::from_utf8_lossy(&entry.value).into_owned());
        }
    }
    holders
}

/// The value of `series` on `program`'s metrics page (0 when it does not answer or lacks it).
async fn metric(program: &Program, series: &str) -> f64 {
    let page = program.metrics().await.unwrap_or_default();
    metrics_page::value(&page, series).unwrap_or(0.0)
}

/// How many partitions each of `persisters` reports owning.
async fn owned(persisters: &[Arc<Program>]) -> Vec<f64> {
    let mut owned = Vec::new();
    for persister in persisters {
        owned.push(metric(persister, "natter_persister_partitions_owned").await);
    }
    owned
}

/// Waits until `persisters` own the partitions as `fits` wants, panicking after `within` with what they own and
/// the logs; returns how long it took.
async fn wait_owned(
    stack: &Stack,
    persisters: &[Arc<Program>],
    within: Duration,
    fits: impl Fn(&[f64]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let now = owned(persisters).await;
        if fits(&now) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "partitions owned {now:?} after {within:?}; logs:\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rows stored with body `body`: (all, distinct client ids).
async fn stored(db_url: &str, body: &str) -> (i64, i64) {
    let db = PgPool::connect(db_url).await.expect("db");
    let counts = sqlx::query_as("SELECT count(*), count(DISTINCT client_id) FROM messages WHERE body = $1")
        .bind(body)
        .fetch_one(&db)
        .await
        .expect("count");
    db.close().await;
    counts
}

/// Waits until `want` rows with body `body` are stored, each once; panics after `within`.
async fn wait_stored(stack: &Stack, body: &str, want: u64, within: Duration) {
    let started = Instant::now();
    let want = i64::try_from(want).expect("count fits");
    loop {
        let (all, distinct) = stored(stack.db_url(), body).await;
        assert_eq!(all, distinct, "a {body:?} message stored twice");
        if distinct == want {
            break;
        }
        assert!(
            started.elapsed() < within,
            "{distinct} of {want} {body:?} messages stored after {within:?}; logs:\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing late doubles one either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stored(stack.db_url(), body).await,
        (want, want),
        "{body:?}: each message once"
    );
}

/// The sum over `persisters` of `series`.
async fn sum(persisters: &[Arc<Program>], series: &str) -> f64 {
    let mut sum = 0.0;
    for persister in persisters {
        sum += metric(persister, series).await;
    }
    sum
}

/// A stack whose persisters get `args`, with two persisters given `own` flags each, once they hold 8 partitions
/// each.
async fn two_persisters(args: &[&str], own: [&[&str]; 2]) -> (Stack, Arc<Program>, Arc<Program>) {
    let stack = Stack::builder().persisters(0).persister_args(args).start().await;
    let a = stack.add_persister(own[0]).await;
    let b = stack.add_persister(own[1]).await;
    wait_owned(&stack, &[a.clone(), b.clone()], Duration::from_secs(15), |o| {
        o == [8.0, 8.0]
    })
    .await;
    (stack, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_persisters_split_the_partitions_and_store_every_room_once() {
    let (stack, a, b) = two_persisters(&[], [&["--id", "persister-a"], &["--id", "persister-b"]]).await;
    let both = [a.clone(), b.clone()];
    let js = jetstream(&stack).await;
    let holders = holders(&js).await;
    assert_eq!(
        holders.len(),
        usize::from(PARTITIONS),
        "every partition held: {holders:?}"
    );
    for id in ["persister-a", "persister-b"] {
        assert_eq!(
            holders.values().filter(|h| *h == id).count(),
            8,
            "{id} holds half: {holders:?}"
        );
    }
    // Each partition's consumer exists once, read by its holder alone.
    let stream = js.get_stream("CHAT").await.expect("stream");
    for partition in 0..PARTITIONS {
        let mut consumer: jetstream::consumer::PullConsumer = stream
            .get_consumer(&format!("natter-persister-p{partition:02}"))
            .await
            .expect("the partition's consumer");
        let info = consumer.info().await.expect("info");
        assert_eq!(info.config.filter_subject, subject::partition_messages(partition));
    }

    let rooms = rooms(4);
    let mut acks = Vec::new();
    for i in 0..2000usize {
        let room = &rooms[i % rooms.len()];
        acks.push(
            js.publish(subject::room_messages(room), message(&format!("s{i}"), "split"))
                .await
                .expect("publish"),
        );
    }
    for ack in acks {
        ack.await.expect("stored");
    }
    wait_stored(&stack, "split", 2000, Duration::from_secs(30)).await;
    let db = PgPool::connect(stack.db_url()).await.expect("db");
    let rooms_stored: i64 = sqlx::query_scalar("SELECT count(DISTINCT room_id) FROM messages")
        .fetch_one(&db)
        .await
        .expect("rooms");
    assert_eq!(
        rooms_stored,
        rooms.len() as i64,
        "every room's messages, from every partition"
    );
    let (rows_a, rows_b) = (
        metric(&a, "natter_persister_rows_written_total").await,
        metric(&b, "natter_persister_rows_written_total").await,
    );
    assert_eq!(rows_a + rows_b, 2000.0);
    assert!(rows_a > 0.0 && rows_b > 0.0, "both wrote: {rows_a} and {rows_b}");
    assert_eq!(sum(&both, "natter_persister_duplicates_skipped_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_persisters_partitions_are_taken_over_and_nothing_is_lost_or_doubled() {
    let (stack, a, b) = two_persisters(&["--ack-wait", "5s", "--batch-size", "20"], [&[], &[]]).await;

    let stop = Arc::new(AtomicU64::new(0));
    let publishing = publish_steadily(jetstream(&stack).await, "steady", 200, stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.kill();
    let took = wait_owned(&stack, std::slice::from_ref(&b), Duration::from_secs(15), |o| {
        o == [16.0]
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(1, Ordering::Relaxed);
    let sent = publishing.await.expect("publisher");
    eprintln!("the survivor owned all 16 partitions {took:?} after the kill; {sent} messages sent");
    // What the killed one held unacked comes back after the 5 s ack wait.
    wait_stored(&stack, "steady", sent, Duration::from_secs(30)).await;
    assert!(
        metric(&b, "natter_persister_leases_taken_total{reason=\"vacant\"}").await >= 8.0,
        "the survivor took the dead one's leases once they aged out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_persister_takes_its_share_without_a_gap_or_a_double() {
    let (stack, a, b) = two_persisters(&["--batch-size", "20"], [&[], &[]]).await;

    let stop = Arc::new(AtomicU64::new(0));
    let publishing = publish_steadily(jetstream(&stack).await, "moved", 200, stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let handed_before = sum(
        &[a.clone(), b.clone()],
        "natter_persister_leases_handed_over_total{reason=\"rebalance\"}",
    )
    .await;
    let c = stack.add_persister(&[]).await;
    let all = [a.clone(), b.clone(), c.clone()];
    let took = wait_owned(&stack, &all, Duration::from_secs(15), |o| {
        o.iter().sum::<f64>() == 16.0 && o.iter().all(|n| (4.0..=6.0).contains(n))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(1, Ordering::Relaxed);
    let sent = publishing.await.expect("publisher");
    let shares = owned(&all).await;
    let holders = holders(&jetstream(&stack).await).await;
    assert_eq!(
        holders.len(),
        usize::from(PARTITIONS),
        "every partition held: {holders:?}"
    );
    // Handed over, not lost: read to the end, written and acked before the lease went. The default ack wait (30 s)
    // is longer than the wait below, so a message dropped in the move would be missing.
    wait_stored(&stack, "moved", sent, Duration::from_secs(20)).await;
    let handed = sum(&all, "natter_persister_leases_handed_over_total{reason=\"rebalance\"}").await - handed_before;
    let released = metric(&c, "natter_persister_leases_taken_total{reason=\"released\"}").await;
    let redelivered = sum(&all, "natter_persister_redeliveries_total").await;
    eprintln!(
        "balanced as {shares:?} {took:?} after the third persister was ready; {handed} handed over, {released} taken \
         from a release, {redelivered} redelivered; {sent} messages"
    );
    assert_eq!(handed, 4.0, "the two hand over what is beyond their share of 6");
    assert_eq!(released, 4.0, "the newcomer takes what they released");
    assert_eq!(
        metric(&c, "natter_persister_leases_taken_total{reason=\"vacant\"}").await,
        0.0,
        "no lease aged out in the move"
    );
    assert_eq!(
        sum(&all, "natter_persister_duplicates_skipped_total").await,
        0.0,
        "no batch was written twice: each was acked before its partition moved"
    );
    assert_eq!(
        sum(&all, "natter_persister_leases_lost_total{reason=\"superseded\"}").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_recreated_under_two_persisters_is_stored_under_its_new_epoch_once() {
    let (stack, a, b) = two_persisters(&["--batch-size", "5"], [&[], &[]]).await;
    let js = jetstream(&stack).await;
    let rooms = rooms(2);
    for (i, room) in rooms.iter().cycle().take(200).enumerate() {
        js.publish(subject::room_messages(room), message(&format!("o{i}"), "old"))
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    wait_stored(&stack, "old", 200, Duration::from_secs(20)).await;

    stack.delete_stream("CHAT").await;
    // Made again here, the way a gateway noticing first would.
    let mut stream = natter_stream::ensure(&js, natter_stream::Limits::new(Duration::from_secs(3600), 1))
        .await
        .expect("recreated");
    let new_epoch = natter_stream::epoch::of(stream.info().await.expect("info")) as i64;
    // Sent a few at a time, so that both persisters' partitions are open on the new stream while it fills.
    for chunk in 0..20usize {
        for (i, room) in rooms.iter().enumerate().skip(chunk % 2).step_by(2).take(10) {
            js.publish(subject::room_messages(room), message(&format!("n{chunk}-{i}"), "new"))
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_stored(&stack, "new", 200, Duration::from_secs(30)).await;
    let db = PgPool::connect(stack.db_url()).await.expect("db");
    let epochs: Vec<(i64, String, i64)> =
        sqlx::query_as("SELECT epoch, body, count(*) FROM messages GROUP BY epoch, body ORDER BY epoch, body")
            .fetch_all(&db)
            .await
            .expect("rows");
    assert_eq!(epochs.len(), 2, "one epoch each: {epochs:?}");
    assert_eq!((epochs[0].1.as_str(), epochs[0].2), ("old", 200), "{epochs:?}");
    assert_eq!(
        (epochs[1].0, epochs[1].1.as_str(), epochs[1].2),
        (new_epoch, "new", 200),
        "every new message once, under the new epoch: {epochs:?}"
    );
    assert!(epochs[0].0 < new_epoch);
    let recreations = sum(&[a, b], "natter_persister_stream_recreations_total").await;
    assert!(
        (1.0..=2.0).contains(&recreations),
        "each persister counts the recreation once, not once per partition: {recreations}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_persister_hands_its_partitions_over_at_once() {
    let (stack, a, b) = two_persisters(&[], [&[], &[]]).await;
    let stopped = Instant::now();
    let exit = a.stop(Duration::from_secs(10)).await;
    assert!(exit.as_ref().is_some_and(|e| e.expected), "a clean exit: {exit:?}");
    // Well within the leases' 10 s life: released, not aged out.
    let took = wait_owned(&stack, std::slice::from_ref(&b), Duration::from_secs(6), |o| {
        o == [16.0]
    })
    .await;
    eprintln!(
        "the other persister owned all 16 {:?} after the stop began",
        stopped.elapsed()
    );
    assert!(took < Duration::from_secs(6));
    assert!(
        metric(&b, "natter_persister_leases_taken_total{reason=\"released\"}").await >= 8.0,
        "the stopped one's partitions were taken from its releases"
    );
}

#[tokio::test]
async fn a_lease_has_one_holder_is_handed_over_and_lapses_when_not_refreshed() {
    let nats = natter_test_support::NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("NATS"));
    let mut x = leases::Leases::open(&js, "x", 1).await.expect("bucket");
    let mut y = leases::Leases::open(&js, "y", 1).await.expect("the same bucket");
    assert_eq!(x.take(3).await.expect("answered"), Some(leases::Taken::Vacant));
    assert_eq!(y.take(3).await.expect("answered"), None, "held by x");
    let survey = y.survey().await.expect("survey");
    assert_eq!(survey.members, 1, "y counts itself; x has not said it is alive");
    assert!(!survey.free.contains(&3) && survey.free.len() == 15, "{survey:?}");

    assert!(x.release(3).await, "x hands it over");
    assert_eq!(y.take(3).await.expect("answered"), Some(leases::Taken::Released));
    assert_eq!(x.take(3).await.expect("answered"), None, "now y's");
    assert!(y.refresh().await.is_empty(), "y keeps it");
    assert_eq!(holders(&js).await.get(&3).map(String::as_str), Some("y"));

    // Not refreshed for longer than the bucket keeps it: it ages out, x takes it, and y's next refresh is refused.
    tokio::time::sleep(leases::TTL + Duration::from_secs(2)).await;
    assert_eq!(holders(&js).await.get(&3), None, "aged out");
    assert_eq!(x.take(3).await.expect("answered"), Some(leases::Taken::Vacant));
    assert_eq!(y.refresh().await, vec![(3, leases::Lost::Superseded)]);
    assert_eq!(y.held().count(), 0);
    assert_eq!(x.held().collect::<Vec<_>>(), vec![3]);

    // A persister restarted under the same id (x's old run being dead) takes its own lease back at once. (Two
    // live persisters under one id could not be told apart: ids must be unique among live persisters.)
    drop(x);
    let mut x_again = leases::Leases::open(&js, "x", 1).await.expect("bucket");
    assert_eq!(x_again.take(3).await.expect("answered"), Some(leases::Taken::Vacant));
    assert!(x_again.refresh().await.is_empty(), "and keeps it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_whose_lease_goes_unconfirmed_stops_reading_by_itself() {
    use clap::Parser;
    use natter_persister::reader::{Ended, Reader};

    let nats = natter_test_support::NatsServer::start();
    let js = super::stream_context(&nats).await;
    let config = natter_persister::config::Config::try_parse_from([
        "natter-persister",
        "--nats-url",
        &nats.url(),
        "--batch-size",
        "10",
    ])
    .expect("config");
    let source = natter_persister::source::Source::new(js.clone(), &config);
    let batching = natter_persister::consumer::Batching {
        size: 10,
        max_wait: Duration::ZERO,
        ack_wait: Duration::from_secs(30),
        writers: 1,
    };
    // The writers, here: ack every batch and count its messages.
    let (batches, mut to_write) = tokio::sync::mpsc::channel::<natter_persister::consumer::Batch>(1);
    let read = Arc::new(AtomicU64::new(0));
    let counted = read.clone();
    tokio::spawn(async move {
        while let Some(batch) = to_write.recv().await {
            for message in batch.messages.iter() {
                message.ack().await.expect("ack");
            }
            counted.fetch_add(batch.messages.len() as u64, Ordering::Relaxed);
        }
    });
    let start = tokio::time::Instant::now();
    let mut reader = Reader::start(
        3,
        source,
        batching,
        batches,
        Arc::new(natter_persister::backlog::Backlog::default()),
        start + Duration::from_secs(1),
    );
    // "lobby" is in partition 3.
    let publish = |n: u64| super::publish(&js, "lobby", (0..n).map(|i| super::payload(i, "fenced")));
    publish(3).await;
    tokio::time::sleep_until(start + Duration::from_millis(500)).await;
    reader.confirm(start + Duration::from_secs(2));
    tokio::time::sleep_until(start + Duration::from_millis(1500)).await;
    assert_eq!(reader.ended(), None, "confirmed on: reading past its first deadline");
    publish(3).await;
    tokio::time::sleep_until(start + Duration::from_millis(2500)).await;
    assert_eq!(reader.ended(), Some(Ended::Unconfirmed), "not confirmed again: stopped");
    assert_eq!(
        read.load(Ordering::Relaxed),
        6,
        "everything published while it was confirmed was read"
    );

    publish(5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(read.load(Ordering::Relaxed), 6, "nothing read after its deadline");
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream("CHAT")
        .await
        .expect("stream")
        .get_consumer("natter-persister-p03")
        .await
        .expect("the partition's consumer");
    let info = consumer.info().await.expect("info");
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (5, 0),
        "left to the next holder"
    );
}
