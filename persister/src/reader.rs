//! Reading one partition: its durable consumer read as one continuous pull stream, cut into batches for the
//! writers; stopped gracefully when the partition is handed over (what the pull stream already holds is read, and
//! everything taken is written and acked before the lease goes), or at once when the lease is lost, or when it has
//! not been confirmed in time (the reader watches that deadline itself, so that a persister frozen for longer than
//! a lease lives reads nothing more once it runs again).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::backlog::Backlog;
use crate::consumer::{Batch, Batching};
use crate::keep_alive::{self, KeepAlive};
use crate::metrics;
use crate::source::Source;

/// Longest pause between two attempts at opening the partition.
const READ_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How long each pull request the consume stream keeps open at the server may last.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// Heartbeat the server sends on an idle pull request; two missed mean the stream is broken.
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);

/// A pull stream that delivers nothing for this long while the consumer reports messages waiting is reopened.
/// Seen under load against nats-server 2.9.10: the server went on sending heartbeats but no messages for most of
/// a minute, with a million messages pending and none awaiting an ack.
const STALL_AFTER: Duration = Duration::from_secs(3);

/// How often the consumer's state is asked for. Working out a consumer's pending count is expensive in
/// nats-server before 2.9.15, so it is not asked every second; each delivered message's metadata carries the count
/// too, and each batch's newest message is read for it.
pub const INFO_EVERY: Duration = Duration::from_secs(5);

/// While a partition is handed over, its pull stream is read until nothing has come for this long: what the
/// server had already sent is then in hand, not left to come back after the ack wait.
const DRAIN_QUIET: Duration = Duration::from_millis(50);

/// Longest a partition handed over is read on (under a steady flow the quiet never comes). What arrives after is
/// left to the next holder, after the ack wait.
const DRAIN_FOR: Duration = Duration::from_secs(1);

/// What a reader is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Read on.
    No,
    /// Hand the partition over: read what the pull stream holds, hand the last batch to the writers, end.
    HandOver,
    /// The lease is lost (another persister may read the partition already): hand the batch in hand to the
    /// writers, read nothing more, end.
    Now,
}

/// How a reader ended without being asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its lease was not confirmed by its deadline: it stopped reading at once.
    Unconfirmed,
    /// It failed (a panic): a bug.
    Failed,
}

/// A partition being read, and how to stop it. Dropped without [`Reader::hand_over`], it stops as
/// [`Reader::abandon`] stops it.
pub struct Reader {
    stop: watch::Sender<Stop>,
    /// Until when its lease is confirmed: past it, the reader stops by itself.
    fence: watch::Sender<Instant>,
    /// Resolves to whether the reader stopped for its fence.
    task: tokio::task::JoinHandle<bool>,
    /// Closed once the reader has ended and every batch it handed to the writers is acked: the reader and each of
    /// its batches hold a sender, and none ever sends.
    acked: mpsc::Receiver<()>,
}

impl Reader {
    /// Starts reading partition `partition` of `source`, each batch going to `batches` (the writers), while its
    /// lease is confirmed: until `confirmed_until`, and then as [`Reader::confirm`] says.
    pub fn start(
        partition: u8,
        source: Source,
        batching: Batching,
        batches: mpsc::Sender<Batch>,
        backlog: Arc<Backlog>,
        confirmed_until: Instant,
    ) -> Self {
        let (stop, stopped) = watch::channel(Stop::No);
        let (fence, fenced) = watch::channel(confirmed_until);
        let (acked_tx, acked) = mpsc::channel(1);
        let mut reading = Reading {
            partition,
            source,
            batching,
            batches,
            acked: acked_tx,
            backlog,
            report: None,
        };
        let task = tokio::spawn(async move {
            let unconfirmed = reading.read(stopped, fenced).await;
            reading.finish().await;
            unconfirmed
        });
        Self {
            stop,
            fence,
            task,
            acked,
        }
    }

    /// The lease is confirmed until `until`.
    pub fn confirm(&self, until: Instant) {
        let _ = self.fence.send(until);
    }

