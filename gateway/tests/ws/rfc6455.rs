//! The WebSocket protocol itself (RFC 6455), from a raw TCP socket: what a browser's frames can look like on the
//! wire (masked, fragmented, split anywhere by TCP), and how the gateway answers protocol faults.
//!
//! `autobahn_groups` runs the RFC's cases grouped as the Autobahn testsuite groups them (framing, pings and pongs,
//! reserved bits, opcodes, fragmentation, UTF-8, close handling, limits) against one gateway, a connection per
//! case. The frame codec is also checked against fastwebsockets byte by byte (gateway/src/frame/differential.rs).

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{GatewayProc, Stack, WAIT};

/// A WebSocket client on a bare socket: every byte it sends is chosen here.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

/// A client frame with an opcode, FIN bit and mask of the test's choice.
fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let flag = if masked { 0x80 } else { 0 };
    match payload.len() {
        0..=125 => out.push(flag | payload.len() as u8),
        126..=65535 => {
            out.push(flag | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        _ => {
            out.push(flag | 127);
            out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

impl Raw {
    async fn connect(gw: &GatewayProc, token: &str) -> Self {
        let mut tcp = TcpStream::connect(("127.0.0.1", gw.port)).await.expect("connect");
        let request = format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.expect("handshake");
        let mut raw = Self { tcp, buf: Vec::new() };
        let head = raw.until(b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&head).to_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        let hello = raw.text().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        raw
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(WAIT, self.tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("nothing from the gateway within {WAIT:?}"),
        }
    }

    async fn until(&mut self, end: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = self.buf.windows(end.len()).position(|w| w == end) {
                return self.buf.drain(..at + end.len()).collect();
            }
            assert!(self.fill().await, "connection closed");
        }
    }

    /// The next server frame: (opcode, payload). `None` when the connection closed.
    async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                assert_eq!(self.buf[1] & 0x80, 0, "server frames are never masked");
                let (len, at) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => (usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4),
                    127 if self.buf.len() >= 10 => {
                        let mut raw = [0u8; 8];
                        raw.copy_from_slice(&self.buf[2..10]);
                        (usize::try_from(u64::from_be_bytes(raw)).expect("len"), 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    short => (usize::from(short), 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    assert_eq!(self.buf[0] & 0x80, 0x80, "server frames are whole");
                    let opcode = self.buf[0] & 0x0f;
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((opcode, payload));
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next text frame, as JSON (pings skipped).
    async fn text(&mut self) -> Value {
        loop {
            let (opcode, payload) = self.next().await.expect("a frame");
            if opcode == 0x1 {
                return serde_json::from_slice(&payload).expect("JSON");
            }
        }
    }

    /// The close code the gateway sends (pings and text skipped); `None` if it just closed the socket.
    async fn close_code(&mut self) -> Option<u16> {
        while let Some((opcode, payload)) = self.next().await {
            if opcode == 0x8 {
                return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            }
        }
        None
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("write");
    }
}

#[tokio::test]
async fn frames_split_anywhere_by_tcp_are_read_whole() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (token, _) = stack.user("ria").await;
    let mut client = Raw::connect(&gw, &token).await;
    // Two pings, fragmented and masked, sent a byte at a time with pauses: the reader must keep the cut frame.
    let mut bytes = frame(false, 0x1, br#"{"type":"ping","#, true);
    bytes.extend(frame(true, 0x9, b"hi", true));
    bytes.extend(frame(true, 0x0, br#""id":"slow"}"#, true));
    bytes.extend(frame(true, 0x1, br#"{"type":"ping","id":"fast"}"#, true));
    for byte in bytes {
        client.send(&[byte]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The ping between the fragments is answered with a pong carrying its payload.
    let (opcode, payload) = client.next().await.expect("pong");
    assert_eq!((opcode, payload.as_slice()), (0xA, &b"hi"[..]));
    assert_eq!(client.text().await["id"], "slow");
    assert_eq!(client.text().await["id"], "fast");
}

#[tokio::test]
async fn protocol_faults_close_with_1002_and_bad_text_with_1007() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (token, _) = stack.user("rex").await;
    let faults: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "unmasked",
            frame(true, 0x1, br#"{"type":"ping","id":"x"}"#, false),
            1002,
        ),
        (
            "reserved bit",
            {
                let mut f = frame(true, 0x1, b"{}", true);
                f[0] |= 0x20;
                f
            },
            1002,
        ),
        ("unknown opcode", frame(true, 0x3, b"", true), 1002),
        ("long ping", frame(true, 0x9, &[b'p'; 126], true), 1002),
        ("fragmented ping", frame(false, 0x9, b"p", true), 1002),
        ("stray continuation", frame(true, 0x0, b"x", true), 1002),
        ("one-byte close", frame(true, 0x8, &[3], true), 1002),
        ("invalid UTF-8", frame(true, 0x1, &[0xff, 0xfe, 0xfd], true), 1007),
    ];
    for (what, bytes, code) in faults {
        let mut client = Raw::connect(&gw, &token).await;
        client.send(&bytes).await;
        assert_eq!(client.close_code().await, Some(code), "{what}");
    }
}

#[tokio::test]
async fn a_client_close_is_answered_and_binary_gets_an_error() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (token, _) = stack.user("rob").await;
    let mut client = Raw::connect(&gw, &token).await;
    client.send(&frame(true, 0x2, &[1, 2, 3], true)).await;
    let error = client.text().await;
    assert_eq!(error["code"], "binary_frame", "{error}");
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    client.send(&frame(true, 0x8, &close, true)).await;
    assert_eq!(client.close_code().await, Some(1000));
    // The gateway then closes the TCP connection.
    assert!(client.next().await.is_none());
}

/// A text message asking for a pong that carries `id`.
fn ping_json(id: &str) -> Vec<u8> {
    format!(r#"{{"type":"ping","id":"{id}"}}"#).into_bytes()
}

/// A ping message of exactly `len` bytes (at least 23), its id padding it out; returns the id too.
fn ping_of_len(len: usize) -> (String, Vec<u8>) {
    let id = "p".repeat(len - ping_json("").len());
    let json = ping_json(&id);
    assert_eq!(json.len(), len);
    (id, json)
}

/// A masked client frame.
fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, opcode, payload, true)
}

/// What the gateway answers, frame by frame.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    /// A text `pong` with this id.
    Pong(String),
    /// A WebSocket pong with this payload.
    WsPong(Vec<u8>),
    /// A text `error` with this code.
    Error(&'static str),
}

/// One RFC case: bytes sent as separate TCP writes (a pause between them so they arrive as separate reads), the
/// replies expected in order, then the close code expected (the TCP connection closed after it), or none, in
/// which case the connection must still answer a ping, with nothing else before it.
struct Case {
    name: String,
    writes: Vec<Vec<u8>>,
    replies: Vec<Reply>,
    close: Option<u16>,
}

impl Case {
    fn new(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            writes: vec![bytes],
            replies: Vec::new(),
            close: None,
        }
    }

    /// The same bytes, written in pieces of `size`.
    fn chopped(mut self, size: usize) -> Self {
        self.writes = self.writes.concat().chunks(size).map(<[u8]>::to_vec).collect();
        self
    }

    fn reply(mut self, reply: Reply) -> Self {
        self.replies.push(reply);
        self
    }

    fn pong(self, id: &str) -> Self {
        self.reply(Reply::Pong(id.to_owned()))
    }

    fn closes(mut self, code: u16) -> Self {
        self.close = Some(code);
        self
    }

    async fn run(&self, gw: &GatewayProc, token: &str) {
        let name = &self.name;
        let mut client = Raw::connect(gw, token).await;
        for (i, write) in self.writes.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            client.send(write).await;
        }
        for expected in &self.replies {
            let got = loop {
                let (opcode, payload) = client
                    .next()
                    .await
                    .unwrap_or_else(|| panic!("{name}: closed before {expected:?}"));
                match opcode {
                    0x9 => continue,
                    0xA => break Reply::WsPong(payload),
                    0x1 => {
                        let json: Value = serde_json::from_slice(&payload).expect("JSON");
                        match json["type"].as_str() {
                            Some("pong") => break Reply::Pong(json["id"].as_str().unwrap_or_default().to_owned()),
                            Some("error") => {
                                let code = json["code"].as_str().unwrap_or_default().to_owned();
                                assert!(
                                    matches!(expected, Reply::Error(c) if *c == code),
                                    "{name}: got error {json}, expected {expected:?}"
                                );
                                break expected.clone();
                            }
                            _ => panic!("{name}: unexpected {json}"),
                        }
                    }
                    0x8 => panic!("{name}: closed ({payload:?}) before {expected:?}"),
                    other => panic!("{name}: opcode {other}"),
                }
            };
            assert_eq!(&got, expected, "{name}");
        }
        match self.close {
            Some(code) => {
                assert_eq!(client.close_code().await, Some(code), "{name}");
                assert!(
                    client.next().await.is_none(),
                    "{name}: the TCP connection stays open after the close"
                );
            }
            None => {
                client.send(&masked(true, 0x1, &ping_json("still-here"))).await;
                let next = client.text().await;
                assert_eq!(
                    (next["type"].as_str(), next["id"].as_str()),
                    (Some("pong"), Some("still-here")),
                    "{name}: {next}"
                );
            }
        }
    }
}

/// The message cap the gateway of `autobahn_groups` gets: over 64 KiB, so the 64-bit length encoding is used.
const CAP: usize = 70_000;

/// Group 1, framing: text and binary messages of every length encoding, whole and written in small pieces.
fn framing() -> Vec<Case> {
    let mut cases = Vec::new();
    for len in [23usize, 125, 126, 127, 128, 65535, 65536, CAP] {
        let (id, json) = ping_of_len(len);
        cases.push(Case::new(format!("1.1 text of {len} bytes"), masked(true, 0x1, &json)).pong(&id));
        if len > 1000 {
            cases.push(
                Case::new(
                    format!("1.1 text of {len} bytes in 997-byte writes"),
                    masked(true, 0x1, &json),
                )
                .chopped(997)
                .pong(&id),
            );
        }
    }
    cases.push(Case::new("1.1 empty text", masked(true, 0x1, b"")).reply(Reply::Error("bad_frame")));
    for len in [0usize, 125, 126, 65535, 65536] {
        cases.push(
            Case::new(
                format!("1.2 binary of {len} bytes"),
                masked(true, 0x2, &vec![0xfe; len]),
            )
            .reply(Reply::Error("binary_frame")),
        );
    }
    // The RFC asks for the shortest length encoding; a longer one is still read (as Autobahn's peers do).
    let json = ping_json("long-form");
    let mut long_form = vec![0x81, 0x80 | 126];
    long_form.extend_from_slice(&(json.len() as u16).to_be_bytes());
    long_form.extend_from_slice(&[0, 0, 0, 0]);
    long_form.extend_from_slice(&json);
    cases.push(Case::new("1.x 16-bit length for a short payload, zero mask", long_form).pong("long-form"));
    cases
}

/// Group 2, pings and pongs: answered with the same payload, in order; long ones refused; pongs ignored.
fn pings() -> Vec<Case> {
    let binary: Vec<u8> = (0..125u8).map(|b| b.wrapping_mul(7)).collect();
    let mut ten = Vec::new();
    let mut case = Case::new("2.10 ten pings in one write", Vec::new());
    for i in 0..10u8 {
        ten.extend(masked(true, 0x9, &[b'p', i]));
        case = case.reply(Reply::WsPong(vec![b'p', i]));
    }
    case.writes = vec![ten];
    vec![
        Case::new("2.1 empty ping", masked(true, 0x9, b"")).reply(Reply::WsPong(Vec::new())),
        Case::new("2.2 text ping", masked(true, 0x9, b"Hello, world!")).reply(Reply::WsPong(b"Hello, world!".to_vec())),
        Case::new(
            "2.3 binary ping",
            masked(true, 0x9, &[0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff]),
        )
        .reply(Reply::WsPong(vec![0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff])),
        Case::new("2.4 ping of 125 bytes", masked(true, 0x9, &binary)).reply(Reply::WsPong(binary.clone())),
        Case::new("2.5 ping of 126 bytes", masked(true, 0x9, &[b'p'; 126])).closes(1002),
        Case::new(
            "2.6 ping of 125 bytes written a byte at a time",
            masked(true, 0x9, &binary),
        )
        .chopped(1)
        .reply(Reply::WsPong(binary.clone())),
        Case::new("2.7 unsolicited pong", masked(true, 0xA, b"")),
        Case::new("2.8 unsolicited pong with payload", masked(true, 0xA, b"unsolicited")),
        Case::new(
            "2.9 unsolicited pong, then ping",
            [masked(true, 0xA, b"x"), masked(true, 0x9, b"y")].concat(),
        )
        .reply(Reply::WsPong(b"y".to_vec())),
        case,
    ]
}

/// Group 3, reserved bits: each set alone (and all), on data and control frames, and after a message in the same
/// write (which is answered first).
fn reserved_bits() -> Vec<Case> {
    let mut cases = Vec::new();
    for (bits, name) in [(0x40u8, "RSV1"), (0x20, "RSV2"), (0x10, "RSV3"), (0x70, "all three")] {
        let mut text = masked(true, 0x1, &ping_json("r"));
        text[0] |= bits;
        cases.push(Case::new(format!("3 {name} on text"), text.clone()).closes(1002));
        let mut ping = masked(true, 0x9, b"r");
        ping[0] |= bits;
        cases.push(Case::new(format!("3 {name} on ping"), ping).closes(1002));
        let mut then = masked(true, 0x1, &ping_json("before"));
        then.extend(text);
        cases.push(
            Case::new(format!("3 {name} after a message in the same write"), then)
                .pong("before")
                .closes(1002),
        );
    }
    cases
}

/// Group 4, opcodes: every opcode RFC 6455 leaves undefined, alone and after a message.
fn opcodes() -> Vec<Case> {
    let mut cases = Vec::new();
    for opcode in [0x3u8, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        cases.push(Case::new(format!("4 opcode {opcode:#x}"), masked(true, opcode, b"")).closes(1002));
        let bytes = [
            masked(true, 0x1, &ping_json("before")),
            masked(true, opcode, b"x"),
            masked(true, 0x9, b"after"),
        ]
        .concat();
        cases.push(
            Case::new(format!("4 opcode {opcode:#x} after a message"), bytes)
                .pong("before")
                .closes(1002),
        );
    }
    cases
}

/// Group 5, fragmentation: messages in fragments (down to a byte each), control frames between them, and every
/// way of getting the fragments' order wrong.
fn fragmentation() -> Vec<Case> {
    let json = ping_json("fragments");
    let (head, tail) = json.split_at(9);
    let bytewise: Vec<u8> = json
        .iter()
        .enumerate()
        .flat_map(|(i, b)| masked(i + 1 == json.len(), if i == 0 { 0x1 } else { 0x0 }, &[*b]))
        .collect();
    vec![
        Case::new("5.1 fragmented ping", masked(false, 0x9, b"p")).closes(1002),
        Case::new("5.2 fragmented pong", masked(false, 0xA, b"p")).closes(1002),
        Case::new(
            "5.3 text in two fragments",
            [masked(false, 0x1, head), masked(true, 0x0, tail)].concat(),
        )
        .pong("fragments"),
        Case::new(
            "5.5 text in two fragments, two writes",
            [masked(false, 0x1, head), masked(true, 0x0, tail)].concat(),
        )
        .chopped(head.len() + 6)
        .pong("fragments"),
        Case::new(
            "5.6 ping between the fragments",
            [
                masked(false, 0x1, head),
                masked(true, 0x9, b"mid"),
                masked(true, 0x0, tail),
            ]
            .concat(),
        )
        .reply(Reply::WsPong(b"mid".to_vec()))
        .pong("fragments"),
        Case::new(
            "5.7 ping between the fragments, a byte a write",
            [
                masked(false, 0x1, head),
                masked(true, 0x9, b"mid"),
                masked(true, 0x0, tail),
            ]
            .concat(),
        )
        .chopped(1)
        .reply(Reply::WsPong(b"mid".to_vec()))
        .pong("fragments"),
        Case::new(
            "5.8 pong between the fragments",
            [
                masked(false, 0x1, head),
                masked(true, 0xA, b"mid"),
                masked(true, 0x0, tail),
            ]
            .concat(),
        )
        .pong("fragments"),
        Case::new("5.9 continuation with no message (final)", masked(true, 0x0, b"x")).closes(1002),
        Case::new(
            "5.10 continuation with no message (not final)",
            masked(false, 0x0, b"x"),
        )
        .closes(1002),
        Case::new(
            "5.13 continuations with no message, then a message",
            [
                masked(false, 0x0, b"x"),
                masked(true, 0x0, b"y"),
                masked(true, 0x1, &json),
            ]
            .concat(),
        )
        .closes(1002),
        Case::new(
            "5.15 a new message begun mid-message",
            [
                masked(false, 0x1, head),
                masked(false, 0x1, head),
                masked(true, 0x0, tail),
            ]
            .concat(),
        )
        .closes(1002),
        Case::new(
            "5.16 a whole message mid-message",
            [masked(false, 0x1, head), masked(true, 0x1, &json)].concat(),
        )
        .closes(1002),
        Case::new(
            "5.17 binary begun mid-text",
            [masked(false, 0x1, head), masked(false, 0x2, b"b")].concat(),
        )
        .closes(1002),
        Case::new("5.18 a fragmented close", masked(false, 0x8, &1000u16.to_be_bytes())).closes(1002),
        Case::new("5.19 text in one-byte fragments", bytewise).pong("fragments"),
        Case::new(
            "5.20 empty fragments around the text",
            [
                masked(false, 0x1, b""),
                masked(false, 0x0, &json),
                masked(true, 0x0, b""),
            ]
            .concat(),
        )
        .pong("fragments"),
    ]
}

/// Group 6, UTF-8: valid text of every character width, whole, in fragments cut inside characters and in TCP reads
/// cut inside characters; invalid sequences refused with 1007, in a fragment before the message ends too.
fn utf8() -> Vec<Case> {
    let id = "κόσμε-€-𝄞-ü";
    let json = ping_json(id);
    let mut cases = vec![Case::new("6.1 text with 2-, 3- and 4-byte characters", masked(true, 0x1, &json)).pong(id)];
    for cut in 1..json.len() {
        let (head, tail) = json.split_at(cut);
        cases.push(
            Case::new(
                format!("6.2 cut into fragments at byte {cut}"),
                [masked(false, 0x1, head), masked(true, 0x0, tail)].concat(),
            )
            .pong(id),
        );
    }
    // One connection per cut would be many: the TCP cuts are one case each of a few positions inside characters.
    let whole = masked(true, 0x1, &json);
    let inside: Vec<usize> = (1..json.len())
        .filter(|&i| (json[i] & 0xc0) == 0x80)
        .map(|i| i + 6)
        .collect();
    for cut in inside.iter().step_by(3) {
        let case = Case {
            name: format!("6.3 cut into TCP reads at byte {cut}"),
            writes: vec![whole[..*cut].to_vec(), whole[*cut..].to_vec()],
            replies: vec![Reply::Pong(id.to_owned())],
            close: None,
        };
        cases.push(case);
    }
    let bad: [(&str, &[u8]); 8] = [
        ("a lone continuation byte", &[0x80]),
        ("0xff", &[0xff]),
        ("0xfe", &[0xfe]),
        ("an overlong slash", &[0xc0, 0xaf]),
        ("a surrogate", &[0xed, 0xa0, 0x80]),
        ("past U+10FFFF", &[0xf4, 0x90, 0x80, 0x80]),
        ("a character cut by another", &[0xe2, 0x82, b'x']),
        ("a character cut at the end", &[0xe2, 0x82]),
    ];
    for (what, bytes) in bad {
        let text = [b"{\"type\":\"ping\",\"id\":\"".as_slice(), bytes, b"\"}"].concat();
        cases.push(Case::new(format!("6.x {what}"), masked(true, 0x1, &text)).closes(1007));
        cases.push(
            Case::new(
                format!("6.x {what} at the end of the last fragment"),
                [masked(false, 0x1, b"ok"), masked(true, 0x0, bytes)].concat(),
            )
            .closes(1007),
        );
    }
    // Fail fast: a fragment with a bad byte is refused at once, with the message's last fragment never sent.
    cases.push(
        Case::new(
            "6.4.1 bad UTF-8 in the first fragment",
            masked(false, 0x1, &[b'o', b'k', 0xf4, 0x90, 0x80, 0x80]),
        )
        .closes(1007),
    );
    cases.push(
        Case::new(
            "6.4.2 bad UTF-8 in a middle fragment",
            [masked(false, 0x1, b"ok"), masked(false, 0x0, &[0xed, 0xa0, 0x80])].concat(),
        )
        .closes(1007),
    );
    cases
}

/// Group 7, close handling: empty, with a code, with a reason; every code a client may and may not send; reasons
/// at the length limit and past it, or not UTF-8; and nothing after a close counts.
fn closing() -> Vec<Case> {
    let with = |code: u16, reason: &[u8]| [code.to_be_bytes().as_slice(), reason].concat();
    let mut cases = vec![
        Case::new("7.1.1 empty close", masked(true, 0x8, b"")).closes(1000),
        Case::new(
            "7.1.2 close, then a message",
            [masked(true, 0x8, b""), masked(true, 0x1, &ping_json("after"))].concat(),
        )
        .closes(1000),
        Case::new("7.3.1 close of one byte", masked(true, 0x8, &[0x03])).closes(1002),
        Case::new(
            "7.3.2 close with a reason of 123 bytes",
            masked(true, 0x8, &with(1000, &[b'r'; 123])),
        )
        .closes(1000),
        Case::new(
            "7.3.3 close with a reason of 124 bytes",
            masked(true, 0x8, &with(1000, &[b'r'; 124])),
        )
        .closes(1002),
        Case::new(
            "7.5.1 close reason not UTF-8",
            masked(
                true,
                0x8,
                &with(
                    1000,
                    &[
                        0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
                    ],
                ),
            ),
        )
        .closes(1007),
        Case::new(
            "7.x close a byte a write",
            masked(true, 0x8, &with(1001, b"going away")),
        )
        .chopped(1)
        .closes(1000),
    ];
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
    ] {
        cases.push(Case::new(format!("7.7 close code {code}"), masked(true, 0x8, &with(code, b"bye"))).closes(1000));
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        cases.push(Case::new(format!("7.9 close code {code}"), masked(true, 0x8, &code.to_be_bytes())).closes(1002));
    }
    cases
}

/// Group 9 (limits), and frames a server must refuse: the message cap whole and in fragments, lengths no message
/// has, unmasked frames.
fn limits() -> Vec<Case> {
    let (id, at_cap) = ping_of_len(CAP);
    let over = ping_of_len(CAP + 1).1;
    let half = CAP / 2 + 1;
    let mut huge = vec![0x81, 0x80 | 127];
    huge.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    let mut top_bit = vec![0x81, 0x80 | 127];
    top_bit.extend_from_slice(&u64::MAX.to_be_bytes());
    vec![
        Case::new("9.1 text at the cap in four fragments", {
            let q = CAP / 4;
            [
                masked(false, 0x1, &at_cap[..q]),
                masked(false, 0x0, &at_cap[q..2 * q]),
                masked(false, 0x0, &at_cap[2 * q..3 * q]),
                masked(true, 0x0, &at_cap[3 * q..]),
            ]
            .concat()
        })
        .pong(&id),
        Case::new("9.2 text one byte over the cap", masked(true, 0x1, &over)).closes(1009),
        Case::new(
            "9.3 fragments over the cap in total",
            [masked(false, 0x1, &over[..half]), masked(true, 0x0, &over[half..])].concat(),
        )
        .closes(1009),
        Case::new("9.4 header announcing 2^63-1 bytes, no payload", huge).closes(1009),
        Case::new("9.5 header with the length's top bit set", top_bit).closes(1009),
        Case::new("9.6 unmasked text", frame(true, 0x1, &ping_json("x"), false)).closes(1002),
        Case::new(
            "9.7 unmasked ping after a message",
            [masked(true, 0x1, &ping_json("before")), frame(true, 0x9, b"x", false)].concat(),
        )
        .pong("before")
        .closes(1002),
        Case::new("9.8 a pong over 125 bytes", masked(true, 0xA, &[0; 126])).closes(1002),
    ]
}

/// RFC 6455's cases as Autobahn groups them, each against one gateway (one stack, one connection per case).
#[tokio::test]
async fn autobahn_groups() {
    let stack = Stack::start().await;
    let cap = CAP.to_string();
    let gw = stack
        .gateway(&["--max-message-bytes", &cap, "--max-connections-per-user", "1000"])
        .await;
    let (token, _) = stack.user("autobahn").await;
    let groups: [(&str, Vec<Case>); 8] = [
        ("framing", framing()),
        ("pings and pongs", pings()),
        ("reserved bits", reserved_bits()),
        ("opcodes", opcodes()),
        ("fragmentation", fragmentation()),
        ("UTF-8", utf8()),
        ("close handling", closing()),
        ("limits", limits()),
    ];
    for (group, cases) in groups {
        assert!(!cases.is_empty(), "{group}");
        for case in &cases {
            case.run(&gw, &token).await;
        }
        eprintln!("{group}: {} cases", cases.len());
    }
}
