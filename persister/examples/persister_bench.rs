//! Persister benchmark: the rows per second a persister sustains from a backlog, and the time from publishing a
//! message to its row being readable.
//!
//! Driven by `scripts/bench-persister.sh` against a stack with no persister running:
//! publishes `--messages` chat messages over `--rooms` rooms into the stream, then starts `--persisters` (one) in this
//! process and times the backlog into PostgreSQL; then, with the persister idle, publishes messages one at a time
//! and times each until its row is there.

// A benchmark's output is its figures on stdout.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use sqlx::PgPool;

struct Args {
    nats_url: String,
    /// The NATS user the benchmark and its persisters connect as (the operator's: deploy/nats/auth.conf).
    nats_user: String,
    nats_password: String,
    database_url: String,
    messages: u64,
    rooms: u64,
    batch: String,
    writers: String,
    persisters: usize,
    /// Percent of the backlog that is changes to earlier messages (edits, reactions, deletions, replies).
    changes: u64,
}

fn args() -> Args {
    let mut args = Args {
        nats_url: String::new(),
        nats_user: "natter-admin".into(),
        nats_password: String::new(),
        database_url: String::new(),
        messages: 1_000_000,
        rooms: 100,
        batch: "1000".into(),
        writers: "2".into(),
        persisters: 1,
        changes: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--nats-url" => args.nats_url = value,
            "--nats-user" => args.nats_user = value,
            "--nats-password" => args.nats_password = value,
            "--database-url" => args.database_url = value,
            "--messages" => args.messages = value.parse().expect("a count"),
            "--rooms" => args.rooms = value.parse().expect("a count"),
            "--batch" => args.batch = value,
            "--writers" => args.writers = value,
            "--persisters" => args.persisters = value.parse().expect("a count"),
            "--changes" => args.changes = value.parse().expect("a percentage"),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// A message accepted at `ts` (now, so that its row lands in today's partition as a live one would).
fn payload(i: u64, ts: &str) -> bytes::Bytes {
    json!({"id": format!("b{i}"), "user": {"id": "u-bench", "name": "bench"},
           "body": "a chat message of ordinary length, about sixty bytes long", "ts": ts})
    .to_string()
    .into()
}

/// Message `i` as a change (`--changes`) to the message of its room at stream position `target`: in turn a
/// reaction, an edit, the reaction taken back, a deletion, a reply.
fn change_payload(i: u64, ts: &str, target: u64) -> bytes::Bytes {
    let mut value = json!({"id": format!("b{i}"), "user": {"id": "u-bench", "name": "bench"}, "body": "", "ts": ts});
    match i % 5 {
        0 => value["change"] = json!({"kind": "react", "target": target, "emoji": "👍", "on": true}),
        1 => {
            value["change"] = json!({"kind": "edit", "target": target});
            value["body"] = json!("a chat message of ordinary length, about sixty bytes, edited");
        }
        2 => value["change"] = json!({"kind": "react", "target": target, "emoji": "👍", "on": false}),
        3 => value["change"] = json!({"kind": "delete", "target": target}),
        _ => {
            value["reply_to"] = json!(target);
            value["body"] = json!("a reply of ordinary length, about sixty bytes long, to one");
        }
    }
    value.to_string().into()
}

/// CPU seconds (user and system) a process has used, with those of its children it has reaped.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may hold spaces): utime, stime, cutime and
    // cstime are the 12th to 15th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// The parent of process `pid`.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Every process id on the machine.
fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// CPU seconds used so far by the three processes that share the work: NATS (the server listening on `nats_port`),
/// PostgreSQL (the postmaster serving `db` and all its processes) and this one (the persister).
async fn cpu_now(db: &PgPool, nats_port: &str) -> [f64; 3] {
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(db)
        .await
        .expect("backend pid");
    let postmaster = parent(u32::try_from(backend).expect("pid")).expect("postmaster");
    let all = pids();
    let postgres = cpu_secs(postmaster)
        + all
            .iter()
            .filter(|&&pid| parent(pid) == Some(postmaster))
            .map(|&pid| cpu_secs(pid))
            .sum::<f64>();
    let nats = all
        .iter()
        .filter(|&&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                cmd.contains("nats-server") && cmd.split_whitespace().any(|arg| arg == nats_port)
            })
        })
        .map(|&pid| cpu_secs(pid))
        .sum();
    [nats, postgres, cpu_secs(std::process::id())]
}

