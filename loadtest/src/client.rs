//! One simulated user: it connects from its source address, joins its room, receives (and, as a sender, sends on
//! schedule), drops and rejoins when told to, reconnects when the gateway closes it, and keeps its own reception
//! for the accounting.

use natter_proto::error::ErrorCode;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use natter_proto::frame::{ClientFrame, ServerFrame};
use natter_proto::{ClientMsgId, RoomId};
use tokio::net::TcpSocket;
use tokio::sync::{Semaphore, watch};

use crate::accounting::Reception;
use crate::latency::Latencies;
use crate::plan::{Schedule, UserPlan};
use crate::ws::{Inbound, UpgradeError, Ws};

/// Room → seqs acknowledged to senders, sorted.
pub type Acked = HashMap<String, Vec<u64>>;

/// Microseconds since the Unix epoch: the clock message bodies carry, shared by processes on one host.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The figures every client of a worker adds to. The worker runs on one thread, so the lock is never contended.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open now.
    pub open: u64,
    /// Clients that connected and joined at least once.
    pub connected: u64,
    /// Clients whose first attempt is over, connected or not.
    pub settled: u64,
    /// Senders that finished: all sent and acked, or the ack timeout passed.
    pub senders_finished: u64,
    /// Receivers holding every expected message.
    pub satisfied: u64,
    /// Connection attempts failed, by cause.
    pub connect_failures: std::collections::BTreeMap<String, u64>,
    /// TCP connect to hello.
    pub connect_latency: Latencies,
    /// Due time to arrival, whole run.
    pub latency: Latencies,
    /// Due time to arrival, since the last progress line.
    pub interval_latency: Latencies,
    /// Due time to ack.
    pub ack_latency: Latencies,
    /// The send the gateway took (the last attempt of a refused message) to arrival, whole run.
    pub accepted_latency: Latencies,
    /// Due time to arrival of changes to messages (edits, deletions, reactions), whole run.
    pub change_latency: Latencies,
    /// Counters since the last progress line: connected, failed, sent, delivered, errors.
    pub interval: [u64; 5],
    /// Messages sent (first attempts).
    pub sent: u64,
    /// Acks received.
    pub acked: u64,
    /// Messages never acked.
    pub unacked: u64,
    /// Sends sent again with the same id, by cause (see [`Resend`]).
    pub resent: std::collections::BTreeMap<String, u64>,
    /// Arrivals at receivers.
    pub delivered: u64,
    /// Rejoins answered with `recovered: false`.
    pub unrecovered: u64,
    /// Reconnections.
    pub reconnects: u64,
    /// Slow readers that stopped reading.
    pub stalls: u64,
    /// Error frames by code.
    pub error_codes: std::collections::BTreeMap<String, u64>,
    /// Closes by code.
    pub close_codes: std::collections::BTreeMap<String, u64>,
    /// Seqs acked to this worker's senders, by room.
    pub acked_seqs: HashMap<String, Vec<u64>>,
}

impl Stats {
    fn connect_failed(&mut self, cause: &str) {
        *self.connect_failures.entry(cause.to_owned()).or_default() += 1;
        self.interval[1] += 1;
    }

    fn closed(&mut self, code: &str) {
        *self.close_codes.entry(code.to_owned()).or_default() += 1;
        self.interval[4] += 1;
    }

    fn count_resend(&mut self, cause: Resend) {
        *self.resent.entry(cause.as_str().to_owned()).or_default() += 1;
    }
}

/// Why a sender sends a message again under its id. Every resend is safe: the stream's deduplication stores a
/// message once, and a resend of a stored one is acked with its first seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Refused for now: the gateway sheds load (`overloaded`).
    Overloaded,
    /// Refused for now: the sender is over its rate (`rate_limited`).
    RateLimited,
    /// Outcome unknown: JetStream did not confirm in time (`publish_failed`); the message may be stored.
    PublishFailed,
    /// Unacked when the connection was lost: sent again after the rejoin.
    Rejoin,
}

impl Resend {
    /// The cause an error frame's code gives for sending again, if it is one.
    fn of_code(code: &str) -> Option<Self> {
        match ErrorCode::parse(code)? {
            ErrorCode::Overloaded => Some(Self::Overloaded),
            ErrorCode::RateLimited => Some(Self::RateLimited),
            ErrorCode::PublishFailed => Some(Self::PublishFailed),
            _ => None,
        }
    }

