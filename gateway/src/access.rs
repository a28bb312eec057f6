//! Room-access checks: whether a user may join a room, asked of the auth API over NATS.
//!
//! Answers that let users in are trusted for [`TRUSTED_FOR`]: `Public` for the whole room, `Allowed` (a private
//! room's member, or a user not banned from a public room that bans someone) for that user. Refusals are
//! remembered for [`REFUSED_FOR`]: `NotFound` for the room, `Denied` or `Banned` for that user, so a client asking again and again about a room it may not join costs the auth API one question
//! per [`REFUSED_FOR`]. A room filling up would still ask once per joiner until the first answer is back, and in a
//! connect storm that is most of them: so while a question about a room not known to be private is in flight,
//! other joins of that room wait for its answer instead of asking again, and go on to ask for themselves only if
//! the room turned out to be private.
//!
//! A room event (or a catch-up after missed ones) makes the checks forget what they knew of the room. An answer
//! asked for before that and arriving after it may predate the change, so it is used once but not remembered:
//! every forget moves a generation on and notes it for the room, and an answer about a room forgotten since it
//! was asked for is not stored. Only the room's: events about other rooms (anyone can make some, by leaving rooms
//! through the API) do not keep a gateway from remembering.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use natter_proto::bus::{MembersRequest, MentionRequest, NewReaction, RoomAccess, RoomAccessRequest};
use natter_proto::frame::UserRef;
use natter_proto::{RoomId, subject};

use crate::metrics;

/// How long an answer that lets a user in (`Public`, `Allowed`) is trusted, and how long a room is remembered
/// as private (its joins then ask each for themselves at once).
const TRUSTED_FOR: Duration = Duration::from_secs(30);

/// How long a refusal (`NotFound` for a room, `Denied` for a user) is remembered.
pub const REFUSED_FOR: Duration = Duration::from_secs(5);

/// How long the auth API has to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// Entries each table holds before it is cleared.
const MAX_ENTRIES: usize = 100_000;

type Answer = Shared<BoxFuture<'static, Result<RoomAccess, String>>>;

/// The gateway's room-access checks and what it remembers of their answers.
pub struct AccessChecks {
    nats: async_nats::Client,
    state: Mutex<State>,
}

/// What the checks remember. Keys are `(room, "")` for what holds for the whole room, `(room, user)` for one user.
#[derive(Default)]
struct State {
    /// `(room, "")`: the room is public; `(room, user)`: the user is a member of the private room.
    trusted: HashMap<(RoomId, String), Instant>,
    /// `(room, "")`: there is no such room; `(room, user)`: the user may not join (`Denied` or `Banned`), with which.
    refused: HashMap<(RoomId, String), (Instant, RoomAccess)>,
    /// Rooms known to be private.
    private: HashMap<RoomId, Instant>,
    /// The question in flight about a room, with when it was asked.
    asking: HashMap<RoomId, (Answer, Instant)>,
    /// Moved on by every forget; questions are asked in the current one.
    generation: u64,
    /// The generation each room was last forgotten in: an answer about it asked for before is not stored.
    forgotten: HashMap<RoomId, u64>,
    /// The generation everything was last forgotten in (a clear, or `forgotten` grown full).
    forgotten_all: u64,
}

fn fresh(at: Option<&Instant>, within: Duration) -> bool {
    at.is_some_and(|at| at.elapsed() < within)
}

fn insert<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, value: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, value);
}

impl State {
    /// What is remembered about `user` joining `room`, if anything still holds.
    fn known(&self, room: &RoomId, user: &str) -> Option<RoomAccess> {
        let whole = (room.clone(), String::new());
        let member = (room.clone(), user.to_owned());
        if fresh(self.trusted.get(&whole), TRUSTED_FOR) {
            Some(RoomAccess::Public)
        } else if fresh(self.refused.get(&whole).map(|(at, _)| at), REFUSED_FOR) {
            Some(RoomAccess::NotFound)
        } else if fresh(self.trusted.get(&member), TRUSTED_FOR) {
            Some(RoomAccess::Allowed)
        } else if let Some((at, refusal)) = self.refused.get(&member)
            && fresh(Some(at), REFUSED_FOR)
        {
            Some(*refusal)
        } else {
            None
        }
    }