/// Copies the run's rows into a table like `messages` with PostgreSQL's binary COPY and prints its rate and CPU
/// per row beside the persister's (`drain` CPU readings: before and after).
async fn copy_limit(db: &PgPool, nats_port: &str, epoch: i64, messages: u64, drain_secs: f64, drain: [[f64; 3]; 2]) {
    use futures::TryStreamExt;
    let mut conn = db.acquire().await.expect("a connection");
    sqlx::query("DROP TABLE IF EXISTS messages_copy")
        .execute(&mut *conn)
        .await
        .expect("drop");
    sqlx::query("CREATE TABLE messages_copy (LIKE messages INCLUDING ALL)")
        .execute(&mut *conn)
        .await
        .expect("a table like messages");
    // The columns a writer gives (not the generated ones, such as the search vector, which COPY computes).
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(column_name::text) FROM information_schema.columns \
         WHERE table_name = 'messages' AND table_schema = current_schema() AND is_generated = 'NEVER' \
         ORDER BY ordinal_position",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("the columns");
    let columns = columns.join(", ");
    let data: Vec<bytes::Bytes> = conn
        .copy_out_raw(&format!(
            "COPY (SELECT {columns} FROM messages WHERE epoch = {epoch}) TO STDOUT (FORMAT binary)"
        ))
        .await
        .expect("copy out")
        .try_collect()
        .await
        .expect("the rows");
    let cpu_before = cpu_now(db, nats_port).await;
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(&format!("COPY messages_copy ({columns}) FROM STDIN (FORMAT binary)"))
        .await
        .expect("copy in");
    for chunk in data {
        copy.send(chunk).await.expect("copy data");
    }
    let copied = copy.finish().await.expect("copy done");
    let copy_secs = started.elapsed().as_secs_f64();
    let cpu_after = cpu_now(db, nats_port).await;
    sqlx::query("DROP TABLE messages_copy").execute(db).await.expect("drop");
    let copy_per_row = (cpu_after[1] - cpu_before[1]) * 1e6 / copied.max(1) as f64;
    let drain_per_row = |i: usize| (drain[1][i] - drain[0][i]) * 1e6 / messages.max(1) as f64;
    let copy_rate = copied as f64 / copy_secs;
    let drain_rate = messages as f64 / drain_secs;
    println!(
        "copy rows={copied} secs={copy_secs:.1} rows_per_sec={copy_rate:.0} postgres_cpu_us_per_row={copy_per_row:.1}"
    );
    println!(
        "ratio persister_rows_per_sec/copy_rows_per_sec={:.2} (nats+persister)_cpu_per_row/postgres_cpu_per_row_in_drain={:.2} \
         (nats+persister)_cpu_per_row/postgres_cpu_per_row_in_copy={:.2}",
        drain_rate / copy_rate,
        (drain_per_row(0) + drain_per_row(2)) / drain_per_row(1).max(1e-9),
        (drain_per_row(0) + drain_per_row(2)) / copy_per_row.max(1e-9),
    );
}

async fn rows(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(db)
        .await
        .expect("count")
}

