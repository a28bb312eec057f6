//! One room's task: it owns the room's members, order and fan-out, shared by every local member.
//!
//! A room task subscribes to the room's live subject (JetStream's republish of stored messages, in stream order,
//! with `Nats-Sequence` and `Nats-Last-Sequence`) and to the room's ephemeral subjects (typing, presence). It
//! encodes each message frame once and queues the same bytes to every local member. It keeps the room's last
//! delivered sequence: a live message whose predecessor is not the last one delivered reveals a gap, which it
//! fills from the stream before going on, so members always see the room in order with no hole. Presence and
//! drafts are in [`presence`].
//!
//! A room task also asks the auth API again, every `--access-recheck-interval` (each room at its own moment within
//! it), whether its local users may still be in the room, and takes out those who may not: a removal whose room
//! event never reached this gateway (the auth API could not publish it, or NATS dropped it for a subscription
//! that fell behind) still takes effect within the interval. A public room costs one question a round, a
//! private one a question per local user, and at most [`RECHECKS_AT_ONCE`] are in flight across the gateway.

mod announce;
mod drafts;
mod presence;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use natter_proto::bus::{RoomAccess, StoredMessage};
use natter_proto::frame::{ServerFrame, UserRef, left_reason};
use natter_proto::{RoomId, subject};
use natter_stream::journal::{self, header_u64};
use tokio::sync::{mpsc, oneshot};

use crate::access::AccessChecks;
use crate::epoch::Epoch;
use crate::load::{self, Load};
use crate::metrics;
use crate::peer::{ConnId, Control, Outbound, Peer};

/// How long a room task goes on asking the stream for the messages of a gap before it leaves the gap to the
/// receivers (see `fill_gap`). A healed NATS cluster can answer "JetStream system temporarily unavailable" for
/// half a minute (docs/faults.md, C2); meanwhile no send is acked either, so the room waiting delays nothing new.
const GAP_FILL_PATIENCE: Duration = Duration::from_secs(45);

/// How long a room waits before asking the stream again for its last message to catch up on.
const CATCH_UP_RETRY: Duration = Duration::from_secs(2);

/// How many times a room asks again (every [`CATCH_UP_RETRY`]) to catch up while the stream cannot be read.
pub(crate) const CATCH_UP_TRIES: u32 = 30;

/// How long a room task waits for other gateways' presence snapshots when it starts.
const PRESENCE_SYNC_WINDOW: Duration = Duration::from_millis(150);

/// A draft not updated for this long is cleared.
const TYPING_EXPIRY: Duration = Duration::from_secs(6);

/// Live frames held for one member while its replay runs, before it counts as too slow.
const MAX_HELD: usize = 4096;

/// Most live messages delivered together in one batch.
const MAX_BATCH: usize = 64;

/// Access re-check questions in flight at once across a gateway's rooms, so that rounds falling due together (or
/// all at once, after missed events) do not flood the auth API.
pub(crate) const RECHECKS_AT_ONCE: usize = 8;

/// After a re-check round that got no answer about some user, the next one comes this soon, doubling with each
/// such round (up to the interval): NATS or the auth API may be just coming back.
const RECHECK_RETRY: Duration = Duration::from_millis(500);

/// What a joining connection learns.
#[derive(Debug)]
pub struct Joined {
    /// The stream epoch the room is in.
    pub epoch: u64,
    /// The room's last delivered stream sequence when the member was registered; live frames after it follow.
    pub last_seq: u64,
    /// Who is online in the room, fleet-wide: the `joined` frame's `members`, as JSON (see [`joined_frame`]).
    pub members: String,
}