    /// Stores an answer about `user` joining `room` asked for in generation `asked_in`, unless the room was
    /// forgotten since (the answer may predate the change that made the checks forget).
    fn remember(&mut self, room: &RoomId, user: &str, access: RoomAccess, asked_in: u64) {
        if asked_in < self.forgotten_all || self.forgotten.get(room).is_some_and(|&at| at > asked_in) {
            return;
        }
        let whole = (room.clone(), String::new());
        let member = (room.clone(), user.to_owned());
        let now = Instant::now();
        match access {
            RoomAccess::Public => {
                insert(&mut self.trusted, whole, now);
            }
            // Joins ask neither about ownership nor about reactions: these answers are never remembered for joins.
            RoomAccess::Owner | RoomAccess::TooManyReactions => {}
            RoomAccess::Allowed => {
                self.refused.remove(&member);
                insert(&mut self.trusted, member, now);
                insert(&mut self.private, room.clone(), now);
            }
            RoomAccess::Denied | RoomAccess::Banned | RoomAccess::Blocked => {
                self.trusted.remove(&member);
                insert(&mut self.refused, member, (now, access));
                insert(&mut self.private, room.clone(), now);
            }
            RoomAccess::NotFound => {
                self.drop_room(room);
                insert(&mut self.refused, whole, (now, access));
            }
        }
    }

    /// Forgets what is known of `room`, or of `user` in it, and refuses to store answers asked for before.
    fn forget(&mut self, room: &RoomId, user: Option<&str>) {
        self.generation += 1;
        if self.forgotten.len() >= MAX_ENTRIES {
            self.forgotten.clear();
            self.forgotten_all = self.generation;
        }
        self.forgotten.insert(room.clone(), self.generation);
        match user {
            Some(user) => {
                let member = (room.clone(), user.to_owned());
                self.trusted.remove(&member);
                self.refused.remove(&member);
            }
            None => self.drop_room(room),
        }
        self.asking.remove(room);
    }

    /// Drops every answer remembered about `room`.
    fn drop_room(&mut self, room: &RoomId) {
        self.trusted.retain(|(r, _), _| r != room);
        self.refused.retain(|(r, _), _| r != room);
        self.private.remove(room);
    }

    /// Forgets everything, and refuses to store answers asked for before.
    fn clear(&mut self) {
        self.generation += 1;
        *self = State {
            generation: self.generation,
            forgotten_all: self.generation,
            ..State::default()
        };
    }
}

