//! The hub: the rooms with local members on this gateway. Each room is run by one task (see [`crate::room`]);
//! joins, leaves and fleet events go to it as commands, so a room's state has one owner.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use natter_proto::RoomId;
use tokio::sync::{mpsc, oneshot};

use crate::access::AccessChecks;
use crate::epoch::Epoch;
use crate::load::Load;
use crate::metrics;
use crate::peer::{ConnId, Outbound, Peer};
use crate::room::{Joined, RoomCmd, RoomShared, RoomTask};

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
    shared: Arc<RoomShared>,
    rooms: Mutex<HashMap<RoomId, RoomHandle>>,
}

impl Hub {
    /// A hub for gateway `gateway`, over the chat stream of epoch `epoch`, whose rooms ask again about their
    /// members' access every `recheck_every`.
    pub fn new(
        gateway: String,
        nats: async_nats::Client,
        stream: jetstream::stream::Stream,
        epoch: Arc<Epoch>,
        load: Arc<Load>,
        recheck_every: Duration,
    ) -> Self {
        let inner = HubInner {
            shared: Arc::new(RoomShared {
                gateway,
                access: AccessChecks::new(nats.clone()),
                nats,
                stream,
                epoch,
                load,
                recheck_every,
                rechecks: tokio::sync::Semaphore::new(crate::room::RECHECKS_AT_ONCE),
            }),
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
                let task = RoomTask::new(room.clone(), self.inner.shared.clone());
                tokio::spawn(task.run(rx));
                ::metrics::gauge!(metrics::ROOMS_SUBSCRIBED).increment(1.0);
                RoomHandle { tx, members: 0 }
            });
            handle.members += 1;
            let _ = handle.tx.send(RoomCmd::Join { peer, reply });
        }
        joined.await.ok()
    }

    /// For a member whose replay is queued: the live frames held for it since the last call, or none once it
    /// takes live frames directly (the first call that finds none held releases it). With `last`, the room queues
    /// what is held itself and releases the member.
    pub async fn release(&self, room: &RoomId, conn: ConnId, last: bool) -> Vec<Outbound> {
        let (held, frames) = oneshot::channel();
        if let Some(handle) = self.rooms().get(room) {
            let _ = handle.tx.send(RoomCmd::Release { conn, last, held });
        }
        frames.await.unwrap_or_default()
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

    /// Has every room ask the fleet again who is online in it (see [`RoomCmd::Resync`]).
    pub fn resync_presence(&self) {
        for handle in self.rooms().values() {
            let _ = handle.tx.send(RoomCmd::Resync {
                me: handle.tx.downgrade(),
            });
        }
    }

    /// Has every room deliver what the stream holds past what it delivered (see [`RoomCmd::CatchUp`]).
    pub fn catch_up_messages(&self) {
        for handle in self.rooms().values() {
            let _ = handle.tx.send(RoomCmd::CatchUp {
                me: handle.tx.downgrade(),
                tries: crate::room::CATCH_UP_TRIES,
            });
        }
    }

    /// Has every room ask again at once whether its members may still be in it (room events may have been
    /// dropped); see [`RoomCmd::Recheck`].
    pub fn recheck_all(&self) {
        for handle in self.rooms().values() {
            let _ = handle.tx.send(RoomCmd::Recheck);
        }
    }

    /// The room-access checks.
    pub fn access(&self) -> &AccessChecks {
        &self.inner.shared.access
    }

    /// Number of rooms with local members.
    pub fn room_count(&self) -> usize {
        self.rooms().len()
    }

    /// The NATS client.
    pub fn nats(&self) -> &async_nats::Client {
        &self.inner.shared.nats
    }

    /// The chat stream.
    pub fn stream(&self) -> &jetstream::stream::Stream {
        &self.inner.shared.stream
    }

    /// The chat stream's epoch.
    pub fn epoch(&self) -> &Arc<Epoch> {
        &self.inner.shared.epoch
    }

    /// The delivery lag meter.
    pub fn load(&self) -> &Load {
        &self.inner.shared.load
    }

    /// This gateway's id.
    pub fn gateway(&self) -> &str {
        &self.inner.shared.gateway
    }
}
