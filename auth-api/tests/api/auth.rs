//! Register, login, guest, refresh (rotation and reuse detection) and logout.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn register_returns_oauth_style_tokens_and_login_works() {
    let app = spawn_app().await;
    let tokens = app.register("alice").await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert!(
        tokens["access_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    assert!(tokens["refresh_token"].as_str().is_some_and(|t| t.len() >= 40));
    assert_eq!(tokens["user"]["name"], "alice");
    assert_eq!(tokens["user"]["guest"], false);

    let login = app
        .post("/api/login", json!({"username": "alice", "password": "correct horse"}))
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert_eq!(login.body["user"]["id"], tokens["user"]["id"]);
    // Names are matched without regard to case.
    let login = app
        .post("/api/login", json!({"username": "ALICE", "password": "correct horse"}))
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_hashes() {
    let app = spawn_app().await;
    app.register("bob").await;
    let (hash,): (String,) = sqlx::query_as("SELECT password_hash FROM users WHERE username = 'bob'")
        .fetch_one(&app.db)
        .await
        .expect("user row");
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    assert!(!hash.contains("correct horse"));
}

#[tokio::test]
async fn bad_registrations_are_refused() {
    let app = spawn_app().await;
    app.register("carol").await;
    app.post("/api/register", json!({"username": "Carol", "password": "another one"}))
        .await
        .assert_error(409, "username_taken");
    app.post("/api/register", json!({"username": "x", "password": "correct horse"}))
        .await
        .assert_error(422, "invalid_username");
    app.post(
        "/api/register",
        json!({"username": "dave smith", "password": "correct horse"}),
    )
    .await
    .assert_error(422, "invalid_username");
    app.post("/api/register", json!({"username": "dave", "password": "short"}))
        .await
        .assert_error(422, "invalid_password");
    app.post(
        "/api/register",
        json!({"username": "dave", "password": "x".repeat(300)}),
    )
    .await
    .assert_error(422, "invalid_password");
}

#[tokio::test]
async fn wrong_credentials_get_the_same_401() {
    let app = spawn_app().await;
    app.register("erin").await;
    app.post("/api/login", json!({"username": "erin", "password": "wrong horse"}))
        .await
        .assert_error(401, "invalid_credentials");
    app.post("/api/login", json!({"username": "nobody", "password": "correct horse"}))
        .await
        .assert_error(401, "invalid_credentials");
    let reply = app
        .post("/api/login", json!({"username": "erin", "password": "wrong horse"}))
        .await;
    assert_eq!(
        reply.headers.get("www-authenticate").map(|v| v.to_str().ok()),
        Some(Some("Bearer"))
    );
}

#[tokio::test]
async fn guests_get_tokens_unless_turned_off() {
    let app = spawn_app().await;
    let reply = app.post("/api/guest", json!({"username": "visitor"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["user"]["guest"], true);
    app.post("/api/guest", json!({"username": "VISITOR"}))
        .await
        .assert_error(409, "username_taken");
    app.post("/api/guest", json!({"username": "a.b"}))
        .await
        .assert_error(422, "invalid_username");
    // A guest has no password, so no password logs in as one.
    app.post("/api/login", json!({"username": "visitor", "password": ""}))
        .await
        .assert_error(401, "invalid_credentials");

    let closed = spawn_app_with(&["--guests", "false"]).await;
    closed
        .post("/api/guest", json!({"username": "visitor"}))
        .await
        .assert_error(403, "guests_disabled");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    // No grace: any reuse at all is theft.
    let app = spawn_app_with(&["--refresh-reuse-grace", "0s"]).await;
    let first = app.register("frank").await;
    let r1 = first["refresh_token"].clone();

    let second = app.post("/api/refresh", json!({"refresh_token": r1})).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let r2 = second.body["refresh_token"].clone();
    assert_ne!(r1, r2, "the refresh token rotates");
    assert_eq!(second.body["user"]["name"], "frank");
    // The new access token works.
    let token = second.body["access_token"].as_str().expect("access token");
    assert_eq!(app.get("/api/rooms", Some(token)).await.status, StatusCode::OK);

    // Presenting the spent token again is reuse: refused, and the whole family is revoked.
    app.post("/api/refresh", json!({"refresh_token": r1}))
        .await
        .assert_error(401, "refresh_token_reused");
    app.post("/api/refresh", json!({"refresh_token": r2}))
        .await
        .assert_error(401, "refresh_token_revoked");

    // Refresh tokens are stored as their SHA-256, never as given.
    let r2 = r2.as_str().expect("string");
    let count = |sql: &'static str| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(r2)
                .fetch_one(&db)
                .await
                .expect("count")
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM refresh_tokens WHERE token_hash = sha256(convert_to($1, 'UTF8'))").await,
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM refresh_tokens WHERE token_hash = convert_to($1, 'UTF8')").await,
        0
    );

    app.post("/api/refresh", json!({"refresh_token": "not-a-token"}))
        .await
        .assert_error(401, "invalid_refresh_token");
}

#[tokio::test]
async fn a_refresh_token_presented_again_within_the_grace_period_gets_the_same_successor() {
    let app = spawn_app_with(&["--refresh-reuse-grace", "2s"]).await;
    let first = app.register("tabitha").await;
    let r1 = first["refresh_token"].clone();
    // Two tabs of one browser refresh the same session a moment apart: both get working tokens, and the same
    // refresh token (one chain, not two).
    let tab_a = app.post("/api/refresh", json!({"refresh_token": r1})).await;
    let tab_b = app.post("/api/refresh", json!({"refresh_token": r1})).await;
    assert_eq!(
        (tab_a.status, tab_b.status),
        (StatusCode::OK, StatusCode::OK),
        "{}",
        tab_b.body
    );
    assert_eq!(tab_a.body["refresh_token"], tab_b.body["refresh_token"]);
    for tab in [&tab_a, &tab_b] {
        let token = tab.body["access_token"].as_str().expect("access token");
        assert_eq!(app.get("/api/rooms", Some(token)).await.status, StatusCode::OK);
    }
    let next = app
        .post("/api/refresh", json!({"refresh_token": tab_a.body["refresh_token"]}))
        .await;
    assert_eq!(
        next.status,
        StatusCode::OK,
        "the successor still rotates: {}",
        next.body
    );
    // Past the grace period, the first token is a copy: the whole family is revoked.
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    app.post("/api/refresh", json!({"refresh_token": r1}))
        .await
        .assert_error(401, "refresh_token_reused");
    app.post("/api/refresh", json!({"refresh_token": next.body["refresh_token"]}))
        .await
        .assert_error(401, "refresh_token_revoked");
}

#[tokio::test]
async fn logout_revokes_the_session_but_not_others() {
    let app = spawn_app().await;
    app.register("grace").await;
    let login = |_: ()| app.post("/api/login", json!({"username": "grace", "password": "correct horse"}));
    let a = login(()).await.body;
    let b = login(()).await.body;
    let reply = app
        .post("/api/logout", json!({"refresh_token": a["refresh_token"]}))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    app.post("/api/refresh", json!({"refresh_token": a["refresh_token"]}))
        .await
        .assert_error(401, "refresh_token_revoked");
    let other = app
        .post("/api/refresh", json!({"refresh_token": b["refresh_token"]}))
        .await;
    assert_eq!(
        other.status,
        StatusCode::OK,
        "another session stays logged in: {}",
        other.body
    );
    // Logging out an unknown token is not an oracle.
    assert_eq!(
        app.post("/api/logout", json!({"refresh_token": "nope"})).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn expired_refresh_tokens_are_refused() {
    let app = spawn_app().await;
    let tokens = app.register("heidi").await;
    sqlx::query("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .expect("expire tokens");
    app.post("/api/refresh", json!({"refresh_token": tokens["refresh_token"]}))
        .await
        .assert_error(401, "refresh_token_expired");
}

#[tokio::test]
async fn logout_racing_a_refresh_leaves_no_usable_token() {
    let app = spawn_app().await;
    app.register("uma").await;
    for _ in 0..10 {
        let login = app
            .post("/api/login", json!({"username": "uma", "password": "correct horse"}))
            .await
            .body;
        let token = login["refresh_token"].clone();
        let (refreshed, _) = tokio::join!(
            app.post("/api/refresh", json!({"refresh_token": token})),
            app.post("/api/logout", json!({"refresh_token": token})),
        );
        // Whichever came first, a token minted by the refresh belongs to the logged-out session.
        if refreshed.status == StatusCode::OK {
            app.post(
                "/api/refresh",
                json!({"refresh_token": refreshed.body["refresh_token"]}),
            )
            .await
            .assert_error(401, "refresh_token_revoked");
        } else {
            refreshed.assert_error(401, "refresh_token_revoked");
        }
    }
}
