//! Attacks on the API: forged and stale access tokens, each refused with its stable code, and hostile requests
//! (huge, deeply nested, mislabelled, not UTF-8, with huge headers), each refused with a clear 4xx while the
//! server goes on serving.

use std::net::TcpListener;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use natter_proto::token::{AccessClaims, TokenError, Verifier};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, access, spawn_app, spawn_app_with};
use crate::tokens::{claims, jwks, now, sign, signing_key};

/// An Ed25519 key nobody but the test has, from a 32-byte seed wrapped as PKCS#8 v1 (RFC 8410).
fn foreign_key(seed: u8) -> EncodingKey {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    der.extend_from_slice(&[seed; 32]);
    EncodingKey::from_ed_der(&der)
}

/// `claims` with `edit` applied.
fn edited(claims: &Value, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut claims = claims.clone();
    edit(claims.as_object_mut().expect("claims are an object"));
    claims
}

/// An EdDSA header with `kid`, for adding attacker-chosen fields to.
fn header(kid: &str) -> Header {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    header
}

#[tokio::test]
async fn every_forged_or_stale_token_is_refused_with_its_code() {
    let app = spawn_app().await;
    let tokens = app.register("mallory").await;
    let user = &tokens["user"];
    let (kid, key) = signing_key(&app).await;
    let set = jwks(&app).await;
    let verifier = Verifier::from_jwks(&set, "natter", "natter");
    let good = claims(user);

    // Controls: the test's own signing with the real key is accepted, so the refusals below are meaningful; a
    // session id with no family behind it (a load-test token's) is not a revoked one.
    let control = sign(&kid, &key, &good);
    verifier.verify(&control).expect("a correctly signed token verifies");
    assert_eq!(app.get("/api/rooms", Some(&control)).await.status, StatusCode::OK);

    let real = access(&tokens);
    let parts: Vec<&str> = real.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(edited(&good, |c| drop(c.insert("name".into(), json!("admin")))).to_string()),
        parts[2]
    );
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("base64url signature");
    signature[17] ^= 0x08;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&signature));

    let none_header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string());
    let alg_none = format!("{none_header}.{}.", parts[1]);

    // The classic algorithm confusion: HS256 keyed with the public key, as its JWK text and as its raw bytes.
    let public_x = serde_json::to_value(&set.keys[0]).expect("jwk")["x"]
        .as_str()
        .expect("x")
        .to_owned();
    let public_raw = URL_SAFE_NO_PAD.decode(&public_x).expect("raw key");
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let hs_text =
        jsonwebtoken::encode(&hs_header, &good, &EncodingKey::from_secret(public_x.as_bytes())).expect("signs");
    let hs_raw = jsonwebtoken::encode(&hs_header, &good, &EncodingKey::from_secret(&public_raw)).expect("signs");

    let stranger = foreign_key(7);
    let late = now() + 3600;
    let cases: Vec<(&str, String, TokenError)> = vec![
        ("tampered payload", tampered, TokenError::BadSignature),
        ("a flipped signature bit", flipped, TokenError::BadSignature),
        ("alg none", alg_none, TokenError::WrongAlgorithm),
        (
            "HS256 keyed with the public key's text",
            hs_text,
            TokenError::WrongAlgorithm,
        ),
        (
            "HS256 keyed with the public key's bytes",
            hs_raw,
            TokenError::WrongAlgorithm,
        ),
        (
            "wrong aud",
            sign(
                &kid,
                &key,
                &edited(&good, |c| drop(c.insert("aud".into(), json!("another-app")))),
            ),
            TokenError::WrongIssuerOrAudience,
        ),
        (
            "wrong iss",
            sign(
                &kid,
                &key,
                &edited(&good, |c| drop(c.insert("iss".into(), json!("https://evil.example")))),
            ),
            TokenError::WrongIssuerOrAudience,
        ),
        (
            "no exp",
            sign(&kid, &key, &edited(&good, |c| drop(c.remove("exp")))),
            TokenError::MissingClaim,
        ),
        (
            "expired",
            sign(
                &kid,
                &key,
                &edited(&good, |c| drop(c.insert("exp".into(), json!(now() - 120)))),
            ),
            TokenError::Expired,
        ),
        (
            "nbf in the future",
            sign(
                &kid,
                &key,
                &edited(&good, |c| drop(c.insert("nbf".into(), json!(late)))),
            ),
            TokenError::NotYetValid,
        ),
        (
            "nbf as a string",
            sign(
                &kid,
                &key,
                &edited(&good, |c| drop(c.insert("nbf".into(), json!(late.to_string())))),
            ),
            TokenError::MissingClaim,
        ),
        (
            "no sid",
            sign(&kid, &key, &edited(&good, |c| drop(c.remove("sid")))),
            TokenError::MissingClaim,
        ),
        (
            "unknown kid",
            sign("not-a-kid", &stranger, &good),
            TokenError::UnknownKey,
        ),
        (
            "a foreign key under our kid",
            sign(&kid, &stranger, &good),
            TokenError::BadSignature,
        ),
        ("garbage", "abc.def".into(), TokenError::Malformed),
    ];
    for (what, token, expected) in cases {
        assert_eq!(
            verifier.verify(&token).map(|c: AccessClaims| c.name),
            Err(expected.clone()),
            "{what}"
        );
        let reply = app.get("/api/rooms", Some(&token)).await;
        assert_eq!(reply.code(), expected.code(), "{what}: {}", reply.body);
        reply.assert_error(401, expected.code());
    }

    // Claims the verifier accepts but the API cannot use.
    for (what, claims) in [
        (
            "a sid that is not a session id",
            edited(&good, |c| drop(c.insert("sid".into(), json!("s1")))),
        ),
        (
            "a sub that is not a user id",
            edited(&good, |c| drop(c.insert("sub".into(), json!("root")))),
        ),
    ] {
        let reply = app.get("/api/rooms", Some(&sign(&kid, &key, &claims))).await;
        assert_eq!(reply.code(), "token_missing_claim", "{what}: {}", reply.body);
        reply.assert_error(401, "token_missing_claim");
    }
    app.get("/api/rooms", None).await.assert_error(401, "missing_token");
}

