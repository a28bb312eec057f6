//! Attacks from outside, past what `abuse.rs` and `rfc6455.rs` cover: forged and doctored access tokens at the
//! upgrade and in-band, look-alike origins, subject injection through ids, WebSocket framing faults across
//! fragments, request heads sent a byte at a time, and text history cannot store. Each is refused the documented
//! way, and everyone else is served on. docs/security.md says which attack each test stands for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

use crate::helpers::{Client, GatewayProc, Stack, WAIT, request};

/// The auth API's signing key, read from its database, and a real token's claims to doctor.
struct Forge {
    kid: String,
    key: EncodingKey,
    /// The public half, as the JWKS publishes it (`x`, base64url).
    public_x: String,
    /// The claims of a token the auth API minted for a guest, as it wrote them.
    claims: Value,
    /// That token, untouched.
    token: String,
}

impl Forge {
    /// Logs a guest in and takes the key that signed its token.
    async fn new(stack: &Stack, name: &str) -> Self {
        let (token, _) = stack.user(name).await;
        let pool = sqlx::PgPool::connect(&stack.db_url).await.expect("database");
        let (kid, der): (String, Vec<u8>) = sqlx::query_as(
            "SELECT kid, private_der FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1",
        )
        .fetch_one(&pool)
        .await
        .expect("the signing key");
        pool.close().await;
        assert_eq!(
            natter_proto::token::unverified_key_id(&token).as_deref(),
            Some(kid.as_str()),
            "the newest key signed the guest's token"
        );
        let key = EncodingKey::from_ed_der(&der);
        let jwk = serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::EdDSA).expect("JWK")).expect("JSON");
        let public_x = jwk["x"].as_str().expect("x").to_owned();
        let claims_part = token.split('.').nth(1).expect("claims part");
        let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims_part).expect("base64url")).expect("JSON");
        Self {
            kid,
            key,
            public_x,
            claims,
            token,
        }
    }

    /// The header the auth API writes, with our key's id.
    fn header(&self) -> Value {
        json!({"typ": "JWT", "alg": "EdDSA", "kid": self.kid})
    }

    /// The guest's claims with `name` set to `value`.
    fn claims_with(&self, name: &str, value: Value) -> Value {
        let mut claims = self.claims.clone();
        claims[name] = value;
        claims
    }

    /// The guest's claims without `name`.
    fn claims_without(&self, name: &str) -> Value {
        let mut claims = self.claims.clone();
        claims.as_object_mut().expect("claims are an object").remove(name);
        claims
    }

    /// `header` and `claims` signed with the auth API's own key.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        sign_with(&self.key, Algorithm::EdDSA, header, claims)
    }
}

/// `header.claims` in base64url, the part a JWS signs.
fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A compact JWS of `header` and `claims`, whatever they say, signed with `key` by `alg`.
fn sign_with(key: &EncodingKey, alg: Algorithm, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("signs");
    format!("{input}.{signature}")
}

/// An Ed25519 key of the attacker's (a PKCS#8 wrapping of a fixed seed, as natter-proto's token tests make).
fn attacker_key() -> EncodingKey {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    der.extend_from_slice(&[0xa7; 32]);
    EncodingKey::from_ed_der(&der)
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Every doctored token: (what it is, the token). Each must be refused wherever a token is taken.
fn forged_tokens(forge: &Forge, jwks: &Value, trap: &str) -> Vec<(String, String)> {
    let good = forge.claims.clone();
    let header = forge.header();
    let signed = |claims: Value| forge.sign(&header, &claims);
    let mut tokens: Vec<(String, String)> = Vec::new();
    let mut add = |what: &str, token: String| tokens.push((what.to_owned(), token));

    // The algorithm: none (any spelling), and HS256 keyed with what the attacker can read of our public key.
    for alg in ["none", "None", "NONE"] {
        let unsigned = json!({"typ": "JWT", "alg": alg, "kid": forge.kid});
        add(&format!("alg {alg}"), format!("{}.", signing_input(&unsigned, &good)));
    }
    let hs256 = json!({"typ": "JWT", "alg": "HS256", "kid": forge.kid});
    let ours = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == forge.kid.as_str())
        .expect("our key is published")
        .to_string();
    let raw_x = URL_SAFE_NO_PAD.decode(&forge.public_x).expect("x");
    let secrets: [(&str, &[u8]); 3] = [
        ("the raw public key", &raw_x),
        ("the JWK's x", forge.public_x.as_bytes()),
        ("the published JWK", ours.as_bytes()),
    ];
    for (what, secret) in secrets {
        let key = EncodingKey::from_secret(secret);
        add(
            &format!("HS256 keyed with {what}"),
            sign_with(&key, Algorithm::HS256, &hs256, &good),
        );
    }

    // The claims, each signed with our real key.
    let n = now();
    add("wrong aud", signed(forge.claims_with("aud", json!("someone-else"))));
    add(
        "wrong iss",
        signed(forge.claims_with("iss", json!("https://evil.example"))),
    );
    add("missing exp", signed(forge.claims_without("exp")));
    add(
        "exp as a string",
        signed(forge.claims_with("exp", json!("99999999999"))),
    );
    add("expired", signed(forge.claims_with("exp", json!(n - 60))));
    add("future nbf", signed(forge.claims_with("nbf", json!(n + 600))));
    add("string nbf", signed(forge.claims_with("nbf", json!("0"))));
    add("missing sid", signed(forge.claims_without("sid")));
    add("missing sub", signed(forge.claims_without("sub")));

    // The key: unknown, absent, or a signature that is not ours.
    add(
        "unknown kid",
        forge.sign(&json!({"typ": "JWT", "alg": "EdDSA", "kid": "no-such-key"}), &good),
    );
    add("no kid", forge.sign(&json!({"typ": "JWT", "alg": "EdDSA"}), &good));
    let (input, signature) = forge.token.rsplit_once('.').expect("three parts");
    let mut bits = URL_SAFE_NO_PAD.decode(signature).expect("signature");
    bits[10] ^= 0x01;
    add(
        "a flipped signature bit",
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(&bits)),
    );
    let other_claims = forge.claims_with("sub", json!("00000000-0000-4000-8000-000000000000"));
    let header_part = input.split('.').next().expect("header part");
    add(
        "claims changed after signing",
        format!(
            "{header_part}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(other_claims.to_string())
        ),
    );
    let attacker = attacker_key();
    add(
        "a foreign key with our kid",
        sign_with(&attacker, Algorithm::EdDSA, &header, &good),
    );

    // Headers that point at the attacker's key: the verifier takes keys from our JWKS only, by kid.
    let attacker_jwk = {
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&attacker, Algorithm::EdDSA).expect("JWK")).expect("JSON");
        jwk["kid"] = json!("attacker");
        jwk
    };
    for kid in [forge.kid.as_str(), "attacker"] {
        let pointing = [
            ("jku", json!({"typ": "JWT", "alg": "EdDSA", "kid": kid, "jku": trap})),
            ("x5u", json!({"typ": "JWT", "alg": "EdDSA", "kid": kid, "x5u": trap})),
            (
                "an embedded jwk",
                json!({"typ": "JWT", "alg": "EdDSA", "kid": kid, "jwk": attacker_jwk}),
            ),
        ];
        for (what, header) in pointing {
            let whose = if kid == "attacker" { "the attacker's" } else { "our" };
            add(
                &format!("{what} to the attacker's key, {whose} kid"),
                sign_with(&attacker, Algorithm::EdDSA, &header, &good),
            );
        }
    }
    tokens
}

