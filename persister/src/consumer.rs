//! The consume loop: fetch a batch, decode it, write it, ack it; keep a batch whose write failed and retry it
//! with backoff until it is written, never acking what is not committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use natter_proto::bus::StoredMessage;
use tokio::sync::watch;

use crate::health::Health;
use crate::keep_alive::{self, KeepAlive};
use crate::metrics;
use crate::source::{Opened, Source};
use crate::store::{self, DeadLetter, Row, Rows, Writer};

/// First pause before writing a failed batch again; it doubles up to [`WRITE_BACKOFF_MAX`].
const WRITE_BACKOFF: Duration = Duration::from_millis(100);

/// Longest pause between two attempts at writing a batch: once PostgreSQL answers again, what was held is written
/// within this.
const WRITE_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Longest pause between two attempts at opening the chat stream.
const READ_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Settings of the loop.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most messages per batch.
    pub size: usize,
    /// How long a batch may wait for more messages after its first while the writer is free (0: not at all).
    pub max_wait: Duration,
    /// The consumer's ack wait: what the persister holds is marked in progress well within it.
    pub ack_wait: Duration,
    /// Batches written at once, each in its own transaction.
    pub writers: usize,
}

/// Turns a stream message of epoch `epoch` into a row, or into a dead letter with the reason it can never be
/// stored.
pub fn decode(epoch: i64, seq: u64, subject: &str, payload: &[u8]) -> Result<Row, DeadLetter> {
    let dead = |reason: String| DeadLetter {
        epoch,
        seq: i64::try_from(seq).unwrap_or(i64::MAX),
        subject: subject.to_owned(),
        payload: payload.to_vec(),
        reason,
    };
    // chat.v1.room.{room}.msg: the room is the fourth token.
    let room = subject.split('.').nth(3).unwrap_or_default();
    let room = natter_proto::RoomId::parse(room).map_err(|e| dead(format!("bad subject {subject:?}: {e}")))?;
    let message: StoredMessage =
        serde_json::from_slice(payload).map_err(|e| dead(format!("undecodable payload: {e}")))?;
    let sent_at = message
        .accepted_at()
        .map_err(|e| dead(format!("bad timestamp {:?}: {e}", message.ts)))?;
    Ok(Row {
        seq: i64::try_from(seq).map_err(|_| dead("sequence out of range".into()))?,
        room,
        message,
        sent_at,
    })
}

/// Batches handed over ahead of the one being written: one waits while another commits, and the next gathers
/// messages meanwhile. Each is still acked only after its own commit.
const FETCH_AHEAD: usize = 1;

/// How long each pull request the consume stream keeps open at the server may last.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// Heartbeat the server sends on an idle pull request; two missed mean the stream is broken.
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);

/// A pull stream that delivers nothing for this long while the consumer reports messages waiting is reopened.
/// Seen under load against nats-server 2.9.10: the server went on sending heartbeats but no messages for most of
/// a minute, with a million messages pending and none awaiting an ack.
const STALL_AFTER: Duration = Duration::from_secs(3);

/// How often the consumer's and the stream's state are asked for. Working out a consumer's pending count is
/// expensive in nats-server before 2.9.15, so it is not asked every second; each delivered message's metadata
/// carries the count too, and each batch's newest message is read for it.
const INFO_EVERY: Duration = Duration::from_secs(5);

/// What the persister knows of the messages waiting for it.
#[derive(Default)]
struct Waiting {
    /// Messages the consumer has yet to deliver, as of the newest batch or consumer info.
    pending: std::sync::atomic::AtomicU64,
    /// Whether the consumer is at its limit of unacked messages (the server then holds the rest back by design).
    held_back: std::sync::atomic::AtomicBool,
}

/// Messages read together from one epoch of the stream, to be written in one transaction.
struct Batch {
    epoch: u64,
    messages: Arc<Vec<jetstream::Message>>,
    /// Marks `messages` in progress while the batch waits for a writer and while its write is retried; dropped
    /// once it is committed, before the acks.
    alive: KeepAlive,
}

/// Consumes `opened` with one task per writer until `stop` turns true, opening `source` again whenever reading
/// breaks; batches in hand are finished (written and acked) first. Each writer reports to `health` whether it
/// can write.
pub async fn run(
    source: Source,
    opened: Opened,
    writers: Vec<Writer>,
    batching: Batching,
    health: Arc<Health>,
    stop: watch::Receiver<bool>,
) {
    let (batches, to_write) = tokio::sync::mpsc::channel::<Batch>(FETCH_AHEAD);
    let to_write = Arc::new(tokio::sync::Mutex::new(to_write));
    let writers: Vec<_> = writers
        .into_iter()
        .map(|mut writer| {
            let to_write = to_write.clone();
            let health = health.clone();
            tokio::spawn(async move {
                loop {
                    let next = to_write.lock().await.recv().await;
                    let Some(batch) = next else { return };
                    handle_batch(&mut writer, &health, batch).await;
                }
            })
        })
        .collect();
    let waiting = std::sync::Arc::new(Waiting::default());
    fetch_loop(&source, opened, batching, stop, batches, &waiting).await;
    // The sender is gone: the writers finish what was fetched and end.
    for writer in writers {
        let _ = writer.await;
    }
}

