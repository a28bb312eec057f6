//! A simulated user's WebSocket, on fastwebsockets: the HTTP upgrade written by hand on the bound TCP stream, then
//! the stream split in two, the read half turned into a stream of frames, the write half with the client.
//!
//! fastwebsockets' reads are not cancel-safe (a read cut short mid-frame loses its place in the stream), while the
//! client waits on its socket and its timers at once. The read half is therefore owned by a stream
//! (`futures::stream::unfold`) that keeps its read in progress between polls: the client's `recv` can be dropped
//! at any moment and the next one carries on where it was. fastwebsockets answers no ping and echoes no close by
//! itself here (both off): the client does, in the body of its `select!` branch, which no timer cuts short. (A
//! reader task handing messages over a channel, tried first, cost 10–15% more CPU per delivery: a task wake-up
//! and a channel hop per message; docs/benchmarks.md.)

use std::io;
use std::pin::Pin;

use base64::Engine as _;
use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload, Role, WebSocketError, WebSocketWrite};
use futures::{Stream, StreamExt};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

/// The largest message taken from the gateway.
const MAX_MESSAGE: usize = 1 << 20;

/// The largest HTTP response head to an upgrade.
const MAX_HEAD: usize = 16 * 1024;

/// What the client reads, in order.
pub enum Inbound {
    /// A text message's bytes (UTF-8: fastwebsockets checked them; the JSON parser reads them as they are).
    Text(Vec<u8>),
    /// A frame the protocol obliges the client to send now: the pong to a ping.
    Obliged(Frame<'static>),
    /// The gateway closed, with this code (1005 if it gave none); the echo of its close is the frame to send.
    Closed(u16, Frame<'static>),
    /// The connection failed or the peer broke the protocol.
    Gone,
}

/// The frames of the read half, each read kept in progress between polls.
type Frames = Pin<Box<dyn Stream<Item = Result<Frame<'static>, WebSocketError>> + Send>>;

/// Why an upgrade failed: a short cause for the failure table.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server answered with another status than 101.
    #[error("http_{0}")]
    Status(u16),
    /// Not a WebSocket upgrade response.
    #[error("handshake")]
    Handshake,
}

/// An open connection: the write half and the read half's frames.
pub struct Ws {
    write: WebSocketWrite<OwnedWriteHalf>,
    frames: Frames,
}

impl Ws {
    /// Upgrades `tcp` to a WebSocket at `path_and_query` (e.g. `/ws?token=...`) on `host`.
    pub async fn upgrade(mut tcp: TcpStream, host: &str, path_and_query: &str) -> Result<Self, UpgradeError> {
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await?;
        // Read up to the end of the head; what the server sent after it (its first frames) is kept.
        let mut buf = Vec::with_capacity(512);
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if buf.len() > MAX_HEAD {
                return Err(UpgradeError::Handshake);
            }
            if tcp.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
        };
        check_head(&buf[..end], &key)?;
        let rest = buf.split_off(end);
        let (read, write) = tcp.into_split();
        let (mut read, write) =
            fastwebsockets::after_handshake_split(io::Cursor::new(rest).chain(read), write, Role::Client);
        read.set_max_message_size(MAX_MESSAGE);
        read.set_auto_pong(false);
        read.set_auto_close(false);
        Ok(Self {
            write,
            frames: frames(FragmentCollectorRead::new(read)),
        })
    }

    /// The next message or control frame that asks for something. Dropping the future loses nothing.
    pub async fn recv(&mut self) -> Inbound {
        loop {
            let Some(Ok(frame)) = self.frames.next().await else {
                return Inbound::Gone;
            };
            return match frame.opcode {
                // fastwebsockets hands out text only once it is known to be UTF-8.
                OpCode::Text => Inbound::Text(frame.payload.into()),
                OpCode::Ping => Inbound::Obliged(Frame::pong(frame.payload)),
                OpCode::Close => {
                    let code = frame
                        .payload
                        .get(..2)
                        .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                    Inbound::Closed(code, Frame::close_raw(frame.payload))
                }
                // Binary messages are not part of the protocol.
                OpCode::Binary | OpCode::Pong | OpCode::Continuation => continue,
            };
        }
    }

    /// The next text message, writing what the protocol obliges meanwhile; `Err` with the close code (`None` if
    /// the connection just went away). Not for `select!`: a write cut short would break the stream.
    pub async fn next_text(&mut self) -> Result<Vec<u8>, Option<u16>> {
        loop {
            match self.recv().await {
                Inbound::Text(text) => return Ok(text),
                Inbound::Obliged(frame) => self.write(frame).await.map_err(|_| None)?,
                Inbound::Closed(code, echo) => {
                    let _ = self.write(echo).await;
                    return Err(Some(code));
                }
                Inbound::Gone => return Err(None),
            }
        }
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: String) -> Result<(), WebSocketError> {
        self.write(Frame::text(Payload::Owned(text.into_bytes()))).await
    }

    /// Sends a close frame with `code` and `reason`.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), WebSocketError> {
        self.write(Frame::close(code, reason.as_bytes())).await
    }

    /// Writes one frame (masked, as a client's must be).
    pub async fn write(&mut self, frame: Frame<'_>) -> Result<(), WebSocketError> {
        self.write.write_frame(frame).await
    }
}

/// Checks the server's answer to the upgrade: 101, `Upgrade: websocket`, and the accept key for `key`.
fn check_head(head: &[u8], key: &str) -> Result<(), UpgradeError> {
    let head = std::str::from_utf8(head).map_err(|_| UpgradeError::Handshake)?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or(UpgradeError::Handshake)?;
    if status != 101 {
        return Err(UpgradeError::Status(status));
    }
    let mut accept = Sha1::new();
    accept.update(key.as_bytes());
    accept.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let expected = base64::engine::general_purpose::STANDARD.encode(accept.finalize());
    let (mut upgrade, mut accepted) = (false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade = value.eq_ignore_ascii_case("websocket");
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accepted = value == expected;
        }
    }
    if upgrade && accepted {
        Ok(())
    } else {
        Err(UpgradeError::Handshake)
    }
}

/// The frames `read` reads, as a stream that keeps a read in progress between polls. Nothing is obliged of the
/// read half (pongs and close echoes are the client's), so its callback for obliged frames is never called.
fn frames<S: AsyncRead + Unpin + Send + 'static>(read: FragmentCollectorRead<S>) -> Frames {
    Box::pin(futures::stream::unfold(read, |mut read| async move {
        let mut nothing_obliged = |_: Frame<'static>| async { Ok::<(), io::Error>(()) };
        let frame = read.read_frame(&mut nothing_obliged).await;
        // The client stops reading after a failure or a close; the stream itself never ends.
        Some((frame, read))
    }))
}
