//! The WebSocket wire format (RFC 6455 §5) as a server speaks it: client frames decoded in place from whatever
//! bytes have arrived, messages reassembled from fragments under one size cap, server frames encoded whole.
//!
//! No I/O and no allocation while decoding a frame: the caller owns the bytes (a per-thread read buffer, or the
//! few bytes of a frame cut short by the socket). The rules are the RFC's: client frames are masked, reserved bits
//! are zero, control frames are at most 125 bytes and never fragmented, a text message is UTF-8, a close frame's
//! payload is empty or a valid code and a UTF-8 reason.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// A later fragment of a message.
    Continuation,
    /// The first frame of a text message.
    Text,
    /// The first frame of a binary message.
    Binary,
    /// Close.
    Close,
    /// Ping.
    Ping,
    /// Pong.
    Pong,
}

impl OpCode {
    fn parse(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Whether this is a control frame (close, ping, pong).
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// Why the peer broke the protocol, with the close code that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A reserved bit is set (no extension was negotiated).
    #[error("reserved bits set")]
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode")]
    UnknownOpcode,
    /// A client frame without a mask.
    #[error("client frames must be masked")]
    Unmasked,
    /// A control frame over 125 bytes, or fragmented.
    #[error("control frames must be whole and at most 125 bytes")]
    BadControl,
    /// A continuation with no message begun, or a new message before the last one ended.
    #[error("fragments out of order")]
    Fragments,
    /// A message (all its fragments together) over the cap.
    #[error("message too large")]
    TooLarge,
    /// A text message, or a close reason, that is not UTF-8.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    /// A close frame whose payload is one byte, or whose code may not be sent.
    #[error("invalid close frame")]
    BadClose,
}

impl FrameError {
    /// The close code to answer with.
    pub fn close_code(self) -> u16 {
        match self {
            Self::TooLarge => 1009,
            Self::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }
}

/// One decoded frame: where its payload lies in the buffer it was decoded from (already unmasked there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The last fragment of its message.
    pub fin: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The payload's range in the buffer.
    pub payload: std::ops::Range<usize>,
    /// Bytes the frame took, header included.
    pub len: usize,
}

/// Decodes the frame at the start of `buf`, unmasking its payload in place. `Ok(None)`: the frame is not all
/// there yet. `max` caps a single frame's payload (the reader gives its message cap: no frame over it can be part
/// of a message under it), so a header announcing a larger one is refused at once, before its payload arrives.
pub fn decode(buf: &mut [u8], max: usize) -> Result<Option<RawFrame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::parse(b0 & 0x0F).ok_or(FrameError::UnknownOpcode)?;
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (len, mut at) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(raw), 10)
        }
        short => (u64::from(short), 2),
    };
    if opcode.is_control() && (len > 125 || !fin) {
        return Err(FrameError::BadControl);
    }
    // The top bit of a 64-bit length must be zero; anything over the cap is refused before it arrives.
    let len = usize::try_from(len).map_err(|_| FrameError::TooLarge)?;
    if len > max {
        return Err(FrameError::TooLarge);
    }
    if buf.len() < at + 4 + len {
        return Ok(None);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    at += 4;
    let payload = at..at + len;
    unmask(&mut buf[payload.clone()], mask);
    Ok(Some(RawFrame {
        fin,
        opcode,
        payload,
        len: at + len,
    }))
}

/// XORs `data` with the 4-byte mask, as both masking and unmasking do: fastwebsockets' `unmask`, a pure
/// function over the caller's bytes (no buffer of its own), word by word on aligned memory (see
/// `benches/unmask.rs` and docs/benchmarks.md for how it compares with the loop the codec had).
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    fastwebsockets::unmask(data, mask);
}