impl AccessChecks {
    /// Checks asked over `nats`.
    pub fn new(nats: async_nats::Client) -> Self {
        Self {
            nats,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock means a panic mid-update of plain maps; their contents are still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `user` may join `room`.
    pub async fn check(&self, room: &RoomId, user: &str) -> anyhow::Result<RoomAccess> {
        // What to do is decided under one lock, so that of joins arriving together exactly one asks about the room.
        let (plan, generation) = {
            let mut state = self.state();
            if let Some(known) = state.known(room, user) {
                return Ok(known);
            }
            let plan = match state.asking.get(room) {
                Some((answer, at)) if at.elapsed() < ANSWER_WITHIN => Plan::Wait(answer.clone()),
                _ => {
                    let answer = self.ask(room, user);
                    let for_room = !fresh(state.private.get(room), TRUSTED_FOR);
                    if for_room {
                        insert(&mut state.asking, room.clone(), (answer.clone(), Instant::now()));
                    }
                    Plan::Ask { answer, for_room }
                }
            };
            (plan, state.generation)
        };
        let (answer, for_room) = match plan {
            Plan::Wait(answer) => match answer.await {
                Ok(RoomAccess::Public) => return Ok(RoomAccess::Public),
                Ok(RoomAccess::NotFound) => return Ok(RoomAccess::NotFound),
                // The room is private (or the question failed): this user is asked about in their own right.
                _ => (self.ask(room, user), false),
            },
            Plan::Ask { answer, for_room } => (answer, for_room),
        };
        let access = answer.clone().await;
        let mut state = self.state();
        // Only this join's own entry: a stale one may have been replaced by another join's question since.
        if for_room && state.asking.get(room).is_some_and(|(asked, _)| asked.ptr_eq(&answer)) {
            state.asking.remove(room);
        }
        if let Ok(access) = access {
            state.remember(room, user, access, generation);
        }
        access.map_err(anyhow::Error::msg)
    }

    /// Asks the auth API again whether `user` may still be in `room`, whatever is remembered, and remembers the
    /// answer (a re-check of a connection already in the room: see [`crate::room`]).
    pub async fn recheck(&self, room: &RoomId, user: &str) -> anyhow::Result<RoomAccess> {
        let generation = self.state().generation;
        let access = self.ask(room, user).await;
        ::metrics::counter!(metrics::ACCESS_RECHECKS, "answer" => metrics::access_answer(access.as_ref().ok()))
            .increment(1);
        if let Ok(access) = access {
            self.state().remember(room, user, access, generation);
        }
        access.map_err(anyhow::Error::msg)
    }

    /// Forgets what was learnt about `room` (it was deleted), or about `user` in it (they left or were removed),
    /// so the next join asks again; answers to questions already asked are not stored.
    pub fn forget(&self, room: &RoomId, user: Option<&str>) {
        self.state().forget(room, user);
    }

    /// Forgets every answer (events may have been missed while NATS was away).
    pub fn clear(&self) {
        self.state().clear();
    }

    /// A question about `user` joining `room`, asked when first awaited.
    fn ask(&self, room: &RoomId, user: &str) -> Answer {
        let request = RoomAccessRequest {
            room: room.clone(),
            user: user.to_owned(),
            owner: false,
            reaction: None,
        };
        ask(self.nats.clone(), request).boxed().shared()
    }

    /// Whether `user` owns or moderates `room`, asked of the auth API each time (only a deletion of another's
    /// message asks; the answer is not remembered).
    pub async fn moderates(&self, room: &RoomId, user: &str) -> Result<bool, String> {
        let request = RoomAccessRequest {
            room: room.clone(),
            user: user.to_owned(),
            owner: true,
            reaction: None,
        };
        Ok(ask(self.nats.clone(), request).await? == RoomAccess::Owner)
    }

    /// Whether `user` may add the reaction `emoji` to the message at `target` in `room`: not when the message has
    /// [`natter_proto::text::MAX_REACTION_EMOJI`] different emoji already and not this one. Asked of the auth API
    /// (which reads the history) before each reaction added; what the persister has not stored yet is not counted,
    /// so reactions sent at once may take a message a little past the limit.
    pub async fn may_react(&self, room: &RoomId, user: &str, target: u64, emoji: &str) -> Result<bool, String> {
        let request = RoomAccessRequest {
            room: room.clone(),
            user: user.to_owned(),
            owner: false,
            reaction: Some(NewReaction {
                target,
                emoji: emoji.to_owned(),
            }),
        };
        Ok(ask(self.nats.clone(), request).await? != RoomAccess::TooManyReactions)
    }
}

impl AccessChecks {
    /// Which of `names`, mentioned in a message to `room`, are its members, as the auth API says: asked for each
    /// message that mentions anyone (never remembered: membership changes). Without an answer in time the message
    /// mentions no one (counted in [`metrics::MENTION_QUESTIONS`]): a message matters more than its highlight.
    pub async fn mentioned(&self, room: &RoomId, names: Vec<String>) -> Vec<UserRef> {
        let request = MentionRequest {
            room: room.clone(),
            names,
        };
        let answer = self.ask_json::<_, Vec<UserRef>>(subject::mentions(), &request, MENTIONS_WITHIN);
        match answer.await {
            Ok(members) => {
                ::metrics::counter!(metrics::MENTION_QUESTIONS, "outcome" => "answered").increment(1);
                members
            }
            Err(err) => {
                ::metrics::counter!(metrics::MENTION_QUESTIONS, "outcome" => "failed").increment(1);
                tracing::debug!(%room, error = %err, "no answer about a message's mentions; it mentions no one");
                Vec::new()
            }
        }
    }

    /// Which of `users`, connected to `room`, are its members, as the auth API says (`chat.v1.auth.members`): only
    /// they see the room's live drafts.
    pub async fn members(&self, room: &RoomId, users: Vec<String>) -> Result<HashSet<String>, String> {
        let request = MembersRequest {
            room: room.clone(),
            users,
        };
        self.ask_json(subject::members(), &request, ANSWER_WITHIN).await
    }

    /// Asks the auth API `request` on `subject` and reads its JSON answer, waiting up to `within`.
    async fn ask_json<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        subject: String,
        request: &Q,
        within: Duration,
    ) -> Result<A, String> {
        let payload = Bytes::from(serde_json::to_vec(request).map_err(|err| err.to_string())?);
        let reply = tokio::time::timeout(within, self.nats.request(subject, payload))
            .await
            .map_err(|_| "the auth API did not answer in time".to_owned())?
            .map_err(|err| err.to_string())?;
        serde_json::from_slice::<A>(&reply.payload).map_err(|err| err.to_string())
    }
}

/// How long a send waits for the auth API to say whom it mentions.
const MENTIONS_WITHIN: Duration = Duration::from_secs(1);

/// What a join does about a room-access question.
enum Plan {
    /// Wait for the answer to a question another join asked about the room.
    Wait(Answer),
    /// Ask, and (`for_room`) let other joins of the room wait for this answer.
    Ask { answer: Answer, for_room: bool },
}

/// One question to the auth API.
async fn ask(nats: async_nats::Client, request: RoomAccessRequest) -> Result<RoomAccess, String> {
    let payload = Bytes::from(serde_json::to_vec(&request).map_err(|err| err.to_string())?);
    let answer = async {
        let reply = tokio::time::timeout(ANSWER_WITHIN, nats.request(subject::room_access(), payload))
            .await
            .map_err(|_| "the auth API did not answer in time".to_owned())?
            .map_err(|err| err.to_string())?;
        serde_json::from_slice(&reply.payload).map_err(|err| format!("unreadable answer from the auth API: {err}"))
    };
    let answer = answer.await;
    ::metrics::counter!(metrics::ACCESS_QUESTIONS, "answer" => metrics::access_answer(answer.as_ref().ok()))
        .increment(1);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str) -> RoomId {
        RoomId::parse(id).expect("a valid room id")
    }

