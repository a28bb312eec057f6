//! Delivery accounting: for each receiver in each room, what was expected against what arrived.
//!
//! A receiver's messages of one room must arrive in increasing `seq`, each exactly once, and every message sent to
//! the room while the receiver was in it must arrive. The accounting is per receiver, so one lossy connection is
//! told apart from a lossy room.

use std::collections::{BTreeSet, HashMap, HashSet};

/// What went wrong for one receiver in one room.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Faults {
    /// Expected messages that never arrived.
    pub lost: u64,
    /// Messages that arrived more than once.
    pub duplicates: u64,
    /// Messages whose `seq` was lower than one already received.
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

/// One receiver's view of one room.
#[derive(Debug, Default)]
struct Receiver {
    /// Message ids received.
    seen: HashSet<String>,
    /// The highest `seq` received.
    last_seq: u64,
    faults: Faults,
}

/// The ledger of a run: messages expected per room, and what each receiver got.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Room → ids of messages acknowledged to their senders (so expected by every receiver in the room).
    expected: HashMap<String, BTreeSet<String>>,
    /// (room, receiver) → its view.
    receivers: HashMap<(String, String), Receiver>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// A message was acknowledged to its sender: every receiver of `room` should get it.
    pub fn expect(&mut self, room: &str, id: &str) {
        self.expected.entry(room.to_owned()).or_default().insert(id.to_owned());
    }

    /// `receiver` got message `id` with `seq` in `room`.
    pub fn received(&mut self, room: &str, receiver: &str, id: &str, seq: u64) {
        let view = self
            .receivers
            .entry((room.to_owned(), receiver.to_owned()))
            .or_default();
        if !view.seen.insert(id.to_owned()) {
            view.faults.duplicates += 1;
            return;
        }
        if seq < view.last_seq {
            view.faults.reordered += 1;
        }
        view.last_seq = view.last_seq.max(seq);
    }

    /// Registers a receiver that may have received nothing, so its losses count.
    pub fn listening(&mut self, room: &str, receiver: &str) {
        self.receivers
            .entry((room.to_owned(), receiver.to_owned()))
            .or_default();
    }

    /// The faults of every receiver, summed, once the run is over.
    pub fn faults(&self) -> Faults {
        let mut total = Faults::default();
        for ((room, _), view) in &self.receivers {
            let mut faults = view.faults.clone();
            if let Some(expected) = self.expected.get(room) {
                faults.lost += expected.iter().filter(|id| !view.seen.contains(*id)).count() as u64;
            }
            total.add(&faults);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A room of three receivers fed by `deliver`, which may inject a fault for receiver "b".
    fn run(deliver: impl Fn(&mut Ledger, &str, &str, u64)) -> Faults {
        let mut ledger = Ledger::new();
        for receiver in ["a", "b", "c"] {
            ledger.listening("r", receiver);
        }
        for seq in 1..=10u64 {
            let id = format!("m{seq}");
            ledger.expect("r", &id);
            for receiver in ["a", "b", "c"] {
                deliver(&mut ledger, receiver, &id, seq);
            }
        }
        ledger.faults()
    }

    #[test]
    fn a_clean_run_has_no_faults() {
        assert!(run(|l, r, id, seq| l.received("r", r, id, seq)).is_clean());
    }

    #[test]
    fn a_dropped_message_is_loss_for_that_receiver_only() {
        let faults = run(|l, r, id, seq| {
            if !(r == "b" && seq == 4) {
                l.received("r", r, id, seq);
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
    fn a_repeated_message_is_a_duplicate() {
        let faults = run(|l, r, id, seq| {
            l.received("r", r, id, seq);
            if r == "b" && seq == 7 {
                l.received("r", r, id, seq);
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
    }

    #[test]
    fn swapped_messages_are_reordering() {
        let mut ledger = Ledger::new();
        for seq in [1u64, 2, 4, 3, 5] {
            ledger.expect("r", &format!("m{seq}"));
            ledger.received("r", "b", &format!("m{seq}"), seq);
        }
        assert_eq!(
            ledger.faults(),
            Faults {
                lost: 0,
                duplicates: 0,
                reordered: 1
            }
        );
    }

    #[test]
    fn a_receiver_that_got_nothing_lost_everything() {
        let mut ledger = Ledger::new();
        ledger.listening("r", "silent");
        ledger.expect("r", "m1");
        ledger.expect("r", "m2");
        assert_eq!(ledger.faults().lost, 2);
    }
}
