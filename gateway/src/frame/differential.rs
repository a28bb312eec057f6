//! The gateway's inbound codec checked against a second implementation, fastwebsockets' server side: the same
//! client bytes, cut into the same reads, must give the same messages with the same payloads, or a refusal by both
//! with the same close code (1002, 1007, 1009), except where [`Difference`] names a deliberate difference.
//!
//! One generator makes the cases for both users: the unit tests feed it seeded random bytes, the
//! `frame_differential` fuzz target libFuzzer's. The gateway side is [`Decoder`], exactly what a connection runs;
//! the reference is fastwebsockets' `FragmentCollector` over an in-memory stream that hands out the same reads
//! (role server, closes checked, pings handed up, its frame cap set to the gateway's message cap).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use fastwebsockets::{FragmentCollector, OpCode as RefOpCode, Role, WebSocket, WebSocketError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::socket::{Decoder, Incoming};

/// The message cap both sides get: small, so fragmented messages cross it often.
pub const MAX: usize = 1000;

/// The choices a case is made from (random bytes in the unit tests, libFuzzer's in the fuzz target), taken in
/// turn; zeros once they run out, so any input makes a case.
pub struct Choices<'a> {
    bytes: &'a [u8],
}

impl<'a> Choices<'a> {
    /// Choices read from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&first, rest)) => {
                self.bytes = rest;
                first
            }
            None => 0,
        }
    }

    /// A number in `0..n` (`n` at most 65,536).
    fn below(&mut self, n: usize) -> usize {
        let raw = if n <= 256 {
            usize::from(self.byte())
        } else {
            usize::from(u16::from_be_bytes([self.byte(), self.byte()]))
        };
        raw % n.max(1)
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u8) -> bool {
        self.byte() % 100 < percent
    }

    fn four(&mut self) -> [u8; 4] {
        [self.byte(), self.byte(), self.byte(), self.byte()]
    }

    /// What is left, as raw bytes.
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

/// A byte stream from a client and how it arrives: read sizes summing to its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Case {
    /// The bytes the client sends after the handshake.
    pub bytes: Vec<u8>,
    /// The sizes of the successive reads they arrive in.
    pub reads: Vec<usize>,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: String = self.bytes.iter().map(|b| format!("{b:02x}")).collect();
        // Reads as size×count runs: a thousand reads of one byte are `1×1000`.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &n in &self.reads {
            match runs.last_mut() {
                Some((size, count)) if *size == n => *count += 1,
                _ => runs.push((n, 1)),
            }
        }
        let reads: Vec<String> = runs.iter().map(|(size, count)| format!("{size}×{count}")).collect();
        write!(f, "Case {{ bytes: {hex}, reads: [{}] }}", reads.join(", "))
    }
}

/// Close codes a client may send, codes it may not, and the edges between.
const CLOSE_CODES: [u16; 30] = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999, 0, 1, 999, 1004,
    1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 32768, 65535,
];

/// Bytes that break UTF-8: a lone continuation byte, bytes never used, an overlong encoding, a surrogate, a code
/// point past U+10FFFF, a character cut short before more text.
const BAD_UTF8: [&[u8]; 7] = [
    &[0x80],
    &[0xff],
    &[0xc0, 0xaf],
    &[0xed, 0xa0, 0x80],
    &[0xf4, 0x90, 0x80, 0x80],
    &[0xe2, 0x82, b'x'],
    &[0xfe],
];

/// Text pieces of 1 to 4 bytes per character.
const GOOD_UTF8: [&str; 6] = ["hello ", "é", "€", "𝄞", "{\"type\":\"ping\"}", " "];

/// Builds a client byte stream frame by frame.
struct Stream<'c, 'a> {
    choices: &'c mut Choices<'a>,
    out: Vec<u8>,
    /// Where each frame starts, for the faults put in afterwards.
    starts: Vec<usize>,
    /// A fast generator for payload bytes, seeded from the choices (so long payloads cost few choices).
    seed: u32,
}