/// What a complete message (or control frame) is.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A whole text message, valid UTF-8 (borrowed from the frame, or owned when put together from fragments).
    Text(Cow<'a, str>),
    /// A whole binary message.
    Binary(Cow<'a, [u8]>),
    /// A ping, to be answered with a pong of the same payload.
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// A close: the peer's code and reason, if it gave them.
    Close(Option<(u16, &'a str)>),
}

/// Puts messages together from their fragments, capping the whole message, not just each frame.
#[derive(Debug, Default)]
pub struct Reassembly {
    /// The message being put together. Empty (no allocation) between messages.
    partial: Option<Partial>,
}

/// A fragmented message under way.
#[derive(Debug)]
struct Partial {
    /// Its first frame's opcode (text or binary).
    opcode: OpCode,
    /// The payload so far.
    data: Vec<u8>,
    /// For text, how much of `data` is known to be whole, valid UTF-8 (a character cut at a fragment's end
    /// waits for the next fragment): a fragment with invalid UTF-8 fails at once, not when the message ends.
    checked: usize,
}

impl Partial {
    /// Checks the text added since the last check; a character cut at the end is left for the next fragment.
    fn check_text(&mut self) -> Result<(), FrameError> {
        if self.opcode != OpCode::Text {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.checked..]) {
            Ok(_) => self.checked = self.data.len(),
            Err(err) if err.error_len().is_none() => self.checked += err.valid_up_to(),
            Err(_) => return Err(FrameError::InvalidUtf8),
        }
        Ok(())
    }
}

impl Reassembly {
    /// Whether a fragmented message is under way.
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Bytes held for a message under way.
    pub fn held(&self) -> usize {
        self.partial.as_ref().map_or(0, |partial| partial.data.capacity())
    }

    /// Takes one frame; returns the message it completes, if any. `payload` is the frame's unmasked payload.
    pub fn push<'a>(
        &'a mut self,
        fin: bool,
        opcode: OpCode,
        payload: &'a [u8],
        max: usize,
    ) -> Result<Option<Message<'a>>, FrameError> {
        match opcode {
            OpCode::Ping => Ok(Some(Message::Ping(payload))),
            OpCode::Pong => Ok(Some(Message::Pong)),
            OpCode::Close => close_payload(payload).map(|close| Some(Message::Close(close))),
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    // Two faults in one frame: the text's is named first, as fastwebsockets does (it checks a
                    // whole text frame before the fragment order).
                    if opcode == OpCode::Text && fin && std::str::from_utf8(payload).is_err() {
                        return Err(FrameError::InvalidUtf8);
                    }
                    return Err(FrameError::Fragments);
                }
                if payload.len() > max {
                    return Err(FrameError::TooLarge);
                }
                if fin {
                    return whole(opcode, Cow::Borrowed(payload)).map(Some);
                }
                let mut partial = Partial {
                    opcode,
                    data: payload.to_vec(),
                    checked: 0,
                };
                partial.check_text()?;
                self.partial = Some(partial);
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(FrameError::Fragments);
                };
                if partial.data.len() + payload.len() > max {
                    return Err(FrameError::TooLarge);
                }
                partial.data.extend_from_slice(payload);
                partial.check_text()?;
                if !fin {
                    return Ok(None);
                }
                let Some(Partial { opcode, data, .. }) = self.partial.take() else {
                    return Err(FrameError::Fragments);
                };
                whole(opcode, Cow::Owned(data)).map(Some)
            }
        }
    }
}

fn whole(opcode: OpCode, data: Cow<'_, [u8]>) -> Result<Message<'_>, FrameError> {
    if opcode != OpCode::Text {
        return Ok(Message::Binary(data));
    }
    let text = match data {
        Cow::Borrowed(bytes) => Cow::Borrowed(std::str::from_utf8(bytes).map_err(|_| FrameError::InvalidUtf8)?),
        Cow::Owned(bytes) => Cow::Owned(String::from_utf8(bytes).map_err(|_| FrameError::InvalidUtf8)?),
    };
    Ok(Message::Text(text))
}

/// A close frame's payload: nothing, or a code the peer may send and a UTF-8 reason (RFC 6455 §5.5.1, §7.4).
///
/// The codes allowed are those RFC 6455 §7.4.1 defines for an endpoint to send, those IANA's registry added since
/// (1012 service restart, 1013 try again later, 1014 bad gateway), and the ranges for libraries (3000–3999) and
/// applications (4000–4999). The reason is checked before the code, as fastwebsockets does, so a frame with both
/// faults is named the same by both.
fn close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::BadClose),
        [hi, lo, reason @ ..] => {
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code_allowed(code) {
                return Err(FrameError::BadClose);
            }
            Ok(Some((code, reason)))
        }
    }
}

/// Whether a peer may send `code` in a close frame (see [`close_payload`]).
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Encodes a whole server frame (unmasked, FIN set): header and payload in one buffer, ready to write.
pub fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(header_len(payload.len()) + payload.len());
    put_header(&mut out, opcode, payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// A text frame holding `value` as JSON, serialized straight into the frame's buffer (no copy after).
pub fn text_json<T: serde::Serialize>(value: &T) -> Bytes {
    // Room for the usual 4-byte header (payloads up to 64 KiB); the header goes in front once the length is known.
    let mut out = BytesMut::with_capacity(256);
    out.put_bytes(0, 4);
    let mut writer = out.writer();
    if serde_json::to_writer(&mut writer, value).is_err() {
        // Serializing the protocol's frames cannot fail (no maps with non-string keys, no I/O).
        return Bytes::new();
    }
    let mut out = writer.into_inner();
    let len = out.len() - 4;
    match len {
        0..=125 => {
            out[2] = 0x80 | OpCode::Text.bits();
            out[3] = len as u8;
            out.split_off(2).freeze()
        }
        126..=65535 => {
            out[0] = 0x80 | OpCode::Text.bits();
            out[1] = 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            out.freeze()
        }
        _ => encode(OpCode::Text, &out[4..]),
    }
}

/// A close frame with `code` and `reason` (cut to fit the 125-byte limit at a character boundary).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OpCode::Close, &payload)
}

/// The length of a server frame header for a payload of `len` bytes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// Writes a server frame header (FIN set, no mask) for a payload of `len` bytes.
pub fn put_header(out: &mut impl BufMut, opcode: OpCode, len: usize) {
    out.put_u8(0x80 | opcode.bits());
    match len {
        0..=125 => out.put_u8(len as u8),
        126..=65535 => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
}

#[cfg(any(test, feature = "differential"))]
pub mod differential;

#[cfg(test)]
mod tests;