    /// Its name in the report: the error code, or `rejoin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Overloaded => ErrorCode::Overloaded.as_str(),
            Self::RateLimited => ErrorCode::RateLimited.as_str(),
            Self::PublishFailed => ErrorCode::PublishFailed.as_str(),
            Self::Rejoin => "rejoin",
        }
    }
}

/// What the clients of one worker share.
pub struct Shared {
    /// The worker's figures.
    pub stats: Mutex<Stats>,
    /// Gateway URLs and their resolved addresses.
    pub gateways: Vec<(String, SocketAddr)>,
    /// Source addresses, taken in turn; empty to let the system choose.
    pub source_addrs: Vec<IpAddr>,
    /// Timing.
    pub schedule: Schedule,
    /// Caps connection attempts in flight.
    pub connecting: Semaphore,
    /// The send phase's start as (wall clock in µs, the same moment on this process's monotonic clock); `None`
    /// until the coordinator says go.
    pub go: watch::Receiver<Option<(u64, Instant)>>,
    /// Every room's acknowledged seqs, sorted; `None` until the coordinator sends them.
    pub expect: watch::Receiver<Option<Arc<Acked>>>,
    /// Set when the run is over: clients close and hand back their reception.
    pub stop: watch::Receiver<bool>,
    /// Ticked whenever a client settles, finishes sending or is satisfied, so the worker re-checks its counts.
    pub changed: tokio::sync::Notify,
}

impl Shared {
    /// The figures, locked. A client that panicked while holding the lock leaves them usable.
    pub fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A client's end of the run.
pub struct Outcome {
    /// Its room.
    pub room: String,
    /// What it received, if it ever joined.
    pub reception: Option<Reception>,
}

/// Why a connection ended.
enum Ended {
    /// The run is over.
    Stopped,
    /// The plan's drop time came: stay away, then rejoin.
    Dropped,
    /// The gateway closed it or the socket failed.
    Lost,
}

/// A connection attempt: TCP from `source` to the gateway, the upgrade, and the hello frame. A `slow_reader`'s
/// socket gets a small receive buffer, so that when it stops reading the gateway's queue to it fills in seconds
/// rather than after megabytes of kernel buffering.
async fn connect(
    shared: &Shared,
    gateway: usize,
    source: Option<IpAddr>,
    token: &str,
    slow_reader: bool,
) -> Result<Ws, String> {
    let (url, addr) = &shared.gateways[gateway];
    let attempt = async {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(io_cause)?;
        if slow_reader {
            socket.set_recv_buffer_size(SLOW_READER_BUFFER).map_err(io_cause)?;
        }
        if let Some(source) = source.filter(|s| s.is_ipv4() == addr.is_ipv4()) {
            socket.bind(SocketAddr::new(source, 0)).map_err(io_cause)?;
        }
        let stream = socket.connect(*addr).await.map_err(io_cause)?;
        stream.set_nodelay(true).map_err(io_cause)?;
        let (host, path) = split_url(url);
        let mut ws = Ws::upgrade(stream, host, &format!("{path}?token={token}"))
            .await
            .map_err(|err| match err {
                UpgradeError::Io(err) => io_cause(err),
                other => other.to_string(),
            })?;
        // The first message must be the hello (pings before it are answered on the way).
        match ws.next_text().await {
            Ok(text) if matches!(serde_json::from_slice(&text), Ok(ServerFrame::Hello { .. })) => Ok(ws),
            Err(Some(code)) => Err(format!("closed_{code}")),
            Ok(_) | Err(None) => Err("no_hello".to_owned()),
        }
    };
    let timeout = Duration::from_millis(shared.schedule.connect_timeout_ms);
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err("timeout".to_owned()))
}

/// The `host[:port]` and the path of a `ws://` URL (the whole URL as the path if it is not one).
fn split_url(url: &str) -> (&str, &str) {
    let rest = url.strip_prefix("ws://").unwrap_or(url);
    match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    }
}

/// A short cause for a socket error, for the failure table.
fn io_cause(err: std::io::Error) -> String {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::ConnectionRefused => "refused".into(),
        ErrorKind::ConnectionReset => "reset".into(),
        ErrorKind::AddrNotAvailable | ErrorKind::AddrInUse => "no_source_port".into(),
        ErrorKind::TimedOut => "timeout".into(),
        _ if err.raw_os_error() == Some(24) => "too_many_open_files".into(),
        _ => format!("io_{:?}", err.kind()).to_lowercase(),
    }
}