impl Stream<'_, '_> {
    fn next_random(&mut self) -> u32 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 17;
        self.seed ^= self.seed << 5;
        self.seed
    }

    /// One frame: usually masked with a minimal length encoding, sometimes not.
    fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.starts.push(self.out.len());
        let c = &mut *self.choices;
        let rsv = if c.chance(3) { [0x10, 0x20, 0x40][c.below(3)] } else { 0 };
        self.out.push((u8::from(fin) << 7) | rsv | (opcode & 0x0f));
        let masked = !c.chance(3);
        let flag = if masked { 0x80 } else { 0 };
        let len = payload.len();
        // The RFC asks for the shortest length encoding; neither side insists on it.
        let form = if c.chance(5) {
            c.below(3)
        } else {
            usize::from(len > 125) + usize::from(len > 65535)
        };
        match form {
            0 if len <= 125 => self.out.push(flag | len as u8),
            0 | 1 if len <= 65535 => {
                self.out.push(flag | 126);
                self.out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.out.push(flag | 127);
                self.out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if masked {
            let mask = if c.chance(5) { [0; 4] } else { c.four() };
            self.out.extend_from_slice(&mask);
            self.out
                .extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            self.out.extend_from_slice(payload);
        }
    }

    /// A payload length: mostly short, sometimes long enough for the 16-bit encoding, sometimes about the cap.
    fn length(&mut self) -> usize {
        match self.choices.below(10) {
            0..=5 => self.choices.below(40),
            6..=7 => self.choices.below(300),
            8 => 100 + self.choices.below(600),
            _ => MAX - 40 + self.choices.below(80),
        }
    }

    /// Text of about `len` bytes: valid UTF-8 (mostly), or with bad bytes somewhere, or ending inside a character.
    fn text(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        let flaw = match self.choices.below(10) {
            0 => Some(self.choices.below(len + 1)),
            _ => None,
        };
        while out.len() < len {
            if flaw.is_some_and(|at| at <= out.len()) && !out.is_empty() && self.choices.chance(50) {
                let bad = BAD_UTF8[self.choices.below(BAD_UTF8.len())];
                out.extend_from_slice(bad);
                break;
            }
            let piece = GOOD_UTF8[self.next_random() as usize % GOOD_UTF8.len()];
            out.extend_from_slice(piece.as_bytes());
        }
        if self.choices.chance(5) {
            // A character cut short at the very end.
            out.extend_from_slice(&"€".as_bytes()[..1 + self.choices.below(2)]);
        }
        out
    }

    fn binary(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_random() as u8).collect()
    }

    /// A message as one frame or several (cut anywhere, characters too), with control frames between them and
    /// now and then a data frame that does not belong.
    fn message(&mut self, text: bool) {
        let len = self.length();
        let payload = if text { self.text(len) } else { self.binary(len) };
        let pieces = 1 + self.choices.below(4);
        let mut cuts: Vec<usize> = (1..pieces).map(|_| self.choices.below(payload.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(payload.len());
        let mut from = 0;
        for (i, &to) in cuts.iter().enumerate() {
            let opcode = if i == 0 { u8::from(!text) + 1 } else { 0x0 };
            self.frame(i + 1 == cuts.len(), opcode, &payload[from..to]);
            from = to;
            if i + 1 < cuts.len() && self.choices.chance(25) {
                self.control();
            }
            if i + 1 < cuts.len() && self.choices.chance(4) {
                // A new message begun before this one ends.
                let fin = self.choices.chance(50);
                let piece = self.text(5);
                self.frame(fin, 0x1, &piece);
            }
        }
    }

    /// A ping or a pong (now and then over 125 bytes, or not final).
    fn control(&mut self) {
        let opcode = if self.choices.chance(50) { 0x9 } else { 0xA };
        let len = if self.choices.chance(10) {
            120 + self.choices.below(20)
        } else {
            self.choices.below(20)
        };
        let payload = self.binary(len);
        let fin = !self.choices.chance(5);
        self.frame(fin, opcode, &payload);
    }

    /// A close frame: empty, one byte, a code, a code and a reason (valid or not, short or too long).
    fn close(&mut self) {
        let mut payload = Vec::new();
        match self.choices.below(8) {
            0 => {}
            1 => payload.push(self.choices.byte()),
            2 => payload.extend_from_slice(&(self.choices.below(65536) as u16).to_be_bytes()),
            _ => {
                let code = CLOSE_CODES[self.choices.below(CLOSE_CODES.len())];
                payload.extend_from_slice(&code.to_be_bytes());
                if self.choices.chance(60) {
                    let len = if self.choices.chance(10) {
                        120 + self.choices.below(10)
                    } else {
                        self.choices.below(30)
                    };
                    payload.extend(self.text(len));
                }
            }
        }
        let fin = !self.choices.chance(5);
        self.frame(fin, 0x8, &payload);
    }

    /// Some frames, then faults put in: a flipped bit, a reserved bit, the stream cut short.
    fn build(mut self) -> Vec<u8> {
        for _ in 0..1 + self.choices.below(6) {
            match self.choices.below(16) {
                0..=4 => self.message(true),
                5..=6 => self.message(false),
                7..=8 => self.control(),
                9..=10 => self.close(),
                11 => {
                    let len = self.choices.below(10);
                    let payload = self.text(len);
                    let fin = self.choices.chance(50);
                    self.frame(fin, 0x0, &payload);
                }
                12 => {
                    // An opcode RFC 6455 leaves undefined.
                    let opcode = [0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf][self.choices.below(10)];
                    self.frame(true, opcode, b"x");
                }
                13 => {
                    // A header announcing more than the cap, or more than anything.
                    let len = if self.choices.chance(50) {
                        MAX + 1 + self.choices.below(100)
                    } else {
                        usize::MAX >> 1
                    };
                    self.starts.push(self.out.len());
                    self.out.extend_from_slice(&[0x82, 0x80 | 127]);
                    self.out.extend_from_slice(&(len as u64).to_be_bytes());
                    self.out.extend_from_slice(&self.choices.four());
                }
                _ => {
                    let len = self.choices.below(12);
                    let junk = self.binary(len);
                    self.out.extend_from_slice(&junk);
                }
            }
        }
        if self.choices.chance(8) && !self.out.is_empty() {
            let at = self.choices.below(self.out.len());
            self.out[at] ^= 1 << self.choices.below(8);
        }
        if self.choices.chance(15) && !self.out.is_empty() {
            let cut = self.choices.below(self.out.len());
            self.out.truncate(cut);
        }
        self.out
    }
}

impl Case {
    /// A case made from `choices`: mostly client frame sequences, valid and not (see [`Stream`]); one in eight
    /// just the remaining bytes.
    pub fn from_choices(choices: &mut Choices<'_>) -> Self {
        let raw = choices.below(8) == 0;
        let split = choices.below(4);
        let bytes = if raw {
            choices.rest().to_vec()
        } else {
            let seed = u32::from_be_bytes(choices.four()) | 1;
            Stream {
                choices: &mut *choices,
                out: Vec::new(),
                starts: Vec::new(),
                seed,
            }
            .build()
        };
        let mut reads = Vec::new();
        let mut left = bytes.len();
        while left > 0 {
            let n = match split {
                0 => left,
                1 => 1,
                2 => 1 + choices.below(32),
                _ => 1 + choices.below(400),
            }
            .min(left);
            reads.push(n);
            left -= n;
        }
        Self { bytes, reads }
    }
}

/// One message (or control frame) as either side hands it to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A text message's bytes.
    Text(Vec<u8>),
    /// A binary message (the gateway keeps no payload of those).
    Binary,
    /// A ping's payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close, with its code and reason if it had them.
    Close(Option<(u16, Vec<u8>)>),
}

