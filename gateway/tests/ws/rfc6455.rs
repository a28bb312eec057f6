//! The WebSocket protocol itself (RFC 6455), from a raw TCP socket: what a browser's frames can look like on the
//! wire (masked, fragmented, split anywhere by TCP), and how the gateway answers protocol faults.

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
        _ => {
            out.push(flag | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
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