    /// Hands the partition over: stops pulling once what the pull stream holds is read, and resolves when
    /// everything this reader took is written and acked. The lease can then go: the next holder finds nothing of
    /// this reader's in flight but what reached it after it stopped reading.
    pub async fn hand_over(mut self) {
        let _ = self.stop.send(Stop::HandOver);
        let _ = (&mut self.task).await;
        while self.acked.recv().await.is_some() {}
    }

    /// Stops reading at once, the lease being lost: the batches in hand are still written and acked (their rows are
    /// of the epoch they were read in), nothing more is read.
    pub fn abandon(self) {
        let _ = self.stop.send(Stop::Now);
    }

    /// Whether the reader ended without being asked to, and why: its partition is no longer read.
    pub fn ended(&mut self) -> Option<Ended> {
        if !self.task.is_finished() {
            return None;
        }
        match futures::FutureExt::now_or_never(&mut self.task) {
            Some(Ok(true)) => Some(Ended::Unconfirmed),
            _ => Some(Ended::Failed),
        }
    }
}

/// One partition's reading, owned by its reader's task.
struct Reading {
    partition: u8,
    source: Source,
    batching: Batching,
    /// Where batches go: the writers.
    batches: mpsc::Sender<Batch>,
    /// Cloned into every batch: see [`Reader`]'s `acked`.
    acked: mpsc::Sender<()>,
    backlog: Arc<Backlog>,
    /// The task reporting the consumer's backlog, started again at each opening.
    report: Option<Report>,
}