/// A write that takes longer means the gateway stopped reading: the connection is treated as lost.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A slow reader's socket receive buffer in bytes (the kernel doubles it for its own bookkeeping).
const SLOW_READER_BUFFER: u32 = 4096;

/// The write took longer than [`SEND_TIMEOUT`], or failed.
#[derive(Debug)]
struct SendFailed;

/// Sends one frame as JSON text.
async fn send_frame(ws: &mut Ws, frame: &ClientFrame) -> Result<(), SendFailed> {
    // Client frames are plain data; serializing them cannot fail.
    let text = serde_json::to_string(frame).unwrap_or_default();
    match tokio::time::timeout(SEND_TIMEOUT, ws.send_text(text)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(SendFailed),
    }
}

/// Joins `room` and waits for `joined` (up to the connect timeout), skipping anything else. Returns the room's seq
/// and `recovered`.
async fn join(shared: &Shared, ws: &mut Ws, room: &RoomId, since: Option<u64>) -> Result<(u64, bool), String> {
    let timeout = Duration::from_millis(shared.schedule.connect_timeout_ms);
    tokio::time::timeout(timeout, join_now(ws, room, since))
        .await
        .unwrap_or_else(|_| Err("join_timeout".to_owned()))
}

async fn join_now(ws: &mut Ws, room: &RoomId, since: Option<u64>) -> Result<(u64, bool), String> {
    send_frame(
        ws,
        &ClientFrame::Join {
            room: room.clone(),
            since,
        },
    )
    .await
    .map_err(|_| "join_send".to_owned())?;
    while let Ok(text) = ws.next_text().await {
        match serde_json::from_slice::<ServerFrame>(&text) {
            Ok(ServerFrame::Joined { seq, recovered, .. }) => return Ok((seq, recovered)),
            Ok(ServerFrame::Error { code, .. }) => return Err(format!("join_{code}")),
            _ => {}
        }
    }
    Err("join_closed".to_owned())
}

/// A message this sender sent and has no ack for yet.
struct Pending {
    due_micros: u64,
    body: String,
    /// A message, or a change to one of the sender's earlier messages.
    kind: Outgoing,
    /// Refusals it met (`overloaded`, `rate_limited`) and unknown outcomes (`publish_failed`), each answered by
    /// sending it again later with its id.
    refusals: u32,
}

/// What a send is (`--changes`): a message, or a change to one of the sender's own acknowledged messages (its
/// position).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outgoing {
    Message,
    Reply(u64),
    Edit(u64),
    Delete(u64),
    React(u64, bool),
}

/// The emoji the harness reacts with.
const REACTION: &str = "👍";

/// A sender's own acknowledged messages, and where its cycle of changes stands: a reaction, a reply, an edit, the
/// reaction taken back, a deletion, each to one of its messages still there (the deletion to the oldest kept that
/// was never edited, the others to the newest), so no change is ever refused. A deleted message's edits are erased
/// with it, so a receiver rejoining later would miss them: edited messages are not deleted.
#[derive(Debug, Default)]
struct Changes {
    /// Positions of the sender's messages, oldest first (at most [`Changes::KEPT`]).
    own: VecDeque<u64>,
    /// Changes made.
    made: u64,
    /// The message the last reaction went to, until it is taken back.
    reacted: Option<u64>,
    /// Messages edited (never deleted).
    edited: std::collections::HashSet<u64>,
}

impl Changes {
    const KEPT: usize = 16;

    /// Whether send number `sent` is a change, for `percent` of sends spread evenly.
    fn due(sent: u64, percent: u8) -> bool {
        let p = u64::from(percent);
        p > 0 && (sent + 1) * p / 100 > sent * p / 100
    }

    /// One of the sender's messages was acknowledged at `seq`.
    fn acked(&mut self, seq: u64) {
        self.own.push_back(seq);
        if self.own.len() > Self::KEPT
            && let Some(dropped) = self.own.pop_front()
        {
            if Some(dropped) == self.reacted {
                self.reacted = None;
            }
            self.edited.remove(&dropped);
        }
    }

