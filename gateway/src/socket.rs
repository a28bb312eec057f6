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
    /// The client closes, with its code and reason if it gave them.
    Close(Option<(u16, String)>),
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
    decoder: Decoder,
}

impl Reader {
    /// A reader over `tcp`, starting with `prefix` (bytes read past the HTTP handshake) and capping messages at
    /// `max` bytes.
    pub fn new(tcp: Arc<TcpStream>, prefix: &[u8], max: usize) -> Self {
        let mut decoder = Decoder::new(max);
        decoder.feed(&mut prefix.to_vec());
        Self { tcp, decoder }
    }

    /// Bytes this reader holds right now (a cut frame, a message being put together).
    pub fn held(&self) -> usize {
        self.decoder.held()
    }

    /// The next whole message, waiting for the socket when none is decoded yet.
    pub async fn next(&mut self) -> Result<Incoming, ReadEnd> {
        loop {
            if let Some(next) = self.decoder.next_message() {
                return next.map_err(ReadEnd::Protocol);
            }
            if self.decoder.closed() {
                // Everything after the client's close is ignored; there is nothing more to hand out.
                return Err(ReadEnd::Gone);
            }
            self.tcp.readable().await.map_err(|_| ReadEnd::Gone)?;
            self.read_once()?;
        }
    }

    /// Reads what the socket has (without waiting) and decodes it straight from the thread's buffer.
    fn read_once(&mut self) -> Result<(), ReadEnd> {
        READ_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            let n = match self.tcp.try_read(&mut buf[..]) {
                Ok(0) => return Err(ReadEnd::Gone),
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Err(ReadEnd::Gone),
            };
            self.decoder.feed(&mut buf[..n]);
            Ok(())
        })
    }
}

/// The inbound codec between reads: bytes as they arrive in, whole messages out, in order. It does no I/O, so
/// the tests and the fuzz targets drive exactly what a connection runs.
///
/// It keeps only the bytes of a frame cut short (none between frames) and a fragmented message under way. A
/// protocol fault is handed out after the messages decoded before it, even from the same read, so what the
/// client sent before its fault is handled whatever way TCP cut the bytes.
#[derive(Debug)]
pub struct Decoder {
    /// Bytes of a frame not complete yet (empty, holding nothing, between frames).
    partial: Vec<u8>,
    messages: Reassembly,
    /// Messages decoded but not yet handed out (several can arrive in one read).
    ready: VecDeque<Incoming>,
    /// The fault that ended decoding, handed out once `ready` is empty.
    fault: Option<FrameError>,
    /// A close frame was decoded: nothing after it counts.
    closed: bool,
    /// Largest message, all fragments together; also the largest frame.
    max: usize,
}

impl Decoder {
    /// A decoder capping messages (and so frames) at `max` bytes of payload.
    pub fn new(max: usize) -> Self {
        Self {
            partial: Vec::new(),
            messages: Reassembly::default(),
            ready: VecDeque::new(),
            fault: None,
            closed: false,
            max,
        }
    }

    /// Bytes held right now (a cut frame, a message being put together).
    pub fn held(&self) -> usize {
        self.partial.capacity() + self.messages.held()
    }

    /// Whether the client's close frame was decoded.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// The next decoded message; then, once they are all out, the fault that ended decoding (again on every
    /// call). `None`: more bytes are needed.
    pub fn next_message(&mut self) -> Option<Result<Incoming, FrameError>> {
        if let Some(message) = self.ready.pop_front() {
            if self.ready.is_empty() && self.ready.capacity() > 4 {
                self.ready = VecDeque::new();
            }
            return Some(Ok(message));
        }
        self.fault.map(Err)
    }

    /// Takes bytes just received (unmasking them in place) and decodes every whole frame; keeps a cut frame's
    /// bytes for the next call. Bytes after a close or a fault are ignored.
    pub fn feed(&mut self, bytes: &mut [u8]) {
        if self.closed || self.fault.is_some() {
            return;
        }
        if self.partial.is_empty() {
            // The usual case: decode straight from the caller's buffer; keep only a cut frame's bytes.
            let used = self.decode(bytes);
            if used < bytes.len() && !self.closed && self.fault.is_none() {
                self.partial = bytes[used..].to_vec();
            }
            return;
        }
        let mut partial = std::mem::take(&mut self.partial);
        partial.extend_from_slice(bytes);
        let used = self.decode(&mut partial);
        partial.drain(..used);
        // Give back what a large frame needed once it is through.
        if !partial.is_empty() && !self.closed && self.fault.is_none() {
            self.partial = partial;
        }
    }

    /// Decodes every whole frame at the start of `bytes` into `ready`; returns how many bytes they took. A fault
    /// is kept in `fault`.
    fn decode(&mut self, bytes: &mut [u8]) -> usize {
        let mut at = 0;
        loop {
            let raw = match frame::decode(&mut bytes[at..], self.max) {
                Ok(Some(raw)) => raw,
                Ok(None) => return at,
                Err(fault) => {
                    self.fault = Some(fault);
                    return at;
                }
            };
            let start = at;
            at += raw.len;
            let payload = &bytes[start + raw.payload.start..start + raw.payload.end];
            let message = match self.messages.push(raw.fin, raw.opcode, payload, self.max) {
                Ok(Some(message)) => message,
                Ok(None) => continue,
                Err(fault) => {
                    self.fault = Some(fault);
                    return at;
                }
            };
            self.ready.push_back(match message {
                Message::Text(text) => Incoming::Text(text.into_owned()),
                Message::Binary(_) => Incoming::Binary,
                Message::Ping(data) => Incoming::Ping(data.to_vec()),
                Message::Pong => Incoming::Pong,
                Message::Close(close) => Incoming::Close(close.map(|(code, reason)| (code, reason.to_owned()))),
            });
            if raw.opcode == OpCode::Close {
                // Nothing after a close frame counts.
                self.closed = true;
                return bytes.len();
            }
        }
    }
}
