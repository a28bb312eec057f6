//! Acks after persistence (`--ack-after persisted`): a send JetStream stored waits until a persister says it is in
//! PostgreSQL, and only then is the client acked.
//!
//! Persisters publish, right after each commit, the stream sequences written per room
//! ([`natter_proto::subject::persisted_notice`]); this gateway follows every room's notices with one subscription
//! and wakes the sends waiting for those sequences. Notices are core NATS and can be lost (a reconnect), and a
//! resend that JetStream calls a duplicate had its notice long ago: a send still waiting [`ASK_AFTER`] after its
//! stored-ack, or at once for a duplicate, is asked about ([`natter_proto::subject::persisted_ask`]): every
//! [`ASK_TICK`] the sequences due are gathered into one question per epoch (a few thousand sequences each), so an
//! outage with thousands waiting costs the persisters a question or two a tick, not one per send. A send still
//! unconfirmed at `--persisted-ack-timeout` ends as [`PublishError::NotPersisted`] (the client is told
//! `publish_failed` and resends with the same id): never an ack that was not confirmed.
//!
//! A notice can reach this gateway before the stored-ack of a send it names (the persister read, wrote and
//! committed the message while the ack was on its way): the sequences of the notices of the last [`RECENT`] are
//! kept (at most [`MAX_RECENT`]), and a send whose sequence is among them is confirmed at once.
//!
//! Waiting sends are bounded by `--max-waiting-sends` per gateway (a [`Place`] each, refused with `overloaded`
//! past it) and by the session's sends in flight per connection.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use natter_proto::bus::PersistedSeqs;
use natter_proto::subject;
use natter_stream::journal::PublishError;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::metrics;

/// How long after its stored-ack a send waits for a notice before this gateway asks.
pub const ASK_AFTER: Duration = Duration::from_secs(2);

/// How often the sends due for a question are gathered.
const ASK_TICK: Duration = Duration::from_millis(250);

/// Longest wait for an answer to one question; the sends it was about are asked about again [`ASK_AFTER`] later.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the sequences a notice named are remembered, for sends whose stored-ack comes after the notice.
const RECENT: Duration = Duration::from_secs(5);

/// Most sequences remembered from notices (about 24 bytes each): at more than this many messages per [`RECENT`]
/// across the fleet, a send whose notice came first waits for [`ASK_AFTER`] instead.
const MAX_RECENT: usize = 200_000;

/// The `via` label of a confirmation.
type Via = &'static str;

/// Sends waiting for one stream sequence.
struct Waiter {
    /// One per waiting send (a resend on another connection waits beside the first); told how it was confirmed.
    told: Vec<oneshot::Sender<Via>>,
    /// When to ask about it next.
    ask_at: Instant,
}

/// The sends of a gateway waiting for a persister's confirmation. Shared by its sessions and its follower task.
pub struct Persisted {
    nats: async_nats::Client,
    max_waiting: usize,
    /// Places taken (sends between their reservation and their answer).
    waiting: AtomicUsize,
    /// The waiting sends, and what recent notices named.
    state: Mutex<State>,
    /// Asks the follower task to gather questions now (a duplicate is waiting).
    ask_soon: Notify,
}

/// What the sends and the notices left, under one lock so that a send registering and a notice arriving cannot
/// miss each other.
#[derive(Default)]
struct State {
    /// The waiting sends by epoch and stream sequence.
    waiters: HashMap<(u64, u64), Waiter>,
    /// Epochs and sequences named by the notices of the last [`RECENT`].
    recent: HashSet<(u64, u64)>,
    /// The same, oldest first, with when they came, to forget them in order.
    recent_order: VecDeque<(Instant, (u64, u64))>,
}

impl State {
    /// Remembers what a notice named, and forgets what is older than [`RECENT`] or beyond [`MAX_RECENT`].
    fn remember(&mut self, seqs: &PersistedSeqs) {
        let now = Instant::now();
        for seq in seqs.iter().take(MAX_RECENT) {
            if self.recent.insert((seqs.epoch, seq)) {
                self.recent_order.push_back((now, (seqs.epoch, seq)));
            }
        }
        while let Some(&(at, key)) = self.recent_order.front() {
            if now.duration_since(at) < RECENT && self.recent_order.len() <= MAX_RECENT {
                break;
            }
            self.recent_order.pop_front();
            self.recent.remove(&key);
        }
    }
}

