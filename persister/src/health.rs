//! Whether the persister can write to PostgreSQL right now. Each writer reports when its batch starts failing and
//! when it is written; an outage (from the first writer failing to the last one writing again) is logged once as
//! it starts, at WARN, and once as it ends, at INFO, however many retries it took, and `/readyz` reads it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The writers' state, shared by every writer of a persister and its `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    /// Writers whose batch failed and is not written yet.
    failing: AtomicUsize,
    /// When the current outage began (`None` while every writer writes).
    since: Mutex<Option<Instant>>,
}

impl Health {
    /// Whether some writer holds a batch it could not write yet.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed) > 0
    }

    /// One writer's batch failed (it is kept and retried); `cause` says why. The first writer to fail starts an
    /// outage and logs it.
    pub fn writer_failed(&self, cause: &str) {
        if self.failing.fetch_add(1, Ordering::Relaxed) == 0 {
            *self.lock() = Some(Instant::now());
            tracing::warn!(
                error = cause,
                "PostgreSQL lost: batches are kept, retried and written once it answers again"
            );
        }
    }

    /// A writer that had failed wrote its batch. The last one to do so ends the outage and logs it.
    pub fn writer_recovered(&self) {
        if self.failing.fetch_sub(1, Ordering::Relaxed) == 1 {
            let since = self.lock().take();
            let down_for = since.map(|since| since.elapsed()).unwrap_or_default();
            tracing::info!(?down_for, "PostgreSQL is back: the batches held are written");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // Only an Option<Instant> is kept under the lock, so a panic elsewhere cannot leave it half-written.
        self.since.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_lasts_from_the_first_writer_failing_to_the_last_one_writing() {
        let health = Health::default();
        assert!(!health.failing());
        health.writer_failed("connection refused");
        health.writer_failed("connection refused");
        health.writer_recovered();
        assert!(health.failing(), "one writer still holds a failed batch");
        health.writer_recovered();
        assert!(!health.failing());
        assert!(health.lock().is_none(), "the outage is over");
    }
}