/// Reads the consumer as one continuous stream and cuts it into batches of at most `size` messages. A batch goes
/// to the writer as soon as the writer can take it (after `max_wait`, if set): an idle persister writes a message
/// the moment it arrives, and while a commit is in progress the next batch gathers what arrives meanwhile, so
/// batches grow only when messages come faster than commits.
///
/// The stream keeps pull requests open at the server and tops them up as messages arrive, all delivered to one
/// subscription that lives as long as the stream. Short fetches (a new pull request per batch, expiring after
/// `max_wait`) were tried first: with 20,000 clients loading the machine, each fetch took about 4.5 s to end
/// (nats-server 2.9.10), so the persister wrote about 70 messages per fetch while 200 a second arrived, and
/// history fell minutes behind until the load stopped.
///
/// When reading breaks (a stream error, a pull that cannot be opened), the stream and the consumer are opened
/// again, created if missing: a stream deleted and recreated is read from its start, in its new epoch.
async fn fetch_loop(
    source: &Source,
    mut opened: Opened,
    batching: Batching,
    mut stop: watch::Receiver<bool>,
    batches: tokio::sync::mpsc::Sender<Batch>,
    waiting: &std::sync::Arc<Waiting>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut report = tokio::spawn(report_pending(opened.clone(), waiting.clone()));
    let mut broken = false;
    loop {
        if *stop.borrow() {
            report.abort();
            return;
        }
        if std::mem::take(&mut broken) {
            match source.open().await {
                Ok(reopened) => {
                    if reopened.epoch != opened.epoch {
                        tracing::warn!(
                            old = opened.epoch,
                            new = reopened.epoch,
                            "the chat stream was recreated; reading the new epoch from its start"
                        );
                        ::metrics::counter!(metrics::STREAM_RECREATED).increment(1);
                    }
                    opened = reopened;
                    report.abort();
                    report = tokio::spawn(report_pending(opened.clone(), waiting.clone()));
                }
                Err(err) => tracing::warn!(error = %err, "opening the chat stream failed; retrying"),
            }
        }
        let epoch = opened.epoch;
        let stream = opened
            .consumer
            .stream()
            .max_messages_per_batch(batching.size)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await;
        let mut messages = match stream {
            Ok(messages) => messages,
            Err(err) => {
                tracing::warn!(error = %err, "reading the chat stream failed; retrying");
                wait_or_stop(&mut stop, backoff).await;
                backoff = (backoff * 2).min(READ_BACKOFF_MAX);
                broken = true;
                continue;
            }
        };
        loop {
            // A batch starts with its first message, however long that takes, unless the stream has stalled.
            let waiting_since = tokio::time::Instant::now();
            let first = tokio::select! {
                _ = stop.wait_for(|s| *s) => {
                    report.abort();
                    return;
                }
                next = messages.next() => next,
                () = tokio::time::sleep_until(waiting_since + STALL_AFTER) => {
                    let pending = waiting.pending.load(std::sync::atomic::Ordering::Relaxed);
                    if pending == 0 || waiting.held_back.load(std::sync::atomic::Ordering::Relaxed) {
                        continue;
                    }
                    tracing::warn!(pending, "the chat stream delivered nothing while messages waited; reopening it");
                    ::metrics::counter!(metrics::STALLS).increment(1);
                    broken = true;
                    break;
                }
            };
            let mut batch = match first {
                Some(Ok(message)) => vec![message],
                Some(Err(err))
                    if err.kind() == MessagesErrorKind::MissingHeartbeat && unchanged(source, epoch).await =>
                {
                    tracing::debug!("a heartbeat was missed on an unchanged stream; reading on");
                    continue;
                }
                Some(Err(err)) => {
                    // Messages in flight to the dropped stream come back after the ack wait; none is lost.
                    tracing::warn!(error = %err, "the chat stream broke; reopening it");
                    wait_or_stop(&mut stop, backoff).await;
                    backoff = (backoff * 2).min(READ_BACKOFF_MAX);
                    broken = true;
                    break;
                }
                None => {
                    broken = true;
                    break;
                }
            };
            let held_until = tokio::time::Instant::now() + batching.max_wait;
            // The batch is ours from its first message on: kept in progress while it waits for a writer.
            let every = keep_alive::every(batching.ack_wait);
            let mut alive_until = tokio::time::Instant::now() + every;
            let permit = loop {
                let held = tokio::time::Instant::now() < held_until;
                let full = batch.len() >= batching.size;
                tokio::select! {
                    biased;
                    permit = batches.reserve(), if !held || full => break permit,
                    () = tokio::time::sleep_until(alive_until) => {
                        keep_alive::progress(&batch).await;
                        alive_until = tokio::time::Instant::now() + every;
                    }
                    next = messages.next(), if !full => match next {
                        Some(Ok(message)) => batch.push(message),
                        // What the pull stream holds stays with it: dropping it would leave those messages to
                        // come back only after the ack wait.
                        Some(Err(err)) if err.kind() == MessagesErrorKind::MissingHeartbeat && unchanged(source, epoch).await => {
                            tracing::debug!("a heartbeat was missed on an unchanged stream; reading on");
                        }
                        // What came before is of this consumer's epoch; the stream is opened again after it
                        // (a deleted consumer's name may already stand for one on a recreated stream).
                        Some(Err(err)) => {
                            tracing::debug!(error = %err, "the stream reported an error inside a batch");
                            broken = true;
                            break batches.reserve().await;
                        }
                        None => {
                            broken = true;
                            break batches.reserve().await;
                        }
                    },
                    () = tokio::time::sleep_until(held_until), if held && !full => {}
                }
            };
            // The newest message says how many wait behind it: at the end of a burst, none, so an idle stream is
            // not taken for a stalled one.
            if let Some(info) = batch.last().and_then(|message| message.info().ok()) {
                waiting
                    .pending
                    .store(info.pending, std::sync::atomic::Ordering::Relaxed);
                ::metrics::gauge!(metrics::PENDING).set(info.pending as f64);
            }
            backoff = Duration::from_millis(100);
            match permit {
                Ok(permit) => {
                    let messages = Arc::new(batch);
                    let alive = KeepAlive::start(messages.clone(), every, alive_until);
                    permit.send(Batch { epoch, messages, alive });
                }
                Err(_) => {
                    report.abort();
                    return;
                }
            }
            if broken {
                break;
            }
        }
    }
}

