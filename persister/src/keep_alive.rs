//! Keeping the messages a persister holds its own at JetStream: until a batch is acked (after its commit), its
//! messages are marked in progress every third of the ack wait, whether the batch is still gathering, waiting for
//! a writer or being retried while PostgreSQL is away. Without this, JetStream would hand them to another
//! persister (or to this one again) once the ack wait ran out, and both would be writing them.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use tokio::time::Instant;

/// How often held messages are marked in progress for an ack wait of `ack_wait`: three times within it, so that
/// one late or lost mark does not let it run out.
pub fn every(ack_wait: Duration) -> Duration {
    ack_wait / 3
}

/// Marks every message of `messages` in progress: JetStream starts their ack wait again.
pub async fn progress(messages: &[jetstream::Message]) {
    for message in messages {
        // A mark that does not get through is sent again at the next one; the ack wait allows for two.
        let _ = message.ack_with(AckKind::Progress).await;
    }
}

/// A task that marks a batch in progress from `due`, then every `every`, until it is dropped.
pub struct KeepAlive(tokio::task::JoinHandle<()>);

impl KeepAlive {
    /// Starts keeping `messages` alive: first at `due` (when the mark before, or their delivery, is a third of the
    /// ack wait old), then every `every`.
    pub fn start(messages: Arc<Vec<jetstream::Message>>, every: Duration, due: Instant) -> Self {
        Self(tokio::spawn(async move {
            let mut due = due;
            loop {
                tokio::time::sleep_until(due).await;
                progress(&messages).await;
                due = Instant::now() + every;
            }
        }))
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        // A mark already handed to the client goes out before the acks that follow on the same connection; one
        // that would reach JetStream after an ack is ignored there (the message is no longer pending).
        self.0.abort();
    }
}
