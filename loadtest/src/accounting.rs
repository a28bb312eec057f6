//! Delivery accounting: for each receiver in each room, what was expected against what arrived.
//!
//! A receiver's messages of one room must arrive in increasing `seq`, each exactly once, and every message
//! acknowledged to a sender of the room during the run must arrive. Messages are told apart by `seq`, the stream
//! position the gateway gives each stored message, so a resend that the server deduplicated is one message. The
//! accounting is per receiver, so one lossy connection is told apart from a lossy room.

/// What went wrong for one receiver, or a sum of receivers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Faults {
    /// Expected messages that never arrived.
    pub lost: u64,
    /// Arrivals of a message already received.
    pub duplicates: u64,
    /// Messages that arrived after one with a higher `seq` (a repeat is counted as a duplicate instead).
    pub reordered: u64,
}

impl Faults {
    /// Adds another receiver's faults.
    pub fn add(&mut self, other: &Faults) {
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
    }

    /// Whether nothing went wrong.
    pub fn is_clean(&self) -> bool {
        *self == Faults::default()
    }
}

/// One receiver's messages of one room. Eight bytes per arrival: a run of 20,000 receivers getting 500 messages
/// each holds 80 MB across its workers.
#[derive(Debug, Default, Clone)]
pub struct Reception {
    /// Every arrival's seq, in arrival order.
    arrivals: Vec<u64>,
    /// Seqs that arrived lower than one before them.
    late: Vec<u64>,
    /// The highest seq so far.
    last_seq: u64,
    /// Seq ranges (after, up to] the gateway said it could not replay (`recovered: false`): not counted as loss.
    excused: Vec<(u64, u64)>,
}

impl Reception {
    /// An empty reception.
    pub fn new() -> Self {
        Self::default()
    }

    /// A message with `seq` arrived.
    pub fn received(&mut self, seq: u64) {
        if seq < self.last_seq {
            self.late.push(seq);
        }
        self.last_seq = self.last_seq.max(seq);
        self.arrivals.push(seq);
    }

    /// The gateway answered a rejoin from `after` with `recovered: false` at room position `up_to`: whatever lies
    /// between is for the client to reload from history, and is counted as one unrecovered rejoin, not as loss.
    pub fn excuse(&mut self, after: u64, up_to: u64) {
        if up_to > after {
            self.excused.push((after, up_to));
        }
    }

    /// The highest seq received: the position to rejoin from.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Arrivals so far, duplicates included.
    pub fn arrivals(&self) -> u64 {
        self.arrivals.len() as u64
    }

    /// Whether everything in `expected` (sorted ascending) may have arrived: a cheap test to poll while waiting,
    /// confirmed by [`Reception::faults`].
    pub fn may_hold(&self, expected: &[u64]) -> bool {
        expected.last().is_none_or(|max| self.last_seq >= *max) && self.arrivals.len() >= expected.len()
    }

    /// The faults against the messages that should have arrived (`expected`, sorted ascending, no repeats).
    pub fn faults(&self, expected: &[u64]) -> Faults {
        let mut seqs = self.arrivals.clone();
        seqs.sort_unstable();
        // A late seq that arrived once is reordering; one that arrived twice is already a duplicate.
        let times = |seq: u64| seqs.partition_point(|s| *s <= seq) - seqs.partition_point(|s| *s < seq);
        let reordered = self.late.iter().filter(|seq| times(**seq) == 1).count() as u64;
        let total = seqs.len() as u64;
        seqs.dedup();
        let duplicates = total - seqs.len() as u64;
        let mut lost = 0;
        let mut i = 0;
        for want in expected {
            if self.excused.iter().any(|(after, up_to)| want > after && want <= up_to) {
                continue;
            }
            while i < seqs.len() && seqs[i] < *want {
                i += 1;
            }
            if i == seqs.len() || seqs[i] != *want {
                lost += 1;
            }
        }
        Faults {
            lost,
            duplicates,
            reordered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECTED: [u64; 10] = [3, 5, 8, 9, 12, 13, 20, 21, 22, 30];

    /// A receiver fed `EXPECTED` through `deliver`, which may inject a fault.
    fn run(deliver: impl Fn(&mut Reception, usize, u64)) -> Faults {
        let mut reception = Reception::new();
        for (i, seq) in EXPECTED.iter().enumerate() {
            deliver(&mut reception, i, *seq);
        }
        reception.faults(&EXPECTED)
    }

    #[test]
    fn a_clean_run_has_no_faults() {
        assert!(run(|r, _, seq| r.received(seq)).is_clean());
    }

    #[test]
    fn a_dropped_message_is_loss() {
        let faults = run(|r, i, seq| {
            if i != 4 {
                r.received(seq);
            }
        });
        assert_eq!(
            faults,
            Faults {
                lost: 1,
                duplicates: 0,
                reordered: 0
            }
        );
    }

    #[test]
    fn a_repeated_message_is_a_duplicate_not_reordering() {
        let faults = run(|r, i, seq| {
            r.received(seq);
            if i == 7 {
                r.received(seq);
            }
        });
        assert_eq!(
            faults,
            Faults {
                lost: 0,
                duplicates: 1,
                reordered: 0
            }
        );
        // A repeat that comes after later messages is still a duplicate only.
        let mut late_repeat = Reception::new();
        for seq in [1, 2, 3, 2] {
            late_repeat.received(seq);
        }
        assert_eq!(
            late_repeat.faults(&[1, 2, 3]),
            Faults {
                lost: 0,
                duplicates: 1,
                reordered: 0
            }
        );
    }

    #[test]
    fn swapped_messages_are_reordering() {
        let mut reception = Reception::new();
        for seq in [3, 5, 9, 8, 12] {
            reception.received(seq);
        }
        assert_eq!(
            reception.faults(&[3, 5, 8, 9, 12]),
            Faults {
                lost: 0,
                duplicates: 0,
                reordered: 1
            }
        );
    }

    #[test]
    fn a_receiver_that_got_nothing_lost_everything() {
        assert_eq!(Reception::new().faults(&EXPECTED).lost, 10);
        assert!(!Reception::new().may_hold(&EXPECTED));
        assert!(Reception::new().may_hold(&[]));
    }

    #[test]
    fn a_gap_the_gateway_declared_unrecoverable_is_not_loss() {
        let mut reception = Reception::new();
        reception.received(3);
        // Rejoined from 3; the gateway could not replay and the room is at 12 now.
        reception.excuse(3, 12);
        for seq in [13, 20] {
            reception.received(seq);
        }
        assert!(reception.faults(&[3, 5, 8, 12, 13, 20]).is_clean());
        assert_eq!(
            reception.faults(&[3, 5, 13, 20, 21]).lost,
            1,
            "what comes after the gap still counts"
        );
    }

    #[test]
    fn messages_nobody_acknowledged_are_not_faults() {
        // A message stored but never acked (its sender dropped) may arrive; it is neither expected nor a fault.
        let mut reception = Reception::new();
        for seq in [3, 4, 5] {
            reception.received(seq);
        }
        assert!(reception.faults(&[3, 5]).is_clean());
        assert!(reception.may_hold(&[3, 5]));
    }
}
