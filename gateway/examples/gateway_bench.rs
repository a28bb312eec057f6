//! A first benchmark of one gateway process: memory per idle connection, and fan-out deliveries per second.
//!
//! It is driven by `scripts/bench-gateway.sh`, which brings up a stack and records the figures in
//! docs/benchmarks.md. It is not the load-test harness: one process, one source address, one room.
//!
//! ```text
//! gateway_bench --url ws://127.0.0.1:9001/ws --token JWT --room ROOM --gateway-pid PID \
//!     --idle 10000 --receivers 500 --messages 2000
//! ```

// A benchmark's output is its figures on stdout.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

struct Args {
    url: String,
    token: String,
    room: String,
    gateway_pid: u32,
    idle: usize,
    receivers: usize,
    messages: u64,
}

fn args() -> Args {
    let mut args = Args {
        url: String::new(),
        token: String::new(),
        room: String::new(),
        gateway_pid: 0,
        idle: 10_000,
        receivers: 500,
        messages: 2_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value,
            "--token" => args.token = value,
            "--room" => args.room = value,
            "--gateway-pid" => args.gateway_pid = value.parse().expect("a pid"),
            "--idle" => args.idle = value.parse().expect("a count"),
            "--receivers" => args.receivers = value.parse().expect("a count"),
            "--messages" => args.messages = value.parse().expect("a count"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// Resident memory of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the gateway's status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, token: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}?token={token}"))
        .await
        .expect("connect");
    // The hello frame.
    ws.next().await.expect("hello").expect("hello frame");
    ws
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await.expect("open").expect("frame") {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

#[tokio::main]
async fn main() {
    let args = args();
    let baseline = rss_kib(args.gateway_pid);

    // Idle connections: connected and authenticated, in no room, answering pings as they come.
    let started = Instant::now();
    let mut idle = Vec::with_capacity(args.idle);
    let mut pending =
        futures::stream::iter((0..args.idle).map(|_| connect(&args.url, &args.token))).buffer_unordered(256);
    while let Some(ws) = pending.next().await {
        idle.push(ws);
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_idle = rss_kib(args.gateway_pid);
    let per_conn = (with_idle.saturating_sub(baseline)) as f64 * 1024.0 / args.idle.max(1) as f64;
    println!(
        "idle_connections={} connect_secs={connect_secs:.2} rate_per_sec={:.0}",
        args.idle,
        args.idle as f64 / connect_secs
    );
    println!(
        "gateway_rss_kib_before={baseline} gateway_rss_kib_after={with_idle} bytes_per_idle_connection={per_conn:.0}"
    );

    // Fan-out: receivers in one room, one sender publishing as fast as its acks come back.
    let mut receivers = Vec::with_capacity(args.receivers);
    for _ in 0..args.receivers {
        let mut ws = connect(&args.url, &args.token).await;
        ws.send(Message::text(json!({"type": "join", "room": args.room}).to_string()))
            .await
            .expect("join");
        loop {
            if next_json(&mut ws).await["type"] == "joined" {
                break;
            }
        }
        receivers.push(ws);
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let expected = args.messages;
    let mut tasks = Vec::new();
    for mut ws in receivers {
        let delivered = delivered.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            while got < expected {
                if next_json(&mut ws).await["type"] == "message" {
                    got += 1;
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            Instant::now()
        }));
    }
    let mut sender = connect(&args.url, &args.token).await;
    sender
        .send(Message::text(json!({"type": "join", "room": args.room}).to_string()))
        .await
        .expect("join");
    let (mut tx, mut rx) = sender.split();
    let started = Instant::now();
    let window = 64u64;
    let acks = tokio::spawn(async move {
        let mut acked = 0;
        while acked < expected {
            if let Message::Text(text) = rx.next().await.expect("open").expect("frame") {
                let frame: Value = serde_json::from_str(&text).expect("JSON");
                if frame["type"] == "ack" {
                    acked += 1;
                } else if frame["type"] == "error" {
                    panic!("sender error: {frame}");
                }
            }
        }
        Instant::now()
    });
    let body = "x".repeat(100);
    for i in 0..expected {
        // Keep at most `window` sends in flight ahead of the deliveries.
        while i >= window && delivered.load(Ordering::Relaxed) / args.receivers.max(1) as u64 + window <= i {
            tokio::task::yield_now().await;
        }
        let frame = json!({"type": "send", "room": args.room, "id": format!("b{i}"), "body": body});
        tx.send(Message::text(frame.to_string())).await.expect("send");
    }
    let acked_at = acks.await.expect("ack task");
    let mut last = started;
    for task in tasks {
        last = last.max(task.await.expect("receiver"));
    }
    let secs = last.duration_since(started).as_secs_f64();
    let total = delivered.load(Ordering::Relaxed);
    println!(
        "fanout receivers={} messages={expected} deliveries={total} secs={secs:.2} deliveries_per_sec={:.0} \
         publishes_per_sec={:.0}",
        args.receivers,
        total as f64 / secs,
        expected as f64 / acked_at.duration_since(started).as_secs_f64()
    );
    drop(idle);
}
