//! Fan-out: one task and one pair of NATS subscriptions per room with local members, shared by all of them.
//!
//! A room task subscribes to the room's live subject (JetStream's republish of stored messages, in stream order,
//! with `Nats-Sequence` and `Nats-Last-Sequence`) and to the room's ephemeral subjects (typing, presence). It
//! encodes each message frame once and queues the same bytes to every local member. It keeps the room's last
//! delivered sequence: a live message whose predecessor is not the last one delivered reveals a gap, which it
//! fills from the stream before going on, so members always see the room in order with no hole.
//!
//! It also keeps the room's presence: local users (with a count of their connections) and, per remote gateway,
//! that gateway's users, learned from a sync at start and from presence events after.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use natter_proto::bus::{PresenceEvent, PresenceSnapshot, StoredMessage, TypingEvent};
use natter_proto::frame::{ServerFrame, UserRef};
use natter_proto::{RoomId, subject};
use tokio::sync::{mpsc, oneshot};

use crate::metrics;
use crate::peer::{ConnId, Outbound, Peer};

/// How long a room task waits for other gateways' presence snapshots when it starts.
const PRESENCE_SYNC_WINDOW: Duration = Duration::from_millis(150);

/// A draft not updated for this long is cleared.
const TYPING_EXPIRY: Duration = Duration::from_secs(6);

/// Live frames held for one member while its replay runs, before it counts as too slow.
const MAX_HELD: usize = 4096;

/// Most live messages delivered together in one batch.
const MAX_BATCH: usize = 64;

/// What a joining connection learns.
#[derive(Debug)]
pub struct Joined {
    /// The room's last delivered sequence when the member was registered; live frames after it follow.
    pub last_seq: u64,
    /// Who is online in the room, fleet-wide.
    pub members: Vec<UserRef>,
}

enum RoomCmd {
    /// Register a member; its live frames are held until [`RoomCmd::Release`].
    Join { peer: Peer, reply: oneshot::Sender<Joined> },
    /// The member's `joined` frame and replay are queued: send it the held frames and then live ones.
    Release { conn: ConnId },
    /// Remove a member; the reply says it is done.
    Leave { conn: ConnId, done: oneshot::Sender<()> },
    /// A gateway stopped heartbeating: its users are gone.
    GatewayGone { gateway: String },
}

struct RoomHandle {
    tx: mpsc::UnboundedSender<RoomCmd>,
    /// Local members, counted under the hub's lock so a room task is only retired when nobody can be joining it.
    members: usize,
}

/// All rooms with local members on this gateway.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    gateway: String,
    nats: async_nats::Client,
    stream: jetstream::stream::Stream,
    rooms: Mutex<HashMap<RoomId, RoomHandle>>,
}

