//! The gateway's shared state: connections and their limits, room access checks, and the JetStream handles.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use natter_proto::RoomId;
use natter_proto::bus::{RoomAccess, RoomEvent, StoredMessage};
use natter_proto::token::{AccessClaims, TokenError};
use natter_stream::journal::PublishError;
use natter_stream::sessions::Revoked;

use crate::auth::TokenVerifier;
use crate::config::Config;
use crate::hub::Hub;
use crate::metrics;
use crate::peer::{ConnId, Control, Peer};
use crate::persisted::{Persisted, Place};
use crate::room::message_frame;

/// How long a send waits for JetStream's stored-ack before the client is told the outcome is unknown.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything connections share. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// The shared state itself.
pub struct Inner {
    /// This gateway's id.
    pub id: String,
    /// Random per process start (see [`natter_proto::bus::GatewayInfo::instance`]).
    pub instance: String,
    /// Its settings.
    pub config: Config,
    /// Token verification.
    pub verifier: TokenVerifier,
    /// Rooms with local members.
    pub hub: Hub,
    /// JetStream, for publishing.
    pub js: async_nats::jetstream::Context,
    /// Set on SIGTERM: no new connections.
    pub draining: AtomicBool,
    next_conn: AtomicU64,
    open: AtomicUsize,
    /// Each user's connections here and, as told, on the other gateways (the per-user cap is the fleet's).
    pub census: crate::census::Census,
    /// Open connections, so a drain can close each.
    peers: Mutex<HashMap<ConnId, Peer>>,
    /// Sessions revoked before their tokens expire, followed from NATS KV (see [`natter_stream::sessions`]).
    pub revoked: Arc<Revoked>,
    /// With `--ack-after persisted`: the sends waiting for a persister's confirmation (`None`: acks follow
    /// JetStream's stored-ack).
    pub persisted: Option<Arc<Persisted>>,
    /// Rejoins' gaps, read once per room and shared.
    pub replays: crate::replays::Replays,
}

impl std::ops::Deref for Gateway {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

/// A place in the connection limits, given back when dropped.
pub struct Slot {
    /// The connection's id.
    pub conn: ConnId,
    user: Arc<str>,
    gw: Gateway,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gw.open.fetch_sub(1, Ordering::Relaxed);
        self.gw.census.release(&self.user);
        ::metrics::gauge!(metrics::CONNECTIONS).decrement(1.0);
    }
}

impl Gateway {
    /// Shared state over a connected hub.
    pub fn new(
        id: String,
        config: Config,
        verifier: TokenVerifier,
        hub: Hub,
        js: async_nats::jetstream::Context,
    ) -> Self {
        let persisted = (config.ack_after == crate::config::AckAfter::Persisted)
            .then(|| Persisted::new(hub.nats().clone(), config.max_waiting_sends));
        let inner = Inner {
            persisted,
            replays: crate::replays::Replays::new(config.max_replay),
            id,
            instance: format!("{:016x}", rand::random::<u64>()),
            config,
            verifier,
            hub,
            js,
            draining: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            census: crate::census::Census::default(),
            peers: Mutex::new(HashMap::new()),
            revoked: Arc::new(Revoked::default()),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Whether a browser origin may connect.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.config
            .allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// Takes a connection slot for `user`, unless a limit is reached: the gateway's `--max-connections`, or the
    /// user's `--max-connections-per-user` counted over the fleet (see [`crate::census`]).
    pub fn admit(&self, user: &str) -> Option<Slot> {
        let admitted = self.census.admit(user, self.config.max_connections_per_user, || {
            self.open.load(Ordering::Relaxed) >= self.config.max_connections
        });
        let user = match admitted {
            Ok(user) => user,
            Err(crate::census::Refused::Fleet) => {
                ::metrics::counter!(metrics::USER_CAP_FLEET_REFUSED).increment(1);
                return None;
            }
            Err(_) => return None,
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        ::metrics::gauge!(metrics::CONNECTIONS).increment(1.0);
        ::metrics::counter!(metrics::CONNECTIONS_OPENED).increment(1);
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            conn,
            user,
            gw: self.clone(),
        })
    }

    /// Open connections.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Records an open connection so a drain can reach it.
    pub fn register(&self, conn: ConnId, peer: Peer) {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).insert(conn, peer);
    }