/// Whether the chat stream read as epoch `epoch` is still there under that epoch, after its pull stream missed a
/// heartbeat. A missed heartbeat alone does not break a pull stream: the client renews its pull requests by
/// itself, and the messages the stream already received are still in it, whereas a stream dropped takes them
/// along and JetStream hands them out again only after the ack wait. (Pull streams do miss heartbeats now and
/// then against nats-server 2.9.10 under load; a run whose stream was dropped on an error just after a PostgreSQL
/// outage stored its last messages only after its 60 s ack wait.) Only a recreated stream (a new epoch, whose
/// consumer is new too) needs the stream opened again; when JetStream does not answer the question, the stream is
/// kept, to reconnect with the client.
async fn unchanged(source: &Source, epoch: u64) -> bool {
    match source.open().await {
        Ok(opened) => opened.epoch == epoch,
        Err(_) => true,
    }
}

async fn wait_or_stop(stop: &mut watch::Receiver<bool>, pause: Duration) {
    tokio::select! {
        () = tokio::time::sleep(pause) => {},
        _ = stop.wait_for(|s| *s) => {},
    }
}

/// Publishes the consumer's backlog and the stream's size and epoch every [`INFO_EVERY`] (asking JetStream is a
/// round trip).
async fn report_pending(opened: Opened, waiting: std::sync::Arc<Waiting>) {
    let Opened {
        mut consumer,
        mut stream,
        epoch,
    } = opened;
    ::metrics::gauge!(metrics::STREAM_EPOCH).set(epoch as f64);
    let mut tick = tokio::time::interval(INFO_EVERY);
    loop {
        tick.tick().await;
        if let Ok(info) = consumer.info().await {
            let held_back = info.num_ack_pending >= usize::try_from(info.config.max_ack_pending).unwrap_or(usize::MAX);
            waiting.held_back.store(held_back, std::sync::atomic::Ordering::Relaxed);
            waiting
                .pending
                .store(info.num_pending, std::sync::atomic::Ordering::Relaxed);
            ::metrics::gauge!(metrics::PENDING).set(info.num_pending as f64);
            ::metrics::gauge!(metrics::ACK_PENDING).set(info.num_ack_pending as f64);
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                ::metrics::gauge!(metrics::LAG).set(0.0);
            }
        }
        if let Ok(info) = stream.info().await {
            let state = &info.state;
            ::metrics::gauge!(metrics::STREAM_MESSAGES).set(state.messages as f64);
            ::metrics::gauge!(metrics::STREAM_BYTES).set(state.bytes as f64);
            ::metrics::gauge!(metrics::STREAM_FIRST_SEQ).set(state.first_sequence as f64);
            ::metrics::gauge!(metrics::STREAM_LAST_SEQ).set(state.last_sequence as f64);
        }
    }
}

