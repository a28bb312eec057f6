//! Who sees a room's live drafts: its members only, never people previewing a public room they have not joined.
//!
//! Membership is asked of the auth API (`chat.v1.auth.members`) only when there is a draft to show, for the local
//! users whose membership is not known or no longer fresh, all in one question per room at a time: a room nobody
//! types in costs nothing, and joining costs no question. A user becomes a member while their draft is waiting,
//! so the drafts already live are sent to each user the answer names a member for the first time; until then
//! they see none. A member is trusted for [`MEMBER_FOR`] (taken out of the room, they are evicted from it by the
//! access re-checks anyway), a non-member for [`NOT_MEMBER_FOR`]: someone previewing who joins sees drafts within
//! that.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use natter_proto::bus::MAX_MEMBERS_ASKED;
use natter_proto::frame::ServerFrame;

use super::{RoomTask, encode};
use crate::peer::Outbound;

/// How long the auth API's word that a user is a member holds.
const MEMBER_FOR: Duration = Duration::from_secs(60);

/// How long its word that a user is not a member (or a question it did not answer) holds.
const NOT_MEMBER_FOR: Duration = Duration::from_secs(10);

/// The users a membership question asked about, and its answer: the members among them.
pub(super) type Answer = (Vec<String>, Result<HashSet<String>, String>);

/// What a room knows of its local users' membership, and its question under way.
#[derive(Default)]
pub(super) struct DraftReaders {
    /// User id → whether a member, and since when known.
    known: HashMap<String, (bool, Instant)>,
    /// The question under way: the users asked about, and the answer.
    asking: Option<tokio::task::JoinHandle<Answer>>,
}

impl DraftReaders {
    fn member(&self, user: &str) -> bool {
        self.known.get(user).is_some_and(|(member, _)| *member)
    }

    fn fresh(&self, user: &str, now: Instant) -> bool {
        self.known
            .get(user)
            .is_some_and(|(member, at)| now.duration_since(*at) < if *member { MEMBER_FOR } else { NOT_MEMBER_FOR })
    }
}

/// The answer to the room's membership question; never completes while none is under way.
pub(super) async fn answered(readers: &mut DraftReaders) -> Answer {
    match &mut readers.asking {
        Some(question) => {
            let answer = question
                .await
                .unwrap_or_else(|_| (Vec::new(), Err("the question's task failed".into())));
            readers.asking = None;
            answer
        }
        None => std::future::pending().await,
    }
}

impl RoomTask {
    /// Queues a `typing` frame of `author`'s to the members of the room, but `author`'s own connections; asks who
    /// is a member if someone's membership is not known.
    pub(super) fn broadcast_draft(&mut self, frame: &ServerFrame, author: &str) {
        let frame = encode(frame);
        for member in self.members.values_mut() {
            let user = member.peer.user.id.as_str();
            if user != author && self.drafts.member(user) {
                member.queue(Outbound::Frame(frame.clone()));
            }
        }
        self.ask_who_reads_drafts();
    }

    /// Asks the auth API about the local users whose membership is not freshly known, unless a question is under
    /// way.
    fn ask_who_reads_drafts(&mut self) {
        if self.drafts.asking.is_some() {
            return;
        }
        let now = Instant::now();
        let local = &self.local;
        self.drafts.known.retain(|user, _| local.contains_key(user));
        let users: Vec<String> = self
            .local
            .keys()
            .filter(|user| !self.drafts.fresh(user, now))
            .take(MAX_MEMBERS_ASKED)
            .cloned()
            .collect();
        if users.is_empty() {
            return;
        }
        let (shared, room) = (self.shared.clone(), self.room.clone());
        self.drafts.asking = Some(tokio::spawn(async move {
            let answer = shared.access.members(&room, users.clone()).await;
            (users, answer)
        }));
    }

    /// Takes in the auth API's answer about `asked`: a user named a member for the first time is sent the drafts
    /// live now. Without an answer, users not known stay non-members until asked again.
    pub(super) fn on_draft_readers(&mut self, asked: Vec<String>, answer: Result<HashSet<String>, String>) {
        let now = Instant::now();
        let members = match answer {
            Ok(members) => members,
            Err(err) => {
                tracing::debug!(room = %self.room, error = %err, "no answer about who reads the room's drafts");
                for user in asked {
                    let was = self.drafts.member(&user);
                    self.drafts.known.insert(user, (was, now));
                }
                return;
            }
        };
        let mut newly = HashSet::new();
        for user in asked {
            let member = members.contains(&user);
            if member && !self.drafts.member(&user) {
                newly.insert(user.clone());
            }
            self.drafts.known.insert(user, (member, now));
        }
        if newly.is_empty() || self.typing.is_empty() {
            return;
        }
        let drafts: Vec<(String, Bytes)> = self
            .typing
            .iter()
            .map(|(author, (user, text, _))| {
                let frame = ServerFrame::Typing {
                    room: self.room.clone(),
                    user: user.clone(),
                    text: text.clone(),
                };
                (author.clone(), encode(&frame))
            })
            .collect();
        for member in self.members.values_mut() {
            if !newly.contains(member.peer.user.id.as_str()) {
                continue;
            }
            let peer = member.peer.clone();
            for (author, frame) in &drafts {
                if *author != peer.user.id {
                    member.queue(Outbound::Frame(frame.clone()));
                }
            }
        }
    }
}