/// What the upgrade answered: the HTTP status, and the body when refused.
async fn upgrade_status(req: tokio_tungstenite::tungstenite::handshake::client::Request) -> (u16, String) {
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, response)) => (response.status().as_u16(), String::new()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            (response.status().as_u16(), body.into_owned())
        }
        Err(other) => panic!("expected an HTTP answer, got {other}"),
    }
}

/// The upgrade request with `token` in the query, or offered as a subprotocol next to `natter.v1`.
fn with_token(
    gw: &GatewayProc,
    token: &str,
    as_subprotocol: bool,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    if as_subprotocol {
        let protocols = format!("natter.v1, {token}");
        request(
            &format!("ws://127.0.0.1:{}/ws", gw.port),
            &[("sec-websocket-protocol", &protocols)],
        )
    } else {
        request(&gw.ws_url(token), &[])
    }
}

/// A listener standing for the attacker's key server; counts the connections anyone makes to it.
async fn trap() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("address"));
    let visits = Arc::new(AtomicUsize::new(0));
    let counted = visits.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, visits)
}

#[tokio::test]
async fn doctored_tokens_are_refused_at_the_upgrade_both_ways() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let forge = Forge::new(&stack, "mallory").await;
    let jwks: Value = stack.get("/.well-known/jwks.json").await.json().await.expect("JWKS");
    let (trap_url, visits) = trap().await;

    // The forge is faithful: the guest's claims re-signed with the key it read are let in, both ways.
    let resigned = forge.sign(&forge.header(), &forge.claims);
    for as_subprotocol in [false, true] {
        let (ws, response) = tokio_tungstenite::connect_async(with_token(&gw, &resigned, as_subprotocol))
            .await
            .expect("a faithfully re-signed token is let in");
        assert_eq!(response.status().as_u16(), 101);
        drop(ws);
    }

    let tokens = forged_tokens(&forge, &jwks, &trap_url);
    for (what, token) in &tokens {
        for as_subprotocol in [false, true] {
            let (status, body) = upgrade_status(with_token(&gw, token, as_subprotocol)).await;
            let way = if as_subprotocol { "subprotocol" } else { "query" };
            assert_eq!(status, 401, "{what} ({way}): {body}");
            assert!(body.contains("\"code\":\"token_"), "{what} ({way}): {body}");
        }
    }
    assert_eq!(
        visits.load(Ordering::SeqCst),
        0,
        "the gateway fetched a key from a URL a token named"
    );
    // Refusing them all cost nobody else anything.
    let (token, _) = stack.user("trent").await;
    let mut client = Client::connect(&gw, &token).await;
    client.send(json!({"type": "ping", "id": "after"})).await;
    assert_eq!(client.recv_type("pong").await["id"], "after");
}

#[tokio::test]
async fn a_doctored_token_in_a_refresh_does_not_extend_the_connection() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let forge = Forge::new(&stack, "mallet").await;
    let jwks: Value = stack.get("/.well-known/jwks.json").await.json().await.expect("JWKS");
    let (trap_url, visits) = trap().await;

    // Two connections whose token runs out in a few seconds: one is offered each doctored token good for an
    // hour, the other the same claims faithfully signed.
    let expiring = forge.sign(&forge.header(), &forge.claims_with("exp", json!(now() + 8)));
    let mut client = Client::connect(&gw, &expiring).await;
    let mut refreshed = Client::connect(&gw, &expiring).await;
    let long = Forge {
        claims: forge.claims_with("exp", json!(now() + 3600)),
        ..forge
    };
    let faithful = long.sign(&long.header(), &long.claims);
    refreshed.send(json!({"type": "refresh", "token": faithful})).await;
    for (what, token) in forged_tokens(&long, &jwks, &trap_url) {
        client.send(json!({"type": "refresh", "token": token})).await;
        let error = client.recv_type("error").await;
        let code = error["code"].as_str().unwrap_or_default();
        assert!(code.starts_with("token_"), "{what}: {error}");
    }
    assert_eq!(
        client.closed().await,
        Some(4001),
        "the connection closes when its own token expires"
    );
    // Past that expiry, the faithfully refreshed one is still open.
    refreshed.send(json!({"type": "ping", "id": "still-here"})).await;
    assert_eq!(refreshed.recv_type("pong").await["id"], "still-here");
    assert_eq!(
        visits.load(Ordering::SeqCst),
        0,
        "the gateway fetched a key from a URL a token named"
    );
}

