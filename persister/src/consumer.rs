//! The writing side of consuming: every partition's reader hands its batches to the writers, which decode each
//! one, write it, and ack it; a batch whose write failed is kept and retried with backoff until it is written,
//! never acking what is not committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use natter_proto::bus::StoredMessage;
use tokio::sync::mpsc;

use crate::health::Health;
use crate::keep_alive::KeepAlive;
use crate::metrics;
use natter_history::write::{self as store, DeadLetter, Row, Rows, Writer};

/// First pause before writing a failed batch again; it doubles up to [`WRITE_BACKOFF_MAX`].
const WRITE_BACKOFF: Duration = Duration::from_millis(100);

/// Longest pause between two attempts at writing a batch: once PostgreSQL answers again, what was held is written
/// within this.
const WRITE_BACKOFF_MAX: Duration = Duration::from_secs(2);

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
    // chat.v1.room.{room}.msg.{partition}: the room is the fourth token.
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

/// Batches handed over ahead of those being written: one waits while the writers commit, and each partition's
/// next batch gathers messages meanwhile. Each is still acked only after its own commit.
const FETCH_AHEAD: usize = 1;

/// Messages read together from one partition in one epoch of the stream, to be written in one transaction.
pub struct Batch {
    /// The partition it was read from.
    pub partition: u8,
    /// The epoch of the stream its messages were read from.
    pub epoch: u64,
    /// The messages, in delivery order.
    pub messages: Arc<Vec<jetstream::Message>>,
    /// Marks `messages` in progress while the batch waits for a writer and while its write is retried; dropped
    /// once it is committed, before the acks.
    pub alive: KeepAlive,
    /// Held until the batch is acked: its partition is handed over only once every batch of it let this go.
    pub acked: mpsc::Sender<()>,
}

/// The writers: one task per PostgreSQL connection, each taking the next batch from any partition.
pub struct Writers {
    /// Where readers send batches; every reader holds a clone. The writers end once every sender is gone.
    batches: mpsc::Sender<Batch>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    /// Starts one task per writer; each reports to `health` whether it can write.
    pub fn start(writers: Vec<Writer>, health: Arc<Health>, js: jetstream::Context) -> Self {
        let (batches, to_write) = mpsc::channel::<Batch>(FETCH_AHEAD);
        let to_write = Arc::new(tokio::sync::Mutex::new(to_write));
        // A partition's batches commit in the order they were read, one at a time: a room's events reach history
        // in the room's order (a deletion is never committed before the message it deletes), while batches of
        // different partitions are written at once.
        let partitions: Arc<Vec<Arc<tokio::sync::Mutex<()>>>> = Arc::new(
            (0..natter_proto::subject::PARTITIONS)
                .map(|_| Arc::new(tokio::sync::Mutex::new(())))
                .collect(),
        );
        let tasks = writers
            .into_iter()
            .map(|mut writer| {
                let to_write = to_write.clone();
                let health = health.clone();
                let js = js.clone();
                let partitions = partitions.clone();
                tokio::spawn(async move {
                    loop {
                        // The partition's turn is taken before the next writer may take a batch, so turns go in
                        // the order batches were read. A writer waiting for its partition's turn (the other
                        // writer has the partition's previous batch) holds up the taking of further batches until
                        // then: with two writers, the other is busy anyway.
                        let (batch, _turn) = {
                            let mut to_write = to_write.lock().await;
                            let Some(batch) = to_write.recv().await else { return };
                            let lock = partitions[usize::from(batch.partition) % partitions.len()].clone();
                            let turn = lock.lock_owned().await;
                            (batch, turn)
                        };
                        handle_batch(&mut writer, &health, &js, batch).await;
                    }
                })
            })
            .collect();
        Self { batches, tasks }
    }

    /// Where a reader sends its batches.
    pub fn sender(&self) -> mpsc::Sender<Batch> {
        self.batches.clone()
    }