/// How a side's reading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The bytes ran out, or a close was read.
    Ended,
    /// The side refused the bytes and would close with this code.
    Refused(u16),
}

/// What a side made of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The messages, in order.
    pub events: Vec<Event>,
    /// How it ended.
    pub end: End,
}

/// The gateway's codec on a case: the connection's [`Decoder`], fed read by read.
pub fn gateway(case: &Case) -> Outcome {
    let mut bytes = case.bytes.clone();
    let mut decoder = Decoder::new(MAX);
    let mut events = Vec::new();
    let mut at = 0;
    for &n in &case.reads {
        decoder.feed(&mut bytes[at..at + n]);
        at += n;
        while let Some(next) = decoder.next_message() {
            let end = match next {
                Ok(Incoming::Text(text)) => {
                    events.push(Event::Text(text.into_bytes()));
                    continue;
                }
                Ok(Incoming::Binary) => {
                    events.push(Event::Binary);
                    continue;
                }
                Ok(Incoming::Ping(data)) => {
                    events.push(Event::Ping(data));
                    continue;
                }
                Ok(Incoming::Pong) => {
                    events.push(Event::Pong);
                    continue;
                }
                Ok(Incoming::Close(close)) => {
                    events.push(Event::Close(close.map(|(code, reason)| (code, reason.into_bytes()))));
                    End::Ended
                }
                Err(fault) => End::Refused(fault.close_code()),
            };
            return Outcome { events, end };
        }
    }
    Outcome {
        events,
        end: End::Ended,
    }
}

