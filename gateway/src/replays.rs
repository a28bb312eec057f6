//! Replays shared per room: a rejoin's gap is read from JetStream once per room and gateway, not once per client.
//!
//! After a gateway dies its clients come back to the others within seconds, most of them asking for the same few
//! messages of the same rooms. Each room keeps the window of its events it last read, for [`FRESH`] after the
//! read (never longer, however often it is used): "the room's events in `(base, head]` are exactly these". A rejoin
//! whose gap lies inside the window is served from it; one that reaches past it reads only what is missing (before
//! `base` or after `head`) and widens the window, which keeps the time of its oldest read. Rejoins of one room wait
//! on each other's reads (one lock per room), so a storm of rejoins to one room is one read fanned out; a rejoin
//! that waited [`LOCK_PATIENCE`] for the lock (a read stuck on a stream electing a leader) reads for itself. A
//! window holds at most `--max-replay` events: a longer one is read for its client and not kept.
//!
//! A deleted message leaves the stream when the persister erases it; a window read before that holds it for at
//! most [`FRESH`] more, and a read that brings a deletion is not kept at all, so a window never outlives a deletion
//! it has seen. (A replay read straight from the stream has the same short race with the erasure.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use natter_proto::RoomId;
use natter_proto::bus::StoredMessage;
use natter_stream::journal::{self, Replay};
use tokio::time::Instant;

use crate::metrics;

/// How long a room's window serves rejoins after it was read.
const FRESH: Duration = Duration::from_secs(3);

/// How long a rejoin waits for another rejoin's read of its room before reading for itself.
const LOCK_PATIENCE: Duration = Duration::from_secs(2);

/// How often stale windows are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A room's events over a range of stream sequences, as last read.
struct Window {
    /// The events in `(base, head]`, every one of them, in order.
    base: u64,
    head: u64,
    events: Vec<(u64, StoredMessage)>,
    /// When its oldest part was read.
    read_at: Instant,
}

impl Window {
    /// The events of `(since, until]`, with each one's predecessor (`since` for the first, as a read gives it), if
    /// the window covers that range.
    fn serve(&self, since: u64, until: u64) -> Option<Vec<(u64, u64, StoredMessage)>> {
        if since < self.base || until > self.head {
            return None;
        }
        let start = self.events.partition_point(|(seq, _)| *seq <= since);
        let mut prev = since;
        let mut out = Vec::new();
        for (seq, message) in &self.events[start..] {
            if *seq > until {
                break;
            }
            out.push((*seq, prev, message.clone()));
            prev = *seq;
        }
        Some(out)
    }
}

/// One room's window (empty until a rejoin reads it), locked while a rejoin reads or widens it.
type Slot = Arc<tokio::sync::Mutex<Option<Window>>>;

/// The gateway's shared replays.
pub struct Replays {
    /// Per room and stream epoch.
    rooms: Mutex<HashMap<(RoomId, u64), Slot>>,
    last_sweep: Mutex<Instant>,
    /// Most events a window holds (`--max-replay`).
    cap: usize,
}

impl Replays {
    /// Shared replays whose windows hold at most `cap` events each.
    pub fn new(cap: usize) -> Self {
        Self {
            rooms: Mutex::default(),
            last_sweep: Mutex::new(Instant::now()),
            cap,
        }
    }