    /// The next change, if the sender has messages enough for it.
    fn next(&mut self) -> Option<Outgoing> {
        let newest = *self.own.back()?;
        let change = match self.made % 5 {
            0 => {
                self.reacted = Some(newest);
                Outgoing::React(newest, true)
            }
            1 => Outgoing::Reply(newest),
            2 => {
                self.edited.insert(newest);
                Outgoing::Edit(newest)
            }
            3 => Outgoing::React(self.reacted.take().unwrap_or(newest), false),
            _ => {
                // The oldest never edited, and not the newest (the next changes go to it).
                let at = self.own.iter().position(|seq| !self.edited.contains(seq))?;
                if at + 1 >= self.own.len() {
                    return None;
                }
                let oldest = self.own.remove(at)?;
                if self.reacted == Some(oldest) {
                    self.reacted = None;
                }
                Outgoing::Delete(oldest)
            }
        };
        self.made += 1;
        Some(change)
    }
}

/// How long a sender waits before sending again a message the gateway refused for now: 250 ms, doubling with
/// each refusal of the same message, at most 4 s, as a client told to slow down should.
/// The gateway a client of `from` rejoins at: one of the others, chosen by the client's index so that a gateway's
/// clients spread evenly over the rest.
fn next_gateway(from: usize, index: usize, gateways: usize) -> usize {
    if gateways < 2 {
        return 0;
    }
    (from + 1 + index % (gateways - 1)) % gateways
}

fn retry_pause(refusals: u32) -> Duration {
    Duration::from_millis(250u64 << refusals.min(4).saturating_sub(1))
}

