//! Bad input of every kind is answered as specified, and the gateway keeps serving everyone else.

use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::helpers::{Client, Stack, refused_status, request};

#[tokio::test]
async fn bad_tokens_and_origins_are_refused_before_the_upgrade() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&["--allowed-origins", "http://chat.example"]).await;
    let (token, _) = stack.user("pat").await;

    assert_eq!(
        refused_status(request(&format!("ws://127.0.0.1:{}/ws", gw.port), &[])).await,
        401
    );
    assert_eq!(refused_status(request(&gw.ws_url("not.a.jwt"), &[])).await, 401);
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(refused_status(request(&gw.ws_url(&tampered), &[])).await, 401);
    assert_eq!(
        refused_status(request(&gw.ws_url(&token), &[("origin", "http://evil.example")])).await,
        403
    );

    // The allowed origin works, and so does a token offered as a subprotocol (what browsers can do).
    let url = format!("ws://127.0.0.1:{}/ws", gw.port);
    let protocols = format!("natter.v1, {token}");
    let req = request(
        &url,
        &[
            ("origin", "http://chat.example"),
            ("sec-websocket-protocol", &protocols),
        ],
    );
    let (ws, response) = tokio_tungstenite::connect_async(req).await.expect("allowed");
    assert_eq!(response.headers()["sec-websocket-protocol"], "natter.v1");
    drop(ws);
}

#[tokio::test]
async fn garbage_gets_error_frames_and_a_flood_of_it_gets_closed() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&["--max-bad-frames", "9"]).await;
    let (token, _) = stack.user("quinn").await;
    let (other_token, _) = stack.user("rosa").await;
    let room = stack.room(&token, false).await;
    let mut bystander = Client::connect(&gw, &other_token).await;
    bystander.join(&room, None).await;

    let mut client = Client::connect(&gw, &token).await;
    client.send_text("{not json").await;
    assert_eq!(client.recv_type("error").await["code"], "bad_frame");
    client.send(json!({"type": "explode"})).await;
    assert_eq!(client.recv_type("error").await["code"], "bad_frame");
    client.send(json!({"type": "send", "room": room, "id": "m1"})).await;
    let error = client.recv_type("error").await;
    assert_eq!(
        (error["code"].as_str(), error["ref"].as_str()),
        (Some("bad_frame"), Some("m1")),
        "{error}"
    );
    for hostile in ["a.b", "*", ">", "a b", "x\u{0}", &"r".repeat(65)] {
        client.send(json!({"type": "join", "room": hostile})).await;
        let error = client.recv_type("error").await;
        assert_eq!(error["code"], "bad_frame", "{hostile:?}: {error}");
    }
    // Nine invalid frames were answered; the tenth is one too many.
    client.send_text("still garbage").await;
    assert_eq!(client.recv_type("error").await["code"], "bad_frame");
    assert_eq!(
        client.closed().await,
        Some(1008),
        "too many invalid frames close the connection"
    );

    // Everyone else is fine.
    let seq = bystander.say(&room, "still", "working").await;
    assert_eq!(bystander.recv_type("message").await["seq"].as_u64(), Some(seq));
}