    #[test]
    fn an_answer_asked_for_before_a_forget_is_not_stored_after_it() {
        let mut state = State::default();
        let lobby = room("lobby");
        // A join asks; the member is removed (the room event makes the checks forget) before the answer is back.
        let asked_in = state.generation;
        state.forget(&lobby, Some("u1"));
        state.remember(&lobby, "u1", RoomAccess::Allowed, asked_in);
        assert_eq!(state.known(&lobby, "u1"), None, "the stale answer is not trusted");
        // Asked again after the forget, an answer is stored as usual.
        let asked_in = state.generation;
        state.remember(&lobby, "u1", RoomAccess::Denied, asked_in);
        assert_eq!(state.known(&lobby, "u1"), Some(RoomAccess::Denied));
        // A whole room forgotten (deleted) refuses stale answers of every user, and so does a clear.
        let asked_in = state.generation;
        state.forget(&lobby, None);
        state.remember(&lobby, "u2", RoomAccess::Public, asked_in);
        assert_eq!(state.known(&lobby, "u2"), None);
        let asked_in = state.generation;
        state.clear();
        state.remember(&lobby, "u2", RoomAccess::Public, asked_in);
        assert_eq!(state.known(&lobby, "u2"), None);
    }

    #[test]
    fn forgetting_a_room_spoils_no_answer_about_another() {
        let mut state = State::default();
        let (lobby, other) = (room("lobby"), room("other"));
        let asked_in = state.generation;
        state.forget(&other, Some("u1"));
        state.forget(&other, None);
        state.remember(&lobby, "u1", RoomAccess::Public, asked_in);
        assert_eq!(state.known(&lobby, "u9"), Some(RoomAccess::Public));
        // A missing room's answer forgets nothing: answers in flight about other rooms are still stored.
        let asked_in = state.generation;
        state.remember(&other, "u1", RoomAccess::NotFound, state.generation);
        state.remember(&lobby, "u2", RoomAccess::Public, asked_in);
        assert_eq!(state.known(&lobby, "u2"), Some(RoomAccess::Public));
    }

    #[test]
    fn refusals_are_remembered_apart_from_admissions_and_forgotten_with_the_room() {
        let mut state = State::default();
        let (private, gone) = (room("private"), room("gone"));
        let now = state.generation;
        state.remember(&private, "member", RoomAccess::Allowed, now);
        state.remember(&private, "stranger", RoomAccess::Denied, now);
        state.remember(&gone, "anyone", RoomAccess::NotFound, state.generation);
        assert_eq!(state.known(&private, "member"), Some(RoomAccess::Allowed));
        assert_eq!(state.known(&private, "stranger"), Some(RoomAccess::Denied));
        assert_eq!(state.known(&private, "someone"), None, "refusals are per user");
        assert_eq!(
            state.known(&gone, "someone"),
            Some(RoomAccess::NotFound),
            "a missing room for all"
        );
        // A member removed is refused from then on, and a refused user let in is admitted.
        let now = state.generation;
        state.remember(&private, "member", RoomAccess::Denied, now);
        state.remember(&private, "stranger", RoomAccess::Allowed, now);
        assert_eq!(state.known(&private, "member"), Some(RoomAccess::Denied));
        assert_eq!(state.known(&private, "stranger"), Some(RoomAccess::Allowed));
        // A room event about the room forgets its refusals too.
        state.forget(&gone, None);
        assert_eq!(state.known(&gone, "someone"), None);
        state.forget(&private, Some("member"));
        assert_eq!(state.known(&private, "member"), None);
    }

    #[test]
    fn refusals_expire_sooner_than_admissions() {
        const { assert!(REFUSED_FOR.as_nanos() < TRUSTED_FOR.as_nanos()) };
        let mut state = State::default();
        let lobby = room("lobby");
        state.remember(&lobby, "u1", RoomAccess::Denied, state.generation);
        let member = (lobby.clone(), "u1".to_owned());
        // Backdated past the refusal's memory: asked again.
        let past = Instant::now()
            .checked_sub(REFUSED_FOR)
            .expect("the clock is past the epoch");
        state.refused.insert(member, (past, RoomAccess::Denied));
        assert_eq!(state.known(&lobby, "u1"), None);
    }
}
