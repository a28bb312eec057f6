//! What `--ack-after persisted` costs: ack latency (p50, p99) at idle and under load with both modes side by side
//! in one run, gateway memory per send waiting for the persister, and what a persister's commit notices cost.
//!
//! It brings up its own stack (natter-test-support: nats-server, PostgreSQL, the auth API, one persister and two
//! gateways, `--ack-after stored` and `--ack-after persisted`, each the workspace's binary on free ports) and is
//! driven by `scripts/bench-ack.sh`, which says where the binaries are (`NATTER_BIN_DIR`) and prints the figures
//! for docs/benchmarks.md with the machine and the command.
//!
//! ```text
//! NATTER_BIN_DIR=target/release ack_bench --probes 300 --load 400 --waiting 3000
//! ```

// A benchmark's output is its figures on stdout.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use natter_test_support::stack::{Program, Stack};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod common;

use common::{Ws, connect, join, percentiles, send, until};

struct Args {
    /// Probes per mode and phase.
    probes: usize,
    /// Background load, messages a second.
    load: u64,
    /// Sends left waiting for the stopped persister, for the memory figure.
    waiting: usize,
}

fn args() -> Args {
    let mut args = Args {
        probes: 300,
        load: 400,
        waiting: 3000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--probes" => args.probes = value.parse().expect("a count"),
            "--load" => args.load = value.parse().expect("a rate"),
            "--waiting" => args.waiting = value.parse().expect("a count"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// Flags of both gateways: one user holds every connection, and sends are neither rate limited nor shed.
const COMMON: [&str; 8] = [
    "--shed-lag",
    "0s",
    "--sends-per-second",
    "1000000",
    "--max-connections-per-user",
    "100000",
    "--max-rooms-per-connection",
    "4",
];

/// Resident memory of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS line")
}

/// One send, timed from its write to its ack.
async fn probe(ws: &mut Ws, room: &str, id: &str) -> Duration {
    let started = Instant::now();
    send(ws, json!({"type": "send", "room": room, "id": id, "body": "probe"})).await;
    let answer = until(ws, |f| (f["type"] == "ack" && f["id"] == id) || f["type"] == "error").await;
    assert_eq!(answer["type"], "ack", "{answer}");
    started.elapsed()
}

/// Probes both gateways in turn, `n` each; (stored, persisted) latencies.
async fn probe_both(
    stored: &mut Ws,
    persisted: &mut Ws,
    room: &str,
    phase: &str,
    n: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..n {
        a.push(probe(stored, room, &format!("{phase}-s-{i}")).await);
        b.push(probe(persisted, room, &format!("{phase}-p-{i}")).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (a, b)
}

fn metric(page: &str, series: &str) -> f64 {
    natter_test_support::metrics_page::value(page, series).unwrap_or(0.0)
}

/// Sends of one connection in a burst (a connection holds at most 32 in flight).
const PER_CONN: usize = 30;

/// Opens connections to `gw` (each reading what it is sent, so that no outbound queue grows), then sends `n`
/// messages over them, [`PER_CONN`] each, across `rooms`; with `waits`, waits until the gateway's waiting gauge
/// shows them all (else 3 s, for them to be answered). The gateway's RSS before and after in KiB, and the
/// gauge.
async fn burst(gw: &Program, token: &str, rooms: &[String], n: usize, tag: &str, waits: bool) -> (u64, u64, f64) {
    let mut sinks = Vec::new();
    for c in 0..n.div_ceil(PER_CONN) {
        let mut ws = connect(gw, token).await;
        let room = rooms[c % rooms.len()].clone();
        join(&mut ws, &room).await;
        let (sink, mut stream) = ws.split();
        tokio::spawn(async move { while stream.next().await.is_some() {} });
        sinks.push((sink, room));
    }
    let pid = gw.pid().expect("gateway runs");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(pid);
    let mut sent = 0;
    for (c, (sink, room)) in sinks.iter_mut().enumerate() {
        for i in 0..PER_CONN.min(n - sent) {
            let frame = json!({"type": "send", "room": room, "id": format!("{tag}-{c}-{i}"), "body": "waiting"});
            sink.send(Message::text(frame.to_string())).await.expect("send");
            sent += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(if waits { 60 } else { 3 });
    let mut waiting = 0.0;
    while Instant::now() < deadline {
        let page = gw.metrics().await.unwrap_or_default();
        waiting = metric(&page, "natter_gateway_sends_awaiting_persistence");
        if waiting >= sent as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    (before, rss_kib(pid), waiting)
}

#[tokio::main]
async fn main() {
    let args = args();
    let stack = Stack::builder().gateways(0).persisters(1).start().await;
    let stored_gw = stack.add_gateway(&COMMON).await;
    let mut persisted_flags = COMMON.to_vec();
    // Long enough for the memory figure's sends to stay waiting while it is read.
    persisted_flags.extend(["--ack-after", "persisted", "--persisted-ack-timeout", "120s"]);
    let persisted_gw = stack.add_gateway(&persisted_flags).await;
    let http = reqwest::Client::new();
    let api = stack.api_url();
    let guest: Value = http
        .post(format!("{api}/api/guest"))
        .json(&json!({"username": "ackbench"}))
        .send()
        .await
        .expect("guest")
        .json()
        .await
        .expect("token");
    let token = guest["access_token"].as_str().expect("token").to_owned();
    let mut rooms = Vec::new();
    // The memory figure's sends go to ten rooms, so each message is delivered to a tenth of its connections.
    for name in [
        "probes", "load", "w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "w9",
    ] {
        let room: Value = http
            .post(format!("{api}/api/rooms"))
            .bearer_auth(&token)
            .json(&json!({"name": name}))
            .send()
            .await
            .expect("room")
            .json()
            .await
            .expect("room id");
        rooms.push(room["id"].as_str().expect("room id").to_owned());
    }
    let (probes_room, load_room) = (rooms[0].clone(), rooms[1].clone());
    let waiting_rooms = rooms[2..].to_vec();

    let mut stored = connect(&stored_gw, &token).await;
    let mut persisted = connect(&persisted_gw, &token).await;
    join(&mut stored, &probes_room).await;
    join(&mut persisted, &probes_room).await;
    // Warm both paths (room tasks, the persister's first batch).
    probe_both(&mut stored, &mut persisted, &probes_room, "warm", 20).await;

    let (idle_s, idle_p) = probe_both(&mut stored, &mut persisted, &probes_room, "idle", args.probes).await;

    // Background load: four connections on the stored gateway, each sending its share at an even pace, acks read
    // and dropped.
    let senders = 4u64;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load_tasks = Vec::new();
    for s in 0..senders {
        let mut ws = connect(&stored_gw, &token).await;
        join(&mut ws, &load_room).await;
        let (mut sink, mut stream) = ws.split();
        tokio::spawn(async move { while stream.next().await.is_some() {} });
        let room = load_room.clone();
        let stop = stop.clone();
        let every = Duration::from_secs_f64(senders as f64 / args.load as f64);
        load_tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let frame = json!({"type": "send", "room": room, "id": format!("load-{s}-{i}"), "body": "load"});
                if sink.send(Message::text(frame.to_string())).await.is_err() {
                    break;
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let persister = stack.persister(0);
    let before = persister.metrics().await.unwrap_or_default();
    let load_started = Instant::now();
    let (load_s, load_p) = probe_both(&mut stored, &mut persisted, &probes_room, "load", args.probes).await;
    let load_secs = load_started.elapsed().as_secs_f64();
    let after = persister.metrics().await.unwrap_or_default();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load_tasks {
        let _ = task.await;
    }
    let batches = metric(&after, "natter_persister_insert_latency_seconds_count")
        - metric(&before, "natter_persister_insert_latency_seconds_count");
    let commit_secs = metric(&after, "natter_persister_insert_latency_seconds_sum")
        - metric(&before, "natter_persister_insert_latency_seconds_sum");
    let rows =
        metric(&after, "natter_persister_rows_written_total") - metric(&before, "natter_persister_rows_written_total");
    let notices = metric(&after, "natter_persister_persisted_notices_total")
        - metric(&before, "natter_persister_persisted_notices_total");

    // A notice's publish as the persister makes it: a client's cost per publish of a notice-sized payload.
    let nats = async_nats::connect(stack.nats.url()).await.expect("NATS");
    let notice = serde_json::to_vec(&natter_proto::bus::PersistedSeqs::new(
        1_780_000_000_000_000,
        [12_345, 12_346, 12_350],
    ))
    .expect("encodes");
    let subject = natter_proto::subject::persisted_notice(&natter_proto::RoomId::parse(&probes_room).expect("room"));
    let publishes = 100_000u32;
    let started = Instant::now();
    for _ in 0..publishes {
        nats.publish(subject.clone(), notice.clone().into())
            .await
            .expect("publish");
    }
    nats.flush().await.expect("flush");
    let publish_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(publishes);

    // Memory per waiting send: `waiting` sends left waiting on the persisted gateway while the persister is frozen.
    // The same burst first, with the persister running (each send confirmed within milliseconds), is the control:
    // it grows the allocator to what the burst itself needs, so the second burst's growth is what waiting holds.
    let (stored_before, stored_after, _) =
        burst(&persisted_gw, &token, &waiting_rooms, args.waiting, "ctl", false).await;
    persister.pause();
    let (rss_before, rss_after, waiting_now) =
        burst(&persisted_gw, &token, &waiting_rooms, args.waiting, "wait", true).await;
    persister.resume();
    let sent = args.waiting;

    let (is50, is99) = percentiles(idle_s);
    let (ip50, ip99) = percentiles(idle_p);
    let (ls50, ls99) = percentiles(load_s);
    let (lp50, lp99) = percentiles(load_p);
    println!(
        "ack latency, {} probes per mode and phase, alternating between the two gateways:",
        args.probes
    );
    println!(
        "  idle:                   stored p50 {is50:.1} ms p99 {is99:.1} ms | persisted p50 {ip50:.1} ms p99 {ip99:.1} ms | persisted/stored p50 {:.1}x",
        ip50 / is50
    );
    println!(
        "  under {} msg/s of load: stored p50 {ls50:.1} ms p99 {ls99:.1} ms | persisted p50 {lp50:.1} ms p99 {lp99:.1} ms | persisted/stored p50 {:.1}x",
        args.load,
        lp50 / ls50
    );
    println!(
        "persister during the load phase ({load_secs:.1} s): {batches} batches of {:.1} rows on average, {:.2} ms a commit; {notices} notices ({:.2} a batch); a notice's publish costs a client {publish_us:.2} us ({:.2} % of a commit)",
        rows / batches.max(1.0),
        commit_secs * 1e3 / batches.max(1.0),
        notices / batches.max(1.0),
        publish_us / (commit_secs * 1e6 / batches.max(1.0)) * 100.0
    );
    let per_send = |before: u64, after: u64| (after.saturating_sub(before) * 1024) as f64 / sent as f64;
    println!(
        "memory: {sent} sends waiting for the frozen persister (gauge {waiting_now}) over {} connections: gateway RSS {rss_before} -> {rss_after} KiB, {:.0} bytes per waiting send; the same burst just before with the persister running (confirmed at once) {stored_before} -> {stored_after} KiB, {:.0} bytes per send",
        sent.div_ceil(PER_CONN),
        per_send(rss_before, rss_after),
        per_send(stored_before, stored_after),
    );
}