pub(crate) enum RoomCmd {
    /// Register a member; its live frames are held until [`RoomCmd::Release`].
    Join { peer: Peer, reply: oneshot::Sender<Joined> },
    /// The member's `joined` frame and replay are queued: hand back the frames held for it since the last
    /// release, or, when there are none, let live frames flow to it directly from now on. With `last`, the room
    /// queues what is held itself (a full queue then counts the member slow) and releases it at once.
    Release {
        conn: ConnId,
        last: bool,
        held: oneshot::Sender<Vec<Outbound>>,
    },
    /// Remove a member; the reply says it is done.
    Leave { conn: ConnId, done: oneshot::Sender<()> },
    /// A gateway stopped heartbeating: its users are gone.
    GatewayGone { gateway: String },
    /// Ask the fleet again who is online in the room and take its answers as the truth (events may have been
    /// missed: NATS was away, or a gateway was wrongly taken for dead). `me` is the room's own command channel,
    /// for the answers.
    Resync { me: mpsc::WeakUnboundedSender<RoomCmd> },
    /// Ask the auth API again now whether each local user may still be in the room (room events may have been
    /// dropped); at once after the round under way, if one is.
    Recheck,
    /// Live messages may have been missed (NATS reconnected, or dropped messages of a subscription that fell
    /// behind): deliver what the stream holds past the last one delivered. A missed message is found by the next
    /// live one's `prev` too, but a room's last message has no next. Asked again through `me` (up to `tries`
    /// more times, every [`CATCH_UP_RETRY`]) while the stream cannot be read.
    CatchUp {
        me: mpsc::WeakUnboundedSender<RoomCmd>,
        tries: u32,
    },
    /// A gateway's answer to this room's resync.
    Snapshot(natter_proto::bus::PresenceSnapshot),
    /// The resync's answers are all in: gateways that did not answer have no users in the room.
    ResyncDone,
}

/// What every room task of a gateway shares.
pub(crate) struct RoomShared {
    /// This gateway's id.
    pub(crate) gateway: String,
    /// The NATS client.
    pub(crate) nats: async_nats::Client,
    /// The chat stream.
    pub(crate) stream: jetstream::stream::Stream,
    /// The chat stream's epoch.
    pub(crate) epoch: Arc<Epoch>,
    /// The delivery lag meter, told how late each delivered batch is.
    pub(crate) load: Arc<Load>,
    /// The room-access checks, asked again about each room's users every `recheck_every`.
    pub(crate) access: AccessChecks,
    /// How often each room asks again about its users' access.
    pub(crate) recheck_every: Duration,
    /// Places for re-check questions in flight ([`RECHECKS_AT_ONCE`]); never closed.
    pub(crate) rechecks: tokio::sync::Semaphore,
}

struct Member {
    peer: Peer,
    /// Frames held while the member's replay is being queued; `None` once released.
    held: Option<Vec<Outbound>>,
    /// Where in the room's unannounced presence changes this member's knowledge ends: its `joined` frame already
    /// reflected the ones before.
    presence_from: usize,
}

impl Member {
    /// Queues a frame to the member, held while its replay is queued; a member whose queue is full is too slow.
    fn queue(&mut self, out: Outbound) {
        match &mut self.held {
            Some(held) if held.len() < MAX_HELD => held.push(out),
            Some(_) => self.peer.slow(),
            None => {
                self.peer.push(out);
            }
        }
    }
}

pub(crate) struct RoomTask {
    room: RoomId,
    shared: Arc<RoomShared>,
    /// The stream epoch of `last_seq`; every frame's `seq` is a position in it (natter-stream's `epoch`).
    epoch: u64,
    /// The last stream sequence delivered to members (0: none yet).
    last_seq: u64,
    /// Whether `last_seq` is known to be the room's true position (read from the stream at start); until it is,
    /// gaps cannot be told.
    baseline_known: bool,
    members: HashMap<ConnId, Member>,
    /// Local users online in the room, with how many local connections each has.
    local: HashMap<String, (UserRef, usize)>,
    /// Users online in the room on other gateways.
    remote: HashMap<String, HashMap<String, UserRef>>,
    /// While a presence resync collects answers: the gateways that answered so far.
    resyncing: Option<std::collections::HashSet<String>>,
    /// Users with a live draft: who, the draft, and when it was last updated.
    typing: HashMap<String, (UserRef, String, Instant)>,
    /// Which local users are members, who see the drafts (see [`drafts`]).
    drafts: drafts::DraftReaders,
    /// Message frames of the batch being delivered, with their positions, in order (see [`RoomTask::flush`]).
    outgoing: Vec<(u64, Bytes)>,
    /// When the oldest message of that batch was accepted (Unix milliseconds).
    batch_accepted_ms: Option<i64>,
    /// Presence changes members have not been told yet (see [`announce`]).
    told: announce::Changes,
    /// This gateway's users' changes the fleet has not been told yet.
    fleet: announce::Changes,
    /// When the next announcement is due.
    schedule: announce::Schedule,
    /// When the room next asks again about its users' access (see [`recheck`]).
    recheck_at: Instant,
    /// The re-check round under way, if any (a task of its own, aborted with the room's).
    rechecking: Option<tokio::task::JoinHandle<Recheck>>,
    /// A re-check was asked for while a round was under way: the next starts as soon as it ends.
    recheck_again: bool,
    /// Re-check rounds in a row that got no answer about some user.
    unanswered_rounds: u32,
}

