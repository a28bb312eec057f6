//! Delivery accounting: for each receiver in each room, what was expected against what arrived.
//!
//! A receiver's messages of one room must arrive in increasing `seq`, each exactly once, and every message
//! acknowledged to a sender of the room during the run must arrive. Messages are told apart by `seq`, the stream
//! position the gateway gives each stored message, so a resend that the server deduplicated is one message. The
//! accounting is per receiver, so one lossy connection is told apart from a lossy room.
//!
//! Each receiver also folds the changes it receives (edits, deletions, reactions, and the replies among the
//! messages) into its view of the room's messages, as a client showing them does; at the end, every receiver's view
//! must equal the one the history API serves (`--verify-history`).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use natter_proto::bus::HistoryMessage;

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
    /// Seq ranges (after, up to] the gateway said it could not replay (`recovered: false`), or messages deleted
    /// (erased from the stream, so a replay no longer carries them): not counted as loss.
    excused: Vec<(u64, u64)>,
    /// Whether a rejoin was answered `recovered: false`: the changes in the gap were never seen, so the folded view
    /// is not comparable.
    gapped: bool,
    /// The changes received, folded into the messages they change.
    fold: Fold,
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
            self.gapped = true;
        }
    }

    /// The message at `target` was deleted: it is erased from the stream, so a rejoin's replay no longer carries it,
    /// and that is not loss.
    pub fn erased(&mut self, target: u64) {
        self.excused.push((target.saturating_sub(1), target));
        self.fold.deleted(target);
    }

    /// The folded view of the room's messages, for changes to fold in.
    pub fn fold(&mut self) -> &mut Fold {
        &mut self.fold
    }

    /// The folded view, unless a gap made it incomplete: `LAST:DIGEST`, the highest position received (what the
    /// view covers: a change stored but never acked may arrive after the receiver stopped) and the view's digest.
    pub fn view(&self) -> Option<String> {
        (!self.gapped).then(|| format!("{}:{}", self.last_seq, self.fold.digest()))
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

/// A receiver's view of the messages of its room that changes touched: each edited one's newest text, each deleted
/// one, each one's reactions (who reacted with what), and each reply's target. Each change is folded in by its
/// position, as the persister folds it into the history: an edit or a reaction older than the one already folded
/// in (a duplicate delivered late) changes nothing, and nothing changes a deleted message.
#[derive(Debug, Default, Clone)]
pub struct Fold {
    messages: BTreeMap<u64, Folded>,
}

#[derive(Debug, Default, Clone)]
struct Folded {
    deleted: bool,
    /// The newest edit's text, and its position.
    body: Option<(u64, String)>,
    reply_to: Option<u64>,
    /// Each emoji's reactions: each user's newest reaction event, its position and whether it added or took back.
    reactions: BTreeMap<String, BTreeMap<String, (u64, bool)>>,
}

/// A message's state in the form both sides reduce to: what a reader sees of it.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Seen<'a> {
    Deleted,
    Live {
        body: Option<&'a str>,
        reply_to: Option<u64>,
        /// Each emoji with who reacted with it, both sorted.
        reactions: Vec<(&'a str, Vec<&'a str>)>,
    },
}

impl Fold {
    /// A message at `seq` answers the one at `reply_to`.
    pub fn reply(&mut self, seq: u64, reply_to: u64) {
        self.messages.entry(seq).or_default().reply_to = Some(reply_to);
    }

    /// The edit at `seq` made the message at `target` read `body`.
    pub fn edited(&mut self, seq: u64, target: u64, body: &str) {
        let folded = self.messages.entry(target).or_default();
        if !folded.deleted && folded.body.as_ref().is_none_or(|(at, _)| *at < seq) {
            folded.body = Some((seq, body.to_owned()));
        }
    }

    /// The message at `target` was deleted: its text and reactions are gone.
    pub fn deleted(&mut self, target: u64) {
        let folded = self.messages.entry(target).or_default();
        *folded = Folded {
            deleted: true,
            ..Folded::default()
        };
    }

