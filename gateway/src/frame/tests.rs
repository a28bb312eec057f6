//! The codec's rules, frame by frame.

use super::*;

/// A client frame: masked with `mask`, as a browser would send it.
fn client(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        0..=125 => out.push(0x80 | payload.len() as u8),
        126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

#[test]
fn decodes_masked_frames_of_every_length_encoding() {
    for len in [0usize, 1, 5, 125, 126, 127, 1000, 65535, 65536, 70000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut bytes = client(true, 0x2, &payload, MASK);
        let total = bytes.len();
        let frame = decode(&mut bytes, 1 << 20).expect("valid").expect("complete");
        assert_eq!((frame.fin, frame.opcode, frame.len), (true, OpCode::Binary, total));
        assert_eq!(&bytes[frame.payload], &payload[..], "len {len}");
    }
}

#[test]
fn a_frame_cut_short_anywhere_asks_for_more() {
    let bytes = client(true, 0x1, b"hello, world", MASK);
    for cut in 0..bytes.len() {
        let mut part = bytes[..cut].to_vec();
        assert_eq!(decode(&mut part, 1024), Ok(None), "cut at {cut}");
    }
    // Two frames back to back: the first is decoded, the rest left for the next call.
    let mut two = client(true, 0x1, b"one", MASK);
    let first_len = two.len();
    two.extend(client(true, 0x1, b"two", MASK));
    let frame = decode(&mut two, 1024).expect("valid").expect("complete");
    assert_eq!(frame.len, first_len);
    let mut rest = two[first_len..].to_vec();
    let second = decode(&mut rest, 1024).expect("valid").expect("complete");
    assert_eq!(&rest[second.payload], b"two");
}

#[test]
fn protocol_violations_are_refused_with_the_right_close_code() {
    let cases: Vec<(Vec<u8>, FrameError)> = vec![
        (
            {
                let mut f = client(true, 0x1, b"x", MASK);
                f[0] |= 0x40;
                f
            },
            FrameError::ReservedBits,
        ),
        (client(true, 0x3, b"x", MASK), FrameError::UnknownOpcode),
        (vec![0x81, 0x01, b'x'], FrameError::Unmasked),
        (client(true, 0x9, &[0u8; 126], MASK), FrameError::BadControl),
        (client(false, 0x9, b"x", MASK), FrameError::BadControl),
        (client(true, 0x2, &[0u8; 2000], MASK), FrameError::TooLarge),
    ];
    for (mut bytes, expected) in cases {
        assert_eq!(decode(&mut bytes, 1024), Err(expected));
    }
    // A header announcing more than the cap is refused before the payload arrives.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    assert_eq!(decode(&mut header, 1024), Err(FrameError::TooLarge));
    assert_eq!(FrameError::TooLarge.close_code(), 1009);
    assert_eq!(FrameError::InvalidUtf8.close_code(), 1007);
    assert_eq!(FrameError::Unmasked.close_code(), 1002);
}

fn push_all(frames: &[(bool, OpCode, &[u8])], max: usize) -> Result<Vec<String>, FrameError> {
    let mut messages = Reassembly::default();
    let mut out = Vec::new();
    for (fin, opcode, payload) in frames {
        if let Some(message) = messages.push(*fin, *opcode, payload, max)? {
            out.push(format!("{message:?}"));
        }
    }
    Ok(out)
}

#[test]
fn fragments_are_put_together_with_control_frames_between_them() {
    let got = push_all(
        &[
            (false, OpCode::Text, b"hel"),
            (true, OpCode::Ping, b"p"),
            (false, OpCode::Continuation, b"lo "),
            (true, OpCode::Continuation, "wörld".as_bytes()),
            (true, OpCode::Binary, &[1, 2]),
        ],
        64,
    )
    .expect("valid");
    assert_eq!(got, vec![r#"Ping([112])"#, r#"Text("hello wörld")"#, "Binary([1, 2])"]);
}

#[test]
fn the_whole_message_is_capped_and_fragments_must_be_in_order() {
    let part = [b'a'; 40];
    assert_eq!(
        push_all(&[(false, OpCode::Text, &part), (true, OpCode::Continuation, &part)], 64),
        Err(FrameError::TooLarge)
    );
    assert_eq!(
        push_all(&[(true, OpCode::Continuation, b"x")], 64),
        Err(FrameError::Fragments)
    );
    assert_eq!(
        push_all(&[(false, OpCode::Text, b"x"), (true, OpCode::Text, b"y")], 64),
        Err(FrameError::Fragments)
    );
    // A multi-byte character split across fragments is fine; invalid UTF-8 is not.
    let euro = "€".as_bytes();
    assert!(
        push_all(
            &[
                (false, OpCode::Text, &euro[..1]),
                (true, OpCode::Continuation, &euro[1..])
            ],
            64
        )
        .is_ok()
    );
    assert_eq!(
        push_all(&[(true, OpCode::Text, &[0xff, 0xfe])], 64),
        Err(FrameError::InvalidUtf8)
    );
}

#[test]
fn close_payloads_are_checked() {
    assert_eq!(
        push_all(&[(true, OpCode::Close, b"")], 64).expect("ok"),
        vec!["Close(None)"]
    );
    let mut normal = 1000u16.to_be_bytes().to_vec();
    normal.extend_from_slice(b"bye");
    assert_eq!(
        push_all(&[(true, OpCode::Close, &normal)], 64).expect("ok"),
        vec![r#"Close(Some((1000, "bye")))"#]
    );
    assert_eq!(push_all(&[(true, OpCode::Close, &[3])], 64), Err(FrameError::BadClose));
    // The codes IANA's registry added after RFC 6455 may be sent too (the gateway itself closes with 1012).
    for code in [1012u16, 1013, 1014, 3000, 4999] {
        assert_eq!(
            push_all(&[(true, OpCode::Close, &code.to_be_bytes())], 64).expect("allowed"),
            vec![format!("Close(Some(({code}, \"\")))")]
        );
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert_eq!(
            push_all(&[(true, OpCode::Close, &code.to_be_bytes())], 64),
            Err(FrameError::BadClose),
            "{code}"
        );
    }
    assert_eq!(
        push_all(&[(true, OpCode::Close, &[0x03, 0xe8, 0xff])], 64),
        Err(FrameError::InvalidUtf8)
    );
    // A bad code and a bad reason: the reason is named, as fastwebsockets names it.
    assert_eq!(
        push_all(&[(true, OpCode::Close, &[0x03, 0xec, 0xff])], 64),
        Err(FrameError::InvalidUtf8)
    );
}

#[test]
fn bad_utf8_in_a_fragment_fails_at_once_and_a_character_cut_at_the_end_fails_at_the_end() {
    // Found by the differential test: the message used to be checked only once complete, so a client could keep
    // sending fragments after the first bad byte; fastwebsockets fails at the fragment.
    let mut messages = Reassembly::default();
    assert_eq!(messages.push(false, OpCode::Text, b"ok", 64), Ok(None));
    assert_eq!(
        messages.push(false, OpCode::Continuation, &[b'a', 0xff], 64),
        Err(FrameError::InvalidUtf8)
    );
    let mut messages = Reassembly::default();
    assert_eq!(
        messages.push(false, OpCode::Text, &[0xc0, 0xaf], 64),
        Err(FrameError::InvalidUtf8)
    );
    // A character cut across fragments waits for the rest; one cut at the message's end is refused.
    let euro = "€".as_bytes();
    let mut messages = Reassembly::default();
    assert_eq!(messages.push(false, OpCode::Text, &euro[..1], 64), Ok(None));
    assert_eq!(messages.push(false, OpCode::Continuation, &euro[1..2], 64), Ok(None));
    assert_eq!(
        messages.push(true, OpCode::Continuation, &euro[2..], 64),
        Ok(Some(Message::Text("€".into())))
    );
    assert_eq!(
        push_all(
            &[(false, OpCode::Text, b"a"), (true, OpCode::Continuation, &euro[..2])],
            64
        ),
        Err(FrameError::InvalidUtf8)
    );
    // A whole text frame inside a fragmented message with bad UTF-8 too: the text is named, as fastwebsockets does.
    assert_eq!(
        push_all(&[(false, OpCode::Text, b"a"), (true, OpCode::Text, &[0xff])], 64),
        Err(FrameError::InvalidUtf8)
    );
}

#[test]
fn messages_before_a_fault_in_the_same_read_are_handed_out_first() {
    use crate::socket::{Decoder, Incoming};
    // Found by the differential test: a fault dropped the messages decoded from the same read before it, so what
    // the gateway handled depended on how TCP cut the bytes.
    let mut bytes = client(true, 0x1, b"first", MASK);
    bytes.extend(client(true, 0x9, b"p", MASK));
    bytes.extend(client(true, 0x3, b"", MASK));
    bytes.extend(client(true, 0x1, b"never", MASK));
    let mut decoder = Decoder::new(64);
    decoder.feed(&mut bytes);
    assert_eq!(decoder.next_message(), Some(Ok(Incoming::Text("first".into()))));
    assert_eq!(decoder.next_message(), Some(Ok(Incoming::Ping(b"p".to_vec()))));
    assert_eq!(decoder.next_message(), Some(Err(FrameError::UnknownOpcode)));
    assert_eq!(decoder.next_message(), Some(Err(FrameError::UnknownOpcode)));
    // A frame announcing more than the message cap is refused from its header, before its payload arrives.
    let mut decoder = Decoder::new(64);
    let mut header = client(true, 0x1, &[b'a'; 65], MASK);
    header.truncate(4);
    decoder.feed(&mut header);
    assert_eq!(decoder.next_message(), Some(Err(FrameError::TooLarge)));
    // A close frame ends decoding: what follows it is ignored, and its reason is kept.
    let mut decoder = Decoder::new(64);
    let mut close = client(true, 0x8, &[0x03, 0xe8, b'o', b'k'], MASK);
    close.extend(client(true, 0x1, b"after", MASK));
    decoder.feed(&mut close);
    assert_eq!(
        decoder.next_message(),
        Some(Ok(Incoming::Close(Some((1000, "ok".into())))))
    );
    assert_eq!(decoder.next_message(), None);
    assert!(decoder.closed());
}

#[test]
fn a_close_frame_announcing_more_than_anything_is_a_control_frame_fault_not_a_size_one() {
    use super::differential::{Case, Difference, check, gateway};
    // Found by the fuzz target frame_differential: a close frame announcing 2^64-1 bytes. The gateway says what
    // is wrong with it as a control frame (1002); fastwebsockets, which limits no close frame's length, refuses
    // it for its size (1009). Both refuse; the difference is the named one for long control frames.
    let case = Case {
        bytes: vec![
            0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x26, 0x0a, 0x0a, 0x0a,
        ],
        reads: vec![14],
    };
    assert_eq!(gateway(&case).end, super::differential::End::Refused(1002));
    assert_eq!(
        check(&case).map_err(|d| d.to_string()),
        Ok(Some(Difference::LongControl))
    );
}

/// The differential property (see `differential`): seeded random cases, the same outcome from the gateway's
/// codec and from fastwebsockets, or one of the named deliberate differences, each of which must be met.
#[test]
fn the_codec_agrees_with_fastwebsockets_on_random_client_streams() {
    use std::collections::BTreeMap;

    use rand::{Rng, SeedableRng};

    use super::differential::{Case, Choices, Difference, check};
    const CASES: usize = 6000;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6e61_7474_6572);
    let mut met: BTreeMap<Option<Difference>, usize> = BTreeMap::new();
    let mut disagreements = Vec::new();
    for _ in 0..CASES {
        let choices: Vec<u8> = (0..rng.gen_range(0..1500)).map(|_| rng.r#gen()).collect();
        let case = Case::from_choices(&mut Choices::new(&choices));
        match check(&case) {
            Ok(difference) => *met.entry(difference).or_default() += 1,
            Err(disagreement) => disagreements.push(disagreement),
        }
    }
    let first: Vec<String> = disagreements.iter().take(3).map(ToString::to_string).collect();
    assert!(
        disagreements.is_empty(),
        "{} of {CASES} cases disagree; the first ones:\n{}",
        disagreements.len(),
        first.join("\n")
    );
    eprintln!("{CASES} cases: {met:?}");
    assert!(met.get(&None).is_some_and(|&n| n > CASES / 2), "{met:?}");
    for difference in Difference::ALL {
        assert!(met.contains_key(&Some(difference)), "never met {difference:?}: {met:?}");
    }
}

#[test]
fn server_frames_round_trip_through_a_decoder() {
    for len in [0usize, 125, 126, 65535, 65536] {
        let payload = vec![7u8; len];
        let frame = encode(OpCode::Text, &payload);
        assert_eq!(frame.len(), header_len(len) + len);
        assert_eq!(frame[0], 0x81);
        // Re-mask it as a client would, and decode it back.
        let mut masked = frame.to_vec();
        let at = header_len(len);
        masked[1] |= 0x80;
        masked.splice(at..at, MASK);
        for (i, b) in masked[at + 4..].iter_mut().enumerate() {
            *b ^= MASK[i % 4];
        }
        let decoded = decode(&mut masked, 1 << 20).expect("valid").expect("complete");
        assert_eq!(&masked[decoded.payload], &payload[..]);
    }
    for json in [
        serde_json::json!({"a": 1}),
        serde_json::json!({"a": "x".repeat(200)}),
        serde_json::json!("y".repeat(70000)),
    ] {
        let frame = text_json(&json);
        let text = json.to_string();
        assert_eq!(frame.len(), header_len(text.len()) + text.len());
        assert_eq!(&frame[header_len(text.len())..], text.as_bytes());
        assert_eq!(frame[0], 0x81);
    }
    let closing = close(4008, &"é".repeat(100));
    assert!(closing.len() <= 2 + 125, "{}", closing.len());
    assert_eq!(&closing[2..4], &4008u16.to_be_bytes());
    assert!(std::str::from_utf8(&closing[4..]).is_ok());
}

/// The fuzz target's property (gateway/fuzz), over seeded random inputs on every test run: bytes of any kind,
/// cut anywhere, give a frame, a request for more, or an error with a protocol close code; never a panic, a
/// frame past the bytes read, or a message held over the cap. Half the inputs start as well-formed frames with
/// random corruption, so the decoder gets past the header checks.
#[test]
fn random_and_corrupted_input_never_panics_the_codec() {
    use rand::{Rng, SeedableRng};
    const MAX: usize = 1024;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6e61_7474);
    for case in 0..20_000 {
        let mut data: Vec<u8> = if case % 2 == 0 {
            (0..rng.gen_range(0..300)).map(|_| rng.r#gen()).collect()
        } else {
            let mut frames = Vec::new();
            for _ in 0..rng.gen_range(1..5) {
                let opcode = [0x0, 0x1, 0x2, 0x8, 0x9, 0xA][rng.gen_range(0..6)];
                let payload: Vec<u8> = (0..rng.gen_range(0..200)).map(|_| rng.gen_range(0x20..0x7f)).collect();
                frames.extend(client(rng.gen_bool(0.7), opcode, &payload, rng.r#gen()));
            }
            for _ in 0..rng.gen_range(0..3) {
                if !frames.is_empty() {
                    let at = rng.gen_range(0..frames.len());
                    frames[at] = rng.r#gen();
                }
            }
            frames
        };
        let step = rng.gen_range(1..64);
        let mut buffer = Vec::new();
        let mut messages = Reassembly::default();
        'input: for chunk in data.chunks_mut(step) {
            buffer.extend_from_slice(chunk);
            loop {
                match decode(&mut buffer, MAX) {
                    Ok(Some(frame)) => {
                        assert!(
                            frame.len <= buffer.len() && frame.payload.end <= frame.len,
                            "case {case}"
                        );
                        let payload = buffer[frame.payload.clone()].to_vec();
                        let pushed = messages
                            .push(frame.fin, frame.opcode, &payload, MAX)
                            .map(|m| m.is_some());
                        assert!(messages.held() <= 2 * MAX, "case {case}: {} held", messages.held());
                        buffer.drain(..frame.len);
                        if pushed.is_err() {
                            break 'input;
                        }
                    }
                    Ok(None) => break,
                    Err(err) => {
                        assert!(matches!(err.close_code(), 1002 | 1007 | 1009), "case {case}: {err:?}");
                        break 'input;
                    }
                }
            }
        }
    }
}
