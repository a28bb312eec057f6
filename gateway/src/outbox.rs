//! A connection's outbound side: complete WebSocket frames on their way to one socket.
//!
//! Whoever has a frame for the client (a room task fanning out, the connection's own session) pushes it here.
//! When nothing is queued and the socket takes the bytes, the push writes them at once, on the pusher's thread:
//! a delivery then costs one `write` and no task wake-up. Otherwise the frame waits in the queue and the
//! connection's writer, woken once, writes everything queued in one `writev` as soon as the socket is writable.
//! A queue that reaches its limit means the client is not reading: it is closed as a slow consumer (4008) rather
//! than slowing its rooms or growing without bound.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use natter_proto::{RoomId, close};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::frame;
use crate::metrics;

/// Most frames handed to one `writev`.
const MAX_IOVECS: usize = 64;

/// Why and how a connection closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// The WebSocket close code.
    pub code: u16,
    /// Text for the close frame.
    pub reason: String,
}

/// One queued frame, with when its message arrived from NATS (for the delivery-latency histogram).
struct Queued {
    frame: Bytes,
    received: Option<Instant>,
}

#[derive(Default)]
struct State {
    /// Frames not yet written; the first may be partly written (`offset` bytes of it).
    queue: VecDeque<Queued>,
    offset: usize,
    /// Per room, the last message sequence queued: a replay and the live feed may overlap, each goes out once.
    delivered: Delivered,
    /// Set once: the connection is to close with this.
    close: Option<CloseReason>,
    /// The socket failed or the connection ended: nothing more is written.
    dead: bool,
}

/// Per room, the last message sequence queued. A connection is in one room or a few: a short list, searched
/// without hashing, is both smaller and faster than a map.
#[derive(Default)]
struct Delivered(Vec<(RoomId, u64)>);

impl Delivered {
    fn last(&self, room: &RoomId) -> u64 {
        self.0.iter().find(|(r, _)| r == room).map_or(0, |(_, seq)| *seq)
    }

    /// Records `seq` as queued for `room`; false if it, or a later one, was already.
    fn advance(&mut self, room: &RoomId, seq: u64) -> bool {
        match self.0.iter_mut().find(|(r, _)| r == room) {
            Some((_, last)) if seq <= *last => false,
            Some((_, last)) => {
                *last = seq;
                true
            }
            None => {
                self.0.push((room.clone(), seq));
                true
            }
        }
    }

    fn forget(&mut self, room: &RoomId) {
        self.0.retain(|(r, _)| r != room);
    }
}

/// The outbound side of one connection. Shared by the connection's task and every room it is in.
pub struct Outbox {
    /// The socket; the connection's reader uses the same one (reads and writes are independent).
    tcp: Arc<TcpStream>,
    state: Mutex<State>,
    /// Wakes the connection's writer: bytes are queued, or a close was asked for.
    wake: Notify,
    /// Wakes patient pushers (a replay) when the queue drained.
    drained: Notify,
    /// Most frames queued before the client counts as too slow.
    limit: usize,
}

