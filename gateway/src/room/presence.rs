//! A room's presence (local users with a count of their connections and, per remote gateway, that gateway's
//! users, learned from a sync at start and from presence events after) and its live drafts.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use natter_proto::bus::{PresenceEvent, PresenceSnapshot, TypingEvent};
use natter_proto::frame::{ServerFrame, UserRef};
use natter_proto::subject;

use natter_proto::RoomId;
use tokio::sync::mpsc;

use super::{PRESENCE_SYNC_WINDOW, RoomCmd, RoomTask, TYPING_EXPIRY, encode};
use crate::peer::Outbound;

impl RoomTask {
    /// Asks every gateway for its users in this room and waits briefly for the answers (at the room's start,
    /// before it serves anyone).
    pub(super) async fn sync_presence(&mut self) {
        let me = self.shared.gateway.clone();
        let mut answers = Vec::new();
        collect_snapshots(&self.shared.nats, &self.room, |snapshot| answers.push(snapshot)).await;
        for snapshot in answers.into_iter().filter(|s| s.gateway != me) {
            let users = snapshot.users.into_iter().map(|u| (u.id.clone(), u)).collect();
            self.remote.insert(snapshot.gateway, users);
        }
    }

    /// Asks the fleet again who is online and takes the answers as the truth: members hear of everyone who
    /// appeared or vanished meanwhile. The answers come back to the room as commands ([`Self::apply_snapshot`],
    /// then [`Self::finish_resync`]), so the room goes on serving (and answering other gateways' resyncs) while
    /// they are collected.
    pub(super) async fn resync_presence(&mut self, me: mpsc::WeakUnboundedSender<RoomCmd>) {
        // This gateway's own users go to the fleet first: others resyncing now ask for them.
        self.publish_fleet_changes().await;
        self.resyncing = Some(HashSet::new());
        let nats = self.shared.nats.clone();
        let room = self.room.clone();
        tokio::spawn(async move {
            collect_snapshots(&nats, &room, |snapshot| {
                if let Some(tx) = me.upgrade() {
                    let _ = tx.send(RoomCmd::Snapshot(snapshot));
                }
            })
            .await;
            if let Some(tx) = me.upgrade() {
                let _ = tx.send(RoomCmd::ResyncDone);
            }
        });
    }

    /// Takes a gateway's answer as its users in the room, telling members of the differences.
    pub(super) fn apply_snapshot(&mut self, snapshot: PresenceSnapshot) {
        if snapshot.gateway == self.shared.gateway {
            return;
        }
        if let Some(answered) = &mut self.resyncing {
            answered.insert(snapshot.gateway.clone());
        }
        let gateway = snapshot.gateway;
        let now: HashMap<String, UserRef> = snapshot.users.into_iter().map(|u| (u.id.clone(), u)).collect();
        let before = self.remote.insert(gateway.clone(), now.clone()).unwrap_or_default();
        for (id, user) in &before {
            if !now.contains_key(id) {
                self.user_disappeared(user);
            }
        }
        for (id, user) in now {
            if !before.contains_key(&id) && !self.online_elsewhere(&id, Some(&gateway)) {
                self.tell(&user, true);
            }
        }
    }

    /// Ends a resync: the gateways that did not answer have no users in the room.
    pub(super) fn finish_resync(&mut self) {
        let Some(answered) = self.resyncing.take() else {
            return;
        };
        let silent: Vec<String> = self.remote.keys().filter(|g| !answered.contains(*g)).cloned().collect();
        for gateway in silent {
            if let Some(users) = self.remote.remove(&gateway) {
                for user in users.into_values() {
                    self.user_disappeared(&user);
                }
            }
        }
    }

    /// Everyone online in the room on any gateway, each once.
    /// Who is online in the room, fleet-wide, once each, as the JSON array a `joined` frame carries: serialized
    /// from the room's own records, with no copy of a name or an id (a join in a room of 100 would otherwise copy
    /// 200 strings to serialize them once).
    pub(super) fn online_json(&self) -> String {
        let mut seen = HashSet::with_capacity(self.local.len());
        let local = self.local.values().map(|(u, _)| u);
        let remote = self.remote.values().flat_map(|users| users.values());
        let online: Vec<&UserRef> = local.chain(remote).filter(|u| seen.insert(u.id.as_str())).collect();
        // A list of plain strings always serializes.
        serde_json::to_string(&online).unwrap_or_else(|_| "[]".to_owned())
    }

    fn online_elsewhere(&self, user_id: &str, skip_gateway: Option<&str>) -> bool {
        self.local.contains_key(user_id)
            || self
                .remote
                .iter()
                .any(|(gw, users)| Some(gw.as_str()) != skip_gateway && users.contains_key(user_id))
    }

    /// Tells local members that `user` came online, unless they already saw them online.
    pub(super) fn user_appeared(&mut self, user: &UserRef) {
        let already = self.remote.values().any(|users| users.contains_key(&user.id))
            || self.local.get(&user.id).is_some_and(|(_, n)| *n > 1);
        if !already {
            self.tell(user, true);
        }
    }

    /// Tells local members that `user` went offline, if they are now offline everywhere.
    pub(super) fn user_disappeared(&mut self, user: &UserRef) {
        if !self.online_elsewhere(&user.id, None) {
            if self.typing.remove(&user.id).is_some() {
                let frame = ServerFrame::Typing {
                    room: self.room.clone(),
                    user: user.clone(),
                    text: String::new(),
                };
                self.broadcast_draft(&frame, &user.id);
            }
            self.tell(user, false);
        }
    }

