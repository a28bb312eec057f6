//! The accounting catches each fault when a server injects it: a stand-in gateway (and the two auth API routes the
//! harness needs) that drops, repeats or reorders one message for one receiver.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{run_harness, said};

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// The third message never reaches the first receiver.
    Drop,
    /// The third message reaches the first receiver twice.
    Repeat,
    /// The first receiver gets the fourth message before the third.
    Reorder,
    /// After the third message the server closes every socket and refuses new ones.
    Vanish,
    /// Every send is refused with an error frame.
    Refuse,
    /// Each message is refused with `overloaded` the first time it is sent, and taken when sent again.
    RefuseOnce,
    /// Every other message is stored and delivered, but its sender is told `publish_failed` (the outcome unknown,
    /// as when NATS came back after the gateway gave up waiting). With each of the `publish_failed` faults, a
    /// resend of a stored message is acked with its stored seq and delivered no second time, as JetStream's
    /// dedup does.
    UnknownOutcomeStored,
    /// Every other message is answered `publish_failed` the first time it is sent and not stored (JetStream never
    /// got it); sent again, it is stored, acked and delivered.
    UnknownOutcomeLost,
    /// Every other message is answered `publish_failed` each time it is sent and never stored.
    NeverConfirmed,
}

impl Fault {
    /// Whether the server deduplicates by message id, as JetStream does, under this fault.
    fn dedups(self) -> bool {
        matches!(
            self,
            Fault::UnknownOutcomeStored | Fault::UnknownOutcomeLost | Fault::NeverConfirmed
        )
    }
}

#[derive(Default)]
struct Room {
    last_seq: u64,
    count: u64,
    members: Vec<mpsc::UnboundedSender<String>>,
    held: Option<String>,
}

struct Server {
    fault: Fault,
    gone: tokio::sync::watch::Sender<bool>,
    seq: AtomicU64,
    ids: AtomicU64,
    rooms: Mutex<HashMap<String, Room>>,
    /// Message ids sent at least once.
    seen: Mutex<std::collections::HashSet<String>>,
    /// Message ids the fault hits: every other one, in the order they are first sent.
    hit: Mutex<std::collections::HashSet<String>>,
    /// Stored message ids and their seqs, when the server deduplicates ([`Fault::dedups`]).
    stored: Mutex<HashMap<String, u64>>,
}

impl Server {
    /// Counts one attempt at sending `id`: whether it is the first, and whether the fault hits the message (every
    /// other one, in the order they are first sent).
    fn attempt(&self, id: &str) -> Attempt {
        let mut seen = self.seen.lock().expect("seen lock");
        let mut hit = self.hit.lock().expect("hit lock");
        let first = seen.insert(id.to_owned());
        if first && seen.len() % 2 == 1 {
            hit.insert(id.to_owned());
        }
        Attempt {
            first,
            hit: hit.contains(id),
        }
    }
}

/// One attempt at sending a message, as the server sees it.
#[derive(Clone, Copy, Default)]
struct Attempt {
    first: bool,
    hit: bool,
}

async fn guests(State(_): State<Arc<Server>>, body: axum::Json<Value>) -> impl IntoResponse {
    let prefix = body["prefix"].as_str().unwrap_or("u").to_owned();
    let count = body["count"].as_u64().unwrap_or(0);
    let users: Vec<Value> = (0..count)
        .map(|i| json!({"id": format!("{prefix}-{i}"), "name": format!("{prefix}-{i}"), "access_token": format!("{prefix}-{i}")}))
        .collect();
    (
        axum::http::StatusCode::CREATED,
        axum::Json(json!({"users": users, "expires_in": 900})),
    )
}

async fn create_room(State(server): State<Arc<Server>>) -> impl IntoResponse {
    let id = format!("room-{}", server.ids.fetch_add(1, Ordering::SeqCst));
    (axum::http::StatusCode::CREATED, axum::Json(json!({"id": id})))
}