#[tokio::main]
async fn main() {
    // The persister's own warnings (a broken pull stream, a failed write) belong in the figures' context.
    natter_service::init_logging("warn");
    let args = args();
    let nats = async_nats::ConnectOptions::with_user_and_password(args.nats_user.clone(), args.nats_password.clone())
        .connect(&args.nats_url)
        .await
        .expect("nats");
    let js = async_nats::jetstream::new(nats);
    let stream = natter_stream::ensure(&js, natter_stream::Limits::new(Duration::from_secs(7 * 86_400), 1))
        .await
        .expect("stream");
    // Rows are looked up by their key, which starts with the stream's epoch.
    let epoch = i64::try_from(natter_stream::epoch::of(stream.cached_info())).expect("epoch fits");
    let now = || natter_proto::bus::timestamp(chrono::Utc::now());
    let ts = now();
    let db = PgPool::connect(&args.database_url).await.expect("db");

    // The backlog.
    let rooms: Vec<natter_proto::RoomId> = (0..args.rooms)
        .map(|i| natter_proto::RoomId::parse(&format!("bench{i}")).expect("room id"))
        .collect();
    let started = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    for i in 0..args.messages {
        let subject = natter_proto::subject::room_messages(&rooms[(i % args.rooms) as usize]);
        // Spread evenly: message i is a change when the running share of changes steps up at it. Its target is
        // the message of the same room five rounds back (the stream is new: message i is at sequence i + 1).
        let change = (i + 1) * args.changes / 100 > i * args.changes / 100 && i >= 5 * args.rooms;
        let body = if change {
            let target = u64::try_from(epoch).expect("epoch") + i - 5 * args.rooms + 1;
            change_payload(i, &ts, target)
        } else {
            payload(i, &ts)
        };
        in_flight.push_back(js.publish(subject, body).await.expect("publish"));
        if in_flight.len() >= 4096 {
            in_flight.pop_front().expect("non-empty").await.expect("stored");
        }
    }
    let mut last_seq = 0;
    for ack in in_flight {
        last_seq = last_seq.max(ack.await.expect("stored").sequence);
    }
    let publish_secs = started.elapsed().as_secs_f64();
    println!(
        "backlog messages={} publish_secs={publish_secs:.1} publish_per_sec={:.0}",
        args.messages,
        args.messages as f64 / publish_secs
    );

    // One persister drains it.
    let before = rows(&db).await;
    let mut apps = Vec::new();
    for _ in 0..args.persisters.max(1) {
        let config = natter_persister::config::Config::try_parse_from([
            "natter-persister",
            "--admin-listen",
            "127.0.0.1:0",
            "--nats-url",
            &args.nats_url,
            "--nats-user",
            &args.nats_user,
            "--nats-password",
            &args.nats_password,
            "--database-url",
            &args.database_url,
            "--consumer",
            "bench",
            "--batch-size",
            &args.batch,
            "--writers",
            &args.writers,
        ])
        .expect("config");
        apps.push(
            natter_persister::startup::Application::build(config)
                .await
                .expect("persister"),
        );
    }
    let nats_port = args.nats_url.rsplit(':').next().unwrap_or_default().to_owned();
    let cpu_before = cpu_now(&db, &nats_port).await;
    for app in apps {
        tokio::spawn(app.run_until_stopped(std::future::pending()));
    }
    let started = Instant::now();
    let target = before + i64::try_from(args.messages).expect("count fits");
    // Watched through the primary key (the newest row), which costs PostgreSQL nothing; counting the table every
    // few hundred milliseconds took a quarter of a core from the persister. Then counted once to be sure.
    let last_seq = i64::try_from(last_seq).expect("seq fits");
    loop {
        let newest: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM messages WHERE epoch = $1")
            .bind(epoch)
            .fetch_one(&db)
            .await
            .expect("newest row");
        if newest.is_some_and(|seq| seq >= last_seq) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while rows(&db).await < target {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_secs = started.elapsed().as_secs_f64();
    let cpu_after = cpu_now(&db, &nats_port).await;
    let page = natter_service::metrics_handle().render();
    let counter = |name: &str| {
        page.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    println!(
        "drain rows={} secs={drain_secs:.1} rows_per_sec={:.0} batch={} writers={} persisters={} redelivered={} \
         duplicates={}",
        args.messages,
        args.messages as f64 / drain_secs,
        args.batch,
        args.writers,
        args.persisters,
        counter(natter_persister::metrics::REDELIVERIES),
        counter(natter_persister::metrics::DUPLICATES),
    );
    // Microseconds of CPU per row each process spent while the backlog drained.
    let per_row = |i: usize| (cpu_after[i] - cpu_before[i]) * 1e6 / args.messages as f64;
    println!(
        "drain_cpu_us_per_row nats={:.1} postgres={:.1} persister={:.1} total={:.1}",
        per_row(0),
        per_row(1),
        per_row(2),
        per_row(0) + per_row(1) + per_row(2)
    );

    // The limit the persister is held against: PostgreSQL's own COPY of the same rows into a table of the same
    // schema (columns, defaults, indexes), binary as the persister's, from memory, in the same run.
    copy_limit(
        &db,
        &nats_port,
        epoch,
        args.messages,
        drain_secs,
        [cpu_before, cpu_after],
    )
    .await;

    // Send to row, one message at a time, with the persister idle.
    let mut samples = Vec::new();
    let mut after_ack = Vec::new();
    for i in 0..200u64 {
        let id = format!("e2e{i}");
        let body = json!({"id": id, "user": {"id": "u-bench", "name": "bench"}, "body": "timed", "ts": now()});
        let sent = Instant::now();
        let ack = js
            .publish(
                natter_proto::subject::room_messages(&natter_proto::RoomId::parse("latency").expect("room id")),
                body.to_string().into(),
            )
            .await
            .expect("publish")
            .await
            .expect("stored");
        let acked = Instant::now();
        // Looked up by its key, as the history API reads: a lookup by client id would scan the table, and time
        // the scan rather than the persister.
        let seq = i64::try_from(ack.sequence).expect("seq fits");
        loop {
            let found: Option<i64> = sqlx::query_scalar("SELECT seq FROM messages WHERE epoch = $1 AND seq = $2")
                .bind(epoch)
                .bind(seq)
                .fetch_optional(&db)
                .await
                .expect("query");
            if found.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(sent.elapsed().as_secs_f64() * 1000.0);
        after_ack.push(acked.elapsed().as_secs_f64() * 1000.0);
    }
    for (name, mut samples) in [("send_to_row_ms", samples), ("ack_to_row_ms", after_ack)] {
        samples.sort_by(f64::total_cmp);
        let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "{name} p50={:.1} p99={:.1} max={:.1} (n={})",
            pct(0.5),
            pct(0.99),
            pct(1.0),
            samples.len()
        );
    }

    // Idle: what NATS and the persister spend with nothing to write (pull requests renewed, heartbeats, consumer
    // and stream info), in CPU milliseconds per second.
    let idle = Duration::from_secs(30);
    let before = cpu_now(&db, &nats_port).await;
    tokio::time::sleep(idle).await;
    let after = cpu_now(&db, &nats_port).await;
    let per_sec = |i: usize| (after[i] - before[i]) * 1000.0 / idle.as_secs_f64();
    println!(
        "idle_cpu_ms_per_s nats={:.2} postgres={:.2} persister={:.2} (over {} s)",
        per_sec(0),
        per_sec(1),
        per_sec(2),
        idle.as_secs()
    );
}