    /// The reaction event at `seq`: `user` added (`on`) or took back a reaction `emoji` to the message at `target`.
    pub fn reacted(&mut self, seq: u64, target: u64, user: &str, emoji: &str, on: bool) {
        let folded = self.messages.entry(target).or_default();
        if folded.deleted {
            return;
        }
        let newest = folded
            .reactions
            .entry(emoji.to_owned())
            .or_default()
            .entry(user.to_owned())
            .or_insert((seq, on));
        if newest.0 < seq {
            *newest = (seq, on);
        }
    }

    /// The digest of the view: equal for two views that show the same.
    pub fn digest(&self) -> String {
        digest(self.messages.iter().map(|(seq, folded)| {
            let seen = if folded.deleted {
                Seen::Deleted
            } else {
                Seen::Live {
                    body: folded.body.as_ref().map(|(_, body)| body.as_str()),
                    reply_to: folded.reply_to,
                    reactions: folded
                        .reactions
                        .iter()
                        .map(|(emoji, users)| {
                            let on = users.iter().filter(|(_, (_, on))| *on).map(|(user, _)| user.as_str());
                            (emoji.as_str(), on.collect::<Vec<_>>())
                        })
                        .filter(|(_, users)| !users.is_empty())
                        .collect(),
                }
            };
            (*seq, seen)
        }))
    }

    /// The digest of the view the history API serves of a room's messages (oldest first): what a receiver that saw
    /// every change must hold. A deleted message that still shows text or reactions is not seen as deleted.
    pub fn digest_of_history(messages: &[HistoryMessage]) -> String {
        digest(messages.iter().filter(|m| m.message.change.is_none()).map(|m| {
            let erased = m.message.body.is_empty() && m.reactions.is_empty();
            let seen = if m.deleted.is_some() && erased {
                Seen::Deleted
            } else {
                let mut reactions: Vec<(&str, Vec<&str>)> = m
                    .reactions
                    .iter()
                    .map(|r| {
                        let mut users: Vec<&str> = r.users.iter().map(String::as_str).collect();
                        users.sort_unstable();
                        (r.emoji.as_str(), users)
                    })
                    .filter(|(_, users)| !users.is_empty())
                    .collect();
                reactions.sort_unstable();
                Seen::Live {
                    body: (m.edited.is_some() || m.deleted.is_some()).then_some(m.message.body.as_str()),
                    reply_to: m.message.reply_to,
                    reactions,
                }
            };
            (m.seq, seen)
        }))
    }
}