impl Hub {
    /// A hub for gateway `gateway`.
    pub fn new(gateway: String, nats: async_nats::Client, stream: jetstream::stream::Stream) -> Self {
        let inner = HubInner {
            gateway,
            nats,
            stream,
            rooms: Mutex::new(HashMap::new()),
        };
        Self { inner: Arc::new(inner) }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, RoomHandle>> {
        // A poisoned lock means a panic mid-update of a plain map; its contents are still consistent.
        self.inner.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a member to a room, starting the room's task and subscriptions if it is the first local one.
    pub async fn join(&self, room: &RoomId, peer: Peer) -> Option<Joined> {
        let (reply, joined) = oneshot::channel();
        {
            let mut rooms = self.rooms();
            let handle = rooms.entry(room.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                let task = RoomTask::new(room.clone(), self.inner.clone());
                tokio::spawn(task.run(rx));
                ::metrics::gauge!(metrics::ROOMS_SUBSCRIBED).increment(1.0);
                RoomHandle { tx, members: 0 }
            });
            handle.members += 1;
            let _ = handle.tx.send(RoomCmd::Join { peer, reply });
        }
        joined.await.ok()
    }

    /// Lets held live frames flow to a member whose replay is queued.
    pub fn release(&self, room: &RoomId, conn: ConnId) {
        if let Some(handle) = self.rooms().get(room) {
            let _ = handle.tx.send(RoomCmd::Release { conn });
        }
    }

    /// Removes a member; the room's task and subscriptions end with its last local member. The returned future
    /// completes once the room task has dropped the member (so nothing of the room reaches it after).
    pub fn leave(&self, room: &RoomId, conn: ConnId) -> impl std::future::Future<Output = ()> + use<> {
        let (done, removed) = oneshot::channel();
        let mut rooms = self.rooms();
        if let Some(handle) = rooms.get_mut(room) {
            let _ = handle.tx.send(RoomCmd::Leave { conn, done });
            handle.members = handle.members.saturating_sub(1);
            if handle.members == 0 {
                // Dropping the sender ends the task once it has handled the leave.
                rooms.remove(room);
                ::metrics::gauge!(metrics::ROOMS_SUBSCRIBED).decrement(1.0);
            }
        }
        drop(rooms);
        async move {
            let _ = removed.await;
        }
    }

    /// Tells every room that a gateway is gone.
    pub fn gateway_gone(&self, gateway: &str) {
        for handle in self.rooms().values() {
            let _ = handle.tx.send(RoomCmd::GatewayGone {
                gateway: gateway.to_owned(),
            });
        }
    }

    /// Number of rooms with local members.
    pub fn room_count(&self) -> usize {
        self.rooms().len()
    }

    /// The NATS client.
    pub fn nats(&self) -> &async_nats::Client {
        &self.inner.nats
    }

    /// The chat stream.
    pub fn stream(&self) -> &jetstream::stream::Stream {
        &self.inner.stream
    }

    /// This gateway's id.
    pub fn gateway(&self) -> &str {
        &self.inner.gateway
    }
}

struct Member {
    peer: Peer,
    /// Frames held while the member's replay is being queued; `None` once released.
    held: Option<Vec<Outbound>>,
}

struct RoomTask {
    room: RoomId,
    hub: Arc<HubInner>,
    /// The last sequence delivered to members (0: none yet).
    last_seq: u64,
    /// Whether `last_seq` is known to be the room's true position (read from the stream at start); until it is,
    /// gaps cannot be told.
    baseline_known: bool,
    members: HashMap<ConnId, Member>,
    /// Local users online in the room, with how many local connections each has.
    local: HashMap<String, (UserRef, usize)>,
    /// Users online in the room on other gateways.
    remote: HashMap<String, HashMap<String, UserRef>>,
    /// Users with a live draft, and when it was last updated.
    typing: HashMap<String, (UserRef, Instant)>,
    /// Message frames of the batch being delivered, in order (see [`RoomTask::flush`]).
    outgoing: Vec<(u64, Bytes)>,
}

impl RoomTask {
    fn new(room: RoomId, hub: Arc<HubInner>) -> Self {
        Self {
            room,
            hub,
            last_seq: 0,
            baseline_known: false,
            members: HashMap::new(),
            local: HashMap::new(),
            remote: HashMap::new(),
            typing: HashMap::new(),
            outgoing: Vec::new(),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<RoomCmd>) {
        let nats = self.hub.nats.clone();
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
        if let Some(last) = self.last_stored_seq().await {
            self.last_seq = last;
            self.baseline_known = true;
        }
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
                _ = tick.tick() => self.expire_typing(),
            }
        }
        // Last local member gone: tell the fleet this gateway's users left.
        let left: Vec<UserRef> = self.local.drain().map(|(_, (user, _))| user).collect();
        self.publish_presence(Vec::new(), left).await;
    }