    /// Writes what every reader sent and ends, once the readers are gone too.
    pub async fn finish(self) {
        drop(self.batches);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Writes one batch until it is committed, then acks every message in it. A write that fails for any reason but
/// the data (PostgreSQL unreachable, restarting, out of connections) keeps the batch and tries again after a pause
/// of 100 ms doubling to 2 s, for as long as it takes, while the batch's keep-alive holds it in progress at
/// JetStream; the writer tells `health` when it starts failing and when it writes again.
async fn handle_batch(writer: &mut Writer, health: &Health, js: &jetstream::Context, batch: Batch) {
    // `_acked` lives to the end, after the acks: the batch's partition may be handed over once it is gone.
    let Batch {
        partition: _,
        epoch,
        messages,
        alive,
        acked: _acked,
    } = batch;
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
                // History is at least as far behind as the oldest message waiting here: the gauge keeps moving
                // while PostgreSQL is away, as the alert on it needs.
                if let Some(oldest) = rows.oldest() {
                    let lag = (chrono::Utc::now() - oldest).to_std().unwrap_or_default();
                    ::metrics::gauge!(metrics::LAG).set(lag.as_secs_f64());
                }
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

    // Committed: now, and only now, tell waiting gateways, ack, and stop marking the batch in progress. Dead
    // letters are terminated (never redelivered).
    crate::notice::committed(&rows).await;
    erase(js, rows.epoch(), &written.erase).await;
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

/// Erases deleted messages and their edits from the stream, once their deletion is committed and before it is
/// acked: until this is done, the batch is not acked, so a persister that dies here erases them on redelivery.
/// Retried with backoff while NATS cannot do it. The sequences are of the stream as it was in `epoch`: once it has
/// been recreated they name other messages, and the deleted ones went with the old stream, so nothing is erased.
async fn erase(js: &jetstream::Context, epoch: i64, erase: &store::Erase) {
    if erase.seqs.is_empty() {
        return;
    }
    let mut backoff = WRITE_BACKOFF;
    let mut left: Vec<u64> = erase.seqs.clone();
    while !left.is_empty() {
        match js.get_stream(natter_proto::bus::CHAT_STREAM).await {
            Ok(stream) if i64::try_from(natter_stream::epoch::of(stream.cached_info())).ok() != Some(epoch) => {
                tracing::info!(
                    messages = left.len(),
                    "the chat stream was recreated since these deletions were read; nothing of theirs is left to erase"
                );
                return;
            }
            Ok(stream) => {
                let mut failed = Vec::new();
                for seq in left {
                    match natter_stream::journal::erase(&stream, seq).await {
                        Ok(_) => ::metrics::counter!(metrics::ERASED).increment(1),
                        Err(err) => {
                            tracing::warn!(seq, error = %err, "erasing a deleted message from the stream failed");
                            failed.push(seq);
                        }
                    }
                }
                left = failed;
            }
            Err(err)
                if matches!(err.kind(), jetstream::context::GetStreamErrorKind::JetStream(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                tracing::info!(
                    messages = left.len(),
                    "the chat stream is gone; nothing is left to erase"
                );
                return;
            }
            Err(err) => tracing::warn!(error = %err, "cannot open the chat stream to erase deleted messages"),
        }
        if !left.is_empty() {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(WRITE_BACKOFF_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_stored_messages_and_dead_letters_the_rest() {
        let payload = br#"{"id":"m1","user":{"id":"u1","name":"alice"},"body":"hi","ts":"2026-01-01T00:00:00.000Z"}"#;
        let row = decode(1, 7, "chat.v1.room.lobby.msg.3", payload).expect("decodes");
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
            decode(1, 8, "chat.v1.room.lobby.msg.3", b"not json")
                .expect_err("poison")
                .reason
                .contains("undecodable")
        );
        let bad_ts = br#"{"id":"m1","user":{"id":"u1","name":"a"},"body":"hi","ts":"yesterday"}"#;
        assert!(
            decode(1, 9, "chat.v1.room.lobby.msg.3", bad_ts)
                .expect_err("bad ts")
                .reason
                .contains("timestamp")
        );
    }
}