#[tokio::test]
async fn keys_named_in_a_token_header_are_never_fetched_nor_trusted() {
    let app = spawn_app().await;
    let tokens = app.register("trudy").await;
    let good = claims(&tokens["user"]);
    let (kid, key) = signing_key(&app).await;
    // Where the attacker's key set would be served: nothing may ever connect here.
    let attacker_site = TcpListener::bind("127.0.0.1:0").expect("binds");
    attacker_site.set_nonblocking(true).expect("non-blocking");
    let attacker_url = format!("http://{}/jwks.json", attacker_site.local_addr().expect("address"));
    let attacker = foreign_key(9);
    let mut attacker_jwk = Jwk::from_encoding_key(&attacker, Algorithm::EdDSA).expect("a JWK");
    attacker_jwk.common.key_id = Some("attacker".into());

    let pointing = |kid: &str| {
        let with = |edit: &dyn Fn(&mut Header)| {
            let mut h = header(kid);
            edit(&mut h);
            h
        };
        vec![
            ("jku", with(&|h| h.jku = Some(attacker_url.clone()))),
            ("x5u", with(&|h| h.x5u = Some(attacker_url.clone()))),
            ("jwk", with(&|h| h.jwk = Some(attacker_jwk.clone()))),
        ]
    };
    for (field, header) in pointing("attacker") {
        let token = jsonwebtoken::encode(&header, &good, &attacker).expect("signs");
        let reply = app.get("/api/rooms", Some(&token)).await;
        assert_eq!(reply.code(), "token_unknown_key", "{field}: {}", reply.body);
        reply.assert_error(401, "token_unknown_key");
    }
    for (field, header) in pointing(&kid) {
        let forged = jsonwebtoken::encode(&header, &good, &attacker).expect("signs");
        let reply = app.get("/api/rooms", Some(&forged)).await;
        assert_eq!(reply.code(), "token_bad_signature", "{field}: {}", reply.body);
        // The same header on a token our key signed changes nothing either way: the field is ignored.
        let genuine = jsonwebtoken::encode(&header, &good, &key).expect("signs");
        let reply = app.get("/api/rooms", Some(&genuine)).await;
        assert_eq!(reply.status, StatusCode::OK, "{field}: {}", reply.body);
    }
    match attacker_site.accept() {
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the API connected to a URL from a token header: {other:?}"),
    }
}

/// An HTTP/1.1 exchange over a raw socket, for requests a client library would refuse to send or give up on:
/// writes `head` and then `body` while reading the answer, so a server that answers early (and stops reading)
/// is still heard. Returns the status and the body, parsed as JSON when it is.
async fn raw_exchange(app: &TestApp, head: Vec<u8>, body: Vec<u8>) -> (u16, Value) {
    let addr = app.base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.expect("connects");
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The server may close the connection before taking it all: that is its right.
        if write.write_all(&head).await.is_ok() {
            for chunk in body.chunks(64 * 1024) {
                if write.write_all(chunk).await.is_err() {
                    break;
                }
            }
        }
        write
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let read_all = async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if complete(&answer) {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all)
        .await
        .expect("an answer within 20 s");
    writer.abort();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| serde_json::from_str(body).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    (status, body)
}

/// Whether `answer` holds a whole response: its head and as many body bytes as its `content-length` says.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    body.len() >= length
}

fn post_head(path: &str, content_type: &str, length: usize) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n\r\n"
    )
    .into_bytes()
}

/// After an attack, the server still does its work.
async fn still_serving(app: &TestApp, name: &str) {
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);
    app.register(name).await;
}