impl RoomTask {
    pub(crate) fn new(room: RoomId, shared: Arc<RoomShared>) -> Self {
        // Each room at its own moment of the interval: rooms started together do not all ask at once.
        let phase = shared.recheck_every.mul_f64(rand::random::<f64>());
        Self {
            recheck_at: Instant::now() + phase,
            rechecking: None,
            recheck_again: false,
            unanswered_rounds: 0,
            room,
            epoch: shared.epoch.get(),
            shared,
            last_seq: 0,
            baseline_known: false,
            members: HashMap::new(),
            local: HashMap::new(),
            remote: HashMap::new(),
            resyncing: None,
            typing: HashMap::new(),
            drafts: drafts::DraftReaders::default(),
            outgoing: Vec::new(),
            batch_accepted_ms: None,
            told: announce::Changes::default(),
            fleet: announce::Changes::default(),
            schedule: announce::Schedule::default(),
        }
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<RoomCmd>) {
        let nats = self.shared.nats.clone();
        let subscribed = async {
            let live = nats.subscribe(subject::room_live(&self.room)).await?;
            let ephemeral = nats.subscribe(subject::room_ephemeral(&self.room)).await?;
            Ok::<_, async_nats::SubscribeError>((live, ephemeral))
        };
        let (mut live, mut ephemeral) = match subscribed.await {
            Ok(subs) => subs,
            Err(err) => {
                tracing::error!(room = %self.room, error = %err, "cannot subscribe to the room; closing its members");
                while let Some(cmd) = commands.recv().await {
                    if let RoomCmd::Join { peer, .. } = cmd {
                        peer.close(natter_proto::close::UNAVAILABLE, "messaging is unavailable");
                    }
                }
                return;
            }
        };
        // Subscribed first, then read the room's last sequence: anything stored after it arrives live.
        let mut epochs = self.shared.epoch.subscribe();
        self.epoch = *epochs.borrow_and_update();
        self.read_baseline().await;
        self.sync_presence().await;

        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => break,
                },
                Some(msg) = live.next() => {
                    // Take every message already here, then deliver them together: one write per member for the
                    // whole batch under load, one per message when the room is quiet.
                    let received = Instant::now();
                    self.on_live(msg).await;
                    for _ in 1..MAX_BATCH {
                        match live.next().now_or_never() {
                            Some(Some(msg)) => self.on_live(msg).await,
                            _ => break,
                        }
                    }
                    self.flush(received);
                }
                Some(msg) = ephemeral.next() => self.on_ephemeral(msg).await,
                Ok(()) = epochs.changed() => {
                    let epoch = *epochs.borrow_and_update();
                    self.on_new_epoch(epoch).await;
                }
                () = until(self.schedule.due()) => self.announce().await,
                () = until(self.rechecking.is_none().then_some(self.recheck_at)) => self.start_recheck(),
                round = rechecked(&mut self.rechecking) => self.end_recheck(round),
                _ = tick.tick() => self.expire_typing(),
                (asked, answer) = drafts::answered(&mut self.drafts) => self.on_draft_readers(asked, answer),
            }
        }
        if let Some(round) = self.rechecking.take() {
            round.abort();
        }
        // Last local member gone: tell the fleet what it was not told yet, and that this gateway's users left.
        self.publish_fleet_changes().await;
        let left: Vec<UserRef> = self.local.drain().map(|(_, (user, _))| user).collect();
        self.publish_presence(Vec::new(), left).await;
    }

    /// Reads where the room is in the stream: until then, gaps cannot be told.
    async fn read_baseline(&mut self) {
        if let Some(last) = self.last_stored_seq().await {
            self.last_seq = last;
            self.baseline_known = true;
        }
    }

    /// The chat stream was recreated: what members hold is of the old epoch, so each is closed to rejoin (a
    /// `since` of the old epoch then gets `recovered: false`), and the room starts over where the new stream is.
    async fn on_new_epoch(&mut self, epoch: u64) {
        if epoch == self.epoch {
            return;
        }
        self.flush(Instant::now());
        for member in self.members.values() {
            member
                .peer
                .close(natter_proto::close::RESTART, "the chat stream was recreated; rejoin");
        }
        self.epoch = epoch;
        self.last_seq = 0;
        self.baseline_known = false;
        self.read_baseline().await;
    }

    /// The room's last stored sequence (0 for a room with none), retried briefly; `None` if the stream cannot be
    /// read, in which case gaps go undetected until the room task restarts.
    async fn last_stored_seq(&self) -> Option<u64> {
        let subject = subject::room_messages(&self.room);
        for attempt in 0..3u32 {
            match self.shared.stream.direct_get_last_for_subject(&subject).await {
                Ok(msg) => return Some(msg.sequence),
                Err(err) if matches!(err.kind(), jetstream::stream::DirectGetErrorKind::NotFound) => return Some(0),
                Err(err) => {
                    tracing::warn!(room = %self.room, error = %err, attempt, "cannot read the room's last sequence");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        None
    }

    async fn handle(&mut self, cmd: RoomCmd) {
        match cmd {
            RoomCmd::Join { peer, reply } => {
                let user = peer.user.clone();
                let conn = peer.conn;
                self.members.insert(
                    conn,
                    Member {
                        peer,
                        held: Some(Vec::new()),
                        presence_from: self.told.len(),
                    },
                );
                let entry = self.local.entry(user.id.clone()).or_insert_with(|| (user.clone(), 0));
                entry.1 += 1;
                if entry.1 == 1 {
                    self.user_appeared(&user);
                    self.tell_fleet(&user, true);
                }
                let _ = reply.send(Joined {
                    epoch: self.epoch,
                    last_seq: self.last_seq,
                    members: self.online_json(),
                });
            }
            RoomCmd::Release { conn, last, held } => {
                let Some(member) = self.members.get_mut(&conn) else {
                    let _ = held.send(Vec::new());
                    return;
                };
                let frames = match &mut member.held {
                    Some(frames) if !frames.is_empty() && !last => std::mem::take(frames),
                    still_held => {
                        for frame in still_held.take().unwrap_or_default() {
                            if !member.peer.push(frame) {
                                break;
                            }
                        }
                        Vec::new()
                    }
                };
                let _ = held.send(frames);
            }
            RoomCmd::Leave { conn, done } => {
                let removed = self.members.remove(&conn);
                let _ = done.send(());
                let Some(member) = removed else {
                    return;
                };
                let user = member.peer.user.clone();
                if let Some(entry) = self.local.get_mut(&user.id) {
                    entry.1 -= 1;
                    if entry.1 == 0 {
                        self.local.remove(&user.id);
                        self.user_disappeared(&user);
                        self.tell_fleet(&user, false);
                    }
                }
            }
            RoomCmd::Resync { me } => self.resync_presence(me).await,
            RoomCmd::Recheck => {
                if self.rechecking.is_some() {
                    self.recheck_again = true;
                } else {
                    self.recheck_at = Instant::now();
                }
            }
            RoomCmd::CatchUp { me, tries } => self.catch_up(me, tries).await,
            RoomCmd::Snapshot(snapshot) => self.apply_snapshot(snapshot),
            RoomCmd::ResyncDone => self.finish_resync(),
            RoomCmd::GatewayGone { gateway } => {
                if let Some(users) = self.remote.remove(&gateway) {
                    for user in users.into_values() {
                        self.user_disappeared(&user);
                    }
                }
            }
        }
    }

    async fn on_live(&mut self, msg: async_nats::Message) {
        let (Some(seq), Some(prev)) = (
            header_u64(msg.headers.as_ref(), async_nats::header::NATS_SEQUENCE),
            header_u64(msg.headers.as_ref(), async_nats::header::NATS_LAST_SEQUENCE),
        ) else {
            tracing::warn!(room = %self.room, "live message without sequence headers; dropped");
            return;
        };
        if seq <= self.last_seq {
            // Already delivered (a gap fill got there first), or the first messages of a recreated stream: the
            // epoch is checked soon, and the room starts over once it is known.
            if prev < self.last_seq && seq < self.last_seq {
                self.shared.epoch.hint();
            }
            return;
        }
        if prev > self.last_seq && self.baseline_known {
            self.fill_gap(prev, seq).await;
        }
        let prev = if self.baseline_known || self.last_seq > 0 {
            self.last_seq.max(prev)
        } else {
            prev
        };
        self.deliver(seq, prev, &msg.payload);
    }

    /// Delivers what the stream holds past the last message delivered (see [`RoomCmd::CatchUp`]).
    async fn catch_up(&mut self, me: mpsc::WeakUnboundedSender<RoomCmd>, tries: u32) {
        if !self.baseline_known {
            return;
        }
        match self.last_stored_seq().await {
            Some(last) if last > self.last_seq => {
                self.fill_gap(last, last + 1).await;
                self.flush(Instant::now());
            }
            Some(_) => {}
            None if tries > 0 => {
                tokio::spawn(async move {
                    tokio::time::sleep(CATCH_UP_RETRY).await;
                    if let Some(me) = me.upgrade() {
                        let _ = me.send(RoomCmd::CatchUp {
                            me: me.downgrade(),
                            tries: tries - 1,
                        });
                    }
                });
            }
            None => tracing::warn!(room = %self.room, "cannot read the room's last message to catch up on it"),
        }
    }

    /// Fetches and delivers the room's stored messages between the last delivered one and `until`, the live
    /// message whose predecessor `prev` revealed the gap: done once `prev` is delivered.
    ///
    /// Each read asks a replica and, when it has nothing, the stream's leader ([`journal::next_event`]): "not
    /// found" from the leader before `prev` is reached is not the end either, since `prev` is known to be stored
    /// (the leader may have changed meanwhile); nor are errors of a cluster electing a leader. Both are asked again,
    /// with a backoff, for up to [`GAP_FILL_PATIENCE`]; only then is the gap left for the receivers to see through
    /// the next message's `prev` (and counted and logged). A gap whose last messages were erased (deleted) ends where
    /// the stream has nothing more before `until`.
    async fn fill_gap(&mut self, prev: u64, until: u64) {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        while self.last_seq < prev {
            let next = journal::next_event(&self.shared.stream, &self.room, self.last_seq + 1).await;
            let why = match next {
                Ok(Some(msg)) if msg.sequence < until => {
                    ::metrics::counter!(metrics::GAP_FILLS).increment(1);
                    let prev = self.last_seq;
                    self.deliver(msg.sequence, prev, &msg.payload);
                    backoff = Duration::from_millis(50);
                    continue;
                }
                // Nothing is left before the live message: the rest of the gap was erased (deleted messages; a
                // replica that holds a later message holds everything before it). Asking again would not change it.
                Ok(Some(_)) => return,
                Ok(None) => "message not found".to_owned(),
                Err(err) => err,
            };
            if started.elapsed() >= GAP_FILL_PATIENCE {
                ::metrics::counter!(metrics::GAP_FILL_FAILURES).increment(1);
                tracing::warn!(
                    room = %self.room,
                    from = self.last_seq,
                    to = prev,
                    error = why,
                    "a gap in the room could not be filled from the stream; receivers see it through prev"
                );
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Adds a stored message to the batch being delivered.
    fn deliver(&mut self, seq: u64, prev: u64, payload: &[u8]) {
        self.last_seq = seq;
        let stored: StoredMessage = match serde_json::from_slice(payload) {
            Ok(stored) => stored,
            Err(err) => {
                tracing::warn!(room = %self.room, seq, error = %err, "undecodable stored message; skipped");
                return;
            }
        };
        // The author stopped typing: the message is what they typed (a change to an earlier message is not).
        if stored.change.is_none() && self.typing.remove(&stored.user.id).is_some() {
            let clear = ServerFrame::Typing {
                room: self.room.clone(),
                user: stored.user.clone(),
                text: String::new(),
            };
            self.broadcast_draft(&clear, &stored.user.id);
        }
        if self.outgoing.is_empty() {
            self.batch_accepted_ms = load::unix_ms(&stored.ts);
        }
        let frame = message_frame(&self.room, self.epoch, seq, prev, stored);
        self.outgoing
            .push((natter_stream::epoch::position(self.epoch, seq), frame));
    }

    /// Delivers the batch of message frames gathered since the last flush to every member, in order.
    fn flush(&mut self, received: Instant) {
        if self.outgoing.is_empty() {
            return;
        }
        let mut delivered = 0u64;
        for member in self.members.values_mut() {
            match &mut member.held {
                Some(held) if held.len() + self.outgoing.len() <= MAX_HELD => {
                    held.extend(self.outgoing.iter().map(|(seq, frame)| Outbound::Message {
                        room: self.room.clone(),
                        seq: *seq,
                        frame: frame.clone(),
                        received,
                    }));
                }
                Some(_) => member.peer.slow(),
                None => {
                    if member.peer.outbox().push_messages(&self.room, &self.outgoing, received) {
                        delivered += self.outgoing.len() as u64;
                    }
                }
            }
        }
        metrics::hot().messages_out.increment(delivered);
        self.outgoing.clear();
        if let Some(accepted) = self.batch_accepted_ms.take() {
            self.shared.load.delivered(accepted);
        }
        if self.outgoing.capacity() > 4 * MAX_BATCH {
            self.outgoing = Vec::new();
        }
    }
}

/// What a re-check round found.
#[derive(Default)]
struct Recheck {
    /// Who may no longer be in the room (`None`: nobody, it is gone), and the `left` reason to tell them.
    lost: Vec<(Option<String>, &'static str)>,
    /// Whether some user got no answer (asked again sooner).
    unanswered: bool,
}

impl RoomTask {
    /// Starts a round of re-checks about the users with a connection in the room.
    fn start_recheck(&mut self) {
        self.recheck_again = false;
        let users: Vec<String> = self.local.keys().cloned().collect();
        self.rechecking = Some(tokio::spawn(recheck(self.shared.clone(), self.room.clone(), users)));
    }

    /// Takes out the connections of those who may no longer be in the room, and sets when the next round is due.
    fn end_recheck(&mut self, round: Recheck) {
        self.rechecking = None;
        for (user, reason) in round.lost {
            for member in self.members.values() {
                if user.as_ref().is_none_or(|user| *user == member.peer.user.id) {
                    member.peer.control(Control::Evict {
                        room: self.room.clone(),
                        reason,
                    });
                }
            }
        }
        let every = self.shared.recheck_every;
        let wait = if round.unanswered {
            if self.unanswered_rounds == 0 {
                tracing::warn!(room = %self.room, "cannot re-check room access yet; retrying");
            }
            self.unanswered_rounds += 1;
            RECHECK_RETRY
                .saturating_mul(2u32.pow(self.unanswered_rounds.min(6) - 1))
                .min(every)
        } else {
            self.unanswered_rounds = 0;
            every
        };
        self.recheck_at = Instant::now() + if self.recheck_again { Duration::ZERO } else { wait };
    }
}

/// Asks the auth API whether each of `users` may still be in `room`, one question at a time (and at most
/// [`RECHECKS_AT_ONCE`] across the gateway). A public room answers for everyone with its first question.
async fn recheck(shared: Arc<RoomShared>, room: RoomId, users: Vec<String>) -> Recheck {
    let mut round = Recheck::default();
    for user in users {
        let answer = {
            // The semaphore is never closed; were it, there would be nothing to wait for.
            let Ok(_place) = shared.rechecks.acquire().await else {
                break;
            };
            shared.access.recheck(&room, &user).await
        };
        match answer {
            Ok(RoomAccess::Public) => break,
            // An owner answer is given only when asked for; it lets the user in as a member's does.
            Ok(RoomAccess::Allowed | RoomAccess::Owner | RoomAccess::TooManyReactions) => {}
            Ok(RoomAccess::Denied) => round.lost.push((Some(user), left_reason::ACCESS_REVOKED)),
            Ok(RoomAccess::Banned) => round.lost.push((Some(user), left_reason::BANNED)),
            Ok(RoomAccess::Blocked) => round.lost.push((Some(user), left_reason::BLOCKED)),
            Ok(RoomAccess::NotFound) => {
                round.lost.push((None, left_reason::ROOM_DELETED));
                break;
            }
            Err(err) => {
                tracing::debug!(%room, %user, error = %err, "no answer to a room-access re-check");
                round.unanswered = true;
            }
        }
    }
    round
}

/// The outcome of the re-check round under way; never completes while none is.
async fn rechecked(round: &mut Option<tokio::task::JoinHandle<Recheck>>) -> Recheck {
    match round {
        // A round that panicked found nothing out: it is retried soon.
        Some(round) => round.await.unwrap_or(Recheck {
            lost: Vec::new(),
            unanswered: true,
        }),
        None => std::future::pending().await,
    }
}

/// Completes at `due`, or never when nothing is due.
async fn until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Encodes a server frame as a whole WebSocket text frame, once, for every connection it goes to.
pub fn encode(frame: &ServerFrame) -> Bytes {
    crate::frame::text_json(frame)
}

/// The `joined` frame ([`ServerFrame::Joined`]) with its members already serialized by the room (`members` is a
/// JSON array): the same bytes as serializing the frame, without parsing the array back.
pub fn joined_frame(room: &RoomId, seq: u64, recovered: bool, members: &str) -> Bytes {
    // A room id is a plain string; serializing it cannot fail.
    let room = serde_json::to_string(room).unwrap_or_default();
    let text = format!(r#"{{"type":"joined","room":{room},"seq":{seq},"recovered":{recovered},"members":{members}}}"#);
    crate::frame::encode(crate::frame::OpCode::Text, text.as_bytes())
}

/// The `message` frame for a message stored at `seq` in the stream of epoch `epoch`, after the room's `prev`:
/// both as positions.
pub fn message_frame(room: &RoomId, epoch: u64, seq: u64, prev: u64, stored: StoredMessage) -> Bytes {
    encode(&stored.into_frame(
        room.clone(),
        natter_stream::epoch::position(epoch, seq),
        natter_stream::epoch::position(epoch, prev),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joined_frame_is_the_bytes_its_serialized_frame_would_be() {
        let room: RoomId = serde_json::from_value(serde_json::json!("lobby-\"1\"")).unwrap_or_else(|_| {
            serde_json::from_value(serde_json::json!("lobby")).unwrap_or_else(|err| panic!("a room id: {err}"))
        });
        let members = vec![
            UserRef {
                id: "u1".into(),
                name: "Zoë \"z\" \\ <b>".into(),
            },
            UserRef {
                id: "u2".into(),
                name: "bob".into(),
            },
        ];
        for (list, recovered) in [(members.clone(), true), (Vec::new(), false)] {
            let json = serde_json::to_string(&list).unwrap_or_default();
            let expected = encode(&ServerFrame::Joined {
                room: room.clone(),
                seq: 42,
                recovered,
                members: list,
            });
            assert_eq!(joined_frame(&room, 42, recovered, &json), expected);
        }
    }
}
