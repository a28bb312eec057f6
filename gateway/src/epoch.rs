//! The chat stream's epoch as this gateway knows it (see natter-stream's `epoch`): every `seq` a client sees is a
//! position, the epoch plus the stream sequence. The stream's info is read every [`CHECK_EVERY`], and soon (at
//! most every [`RECHECK_AFTER`]) when an ack hints at a new stream: a new message stored lower than one acked
//! before. Acks complete out of order under load, so such a hint is common and only asks for a check; it does not
//! wait for one. A deleted stream is created again. When the epoch changes, every room closes its members so they
//! rejoin in the new one, where a `since` from the old epoch is answered `recovered: false`. An ack far below the
//! highest one before waits for the check, so it is not given a position of the old epoch; one only a little
//! below (an old stream that held few messages) could still be, until the check: the rejoin and the history API
//! correct what a client shows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use natter_stream::journal::Stored;
use tokio::sync::watch;

/// How often the stream's epoch is checked.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The shortest time between two checks asked for by acks.
const RECHECK_AFTER: Duration = Duration::from_millis(200);

/// The stream's current epoch, shared by the rooms and the sessions of a gateway.
pub struct Epoch {
    js: jetstream::Context,
    stream: stream::Stream,
    limits: natter_stream::Limits,
    /// The highest stream sequence acked in the current epoch.
    highest_ack: AtomicU64,
    current: watch::Sender<u64>,
    /// Asks the watch for a check before its next tick.
    hint: tokio::sync::Notify,
    /// Held by an ack waiting for a check of its own, so a burst of them reads the stream's info once.
    checking: tokio::sync::Mutex<()>,
}

impl Epoch {
    /// The epoch of `stream` (as just ensured over `js`, with the settings to create it again).
    pub fn new(js: jetstream::Context, stream: stream::Stream, limits: natter_stream::Limits) -> Self {
        let epoch = natter_stream::epoch::of(stream.cached_info());
        Self {
            js,
            stream,
            limits,
            highest_ack: AtomicU64::new(0),
            current: watch::Sender::new(epoch),
            hint: tokio::sync::Notify::new(),
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

    /// The position of an acked message. A new message stored lower than one acked before may mean the stream
    /// was recreated. Acks complete out of order, so a little lower only asks the watch to check soon; stored at
    /// most half as high as the highest ack, it is taken for a new stream's, and the epoch is read again before
    /// its position is given, so the sender is not told a position of the old epoch.
    pub async fn position_of(&self, stored: Stored) -> u64 {
        let highest = self.highest_ack.fetch_max(stored.seq, Ordering::Relaxed);
        if !stored.duplicate && stored.seq <= highest {
            if stored.seq <= highest / 2 {
                let before = self.get();
                let _one_at_a_time = self.checking.lock().await;
                // Another ack's check may have found the new epoch meanwhile.
                if self.get() == before {
                    self.check().await;
                }
            } else {
                self.hint.notify_one();
            }
        }
        natter_stream::epoch::position(self.get(), stored.seq)
    }

    /// Asks for a check soon: something seen may be of a new stream.
    pub fn hint(&self) {
        self.hint.notify_one();
    }

    /// Reads the stream's epoch, creating the stream again if it is gone; tells the rooms of a new one.
    async fn check(&self) {
        let mut stream = self.stream.clone();
        let info = match stream.info().await {
            Ok(info) => info.clone(),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the chat stream's info; making sure it exists");
                match natter_stream::recreate(&self.js, self.limits).await {
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

    /// Checks the epoch every [`CHECK_EVERY`], and when an ack hints at a new stream, for as long as the gateway
    /// runs.
    pub async fn watch(self: std::sync::Arc<Self>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(CHECK_EVERY) => {}
                () = self.hint.notified() => {}
            }
            self.check().await;
            tokio::time::sleep(RECHECK_AFTER).await;
        }
    }
}