async fn ws(
    State(server): State<Arc<Server>>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> impl IntoResponse {
    let user = query.get("token").cloned().unwrap_or_default();
    if *server.gone.borrow() {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    upgrade.on_upgrade(move |socket| serve(server, socket, user))
}

async fn serve(server: Arc<Server>, socket: WebSocket, user: String) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
    });
    let _ = tx.send(
        json!({"type": "hello", "conn": user, "gateway": "faulty", "user": {"id": user, "name": user}}).to_string(),
    );
    let mut gone = server.gone.subscribe();
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = gone.wait_for(|gone| *gone) => break,
        };
        let Some(Ok(Message::Text(text))) = next else { break };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let room_id = frame["room"].as_str().unwrap_or_default().to_owned();
        let attempt = match frame["type"].as_str() {
            Some("send") => server.attempt(frame["id"].as_str().unwrap_or_default()),
            _ => Attempt::default(),
        };
        let mut rooms = server.rooms.lock().expect("rooms lock");
        let room = rooms.entry(room_id.clone()).or_default();
        match frame["type"].as_str() {
            Some("join") => {
                room.members.push(tx.clone());
                let joined =
                    json!({"type": "joined", "room": room_id, "seq": room.last_seq, "recovered": true, "members": []});
                let _ = tx.send(joined.to_string());
            }
            Some("send") if server.fault == Fault::Refuse => {
                let error =
                    json!({"type": "error", "code": "rate_limited", "message": "slow down", "ref": frame["id"]});
                let _ = tx.send(error.to_string());
            }
            Some("send") if server.fault == Fault::RefuseOnce && attempt.first => {
                let error = json!({"type": "error", "code": "overloaded", "message": "later", "ref": frame["id"]});
                let _ = tx.send(error.to_string());
            }
            Some("send")
                if server.fault.dedups()
                    && let Some(seq) = server
                        .stored
                        .lock()
                        .expect("stored lock")
                        .get(frame["id"].as_str().unwrap_or_default())
                        .copied() =>
            {
                let _ = tx.send(json!({"type": "ack", "room": room_id, "id": frame["id"], "seq": seq}).to_string());
            }
            Some("send")
                if attempt.hit
                    && (server.fault == Fault::NeverConfirmed
                        || (server.fault == Fault::UnknownOutcomeLost && attempt.first)) =>
            {
                // Not stored: JetStream never got this attempt.
                let error = json!({"type": "error", "code": "publish_failed", "message": "outcome unknown", "ref": frame["id"]});
                let _ = tx.send(error.to_string());
            }
            Some("send") => {
                let seq = server.seq.fetch_add(1, Ordering::SeqCst) + 1;
                let prev = std::mem::replace(&mut room.last_seq, seq);
                room.count += 1;
                if server.fault == Fault::Vanish && room.count > 3 {
                    // Gone before the fourth message is acked or delivered: exactly three acks reach the sender.
                    server.gone.send_replace(true);
                    continue;
                }
                let id = frame["id"].as_str().unwrap_or_default();
                let message = json!({"type": "message", "room": room_id, "seq": seq, "prev": prev, "id": id,
                    "user": {"id": user, "name": user}, "body": frame["body"], "ts": "2026-01-01T00:00:00Z"})
                .to_string();
                if server.fault.dedups() {
                    server.stored.lock().expect("stored lock").insert(id.to_owned(), seq);
                }
                if server.fault == Fault::UnknownOutcomeStored && attempt.hit {
                    let error = json!({"type": "error", "code": "publish_failed", "message": "outcome unknown",
                        "ref": id});
                    let _ = tx.send(error.to_string());
                } else {
                    let _ = tx.send(json!({"type": "ack", "room": room_id, "id": id, "seq": seq}).to_string());
                }
                let count = room.count;
                let held = if count == 4 { room.held.take() } else { None };
                for (i, member) in room.members.iter().enumerate() {
                    let victim = i == 0;
                    match (server.fault, count, victim) {
                        (Fault::Drop, 3, true) => {}
                        (Fault::Repeat, 3, true) => {
                            let _ = member.send(message.clone());
                            let _ = member.send(message.clone());
                        }
                        (Fault::Reorder, 3, true) => room.held = Some(message.clone()),
                        (Fault::Reorder, 4, true) => {
                            let _ = member.send(message.clone());
                            if let Some(held) = &held {
                                let _ = member.send(held.clone());
                            }
                        }
                        _ => {
                            let _ = member.send(message.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    writer.abort();
}

/// Starts the stand-in server; returns its base HTTP URL.
async fn start(fault: Fault) -> String {
    let (gone, _) = tokio::sync::watch::channel(false);
    let server = Arc::new(Server {
        fault,
        gone,
        seq: AtomicU64::new(0),
        ids: AtomicU64::new(1),
        rooms: Mutex::default(),
        seen: Mutex::default(),
        hit: Mutex::default(),
        stored: Mutex::default(),
    });
    let app = Router::new()
        .route("/api/load-test/guests", post(guests))
        .route("/api/rooms", post(create_room))
        .route("/ws", get(ws))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("127.0.0.1:{}", addr.port())
}

/// One room of six users (one sender, ten messages) over two workers, against a server injecting `fault`.
async fn run_against(fault: Fault) -> (std::process::Output, Value) {
    let addr = start(fault).await;
    let args: Vec<String> = [
        "--api",
        &format!("http://{addr}"),
        "--load-test-key",
        "stand-in-server-key",
        "--gateway",
        &format!("ws://{addr}/ws"),
        "--users",
        "6",
        "--rooms",
        "1",
        "--senders",
        "1",
        "--rate",
        "50",
        "--messages",
        "10",
        "--duration",
        "2s",
        "--ramp-up",
        "0",
        "--workers",
        "2",
        "--drain-timeout",
        "2s",
        "--max-loss",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run_harness(&args).await
}

fn faults(report: &Value) -> (u64, u64, u64) {
    let f = &report["faults"];
    (
        f["lost"].as_u64().expect("lost"),
        f["duplicates"].as_u64().expect("duplicates"),
        f["reordered"].as_u64().expect("reordered"),
    )
}

/// How many sends went again with their id for `cause`, as the report says.
fn resent(report: &Value, cause: &str) -> u64 {
    report["messages"]["resent"][cause].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faithful_server_gives_a_clean_report_and_exit_zero() {
    let (output, report) = run_against(Fault::None).await;
    assert!(output.status.success(), "{}", said(&output));
    assert_eq!(faults(&report), (0, 0, 0), "{}", said(&output));
    assert_eq!(report["connect"]["connected"], 6);
    assert_eq!(report["messages"]["acked"], 10);
    // Six receivers (the sender too) each expected and got the ten messages.
    assert_eq!(report["messages"]["expected"], 60);
    assert_eq!(report["messages"]["delivered"], 60);
    assert_eq!(
        report["messages"]["latency"]["count"], 60,
        "one latency sample per delivery, merged across workers"
    );
    assert_eq!(report["workers"], 2);
    assert_eq!(report["passed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_message_is_counted_lost_and_fails_the_slo() {
    let (output, report) = run_against(Fault::Drop).await;
    assert_eq!(faults(&report), (1, 0, 0), "{}", said(&output));
    assert_eq!(report["messages"]["delivered"], 59);
    assert_eq!(
        output.status.code(),
        Some(1),
        "--max-loss 0 was missed: {}",
        said(&output)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("SLO --max-loss"),
        "{}",
        said(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_message_is_counted_duplicate() {
    let (output, report) = run_against(Fault::Repeat).await;
    assert_eq!(faults(&report), (0, 1, 0), "{}", said(&output));
    assert_eq!(report["messages"]["delivered"], 61);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_messages_are_counted_reordered() {
    let (output, report) = run_against(Fault::Reorder).await;
    assert_eq!(faults(&report), (0, 0, 1), "{}", said(&output));
    assert_eq!(report["messages"]["delivered"], 60);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
}

#[tokio::test]
async fn bad_flags_exit_64_before_anything_starts() {
    for args in [
        &["--users", "0"][..],
        &["--users", "10", "--rooms", "20"],
        &["--rate", "0"],
        &["--gateway", "http://not-a-websocket"],
        &["--users", "10"], // no --load-test-key
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter-loadtest"))
            .arg("run")
            .args(args)
            .env_remove("NATTER_LOAD_TEST_KEY")
            .output()
            .await
            .expect("run the harness");
        assert_eq!(output.status.code(), Some(64), "{args:?}: {}", said(&output));
        assert!(!output.stderr.is_empty(), "{args:?} says why");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_vanishes_ends_the_run_with_what_was_left_unacked() {
    // Senders that cannot get back finish after the ack timeout, receivers after the drain timeout: the run ends.
    let run = tokio::time::timeout(std::time::Duration::from_secs(60), run_against(Fault::Vanish));
    let (output, report) = run.await.expect("the run ends by itself");
    assert_eq!(report["messages"]["acked"], 3, "{}", said(&output));
    assert!(
        report["messages"]["unacked"].as_u64().expect("unacked") >= 1,
        "{}",
        said(&output)
    );
    assert!(
        report["connect"]["failures"]["http_503"].as_u64().unwrap_or(0) >= 1,
        "{}",
        said(&output)
    );
    assert_eq!(report["close_codes"]["abnormal"], 6, "{}", said(&output));
    assert_eq!(
        faults(&report),
        (0, 0, 0),
        "the three acked messages reached everyone: {}",
        said(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sends_count_against_the_loss_bound() {
    // Nothing acked means nothing expected, so no receiver misses anything; the sends themselves are the loss.
    // The fake gateway refuses every send with `rate_limited`.
    let (output, report) = run_against(Fault::Refuse).await;
    assert_eq!(report["messages"]["acked"], 0, "{}", said(&output));
    assert_eq!(report["messages"]["unacked"], 10, "{}", said(&output));
    // Refused for now, each is sent again with its id after a pause, and refused again, until the run is over.
    let refusals = report["error_codes"]["rate_limited"].as_u64().unwrap_or(0);
    assert!(
        refusals > 10,
        "each refused send went again: {refusals} refusals; {}",
        said(&output)
    );
    let resends = resent(&report, "rate_limited");
    assert!(
        resends >= refusals - 10 && resends <= refusals,
        "a resend per refusal but the last of each: {resends} resends, {refusals} refusals; {}",
        said(&output)
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "--max-loss 0 counts unacked sends: {}",
        said(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_refused_for_now_is_sent_again_and_its_pause_is_told_apart_from_delivery() {
    let (output, report) = run_against(Fault::RefuseOnce).await;
    assert!(output.status.success(), "{}", said(&output));
    let m = &report["messages"];
    assert_eq!(
        m["acked"],
        10,
        "every refused send was taken the second time: {}",
        said(&output)
    );
    assert_eq!(m["delivered"], 60);
    assert_eq!(report["error_codes"]["overloaded"], 10);
    assert_eq!(
        report["messages"]["resent"],
        json!({"overloaded": 10}),
        "{}",
        said(&output)
    );
    // Each message waited at least the 250 ms pause before it went again: that counts from when it was due, not
    // from the send that was taken.
    let quantile = |name: &str, q: &str| m[name][q].as_f64().expect("a latency quantile");
    assert_eq!(m["accepted_latency"]["count"], 60, "one sample per delivery");
    for q in ["p50_ms", "p99_ms"] {
        assert!(
            quantile("latency", q) >= quantile("accepted_latency", q) + 250.0,
            "{q}: due {} ms, taken {} ms",
            quantile("latency", q),
            quantile("accepted_latency", q)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_of_unknown_outcome_that_was_stored_is_sent_again_and_counted_once() {
    // Every other message is stored and delivered, but its sender hears `publish_failed`: only the resend's ack
    // (with the stored seq) tells the harness the message was taken, and the receivers must see each message once.
    let (output, report) = run_against(Fault::UnknownOutcomeStored).await;
    assert!(output.status.success(), "a clean run: {}", said(&output));
    let m = &report["messages"];
    assert_eq!(
        m["acked"],
        10,
        "every send acked, half of them after a resend: {}",
        said(&output)
    );
    assert_eq!(m["unacked"], 0, "{}", said(&output));
    assert_eq!(m["delivered"], 60, "each message delivered once to each member");
    assert_eq!(report["error_codes"]["publish_failed"], 5);
    assert_eq!(
        m["resent"],
        json!({"publish_failed": 5}),
        "each unknown outcome sent again once, nothing else: {}",
        said(&output)
    );
    assert_eq!(faults(&report), (0, 0, 0), "{}", said(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|line| line.trim_start().starts_with("sent again") && line.ends_with(" publish_failed 5")),
        "the summary shows the resends: {}",
        said(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_of_unknown_outcome_that_was_not_stored_is_stored_by_its_resend() {
    // Every other message is answered `publish_failed` and not stored; its resend is what gets stored.
    let (output, report) = run_against(Fault::UnknownOutcomeLost).await;
    assert!(output.status.success(), "a clean run: {}", said(&output));
    let m = &report["messages"];
    assert_eq!(m["acked"], 10, "{}", said(&output));
    assert_eq!(m["unacked"], 0, "{}", said(&output));
    assert_eq!(m["expected"], 60);
    assert_eq!(
        m["delivered"], 60,
        "each message delivered once, after its resend stored it"
    );
    assert_eq!(m["resent"], json!({"publish_failed": 5}), "{}", said(&output));
    assert_eq!(faults(&report), (0, 0, 0), "{}", said(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_sends_never_acked_count_as_unacked() {
    // Every other message is answered `publish_failed` however often it is sent again; the rest are acked at once.
    let (output, report) = run_against(Fault::NeverConfirmed).await;
    let m = &report["messages"];
    assert_eq!(m["acked"], 5, "{}", said(&output));
    assert_eq!(
        m["unacked"],
        5,
        "exactly the five never acked, however often they went: {}",
        said(&output)
    );
    assert!(
        resent(&report, "publish_failed") > 5,
        "each went again until its sender gave up: {}",
        said(&output)
    );
    assert_eq!(m["expected"], 30, "receivers expect the acked messages only");
    assert_eq!(faults(&report), (0, 0, 0), "{}", said(&output));
    assert_eq!(
        output.status.code(),
        Some(1),
        "--max-loss 0 counts the unacked sends: {}",
        said(&output)
    );
}