/// An in-memory connection for the reference: it hands out the case's bytes in the case's reads, then end of
/// stream, and takes (and forgets) whatever is written to it.
struct Script<'a> {
    bytes: &'a [u8],
    reads: std::slice::Iter<'a, usize>,
    /// What is left of the current read.
    current: &'a [u8],
}

impl<'a> Script<'a> {
    fn new(bytes: &'a [u8], reads: &'a [usize]) -> Self {
        Self {
            bytes,
            reads: reads.iter(),
            current: &[],
        }
    }
}

impl AsyncRead for Script<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.current.is_empty() {
            // The reads of a prefix case stop where its bytes do.
            let n = this
                .reads
                .next()
                .copied()
                .unwrap_or(this.bytes.len())
                .min(this.bytes.len());
            (this.current, this.bytes) = this.bytes.split_at(n);
        }
        let n = this.current.len().min(buf.remaining());
        buf.put_slice(&this.current[..n]);
        this.current = &this.current[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script<'_> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The close code a fastwebsockets error stands for; 0 for one a server reading bytes should never see.
fn reference_code(err: &WebSocketError) -> u16 {
    match err {
        WebSocketError::InvalidUTF8 => 1007,
        WebSocketError::FrameTooLarge => 1009,
        WebSocketError::InvalidFragment
        | WebSocketError::InvalidContinuationFrame
        | WebSocketError::InvalidCloseFrame
        | WebSocketError::InvalidCloseCode
        | WebSocketError::ReservedBitsNotZero
        | WebSocketError::ControlFrameFragmented
        | WebSocketError::PingFrameTooLarge
        | WebSocketError::InvalidValue => 1002,
        _ => 0,
    }
}

/// fastwebsockets' server side on `bytes` arriving in `reads`: whole messages through its `FragmentCollector`.
pub fn reference(bytes: &[u8], reads: &[usize]) -> Outcome {
    let mut ws = WebSocket::after_handshake(Script::new(bytes, reads), Role::Server);
    ws.set_auto_close(true);
    ws.set_auto_pong(false);
    // It refuses a frame of `max_message_size` bytes or more; the gateway one over its cap.
    ws.set_max_message_size(MAX + 1);
    let mut ws = FragmentCollector::new(ws);
    futures::executor::block_on(async {
        let mut events = Vec::new();
        loop {
            let frame = match ws.read_frame().await {
                Ok(frame) => frame,
                Err(WebSocketError::UnexpectedEOF) => {
                    return Outcome {
                        events,
                        end: End::Ended,
                    };
                }
                Err(err) => {
                    return Outcome {
                        events,
                        end: End::Refused(reference_code(&err)),
                    };
                }
            };
            let payload = frame.payload.to_vec();
            match frame.opcode {
                RefOpCode::Text => events.push(Event::Text(payload)),
                RefOpCode::Binary => events.push(Event::Binary),
                RefOpCode::Ping => events.push(Event::Ping(payload)),
                RefOpCode::Pong => events.push(Event::Pong),
                RefOpCode::Close => {
                    let close = (payload.len() >= 2)
                        .then(|| (u16::from_be_bytes([payload[0], payload[1]]), payload[2..].to_vec()));
                    events.push(Event::Close(close));
                    return Outcome {
                        events,
                        end: End::Ended,
                    };
                }
                RefOpCode::Continuation => events.push(Event::Binary),
            }
        }
    })
}

/// One frame as fastwebsockets reads it, frame by frame (no reassembly).
struct RefFrame {
    start: usize,
    fin: bool,
    opcode: RefOpCode,
    masked: bool,
    payload: Vec<u8>,
}

/// The frames fastwebsockets reads from `bytes` one by one, where each starts, and how many bytes they span.
fn frames(bytes: &[u8]) -> (Vec<RefFrame>, usize) {
    let mut ws = WebSocket::after_handshake(Script::new(bytes, &[]), Role::Server);
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    ws.set_max_message_size(1 << 24);
    futures::executor::block_on(async {
        let mut out = Vec::new();
        let mut at = 0;
        while let Ok(frame) = ws.read_frame().await {
            let b1 = bytes[at + 1];
            let masked = b1 & 0x80 != 0;
            let header =
                2 + [0, 2, 8][usize::from(b1 & 0x7f >= 126) + usize::from(b1 & 0x7f == 127)] + 4 * usize::from(masked);
            let payload = frame.payload.to_vec();
            let len = header + payload.len();
            out.push(RefFrame {
                start: at,
                fin: frame.fin,
                opcode: frame.opcode,
                masked,
                payload,
            });
            at += len;
        }
        (out, at)
    })
}

/// Where the gateway deliberately answers otherwise than fastwebsockets 0.10. Each is RFC 6455 read strictly, or
/// a cap fastwebsockets does not have, or an order of reads fastwebsockets answers later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Difference {
    /// An unmasked client frame: the gateway refuses it (1002), as §5.1 requires; fastwebsockets takes it.
    Unmasked,
    /// A close or pong frame over 125 bytes: the gateway refuses it (1002, §5.5); fastwebsockets limits pings only.
    LongControl,
    /// A new message begun (not final) while a fragmented one is under way: the gateway refuses it (1002, §5.4);
    /// fastwebsockets drops the first message and carries on with the second.
    NewMessageMidway,
    /// A fragmented message over the cap in total: the gateway refuses it (1009); fastwebsockets caps each frame.
    OverCapInTotal,
    /// A fragmented text message that ends inside a character: the gateway refuses it (1007, §8.1);
    /// fastwebsockets drops the cut character's bytes and delivers the rest.
    CutCharacterAtEnd,
    /// Close code 1014 (bad gateway, in IANA's registry of close codes): the gateway takes it, fastwebsockets
    /// refuses it (1002).
    Close1014,
    /// The bytes end inside a frame whose header already breaks a rule (unmasked, a control frame too long or not
    /// final, a frame over the cap): the gateway refuses it from the header, fastwebsockets first waits for the
    /// mask key (or, unmasked, the payload) and sees the bytes end.
    RefusedFromHeader,
}

