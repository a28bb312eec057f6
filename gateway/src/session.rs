//! One client's protocol state: its rooms, rate limits and token, and what each frame it sends asks for.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use natter_stream::journal::{Lookup, PublishError};

use natter_proto::bus::{Change, RoomAccess, StoredMessage, TypingEvent};
use natter_proto::close;
use natter_proto::error::ErrorCode;
use natter_proto::frame::{ClientFrame, PersonalEvent, ServerFrame, UserRef};
use natter_proto::{ClientMsgId, RoomId, subject};

use crate::frame::{self, OpCode};
use crate::limit::Bucket;
use crate::metrics;
use crate::outbox::CloseReason;
use crate::peer::{Control, Outbound, Peer};
use crate::room::encode;
use crate::socket::{Incoming, ReadEnd, Reader};
use crate::state::Gateway;

/// Rounds of held live frames a joining connection queues patiently after its replay (see `Session::join`).
const PATIENT_RELEASES: usize = 8;

/// Sends of one connection waiting for JetStream's stored-ack (and, with `--ack-after persisted`, for a
/// persister's confirmation) at once; at this many the session reads no more frames until one is answered.
const MAX_SENDS_IN_FLIGHT: usize = 32;

/// What a send refused for overload is told: nothing was stored.
const OVERLOADED: &str =
    "the gateway is overloaded and did not take this message; send it again with the same id in a moment";

/// A send waiting for its ack: its room, id, when its frame was read, and the outcome.
type InFlight = Pin<Box<dyn Future<Output = (RoomId, ClientMsgId, Instant, Result<u64, PublishError>)> + Send>>;

/// A connection's session.
pub struct Session {
    gw: Gateway,
    peer: Peer,
    /// Rooms joined on this connection.
    rooms: HashMap<RoomId, ()>,
    /// Sends waiting for their stored-ack (made on the first send: an idle connection holds none).
    in_flight: Option<Box<FuturesUnordered<InFlight>>>,
    sends: Bucket,
    typing: Bucket,
    /// Joins, and leaves of rooms the connection is not in.
    joins: Bucket,
    bad_frames: u32,
}

fn reason(code: u16, text: &str) -> CloseReason {
    CloseReason {
        code,
        reason: text.to_owned(),
    }
}

impl Session {
    /// A new session of `peer`'s (authenticated) user.
    pub fn new(gw: Gateway, peer: Peer) -> Self {
        Self {
            sends: Bucket::new(gw.config.sends_per_second),
            typing: Bucket::new(gw.config.typing_per_second),
            // A reconnecting client rejoins every room it had at once.
            joins: Bucket::with_burst(
                gw.config.joins_per_second,
                u32::try_from(gw.config.max_rooms_per_connection)
                    .unwrap_or(u32::MAX)
                    .max(gw.config.joins_per_second.saturating_mul(2)),
            ),
            gw,
            peer,
            rooms: HashMap::new(),
            in_flight: None,
            bad_frames: 0,
        }
    }

    /// Reads and handles messages until the connection ends; returns why, when this side decided it (`None`: the
    /// client went away).
    pub async fn run(&mut self, reader: &mut Reader) -> Option<CloseReason> {
        loop {
            // Sends are pipelined: the next frame is read while earlier sends wait for JetStream, so one slow
            // stored-ack does not hold up a client's later frames (or its pings).
            let waiting = self.in_flight.as_ref().map_or(0, |set| set.len());
            let next = tokio::select! {
                biased;
                (room, id, read_at, outcome) = stored(&mut self.in_flight) => {
                    self.answer_send(room, id, read_at, outcome);
                    continue;
                }
                controls = self.peer.controls() => {
                    for control in controls {
                        Box::pin(self.apply(control)).await;
                    }
                    continue;
                }
                next = reader.next(), if waiting < MAX_SENDS_IN_FLIGHT => next,
            };
            let incoming = match next {
                Ok(incoming) => incoming,
                Err(ReadEnd::Gone) => return None,
                Err(ReadEnd::Protocol(err)) => return Some(reason(err.close_code(), &err.to_string())),
            };
            self.peer.heard();
            match incoming {
                Incoming::Text(text) => {
                    if let Some(reason) = self.on_text(&text).await {
                        return Some(reason);
                    }
                }
                Incoming::Binary => {
                    if let Some(reason) =
                        self.bad_frame(ErrorCode::BinaryFrame, "frames must be JSON text".into(), None)
                    {
                        return Some(reason);
                    }
                }
                Incoming::Ping(data) => {
                    self.peer.push(Outbound::Frame(frame::encode(OpCode::Pong, &data)));
                }
                Incoming::Pong => {}
                // The client closes: answer with a normal close and end.
                Incoming::Close(_) => return Some(reason(close::NORMAL, "")),
            }
        }
    }

