//! Health, readiness, metrics, the OpenAPI document, and configuration errors.

use std::process::Command;

use natter_test_support::PgServer;
use natter_test_support::metrics_page::{has, value};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_on, spawn_app_with};

#[tokio::test]
async fn health_and_metrics_endpoints_work() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);
    let ready = app.get("/readyz", None).await;
    assert_eq!(
        (ready.status, ready.body["database"].as_str()),
        (StatusCode::OK, Some("ok"))
    );

    app.post("/api/login", json!({"username": "nobody", "password": "whatever1"}))
        .await;
    let text = app.metrics_text().await;
    assert!(
        text.lines().any(|l| l.starts_with("natter_api_http_requests_total")
            && l.contains("route=\"/api/login\"")
            && l.contains("status=\"401\"")),
        "{text}"
    );
    assert!(
        text.contains("natter_api_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn with_an_admin_port_health_and_metrics_move_there_and_the_public_port_serves_only_the_api() {
    let admin = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let admin_addr = admin.local_addr().expect("address");
    drop(admin);
    let app = spawn_app_with(&["--admin-listen", &admin_addr.to_string()]).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let public = app.get(path, None).await;
        assert_eq!(public.status, StatusCode::NOT_FOUND, "{path} on the public port");
        let answer = reqwest::get(format!("http://{admin_addr}{path}"))
            .await
            .expect("the admin port answers");
        assert_eq!(answer.status(), StatusCode::OK, "{path} on the admin port");
    }
    let metrics = reqwest::get(format!("http://{admin_addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(has(&metrics, "natter_api_http_requests_total"), "{metrics}");
    // The API itself is where it was.
    assert_eq!(app.get("/.well-known/jwks.json", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn readiness_follows_the_database() {
    let mut pg = PgServer::start();
    let app = spawn_app_on(pg.create_database().await, &[]).await;
    assert_eq!(app.get("/readyz", None).await.status, StatusCode::OK);
    pg.kill();
    let down = app.get("/readyz", None).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{}", down.body);
    // Requests that need the database fail cleanly while it is down, and the process keeps serving.
    let reply = app
        .post("/api/login", json!({"username": "nobody", "password": "whatever1"}))
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);
    pg.restart();
    let mut ready = false;
    for _ in 0..50 {
        if app.get("/readyz", None).await.status == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(ready, "ready again once the database is back");
    assert_eq!(
        app.post("/api/guest", json!({"username": "survivor"})).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let doc = app.get("/api/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc.body["paths"].as_object().expect("paths");
    let expected = [
        ("/api/register", "post"),
        ("/api/login", "post"),
        ("/api/guest", "post"),
        ("/api/refresh", "post"),
        ("/api/logout", "post"),
        ("/api/load-test/guests", "post"),
        ("/api/sessions", "get"),
        ("/api/sessions", "delete"),
        ("/api/sessions/{id}", "delete"),
        ("/api/account/password", "post"),
        ("/api/rooms", "post"),
        ("/api/rooms", "get"),
        ("/api/rooms/{id}", "get"),
        ("/api/rooms/{id}", "delete"),
        ("/api/rooms/{id}/join", "post"),
        ("/api/rooms/{id}/join-code", "post"),
        ("/api/rooms/{id}/leave", "post"),
        ("/api/rooms/{id}/members", "get"),
        ("/api/rooms/{id}/members/{user}/remove", "post"),
        ("/api/rooms/{id}/members/{user}/ban", "post"),
        ("/api/rooms/{id}/members/{user}/role", "put"),
        ("/api/rooms/{id}/bans", "get"),
        ("/api/rooms/{id}/bans/{user}", "delete"),
        ("/api/search", "get"),
        ("/api/mentions", "get"),
        ("/api/rooms/{id}/mute", "put"),
        ("/api/conversations/direct", "post"),
        ("/api/conversations/group", "post"),
        ("/api/blocks", "get"),
        ("/api/blocks/{user}", "put"),
        ("/api/blocks/{user}", "delete"),
        ("/.well-known/jwks.json", "get"),
        ("/api/gateway", "get"),
        ("/api/rooms/{id}/messages", "get"),
        ("/api/rooms/{id}/read", "put"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from OpenAPI"
        );
    }
    assert_eq!(
        paths
            .values()
            .map(|p| p.as_object().map_or(0, |o| o.len()))
            .sum::<usize>(),
        expected.len()
    );
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());
}

#[test]
fn bad_configuration_exits_64_with_one_line() {
    let bin = env!("CARGO_BIN_EXE_natter-auth-api");
    for args in [
        vec!["--listen", "not-an-address"],
        vec!["--access-token-ttl", "1h", "--refresh-token-ttl", "30m"],
        vec!["--access-token-ttl", "25h"],
        vec!["--database-url", "postgres://user:hunter2@host:badport/db"],
        vec!["--no-such-flag"],
    ] {
        let out = Command::new(bin)
            .args(&args)
            .env_remove("DATABASE_URL")
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("invalid configuration"), "{stderr}");
        assert!(!stderr.contains("hunter2"), "secrets are never printed: {stderr}");
    }
    let out = Command::new(bin)
        .env("NATTER_ACCESS_TOKEN_TTL", "forever")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64), "environment settings are validated too");
}

#[test]
fn check_config_validates_and_exits_without_connecting() {
    let bin = env!("CARGO_BIN_EXE_natter-auth-api");
    // Nothing listens at this database: a check that connected would fail or hang.
    let out = Command::new(bin)
        .args([
            "--check-config",
            "--database-url",
            "postgres://natter@127.0.0.1:1/natter",
        ])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("the configuration is valid"), "{stderr}");
    let out = Command::new(bin)
        .args([
            "--check-config",
            "--database-url",
            "postgres://natter@127.0.0.1:1/natter",
        ])
        .env("NATTER_ACCESS_TOKEN_TTL", "forever")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A key rotation that keeps failing shows as a signing key growing old, the failure `NatterSigningKeyStale` is
/// there for: the age is reported after every reload, including one whose rotation was refused.
#[tokio::test]
async fn the_signing_key_age_keeps_counting_while_rotation_fails() {
    let app = spawn_app().await;
    let rotations = value(&app.metrics_text().await, "natter_api_key_rotations_total");
    // The key in force was made nine days ago (past the 7-day rotation), and the database refuses new keys.
    sqlx::query("UPDATE signing_keys SET created_at = now() - interval '9 days'")
        .execute(&app.db)
        .await
        .expect("aged");
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_keys() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'no new keys'; END $$; \
         CREATE TRIGGER refuse_keys BEFORE INSERT ON signing_keys FOR EACH ROW EXECUTE FUNCTION refuse_keys();",
    )
    .execute(&app.db)
    .await
    .expect("trigger");
    // A token naming an unknown key makes the API reload (and so try to rotate), at most once a second.
    let unknown_kid = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCIsImtpZCI6Im5vdC1hLWtpZCJ9.eyJzdWIiOiJ4In0.AAAA";
    let mut age = 0.0;
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        app.get("/api/rooms", Some(unknown_kid)).await;
        age = value(&app.metrics_text().await, "natter_api_signing_key_age_seconds").expect("key age");
        if age >= 9.0 * 86_400.0 {
            break;
        }
    }
    assert!(
        age >= 9.0 * 86_400.0,
        "the refused rotation left the key's age at {age} s, not its nine days"
    );
    let page = app.metrics_text().await;
    assert_eq!(
        value(&page, "natter_api_key_rotations_total"),
        rotations,
        "no rotation happened: {page}"
    );
}

#[tokio::test]
async fn every_series_exists_from_start_up_and_minting_a_token_counts() {
    let app = spawn_app().await;
    let page = app.metrics_text().await;
    for name in natter_auth_api::metrics::ALL {
        assert!(
            has(&page, name),
            "{name} is missing from a fresh auth API's page:\n{page}"
        );
    }
    assert_eq!(
        value(&page, "natter_api_refresh_token_reuse_total"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        value(
            &page,
            "natter_api_logins_total{kind=\"password\",outcome=\"invalid_credentials\"}"
        ),
        Some(0.0),
        "{page}"
    );
    let age = value(&page, "natter_api_signing_key_age_seconds").expect("key age");
    assert!(age < 60.0, "a fresh database has a fresh key: {age}");
    // Each route's count, by each status it documents, in the labels a request gets.
    let guests = "natter_api_http_requests_total{method=\"POST\",route=\"/api/guest\",status=\"201\"}";
    assert_eq!(value(&page, guests), Some(0.0), "{page}");
    let refused = "natter_api_http_requests_total{method=\"POST\",route=\"/api/login\",status=\"401\"}";
    assert_eq!(value(&page, refused), Some(0.0), "{page}");
    let member = "natter_api_http_requests_total{method=\"DELETE\",route=\"/api/rooms/{id}\",status=\"204\"}";
    assert_eq!(value(&page, member), Some(0.0), "{page}");
    let minted = value(&page, "natter_api_tokens_issued_total").expect("tokens issued");
    app.post("/api/guest", json!({"username": "pip"})).await;
    let page = app.metrics_text().await;
    assert_eq!(
        value(&page, "natter_api_tokens_issued_total"),
        Some(minted + 1.0),
        "{page}"
    );
    assert_eq!(value(&page, guests), Some(1.0), "{page}");
}

/// What every operation answers before its handler runs is in the document: 401, 429 and 503 wherever an access
/// token is taken, 400, 413, 415 and 422 wherever a JSON body is read; every path parameter is one of the path's,
/// a room id has its pattern and a user id is a UUID; and every operation lists its error codes.
#[tokio::test]
async fn every_operation_documents_what_its_extractors_answer() {
    let app = spawn_app().await;
    let doc = app.get("/api/openapi.json", None).await.body;
    let paths = doc["paths"].as_object().expect("paths");
    let mut authenticated = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            let at = format!("{method} {path}");
            let responses = operation["responses"].as_object().expect("responses");
            let documents = |status: &str| responses.contains_key(status);
            let bearer = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if bearer {
                authenticated += 1;
                for status in ["401", "429", "503"] {
                    assert!(documents(status), "{at} takes a token but does not document {status}");
                }
                let unauthorized = responses["401"]["description"].as_str().unwrap_or_default();
                assert!(unauthorized.contains("`missing_token`"), "{at}: {unauthorized}");
                assert!(responses["401"]["headers"]["WWW-Authenticate"].is_object(), "{at}");
            }
            if let Some(body) = operation.get("requestBody") {
                for status in ["400", "413", "415", "422"] {
                    assert!(documents(status), "{at} reads a body but does not document {status}");
                }
                // An optional body is one left out, never a JSON null.
                let schema = &body["content"]["application/json"]["schema"];
                assert!(schema.get("oneOf").is_none(), "{at}: {schema}");
            }
            if let Some(limited) = responses.get("429") {
                assert!(limited["headers"]["Retry-After"].is_object(), "{at}");
            }
            for (status, response) in responses {
                let description = response["description"].as_str().unwrap_or_default();
                assert!(
                    status.starts_with('2') || description.contains('`'),
                    "{at} {status} names no error code: {description}"
                );
            }
            for param in operation["parameters"].as_array().into_iter().flatten() {
                let name = param["name"].as_str().expect("name");
                let place = param["in"].as_str().expect("in");
                assert_eq!(
                    place == "path",
                    path.contains(&format!("{{{name}}}")),
                    "{at}: parameter `{name}` is in the {place}"
                );
                if place == "path" && name == "id" && path.starts_with("/api/rooms/") {
                    assert_eq!(param["schema"]["pattern"], "^[A-Za-z0-9_-]{1,64}$", "{at}");
                    assert!(documents("400"), "{at}: a bad room id is a 400");
                }
                if place == "path" && name == "user" {
                    assert_eq!(param["schema"]["format"], "uuid", "{at}");
                }
            }
        }
    }
    assert!(authenticated > 20, "{authenticated} authenticated operations");
    let components = &doc["components"]["schemas"];
    assert_eq!(components["Username"]["pattern"], "^[A-Za-z0-9][A-Za-z0-9_-]{2,31}$");
    assert!(components["RoomName"]["pattern"].is_string());
}

