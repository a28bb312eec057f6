//! What the rest of the gateway holds of a connection: its user, its outbox, and when it was last heard from.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use natter_proto::RoomId;
use natter_proto::close;
use natter_proto::frame::UserRef;

use crate::outbox::{CloseReason, Outbox};

/// A connection's id, unique within this gateway process.
pub type ConnId = u64;

/// One frame for a connection.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A chat message frame, shared by every member of the room. It goes out once per sequence of the room (a
    /// replay and the live feed can overlap).
    Message {
        /// The room.
        room: RoomId,
        /// The message's sequence.
        seq: u64,
        /// The encoded WebSocket frame.
        frame: Bytes,
        /// When the gateway received it from NATS (for the delivery-latency metric).
        received: Instant,
    },
    /// Any other encoded WebSocket frame.
    Frame(Bytes),
}

/// Something the rest of the gateway asks of a connection's session, applied between the client's frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Take the connection out of `room` (if it is in it), telling the client why (a `left` frame's `reason`).
    Evict {
        /// The room.
        room: RoomId,
        /// One of `natter_proto::frame::left_reason`.
        reason: &'static str,
    },
}

/// A handle to a connection, held by the rooms it is in and by the gateway's sweep. Cheap to clone.
#[derive(Clone)]
pub struct Peer {
    inner: Arc<PeerInner>,
}

/// The connection's shared part.
pub struct PeerInner {
    /// The connection's id.
    pub conn: ConnId,
    /// Its user.
    pub user: UserRef,
    /// The session (login) its token belongs to: revoking it closes the connection.
    pub sid: Box<str>,
    outbox: Outbox,
    /// What the session is asked to do, and the wake-up for it (see [`Control`]).
    controls: Mutex<Vec<Control>>,
    control_ready: tokio::sync::Notify,
    /// Unix seconds when the client last sent anything (a frame, a pong).
    heard: AtomicU64,
    /// Unix seconds when its access token expires (moved on by an in-band refresh).
    expires: AtomicI64,
}

impl std::ops::Deref for Peer {
    type Target = PeerInner;
    fn deref(&self) -> &PeerInner {
        &self.inner
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Peer {
    /// A connection of `user` in session `sid`, writing through `outbox`, whose token expires at `expires` (Unix
    /// seconds).
    pub fn new(conn: ConnId, user: UserRef, sid: &str, outbox: Outbox, expires: i64) -> Self {
        Self {
            inner: Arc::new(PeerInner {
                conn,
                user,
                sid: sid.into(),
                outbox,
                controls: Mutex::new(Vec::new()),
                control_ready: tokio::sync::Notify::new(),
                heard: AtomicU64::new(u64::try_from(unix_now()).unwrap_or(0)),
                expires: AtomicI64::new(expires),
            }),
        }
    }

    /// The connection's outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Queues a frame without waiting. A full queue means the client is not reading: it is closed as a slow
    /// consumer rather than slowing the room or growing memory. Returns whether the frame was taken.
    pub fn push(&self, out: Outbound) -> bool {
        match out {
            Outbound::Message {
                room,
                seq,
                frame,
                received,
            } => self.outbox.push_message(&room, seq, frame, received),
            Outbound::Frame(frame) => self.outbox.push(frame),
        }
    }

    /// Queues a frame, waiting for room in the queue. For the connection's own session only (a replay longer than
    /// the queue), never for fan-out, which must not wait on one client. Returns whether it was taken.
    pub async fn send(&self, out: Outbound) -> bool {
        match out {
            Outbound::Message { room, seq, frame, .. } => self.outbox.push_patiently(Some((&room, seq)), frame).await,
            Outbound::Frame(frame) => self.outbox.push_patiently(None, frame).await,
        }
    }

    /// Asks the connection's session to do `control` (it does, between the client's frames).
    pub fn control(&self, control: Control) {
        let mut controls = self.controls.lock().unwrap_or_else(|p| p.into_inner());
        // Asked twice before it got to it (a room event and a re-check, say), it needs to do it once.
        if controls.contains(&control) {
            return;
        }
        controls.push(control);
        drop(controls);
        self.control_ready.notify_one();
    }

    /// Waits for controls and takes them (for the connection's session only).
    pub async fn controls(&self) -> Vec<Control> {
        loop {
            let taken = std::mem::take(&mut *self.controls.lock().unwrap_or_else(|p| p.into_inner()));
            if !taken.is_empty() {
                return taken;
            }
            self.control_ready.notified().await;
        }
    }

    /// Closes the connection as a slow consumer.
    pub fn slow(&self) {
        self.close(close::SLOW_CONSUMER, "too slow: outbound queue full");
    }

    /// Asks the connection to close with `code`, unless a close was already asked for. Returns whether this call
    /// decided the close.
    pub fn close(&self, code: u16, reason: &str) -> bool {
        self.outbox.close(code, reason)
    }

    /// The close asked for, if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.outbox.close_reason()
    }

    /// Notes that the client sent something.
    pub fn heard(&self) {
        self.heard
            .store(u64::try_from(unix_now()).unwrap_or(0), Ordering::Relaxed);
    }

    /// Seconds since the client last sent anything.
    pub fn silent_for(&self, now: i64) -> u64 {
        u64::try_from(now)
            .unwrap_or(0)
            .saturating_sub(self.heard.load(Ordering::Relaxed))
    }

    /// When the connection's token expires (Unix seconds).
    pub fn expires(&self) -> i64 {
        self.expires.load(Ordering::Relaxed)
    }

    /// Moves the expiry on (an in-band refresh).
    pub fn set_expires(&self, at: i64) {
        self.expires.store(at, Ordering::Relaxed);
    }
}
