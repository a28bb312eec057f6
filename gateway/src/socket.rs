//! A connection's inbound side: whole client messages from the socket, holding no buffer while it is idle.
//!
//! The reader waits for the socket to be readable, reads into a buffer owned by the worker thread (not by the
//! connection), decodes every complete frame there and keeps only the bytes of a frame cut short, usually none.
//! An idle connection therefore holds no read buffer at all, where a buffered reader would hold kilobytes each.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::frame::{self, FrameError, Message, OpCode, Reassembly};

/// Bytes read per `read` call, into the worker thread's buffer.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    /// The worker thread's read buffer, lent to one connection at a time and never across an `await`.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// A whole message from the client, owned (it outlives the read buffer it was decoded from).
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text message.
    Text(String),
    /// A binary message (the protocol has none; it is answered with an error).
    Binary,
    /// A ping; the pong carries the same payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// The client closes, with its code if it gave one.
    Close(Option<u16>),
}

/// Why reading ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// The peer closed the TCP connection or it failed.
    Gone,
    /// The peer broke the protocol; close with this code.
    Protocol(FrameError),
}

/// Reads whole messages from one connection.
pub struct Reader {
    tcp: Arc<TcpStream>,
    /// Bytes of a frame not complete yet (empty, holding nothing, between frames).
    partial: Vec<u8>,
    messages: Reassembly,
    /// Messages decoded but not yet handed out (several can arrive in one read).
    ready: VecDeque<Incoming>,
    /// Largest message, all fragments together.
    max: usize,
}

impl Reader {
    /// A reader over `tcp`, starting with `prefix` (bytes read past the HTTP handshake) and capping messages at
    /// `max` bytes.
    pub fn new(tcp: Arc<TcpStream>, prefix: &[u8], max: usize) -> Self {
        Self {
            tcp,
            partial: prefix.to_vec(),
            messages: Reassembly::default(),
            ready: VecDeque::new(),
            max,
        }
    }

    /// Bytes this reader holds right now (a cut frame, a message being put together).
    pub fn held(&self) -> usize {
        self.partial.capacity() + self.messages.held()
    }

    /// The next whole message, waiting for the socket when none is decoded yet.
    pub async fn next(&mut self) -> Result<Incoming, ReadEnd> {
        loop {
            if let Some(message) = self.ready.pop_front() {
                if self.ready.is_empty() && self.ready.capacity() > 4 {
                    self.ready = VecDeque::new();
                }
                return Ok(message);
            }
            if !self.partial.is_empty() {
                // Bytes left from the handshake, or a frame cut short: they may hold whole frames already.
                let mut partial = std::mem::take(&mut self.partial);
                let used = self.decode(&mut partial)?;
                partial.drain(..used);
                self.partial = partial;
                if !self.ready.is_empty() {
                    continue;
                }
            }
            self.tcp.readable().await.map_err(|_| ReadEnd::Gone)?;
            self.read_once()?;
        }
    }

    /// Reads what the socket has (without waiting) and decodes it.
    fn read_once(&mut self) -> Result<(), ReadEnd> {
        READ_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            if self.partial.is_empty() {
                // The usual case: decode straight from the thread's buffer; keep only a cut frame's bytes.
                let n = match self.tcp.try_read(&mut buf[..]) {
                    Ok(0) => return Err(ReadEnd::Gone),
                    Ok(n) => n,
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                    Err(_) => return Err(ReadEnd::Gone),
                };
                let used = self.decode(&mut buf[..n])?;
                if used < n {
                    self.partial = buf[used..n].to_vec();
                }
                Ok(())
            } else {
                let n = match self.tcp.try_read(&mut buf[..]) {
                    Ok(0) => return Err(ReadEnd::Gone),
                    Ok(n) => n,
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                    Err(_) => return Err(ReadEnd::Gone),
                };
                let mut partial = std::mem::take(&mut self.partial);
                partial.extend_from_slice(&buf[..n]);
                drop(buf);
                let used = self.decode(&mut partial)?;
                partial.drain(..used);
                // Give back what a large frame needed once it is through.
                if partial.is_empty() {
                    partial = Vec::new();
                }
                self.partial = partial;
                Ok(())
            }
        })
    }

    /// Decodes every whole frame at the start of `bytes` into `ready`; returns how many bytes they took.
    fn decode(&mut self, bytes: &mut [u8]) -> Result<usize, ReadEnd> {
        let mut at = 0;
        // A frame's header is at most 14 bytes: a frame may carry a whole message plus its header.
        let max_frame = self.max + 14;
        loop {
            let Some(raw) = frame::decode(&mut bytes[at..], max_frame).map_err(ReadEnd::Protocol)? else {
                return Ok(at);
            };
            let start = at;
            at += raw.len;
            let payload = &bytes[start + raw.payload.start..start + raw.payload.end];
            let message = self
                .messages
                .push(raw.fin, raw.opcode, payload, self.max)
                .map_err(ReadEnd::Protocol)?;
            let Some(message) = message else { continue };
            let incoming = match message {
                Message::Text(text) => Incoming::Text(text.into_owned()),
                Message::Binary(_) => Incoming::Binary,
                Message::Ping(data) => Incoming::Ping(data.to_vec()),
                Message::Pong => Incoming::Pong,
                Message::Close(close) => Incoming::Close(close.map(|(code, _)| code)),
            };
            self.ready.push_back(incoming);
            if raw.opcode == OpCode::Close {
                // Nothing after a close frame counts.
                return Ok(bytes.len());
            }
        }
    }
}