    /// Forgets a closed connection.
    pub fn unregister(&self, conn: ConnId) {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).remove(&conn);
    }

    /// Every open connection.
    pub fn peers(&self) -> Vec<Peer> {
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Verifies an access token (see [`TokenVerifier::verify`]) and that its session was not revoked.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let claims = self.verifier.verify(token).await?;
        if self.revoked.contains(&claims.sid) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    /// Closes every connection of revoked session `sid` with 4003.
    pub fn session_revoked(&self, sid: &str) {
        for peer in self.peers() {
            if *peer.sid == *sid {
                peer.close(natter_proto::close::SESSION_REVOKED, "session revoked; log in again");
            }
        }
    }

    /// Applies a room's lifecycle event: forgets what the access checks remember of it, and takes the connections
    /// it concerns out of the room (a member who joined takes nobody out).
    pub fn room_event(&self, room: &RoomId, event: &RoomEvent) {
        let user = event.user();
        // A ban changes who may join a public room: what is known of the whole room goes.
        let forget = if matches!(event, RoomEvent::MemberBanned { .. }) {
            None
        } else {
            user
        };
        self.hub.access().forget(room, forget);
        let Some(reason) = event.left_reason() else {
            return;
        };
        for peer in self.peers() {
            if user.is_none_or(|user| peer.user.id == user) {
                peer.control(Control::Evict {
                    room: room.clone(),
                    reason,
                });
            }
        }
    }

    /// Passes a personal event to every connection of `user` on this gateway. Personal events are few (a read
    /// cursor moved, the user's rooms changed, a mention), so finding the user's connections walks them all.
    pub fn personal_event(&self, user: &str, event: natter_proto::frame::PersonalEvent) {
        let peers: Vec<Peer> = self.peers().into_iter().filter(|peer| peer.user.id == user).collect();
        if peers.is_empty() {
            return;
        }
        let frame = crate::room::encode(&natter_proto::frame::ServerFrame::Personal { event });
        for peer in peers {
            peer.push(crate::peer::Outbound::Frame(frame.clone()));
        }
    }

    /// After room events may have been missed (`cause`: NATS came back after a while away, or dropped messages of
    /// a subscription that fell behind): forgets every access answer, has every room ask again whether its users
    /// may still be in it, and ask the fleet again who is online in it (presence events may have been missed too).
    pub fn catch_up(&self, cause: &'static str) {
        ::metrics::counter!(metrics::ACCESS_CATCH_UPS, "cause" => cause).increment(1);
        self.hub.access().clear();
        self.hub.recheck_all();
        self.hub.resync_presence();
        self.hub.catch_up_messages();
    }

    /// Whether `user` may join `room` (see [`crate::access`]).
    pub async fn room_access(&self, room: &RoomId, user: &str) -> anyhow::Result<RoomAccess> {
        self.hub.access().check(room, user).await
    }

    /// Replays a room's messages after stream sequence `since` up to `until` of epoch `epoch`, as encoded frames
    /// with their positions: whether every missed message is included (see [`natter_stream::journal::replay`]),
    /// and the frames.
    pub async fn replay(&self, room: &RoomId, epoch: u64, since: u64, until: u64) -> (bool, Vec<(u64, Bytes)>) {
        let replay = self.replays.replay(self.hub.stream(), room, epoch, since, until).await;
        let frames = replay
            .messages
            .into_iter()
            .map(|(seq, prev, stored)| {
                let position = natter_stream::epoch::position(epoch, seq);
                (position, message_frame(room, epoch, seq, prev, stored))
            })
            .collect();
        (replay.recovered, frames)
    }

    /// Publishes a chat message; once it is handed to NATS, returns the future of its position once stored (or of
    /// why that is not known). With a `place` (`--ack-after persisted`), the future also waits until a persister
    /// confirms the message is in PostgreSQL, at most `--persisted-ack-timeout` from now.
    pub async fn publish(
        &self,
        room: &RoomId,
        user_id: &str,
        stored: &StoredMessage,
        place: Option<Place>,
    ) -> Result<impl Future<Output = Result<u64, PublishError>> + Send + 'static, PublishError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.config.persisted_ack_timeout;
        let ack = natter_stream::journal::publish(&self.js, room, user_id, stored, PUBLISH_TIMEOUT).await?;
        let epoch = self.hub.epoch().clone();
        Ok(async move {
            let stored = ack.await?;
            metrics::hot().publish_latency.record(started.elapsed().as_secs_f64());
            let position = epoch.position_of(stored).await;
            if let Some(place) = place {
                // A position is its epoch plus the sequence: the epoch the persister names it under.
                let epoch = position.saturating_sub(stored.seq);
                // Boxed: a send acked after its stored-ack (the default) carries no room for this wait's state.
                Box::pin(place.wait(epoch, stored.seq, stored.duplicate, deadline)).await?;
            }
            Ok(position)
        })
    }
}