    /// Records a change members are to be told of with the room's next announcement.
    fn tell(&mut self, user: &UserRef, online: bool) {
        self.told.push(user, online);
        self.schedule.changed(Instant::now());
    }

    /// Records a change of this gateway's own users in the room, for the fleet, with the next announcement.
    pub(super) fn tell_fleet(&mut self, user: &UserRef, online: bool) {
        self.fleet.push(user, online);
        self.schedule.changed(Instant::now());
    }

    /// Sends what changed since the last announcement: one `presence` frame to each member that has something to
    /// hear (see [`super::announce`]) and one event to the fleet.
    pub(super) async fn announce(&mut self) {
        self.schedule.sent(Instant::now());
        self.publish_fleet_changes().await;
        if self.told.is_empty() {
            return; // Only the fleet had news; every member's position is already 0.
        }
        let told = self.told.take();
        let (joined, left) = told.net(0, None);
        let common = presence_frame(&self.room, joined, left);
        let named: HashSet<&str> = told.names();
        for member in self.members.values_mut() {
            let from = std::mem::take(&mut member.presence_from);
            let own = member.peer.user.id.as_str();
            let frame = if from == 0 && !named.contains(own) {
                common.clone()
            } else {
                let (joined, left) = told.net(from, Some(own));
                presence_frame(&self.room, joined, left)
            };
            if let Some(frame) = frame {
                member.queue(Outbound::Frame(frame));
            }
        }
    }

    /// Publishes this gateway's changes since the last announcement as one presence event. The room task itself
    /// publishes, so events leave in the order they happened (NATS only queues it; this does not wait on the
    /// network).
    pub(super) async fn publish_fleet_changes(&mut self) {
        let (joined, left) = self.fleet.take().net(0, None);
        self.publish_presence(joined, left).await;
    }

    /// Publishes a presence event now.
    pub(super) async fn publish_presence(&self, joined: Vec<UserRef>, left: Vec<UserRef>) {
        if joined.is_empty() && left.is_empty() {
            return;
        }
        let event = PresenceEvent {
            gateway: self.shared.gateway.clone(),
            joined,
            left,
        };
        if let Ok(payload) = serde_json::to_vec(&event) {
            let _ = self
                .shared
                .nats
                .publish(subject::room_presence(&self.room), payload.into())
                .await;
        }
    }

    pub(super) async fn on_ephemeral(&mut self, msg: async_nats::Message) {
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
                    self.typing.insert(
                        event.user.id.clone(),
                        (event.user.clone(), event.text.clone(), Instant::now()),
                    );
                }
                let frame = ServerFrame::Typing {
                    room: self.room.clone(),
                    user: event.user.clone(),
                    text: event.text,
                };
                self.broadcast_draft(&frame, &event.user.id);
            }
            "presence" => {
                let Ok(event) = serde_json::from_slice::<PresenceEvent>(&msg.payload) else {
                    return;
                };
                if event.gateway == self.shared.gateway {
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
                        if !self.online_elsewhere(&user.id, Some(&event.gateway)) {
                            self.tell(&user, true);
                        }
                    }
                }
            }
            "sync" => {
                let Some(reply) = msg.reply else { return };
                if self.local.is_empty() {
                    return;
                }
                // Changes not yet announced go first, so the fleet's events after the snapshot follow from it.
                self.publish_fleet_changes().await;
                let snapshot = PresenceSnapshot {
                    gateway: self.shared.gateway.clone(),
                    users: self.local.values().map(|(u, _)| u.clone()).collect(),
                };
                if let Ok(payload) = serde_json::to_vec(&snapshot) {
                    let _ = self.shared.nats.publish(reply, payload.into()).await;
                }
            }
            _ => {}
        }
    }

    pub(super) fn expire_typing(&mut self) {
        let expired: Vec<UserRef> = self
            .typing
            .iter()
            .filter(|(_, (_, _, at))| at.elapsed() >= TYPING_EXPIRY)
            .map(|(_, (user, _, _))| user.clone())
            .collect();
        for user in expired {
            self.typing.remove(&user.id);
            let frame = ServerFrame::Typing {
                room: self.room.clone(),
                user: user.clone(),
                text: String::new(),
            };
            self.broadcast_draft(&frame, &user.id);
        }
    }
}

/// Asks every gateway for its users in `room` and hands each answer to `answer`, for the sync window.
async fn collect_snapshots(nats: &async_nats::Client, room: &RoomId, mut answer: impl FnMut(PresenceSnapshot)) {
    let inbox = nats.new_inbox();
    let Ok(mut replies) = nats.subscribe(inbox.clone()).await else {
        return;
    };
    if nats
        .publish_with_reply(subject::room_presence_sync(room), inbox, Bytes::new())
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
                if let Ok(snapshot) = serde_json::from_slice::<PresenceSnapshot>(&msg.payload) {
                    answer(snapshot);
                }
            }
        }
    }
}

/// A `presence` frame, if there is anything to say.
fn presence_frame(room: &natter_proto::RoomId, joined: Vec<UserRef>, left: Vec<UserRef>) -> Option<Bytes> {
    if joined.is_empty() && left.is_empty() {
        return None;
    }
    Some(encode(&ServerFrame::Presence {
        room: room.clone(),
        joined,
        left,
    }))
}