    fn slot(&self, room: &RoomId, epoch: u64) -> Slot {
        let now = Instant::now();
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let mut last_sweep = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(*last_sweep) >= SWEEP_EVERY {
            *last_sweep = now;
            // A slot someone holds (waiting for it, or about to) or read moments ago stays; the others go.
            rooms.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot.try_lock().map_or(true, |window| {
                        window.as_ref().is_some_and(|w| now.duration_since(w.read_at) < FRESH)
                    })
            });
        }
        rooms.entry((room.clone(), epoch)).or_default().clone()
    }

    /// The room's events after `since` up to `until` (stream sequences of `epoch`), at most `--max-replay` of
    /// them, from the room's window where it covers them and from the stream for the rest.
    pub async fn replay(
        &self,
        stream: &jetstream::stream::Stream,
        room: &RoomId,
        epoch: u64,
        since: u64,
        until: u64,
    ) -> Replay {
        if since >= until {
            // Nothing to read, or a position ahead of the room: the stream says which.
            return journal::replay(stream, room, since, until, self.cap).await;
        }
        let slot = self.slot(room, epoch);
        let Ok(mut window) = tokio::time::timeout(LOCK_PATIENCE, slot.lock()).await else {
            ::metrics::counter!(metrics::REPLAYS, "source" => "stream").increment(1);
            return journal::replay(stream, room, since, until, self.cap).await;
        };
        if window.as_ref().is_some_and(|w| w.read_at.elapsed() >= FRESH) {
            *window = None;
        }
        if let Some(w) = window.as_ref()
            && let Some(messages) = w.serve(since, until)
        {
            ::metrics::counter!(metrics::REPLAYS, "source" => "shared").increment(1);
            return capped(messages, self.cap);
        }
        // Read what the window lacks: all of (since, until] when there is no window or it does not touch the gap.
        let (read_since, read_until) = match window.as_ref() {
            Some(w) if since >= w.base && since <= w.head => (w.head, until),
            Some(w) if until >= w.base && until <= w.head => (since, w.base),
            _ => (since, until),
        };
        ::metrics::counter!(metrics::REPLAYS, "source" => "stream").increment(1);
        let read = journal::replay(stream, room, read_since, read_until, self.cap).await;
        if !read.recovered {
            return read;
        }
        let events: Vec<(u64, StoredMessage)> = read.messages.into_iter().map(|(seq, _, m)| (seq, m)).collect();
        let deletes = events
            .iter()
            .any(|(_, m)| matches!(m.change, Some(natter_proto::bus::Change::Delete { .. })));
        let widened = match window.take() {
            Some(mut w) if read_since == w.head => {
                w.events.extend(events);
                w.head = read_until;
                w
            }
            Some(mut w) if read_until == w.base => {
                let mut all = events;
                all.append(&mut w.events);
                w.events = all;
                w.base = read_since;
                w
            }
            _ => Window {
                base: read_since,
                head: read_until,
                events,
                read_at: Instant::now(),
            },
        };
        let served = widened.serve(since, until).unwrap_or_default();
        if widened.events.len() <= self.cap && !deletes {
            *window = Some(widened);
        }
        capped(served, self.cap)
    }
}

/// A replay of `messages`, or not recovered if they are more than `cap` (as a read of the stream answers).
fn capped(messages: Vec<(u64, u64, StoredMessage)>, cap: usize) -> Replay {
    if messages.len() > cap {
        return Replay::default();
    }
    Replay {
        recovered: true,
        messages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> StoredMessage {
        serde_json::from_value(serde_json::json!({
            "id": id, "user": {"id": "u", "name": "U"}, "body": id, "ts": "2026-12-07T00:00:00.000Z"
        }))
        .unwrap_or_else(|err| panic!("a stored message: {err}"))
    }

    #[test]
    fn a_window_serves_the_gaps_inside_it_with_their_predecessors() {
        let w = Window {
            base: 10,
            head: 30,
            events: vec![(12, message("a")), (20, message("b")), (25, message("c"))],
            read_at: Instant::now(),
        };
        let seqs = |v: Option<Vec<(u64, u64, StoredMessage)>>| {
            v.map(|v| v.into_iter().map(|(s, p, _)| (s, p)).collect::<Vec<_>>())
        };
        assert_eq!(seqs(w.serve(10, 30)), Some(vec![(12, 10), (20, 12), (25, 20)]));
        assert_eq!(seqs(w.serve(13, 24)), Some(vec![(20, 13)]));
        assert_eq!(seqs(w.serve(25, 30)), Some(vec![]));
        assert_eq!(seqs(w.serve(9, 30)), None, "before the window");
        assert_eq!(seqs(w.serve(12, 31)), None, "past the window");
    }

    #[test]
    fn more_than_the_cap_is_not_recovered() {
        let three = vec![(1, 0, message("a")), (2, 1, message("b")), (3, 2, message("c"))];
        assert!(capped(three.clone(), 3).recovered);
        let over = capped(three, 2);
        assert!(!over.recovered && over.messages.is_empty());
    }
}
