//! What waits for this persister, partition by partition: each partition's consumer reports its own figures. The
//! pending gauge is per partition (a partition handed over may be reported by its old and new holder for a scrape,
//! so `max by (partition)` counts it once); the others are sums over the partitions this persister reads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use natter_proto::subject::PARTITIONS;

use crate::metrics;

/// The figures of every partition, shared by the readers of one persister.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Messages each partition's consumer has yet to deliver, as of its newest batch or consumer info.
    pending: [AtomicU64; PARTITIONS as usize],
    /// Messages each partition's consumer delivered and has not had acked, as of its consumer info.
    ack_pending: [AtomicU64; PARTITIONS as usize],
    /// Whether each partition's consumer is at its limit of unacked messages (the server then holds the rest
    /// back by design).
    held_back: [AtomicBool; PARTITIONS as usize],
    /// The newest stream epoch any partition was opened in (0: none yet).
    epoch: AtomicU64,
}

impl Backlog {
    /// Partition `partition`'s pending count, from a delivered message's metadata.
    pub fn set_pending(&self, partition: u8, pending: u64) {
        self.pending[usize::from(partition)].store(pending, Ordering::Relaxed);
        self.publish(partition);
    }

    /// Partition `partition`'s figures, from its consumer's info.
    pub fn set(&self, partition: u8, pending: u64, ack_pending: u64, held_back: bool) {
        let at = usize::from(partition);
        self.pending[at].store(pending, Ordering::Relaxed);
        self.ack_pending[at].store(ack_pending, Ordering::Relaxed);
        self.held_back[at].store(held_back, Ordering::Relaxed);
        self.publish(partition);
    }

    /// Partition `partition` is no longer read here: its figures are its next holder's to report.
    pub fn clear(&self, partition: u8) {
        self.set(partition, 0, 0, false);
    }

    /// Partition `partition`'s pending count.
    pub fn pending(&self, partition: u8) -> u64 {
        self.pending[usize::from(partition)].load(Ordering::Relaxed)
    }

    /// Whether partition `partition`'s consumer holds messages back for too many unacked ones.
    pub fn held_back(&self, partition: u8) -> bool {
        self.held_back[usize::from(partition)].load(Ordering::Relaxed)
    }

    /// Records that a partition was opened in stream epoch `epoch`; true the first time a later epoch than one
    /// already seen is recorded (the stream was recreated: counted once per persister, not once per partition).
    pub fn opened_in(&self, epoch: u64) -> bool {
        let before = self.epoch.fetch_max(epoch, Ordering::Relaxed);
        before != 0 && before < epoch
    }

    /// Sets partition `partition`'s pending gauge and the sums; history lag is 0 once nothing waits.
    fn publish(&self, partition: u8) {
        ::metrics::gauge!(metrics::PENDING, "partition" => partition.to_string()).set(self.pending(partition) as f64);
        let sum = |figures: &[AtomicU64]| figures.iter().map(|n| n.load(Ordering::Relaxed)).sum::<u64>();
        let (pending, ack_pending) = (sum(&self.pending), sum(&self.ack_pending));
        ::metrics::gauge!(metrics::ACK_PENDING).set(ack_pending as f64);
        if pending == 0 && ack_pending == 0 {
            ::metrics::gauge!(metrics::LAG).set(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recreation_is_counted_once_however_many_partitions_see_it() {
        let backlog = Backlog::default();
        assert!(!backlog.opened_in(10), "the first epoch is no recreation");
        assert!(!backlog.opened_in(10), "another partition in the same epoch");
        assert!(backlog.opened_in(20), "the first partition in a later epoch");
        assert!(!backlog.opened_in(20), "the others in it");
        assert!(
            !backlog.opened_in(10),
            "a late reopen in the old epoch is not one either"
        );
    }

    #[test]
    fn each_partition_counts_apart_and_clears_to_nothing() {
        let backlog = Backlog::default();
        backlog.set(3, 5, 2, true);
        backlog.set_pending(7, 4);
        assert_eq!(
            (backlog.pending(3), backlog.pending(7), backlog.held_back(3)),
            (5, 4, true)
        );
        backlog.clear(3);
        assert_eq!((backlog.pending(3), backlog.held_back(3)), (0, false));
    }
}