/// One user's whole run. `index` is its place in the worker's list.
pub async fn run(shared: Arc<Shared>, index: usize, count: usize, worker: usize, user: UserPlan) -> Outcome {
    let schedule = &shared.schedule;
    let mut outcome = Outcome {
        room: user.room.clone(),
        reception: None,
    };
    let Ok(room) = RoomId::parse(&user.room) else {
        shared.stats().connect_failed("bad_room");
        return settle(&shared, outcome, user.sender);
    };
    let source = (!shared.source_addrs.is_empty()).then(|| shared.source_addrs[index % shared.source_addrs.len()]);
    let mut gateway = user.gateway % shared.gateways.len();

    // Open evenly over the ramp-up.
    let offset = Duration::from_millis(schedule.ramp_up_ms).mul_f64(index as f64 / count.max(1) as f64);
    tokio::time::sleep(offset).await;
    let first = {
        let _permit = shared.connecting.acquire().await;
        let started = Instant::now();
        match connect(&shared, gateway, source, &user.token, user.stalls).await {
            Ok(mut ws) => {
                let latency = started.elapsed();
                match join(&shared, &mut ws, &room, None).await {
                    Ok((seq, _)) => {
                        let mut stats = shared.stats();
                        stats.connect_latency.record(latency);
                        stats.connected += 1;
                        stats.open += 1;
                        stats.interval[0] += 1;
                        Ok((ws, seq))
                    }
                    Err(cause) => Err(cause),
                }
            }
            Err(cause) => Err(cause),
        }
    };
    let (mut ws, mut position) = match first {
        Ok(first) => first,
        Err(cause) => {
            shared.stats().connect_failed(&cause);
            return settle(&shared, outcome, user.sender);
        }
    };
    shared.stats().settled += 1;
    shared.changed.notify_one();

    let mut reception = Reception::new();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut changes = Changes::default();
    let mut sent: u64 = 0;
    let mut sender_finished = !user.sender;
    let mut satisfied = false;
    let mut dropped_once = !user.drops;
    let mut stalled_once = !user.stalls;
    let mut go = shared.go.clone();
    let mut expect = shared.expect.clone();
    let mut stop = shared.stop.clone();
    // Senders spread their first message over one period so a room's senders do not fire together.
    let period = Duration::from_secs_f64(1.0 / schedule.rate_per_sender.max(0.001));
    let phase = period.mul_f64((index as f64 * 0.618_033_988_75).fract());
    // The waits that outlive a frame are made once, not once per frame received: at a hundred thousand frames a
    // second, re-arming them was a large share of the harness's own CPU.
    let run_over = stopped_owned(shared.stop.clone());
    tokio::pin!(run_over);
    let mut expect_changed = Box::pin(changed_owned(expect.clone()));
    // Sends to send again, with when and why.
    let mut retries: VecDeque<(Instant, String, Resend)> = VecDeque::new();

    loop {
        let start = *go.borrow_and_update();
        let next_due = match (start, sender_finished) {
            (Some((_, start)), false) if sent < schedule.messages_per_sender => {
                let due = start + phase + period.mul_f64(sent as f64);
                (due < start + Duration::from_millis(schedule.duration_ms)).then_some(due)
            }
            _ => None,
        };
        let sends_over = start.is_some() && next_due.is_none();
        let ack_deadline =
            start.map(|(_, s)| s + Duration::from_millis(schedule.duration_ms + schedule.ack_timeout_ms));
        let drop_at = match (start, dropped_once) {
            (Some((_, s)), false) => Some(s + Duration::from_millis(schedule.drop_at_ms)),
            _ => None,
        };
        let stall_at = match (start, stalled_once) {
            (Some((_, s)), false) => Some(s + Duration::from_millis(schedule.stall_at_ms)),
            _ => None,
        };

        if !sender_finished && sends_over && (pending.is_empty() || ack_deadline.is_some_and(|d| Instant::now() >= d)) {
            sender_finished = true;
            finish_sending(&shared, &mut pending);
        }
        if !satisfied && let Some(expected) = expect.borrow_and_update().as_ref() {
            let want = expected.get(&user.room).map_or(&[][..], Vec::as_slice);
            if reception.may_hold(want) {
                satisfied = true;
                shared.stats().satisfied += 1;
                shared.changed.notify_one();
            }
        }

        let ended = tokio::select! {
            biased;
            () = &mut run_over => Ended::Stopped,
            () = sleep_until_opt(drop_at) => { dropped_once = true; Ended::Dropped }
            () = sleep_until_opt(stall_at) => {
                // Read nothing for a while: what the gateway sends piles up in the socket and then in its queue.
                stalled_once = true;
                shared.stats().stalls += 1;
                tokio::select! {
                    () = &mut run_over => Ended::Stopped,
                    () = tokio::time::sleep(Duration::from_millis(schedule.stall_for_ms)) => continue,
                }
            }
            () = sleep_until_opt(next_due) => {
                let Some((start_micros, _)) = start else { continue };
                let due_micros = start_micros
                    + u64::try_from((phase + period.mul_f64(sent as f64)).as_micros()).unwrap_or(u64::MAX);
                let kind = if Changes::due(sent, schedule.changes_percent) {
                    changes.next().unwrap_or(Outgoing::Message)
                } else {
                    Outgoing::Message
                };
                // A change's id carries its due time: a deletion or a reaction has no body to carry it.
                let id = match kind {
                    Outgoing::Message | Outgoing::Reply(_) => format!("w{worker}u{index}m{sent}"),
                    _ => format!("w{worker}u{index}c{sent}t{due_micros}"),
                };
                let mut body = String::with_capacity(schedule.body_bytes);
                if !matches!(kind, Outgoing::Delete(_) | Outgoing::React(..)) {
                    stamp(&mut body, due_micros, unix_micros(), schedule.body_bytes);
                }
                sent += 1;
                {
                    let mut stats = shared.stats();
                    stats.sent += 1;
                    stats.interval[2] += 1;
                }
                let frame = outgoing_frame(&room, &id, &body, kind);
                pending.insert(id, Pending { due_micros, body, kind, refusals: 0 });
                match send_frame(&mut ws, &frame).await {
                    Ok(()) => continue,
                    Err(_) => Ended::Lost,
                }
            }
            () = sleep_until_opt(retries.front().map(|(at, _, _)| *at)) => {
                let Some((_, id, cause)) = retries.pop_front() else { continue };
                // Acked meanwhile (by another attempt under the same id), or given up on: nothing to send.
                let Some(waiting) = pending.get_mut(&id) else { continue };
                // The same id and due time; the attempt time is this one's, so a receiver can tell the gateway's
                // delay from the pauses the refusals cost.
                if !waiting.body.is_empty() {
                    let mut body = std::mem::take(&mut waiting.body);
                    stamp(&mut body, waiting.due_micros, unix_micros(), schedule.body_bytes);
                    waiting.body = body;
                }
                let frame = outgoing_frame(&room, &id, &waiting.body, waiting.kind);
                match send_frame(&mut ws, &frame).await {
                    Ok(()) => {
                        shared.stats().count_resend(cause);
                        continue;
                    }
                    Err(_) => Ended::Lost,
                }
            }
            () = sleep_until_opt(if sends_over && !sender_finished { ack_deadline } else { None }) => continue,
            changed = go.changed(), if start.is_none() => { if changed.is_err() { Ended::Stopped } else { continue } }
            changed = &mut expect_changed, if !satisfied => {
                if changed.is_err() {
                    Ended::Stopped
                } else {
                    expect_changed = Box::pin(changed_owned(expect.clone()));
                    continue;
                }
            }
            inbound = ws.recv() => match inbound {
                Inbound::Text(text) => {
                    if let Some((id, cause)) =
                        on_frame(&shared, &text, &mut reception, &mut pending, &mut changes, &user.room)
                        && let Some(refused) = pending.get_mut(&id)
                    {
                        refused.refusals += 1;
                        let at = Instant::now() + retry_pause(refused.refusals);
                        // Pauses only grow per message; keep the queue in time order anyway.
                        let place = retries.partition_point(|(t, _, _)| *t <= at);
                        retries.insert(place, (at, id, cause));
                    }
                    continue;
                }
                // A pong: written here, in the branch's body, which no timer cuts short.
                Inbound::Obliged(frame) => match tokio::time::timeout(SEND_TIMEOUT, ws.write(frame)).await {
                    Ok(Ok(())) => continue,
                    _ => {
                        shared.stats().closed("abnormal");
                        Ended::Lost
                    }
                },
                Inbound::Closed(code, echo) => {
                    let _ = tokio::time::timeout(SEND_TIMEOUT, ws.write(echo)).await;
                    shared.stats().closed(&code.to_string());
                    Ended::Lost
                }
                Inbound::Gone => {
                    shared.stats().closed("abnormal");
                    Ended::Lost
                }
            },
        };

        match ended {
            Ended::Stopped => {
                let _ = tokio::time::timeout(SEND_TIMEOUT, ws.close(1000, "run over")).await;
                shared.stats().open -= 1;
                if !sender_finished {
                    finish_sending(&shared, &mut pending);
                }
                outcome.reception = Some(reception);
                return outcome;
            }
            Ended::Dropped | Ended::Lost => {
                let planned = matches!(ended, Ended::Dropped);
                // A planned drop is abrupt: no close frame, as when a phone loses its network.
                drop(ws);
                shared.stats().open -= 1;
                let mut backoff = Duration::from_millis(if planned { schedule.drop_for_ms } else { 100 });
                ws = loop {
                    // A sender that cannot get back must still finish, or its worker would wait for it forever.
                    let give_up = match (sender_finished, *go.borrow()) {
                        (false, Some((_, start))) => {
                            Some(start + Duration::from_millis(schedule.duration_ms + schedule.ack_timeout_ms))
                        }
                        _ => None,
                    };
                    tokio::select! {
                        () = sleep_until_opt(give_up) => {
                            sender_finished = true;
                            finish_sending(&shared, &mut pending);
                            continue;
                        }
                        () = stopped(&mut stop) => {
                            if !sender_finished {
                                finish_sending(&shared, &mut pending);
                            }
                            outcome.reception = Some(reception);
                            return outcome;
                        }
                        () = tokio::time::sleep(backoff) => {}
                    }
                    // Rejoin elsewhere: recovery must work from any gateway. The clients of one gateway spread over
                    // all the others, as a load balancer would send them, rather than all onto the next one.
                    gateway = next_gateway(gateway, index, shared.gateways.len());
                    let since = reception.last_seq().max(position);
                    let attempt = match connect(&shared, gateway, source, &user.token, user.stalls).await {
                        Ok(mut ws) => join(&shared, &mut ws, &room, Some(since))
                            .await
                            .map(|(seq, recovered)| (ws, seq, recovered)),
                        Err(cause) => Err(cause),
                    };
                    match attempt {
                        Ok((ws, seq, recovered)) => {
                            let mut stats = shared.stats();
                            stats.reconnects += 1;
                            stats.open += 1;
                            if !recovered {
                                // The gateway said so: the gap is counted once, as unrecovered, not again as loss;
                                // the next rejoin starts after it.
                                stats.unrecovered += 1;
                                reception.excuse(since, seq);
                                position = position.max(seq);
                            }
                            // A recovered rejoin leaves the position alone: its replay up to `seq` may be cut
                            // off by the next close, and the next rejoin must start from what did arrive.
                            break ws;
                        }
                        Err(cause) => {
                            shared.stats().connect_failed(&cause);
                            backoff = (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(2));
                        }
                    }
                };
                // Unacked sends go again under the same ids: the server stores each once and acks with its seq.
                for (id, pending) in &pending {
                    let frame = outgoing_frame(&room, id, &pending.body, pending.kind);
                    if send_frame(&mut ws, &frame).await.is_err() {
                        break;
                    }
                    shared.stats().count_resend(Resend::Rejoin);
                }
            }
        }
    }
}

