//! The counts of a run: what a worker tells the coordinator at its end, what the coordinator adds up over the
//! workers, and what the report shows, in one type. Each part is a section of the JSON report (`connect`,
//! `messages`, `faults`; [`EventCounts`] at its top level), so the report's field names are these fields' names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every count of a run or of one worker. Counts add up across workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Clients and their connections.
    pub connect: ConnectCounts,
    /// Messages and their deliveries.
    pub messages: MessageCounts,
    /// Deliveries that went wrong.
    pub faults: FaultCounts,
    /// Reconnections, stalls, error frames and closes.
    pub events: EventCounts,
}

impl Counts {
    /// Adds another worker's counts.
    pub fn add(&mut self, other: &Counts) {
        self.connect.add(&other.connect);
        self.messages.add(&other.messages);
        self.faults.add(&other.faults);
        self.events.add(&other.events);
    }
}

/// Clients and their connections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectCounts {
    /// Clients planned.
    pub clients: u64,
    /// Clients that connected and joined at least once.
    pub connected: u64,
    /// Failed attempts by cause (first attempts and reconnects).
    pub failures: BTreeMap<String, u64>,
}

impl ConnectCounts {
    /// Adds another worker's counts.
    pub fn add(&mut self, other: &ConnectCounts) {
        self.clients += other.clients;
        self.connected += other.connected;
        add_each(&mut self.failures, &other.failures);
    }
}

/// Messages and their deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCounts {
    /// Sent (first attempts).
    pub sent: u64,
    /// Acknowledged.
    pub acked: u64,
    /// Never acknowledged: refused for good, or still without an ack when its sender finished. A send acked after
    /// any number of resends is acked, not unacked.
    pub unacked: u64,
    /// Sends sent again with the same id, by cause: `overloaded`, `rate_limited` (refused for now),
    /// `publish_failed` (outcome unknown: JetStream did not confirm in time), `rejoin` (unacked when the
    /// connection was lost). The stream's deduplication makes each safe: a resend of a stored message is acked
    /// with its first seq and delivered no second time.
    pub resent: BTreeMap<String, u64>,
    /// Arrivals at receivers, duplicates included.
    pub delivered: u64,
    /// Arrivals that should have happened: receivers × acknowledged messages of their room.
    pub expected: u64,
}

impl MessageCounts {
    /// Adds another worker's counts.
    pub fn add(&mut self, other: &MessageCounts) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.unacked += other.unacked;
        add_each(&mut self.resent, &other.resent);
        self.delivered += other.delivered;
        self.expected += other.expected;
    }
}

/// Delivery faults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    /// Expected arrivals that never happened.
    pub lost: u64,
    /// Arrivals of a message already received.
    pub duplicates: u64,
    /// Arrivals out of seq order.
    pub reordered: u64,
    /// Rejoins answered `recovered: false`.
    pub unrecovered: u64,
    /// Some rooms with faults: room → [lost, duplicates, reordered].
    pub rooms: BTreeMap<String, [u64; 3]>,
}

impl FaultCounts {
    /// Most rooms [`FaultCounts::rooms`] names.
    pub const MAX_ROOMS: usize = 20;

    /// Adds another worker's counts.
    pub fn add(&mut self, other: &FaultCounts) {
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.unrecovered += other.unrecovered;
        for (room, faults) in &other.rooms {
            let entry = self.rooms.entry(room.clone()).or_default();
            for (sum, add) in entry.iter_mut().zip(faults) {
                *sum += add;
            }
        }
    }

    /// Lost, duplicated and reordered deliveries and unrecovered rejoins together.
    pub fn total(&self) -> u64 {
        self.lost + self.duplicates + self.reordered + self.unrecovered
    }
}

/// What happened to connections besides delivering: reconnections, stalls, error frames and closes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    /// Reconnections after drops and closes.
    pub reconnects: u64,
    /// Slow readers that stopped reading (`--slow-readers`).
    pub stalls: u64,
    /// Error frames by code.
    pub error_codes: BTreeMap<String, u64>,
    /// Closes by WebSocket close code (`abnormal` when the connection just ended).
    pub close_codes: BTreeMap<String, u64>,
}

impl EventCounts {
    /// Adds another worker's counts.
    pub fn add(&mut self, other: &EventCounts) {
        self.reconnects += other.reconnects;
        self.stalls += other.stalls;
        add_each(&mut self.error_codes, &other.error_codes);
        add_each(&mut self.close_codes, &other.close_codes);
    }
}

fn add_each(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (key, count) in from {
        *into.entry(key.clone()).or_default() += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_field_by_field_and_key_by_key() {
        let mut one = Counts::default();
        one.connect.clients = 3;
        one.connect.failures.insert("timeout".into(), 1);
        one.messages.sent = 5;
        one.faults.lost = 2;
        one.faults.rooms.insert("r".into(), [2, 0, 0]);
        one.events.close_codes.insert("4008".into(), 1);
        let mut total = one.clone();
        total.add(&one);
        assert_eq!(total.connect.clients, 6);
        assert_eq!(total.connect.failures["timeout"], 2);
        assert_eq!(total.messages.sent, 10);
        assert_eq!(total.faults.rooms["r"], [4, 0, 0]);
        assert_eq!(total.faults.total(), 4);
        assert_eq!(total.events.close_codes["4008"], 2);
    }

    #[test]
    fn the_report_sections_keep_their_field_names() {
        let value = serde_json::to_value(Counts::default()).expect("serializes");
        for (section, fields) in [
            ("connect", &["clients", "connected", "failures"][..]),
            (
                "messages",
                &["sent", "acked", "unacked", "resent", "delivered", "expected"][..],
            ),
            (
                "faults",
                &["lost", "duplicates", "reordered", "unrecovered", "rooms"][..],
            ),
            ("events", &["reconnects", "stalls", "error_codes", "close_codes"][..]),
        ] {
            for field in fields {
                assert!(value[section].get(field).is_some(), "{section}.{field}");
            }
        }
    }
}