    /// Handles one complete text message.
    async fn on_text(&mut self, data: &str) -> Option<CloseReason> {
        let frame: ClientFrame = match serde_json::from_str(data) {
            Ok(frame) => frame,
            Err(err) => {
                let reference = serde_json::from_str::<serde_json::Value>(data)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned));
                return self.bad_frame(ErrorCode::BadFrame, format!("unreadable frame: {err}"), reference);
            }
        };
        let kind = match &frame {
            ClientFrame::Join { .. } => "join",
            ClientFrame::Leave { .. } => "leave",
            ClientFrame::Send { .. } => "send",
            ClientFrame::Edit { .. } => "edit",
            ClientFrame::Delete { .. } => "delete",
            ClientFrame::React { .. } => "react",
            ClientFrame::Typing { .. } => "typing",
            ClientFrame::Ping { .. } => "ping",
            ClientFrame::Refresh { .. } => "refresh",
        };
        metrics::frame_in(kind);
        match frame {
            // The work behind each frame is boxed: an idle connection's task then holds only the small reading
            // state, not room for the largest of these futures (the JWKS refetch alone is kilobytes).
            ClientFrame::Join { room, since } => return Box::pin(self.join(room, since)).await,
            ClientFrame::Leave { room } => {
                // A leave that takes the connection out of a room is never refused: it frees what a join took, and
                // joins have their budget. One that changes nothing spends from the same budget.
                if self.rooms.contains_key(&room) {
                    self.leave(room, None).await;
                } else if !self.joins.take() {
                    self.rate_limited("leave", "leaving rooms too fast; slow down");
                } else {
                    self.error(ErrorCode::NotJoined, format!("you are not in room '{room}'"), None);
                }
            }
            ClientFrame::Send {
                room,
                id,
                body,
                reply_to,
            } => Box::pin(self.send(room, id, body, reply_to)).await,
            ClientFrame::Edit { room, id, target, body } => {
                Box::pin(self.change(room, id, body, Change::Edit { target })).await;
            }
            ClientFrame::Delete { room, id, target } => {
                Box::pin(self.change(room, id, String::new(), Change::Delete { target })).await;
            }
            ClientFrame::React {
                room,
                id,
                target,
                emoji,
                on,
            } => Box::pin(self.change(room, id, String::new(), Change::React { target, emoji, on })).await,
            ClientFrame::Typing { room, text } => Box::pin(self.typing(room, text)).await,
            ClientFrame::Ping { id } => self.push(&ServerFrame::Pong { id }),
            ClientFrame::Refresh { token } => match Box::pin(self.gw.verify(&token)).await {
                Ok(claims) if claims.sub == self.peer.user.id && *claims.sid == *self.peer.sid => {
                    self.peer.set_expires(i64::try_from(claims.exp).unwrap_or(i64::MAX));
                }
                Ok(claims) if claims.sub == self.peer.user.id => self.error(
                    ErrorCode::TokenWrongSession,
                    "the new token is of another login; connect again with it".into(),
                    None,
                ),
                Ok(_) => self.error(
                    ErrorCode::TokenWrongUser,
                    "the new token is for another user".into(),
                    None,
                ),
                Err(err) => self.push(&ServerFrame::Error {
                    code: err.code().to_owned(),
                    message: err.to_string(),
                    reference: None,
                }),
            },
        }
        None
    }

    /// Takes the connection out of `room` and tells the client (with `reason` when it did not ask). Returns
    /// whether it was in the room.
    async fn leave(&mut self, room: RoomId, reason: Option<&'static str>) -> bool {
        if self.rooms.remove(&room).is_none() {
            return false;
        }
        // Wait until the room has dropped this member: nothing of the room may follow `left`.
        self.gw.hub.leave(&room, self.peer.conn).await;
        self.peer.outbox().forget(&room);
        if let Some(reason) = reason {
            ::metrics::counter!(metrics::EVICTIONS, "reason" => reason).increment(1);
        }
        self.push(&ServerFrame::Left {
            room,
            reason: reason.map(str::to_owned),
        });
        true
    }

    /// Does what the rest of the gateway asked of this connection.
    async fn apply(&mut self, control: Control) {
        match control {
            Control::Evict { room, reason } => {
                self.leave(room, Some(reason)).await;
            }
        }
    }

    /// Joins `room`; returns why to close the connection, if it should be.
    async fn join(&mut self, room: RoomId, since: Option<u64>) -> Option<CloseReason> {
        if !self.joins.take() {
            self.rate_limited("join", "joining rooms too fast; slow down");
            return None;
        }
        if self.rooms.contains_key(&room) {
            self.error(
                ErrorCode::AlreadyJoined,
                format!("you are already in room '{room}'"),
                None,
            );
            return None;
        }
        if self.rooms.len() >= self.gw.config.max_rooms_per_connection {
            self.error(
                ErrorCode::TooManyRooms,
                "leave a room before joining another".into(),
                None,
            );
            return None;
        }
        match self.gw.room_access(&room, &self.peer.user.id).await {
            // (Joins do not ask about reactions.)
            Ok(RoomAccess::Public | RoomAccess::Allowed | RoomAccess::Owner | RoomAccess::TooManyReactions) => {}
            Ok(RoomAccess::Denied) => {
                self.error(
                    ErrorCode::RoomPrivate,
                    format!("room '{room}' is private; join it through the API"),
                    None,
                );
                return None;
            }
            Ok(RoomAccess::Banned) => {
                self.error(ErrorCode::Banned, format!("you are banned from room '{room}'"), None);
                return None;
            }
            Ok(RoomAccess::Blocked) => {
                self.error(
                    ErrorCode::Blocked,
                    "one of you blocked the other: this conversation is closed until the block is lifted".into(),
                    None,
                );
                return None;
            }
            // Room ids are handed out by the API: a client asking for rooms that do not exist is guessing.
            Ok(RoomAccess::NotFound) => return self.fault(ErrorCode::RoomNotFound, format!("no room '{room}'"), None),
            Err(err) => {
                tracing::warn!(room = %room, error = %err, "room access check failed");
                self.error(
                    ErrorCode::Unavailable,
                    "cannot check access to the room right now; retry".into(),
                    None,
                );
                return None;
            }
        }
        self.enter(room, since).await;
        None
    }

    /// Adds the connection to `room`, which it may join, and queues its `joined` frame and replay.
    async fn enter(&mut self, room: RoomId, since: Option<u64>) {
        // Recorded before the await: if this connection ends mid-join, `leave_all` still takes it out of the room.
        self.rooms.insert(room.clone(), ());
        let Some(joined) = self.gw.hub.join(&room, self.peer.clone()).await else {
            self.rooms.remove(&room);
            let _ = self.gw.hub.leave(&room, self.peer.conn).await;
            return self.error(
                ErrorCode::Unavailable,
                "cannot join the room right now; retry".into(),
                None,
            );
        };
        ::metrics::counter!(metrics::JOINS).increment(1);
        // `since` is a position: one from an earlier epoch of the stream cannot be replayed from this one.
        let (recovered, replay) = match since.map(|since| (since, natter_stream::epoch::sequence(joined.epoch, since)))
        {
            None => (true, Vec::new()),
            Some((position, Some(since))) => {
                let (recovered, replay) = self.gw.replay(&room, joined.epoch, since, joined.last_seq).await;
                // The client holds the room up to `since`. This gateway's room can be a moment behind the gateway
                // the client left (each hears the stream on its own subscription): the messages it delivers
                // next, up to `since`, are ones the client has, and must not go out again.
                if recovered {
                    self.peer.outbox().holds_through(&room, position);
                }
                (recovered, replay)
            }
            Some((_, None)) => (false, Vec::new()),
        };
        if !recovered {
            ::metrics::counter!(metrics::JOINS_UNRECOVERED).increment(1);
        }
        let joined_frame = crate::room::joined_frame(
            &room,
            natter_stream::epoch::position(joined.epoch, joined.last_seq),
            recovered,
            &joined.members,
        );
        // A replay may be longer than the outbound queue: wait for room in it rather than count the client slow
        // (live frames meanwhile are held by the room, bounded).
        self.peer.send(Outbound::Frame(joined_frame)).await;
        ::metrics::counter!(metrics::REPLAYED).increment(replay.len() as u64);
        for (seq, frame) in replay {
            let out = Outbound::Message {
                room: room.clone(),
                seq,
                frame,
                received: Instant::now(),
            };
            if !self.peer.send(out).await {
                return;
            }
        }
        // Live frames held meanwhile go out the same patient way: a replay that filled the queue must not make
        // them overflow it. Once none are held, the member takes live frames as every member does. A client that
        // reads only about as fast as the room speaks would keep this going (and its other frames unread), so
        // after a few rounds the room queues the rest as fan-out does, counting the client slow if it overflows.
        for _ in 0..PATIENT_RELEASES {
            let held = self.gw.hub.release(&room, self.peer.conn, false).await;
            if held.is_empty() {
                return;
            }
            for out in held {
                if !self.peer.send(out).await {
                    return;
                }
            }
        }
        self.gw.hub.release(&room, self.peer.conn, true).await;
    }

    /// Refuses a send or a change that cannot be taken now: the room not joined, the sender over its budget, the
    /// gateway overloaded.
    fn admit(&mut self, room: &RoomId) -> Result<(), (ErrorCode, String)> {
        if !self.rooms.contains_key(room) {
            return Err((ErrorCode::NotJoined, format!("join room '{room}' before sending to it")));
        }
        if !self.sends.take() {
            ::metrics::counter!(metrics::RATE_LIMITED, "kind" => "send").increment(1);
            return Err((ErrorCode::RateLimited, "sending too fast; slow down".into()));
        }
        if self.gw.hub.load().overloaded() {
            ::metrics::counter!(metrics::SENDS_SHED).increment(1);
            metrics::send(metrics::SendOutcome::Overloaded);
            return Err((ErrorCode::Overloaded, OVERLOADED.into()));
        }
        Ok(())
    }

    /// The rules of a message's body (a send's, an edit's).
    fn check_body(&self, body: &str) -> Result<(), (ErrorCode, String)> {
        if body.trim().is_empty() || body.chars().count() > self.gw.config.max_body_chars {
            let max = self.gw.config.max_body_chars;
            return Err((
                ErrorCode::InvalidBody,
                format!("the body must hold 1 to {max} characters"),
            ));
        }
        // Refused here, before anything is acknowledged: history could not hold it.
        natter_proto::text::storable(body).map_err(|err| (ErrorCode::InvalidBody, err.to_string()))
    }

    async fn send(&mut self, room: RoomId, id: ClientMsgId, body: String, reply_to: Option<u64>) {
        let read_at = Instant::now();
        let checked = self.admit(&room).and_then(|()| self.check_body(&body));
        if let Err((code, message)) = checked {
            return self.error(code, message, Some(id.to_string()));
        }
        if let Some(target) = reply_to
            && let Err((code, message)) = Self::target(&self.gw, &room, target).await.map(drop)
        {
            return self.error(code, message, Some(id.to_string()));
        }
        let names = natter_proto::text::mentioned_names(&body);
        let mentions = if names.is_empty() {
            Vec::new()
        } else {
            let names = names.into_iter().map(|name| name.as_str().to_owned()).collect();
            self.gw.hub.access().mentioned(&room, names).await
        };
        let mut stored = StoredMessage::message(id, self.peer.user.clone(), body, reply_to);
        stored.mentions = mentions;
        self.accept(room, read_at, stored).await;
    }

    /// An edit, a deletion or a reaction: checked against the message it targets (in the stream, no database
    /// round trip), then stored on the room's chain like a message.
    async fn change(&mut self, room: RoomId, id: ClientMsgId, body: String, change: Change) {
        let read_at = Instant::now();
        let reference = Some(id.to_string());
        let mut checked = self.admit(&room);
        match &change {
            Change::Edit { .. } => checked = checked.and_then(|()| self.check_body(&body)),
            Change::React { emoji, .. } => {
                checked = checked.and_then(|()| {
                    natter_proto::text::single_emoji(emoji).map_err(|why| (ErrorCode::InvalidEmoji, why.to_owned()))
                });
            }
            Change::Delete { .. } => {}
        }
        if let Err((code, message)) = checked {
            return self.error(code, message, reference);
        }
        let target = match Self::target(&self.gw, &room, change.target()).await {
            Ok(target) => target,
            Err((code, message)) => return self.error(code, message, reference),
        };
        let me = &self.peer.user.id;
        // The two changes that cost a question to the auth API: a deletion by someone other than the author (do
        // they own or moderate the room?) and a reaction added (has the message room for another emoji?).
        let allowed = match &change {
            Change::Edit { .. } => Ok(target.user.id == *me),
            Change::Delete { .. } if target.user.id == *me => Ok(true),
            Change::Delete { .. } => self.gw.hub.access().moderates(&room, me).await,
            Change::React { emoji, on: true, .. } => {
                self.gw.hub.access().may_react(&room, me, change.target(), emoji).await
            }
            Change::React { on: false, .. } => Ok(true),
        };
        match allowed {
            Ok(true) => {}
            Ok(false) => {
                let (code, what) = match change {
                    Change::Edit { .. } => (ErrorCode::NotAuthor, "only its author may edit a message".to_owned()),
                    Change::Delete { .. } => (
                        ErrorCode::NotAuthor,
                        "only its author, the room's owner or a moderator may delete a message".to_owned(),
                    ),
                    Change::React { .. } => (
                        ErrorCode::TooManyReactions,
                        format!(
                            "the message has {} different reactions already; add one of them",
                            natter_proto::text::MAX_REACTION_EMOJI
                        ),
                    ),
                };
                return self.error(code, what, reference);
            }
            Err(err) => {
                // The gateway's failing, not the sender's: counted against send availability.
                metrics::send(metrics::SendOutcome::Failed);
                tracing::warn!(room = %room, error = %err, "a question to the auth API about a change failed");
                return self.error(
                    ErrorCode::Unavailable,
                    "cannot check the change right now; retry".into(),
                    reference,
                );
            }
        }
        let stored = StoredMessage::change(id, self.peer.user.clone(), body, change);
        self.accept(room, read_at, stored).await;
    }

    /// The message of `room` at position `target`, which a reply, an edit, a deletion or a reaction names.
    async fn target(gw: &Gateway, room: &RoomId, target: u64) -> Result<StoredMessage, (ErrorCode, String)> {
        let epoch = gw.hub.epoch().get();
        let not_found = || (ErrorCode::NotFound, format!("no message {target} in room '{room}'"));
        // A position of an earlier stream epoch: the stream no longer holds it.
        let Some(seq) = natter_stream::epoch::sequence(epoch, target) else {
            return Err(not_found());
        };
        match natter_stream::journal::lookup(gw.hub.stream(), room, seq).await {
            Ok(Lookup::Found(stored)) if stored.change.is_none() => Ok(stored),
            Ok(Lookup::Found(_) | Lookup::Absent) => Err(not_found()),
            Ok(Lookup::Erased) => Err((ErrorCode::AlreadyDeleted, format!("message {target} was deleted"))),
            Err(err) => {
                // The gateway's failing, not the sender's: counted against send availability.
                metrics::send(metrics::SendOutcome::Failed);
                tracing::warn!(room = %room, target, error = %err, "reading a message from the stream failed");
                Err((
                    ErrorCode::Unavailable,
                    "cannot read the message right now; retry".into(),
                ))
            }
        }
    }

    /// Publishes an accepted message or change; its ack (or why there is none) follows when JetStream stored it.
    async fn accept(&mut self, room: RoomId, read_at: Instant, stored: StoredMessage) {
        let id = stored.id.clone();
        // Taken before the publish: a send refused here is not stored.
        let place = match &self.gw.persisted {
            None => None,
            Some(persisted) => match persisted.reserve() {
                Some(place) => Some(place),
                None => {
                    metrics::send(metrics::SendOutcome::Overloaded);
                    return self.error(ErrorCode::Overloaded, OVERLOADED.into(), Some(id.to_string()));
                }
            },
        };
        // Those it mentions are told once it is stored, on their personal subjects (not the author, who knows).
        let tell = (!stored.mentions.is_empty()).then(|| {
            let mentioned: Vec<String> = stored
                .mentions
                .iter()
                .filter(|user| user.id != self.peer.user.id)
                .map(|user| user.id.clone())
                .collect();
            (self.gw.hub.nats().clone(), self.peer.user.clone(), mentioned)
        });
        match self.gw.publish(&room, &self.peer.user.id, &stored, place).await {
            Ok(ack) => {
                let waiting: InFlight = Box::pin(async move {
                    let outcome = ack.await;
                    if let (Ok(seq), Some((nats, by, mentioned))) = (&outcome, tell) {
                        tell_mentioned(&nats, &room, *seq, by, &mentioned).await;
                    }
                    (room, id, read_at, outcome)
                });
                self.in_flight.get_or_insert_default().push(waiting);
            }
            Err(reason) => self.answer_send(room, id, read_at, Err(reason)),
        }
    }

    /// Tells the client how its send ended: acked with its sequence, or not confirmed.
    fn answer_send(&mut self, room: RoomId, id: ClientMsgId, read_at: Instant, outcome: Result<u64, PublishError>) {
        match outcome {
            Ok(seq) => {
                metrics::hot().ack_latency.record(read_at.elapsed().as_secs_f64());
                metrics::send(metrics::SendOutcome::Acked);
                self.push(&ServerFrame::Ack { room, id, seq });
            }
            Err(reason) => {
                metrics::send(metrics::SendOutcome::Failed);
                ::metrics::counter!(metrics::PUBLISH_FAILURES, "reason" => reason.reason()).increment(1);
                warn_publish_failed(&room, reason.reason());
                // The client library keeps what it could not send and sends it after a reconnect, so the message
                // may be stored (and delivered) after all: only a resend with the same id settles it.
                self.error(
                    ErrorCode::PublishFailed,
                    "the message's outcome is unknown (it may have been stored); send it again with the same id, \
                     which stores it at most once"
                        .into(),
                    Some(id.to_string()),
                );
            }
        }
        if self.in_flight.as_ref().is_some_and(|set| set.is_empty()) {
            self.in_flight = None;
        }
    }

    async fn typing(&mut self, room: RoomId, text: String) {
        if !self.rooms.contains_key(&room) {
            return self.error(ErrorCode::NotJoined, format!("join room '{room}' first"), None);
        }
        if !self.typing.take() {
            ::metrics::counter!(metrics::RATE_LIMITED, "kind" => "typing").increment(1);
            return;
        }
        if text.chars().count() > self.gw.config.max_body_chars {
            return self.error(
                ErrorCode::InvalidBody,
                "the draft is longer than a message may be".into(),
                None,
            );
        }
        if let Err(err) = natter_proto::text::storable(&text) {
            return self.error(ErrorCode::InvalidBody, err.to_string(), None);
        }
        let event = TypingEvent {
            user: self.peer.user.clone(),
            text,
        };
        if let Ok(payload) = serde_json::to_vec(&event) {
            let _ = self
                .gw
                .hub
                .nats()
                .publish(subject::room_typing(&room), payload.into())
                .await;
        }
    }

    fn push(&self, frame: &ServerFrame) {
        self.peer.push(Outbound::Frame(encode(frame)));
    }

    /// Answers a join or leave over the budget (neither frame has an id to refer to).
    fn rate_limited(&self, kind: &'static str, message: &str) {
        ::metrics::counter!(metrics::RATE_LIMITED, "kind" => kind).increment(1);
        self.error(ErrorCode::RateLimited, message.to_owned(), None);
    }

    fn error(&self, code: ErrorCode, message: String, reference: Option<String>) {
        self.push(&ServerFrame::Error {
            code: code.as_str().to_owned(),
            message,
            reference,
        });
    }

    /// Answers a frame that could not be read; closes the connection once it has sent too many bad ones.
    fn bad_frame(&mut self, code: ErrorCode, message: String, reference: Option<String>) -> Option<CloseReason> {
        metrics::frame_in("invalid");
        self.fault(code, message, reference)
    }

    /// Answers a bad frame (unreadable, or asking for what no well-behaved client asks for); closes the connection
    /// once it has sent more than `--max-bad-frames`.
    fn fault(&mut self, code: ErrorCode, message: String, reference: Option<String>) -> Option<CloseReason> {
        ::metrics::counter!(metrics::BAD_FRAMES, "code" => code.as_str()).increment(1);
        self.bad_frames += 1;
        self.error(code, message, reference);
        (self.bad_frames > self.gw.config.max_bad_frames).then(|| reason(close::POLICY, "too many invalid frames"))
    }

    /// Takes the connection out of every room it is in (it ended).
    pub fn leave_all(&mut self) {
        for (room, ()) in self.rooms.drain() {
            // No need to wait: this connection will receive nothing more.
            drop(self.gw.hub.leave(&room, self.peer.conn));
        }
    }
}