/// Marks a sender done: what it still waits for will never be acked.
fn finish_sending(shared: &Shared, pending: &mut HashMap<String, Pending>) {
    let mut stats = shared.stats();
    stats.unacked += pending.len() as u64;
    stats.senders_finished += 1;
    pending.clear();
    drop(stats);
    shared.changed.notify_one();
}

/// Marks a client that never joined as settled (and, for a sender, finished).
fn settle(shared: &Shared, outcome: Outcome, sender: bool) -> Outcome {
    let mut stats = shared.stats();
    stats.settled += 1;
    if sender {
        stats.senders_finished += 1;
    }
    drop(stats);
    shared.changed.notify_one();
    outcome
}

fn outgoing_frame(room: &RoomId, id: &str, body: &str, kind: Outgoing) -> ClientFrame {
    let room = room.clone();
    // Ids are made of letters and digits above, well under the length cap.
    let id = ClientMsgId::parse(id).unwrap_or_else(|_| unreachable!("harness message ids are valid"));
    let body = body.to_owned();
    match kind {
        Outgoing::Message => ClientFrame::Send {
            room,
            id,
            body,
            reply_to: None,
        },
        Outgoing::Reply(target) => ClientFrame::Send {
            room,
            id,
            body,
            reply_to: Some(target),
        },
        Outgoing::Edit(target) => ClientFrame::Edit { room, id, target, body },
        Outgoing::Delete(target) => ClientFrame::Delete { room, id, target },
        Outgoing::React(target, on) => ClientFrame::React {
            room,
            id,
            target,
            emoji: REACTION.to_owned(),
            on,
        },
    }
}

