//! One client connection: authentication at the upgrade, then a reader and a writer task.
//!
//! The reader parses frames (capping the whole message, fragments included), enforces rate limits and does
//! what each frame asks. The writer owns the socket's write half and sends, in order, what the outbound queue
//! holds, plus pings. The first of the two to end ends the other.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket, WebSocketError};
use hyper_util::rt::TokioIo;
use natter_proto::bus::{RoomAccess, StoredMessage, TypingEvent, message_dedup_id};
use natter_proto::frame::{ClientFrame, ServerFrame, UserRef};
use natter_proto::token::AccessClaims;
use natter_proto::{ClientMsgId, RoomId, subject};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};

use crate::fanout::{encode, message_frame};
use crate::metrics;
use crate::session::*;
use crate::state::Gateway;

/// What a connection's socket can be: the plain TCP stream, or hyper's upgraded wrapper when bytes were already
/// buffered past the handshake.
trait Socket: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Socket for T {}

/// The subprotocol a browser offers next to its token.
pub const SUBPROTOCOL: &str = "natter.v1";

fn refuse(status: StatusCode, reason: &'static str, message: &str) -> Response {
    ::metrics::counter!(metrics::AUTH_FAILURES, "reason" => reason).increment(1);
    let body = serde_json::json!({"error": {"code": reason, "message": message}}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The token: `?token=…`, or an offered subprotocol other than [`SUBPROTOCOL`].
fn token_of(req: &Request) -> (Option<String>, bool) {
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("token=").map(|t| t.to_owned()))
    });
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .collect();
    let wants_subprotocol = offered.iter().any(|p| p == SUBPROTOCOL);
    let from_protocol = offered.into_iter().find(|p| p != SUBPROTOCOL && !p.is_empty());
    (from_query.or(from_protocol), wants_subprotocol)
}

/// `GET /ws`: checks origin and token, then upgrades.
pub async fn upgrade(
    State(gw): State<Gateway>,
    ConnectInfo(peer_addr): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    if gw.draining.load(Ordering::Relaxed) {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this gateway is shutting down; use another",
        );
    }
    if let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && !gw.origin_allowed(origin)
    {
        return refuse(StatusCode::FORBIDDEN, "origin", "this origin may not connect");
    }
    let (token, wants_subprotocol) = token_of(&req);
    let Some(token) = token else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "pass the access token as ?token= or a subprotocol",
        );
    };
    let claims = match gw.verifier.verify(&token).await {
        Ok(claims) => claims,
        Err(err) => return refuse(StatusCode::UNAUTHORIZED, err.code(), &err.to_string()),
    };
    let Some(slot) = gw.admit(&claims.sub) else {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "connection limit reached",
        );
    };
    let (response, upgraded) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(err) => {
            return (StatusCode::BAD_REQUEST, format!("not a WebSocket upgrade: {err}")).into_response();
        }
    };
    tokio::spawn(async move {
        match upgraded.await {
            Ok(ws) => {
                // Unwrap hyper's upgraded stream back into the TCP stream when nothing is buffered past the
                // handshake (the usual case): hyper's wrapper keeps its whole read buffer alive, which would
                // cost every idle connection kilobytes.
                let upgraded = ws.into_inner().into_inner();
                match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
                    Ok(parts) if parts.read_buf.is_empty() => {
                        let tcp = parts.io.into_inner();
                        serve(gw, WebSocket::after_handshake(tcp, Role::Server), claims, slot).await;
                    }
                    Ok(parts) => {
                        let socket = Prefixed {
                            prefix: parts.read_buf,
                            io: parts.io.into_inner(),
                        };
                        serve(gw, WebSocket::after_handshake(socket, Role::Server), claims, slot).await;
                    }
                    Err(upgraded) => {
                        serve(
                            gw,
                            WebSocket::after_handshake(TokioIo::new(upgraded), Role::Server),
                            claims,
                            slot,
                        )
                        .await;
                    }
                }
            }
            Err(err) => tracing::debug!(%peer_addr, error = %err, "upgrade did not complete"),
        }
    });
    let mut response = response.map(|_| Body::empty());
    if wants_subprotocol {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    }
    response
}

