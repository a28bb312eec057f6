//! The chat stream's epoch as this gateway knows it (see natter-stream's `epoch`): every `seq` a client sees is a
//! position, the epoch plus the stream sequence. The stream's info is read every [`CHECK_EVERY`], and at once
//! when an ack reveals a new stream (a new message stored lower than one acked before). A deleted stream is
//! created again. When the epoch changes, every room closes its members so they rejoin in the new one, where a
//! `since` from the old epoch is answered `recovered: false`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use natter_stream::journal::Stored;
use tokio::sync::watch;

/// How often the stream's epoch is checked.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The stream's current epoch, shared by the rooms and the sessions of a gateway.
pub struct Epoch {
    js: jetstream::Context,
    stream: stream::Stream,
    stream_max_age: Duration,
    stream_replicas: usize,
    /// The highest stream sequence acked in the current epoch.
    highest_ack: AtomicU64,
    current: watch::Sender<u64>,
    /// One check at a time: an ack that reveals a new stream waits for the check in progress.
    checking: tokio::sync::Mutex<()>,
}

impl Epoch {
    /// The epoch of `stream` (as just ensured over `js`, with the settings to create it again).
    pub fn new(
        js: jetstream::Context,
        stream: stream::Stream,
        stream_max_age: Duration,
        stream_replicas: usize,
    ) -> Self {
        let epoch = natter_stream::epoch::of(stream.cached_info());
        Self {
            js,
            stream,
            stream_max_age,
            stream_replicas,
            highest_ack: AtomicU64::new(0),
            current: watch::Sender::new(epoch),
            checking: tokio::sync::Mutex::new(()),
        }
    }

    /// The current epoch.
    pub fn get(&self) -> u64 {
        *self.current.borrow()
    }

    /// Tells of each new epoch.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.current.subscribe()
    }

    /// The position of an acked message: a new message stored lower than one acked before means the stream was
    /// recreated, and its epoch is read before answering.
    pub async fn position_of(&self, stored: Stored) -> u64 {
        if !stored.duplicate && stored.seq <= self.highest_ack.load(Ordering::Relaxed) {
            self.check().await;
        }
        self.highest_ack.fetch_max(stored.seq, Ordering::Relaxed);
        natter_stream::epoch::position(self.get(), stored.seq)
    }

    /// Reads the stream's epoch, creating the stream again if it is gone; tells the rooms of a new one.
    pub async fn check(&self) {
        let _one = self.checking.lock().await;
        let mut stream = self.stream.clone();
        let info = match stream.info().await {
            Ok(info) => info.clone(),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the chat stream's info; making sure it exists");
                match natter_stream::ensure(&self.js, self.stream_max_age, self.stream_replicas).await {
                    Ok(stream) => stream.cached_info().clone(),
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot create the chat stream");
                        return;
                    }
                }
            }
        };
        let epoch = natter_stream::epoch::of(&info);
        let old = self.get();
        if epoch != old {
            tracing::warn!(
                old,
                new = epoch,
                "the chat stream was recreated; its rooms' members rejoin in the new epoch"
            );
            ::metrics::counter!(crate::metrics::STREAM_RECREATED).increment(1);
            self.highest_ack.store(info.state.last_sequence, Ordering::Relaxed);
            self.current.send_replace(epoch);
        }
    }

    /// Checks the epoch every [`CHECK_EVERY`], for as long as the gateway runs.
    pub async fn watch(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.check().await;
        }
    }
}
