//! Presence announcements, gathered and sent together.
//!
//! Every change of who is online in a room used to be one `presence` frame to every member and one event to the
//! fleet. When a room fills (a connect storm, a gateway's users coming back after a restart) that is quadratic:
//! each of a hundred joins is told to up to a hundred members, one socket write each. Instead, a room records the
//! changes as they happen and announces them at most once per [`ANNOUNCE_INTERVAL`]: at once in a quiet room (the
//! first change after a quiet interval goes out immediately), batched while changes keep coming. A batch carries
//! the net change only: a user who came and went within it is not announced at all.
//!
//! Each member is told exactly what it has not seen: a member that joined mid-batch already got the room's members
//! in its `joined` frame, so it hears only of the changes after that, and nobody is told about themselves.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use natter_proto::frame::UserRef;

/// Least time between two announcements of a room.
pub(crate) const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);

/// Changes of one kind waiting to be announced, in the order they happened.
#[derive(Default)]
pub(crate) struct Changes {
    /// Each user with whether they came online (`true`) or went offline.
    list: Vec<(UserRef, bool)>,
}

impl Changes {
    pub(crate) fn push(&mut self, user: &UserRef, online: bool) {
        self.list.push((user.clone(), online));
    }

    /// How many changes are recorded: a member joining now has seen everything before this position.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn take(&mut self) -> Changes {
        std::mem::take(self)
    }

    /// The net change from position `from` on, leaving out `except`: who is online now and was not before, and
    /// who was online before and is not now, each in the order of their first change.
    pub(crate) fn net(&self, from: usize, except: Option<&str>) -> (Vec<UserRef>, Vec<UserRef>) {
        let changes = self.list.get(from..).unwrap_or_default();
        // Per user: the state before their first change (the opposite of it) and where their last change is.
        let mut seen: HashMap<&str, (bool, usize)> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        for (at, (user, online)) in changes.iter().enumerate() {
            if except == Some(user.id.as_str()) {
                continue;
            }
            match seen.entry(user.id.as_str()) {
                Entry::Occupied(mut entry) => entry.get_mut().1 = at,
                Entry::Vacant(entry) => {
                    entry.insert((!online, at));
                    order.push(user.id.as_str());
                }
            }
        }
        let (mut joined, mut left) = (Vec::new(), Vec::new());
        for id in order {
            let (before, last) = seen[id];
            let (user, now) = &changes[last];
            match (before, *now) {
                (false, true) => joined.push(user.clone()),
                (true, false) => left.push(user.clone()),
                _ => {}
            }
        }
        (joined, left)
    }

    /// The users the changes name (a member who is one of them needs a frame of its own).
    pub(crate) fn names(&self) -> HashSet<&str> {
        self.list.iter().map(|(u, _)| u.id.as_str()).collect()
    }
}

/// When a room's next announcement is due.
#[derive(Default)]
pub(crate) struct Schedule {
    last: Option<Instant>,
    due: Option<Instant>,
}

impl Schedule {
    /// A change was recorded: an announcement is due now if the room was quiet, else one interval after the last.
    pub(crate) fn changed(&mut self, now: Instant) {
        if self.due.is_none() {
            let next = self.last.map_or(now, |last| last + ANNOUNCE_INTERVAL);
            self.due = Some(next.max(now));
        }
    }

    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// An announcement went out.
    pub(crate) fn sent(&mut self, now: Instant) {
        self.last = Some(now);
        self.due = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserRef {
        UserRef {
            id: id.to_owned(),
            name: id.to_owned(),
        }
    }

    fn ids(users: &[UserRef]) -> Vec<&str> {
        users.iter().map(|u| u.id.as_str()).collect()
    }

    #[test]
    fn a_batch_announces_the_net_change_in_the_order_it_began() {
        let mut changes = Changes::default();
        changes.push(&user("b"), true);
        changes.push(&user("a"), true);
        changes.push(&user("c"), false);
        changes.push(&user("b"), false); // came and went: not announced
        changes.push(&user("d"), true);
        changes.push(&user("c"), true); // went and came back: not announced
        changes.push(&user("b"), true); // ...and came again: online
        let (joined, left) = changes.net(0, None);
        assert_eq!(ids(&joined), ["b", "a", "d"]);
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_member_hears_only_what_followed_its_join_and_nothing_about_itself() {
        let mut changes = Changes::default();
        changes.push(&user("a"), true);
        let joined_at = changes.len();
        changes.push(&user("me"), true);
        changes.push(&user("b"), true);
        changes.push(&user("a"), false);
        let (joined, left) = changes.net(joined_at, Some("me"));
        assert_eq!((ids(&joined), ids(&left)), (vec!["b"], vec!["a"]));
        let (joined, left) = changes.net(0, None);
        assert_eq!((ids(&joined), ids(&left)), (vec!["me", "b"], vec![]));
        let named = changes.names();
        assert!(named.contains("me") && !named.contains("zed"));
        assert_eq!(
            changes.net(99, None),
            (vec![], vec![]),
            "a position past the end is no change"
        );
    }

    #[test]
    fn the_first_change_after_quiet_is_due_at_once_later_ones_an_interval_after_the_last() {
        let start = Instant::now();
        let mut schedule = Schedule::default();
        assert_eq!(schedule.due(), None);
        schedule.changed(start);
        assert_eq!(schedule.due(), Some(start));
        schedule.sent(start);
        let soon = start + Duration::from_millis(10);
        schedule.changed(soon);
        schedule.changed(soon + Duration::from_millis(5));
        assert_eq!(schedule.due(), Some(start + ANNOUNCE_INTERVAL));
        schedule.sent(start + ANNOUNCE_INTERVAL);
        let later = start + 5 * ANNOUNCE_INTERVAL;
        schedule.changed(later);
        assert_eq!(
            schedule.due(),
            Some(later),
            "quiet for longer than an interval: at once"
        );
    }
}