#[tokio::test]
async fn only_listed_origins_and_clients_without_one_get_in() {
    let stack = Stack::start().await;
    let gw = stack
        .gateway(&["--allowed-origins", "https://chat.example,http://localhost:8080"])
        .await;
    let (token, _) = stack.user("olga").await;
    let url = gw.ws_url(&token);

    // Origins are compared whole (scheme, host and port), without regard to ASCII case: scheme and host are
    // case-insensitive, and browsers send them in lower case anyway.
    for allowed in [
        "https://chat.example",
        "HTTPS://CHAT.EXAMPLE",
        "https://Chat.Example",
        "http://localhost:8080",
    ] {
        let (status, body) = upgrade_status(request(&url, &[("origin", allowed)])).await;
        assert_eq!(status, 101, "{allowed}: {body}");
    }
    let (status, body) = upgrade_status(request(&url, &[])).await;
    assert_eq!(status, 101, "no Origin (not a browser): {body}");

    for refused in [
        "https://evil.example",
        "null",
        "https://chat.example.evil",
        "HTTPS://CHAT.EXAMPLE.EVIL",
        "https://evil.chat.example",
        "https://chat.examplee",
        "https://chat.exampl",
        "http://chat.example",
        "https://chat.example:8443",
        "https://chat.example/",
        "https://chat.example@evil.example",
        "https://chat.example, https://evil.example",
        "http://localhost:8081",
        "http://localhost",
        "*",
        "",
    ] {
        let (status, body) = upgrade_status(request(&url, &[("origin", refused)])).await;
        assert_eq!(status, 403, "{refused:?}: {body}");
        assert!(body.contains("\"code\":\"origin\""), "{refused:?}: {body}");
    }

    // An allowed origin does not make a bad token good.
    let (status, _) = upgrade_status(request(&gw.ws_url("not.a.jwt"), &[("origin", "https://chat.example")])).await;
    assert_eq!(status, 401);
}

/// Every message published on the test's NATS server while it runs, from a plain client subscribed to `>`.
struct Spy {
    seen: Arc<Mutex<Vec<(String, Bytes)>>>,
}

