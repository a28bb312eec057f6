//! Room-access checks: whether a user may join a room, asked of the auth API over NATS.
//!
//! Answers that let users in are trusted for [`TRUSTED_FOR`]: `Public` for the whole room, `Allowed` (a private
//! room's member) for that user. A room filling up would still ask once per joiner until the first answer is
//! back, and in a connect storm that is most of them: so while a question about a room not known to be private is
//! in flight, other joins of that room wait for its answer instead of asking again, and go on to ask for
//! themselves only if the room turned out to be private.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use natter_proto::bus::{RoomAccess, RoomAccessRequest};
use natter_proto::{RoomId, subject};

/// How long an answer that lets a user in (`Public`, `Allowed`) is trusted, and how long a room is remembered
/// as private (its joins then ask each for themselves at once).
const TRUSTED_FOR: Duration = Duration::from_secs(30);

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

#[derive(Default)]
struct State {
    /// `(room, "")`: the room is public; `(room, user)`: the user is a member of the private room.
    trusted: HashMap<(RoomId, String), Instant>,
    /// Rooms known to be private.
    private: HashMap<RoomId, Instant>,
    /// The question in flight about a room, with when it was asked.
    asking: HashMap<RoomId, (Answer, Instant)>,
}

fn fresh(at: Option<&Instant>) -> bool {
    at.is_some_and(|at| at.elapsed() < TRUSTED_FOR)
}

fn insert<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, value: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, value);
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
        let public = (room.clone(), String::new());
        let member = (room.clone(), user.to_owned());
        // What to do is decided under one lock, so that of joins arriving together exactly one asks about the room.
        let plan = {
            let mut state = self.state();
            if fresh(state.trusted.get(&public)) {
                return Ok(RoomAccess::Public);
            }
            if fresh(state.trusted.get(&member)) {
                return Ok(RoomAccess::Allowed);
            }
            match state.asking.get(room) {
                Some((answer, at)) if at.elapsed() < ANSWER_WITHIN => Plan::Wait(answer.clone()),
                _ => {
                    let answer = self.ask(room, user);
                    let for_room = !fresh(state.private.get(room));
                    if for_room {
                        insert(&mut state.asking, room.clone(), (answer.clone(), Instant::now()));
                    }
                    Plan::Ask { answer, for_room }
                }
            }
        };
        let (answer, for_room) = match plan {
            Plan::Wait(answer) => match answer.await {
                Ok(RoomAccess::Public) => return Ok(RoomAccess::Public),
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
        match access {
            Ok(RoomAccess::Public) => insert(&mut state.trusted, public, Instant::now()),
            Ok(RoomAccess::Allowed) => {
                insert(&mut state.trusted, member, Instant::now());
                insert(&mut state.private, room.clone(), Instant::now());
            }
            Ok(RoomAccess::Denied) => insert(&mut state.private, room.clone(), Instant::now()),
            Ok(RoomAccess::NotFound) | Err(_) => {}
        }
        access.map_err(anyhow::Error::msg)
    }

    /// Forgets what was learnt about `room` (it was deleted), or about `user` in it (they left or were removed),
    /// so the next join asks again.
    pub fn forget(&self, room: &RoomId, user: Option<&str>) {
        let mut state = self.state();
        match user {
            Some(user) => {
                state.trusted.remove(&(room.clone(), user.to_owned()));
            }
            None => {
                state.trusted.retain(|(r, _), _| r != room);
                state.private.remove(room);
            }
        }
        state.asking.remove(room);
    }

    /// Forgets every answer (events may have been missed while NATS was away).
    pub fn clear(&self) {
        let mut state = self.state();
        state.trusted.clear();
        state.private.clear();
        state.asking.clear();
    }

    /// A question about `user` joining `room`, asked when first awaited.
    fn ask(&self, room: &RoomId, user: &str) -> Answer {
        ask(self.nats.clone(), room.clone(), user.to_owned()).boxed().shared()
    }
}

/// What a join does about a room-access question.
enum Plan {
    /// Wait for the answer to a question another join asked about the room.
    Wait(Answer),
    /// Ask, and (`for_room`) let other joins of the room wait for this answer.
    Ask { answer: Answer, for_room: bool },
}

/// One question to the auth API.
async fn ask(nats: async_nats::Client, room: RoomId, user: String) -> Result<RoomAccess, String> {
    let request = RoomAccessRequest { room, user };
    let payload = Bytes::from(serde_json::to_vec(&request).map_err(|err| err.to_string())?);
    let reply = tokio::time::timeout(ANSWER_WITHIN, nats.request(subject::room_access(), payload))
        .await
        .map_err(|_| "the auth API did not answer in time".to_owned())?
        .map_err(|err| err.to_string())?;
    serde_json::from_slice(&reply.payload).map_err(|err| format!("unreadable answer from the auth API: {err}"))
}