impl Outbox {
    /// An outbox over `tcp` that holds at most `limit` unwritten frames.
    pub fn new(tcp: Arc<TcpStream>, limit: usize) -> Self {
        Self {
            tcp,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            drained: Notify::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves a queue of whole frames; it is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Frames waiting to be written (the socket did not take them yet).
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Queues a frame (written at once when the socket takes it). Returns whether it was taken; a full queue
    /// closes the connection as a slow consumer.
    pub fn push(&self, frame: Bytes) -> bool {
        let mut state = self.lock();
        self.push_locked(&mut state, frame, None)
    }

    /// Queues a room's message frame unless that sequence (or a later one) of the room went out already.
    pub fn push_message(&self, room: &RoomId, seq: u64, frame: Bytes, received: Instant) -> bool {
        let mut state = self.lock();
        if !state.delivered.advance(room, seq) {
            return true;
        }
        self.push_locked(&mut state, frame, Some(received))
    }

    /// Queues a batch of a room's message frames (oldest first), skipping sequences that went out already, and
    /// writes as many as the socket takes at once in one `writev`. Returns whether the connection took them.
    pub fn push_messages(&self, room: &RoomId, frames: &[(u64, Bytes)], received: Instant) -> bool {
        let mut state = self.lock();
        if state.dead || state.close.is_some() {
            return false;
        }
        let last = state.delivered.last(room);
        let Some(newest) = frames.last().map(|(seq, _)| *seq).filter(|seq| *seq > last) else {
            return true;
        };
        // Frames come in sequence order: those after `last` are a tail.
        let fresh = &frames[frames.partition_point(|(seq, _)| *seq <= last)..];
        state.delivered.advance(room, newest);
        let mut rest = fresh;
        if state.queue.is_empty() {
            let written = if let [(_, only)] = fresh {
                // One frame (the usual case): a plain write, cheaper in the kernel than a vector of one.
                self.tcp.try_write(only)
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let count = fresh.len().min(MAX_IOVECS);
                for (slice, (_, frame)) in slices.iter_mut().zip(fresh.iter()) {
                    *slice = IoSlice::new(frame);
                }
                self.tcp.try_write_vectored(&slices[..count])
            };
            match written {
                Ok(mut n) => {
                    while let Some((_, first)) = rest.first() {
                        if n < first.len() {
                            break;
                        }
                        n -= first.len();
                        record_latency(Some(received));
                        rest = &rest[1..];
                    }
                    state.offset = n;
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    state.dead = true;
                    self.wake.notify_one();
                    return false;
                }
            }
        }
        if rest.is_empty() {
            return true;
        }
        if state.queue.len() + rest.len() > self.limit {
            self.close_locked(&mut state, close::SLOW_CONSUMER, "too slow: outbound queue full");
            return false;
        }
        for (_, frame) in rest {
            state.queue.push_back(Queued {
                frame: frame.clone(),
                received: Some(received),
            });
        }
        self.wake.notify_one();
        true
    }

    /// Queues a frame (a room's message when `message` is given), waiting while the queue is full instead of
    /// counting the client slow: for a connection's own replay, which may be longer than the queue. Returns
    /// whether it was taken.
    pub async fn push_patiently(&self, message: Option<(&RoomId, u64)>, frame: Bytes) -> bool {
        loop {
            let drained = self.drained.notified();
            {
                let mut state = self.lock();
                if state.dead || state.close.is_some() {
                    return false;
                }
                if state.queue.len() < self.limit {
                    if let Some((room, seq)) = message
                        && !state.delivered.advance(room, seq)
                    {
                        return true;
                    }
                    return self.push_locked(&mut state, frame, message.map(|_| Instant::now()));
                }
            }
            drained.await;
        }
    }

    /// Records that the client already holds a room's messages up to `seq` (a rejoin's `since`): none of them is
    /// queued, whether a replay or the live feed brings it.
    pub fn holds_through(&self, room: &RoomId, seq: u64) {
        self.lock().delivered.advance(room, seq);
    }

    /// Forgets a room's last sequence (the client left it; a later join starts afresh).
    pub fn forget(&self, room: &RoomId) {
        self.lock().delivered.forget(room);
    }

    fn push_locked(&self, state: &mut State, frame: Bytes, received: Option<Instant>) -> bool {
        if state.dead || state.close.is_some() {
            return false;
        }
        if state.queue.is_empty() {
            match self.tcp.try_write(&frame) {
                Ok(n) if n == frame.len() => {
                    record_latency(received);
                    return true;
                }
                Ok(n) => state.offset = n,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    state.dead = true;
                    self.wake.notify_one();
                    return false;
                }
            }
            state.queue.push_back(Queued { frame, received });
            self.wake.notify_one();
            return true;
        }
        if state.queue.len() >= self.limit {
            self.close_locked(state, close::SLOW_CONSUMER, "too slow: outbound queue full");
            return false;
        }
        state.queue.push_back(Queued { frame, received });
        true
    }

    /// Asks for the connection to close with `code` after what is queued (a slow consumer's queue is dropped).
    /// Returns whether this call decided the close.
    pub fn close(&self, code: u16, reason: &str) -> bool {
        let mut state = self.lock();
        self.close_locked(&mut state, code, reason)
    }

    fn close_locked(&self, state: &mut State, code: u16, reason: &str) -> bool {
        if state.close.is_some() || state.dead {
            return false;
        }
        if code == close::SLOW_CONSUMER {
            // The queue is why it closes: the close frame goes next, after the frame being written.
            let keep = usize::from(state.offset > 0);
            state.queue.truncate(keep);
            ::metrics::counter!(metrics::SLOW_CONSUMERS).increment(1);
        }
        state.queue.push_back(Queued {
            frame: frame::close(code, reason),
            received: None,
        });
        state.close = Some(CloseReason {
            code,
            reason: reason.to_owned(),
        });
        self.wake.notify_one();
        self.drained.notify_waiters();
        true
    }

    /// The close asked for, if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.lock().close.clone()
    }

    /// Marks the connection over: nothing more is written or queued, and patient pushers give up.
    pub fn shut(&self) {
        let mut state = self.lock();
        state.dead = true;
        state.queue.clear();
        drop(state);
        self.drained.notify_waiters();
    }