/// A TCP stream with bytes already read from it (by hyper, past the handshake) served first.
struct Prefixed {
    prefix: Bytes,
    io: tokio::net::TcpStream,
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A token-bucket rate limit: `rate` per second with a burst of twice that.
struct Bucket {
    tokens: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        Self {
            tokens: f64::from(rate) * 2.0,
            rate: f64::from(rate),
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate * 2.0);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Runs an upgraded connection to its end.
async fn serve<S: Socket>(gw: Gateway, ws: WebSocket<S>, claims: AccessClaims, slot: crate::state::Slot) {
    let conn = slot.conn;
    let user = UserRef {
        id: claims.sub.clone(),
        name: claims.name.clone(),
    };
    let (mut read, write) = ws.split(tokio::io::split);
    read.set_auto_close(true);
    read.set_auto_pong(true);
    // Frames are capped here; whole messages (fragments added up) are capped by the reader below.
    read.set_max_message_size(gw.config.max_message_bytes + 1);

    let (queue_tx, queue_rx) = mpsc::channel(gw.config.outbound_queue);
    let closer = Arc::new(watch::channel(None).0);
    // Receivers first: a close asked for from now on (a drain on another thread) is seen.
    let writer_closer = closer.subscribe();
    let mut close_asked = closer.subscribe();
    let peer = Peer::new(conn, user.clone(), queue_tx, closer.clone());
    gw.register(conn, peer.clone());
    // An upgrade that passed the draining check just before the drain began would otherwise miss it.
    if gw.draining.load(Ordering::Relaxed) {
        peer.close(CLOSE_RESTART, "gateway restarting; reconnect");
    }

    let hello = ServerFrame::Hello {
        conn: conn.to_string(),
        gateway: gw.id.clone(),
        user: user.clone(),
    };
    peer.push(Outbound::Frame(encode(&hello)));

    let writer = tokio::spawn(write_loop(write, queue_rx, writer_closer, gw.config.ping_interval));
    let mut session = Session {
        gw: gw.clone(),
        peer: peer.clone(),
        claims,
        rooms: HashMap::new(),
        sends: Bucket::new(gw.config.sends_per_second),
        typing: Bucket::new(gw.config.typing_per_second),
        bad_frames: 0,
    };
    let mut writer = writer;
    let writer_done = tokio::select! {
        reason = session.read_loop(&mut read) => {
            // The reader is done either way; a read error needs the writer ended too.
            let reason = reason.unwrap_or(CloseReason { code: CLOSE_NORMAL, reason: String::new() });
            peer.close(reason.code, &reason.reason);
            false
        }
        _ = close_asked.changed() => false,
        _ = &mut writer => true,
    };
    // Give the writer a moment to send what is queued and the close frame; a client too slow to take even that
    // (its socket buffer full) is cut off.
    if !writer_done && tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
        writer.abort();
    }
    session.leave_all();
    gw.unregister(conn);
    drop(slot);
    let code = closer.borrow().as_ref().map_or(CLOSE_NORMAL, |r| r.code);
    ::metrics::counter!(metrics::CONNECTIONS_CLOSED, "code" => code.to_string()).increment(1);
}

/// Writes queued frames in order, pings on schedule, and the close frame when one is asked for.
async fn write_loop<S: Socket>(
    mut ws: fastwebsockets::WebSocketWrite<WriteHalf<S>>,
    mut queue: mpsc::Receiver<Outbound>,
    mut closer: watch::Receiver<Option<CloseReason>>,
    ping_every: Duration,
) {
    let mut delivered: HashMap<RoomId, u64> = HashMap::new();
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    loop {
        let result = tokio::select! {
            biased;
            changed = closer.changed() => {
                let reason = closer.borrow().clone();
                let reason = match (changed, reason) {
                    (Ok(()), Some(reason)) => reason,
                    _ => CloseReason { code: CLOSE_NORMAL, reason: String::new() },
                };
                // What was queued before the close goes out first (an error explaining it, say); not for a slow
                // consumer, whose full queue is the reason it is closed.
                if reason.code != CLOSE_SLOW_CONSUMER {
                    while let Ok(out) = queue.try_recv() {
                        if let Outbound::Frame(frame) | Outbound::Message { frame, .. } = out
                            && ws.write_frame(Frame::text(Payload::Borrowed(&frame))).await.is_err()
                        {
                            return;
                        }
                    }
                }
                let _ = ws.write_frame(Frame::close(reason.code, reason.reason.as_bytes())).await;
                return;
            }
            out = queue.recv() => match out {
                Some(Outbound::Message { room, seq, frame, received }) => {
                    let last = delivered.entry(room).or_insert(0);
                    if seq <= *last {
                        continue;
                    }
                    *last = seq;
                    let result = ws.write_frame(Frame::text(Payload::Borrowed(&frame))).await;
                    ::metrics::histogram!(metrics::FANOUT_LATENCY).record(received.elapsed().as_secs_f64());
                    result
                }
                Some(Outbound::Frame(frame)) => ws.write_frame(Frame::text(Payload::Borrowed(&frame))).await,
                Some(Outbound::Forget(room)) => {
                    delivered.remove(&room);
                    continue;
                }
                Some(Outbound::Control { opcode, payload }) => {
                    let frame = Frame::new(true, opcode, None, Payload::Owned(payload));
                    let closing = opcode == OpCode::Close;
                    let result = ws.write_frame(frame).await;
                    if closing {
                        return;
                    }
                    result
                }
                None => return,
            },
            _ = ping.tick() => ws.write_frame(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b""))).await,
        };
        if result.is_err() {
            return;
        }
    }
}