/// A send's place among the waiting ones, given back when dropped.
pub struct Place {
    persisted: Arc<Persisted>,
    /// The sequence it waits for, once its stored-ack named it.
    waits_for: Option<(u64, u64)>,
}

impl Persisted {
    /// Waiting sends over `nats`, at most `max_waiting` at once.
    pub fn new(nats: async_nats::Client, max_waiting: usize) -> Arc<Self> {
        Arc::new(Self {
            nats,
            max_waiting,
            waiting: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
            ask_soon: Notify::new(),
        })
    }

    /// A place for one more waiting send, unless `--max-waiting-sends` are taken. Taken before the publish, so a
    /// send refused here was not stored.
    pub fn reserve(self: &Arc<Self>) -> Option<Place> {
        let taken = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_waiting).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            ::metrics::counter!(metrics::PERSISTED_REFUSED).increment(1);
            return None;
        }
        ::metrics::gauge!(metrics::PERSISTED_WAITING).increment(1.0);
        Some(Place {
            persisted: self.clone(),
            waits_for: None,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows the persisters' notices and asks about the sends due, for as long as the gateway runs.
    pub async fn run(self: Arc<Self>) {
        let mut notices = match self.nats.subscribe(subject::all_persisted_notices()).await {
            Ok(notices) => Some(notices),
            Err(err) => {
                tracing::error!(error = %err, "cannot follow the persisters' notices; waiting sends are asked about");
                None
            }
        };
        let mut tick = tokio::time::interval(ASK_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(notice) = next(&mut notices) => {
                    match serde_json::from_slice::<PersistedSeqs>(&notice.payload) {
                        Ok(seqs) => self.confirm(&seqs, "notice"),
                        Err(err) => tracing::debug!(error = %err, "unreadable persisted notice"),
                    }
                }
                _ = tick.tick() => self.ask_due(),
                () = self.ask_soon.notified() => self.ask_due(),
            }
        }
    }

    /// Wakes the sends waiting for any of `seqs`.
    fn confirm(&self, seqs: &PersistedSeqs, via: Via) {
        let mut state = self.state();
        if via == "notice" {
            state.remember(seqs);
        }
        let waiters = &mut state.waiters;
        if waiters.is_empty() {
            return;
        }
        // A notice names a batch's sequences (mostly runs): look each up, unless the waiting sends are fewer.
        let keys: Vec<(u64, u64)> = if seqs.count() > waiters.len() as u64 {
            waiters
                .keys()
                .filter(|(epoch, seq)| *epoch == seqs.epoch && seqs.contains(*seq))
                .copied()
                .collect()
        } else {
            seqs.iter()
                .map(|seq| (seqs.epoch, seq))
                .filter(|key| waiters.contains_key(key))
                .collect()
        };
        for key in keys {
            if let Some(waiter) = waiters.remove(&key) {
                for told in waiter.told {
                    let _ = told.send(via);
                }
            }
        }
    }

    /// Asks the persisters about every send whose question is due, in one question per epoch and chunk.
    fn ask_due(self: &Arc<Self>) {
        let now = Instant::now();
        let mut due: HashMap<u64, Vec<u64>> = HashMap::new();
        self.state().waiters.retain(|(epoch, seq), waiter| {
            // Sends that went away while waiting (their connection ended) are forgotten here if not on the way out.
            waiter.told.retain(|told| !told.is_closed());
            if waiter.told.is_empty() {
                return false;
            }
            if waiter.ask_at <= now {
                waiter.ask_at = now + ASK_AFTER;
                due.entry(*epoch).or_default().push(*seq);
            }
            true
        });
        for (epoch, seqs) in due {
            for chunk in seqs.chunks(PersistedSeqs::MAX_ASKED as usize) {
                let question = PersistedSeqs::new(epoch, chunk.iter().copied());
                tokio::spawn(self.clone().ask(question));
            }
        }
    }

    /// Asks which of `question`'s sequences history holds, and wakes the sends waiting for those.
    async fn ask(self: Arc<Self>, question: PersistedSeqs) {
        let Ok(payload) = serde_json::to_vec(&question) else {
            return;
        };
        let answer =
            tokio::time::timeout(ASK_TIMEOUT, self.nats.request(subject::persisted_ask(), payload.into())).await;
        let stored = match answer {
            Ok(Ok(reply)) => serde_json::from_slice::<PersistedSeqs>(&reply.payload).ok(),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "no answer about persisted sequences");
                None
            }
            Err(_) => None,
        };
        let outcome = if stored.is_some() { "answered" } else { "error" };
        ::metrics::counter!(metrics::PERSISTED_ASKS, "outcome" => outcome).increment(1);
        // Only what was asked: an answer naming more wakes nothing else.
        if let Some(stored) = stored
            && stored.epoch == question.epoch
        {
            let confirmed = PersistedSeqs::new(stored.epoch, question.iter().filter(|seq| stored.contains(*seq)));
            self.confirm(&confirmed, "ask");
        }
    }
}