/// Logs an unconfirmed publish at WARN: the first of each second, with how many were left unlogged before it, so
/// an outage is visible in the log without one line per send.
fn warn_publish_failed(room: &RoomId, reason: &'static str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LOGGED_AT: AtomicU64 = AtomicU64::new(0);
    static UNLOGGED: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(crate::peer::unix_now()).unwrap_or(0);
    let last = LOGGED_AT.load(Ordering::Relaxed);
    if now > last
        && LOGGED_AT
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let unlogged = UNLOGGED.swap(0, Ordering::Relaxed);
        tracing::warn!(%room, reason, unlogged, "a send was not confirmed; its outcome is unknown");
    } else {
        UNLOGGED.fetch_add(1, Ordering::Relaxed);
    }
}

/// The next send whose outcome is known; never resolves while none is waiting.
async fn stored(
    in_flight: &mut Option<Box<FuturesUnordered<InFlight>>>,
) -> (RoomId, ClientMsgId, Instant, Result<u64, PublishError>) {
    if let Some(set) = in_flight
        && let Some(outcome) = set.next().await
    {
        return outcome;
    }
    std::future::pending().await
}

/// Tells each of `users` (ids, safe subject tokens: the auth API named them) that a message of `by`'s at `seq` in
/// `room` mentions them, on their personal subjects. Core NATS, like every personal event: a user with no
/// connection at the moment reads their mentions from the API.
async fn tell_mentioned(nats: &async_nats::Client, room: &RoomId, seq: u64, by: UserRef, users: &[String]) {
    let event = PersonalEvent::Mentioned {
        room: room.clone(),
        seq,
        by,
    };
    let Ok(payload) = serde_json::to_vec(&event) else {
        return;
    };
    let payload = bytes::Bytes::from(payload);
    for user in users {
        if let Err(err) = nats.publish(subject::user_events(user), payload.clone()).await {
            tracing::debug!(%user, error = %err, "cannot tell a user they were mentioned");
        }
    }
}