struct Session {
    gw: Gateway,
    peer: Peer,
    claims: AccessClaims,
    /// Rooms joined on this connection.
    rooms: HashMap<RoomId, ()>,
    sends: Bucket,
    typing: Bucket,
    bad_frames: u32,
}

/// A message being put together from fragments.
struct Partial {
    opcode: OpCode,
    data: Vec<u8>,
}

impl Session {
    /// Reads frames until the connection ends; returns why, when the server decided it.
    async fn read_loop<S: Socket>(
        &mut self,
        read: &mut fastwebsockets::WebSocketRead<ReadHalf<S>>,
    ) -> Option<CloseReason> {
        let max = self.gw.config.max_message_bytes;
        let mut partial: Option<Partial> = None;
        let queue = self.peer.clone();
        // Pongs and close replies the protocol obliges: queued to the writer, which owns the socket.
        let mut obligated = move |frame: Frame<'_>| {
            let out = Outbound::Control {
                opcode: frame.opcode,
                payload: frame.payload.to_vec(),
            };
            let queued = queue.push(out);
            async move {
                if queued {
                    Ok::<(), WebSocketError>(())
                } else {
                    Err(WebSocketError::ConnectionClosed)
                }
            }
        };
        loop {
            let now = chrono::Utc::now().timestamp();
            let token_left =
                Duration::from_secs(u64::try_from(i64::try_from(self.claims.exp).unwrap_or(0) - now).unwrap_or(0));
            if token_left.is_zero() {
                return Some(close(
                    CLOSE_TOKEN_EXPIRED,
                    "access token expired; reconnect with a fresh one",
                ));
            }
            let wait = self.gw.config.idle_timeout.min(token_left);
            let frame = match tokio::time::timeout(wait, read.read_frame(&mut obligated)).await {
                Err(_) if wait == token_left => {
                    return Some(close(
                        CLOSE_TOKEN_EXPIRED,
                        "access token expired; reconnect with a fresh one",
                    ));
                }
                Err(_) => return Some(close(CLOSE_IDLE, "idle too long")),
                Ok(Err(WebSocketError::FrameTooLarge)) => return Some(close(CLOSE_TOO_BIG, "message too large")),
                Ok(Err(err)) => {
                    tracing::debug!(conn = self.peer.conn, error = %err, "connection read ended");
                    return None;
                }
                Ok(Ok(frame)) => frame,
            };
            let (opcode, data): (OpCode, Vec<u8>) = match frame.opcode {
                OpCode::Close => return None,
                OpCode::Ping | OpCode::Pong => continue,
                OpCode::Text | OpCode::Binary if frame.fin => {
                    if partial.is_some() {
                        return Some(close(CLOSE_POLICY, "new message before the fragmented one ended"));
                    }
                    (frame.opcode, frame.payload.to_vec())
                }
                OpCode::Text | OpCode::Binary => {
                    if partial.is_some() {
                        return Some(close(CLOSE_POLICY, "new message before the fragmented one ended"));
                    }
                    partial = Some(Partial {
                        opcode: frame.opcode,
                        data: frame.payload.to_vec(),
                    });
                    continue;
                }
                OpCode::Continuation => {
                    let Some(p) = partial.as_mut() else {
                        return Some(close(CLOSE_POLICY, "continuation without a message"));
                    };
                    // The whole message is capped, not just each frame.
                    if p.data.len() + frame.payload.len() > max {
                        return Some(close(CLOSE_TOO_BIG, "message too large"));
                    }
                    p.data.extend_from_slice(&frame.payload);
                    if !frame.fin {
                        continue;
                    }
                    let Some(done) = partial.take() else { continue };
                    (done.opcode, done.data)
                }
            };
            if data.len() > max {
                return Some(close(CLOSE_TOO_BIG, "message too large"));
            }
            if let Some(reason) = self.on_message(opcode, &data).await {
                return Some(reason);
            }
        }
    }

    /// Handles one complete client message.
    async fn on_message(&mut self, opcode: OpCode, data: &[u8]) -> Option<CloseReason> {
        if opcode != OpCode::Text {
            return self.bad_frame("binary_frame", "frames must be JSON text".into(), None);
        }
        let frame: ClientFrame = match serde_json::from_slice(data) {
            Ok(frame) => frame,
            Err(err) => {
                let reference = serde_json::from_slice::<serde_json::Value>(data)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned));
                return self.bad_frame("bad_frame", format!("unreadable frame: {err}"), reference);
            }
        };
        let kind = match &frame {
            ClientFrame::Join { .. } => "join",
            ClientFrame::Leave { .. } => "leave",
            ClientFrame::Send { .. } => "send",
            ClientFrame::Typing { .. } => "typing",
            ClientFrame::Ping { .. } => "ping",
            ClientFrame::Refresh { .. } => "refresh",
        };
        ::metrics::counter!(metrics::FRAMES_IN, "type" => kind).increment(1);
        match frame {
            // The work behind each frame is boxed: an idle connection's task then holds only the small reading
            // state, not room for the largest of these futures (the JWKS refetch alone is kilobytes).
            ClientFrame::Join { room, since } => Box::pin(self.join(room, since)).await,
            ClientFrame::Leave { room } => {
                if self.rooms.remove(&room).is_some() {
                    // Wait until the room has dropped this member: nothing of the room may follow `left`.
                    let _ = self.gw.hub.leave(&room, self.peer.conn).await;
                    self.peer.push(Outbound::Forget(room.clone()));
                    self.push(&ServerFrame::Left { room });
                } else {
                    self.error("not_joined", format!("you are not in room '{room}'"), None);
                }
            }
            ClientFrame::Send { room, id, body } => Box::pin(self.send(room, id, body)).await,
            ClientFrame::Typing { room, text } => Box::pin(self.typing(room, text)).await,
            ClientFrame::Ping { id } => self.push(&ServerFrame::Pong { id }),
            ClientFrame::Refresh { token } => match Box::pin(self.gw.verifier.verify(&token)).await {
                Ok(claims) if claims.sub == self.claims.sub => self.claims = claims,
                Ok(_) => self.error("token_wrong_user", "the new token is for another user".into(), None),
                Err(err) => self.error(err.code(), err.to_string(), None),
            },
        }
        None
    }

    async fn join(&mut self, room: RoomId, since: Option<u64>) {
        if self.rooms.contains_key(&room) {
            return self.error("already_joined", format!("you are already in room '{room}'"), None);
        }
        if self.rooms.len() >= self.gw.config.max_rooms_per_connection {
            return self.error("too_many_rooms", "leave a room before joining another".into(), None);
        }
        match self.gw.room_access(&room, &self.claims.sub).await {
            Ok(RoomAccess::Allowed) => {}
            Ok(RoomAccess::Denied) => {
                return self.error(
                    "room_private",
                    format!("room '{room}' is private; join it through the API"),
                    None,
                );
            }
            Ok(RoomAccess::NotFound) => return self.error("room_not_found", format!("no room '{room}'"), None),
            Err(err) => {
                tracing::warn!(room = %room, error = %err, "room access check failed");
                return self.error(
                    "unavailable",
                    "cannot check access to the room right now; retry".into(),
                    None,
                );
            }
        }
        // Recorded before the await: if this connection ends mid-join, `leave_all` still takes it out of the room.
        self.rooms.insert(room.clone(), ());
        let Some(joined) = self.gw.hub.join(&room, self.peer.clone()).await else {
            self.rooms.remove(&room);
            let _ = self.gw.hub.leave(&room, self.peer.conn).await;
            return self.error("unavailable", "cannot join the room right now; retry".into(), None);
        };
        ::metrics::counter!(metrics::JOINS).increment(1);
        let (recovered, replay) = match since {
            None => (true, Vec::new()),
            Some(since) => self.gw.replay(&room, since, joined.last_seq).await,
        };
        let joined_frame = ServerFrame::Joined {
            room: room.clone(),
            seq: joined.last_seq,
            recovered,
            members: joined.members,
        };
        // A replay may be longer than the outbound queue: wait for room in it rather than count the client slow
        // (live frames meanwhile are held by the room, bounded).
        self.peer.send(Outbound::Frame(encode(&joined_frame))).await;
        ::metrics::counter!(metrics::REPLAYED).increment(replay.len() as u64);
        for (seq, frame) in replay {
            let out = Outbound::Message {
                room: room.clone(),
                seq,
                frame,
                received: Instant::now(),
            };
            if !self.peer.send(out).await {
                break;
            }
        }
        self.gw.hub.release(&room, self.peer.conn);
    }

    async fn send(&mut self, room: RoomId, id: ClientMsgId, body: String) {
        let reference = Some(id.to_string());
        if !self.rooms.contains_key(&room) {
            return self.error(
                "not_joined",
                format!("join room '{room}' before sending to it"),
                reference,
            );
        }
        if !self.sends.take() {
            ::metrics::counter!(metrics::RATE_LIMITED, "kind" => "send").increment(1);
            return self.error("rate_limited", "sending too fast; slow down".into(), reference);
        }
        if body.trim().is_empty() || body.chars().count() > self.gw.config.max_body_chars {
            let max = self.gw.config.max_body_chars;
            return self.error(
                "invalid_body",
                format!("the body must hold 1 to {max} characters"),
                reference,
            );
        }
        let user = self.peer.user.clone();
        let stored = StoredMessage {
            id: id.clone(),
            user,
            body,
            ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        match self.gw.publish(&room, &self.claims.sub, &stored).await {
            Ok(seq) => self.push(&ServerFrame::Ack { room, id, seq }),
            Err(reason) => {
                ::metrics::counter!(metrics::PUBLISH_FAILURES, "reason" => reason).increment(1);
                self.error(
                    "publish_failed",
                    "the message was not stored; send it again with the same id".into(),
                    reference,
                );
            }
        }
    }

    async fn typing(&mut self, room: RoomId, text: String) {
        if !self.rooms.contains_key(&room) {
            return self.error("not_joined", format!("join room '{room}' first"), None);
        }
        if !self.typing.take() {
            ::metrics::counter!(metrics::RATE_LIMITED, "kind" => "typing").increment(1);
            return;
        }
        if text.chars().count() > self.gw.config.max_body_chars {
            return self.error("invalid_body", "the draft is longer than a message may be".into(), None);
        }
        let event = TypingEvent {
            user: self.peer.user.clone(),
            text,
        };
        if let Ok(payload) = serde_json::to_vec(&event) {
            let _ = self
                .gw
                .hub
                .nats()
                .publish(subject::room_typing(&room), payload.into())
                .await;
        }
    }

    fn push(&self, frame: &ServerFrame) {
        self.peer.push(Outbound::Frame(encode(frame)));
    }

    fn error(&self, code: &str, message: String, reference: Option<String>) {
        self.push(&ServerFrame::Error {
            code: code.to_owned(),
            message,
            reference,
        });
    }

    /// Answers an invalid frame; closes the connection once it has sent too many.
    fn bad_frame(&mut self, code: &str, message: String, reference: Option<String>) -> Option<CloseReason> {
        ::metrics::counter!(metrics::FRAMES_IN, "type" => "invalid").increment(1);
        self.bad_frames += 1;
        self.error(code, message, reference);
        (self.bad_frames > self.gw.config.max_bad_frames).then(|| close(CLOSE_POLICY, "too many invalid frames"))
    }

    fn leave_all(&mut self) {
        for (room, ()) in self.rooms.drain() {
            // No need to wait: this connection will receive nothing more.
            drop(self.gw.hub.leave(&room, self.peer.conn));
        }
    }
}