impl Difference {
    /// Every difference, for the tests that check each is met.
    pub const ALL: [Self; 7] = [
        Self::Unmasked,
        Self::LongControl,
        Self::NewMessageMidway,
        Self::OverCapInTotal,
        Self::CutCharacterAtEnd,
        Self::Close1014,
        Self::RefusedFromHeader,
    ];
}

/// How far the frame-by-frame scan for a [`Difference`] got.
enum Scan {
    /// A difference at this frame.
    Found(usize, Difference),
    /// Both sides stop at a frame before any difference (a close, or a frame both refuse).
    Stopped,
    /// Every frame read, none different.
    Through,
}

/// The first frame where a [`Difference`] applies, if any before both sides stop.
fn first_difference(frames: &[RefFrame]) -> Scan {
    // The fragmented message under way: text or not, and its bytes so far.
    let mut under_way: Option<(bool, Vec<u8>)> = None;
    for (i, frame) in frames.iter().enumerate() {
        if !frame.masked {
            return Scan::Found(i, Difference::Unmasked);
        }
        let len = frame.payload.len();
        match frame.opcode {
            RefOpCode::Close | RefOpCode::Pong if len > 125 => return Scan::Found(i, Difference::LongControl),
            RefOpCode::Close => {
                let code = (len >= 2).then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                let reason_ok = len < 2 || std::str::from_utf8(&frame.payload[2..]).is_ok();
                if code == Some(1014) && reason_ok {
                    return Scan::Found(i, Difference::Close1014);
                }
                // Nothing after a close counts.
                return Scan::Stopped;
            }
            RefOpCode::Ping | RefOpCode::Pong => {}
            // Over the cap: both refuse this frame.
            _ if len > MAX => return Scan::Stopped,
            RefOpCode::Text | RefOpCode::Binary => match (&under_way, frame.fin) {
                (Some(_), false) => return Scan::Found(i, Difference::NewMessageMidway),
                // Both refuse a whole message inside a fragmented one.
                (Some(_), true) => return Scan::Stopped,
                (None, false) => under_way = Some((frame.opcode == RefOpCode::Text, frame.payload.clone())),
                (None, true) => {}
            },
            RefOpCode::Continuation => {
                // Both refuse a continuation of nothing.
                let Some((text, data)) = under_way.as_mut() else {
                    return Scan::Stopped;
                };
                data.extend_from_slice(&frame.payload);
                if data.len() > MAX {
                    return Scan::Found(i, Difference::OverCapInTotal);
                }
                if frame.fin {
                    if *text && std::str::from_utf8(data).is_err_and(|err| err.error_len().is_none()) {
                        return Scan::Found(i, Difference::CutCharacterAtEnd);
                    }
                    under_way = None;
                }
            }
        }
    }
    Scan::Through
}