    /// The connection's writer: writes what is queued whenever woken, and returns once the close frame is out
    /// (or the socket failed). Runs inside the connection's task.
    pub async fn run(&self) {
        loop {
            let woken = self.wake.notified();
            match self.flush() {
                Flush::Done => {}
                Flush::Blocked => {
                    // The socket's buffer is full: wait until it takes more (a slow consumer eventually fills the
                    // queue instead, and is closed).
                    if self.tcp.writable().await.is_err() {
                        self.lock().dead = true;
                        return;
                    }
                    continue;
                }
                Flush::Closed | Flush::Dead => return,
            }
            woken.await;
        }
    }

    /// Writes as much of the queue as the socket takes now.
    fn flush(&self) -> Flush {
        let mut state = self.lock();
        loop {
            if state.dead {
                return Flush::Dead;
            }
            if state.queue.is_empty() {
                self.drained.notify_waiters();
                return if state.close.is_some() {
                    Flush::Closed
                } else {
                    Flush::Done
                };
            }
            let written = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                for (i, queued) in state.queue.iter().take(MAX_IOVECS).enumerate() {
                    let bytes = if i == 0 {
                        &queued.frame[state.offset..]
                    } else {
                        &queued.frame[..]
                    };
                    slices[i] = IoSlice::new(bytes);
                    count += 1;
                }
                self.tcp.try_write_vectored(&slices[..count])
            };
            match written {
                Ok(mut n) => {
                    while n > 0 {
                        let Some(front) = state.queue.front() else { break };
                        let left = front.frame.len() - state.offset;
                        if n >= left {
                            n -= left;
                            state.offset = 0;
                            if let Some(done) = state.queue.pop_front() {
                                record_latency(done.received);
                            }
                        } else {
                            state.offset += n;
                            n = 0;
                        }
                    }
                    if state.queue.len() < self.limit / 2 {
                        self.drained.notify_waiters();
                    }
                    if state.queue.capacity() > 64 && state.queue.is_empty() {
                        // A burst grew the queue: give the memory back while the connection idles.
                        state.queue = VecDeque::new();
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Flush::Blocked,
                Err(_) => {
                    state.dead = true;
                    return Flush::Dead;
                }
            }
        }
    }

    /// Waits (at most `grace`) for the writer to get the close frame out, for a connection ending from its reader.
    pub async fn finish(&self, grace: Duration) {
        let _ = tokio::time::timeout(grace, self.run()).await;
        self.shut();
    }
}

enum Flush {
    /// Everything queued is written.
    Done,
    /// The socket takes no more for now.
    Blocked,
    /// Everything, the close frame last, is written.
    Closed,
    /// The socket failed.
    Dead,
}

fn record_latency(received: Option<Instant>) {
    if let Some(received) = received {
        metrics::hot().fanout_latency.record(received.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// An outbox over one end of a loopback connection, and the other end, which reads what it writes.
    async fn pair() -> (Outbox, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (Outbox::new(Arc::new(server), 64), client)
    }

    /// Everything the outbox wrote before its connection ended.
    async fn written(outbox: Outbox, mut reader: TcpStream) -> String {
        outbox.close(1000, "");
        outbox.finish(Duration::from_secs(5)).await;
        drop(outbox);
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).await.expect("read");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn frame(seq: u64) -> Bytes {
        Bytes::from(format!("<{seq}>"))
    }

    #[tokio::test]
    async fn a_rejoin_held_through_a_position_gets_nothing_up_to_it_again() {
        let (outbox, reader) = pair().await;
        let room = RoomId::parse("r1").expect("room id");
        let other = RoomId::parse("r2").expect("room id");
        // The client rejoined holding the room up to 7; the room here is still at 4 and delivers 5 to 9 live.
        outbox.holds_through(&room, 7);
        assert!(outbox.push_patiently(Some((&room, 6)), frame(6)).await);
        let live: Vec<(u64, Bytes)> = (5..=9).map(|seq| (seq, frame(seq))).collect();
        assert!(outbox.push_messages(&room, &live[..3], Instant::now()));
        assert!(outbox.push_message(&room, 8, frame(8), Instant::now()));
        assert!(outbox.push_messages(&room, &live[3..], Instant::now()));
        // Another room's positions are its own.
        assert!(outbox.push_message(&other, 3, frame(3), Instant::now()));
        let out = written(outbox, reader).await;
        let frames: Vec<&str> = out
            .split_inclusive('>')
            .filter_map(|s| s.rfind('<').map(|at| &s[at..]))
            .collect();
        assert_eq!(frames, ["<8>", "<9>", "<3>"], "{out:?}");
    }
}