/// Resolves once the run is over, owning its receiver (so it can be made once and polled across frames).
async fn stopped_owned(mut stop: watch::Receiver<bool>) {
    stopped(&mut stop).await;
}

/// Resolves when `rx` sees a value newer than the one it was cloned at.
async fn changed_owned<T>(mut rx: watch::Receiver<T>) -> Result<(), watch::error::RecvError> {
    rx.changed().await
}

/// Resolves once the run is over (or the worker is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The fields of a `message` frame (or an `edited`, `deleted` or `reacted` one: an event of the room's chain
/// too) the accounting reads.
#[derive(serde::Deserialize)]
struct Delivery<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    room: &'a str,
    seq: u64,
    #[serde(borrow, default)]
    body: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    id: &'a str,
    /// A change's target.
    #[serde(default)]
    target: u64,
    /// A reply's target.
    #[serde(default)]
    reply_to: Option<u64>,
    /// Who made a change.
    #[serde(borrow, default)]
    user: Option<Author<'a>>,
    /// A reaction's emoji.
    #[serde(borrow, default)]
    emoji: std::borrow::Cow<'a, str>,
    /// A reaction added or taken back.
    #[serde(default)]
    on: bool,
}

/// The id of a frame's `user`.
#[derive(serde::Deserialize)]
struct Author<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

/// Writes a message body: the Unix microsecond it was due, the one it was sent at (this attempt), then padding up
/// to `len` bytes.
fn stamp(body: &mut String, due_micros: u64, sent_micros: u64, len: usize) {
    use std::fmt::Write as _;
    body.clear();
    let _ = write!(body, "{due_micros} {sent_micros} ");
    body.extend(std::iter::repeat_n('x', len.saturating_sub(body.len())));
}

/// Accounts for one message delivered in the client's room; its body starts with the Unix microseconds it was due
/// and sent at (see [`stamp`]).
fn on_delivery(shared: &Shared, reception: &mut Reception, seq: u64, body: &str) {
    reception.received(seq);
    let now = unix_micros();
    let mut stats = shared.stats();
    stats.delivered += 1;
    stats.interval[3] += 1;
    let mut stamps = body.split(' ').map(|stamp| stamp.parse::<u64>().ok());
    if let Some(due) = stamps.next().flatten() {
        let latency = Duration::from_micros(now.saturating_sub(due));
        stats.latency.record(latency);
        stats.interval_latency.record(latency);
    }
    if let Some(sent) = stamps.next().flatten() {
        stats
            .accepted_latency
            .record(Duration::from_micros(now.saturating_sub(sent)));
    }
}

