//! What the rest of the gateway holds of a connection: its outbound queue and the means to close it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use natter_proto::RoomId;
use natter_proto::frame::UserRef;
use tokio::sync::{mpsc, watch};

/// A connection's id, unique within this gateway process.
pub type ConnId = u64;

/// Normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// The client kept breaking the protocol.
pub const CLOSE_POLICY: u16 = 1008;
/// A message larger than the configured maximum (over all its fragments).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// The gateway is restarting (drain): reconnect, preferably elsewhere, after the hinted delay.
pub const CLOSE_RESTART: u16 = 1012;
/// The gateway cannot reach what it needs (NATS).
pub const CLOSE_UNAVAILABLE: u16 = 1011;
/// The access token expired and was not refreshed in-band.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// The client did not read fast enough; its queue overflowed.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// No frame (and no pong) for longer than the idle timeout.
pub const CLOSE_IDLE: u16 = 4009;

/// One item of a connection's outbound queue.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A chat message frame, shared by every member of the room. The writer drops it if the client already got
    /// this sequence of the room (a replay and the live feed can overlap).
    Message {
        /// The room.
        room: RoomId,
        /// The message's sequence.
        seq: u64,
        /// The encoded frame.
        frame: Bytes,
        /// When the gateway received it from NATS (for the fan-out latency metric).
        received: Instant,
    },
    /// Any other encoded text frame.
    Frame(Bytes),
    /// The client left a room: forget its last delivered sequence.
    Forget(RoomId),
    /// A pong or close frame the protocol obliges the server to send.
    Control {
        /// The opcode (pong or close).
        opcode: fastwebsockets::OpCode,
        /// The payload.
        payload: Vec<u8>,
    },
}

/// A reason to close a connection, set by whoever decides it (slow-consumer detection, drain, errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// The WebSocket close code.
    pub code: u16,
    /// Text for the close frame.
    pub reason: String,
}

/// A handle to a connection, held by the rooms it is in.
#[derive(Clone)]
pub struct Peer {
    /// The connection's id.
    pub conn: ConnId,
    /// Its user.
    pub user: UserRef,
    /// Its bounded outbound queue; the writer task owns the receiving end and ends when every sender is gone.
    queue: mpsc::Sender<Outbound>,
    /// Set once to close the connection; the writer watches it.
    closer: Arc<watch::Sender<Option<CloseReason>>>,
}

impl Peer {
    /// A handle over a queue and a closer.
    pub fn new(
        conn: ConnId,
        user: UserRef,
        queue: mpsc::Sender<Outbound>,
        closer: Arc<watch::Sender<Option<CloseReason>>>,
    ) -> Self {
        Self {
            conn,
            user,
            queue,
            closer,
        }
    }

    /// Queues a frame without waiting. A full queue means the client is not reading: it is closed as a slow
    /// consumer rather than slowing the room or growing memory. Returns whether the frame was queued.
    pub fn push(&self, out: Outbound) -> bool {
        match self.queue.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a frame, waiting for room in the queue. For the connection's own reader only (a replay longer than
    /// the queue), never for fan-out, which must not wait on one client. Returns whether it was queued.
    pub async fn send(&self, out: Outbound) -> bool {
        self.queue.send(out).await.is_ok()
    }

    /// Closes the connection as a slow consumer.
    pub fn slow(&self) {
        if self.close(CLOSE_SLOW_CONSUMER, "too slow: outbound queue full") {
            ::metrics::counter!(crate::metrics::SLOW_CONSUMERS).increment(1);
        }
    }

    /// Asks the connection to close with `code`, unless a close was already asked for. Returns whether this call
    /// decided the close.
    pub fn close(&self, code: u16, reason: &str) -> bool {
        self.closer.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(CloseReason {
                code,
                reason: reason.to_owned(),
            });
            true
        })
    }
}