impl Spy {
    async fn start(stack: &Stack) -> Self {
        let nats = async_nats::connect(stack.nats.url()).await.expect("NATS");
        let mut all = nats.subscribe(">").await.expect("subscribe");
        nats.flush().await.expect("flush");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            let _nats = nats;
            while let Some(msg) = all.next().await {
                log.lock()
                    .expect("not poisoned")
                    .push((msg.subject.to_string(), msg.payload));
            }
        });
        Self { seen }
    }

    fn seen(&self) -> Vec<(String, Bytes)> {
        self.seen.lock().expect("not poisoned").clone()
    }

    /// Waits until a message on `subject` holding `needle` has been seen.
    async fn wait_for(&self, subject: &str, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self
            .seen()
            .iter()
            .any(|(s, payload)| s == subject && String::from_utf8_lossy(payload).contains(needle))
        {
            assert!(Instant::now() < deadline, "nothing with {needle:?} on {subject}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Why `subject` is not one Natter should publish while only `rooms` exist, if it is not.
fn unexpected_subject(subject: &str, rooms: &[&str]) -> Option<String> {
    let tokens: Vec<&str> = subject.split('.').collect();
    if let Some(bad) = tokens
        .iter()
        .find(|t| t.is_empty() || **t == "*" || **t == ">" || !t.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Some(format!("token {bad:?}"));
    }
    // Wherever a chat subject appears (itself, or inside a JetStream API subject), it has one of the shapes the
    // subject builders make, around a room that exists (and, for its messages, the room's own partition).
    let at = tokens.windows(2).position(|w| w == ["chat", "v1"])?;
    let room = match &tokens[at + 2..] {
        ["room", room, "msg", partition] | ["live", "room", room, partition] => {
            let own = natter_proto::RoomId::parse(room)
                .is_ok_and(|r| natter_proto::subject::partition(&r).to_string() == *partition);
            if !own {
                return Some(format!("partition {partition:?} for room {room:?}"));
            }
            Some(*room)
        }
        ["events", "room", room] => Some(*room),
        ["ephemeral", room, "typing" | "presence" | "sync"] => Some(*room),
        ["gateway", "heartbeat" | "user_connections" | "user_connections_sync"] | ["auth", "room_access"] => None,
        _ => return Some(format!("shape {:?}", &tokens[at..])),
    };
    room.filter(|r| !rooms.contains(r)).map(|r| format!("room {r:?}"))
}

#[test]
fn the_subject_check_catches_what_it_is_for() {
    let rooms = ["lobby"];
    // "lobby" is in partition 3.
    for fine in [
        "chat.v1.room.lobby.msg.3",
        "chat.v1.live.room.lobby.3",
        "chat.v1.ephemeral.lobby.typing",
        "$JS.API.DIRECT.GET.CHAT.chat.v1.room.lobby.msg.3",
        "chat.v1.gateway.heartbeat",
        "chat.v1.gateway.user_connections",
        "_INBOX.abc.def",
    ] {
        assert_eq!(unexpected_subject(fine, &rooms), None, "{fine}");
    }
    for odd in [
        "chat.v1.room.a.b.msg.3",
        "chat.v1.room.other.msg.3",
        "chat.v1.room.lobby.msg",
        "chat.v1.room.lobby.msg.4",
        "chat.v1.live.room.lobby",
        "chat.v1.live.room.lobby.4",
        "chat.v1.room.*.msg.*",
        "chat.v1.room.lobby.>",
        "chat.v1.room.lobby x.msg.3",
        "chat.v1.ephemeral.lobby.typing.more",
        "$JS.API.DIRECT.GET.CHAT.chat.v1.room.a.msg.12",
        "chat..v1",
    ] {
        assert!(unexpected_subject(odd, &rooms).is_some(), "{odd}");
    }
}

#[tokio::test]
async fn hostile_room_and_message_ids_reach_no_subject_and_the_connection_goes_on() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&["--max-bad-frames", "10000"]).await;
    let (token, _) = stack.user("sybil").await;
    let (reader_token, _) = stack.user("ruth").await;
    let room = stack.room(&token, false).await;
    let spy = Spy::start(&stack).await;
    let mut client = Client::connect(&gw, &token).await;
    client.join(&room, None).await;
    let mut reader = Client::connect(&gw, &reader_token).await;
    reader.join(&room, None).await;

    let long_room = "r".repeat(65);
    let mut rooms: Vec<String> = [
        "a.b",
        "*",
        ">",
        "a b",
        "a\u{0}",
        &long_room,
        "..",
        ".",
        "a.",
        ".a",
        "a.*",
        "a.>",
        "",
        "a\tb",
        "a\r\nb",
        "a\u{7f}",
        "l\u{043e}bby",
        "\u{ff4c}\u{ff4f}\u{ff42}\u{ff42}\u{ff59}",
        "a\u{2024}b",
        "a\u{ff0e}b",
        "a\u{3002}b",
        "a\u{00a0}b",
        "a\u{200b}b",
        "a\u{2217}",
        "a\u{fe65}",
        "a\u{feff}",
        "a/b",
        "a\\b",
    ]
    .iter()
    .map(|r| (*r).to_owned())
    .collect();
    // Aimed at the real room's own subjects.
    for suffix in [".>", ".msg", ".*", " x", "\u{0}", "\n"] {
        rooms.push(format!("{room}{suffix}"));
    }
    for hostile in &rooms {
        for frame in [
            json!({"type": "join", "room": hostile}),
            json!({"type": "join", "room": hostile, "since": 0}),
            json!({"type": "leave", "room": hostile}),
            json!({"type": "send", "room": hostile, "id": "m1", "body": "x"}),
            json!({"type": "typing", "room": hostile, "text": "x"}),
        ] {
            client.send(frame.clone()).await;
            let error = client.recv_type("error").await;
            assert_eq!(error["code"], "bad_frame", "{frame}: {error}");
        }
    }
    let long_id = "m".repeat(65);
    for id in [
        "",
        "*",
        ">",
        "a b",
        "a\u{0}",
        &long_id,
        "a\r\nNats-Msg-Id: x",
        "a\tb",
        "\u{ff4d}1",
        "m\u{200b}",
        "m\u{2024}1",
        "\u{e4}",
    ] {
        let frame = json!({"type": "send", "room": room, "id": id, "body": "x"});
        client.send(frame.clone()).await;
        let error = client.recv_type("error").await;
        assert_eq!(error["code"], "bad_frame", "{frame}: {error}");
    }
    // Escapes that decode to hostile ids, a second `room` key, and ids of the wrong type.
    for raw in [
        r#"{"type":"join","room":"a\u002eb"}"#.to_owned(),
        r#"{"type":"join","room":"\u002a"}"#.to_owned(),
        r#"{"type":"join","room":"\u003e"}"#.to_owned(),
        format!(r#"{{"type":"join","room":"{room}","room":"a.b"}}"#),
        format!(r#"{{"type":"join","room":"a.b","room":"{room}"}}"#),
        format!(r#"{{"type":"send","room":"{room}","room":"a.>","id":"m2","body":"x"}}"#),
        r#"{"type":"join","room":["lobby"]}"#.to_owned(),
        r#"{"type":"join","room":{"id":"lobby"}}"#.to_owned(),
        r#"{"type":"join","room":42}"#.to_owned(),
        r#"{"type":"join","room":null}"#.to_owned(),
        format!(r#"{{"type":"send","room":"{room}","id":"m\u0020x","body":"x"}}"#),
        format!(r#"{{"type":"send","room":"{room}","id":["m3"],"body":"x"}}"#),
    ] {
        client.send_text(&raw).await;
        let error = client.recv_type("error").await;
        assert_eq!(error["code"], "bad_frame", "{raw}: {error}");
    }

    // Message ids may hold '.' and ':' (docs/protocol.md): they go into the Nats-Msg-Id header, never a subject.
    let mut sent = Vec::new();
    for id in ["a.b", "..", "x:y.z", "after"] {
        let seq = client.say(&room, id, "fine").await;
        let message = reader.recv_type("message").await;
        assert_eq!(
            (message["id"].as_str(), message["seq"].as_u64()),
            (Some(id), Some(seq)),
            "{message}"
        );
        sent.push(id);
    }
    let messages = natter_proto::subject::room_messages(&natter_proto::RoomId::parse(&room).expect("room id"));
    spy.wait_for(&messages, "\"after\"").await;

    let seen = spy.seen();
    let odd: Vec<String> = seen
        .iter()
        .filter_map(|(s, _)| unexpected_subject(s, &[&room]).map(|why| format!("{s} ({why})")))
        .collect();
    assert!(odd.is_empty(), "unexpected subjects: {odd:#?}");
    let published: Vec<Value> = seen
        .iter()
        .filter(|(s, _)| *s == messages)
        .map(|(_, payload)| serde_json::from_slice(payload).expect("a stored message"))
        .collect();
    let ids: Vec<&str> = published.iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, sent, "only the valid sends were published: {published:?}");
}

/// A data frame of the test's choice.
fn data(kind: Data, payload: &[u8], fin: bool) -> Message {
    Message::Frame(Frame::message(payload.to_vec(), OpCode::Data(kind), fin))
}

/// A control frame of the test's choice, FIN bit included.
fn control(kind: Control, payload: &[u8], fin: bool) -> Message {
    let header = FrameHeader {
        is_final: fin,
        opcode: OpCode::Control(kind),
        ..FrameHeader::default()
    };
    Message::Frame(Frame::from_payload(header, Bytes::from(payload.to_vec())))
}

/// A close frame's payload: `code` and the reason's bytes.
fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}

#[tokio::test]
async fn framing_faults_across_fragments_close_with_1002_or_1007() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (token, _) = stack.user("fritz").await;
    let start = br#"{"type":"ping","id":""#.as_slice();
    let with = |a: &[u8], b: &[u8]| [a, b].concat();
    let faults: Vec<(&str, Vec<Message>, u16)> = vec![
        (
            "an invalid continuation byte in the next fragment",
            vec![
                data(Data::Text, &with(start, &[0xe2, 0x82]), false),
                data(Data::Continue, &with(&[0x28], br#""}"#), true),
            ],
            1007,
        ),
        (
            "an overlong encoding split across fragments",
            vec![
                data(Data::Text, &with(start, &[0xc0]), false),
                data(Data::Continue, &with(&[0xaf], br#""}"#), true),
            ],
            1007,
        ),
        (
            "a UTF-16 surrogate split across fragments",
            vec![
                data(Data::Text, &with(start, &[0xed, 0xa0]), false),
                data(Data::Continue, &with(&[0x80], br#""}"#), true),
            ],
            1007,
        ),
        (
            "a message ending inside a character",
            vec![
                data(Data::Text, &with(start, &[0xf0, 0x9f, 0x98]), false),
                data(Data::Continue, b"", true),
            ],
            1007,
        ),
        (
            "a new text message inside a fragmented one",
            vec![
                data(Data::Text, start, false),
                data(Data::Text, br#"{"type":"ping","id":"x"}"#, true),
            ],
            1002,
        ),
        (
            "a binary message inside a fragmented text one",
            vec![data(Data::Text, start, false), data(Data::Binary, b"x", true)],
            1002,
        ),
        (
            "a fragmented close",
            vec![control(Control::Close, &close_payload(1000, b""), false)],
            1002,
        ),
        ("a fragmented pong", vec![control(Control::Pong, b"p", false)], 1002),
        (
            "a pong over 125 bytes",
            vec![control(Control::Pong, &[b'p'; 126], true)],
            1002,
        ),
        (
            "a ping far over 125 bytes",
            vec![control(Control::Ping, &[b'p'; 4000], true)],
            1002,
        ),
        (
            "close code 1005",
            vec![control(Control::Close, &close_payload(1005, b""), true)],
            1002,
        ),
        (
            "close code 1006",
            vec![control(Control::Close, &close_payload(1006, b""), true)],
            1002,
        ),
        (
            "close code 999",
            vec![control(Control::Close, &close_payload(999, b""), true)],
            1002,
        ),
        (
            "close code 5000",
            vec![control(Control::Close, &close_payload(5000, b""), true)],
            1002,
        ),
        (
            "a close reason that is not UTF-8",
            vec![control(Control::Close, &close_payload(1000, &[0xff, 0xfe]), true)],
            1007,
        ),
    ];
    for (what, frames, code) in faults {
        let mut client = Client::connect(&gw, &token).await;
        for frame in frames {
            if client.ws.send(frame).await.is_err() {
                break;
            }
        }
        assert_eq!(client.closed().await, Some(code), "{what}");
    }

    // The same splits of valid characters are read whole; a 125-byte ping is answered in full.
    let mut client = Client::connect(&gw, &token).await;
    let euro_and_smile = "\u{20ac}\u{1f600}".as_bytes();
    let frames = [
        data(Data::Text, &with(start, &euro_and_smile[..1]), false),
        data(Data::Continue, &euro_and_smile[1..5], false),
        data(Data::Continue, &with(&euro_and_smile[5..], br#""}"#), true),
    ];
    for frame in frames {
        client.ws.send(frame).await.expect("send");
    }
    assert_eq!(client.recv_type("pong").await["id"], "\u{20ac}\u{1f600}");
    client
        .ws
        .send(Message::Ping(vec![b'p'; 125].into()))
        .await
        .expect("send");
    let pong = loop {
        match tokio::time::timeout(WAIT, client.ws.next()).await.expect("a pong") {
            Some(Ok(Message::Pong(payload))) => break payload,
            Some(Ok(_)) => continue,
            other => panic!("no pong: {other:?}"),
        }
    };
    assert_eq!(pong.as_ref(), &[b'p'; 125][..]);
}

/// Writes `head` to the gateway one byte a second until the gateway closes the socket; returns how many bytes
/// went out and what came back. Panics if the whole head went out, or nothing was cut within `limit`.
async fn dribble(port: u16, head: String, limit: Duration) -> (usize, Vec<u8>) {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    for (sent, byte) in head.bytes().enumerate() {
        if tcp.write_all(&[byte]).await.is_err() {
            return (sent, answer);
        }
        // A second, unless the gateway hangs up first.
        let pause = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                read = tcp.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return (sent + 1, answer),
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
            }
        }
        assert!(
            started.elapsed() < limit,
            "still open after {limit:?} and {} bytes",
            sent + 1
        );
    }
    panic!(
        "the whole request head went out a byte a second: {}",
        String::from_utf8_lossy(&answer)
    );
}

/// Writes `request` to the gateway at once and waits, reading, until the gateway closes the socket; returns what
/// came back. Panics if the socket is still open after `limit`.
async fn hang_up(port: u16, request: &'static str, limit: Duration) -> Vec<u8> {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    // A reset instead of a clean close ends it as well.
    let _ = tokio::time::timeout(limit, tcp.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("still open after {limit:?}: {:?}", String::from_utf8_lossy(&answer)));
    answer
}

#[tokio::test]
async fn slow_silent_and_idle_http_connections_are_cut_off_while_others_chat() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&["--header-timeout", "2s"]).await;
    let (token, _) = stack.user("sloth").await;
    let head = format!(
        "GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let limit = Duration::from_secs(30);
    let slow: Vec<_> = (0..8)
        .map(|_| tokio::spawn(dribble(gw.port, head.clone(), limit)))
        .collect();
    // Sockets that send nothing at all, and keep-alive ones idle after a first request.
    let silent: Vec<_> = (0..8).map(|_| tokio::spawn(hang_up(gw.port, "", limit))).collect();
    let idle: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(hang_up(
                gw.port,
                "GET /nothing-here HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                limit,
            ))
        })
        .collect();

    // Meanwhile others connect and chat as usual.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ann, _) = stack.user("ann").await;
    let (bob, _) = stack.user("bob").await;
    let room = stack.room(&ann, false).await;
    let mut a = Client::connect(&gw, &ann).await;
    a.join(&room, None).await;
    let mut b = Client::connect(&gw, &bob).await;
    b.join(&room, None).await;
    let seq = a.say(&room, "during", "the slow ones wait").await;
    assert_eq!(b.recv_type("message").await["seq"].as_u64(), Some(seq));

    for task in slow {
        let (sent, answer) = task.await.expect("slow client");
        assert!(sent < head.len(), "cut off after {sent} of {} bytes", head.len());
        let answer = String::from_utf8_lossy(&answer);
        assert!(!answer.contains(" 101 "), "a slow client was upgraded: {answer}");
    }
    for task in silent {
        let answer = task.await.expect("silent client");
        assert!(!String::from_utf8_lossy(&answer).contains(" 101 "), "{answer:?}");
    }
    for task in idle {
        let answer = String::from_utf8_lossy(&task.await.expect("idle client")).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 404 "),
            "the first request was answered: {answer}"
        );
    }
    // And after them, too.
    let seq = b.say(&room, "after", "they are gone").await;
    // `a` first reads its own message back.
    while a.recv_type("message").await["id"] != "after" {}
    assert_eq!(a.queued("message"), Vec::<Value>::new());
    let _ = seq;
}

#[tokio::test]
async fn a_body_or_draft_holding_nul_is_refused_never_acked_nor_delivered() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (token, _) = stack.user("nadia").await;
    let (reader_token, _) = stack.user("otto").await;
    let room = stack.room(&token, false).await;
    let mut sender = Client::connect(&gw, &token).await;
    sender.join(&room, None).await;
    let mut reader = Client::connect(&gw, &reader_token).await;
    reader.join(&room, None).await;

    let first = sender.say(&room, "before", "fine").await;
    assert_eq!(reader.recv_type("message").await["seq"].as_u64(), Some(first));

    for (id, body) in [("nul", "a\u{0}b"), ("only-nul", "\u{0}"), ("nul-last", "ok\u{0}")] {
        sender
            .send(json!({"type": "send", "room": room, "id": id, "body": body}))
            .await;
        let error = sender.recv_type("error").await;
        assert_eq!(
            (error["code"].as_str(), error["ref"].as_str()),
            (Some("invalid_body"), Some(id)),
            "{error}"
        );
    }
    sender
        .send(json!({"type": "typing", "room": room, "text": "dr\u{0}aft"}))
        .await;
    assert_eq!(sender.recv_type("error").await["code"], "invalid_body");

    // The next message is acked as the next one (say() fails on any other ack first), and the reader gets it
    // straight after the first: nothing was stored between them.
    let next = sender.say(&room, "after", "fine again").await;
    let message = reader.recv_type("message").await;
    assert_eq!(
        (
            message["id"].as_str(),
            message["seq"].as_u64(),
            message["prev"].as_u64()
        ),
        (Some("after"), Some(next), Some(first)),
        "{message}"
    );
    let leaked: Vec<Value> = reader
        .queued("typing")
        .into_iter()
        .chain(reader.queued("message"))
        .chain(sender.queued("ack"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}

#[tokio::test]
async fn the_gateway_wide_connection_cap_and_the_room_cap_hold_and_free_up() {
    let stack = Stack::start().await;
    let gw = stack
        .gateway(&["--max-connections", "3", "--max-rooms-per-connection", "2"])
        .await;
    let mut tokens = Vec::new();
    for name in ["cap1", "cap2", "cap3", "cap4"] {
        tokens.push(stack.user(name).await.0);
    }
    let mut first = Client::connect(&gw, &tokens[0]).await;
    let second = Client::connect(&gw, &tokens[1]).await;
    let _third = Client::connect(&gw, &tokens[2]).await;
    // Full: a fourth user, with a token of their own, is refused before the upgrade.
    let (status, body) = upgrade_status(request(&gw.ws_url(&tokens[3]), &[])).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too_many_connections"), "{body}");
    // A place frees up when a connection goes.
    drop(second);
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _) = upgrade_status(request(&gw.ws_url(&tokens[3]), &[])).await;
        if status == 101 {
            break;
        }
        assert_eq!(status, 429);
        assert!(
            Instant::now() < deadline,
            "the closed connection's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Two rooms at once, and not a third until one is left.
    let rooms = [
        stack.room(&tokens[0], false).await,
        stack.room(&tokens[0], false).await,
        stack.room(&tokens[0], false).await,
    ];
    first.join(&rooms[0], None).await;
    first.join(&rooms[1], None).await;
    first.send(json!({"type": "join", "room": rooms[2]})).await;
    assert_eq!(first.recv_type("error").await["code"], "too_many_rooms");
    first.send(json!({"type": "leave", "room": rooms[0]})).await;
    first.recv_type("left").await;
    first.join(&rooms[2], None).await;
    let seq = first.say(&rooms[2], "third", "room").await;
    assert_eq!(first.recv_type("message").await["seq"].as_u64(), Some(seq));
}

/// A room id that is valid and names no room.
fn missing_room() -> String {
    format!("missing-{}", uuid::Uuid::new_v4().simple())
}

/// Reads `n` frames of `kind` (others stay queued), and counts them by `code`.
async fn codes(client: &mut Client, kind: &str, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut codes = std::collections::BTreeMap::new();
    for _ in 0..n {
        let frame = client.recv_type(kind).await;
        *codes
            .entry(frame["code"].as_str().unwrap_or("").to_owned())
            .or_default() += 1;
    }
    codes
}

/// The value of `series` on `page`, 0 when absent.
fn metric(page: &str, series: &str) -> f64 {
    natter_test_support::metrics_page::value(page, series).unwrap_or(0.0)
}

/// The sum of every series of metric `name` on `page` whatever its labels.
fn metric_sum(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn join_and_leave_floods_are_rate_limited_and_missing_rooms_count_as_bad_frames_while_others_chat() {
    let stack = Stack::start().await;
    // Here the flood's joins of missing rooms do not close its connection, so the budget shows; the second gateway
    // keeps the default limit of bad frames.
    let gw = stack.gateway(&["--max-bad-frames", "100000"]).await;
    let strict = stack.gateway(&[]).await;
    let (flood_token, _) = stack.user("flo").await;
    let (alice_token, _) = stack.user("alice").await;
    let (bob_token, _) = stack.user("bob").await;
    let room = stack.room(&alice_token, false).await;
    let mut alice = Client::connect(&gw, &alice_token).await;
    alice.join(&room, None).await;
    // Questions asked for joins: the room's periodic re-check may fall in the test too.
    let join_questions = |page: &str| {
        metric_sum(page, "natter_gateway_access_questions_total")
            - metric_sum(page, "natter_gateway_access_rechecks_total")
    };
    let questions_before = join_questions(&gw.metrics().await);

    // 500 joins of rooms that do not exist, written without waiting, then 500 leaves of rooms not joined.
    const FLOOD: usize = 500;
    let mut flood = Client::connect(&gw, &flood_token).await;
    let flooding = tokio::spawn(async move {
        let started = Instant::now();
        for _ in 0..FLOOD {
            flood.send(json!({"type": "join", "room": missing_room()})).await;
        }
        let joins = codes(&mut flood, "error", FLOOD).await;
        for _ in 0..FLOOD {
            flood.send(json!({"type": "leave", "room": missing_room()})).await;
        }
        let leaves = codes(&mut flood, "error", FLOOD).await;
        let took = started.elapsed();
        // Refused, not closed.
        flood.send(json!({"type": "ping", "id": "still-here"})).await;
        assert_eq!(flood.recv_type("pong").await["id"], "still-here");
        (joins, leaves, took)
    });
    // Meanwhile another client joins and chats as usual.
    let mut bob = Client::connect(&gw, &bob_token).await;
    bob.join(&room, None).await;
    let seq = bob.say(&room, "during-the-flood", "hello").await;
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.recv_type("message").await["seq"].as_u64(), Some(seq));
    }
    let (joins, leaves, took) = flooding.await.expect("the flood ran");

    // The burst (64: a reconnecting client rejoins all its rooms at once) and then 5 a second are asked about.
    let allowed = 64.0 + 5.0 * took.as_secs_f64() + 1.0;
    let not_found = joins.get("room_not_found").copied().unwrap_or(0);
    let limited = joins.get("rate_limited").copied().unwrap_or(0);
    assert_eq!(not_found + limited, FLOOD, "{joins:?}");
    assert!(
        not_found >= 64 && (not_found as f64) <= allowed,
        "{joins:?} in {took:?}"
    );
    let not_joined = leaves.get("not_joined").copied().unwrap_or(0);
    assert_eq!(
        not_joined + leaves.get("rate_limited").copied().unwrap_or(0),
        FLOOD,
        "{leaves:?}"
    );
    assert!(
        (not_joined as f64) <= 5.0 * took.as_secs_f64() + 1.0,
        "{leaves:?} in {took:?}"
    );
    let page = gw.metrics().await;
    assert_eq!(
        metric(&page, "natter_gateway_bad_frames_total{code=\"room_not_found\"}"),
        not_found as f64,
        "each join of a missing room counts as a bad frame"
    );
    assert_eq!(
        metric(&page, "natter_gateway_rate_limited_total{kind=\"join\"}"),
        limited as f64
    );
    // One question per join let through (bob's of a room alice's join made known is answered from memory).
    let asked = join_questions(&page) - questions_before;
    assert_eq!(asked, not_found as f64, "questions asked");

    // A refusal is remembered: 20 joins of one missing room, from a fresh connection, ask once.
    let (carol_token, _) = stack.user("carol").await;
    let mut carol = Client::connect(&gw, &carol_token).await;
    let missing = missing_room();
    for _ in 0..20 {
        carol.send(json!({"type": "join", "room": missing})).await;
    }
    assert_eq!(codes(&mut carol, "error", 20).await.get("room_not_found"), Some(&20));
    let page = gw.metrics().await;
    assert_eq!(
        metric(&page, "natter_gateway_access_questions_total{answer=\"not_found\"}"),
        (not_found + 1) as f64
    );

    // With the default limit, the eleventh join of a missing room closes the connection as any bad frame does.
    let mut guesser = Client::connect(&strict, &carol_token).await;
    for _ in 0..11 {
        guesser.send(json!({"type": "join", "room": missing_room()})).await;
    }
    assert_eq!(codes(&mut guesser, "error", 11).await.get("room_not_found"), Some(&11));
    assert_eq!(guesser.closed().await, Some(1008));
    let seq = alice.say(&room, "after-the-flood", "still here").await;
    assert_eq!(bob.recv_type("message").await["seq"].as_u64(), Some(seq));
}

#[tokio::test]
async fn a_flood_of_tokens_with_unknown_kids_refetches_the_jwks_at_most_once_per_2_seconds() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    // The gateway fetched the key set as it started: from 2 seconds on, an unknown kid may refetch it.
    let may_refetch = Instant::now() + Duration::from_millis(2100);
    let forge = Forge::new(&stack, "kidder").await;
    const JWKS_FETCHES: &str =
        "natter_api_http_requests_total{method=\"GET\",route=\"/.well-known/jwks.json\",status=\"200\"}";
    let api = stack.api();
    let served_before = metric(&api.metrics().await.expect("API metrics"), JWKS_FETCHES);
    let refetched_before = metric_sum(&gw.metrics().await, "natter_gateway_jwks_refetches_total");

    // 500 upgrades, each with the guest's good claims signed by a foreign key under a fresh random kid.
    let key = attacker_key();
    let tokens: Vec<String> = (0..500)
        .map(|_| {
            let header = json!({"typ": "JWT", "alg": "EdDSA", "kid": uuid::Uuid::new_v4().to_string()});
            sign_with(&key, Algorithm::EdDSA, &header, &forge.claims)
        })
        .collect();
    tokio::time::sleep_until(may_refetch.into()).await;
    let started = Instant::now();
    let answers: Vec<(u16, String)> = futures::stream::iter(tokens)
        .map(|token| {
            let req = request(&gw.ws_url(&token), &[]);
            upgrade_status(req)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let took = started.elapsed();
    for (status, body) in &answers {
        assert_eq!(*status, 401, "{body}");
        assert!(body.contains("token_unknown_key"), "{body}");
    }

    let refetched = metric_sum(&gw.metrics().await, "natter_gateway_jwks_refetches_total") - refetched_before;
    let served = metric(&api.metrics().await.expect("API metrics"), JWKS_FETCHES) - served_before;
    // One at the first unknown kid, then at most one per 2 seconds.
    let limit = (took.as_secs_f64() / 2.0).floor() + 1.0;
    assert!(
        refetched >= 1.0 && refetched <= limit,
        "{refetched} refetches in {took:?}"
    );
    assert_eq!(
        served, refetched,
        "every refetch, and nothing else, reached the auth API"
    );
    // The gateway serves on, the guest's own token included.
    let mut client = Client::connect(&gw, &forge.token).await;
    let room = stack.room(&forge.token, false).await;
    client.join(&room, None).await;
    let seq = client.say(&room, "after-kids", "fine").await;
    assert_eq!(client.recv_type("message").await["seq"].as_u64(), Some(seq));
}

#[tokio::test]
async fn a_typing_flood_is_cut_to_the_budget_and_the_flooder_stays_connected() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&["--typing-per-second", "5"]).await;
    let (typist_token, typist_id) = stack.user("typhoon").await;
    let (reader_token, _) = stack.user("reader").await;
    let room = stack.room(&typist_token, false).await;
    // A member: only members see drafts.
    let (status, _) = stack
        .post_with(&format!("/api/rooms/{room}/join"), Some(&reader_token), json!({}))
        .await;
    assert_eq!(status, 200);
    let mut typist = Client::connect(&gw, &typist_token).await;
    typist.join(&room, None).await;
    let mut reader = Client::connect(&gw, &reader_token).await;
    reader.join(&room, None).await;
    // The room learns who is a member with its first draft; the flood starts once the reader sees drafts.
    typist
        .send(json!({"type": "typing", "room": room, "text": "warm"}))
        .await;
    assert_eq!(reader.recv_type("typing").await["text"], "warm");

    const FLOOD: usize = 500;
    let started = Instant::now();
    for i in 0..FLOOD {
        typist
            .send(json!({"type": "typing", "room": room, "text": format!("draft {i}")}))
            .await;
    }
    // Drafts over the budget are dropped without an answer (an error for each would be a flood back); a ping
    // after the flood is answered once every draft before it was handled.
    typist.send(json!({"type": "ping", "id": "after-drafts"})).await;
    assert_eq!(typist.recv_type("pong").await["id"], "after-drafts");
    let took = started.elapsed();
    assert!(typist.queued("error").is_empty(), "{:?}", typist.queued("error"));

    // The reader sees the drafts that passed: at most the burst (10) and 5 a second, in order, the first among them.
    let mut seen = Vec::new();
    while let Ok(frame) = tokio::time::timeout(Duration::from_secs(1), reader.recv_type("typing")).await {
        if frame["user"]["id"] == typist_id && frame["text"] != "" {
            seen.push(frame["text"].as_str().expect("text").to_owned());
        }
    }
    let allowed = 10.0 + 5.0 * took.as_secs_f64() + 1.0;
    assert!(
        !seen.is_empty() && (seen.len() as f64) <= allowed,
        "{} drafts in {took:?}",
        seen.len()
    );
    assert_eq!(seen[0], "draft 0");
    let page = gw.metrics().await;
    assert_eq!(
        metric(&page, "natter_gateway_rate_limited_total{kind=\"typing\"}") as usize,
        FLOOD - seen.len(),
        "every draft not delivered was refused by the budget"
    );
    // Not disconnected: the typist's message still goes through.
    let seq = typist.say(&room, "typed", "done").await;
    assert_eq!(reader.recv_type("message").await["seq"].as_u64(), Some(seq));
}