/// Hashes the messages a change touched, in `seq` order; untouched ones (nothing edited, deleted, reacted or
/// replied to) are left out on both sides. In hexadecimal: it travels in JSON as a map key.
fn digest<'a>(messages: impl Iterator<Item = (u64, Seen<'a>)>) -> String {
    let untouched = Seen::Live {
        body: None,
        reply_to: None,
        reactions: Vec::new(),
    };
    // SipHash with fixed keys: the same digest in every worker process of one build.
    let mut hasher = std::hash::DefaultHasher::new();
    for (seq, seen) in messages {
        if seen != untouched {
            (seq, seen).hash(&mut hasher);
        }
    }
    format!("{:016x}", hasher.finish())
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

    /// A message of the history API: `body` as it reads now, edited or deleted or reacted to as given.
    fn stored(seq: u64, body: &str, reply_to: Option<u64>) -> HistoryMessage {
        use natter_proto::bus::StoredMessage;
        use natter_proto::frame::UserRef;
        let user = UserRef {
            id: "u1".into(),
            name: "ann".into(),
        };
        let id = natter_proto::ClientMsgId::parse(&format!("m{seq}")).expect("a valid id");
        HistoryMessage {
            seq,
            message: StoredMessage::message(id, user, body.into(), reply_to),
            edited: None,
            deleted: None,
            reactions: Vec::new(),
            reactions_seq: 0,
        }
    }

    fn reaction(emoji: &str, users: &[&str]) -> natter_proto::bus::ReactionCount {
        natter_proto::bus::ReactionCount {
            emoji: emoji.into(),
            count: users.len() as u32,
            me: false,
            users: users.iter().map(|u| (*u).to_owned()).collect(),
        }
    }

    #[test]
    fn a_view_folded_from_changes_equals_the_history_that_applied_them() {
        // Messages 1 to 4; 5 replies to 1; then (positions 6 to 15) 1 is edited twice, 2 reacted to and a reaction
        // taken back, 3 deleted after a reaction, 4 reacted to and taken back (untouched in the end).
        let mut fold = Fold::default();
        fold.reply(5, 1);
        fold.edited(6, 1, "first fix");
        fold.reacted(7, 2, "u1", "👍", true);
        fold.reacted(8, 2, "u2", "👍", true);
        fold.reacted(9, 2, "u2", "🎉", true);
        fold.edited(10, 1, "second fix");
        fold.reacted(11, 2, "u2", "👍", false);
        fold.reacted(12, 3, "u1", "👍", true);
        fold.deleted(3);
        fold.reacted(14, 4, "u3", "👀", true);
        fold.reacted(15, 4, "u3", "👀", false);

        let mut history = vec![
            stored(1, "second fix", None),
            stored(2, "two", None),
            stored(3, "", None),
            stored(4, "four", None),
            stored(5, "five", Some(1)),
        ];
        history[0].edited = Some(natter_proto::bus::EditMark {
            seq: 10,
            at: "2026-12-06T10:00:00Z".into(),
        });
        history[1].reactions = vec![reaction("👍", &["u1"]), reaction("🎉", &["u2"])];
        history[2].deleted = Some(natter_proto::bus::Tombstone {
            by: "u1".into(),
            at: "2026-12-06T10:00:01Z".into(),
        });
        let expected = Fold::digest_of_history(&history);
        assert_eq!(fold.digest(), expected);

        // A change delivered again after newer ones (a duplicate) changes nothing, as in the history.
        let mut late = fold.clone();
        late.edited(6, 1, "first fix");
        late.reacted(8, 2, "u2", "👍", true);
        late.reacted(12, 3, "u1", "👍", true);
        assert_eq!(late.digest(), expected);

        // Each difference a receiver's view can have from the history is told.
        let mut newer_edit = fold.clone();
        newer_edit.edited(16, 1, "third fix");
        assert_ne!(newer_edit.digest(), expected);
        let mut newer_reaction = fold.clone();
        newer_reaction.reacted(16, 2, "u2", "👍", true);
        assert_ne!(newer_reaction.digest(), expected);
        let differs = |change: &dyn Fn(&mut Vec<HistoryMessage>)| {
            let mut changed = history.clone();
            change(&mut changed);
            Fold::digest_of_history(&changed) != expected
        };
        assert!(
            differs(&|h| h[1].reactions[1].users = vec!["u3".into()]),
            "who reacted counts"
        );
        assert!(
            differs(&|h| h[2].message.body = "still here".into()),
            "a deleted message's text"
        );
        assert!(
            differs(&|h| h[2].reactions = vec![reaction("👍", &["u1"])]),
            "a deleted message's reactions"
        );
        assert!(differs(&|h| h[4].message.reply_to = None), "a reply's target");
        assert!(differs(&|h| h[0].edited = None), "an edit not applied");
    }

    #[test]
    fn a_receiver_with_an_unrecovered_gap_has_no_view_to_compare() {
        let mut reception = Reception::new();
        reception.received(3);
        reception.fold().edited(4, 3, "fixed");
        assert!(reception.view().is_some());
        // A deleted message erased from the stream is not a gap.
        reception.erased(2);
        assert!(reception.view().is_some());
        reception.excuse(3, 12);
        assert_eq!(reception.view(), None);
    }
}