impl Place {
    /// Waits until a persister confirms that stream sequence `seq` of epoch `epoch` is in PostgreSQL, at most until
    /// `deadline`. A `duplicate` (a resend JetStream recognised) is asked about at once: its notice, if any, went
    /// out when the first send was written.
    pub async fn wait(mut self, epoch: u64, seq: u64, duplicate: bool, deadline: Instant) -> Result<(), PublishError> {
        let (told, confirmed) = oneshot::channel();
        let now = Instant::now();
        {
            let mut state = self.persisted.state();
            if state.recent.contains(&(epoch, seq)) {
                ::metrics::counter!(metrics::PERSISTED_CONFIRMED, "via" => "notice").increment(1);
                return Ok(());
            }
            let waiter = state.waiters.entry((epoch, seq)).or_insert_with(|| Waiter {
                told: Vec::new(),
                ask_at: now + ASK_AFTER,
            });
            if duplicate {
                waiter.ask_at = now;
            }
            waiter.told.push(told);
        }
        self.waits_for = Some((epoch, seq));
        if duplicate {
            self.persisted.ask_soon.notify_one();
        }
        match tokio::time::timeout_at(deadline, confirmed).await {
            Ok(Ok(via)) => {
                ::metrics::counter!(metrics::PERSISTED_CONFIRMED, "via" => via).increment(1);
                Ok(())
            }
            // Timed out (or the follower is gone, which it never is while the gateway runs).
            _ => Err(PublishError::NotPersisted),
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.persisted.waiting.fetch_sub(1, Ordering::AcqRel);
        ::metrics::gauge!(metrics::PERSISTED_WAITING).decrement(1.0);
        // A send that timed out, or whose connection ended, waits no more: forget it, and its sequence once no
        // other send waits for it.
        if let Some(key) = self.waits_for {
            let mut state = self.persisted.state();
            let waiters = &mut state.waiters;
            if let Some(waiter) = waiters.get_mut(&key) {
                waiter.told.retain(|told| !told.is_closed());
                if waiter.told.is_empty() {
                    waiters.remove(&key);
                }
            }
        }
    }
}

/// The next notice; never resolves without a subscription (or once it ended).
async fn next(notices: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match notices {
        Some(notices) => notices.next().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_notices_are_remembered_within_a_bound() {
        let mut state = State::default();
        state.remember(&PersistedSeqs::new(7, [1, 2, 3]));
        assert!(state.recent.contains(&(7, 2)) && !state.recent.contains(&(8, 2)) && !state.recent.contains(&(7, 4)));
        // A hostile notice naming every sequence costs at most the bound, and pushes the oldest out.
        state.remember(&PersistedSeqs {
            epoch: 9,
            seqs: vec![(0, u64::MAX)],
        });
        assert_eq!((state.recent.len(), state.recent_order.len()), (MAX_RECENT, MAX_RECENT));
        assert!(!state.recent.contains(&(7, 1)), "the oldest are forgotten first");
        assert!(state.recent.contains(&(9, 0)));
    }
}