#[tokio::test]
async fn hostile_bodies_get_a_clear_4xx_and_the_server_goes_on() {
    // The largest body limit there is, so the nesting below reaches the JSON parser.
    let app = spawn_app_with(&["--max-body-bytes", "1048576"]).await;

    let ten_mb = vec![b'a'; 10 * 1024 * 1024];
    let (status, body) = raw_exchange(
        &app,
        post_head("/api/register", "application/json", ten_mb.len()),
        ten_mb,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    still_serving(&app, "after-big").await;

    // The same without a length up front: the limit holds while the body streams in.
    let mut chunked = b"POST /api/register HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
        transfer-encoding: chunked\r\n\r\n"
        .to_vec();
    let mut stream = Vec::new();
    for _ in 0..160 {
        stream.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        stream.extend_from_slice(&[b' '; 64 * 1024]);
        stream.extend_from_slice(b"\r\n");
    }
    stream.extend_from_slice(b"0\r\n\r\n");
    chunked.extend_from_slice(&stream);
    let (status, body) = raw_exchange(&app, chunked, Vec::new()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    still_serving(&app, "after-chunked").await;

    // Every body is read into a fixed shape, so the parser stops at the first token that does not fit it: depth
    // costs nothing, at the top or inside a field.
    let deep = "[".repeat(100_000);
    for (what, nested) in [
        ("arrays", deep.clone()),
        ("objects", "{\"a\":".repeat(100_000)),
        ("arrays in a field", format!("{{\"username\":{deep}")),
    ] {
        let reply = app.post_raw("/api/register", "application/json", nested).await;
        assert_eq!(reply.code(), "invalid_body", "{what}: {}", reply.body);
        reply.assert_error(422, "invalid_body");
    }
    still_serving(&app, "after-nesting").await;

    let credentials = r#"{"username":"zed","password":"correct horse"}"#;
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"] {
        app.post_raw("/api/register", content_type, credentials)
            .await
            .assert_error(415, "unsupported_media_type");
    }
    let unlabelled = app
        .http
        .post(format!("{}/api/register", app.base))
        .body(credentials)
        .send()
        .await
        .expect("sent");
    assert_eq!(unlabelled.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Not UTF-8 inside a string, an overlong encoding of '/', and a lone surrogate escape.
    for bytes in [
        b"{\"username\":\"\xff\xfe\",\"password\":\"correct horse\"}".to_vec(),
        b"{\"username\":\"a\xc0\xafb\",\"password\":\"correct horse\"}".to_vec(),
        b"{\"username\":\"\\udc00\",\"password\":\"correct horse\"}".to_vec(),
    ] {
        app.post_raw("/api/register", "application/json", bytes)
            .await
            .assert_error(400, "malformed_json");
    }
    // A token header that is not text is no token.
    let mut odd = reqwest::header::HeaderMap::new();
    odd.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("opaque bytes are allowed"),
    );
    let reply = app
        .http
        .get(format!("{}/api/rooms", app.base))
        .headers(odd)
        .send()
        .await
        .expect("sent");
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    still_serving(&app, "after-encodings").await;
}

#[tokio::test]
async fn huge_headers_and_urls_get_a_clear_4xx_and_the_server_goes_on() {
    let app = spawn_app().await;
    let huge_value = "a".repeat(1024 * 1024);
    let many: String = (0..500).map(|i| format!("x-filler-{i}: {i}\r\n")).collect();
    let long_path = format!("/api/rooms/{}", "r".repeat(1024 * 1024));
    for (i, (what, head)) in [
        (
            "a 1 MiB header",
            format!("GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-big: {huge_value}\r\n\r\n"),
        ),
        (
            "500 headers",
            format!("GET /healthz HTTP/1.1\r\nhost: localhost\r\n{many}\r\n"),
        ),
        (
            "a 1 MiB URL",
            format!("GET {long_path} HTTP/1.1\r\nhost: localhost\r\n\r\n"),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, _) = raw_exchange(&app, head.into_bytes(), Vec::new()).await;
        // 431 Request Header Fields Too Large, from the HTTP layer before any route runs (no JSON body).
        assert_eq!(status, 431, "{what}");
        still_serving(&app, &format!("after-{i}")).await;
    }
    // A bearer token of a megabyte is refused like any other bad token.
    let reply = app.get("/api/rooms", Some(&"e".repeat(256 * 1024))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
}

/// A client on NATS that passes for a gateway (a stolen gateway password, or a process on a broker without
/// users) and announces its own URL: with `--gateway-url-patterns`, that URL is never handed to a browser, the
/// refusal is counted, and the real gateway is handed out although the fake one claims fewer connections.
#[tokio::test]
async fn a_heartbeat_naming_a_url_outside_the_patterns_is_never_handed_out() {
    let app = crate::helpers::spawn_app_with_nats(&["--gateway-url-patterns", "ws://127.0.0.1:*/ws"]).await;
    app.announce_gateways(&[
        ("real", "ws://127.0.0.1:9001/ws", 500),
        ("fake", "wss://evil.example/ws", 0),
    ])
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = app.get("/api/gateway", None).await;
        if reply.status == reqwest::StatusCode::OK {
            assert_eq!(reply.body["url"], "ws://127.0.0.1:9001/ws", "{:?}", reply.body);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no gateway handed out: {:?}",
            reply.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("natter_api_gateway_heartbeats_refused_total 1"),
        "the refused heartbeat is not counted"
    );
    assert!(!app.get("/api/gateway", None).await.body.to_string().contains("evil"));
}