#[tokio::test]
async fn oversized_messages_close_with_1009_even_when_fragmented() {
    let stack = Stack::start().await;
    let gw = stack
        .gateway(&["--max-message-bytes", "1024", "--max-body-chars", "500"])
        .await;
    let (token, _) = stack.user("sven").await;

    let mut whole = Client::connect(&gw, &token).await;
    whole
        .send_text(&format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(2000)))
        .await;
    assert_eq!(whole.closed().await, Some(1009));

    // Three fragments of 600 bytes: each under the cap, together over it.
    let mut fragmented = Client::connect(&gw, &token).await;
    let chunk = vec![b'x'; 600];
    let first = Frame::message(chunk.clone(), OpCode::Data(Data::Text), false);
    fragmented.ws.send(Message::Frame(first)).await.expect("send");
    for fin in [false, true] {
        let next = Frame::message(chunk.clone(), OpCode::Data(Data::Continue), fin);
        if fragmented.ws.send(Message::Frame(next)).await.is_err() {
            break;
        }
    }
    assert_eq!(
        fragmented.closed().await,
        Some(1009),
        "the whole message is capped, not each frame"
    );

    // A fragmented message under the cap is fine.
    let mut ok = Client::connect(&gw, &token).await;
    let parts = [r#"{"type":"ping","#, r#""id":"frag"}"#];
    ok.ws
        .send(Message::Frame(Frame::message(
            parts[0].as_bytes().to_vec(),
            OpCode::Data(Data::Text),
            false,
        )))
        .await
        .expect("send");
    ok.ws
        .send(Message::Frame(Frame::message(
            parts[1].as_bytes().to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .await
        .expect("send");
    let pong = ok.recv_type("pong").await;
    assert_eq!(pong["id"], "frag");
}

#[tokio::test]
async fn sending_too_fast_is_refused_not_fatal() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&["--sends-per-second", "2"]).await;
    let (token, _) = stack.user("tina").await;
    let room = stack.room(&token, false).await;
    let mut client = Client::connect(&gw, &token).await;
    client.join(&room, None).await;
    for i in 0..8 {
        client
            .send(json!({"type": "send", "room": room, "id": format!("f{i}"), "body": "spam"}))
            .await;
    }
    let mut acks = 0;
    let mut limited = 0;
    for _ in 0..8 {
        let frame = loop {
            let frame = client.recv().await;
            if frame["type"] == "ack" || frame["type"] == "error" {
                break frame;
            }
        };
        match frame["type"].as_str() {
            Some("ack") => acks += 1,
            _ => {
                assert_eq!(frame["code"], "rate_limited", "{frame}");
                limited += 1;
            }
        }
    }
    assert_eq!(
        (acks, limited),
        (4, 4),
        "a burst of twice the rate passes, the rest is refused"
    );
    client.send(json!({"type": "ping", "id": "alive"})).await;
    assert_eq!(client.recv_type("pong").await["id"], "alive");
}

#[tokio::test]
async fn a_slow_reader_is_cut_off_and_the_room_carries_on() {
    // 1,500 messages of 8 KB (12 MB): far more than the socket buffers and the queue hold.
    slow_reader_is_cut_off(&[], 1500, 8000).await;
}

#[tokio::test]
async fn a_fixed_socket_send_buffer_cuts_a_slow_reader_off_after_little_data() {
    // 200 messages of 2 KB (400 KB): a kernel-sized send buffer (up to 4 MiB) would take them all without the
    // client reading; one fixed at 8 KiB fills, and then the queue does.
    slow_reader_is_cut_off(&["--socket-send-buffer", "8192"], 200, 2000).await;
}

/// A client that reads nothing while `count` messages of `size` bytes go to its room is closed as a slow consumer
/// (4008) by a gateway with a 16-frame outbound queue and `args`, and the room goes on at full speed for others.
async fn slow_reader_is_cut_off(args: &[&str], count: usize, size: usize) {
    let stack = Stack::start().await;
    let mut gateway_args = vec![
        "--outbound-queue",
        "16",
        "--sends-per-second",
        "100000",
        "--max-body-chars",
        "8000",
    ];
    gateway_args.extend_from_slice(args);
    let gw = stack.gateway(&gateway_args).await;
    let (token, _) = stack.user("uwe").await;
    let (slow_token, _) = stack.user("vera").await;
    let (reader_token, _) = stack.user("walt").await;
    let room = stack.room(&token, false).await;

    let mut slow = Client::connect(&gw, &slow_token).await;
    slow.join(&room, None).await;
    let mut reader = Client::connect(&gw, &reader_token).await;
    reader.join(&room, None).await;
    let mut sender = Client::connect(&gw, &token).await;
    sender.join(&room, None).await;

    let body = "x".repeat(size);
    let got = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reading = tokio::spawn({
        let got = got.clone();
        async move {
            while got.load(std::sync::atomic::Ordering::Relaxed) < count {
                let msg = reader.recv_type("message").await;
                assert!(msg["prev"].as_u64().is_some(), "{msg}");
                got.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            got.load(std::sync::atomic::Ordering::Relaxed)
        }
    });
    for i in 0..count {
        // The reader reads as fast as it is sent to, however this test's task is scheduled: only the slow client
        // may fall behind.
        while i - got.load(std::sync::atomic::Ordering::Relaxed) > 8 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        sender
            .send(json!({"type": "send", "room": room, "id": format!("s{i}"), "body": body}))
            .await;
        if i % 5 == 4 {
            // Keep the acks (and its own copies of the messages) drained so the sender is not the slow one: with an
            // outbound queue of 16, a sender that reads only every 50 sends can be cut off itself on a busy machine.
            while sender.recv_type("ack").await["id"] != format!("s{i}") {}
        }
    }
    assert_eq!(
        reading.await.expect("reader task"),
        count,
        "the room went on at full speed for the others"
    );
    let metrics = gw.metrics().await;
    assert_eq!(
        natter_test_support::metrics_page::value(&metrics, "natter_gateway_slow_consumer_disconnects_total"),
        Some(1.0),
        "{metrics}"
    );
    // The slow client, once it reads, finds its connection closed with 4008 (or cut, if even that could not
    // be written).
    let code = slow.closed().await;
    assert!(matches!(code, Some(4008) | None), "{code:?}");
}

#[tokio::test]
async fn an_expiring_token_closes_the_connection_unless_refreshed_in_band() {
    let stack = Stack::start_with(&["--access-token-ttl", "10s"]).await;
    let gw = stack.gateway(&[]).await;
    let lapsing = stack.guest("xena").await;
    let refreshed = stack.guest("yuri").await;
    let mut lapsing_client = Client::connect(&gw, lapsing["access_token"].as_str().expect("token")).await;
    let mut refreshing_client = Client::connect(&gw, refreshed["access_token"].as_str().expect("token")).await;

    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let fresh = stack
        .refresh(refreshed["refresh_token"].as_str().expect("refresh token"))
        .await;
    refreshing_client
        .send(json!({"type": "refresh", "token": fresh["access_token"]}))
        .await;
    // Another user's token is refused in-band.
    refreshing_client
        .send(json!({"type": "refresh", "token": lapsing["access_token"]}))
        .await;
    assert_eq!(refreshing_client.recv_type("error").await["code"], "token_wrong_user");

    assert_eq!(
        lapsing_client.closed().await,
        Some(4001),
        "the unrefreshed connection closes at expiry"
    );
    // Past the first token's expiry, the refreshed connection still works.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    refreshing_client
        .send(json!({"type": "ping", "id": "still-here"}))
        .await;
    assert_eq!(refreshing_client.recv_type("pong").await["id"], "still-here");
}

#[tokio::test]
async fn connections_per_user_are_capped_and_idle_ones_closed() {
    let stack = Stack::start().await;
    let gw = stack
        .gateway(&[
            "--max-connections-per-user",
            "2",
            "--ping-interval",
            "1s",
            "--idle-timeout",
            "2s",
        ])
        .await;
    let (token, _) = stack.user("zack").await;
    let _first = Client::connect(&gw, &token).await;
    let _second = Client::connect(&gw, &token).await;
    assert_eq!(refused_status(request(&gw.ws_url(&token), &[])).await, 429);

    // A client that answers pings stays (tungstenite answers them for us while we read)...
    let (other, _) = stack.user("zoe").await;
    let mut live = Client::connect(&gw, &other).await;
    // ...and one whose pongs never arrive is closed as idle: a raw TCP client that upgrades and then goes silent.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .expect("tcp");
    let upgrade = format!(
        "GET /ws?token={other} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    raw.write_all(upgrade.as_bytes()).await.expect("write");
    let started = std::time::Instant::now();
    let silent = async {
        let mut buf = vec![0u8; 4096];
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), raw.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break seen,
                Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
                Err(_) => panic!("the silent connection was not closed"),
            }
        }
    };
    // Meanwhile the other client keeps talking (and its reads answer the server's pings).
    let talking = async {
        for i in 0..8 {
            live.send(json!({"type": "ping", "id": format!("p{i}")})).await;
            assert_eq!(live.recv_type("pong").await["id"], format!("p{i}"));
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    };
    let (seen, ()) = tokio::join!(silent, talking);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "not before the idle timeout"
    );
    // Its last frame is a close (0x88) whose code is 4009 (0x0fa9).
    let close_4009 = seen.windows(4).any(|w| w[0] == 0x88 && w[2..] == [0x0f, 0xa9]);
    assert!(close_4009, "close 4009 in {:?}", &seen[seen.len().saturating_sub(32)..]);
}