/// A difference the header at the start of `bytes` makes, where fastwebsockets' frame-by-frame read stopped
/// without handing out the frame: an unmasked frame (read, it was text that is not UTF-8), or a close or pong
/// frame announcing over 125 bytes (refused, it announced more than any frame may have: fastwebsockets says 1009
/// where the gateway says what is wrong with a control frame, 1002). Reserved bits and opcodes both refuse alike.
fn header_difference(bytes: &[u8]) -> Option<Difference> {
    let (&b0, &b1) = (bytes.first()?, bytes.get(1)?);
    if b0 & 0x70 != 0 || !matches!(b0 & 0x0f, 0x0..=0x2 | 0x8..=0xa) {
        return None;
    }
    if b1 & 0x80 == 0 {
        return Some(Difference::Unmasked);
    }
    // The length, once its extended bytes are there (a 16- or 64-bit form may still hold a small number).
    let len = match b1 & 0x7f {
        126 => u64::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?])),
        127 => u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?),
        short => u64::from(short),
    };
    let long_control = matches!(b0 & 0x0f, 0x8 | 0xa) && b0 & 0x80 != 0 && len > 125;
    long_control.then_some(Difference::LongControl)
}

/// Where the gateway and the reference disagree, beyond the deliberate differences.
#[derive(Debug)]
pub struct Disagreement {
    /// The input.
    pub case: Case,
    /// What the gateway made of it.
    pub gateway: Outcome,
    /// What it should have made of it: the reference's outcome, with any deliberate difference applied.
    pub expected: Outcome,
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the gateway's codec and fastwebsockets disagree on {:?}\n  gateway:  {:?}\n  expected: {:?}",
            self.case, self.gateway, self.expected
        )
    }
}

/// Runs both sides on `case`: `Ok` with the deliberate difference met, if one was; a [`Disagreement`] otherwise.
pub fn check(case: &Case) -> Result<Option<Difference>, Disagreement> {
    let got = gateway(case);
    let (frames, spanned) = frames(&case.bytes);
    let found = match first_difference(&frames) {
        Scan::Found(at, difference) => Some((frames[at].start, difference)),
        // Where fastwebsockets' frame-by-frame read stopped, the header may already differ.
        Scan::Through => header_difference(&case.bytes[spanned..]).map(|difference| (spanned, difference)),
        Scan::Stopped => None,
    };
    let (expected, difference) = match found {
        Some((start, difference)) => {
            // The reference up to the frame where they part, then what the gateway does there.
            let mut before = reference(&case.bytes[..start], &case.reads);
            if before.end == End::Ended {
                before.end = match difference {
                    Difference::Unmasked | Difference::LongControl | Difference::NewMessageMidway => End::Refused(1002),
                    Difference::OverCapInTotal => End::Refused(1009),
                    Difference::CutCharacterAtEnd => End::Refused(1007),
                    Difference::Close1014 => {
                        let reason = frames
                            .iter()
                            .find(|f| f.start == start)
                            .map(|f| f.payload[2..].to_vec());
                        before
                            .events
                            .push(Event::Close(Some((1014, reason.unwrap_or_default()))));
                        End::Ended
                    }
                    // Found from how the bytes end, not frame by frame.
                    Difference::RefusedFromHeader => End::Ended,
                };
                (before, Some(difference))
            } else {
                (before, None)
            }
        }
        None => (reference(&case.bytes, &case.reads), None),
    };
    if got == expected {
        return Ok(difference);
    }
    let cut_frame = spanned < case.bytes.len();
    if got.events == expected.events
        && expected.end == End::Ended
        && matches!(got.end, End::Refused(1002 | 1009))
        && cut_frame
    {
        return Ok(Some(Difference::RefusedFromHeader));
    }
    Err(Disagreement {
        case: case.clone(),
        gateway: got,
        expected,
    })
}