    /// The room's last stored sequence (0 for a room with none), retried briefly; `None` if the stream cannot be
    /// read, in which case gaps go undetected until the room task restarts.
    async fn last_stored_seq(&self) -> Option<u64> {
        let subject = subject::room_messages(&self.room);
        for attempt in 0..3u32 {
            match self.hub.stream.direct_get_last_for_subject(&subject).await {
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

    /// Asks every gateway for its users in this room and waits briefly for the answers.
    async fn sync_presence(&mut self) {
        let nats = &self.hub.nats;
        let inbox = nats.new_inbox();
        let Ok(mut replies) = nats.subscribe(inbox.clone()).await else {
            return;
        };
        if nats
            .publish_with_reply(subject::room_presence_sync(&self.room), inbox, Bytes::new())
            .await
            .is_err()
        {
            return;
        }
        let deadline = tokio::time::sleep(PRESENCE_SYNC_WINDOW);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => break,
                Some(msg) = replies.next() => {
                    if let Ok(snapshot) = serde_json::from_slice::<PresenceSnapshot>(&msg.payload)
                        && snapshot.gateway != self.hub.gateway
                    {
                        let users = snapshot.users.into_iter().map(|u| (u.id.clone(), u)).collect();
                        self.remote.insert(snapshot.gateway, users);
                    }
                }
            }
        }
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
                    },
                );
                let entry = self.local.entry(user.id.clone()).or_insert_with(|| (user.clone(), 0));
                entry.1 += 1;
                if entry.1 == 1 {
                    self.user_appeared(&user);
                    self.publish_presence(vec![user], Vec::new()).await;
                }
                let _ = reply.send(Joined {
                    last_seq: self.last_seq,
                    members: self.online(),
                });
            }
            RoomCmd::Release { conn } => {
                if let Some(member) = self.members.get_mut(&conn)
                    && let Some(held) = member.held.take()
                {
                    for frame in held {
                        if !member.peer.push(frame) {
                            break;
                        }
                    }
                }
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
                        self.publish_presence(Vec::new(), vec![user]).await;
                    }
                }
            }
            RoomCmd::GatewayGone { gateway } => {
                if let Some(users) = self.remote.remove(&gateway) {
                    for user in users.into_values() {
                        self.user_disappeared(&user);
                    }
                }
            }
        }
    }

    /// Everyone online in the room on any gateway, each once.
    fn online(&self) -> Vec<UserRef> {
        let mut seen = HashSet::new();
        let local = self.local.values().map(|(u, _)| u);
        let remote = self.remote.values().flat_map(|users| users.values());
        local
            .chain(remote)
            .filter(|u| seen.insert(u.id.clone()))
            .cloned()
            .collect()
    }

    fn online_elsewhere(&self, user_id: &str, skip_gateway: Option<&str>) -> bool {
        self.local.contains_key(user_id)
            || self
                .remote
                .iter()
                .any(|(gw, users)| Some(gw.as_str()) != skip_gateway && users.contains_key(user_id))
    }

    /// Tells local members that `user` came online, unless they already saw them online.
    fn user_appeared(&mut self, user: &UserRef) {
        let already = self.remote.values().any(|users| users.contains_key(&user.id))
            || self.local.get(&user.id).is_some_and(|(_, n)| *n > 1);
        if !already {
            let frame = ServerFrame::Presence {
                room: self.room.clone(),
                joined: vec![user.clone()],
                left: vec![],
            };
            self.broadcast(encode(&frame), Some(&user.id));
        }
    }

    /// Tells local members that `user` went offline, if they are now offline everywhere.
    fn user_disappeared(&mut self, user: &UserRef) {
        if !self.online_elsewhere(&user.id, None) {
            if self.typing.remove(&user.id).is_some() {
                let frame = ServerFrame::Typing {
                    room: self.room.clone(),
                    user: user.clone(),
                    text: String::new(),
                };
                self.broadcast(encode(&frame), Some(&user.id));
            }
            let frame = ServerFrame::Presence {
                room: self.room.clone(),
                joined: vec![],
                left: vec![user.clone()],
            };
            self.broadcast(encode(&frame), Some(&user.id));
        }
    }

    /// Publishes a presence event from the room task itself, so events leave in the order they happened (NATS
    /// only queues it; this does not wait on the network).
    async fn publish_presence(&self, joined: Vec<UserRef>, left: Vec<UserRef>) {
        if joined.is_empty() && left.is_empty() {
            return;
        }
        let event = PresenceEvent {
            gateway: self.hub.gateway.clone(),
            joined,
            left,
        };
        if let Ok(payload) = serde_json::to_vec(&event) {
            let _ = self
                .hub
                .nats
                .publish(subject::room_presence(&self.room), payload.into())
                .await;
        }
    }

    async fn on_live(&mut self, msg: async_nats::Message) {
        let (Some(seq), Some(prev)) = (
            header_u64(&msg.headers, async_nats::header::NATS_SEQUENCE),
            header_u64(&msg.headers, async_nats::header::NATS_LAST_SEQUENCE),
        ) else {
            tracing::warn!(room = %self.room, "live message without sequence headers; dropped");
            return;
        };
        if seq <= self.last_seq {
            return; // Already delivered (a gap fill got there first).
        }
        if prev > self.last_seq && self.baseline_known {
            self.fill_gap(seq).await;
        }
        let prev = if self.baseline_known || self.last_seq > 0 {
            self.last_seq.max(prev)
        } else {
            prev
        };
        self.deliver(seq, prev, &msg.payload);
    }

    /// Fetches and delivers the room's stored messages between the last delivered one and `until`.
    async fn fill_gap(&mut self, until: u64) {
        let subject = subject::room_messages(&self.room);
        loop {
            let next = self
                .hub
                .stream
                .direct_get_next_for_subject(&subject, Some(self.last_seq + 1))
                .await;
            let Ok(msg) = next else { break };
            let Some(seq) = header_u64(&msg.headers, async_nats::header::NATS_SEQUENCE) else {
                break;
            };
            if seq >= until {
                break;
            }
            ::metrics::counter!(metrics::GAP_FILLS).increment(1);
            let prev = self.last_seq;
            self.deliver(seq, prev, &msg.payload);
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
        // The author stopped typing: the message is what they typed.
        if self.typing.remove(&stored.user.id).is_some() {
            let clear = ServerFrame::Typing {
                room: self.room.clone(),
                user: stored.user.clone(),
                text: String::new(),
            };
            self.broadcast(encode(&clear), Some(&stored.user.id));
        }
        self.outgoing.push((seq, message_frame(&self.room, seq, prev, stored)));
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
        ::metrics::counter!(metrics::MESSAGES_OUT).increment(delivered);
        self.outgoing.clear();
        if self.outgoing.capacity() > 4 * MAX_BATCH {
            self.outgoing = Vec::new();
        }
    }

    /// Queues `frame` to every member, except to the connections of `except_user`.
    fn broadcast(&mut self, frame: Bytes, except_user: Option<&str>) {
        let out = Outbound::Frame(frame);
        for member in self.members.values_mut() {
            if except_user == Some(member.peer.user.id.as_str()) {
                continue;
            }
            match &mut member.held {
                Some(held) if held.len() < MAX_HELD => held.push(out.clone()),
                Some(_) => member.peer.slow(),
                None => {
                    member.peer.push(out.clone());
                }
            }
        }
    }

    async fn on_ephemeral(&mut self, msg: async_nats::Message) {
        let kind = msg.subject.rsplit('.').next().unwrap_or_default().to_owned();
        match kind.as_str() {
            "typing" => {
                let Ok(event) = serde_json::from_slice::<TypingEvent>(&msg.payload) else {
                    return;
                };
                if event.text.is_empty() {
                    if self.typing.remove(&event.user.id).is_none() {
                        return;
                    }
                } else {
                    self.typing
                        .insert(event.user.id.clone(), (event.user.clone(), Instant::now()));
                }
                let frame = ServerFrame::Typing {
                    room: self.room.clone(),
                    user: event.user.clone(),
                    text: event.text,
                };
                self.broadcast(encode(&frame), Some(&event.user.id));
            }
            "presence" => {
                let Ok(event) = serde_json::from_slice::<PresenceEvent>(&msg.payload) else {
                    return;
                };
                if event.gateway == self.hub.gateway {
                    return;
                }
                for user in event.left {
                    if let Some(users) = self.remote.get_mut(&event.gateway)
                        && users.remove(&user.id).is_some()
                    {
                        self.user_disappeared(&user);
                    }
                }
                for user in event.joined {
                    let users = self.remote.entry(event.gateway.clone()).or_default();
                    if users.insert(user.id.clone(), user.clone()).is_none() {
                        // Announce unless they were already online here or on a third gateway.
                        let elsewhere = self.online_elsewhere(&user.id, Some(&event.gateway));
                        if !elsewhere {
                            let frame = ServerFrame::Presence {
                                room: self.room.clone(),
                                joined: vec![user],
                                left: vec![],
                            };
                            self.broadcast(encode(&frame), None);
                        }
                    }
                }
            }
            "sync" => {
                let Some(reply) = msg.reply else { return };
                if self.local.is_empty() {
                    return;
                }
                let snapshot = PresenceSnapshot {
                    gateway: self.hub.gateway.clone(),
                    users: self.local.values().map(|(u, _)| u.clone()).collect(),
                };
                if let Ok(payload) = serde_json::to_vec(&snapshot) {
                    let _ = self.hub.nats.publish(reply, payload.into()).await;
                }
            }
            _ => {}
        }
    }

    fn expire_typing(&mut self) {
        let expired: Vec<UserRef> = self
            .typing
            .iter()
            .filter(|(_, (_, at))| at.elapsed() >= TYPING_EXPIRY)
            .map(|(_, (user, _))| user.clone())
            .collect();
        for user in expired {
            self.typing.remove(&user.id);
            let frame = ServerFrame::Typing {
                room: self.room.clone(),
                user: user.clone(),
                text: String::new(),
            };
            self.broadcast(encode(&frame), Some(&user.id));
        }
    }
}

/// Encodes a server frame as a whole WebSocket text frame, once, for every connection it goes to.
pub fn encode(frame: &ServerFrame) -> Bytes {
    crate::frame::text_json(frame)
}

/// The `message` frame for a stored message.
pub fn message_frame(room: &RoomId, seq: u64, prev: u64, stored: StoredMessage) -> Bytes {
    encode(&ServerFrame::Message {
        room: room.clone(),
        seq,
        prev,
        id: stored.id,
        user: stored.user,
        body: stored.body,
        ts: stored.ts,
    })
}

/// Reads a numeric NATS header.
pub fn header_u64(headers: &Option<async_nats::HeaderMap>, name: async_nats::header::HeaderName) -> Option<u64> {
    headers
        .as_ref()?
        .get(name)
        .and_then(|v| AsRef::<str>::as_ref(v).parse().ok())
}