/// JSON Schema, in which the document describes bodies, counts `2.0` as the integer 2: so does the API.
#[tokio::test]
async fn whole_numbers_with_a_fraction_are_the_integers_the_document_says_they_are() {
    let app = spawn_app().await;
    let token = app.token_for("wholly").await;
    let room = app.create_room(&token, "Whole", false).await;
    let path = format!("/api/rooms/{}/read", room["id"].as_str().expect("id"));
    let put = |seq: serde_json::Value| app.call(reqwest::Method::PUT, &path, Some(&token), Some(json!({"seq": seq})));
    let read = put(json!(0.0)).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["read_seq"], 0);
    put(json!(2.5)).await.assert_error(422, "invalid_body");
    put(json!(1e300)).await.assert_error(422, "invalid_body");
    put(json!(-1.0)).await.assert_error(422, "invalid_seq");
    // Nothing else changes: a field that is not one stays refused, and a body that is not JSON too (refused here
    // for the first value that does not fit, before its end is reached).
    app.call(
        reqwest::Method::PUT,
        &path,
        Some(&token),
        Some(json!({"seq": 1.0, "x": 1})),
    )
    .await
    .assert_error(422, "invalid_body");
    app.post_raw("/api/register", "application/json", "{\"username\": 1.0")
        .await
        .assert_error(422, "invalid_body");
    app.post_raw(
        "/api/register",
        "application/json",
        "{\"username\": \"abc\", \"password\": \"correct horse\"",
    )
    .await
    .assert_error(400, "malformed_json");
}