/// Accounts for one change to a message delivered in the client's room: an event of the room's chain, counted as
/// a delivery; its latency from the due time its id carries.
fn on_change(shared: &Shared, reception: &mut Reception, seq: u64, id: &str) {
    reception.received(seq);
    let now = unix_micros();
    let mut stats = shared.stats();
    stats.delivered += 1;
    stats.interval[3] += 1;
    if let Some(due) = id.rsplit_once('t').and_then(|(_, due)| due.parse::<u64>().ok()) {
        stats
            .change_latency
            .record(Duration::from_micros(now.saturating_sub(due)));
    }
}

/// Accounts for one frame from the gateway. Returns the id of a send refused for now (`overloaded`,
/// `rate_limited`) or of unknown outcome (`publish_failed`), with that cause: it stays pending, to be sent again
/// with its id after a pause. A send counts as unacked only once it is given up on: refused for good here, or
/// still pending when its sender finishes.
fn on_frame(
    shared: &Shared,
    text: &[u8],
    reception: &mut Reception,
    pending: &mut HashMap<String, Pending>,
    changes: &mut Changes,
    room: &str,
) -> Option<(String, Resend)> {
    // Messages are nearly every frame: read the fields the accounting needs, borrowed, before falling back to the
    // whole frame.
    if let Ok(delivery) = serde_json::from_slice::<Delivery<'_>>(text) {
        match delivery.kind {
            "message" => {
                if delivery.room == room {
                    on_delivery(shared, reception, delivery.seq, &delivery.body);
                    if let Some(target) = delivery.reply_to {
                        reception.fold().reply(delivery.seq, target);
                    }
                }
                return None;
            }
            "edited" | "deleted" | "reacted" => {
                if delivery.room == room {
                    on_change(shared, reception, delivery.seq, delivery.id);
                    let target = delivery.target;
                    match delivery.kind {
                        "edited" => reception.fold().edited(delivery.seq, target, &delivery.body),
                        "deleted" => reception.erased(target),
                        _ => {
                            let user = delivery.user.as_ref().map_or("", |user| &user.id);
                            reception
                                .fold()
                                .reacted(delivery.seq, target, user, &delivery.emoji, delivery.on);
                        }
                    }
                }
                return None;
            }
            _ => {}
        }
    }
    let Ok(frame) = serde_json::from_slice::<ServerFrame>(text) else {
        *shared.stats().error_codes.entry("unparsable_frame".into()).or_default() += 1;
        return None;
    };
    match frame {
        ServerFrame::Message {
            room: from,
            seq,
            body,
            reply_to,
            ..
        } if from.as_str() == room => {
            on_delivery(shared, reception, seq, &body);
            if let Some(target) = reply_to {
                reception.fold().reply(seq, target);
            }
        }
        ServerFrame::Ack { room: to, id, seq } => {
            if let Some(sent) = pending.remove(id.as_str()) {
                if matches!(sent.kind, Outgoing::Message | Outgoing::Reply(_)) {
                    changes.acked(seq);
                }
                let mut stats = shared.stats();
                stats.acked += 1;
                stats
                    .ack_latency
                    .record(Duration::from_micros(unix_micros().saturating_sub(sent.due_micros)));
                stats.acked_seqs.entry(to.as_str().to_owned()).or_default().push(seq);
            }
        }
        ServerFrame::Error { code, reference, .. } => {
            let mut stats = shared.stats();
            // `publish_failed`: the outcome is unknown (the message may be stored after all); a resend with the
            // same id settles it, stored at most once.
            let resend = Resend::of_code(&code);
            *stats.error_codes.entry(code).or_default() += 1;
            stats.interval[4] += 1;
            let id = reference.filter(|id| pending.contains_key(id))?;
            if let Some(cause) = resend {
                return Some((id, cause));
            }
            // Refused for good: it will never be acked.
            pending.remove(&id);
            stats.unacked += 1;
        }
        _ => {}
    }
    None
}

#[cfg(test)]
mod tests {
    use super::next_gateway;

    #[test]
    fn a_gateways_clients_rejoin_spread_over_the_others() {
        let mut landed = [0usize; 4];
        for index in 0..3000 {
            let to = next_gateway(1, index, 4);
            assert_ne!(to, 1, "never back to the gateway it left");
            landed[to] += 1;
        }
        assert_eq!(landed, [1000, 0, 1000, 1000]);
        assert_eq!(next_gateway(0, 7, 2), 1);
        assert_eq!(next_gateway(1, 7, 2), 0);
        assert_eq!(next_gateway(0, 7, 1), 0);
    }
}