/// Writes one batch until it is committed, then acks every message in it. A write that fails for any reason but
/// the data (PostgreSQL unreachable, restarting, out of connections) keeps the batch and tries again after a pause
/// of 100 ms doubling to 2 s, for as long as it takes, while the batch's keep-alive holds it in progress at
/// JetStream; the writer tells `health` when it starts failing and when it writes again.
async fn handle_batch(writer: &mut Writer, health: &Health, batch: Batch) {
    let Batch { epoch, messages, alive } = batch;
    let epoch = i64::try_from(epoch).unwrap_or(i64::MAX);
    let mut rows = Rows::with_capacity(epoch, messages.len());
    let mut dead = Vec::new();
    for message in messages.iter() {
        let (seq, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered),
            Err(_) => continue,
        };
        if delivered > 1 {
            ::metrics::counter!(metrics::REDELIVERIES).increment(1);
        }
        match decode(epoch, seq, &message.subject, &message.payload) {
            Ok(row) => rows.push(row),
            Err(letter) => dead.push(letter),
        }
    }

    let mut backoff = WRITE_BACKOFF;
    let mut failing = false;
    let written = loop {
        let started = Instant::now();
        let attempt = match writer.write(&rows, &dead).await {
            Err(err) if store::is_data_error(&err) => {
                tracing::warn!(error = %store::describe(&err), "a row was refused; writing the batch row by row");
                writer.write_one_by_one(&rows, &dead).await.map(|(written, refused)| {
                    dead.extend(refused);
                    written
                })
            }
            other => other,
        };
        match attempt {
            Ok(written) => {
                ::metrics::histogram!(metrics::INSERT_LATENCY).record(started.elapsed().as_secs_f64());
                if failing {
                    health.writer_recovered();
                }
                break written;
            }
            Err(err) => {
                ::metrics::counter!(metrics::WRITE_FAILURES).increment(1);
                let cause = store::describe(&err);
                // Logged once per outage by `health`, not once per attempt.
                if !std::mem::replace(&mut failing, true) {
                    health.writer_failed(&cause);
                }
                tracing::debug!(error = %cause, retry_in = ?backoff, "writing a batch failed; nothing acked, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(WRITE_BACKOFF_MAX);
            }
        }
    };

    // Committed: now, and only now, ack, and stop marking the batch in progress. Dead letters are terminated
    // (never redelivered).
    drop(alive);
    let dead_seqs: std::collections::HashSet<i64> = dead.iter().map(|d| d.seq).collect();
    let acks = messages.iter().map(|message| {
        let dead = message
            .info()
            .ok()
            .and_then(|info| i64::try_from(info.stream_sequence).ok())
            .is_some_and(|seq| dead_seqs.contains(&seq));
        async move {
            let kind = if dead { AckKind::Term } else { AckKind::Ack };
            if let Err(err) = message.ack_with(kind).await {
                // Not acked: redelivered later and skipped as a duplicate. Nothing is lost.
                tracing::warn!(error = %err, "ack failed");
            }
        }
    });
    futures::future::join_all(acks).await;

    ::metrics::histogram!(metrics::BATCH_SIZE).record(messages.len() as f64);
    ::metrics::counter!(metrics::ROWS_WRITTEN).increment(written.inserted);
    if let Some(newest) = rows.newest() {
        let lag = (chrono::Utc::now() - newest).to_std().unwrap_or_default();
        ::metrics::gauge!(metrics::LAG).set(lag.as_secs_f64());
    }
    ::metrics::counter!(metrics::DUPLICATES).increment(written.duplicates);
    for letter in &dead {
        tracing::warn!(seq = letter.seq, reason = %letter.reason, "message dead-lettered");
        ::metrics::counter!(metrics::DEAD_LETTERED).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_stored_messages_and_dead_letters_the_rest() {
        let payload = br#"{"id":"m1","user":{"id":"u1","name":"alice"},"body":"hi","ts":"2026-01-01T00:00:00.000Z"}"#;
        let row = decode(1, 7, "chat.v1.room.lobby.msg", payload).expect("decodes");
        assert_eq!(
            (
                row.seq,
                row.room.as_str(),
                row.message.id.as_str(),
                row.message.body.as_str()
            ),
            (7, "lobby", "m1", "hi")
        );
        assert!(
            decode(1, 8, "chat.v1.room.lobby.msg", b"not json")
                .expect_err("poison")
                .reason
                .contains("undecodable")
        );
        let bad_ts = br#"{"id":"m1","user":{"id":"u1","name":"a"},"body":"hi","ts":"yesterday"}"#;
        assert!(
            decode(1, 9, "chat.v1.room.lobby.msg", bad_ts)
                .expect_err("bad ts")
                .reason
                .contains("timestamp")
        );
    }
}