fn close(code: u16, reason: &str) -> CloseReason {
    CloseReason {
        code,
        reason: reason.to_owned(),
    }
}

/// Fetches a room's stored messages after `since`, up to `until`, as encoded frames, for a rejoin.
///
/// Returns whether every missed message is included (`recovered`): not when the stream no longer holds all of
/// them, when there are more than the replay cap, or when `since` is ahead of the room.
pub async fn replay(
    stream: &async_nats::jetstream::stream::Stream,
    room: &RoomId,
    since: u64,
    until: u64,
    cap: usize,
) -> (bool, Vec<(u64, Bytes)>) {
    // The room task may not have seen the newest message yet (a sender's ack can arrive before the republish):
    // ahead of the room is only unrecoverable when ahead of the stream too.
    let mut until = until;
    if since > until {
        match stream.direct_get_last_for_subject(subject::room_messages(room)).await {
            Ok(last) if since <= last.sequence => until = last.sequence,
            _ => return (false, Vec::new()),
        }
    }
    if since == until {
        return (true, Vec::new());
    }
    let first_kept = stream.cached_info().state.first_sequence;
    let mut info = stream.clone();
    let first_kept = match info.info().await {
        Ok(info) => info.state.first_sequence,
        Err(_) => first_kept,
    };
    if since + 1 < first_kept {
        return (false, Vec::new());
    }
    let subject = subject::room_messages(room);
    let mut frames = Vec::new();
    let mut next = since + 1;
    let mut prev = since;
    while next <= until {
        let msg = match stream.direct_get_next_for_subject(&subject, Some(next)).await {
            Ok(msg) => msg,
            Err(err) if matches!(err.kind(), async_nats::jetstream::stream::DirectGetErrorKind::NotFound) => break,
            Err(err) => {
                tracing::warn!(room = %room, error = %err, "replay read failed");
                return (false, Vec::new());
            }
        };
        let Some(seq) = crate::fanout::header_u64(&msg.headers, async_nats::header::NATS_SEQUENCE) else {
            break;
        };
        if seq > until {
            break;
        }
        if frames.len() >= cap {
            return (false, Vec::new());
        }
        if let Ok(stored) = serde_json::from_slice::<StoredMessage>(&msg.payload) {
            frames.push((seq, message_frame(room, seq, prev, stored)));
        }
        prev = seq;
        next = seq + 1;
    }
    (true, frames)
}

/// Publishes a chat message to JetStream and waits for the stored-ack. Returns the sequence, or a metrics reason.
pub async fn publish(
    js: &async_nats::jetstream::Context,
    room: &RoomId,
    user_id: &str,
    stored: &StoredMessage,
) -> Result<u64, &'static str> {
    let payload = serde_json::to_vec(stored).map_err(|_| "encode")?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        message_dedup_id(user_id, &stored.id).as_str(),
    );
    let started = Instant::now();
    let ack = tokio::time::timeout(Duration::from_secs(5), async {
        // The first await sends; the second waits for JetStream to confirm it stored the message.
        js.publish_with_headers(subject::room_messages(room), headers, payload.into())
            .await?
            .await
    })
    .await;
    match ack {
        Ok(Ok(ack)) => {
            ::metrics::histogram!(metrics::PUBLISH_LATENCY).record(started.elapsed().as_secs_f64());
            Ok(ack.sequence)
        }
        Ok(Err(err)) => {
            tracing::warn!(room = %room, error = %err, "publish failed");
            Err("error")
        }
        Err(_) => Err("timeout"),
    }
}