impl Reading {
    /// Reads the partition's consumer as one continuous stream and cuts it into batches of at most `size`
    /// messages, until `stop` says otherwise. A batch goes to a writer as soon as one can take it (after `max_wait`,
    /// if set): an idle persister writes a message the moment it arrives, and while commits are in progress the next
    /// batch gathers what arrives meanwhile, so batches grow only when messages come faster than commits.
    ///
    /// The stream keeps pull requests open at the server and tops them up as messages arrive, all delivered to one
    /// subscription that lives as long as the stream. Short fetches (a new pull request per batch, expiring after
    /// `max_wait`) were tried first: with 20,000 clients loading the machine, each fetch took about 4.5 s to end
    /// (nats-server 2.9.10), so the persister wrote about 70 messages per fetch while 200 a second arrived, and
    /// history fell minutes behind until the load stopped.
    ///
    /// The partition is opened (the stream and its consumer, created if missing, and the stream's epoch read) when
    /// reading starts and again whenever reading breaks: a stream deleted and recreated is read from its start, in
    /// its new epoch, and each batch carries the epoch of the stream its messages came from.
    ///
    /// Returns whether it stopped because its lease was not confirmed by the deadline `fence` holds.
    async fn read(&mut self, mut stop: watch::Receiver<Stop>, mut fence: watch::Receiver<Instant>) -> bool {
        let (partition, batching) = (self.partition, self.batching);
        let (source, batches, acked, backlog) = (&self.source, &self.batches, &self.acked, &self.backlog);
        let report = &mut self.report;
        let mut backoff = Duration::from_millis(100);
        // Set once the partition is handed over: read on until nothing comes for DRAIN_QUIET, or until then.
        let mut drain_until: Option<Instant> = None;
        loop {
            // A reader whose handle is gone (dropped, not asked to stop) stops too: nobody holds its lease for it,
            // and its closed channel would otherwise end every pause at once.
            if *stop.borrow() != Stop::No || stop.has_changed().is_err() {
                return false;
            }
            let opened = match source.open(partition).await {
                Ok(opened) => opened,
                Err(err) => {
                    tracing::warn!(partition, error = %err, "opening the partition failed; retrying");
                    wait_or_stop(&mut stop, backoff).await;
                    backoff = (backoff * 2).min(READ_BACKOFF_MAX);
                    continue;
                }
            };
            if backlog.opened_in(opened.epoch) {
                tracing::warn!(
                    epoch = opened.epoch,
                    "the chat stream was recreated; reading the new epoch from its start"
                );
                ::metrics::counter!(metrics::STREAM_RECREATED).increment(1);
            }
            let epoch = opened.epoch;
            if let Some(old) = report.replace(Report::start(partition, opened.consumer.clone(), backlog.clone())) {
                old.0.abort();
            }
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
                    tracing::warn!(partition, error = %err, "reading the partition failed; retrying");
                    wait_or_stop(&mut stop, backoff).await;
                    backoff = (backoff * 2).min(READ_BACKOFF_MAX);
                    continue;
                }
            };
            loop {
                // A batch starts with its first message, however long that takes, unless the stream has stalled, or
                // (handing over) nothing more is on its way.
                let waiting_since = Instant::now();
                let draining = drain_until.is_some();
                let quiet_at = drain_until.map(|until| until.min(waiting_since + DRAIN_QUIET));
                let first = tokio::select! {
                    // First: a process frozen past its deadline reads nothing that arrived meanwhile.
                    biased;
                    () = lapsed(&mut fence) => return true,
                    asked = stopped(&mut stop, |s| s == Stop::Now || (s == Stop::HandOver && !draining)) => {
                        if asked == Stop::Now {
                            return false;
                        }
                        drain_until = Some(Instant::now() + DRAIN_FOR);
                        continue;
                    }
                    () = sleep_until_some(quiet_at) => return false,
                    next = messages.next() => next,
                    () = tokio::time::sleep_until(waiting_since + STALL_AFTER), if drain_until.is_none() => {
                        let pending = backlog.pending(partition);
                        if pending == 0 || backlog.held_back(partition) {
                            continue;
                        }
                        tracing::warn!(partition, pending, "the partition delivered nothing while messages waited; reopening it");
                        ::metrics::counter!(metrics::STALLS).increment(1);
                        break;
                    }
                };
                let (mut broken, mut unconfirmed) = (false, false);
                let mut batch = match first {
                    Some(Ok(message)) => vec![message],
                    Some(Err(err))
                        if err.kind() == MessagesErrorKind::MissingHeartbeat && unchanged(source, epoch).await =>
                    {
                        tracing::debug!(partition, "a heartbeat was missed on an unchanged stream; reading on");
                        continue;
                    }
                    Some(Err(err)) => {
                        // Messages in flight to the dropped stream come back after the ack wait; none is lost.
                        tracing::warn!(partition, error = %err, "the partition's pull stream broke; reopening it");
                        wait_or_stop(&mut stop, backoff).await;
                        backoff = (backoff * 2).min(READ_BACKOFF_MAX);
                        break;
                    }
                    None => break,
                };
                let held_until = Instant::now() + batching.max_wait;
                // The batch is ours from its first message on: kept in progress while it waits for a writer.
                let every = keep_alive::every(batching.ack_wait);
                let mut alive_until = Instant::now() + every;
                let permit = loop {
                    let held = Instant::now() < held_until;
                    let full = batch.len() >= batching.size;
                    tokio::select! {
                        biased;
                        permit = batches.reserve(), if !held || full => break permit,
                        // Lost or unconfirmed: what is in hand is written, nothing more is read.
                        () = lapsed(&mut fence) => {
                            unconfirmed = true;
                            break batches.reserve().await;
                        }
                        _ = stopped(&mut stop, |s| s == Stop::Now) => break batches.reserve().await,
                        () = tokio::time::sleep_until(alive_until) => {
                            keep_alive::progress(&batch).await;
                            alive_until = Instant::now() + every;
                        }
                        next = messages.next(), if !full => match next {
                            Some(Ok(message)) => batch.push(message),
                            // What the pull stream holds stays with it: dropping it would leave those messages to
                            // come back only after the ack wait.
                            Some(Err(err)) if err.kind() == MessagesErrorKind::MissingHeartbeat && unchanged(source, epoch).await => {
                                tracing::debug!(partition, "a heartbeat was missed on an unchanged stream; reading on");
                            }
                            // What came before is of this consumer's epoch; the partition is opened again after it
                            // (a deleted consumer's name may already stand for one on a recreated stream).
                            Some(Err(err)) => {
                                tracing::debug!(partition, error = %err, "the stream reported an error inside a batch");
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
                    backlog.set_pending(partition, info.pending);
                }
                backoff = Duration::from_millis(100);
                let Ok(permit) = permit else {
                    // The writers are gone: the persister is stopping without them.
                    return false;
                };
                let messages = Arc::new(batch);
                let alive = KeepAlive::start(messages.clone(), every, alive_until);
                permit.send(Batch {
                    partition,
                    epoch,
                    messages,
                    alive,
                    acked: acked.clone(),
                });
                if unconfirmed {
                    return true;
                }
                if broken || *stop.borrow() == Stop::Now {
                    break;
                }
            }
        }
    }

    /// Ends the reading: no backlog report of it is still on its way once the partition's figures are cleared (they
    /// are the next holder's to report), and the batches sent hold the last `acked` senders.
    async fn finish(self) {
        if let Some(report) = self.report {
            report.stop().await;
        }
        self.backlog.clear(self.partition);
    }
}

/// Resolves once the lease's confirmation has run out: the deadline `fence` holds (moved on by every refresh that
/// got through) has passed.
async fn lapsed(fence: &mut watch::Receiver<Instant>) {
    loop {
        let until = *fence.borrow_and_update();
        tokio::select! {
            () = tokio::time::sleep_until(until) => {
                if Instant::now() >= *fence.borrow() {
                    return;
                }
            }
            changed = fence.changed() => {
                if changed.is_err() {
                    // Nobody confirms any more: the reader is being stopped, which `stop` says.
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// Sleeps until `at`, or for ever when there is none.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether the chat stream read as epoch `epoch` is still there under that epoch, after its pull stream missed a
/// heartbeat. A missed heartbeat alone does not break a pull stream: the client renews its pull requests by
/// itself, and the messages the stream already received are still in it, whereas a stream dropped takes them
/// along and JetStream hands them out again only after the ack wait. (Pull streams do miss heartbeats now and
/// then against nats-server 2.9.10 under load; a run whose stream was dropped on an error just after a PostgreSQL
/// outage stored its last messages only after its 60 s ack wait.) Only a recreated stream (a new epoch, whose
/// consumer is new too) needs the partition opened again; when JetStream does not answer the question, the stream
/// is kept, to reconnect with the client. Nothing is created here: the partition's consumer is made only by
/// [`Source::open`], after the epoch is read.
async fn unchanged(source: &Source, epoch: u64) -> bool {
    match source.epoch().await {
        Ok(now) => now == Some(epoch),
        Err(_) => true,
    }
}

async fn wait_or_stop(stop: &mut watch::Receiver<Stop>, pause: Duration) {
    tokio::select! {
        () = tokio::time::sleep(pause) => {},
        _ = stopped(stop, |s| s != Stop::No) => {},
    }
}

/// Waits until the reader is asked for something `asked` accepts, and says what. A reader whose handle is gone
/// stops at once: nobody holds its partition for it any more.
async fn stopped(stop: &mut watch::Receiver<Stop>, asked: impl Fn(Stop) -> bool) -> Stop {
    match stop.wait_for(|s| asked(*s)).await {
        Ok(s) => *s,
        Err(_) => Stop::Now,
    }
}

/// Asks a partition's consumer for its backlog every [`INFO_EVERY`] (a round trip), until stopped.
struct Report(tokio::task::JoinHandle<()>);

impl Report {
    fn start(partition: u8, mut consumer: PullConsumer, backlog: Arc<Backlog>) -> Self {
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(INFO_EVERY);
            loop {
                tick.tick().await;
                if let Ok(info) = consumer.info().await {
                    let held_back =
                        info.num_ack_pending >= usize::try_from(info.config.max_ack_pending).unwrap_or(usize::MAX);
                    backlog.set(partition, info.num_pending, info.num_ack_pending as u64, held_back);
                }
            }
        }))
    }

    /// Stops reporting; once this returns, no report of it is still on its way to the backlog.
    async fn stop(self) {
        self.0.abort();
        let _ = self.0.await;
    }
}
