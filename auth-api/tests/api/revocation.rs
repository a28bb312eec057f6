//! A session ended early (logout, a refresh token used twice) is refused by the API at once and recorded in the
//! revoked-sessions bucket the gateways follow, read here with a plain NATS client.

use async_nats::jetstream;
use natter_proto::bus::{REVOKED_SESSIONS_BUCKET, RevokeReason, RevokedSession};
use natter_test_support::metrics_page::value;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{access, claims_of, spawn_app_with_nats};

/// The session id of an access token.
fn sid(token: &str) -> String {
    claims_of(token)["sid"].as_str().expect("a sid").to_owned()
}

#[tokio::test]
async fn a_logged_out_session_is_refused_while_another_session_of_the_user_works() {
    let app = spawn_app_with_nats(&[]).await;
    let first = app.register("nadia").await;
    let second = app.login("nadia").await;
    let user = first["user"]["id"].as_str().expect("id").to_owned();
    assert_ne!(
        sid(access(&first)),
        sid(access(&second)),
        "each login is its own session"
    );
    assert_eq!(app.get("/api/rooms", Some(access(&first))).await.status, StatusCode::OK);
    let revoked_metric = "natter_api_auth_failures_total{reason=\"token_revoked\"}";
    let refused_before = value(&app.metrics_text().await, revoked_metric).expect("registered at start-up");

    let out = app
        .post("/api/logout", json!({"refresh_token": first["refresh_token"]}))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);

    // The access token is refused on every authenticated route before it expires.
    app.get("/api/rooms", Some(access(&first)))
        .await
        .assert_error(401, "token_revoked");
    app.call(
        Method::POST,
        "/api/rooms",
        Some(access(&first)),
        Some(json!({"name": "after logout"})),
    )
    .await
    .assert_error(401, "token_revoked");
    assert_eq!(
        app.get("/api/rooms", Some(access(&second))).await.status,
        StatusCode::OK
    );

    assert_eq!(
        app.revoked_session(&sid(access(&first))).await,
        Some(RevokedSession {
            user,
            reason: RevokeReason::Logout
        })
    );
    assert_eq!(app.revoked_session(&sid(access(&second))).await, None);
    let page = app.metrics_text().await;
    assert_eq!(value(&page, revoked_metric), Some(refused_before + 2.0), "{page}");
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_and_records_the_session() {
    let app = spawn_app_with_nats(&["--refresh-reuse-grace", "0s"]).await;
    let first = app.register("otto").await;
    let refreshed = app
        .post("/api/refresh", json!({"refresh_token": first["refresh_token"]}))
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    let session = sid(access(&first));
    assert_eq!(sid(access(&refreshed.body)), session, "a refresh stays in the session");

    app.post("/api/refresh", json!({"refresh_token": first["refresh_token"]}))
        .await
        .assert_error(401, "refresh_token_reused");

    for token in [access(&first), access(&refreshed.body)] {
        app.get("/api/rooms", Some(token))
            .await
            .assert_error(401, "token_revoked");
    }
    assert_eq!(
        app.revoked_session(&session).await,
        Some(RevokedSession {
            user: first["user"]["id"].as_str().expect("id").to_owned(),
            reason: RevokeReason::RefreshReuse
        })
    );
    // Logging out of the stolen session afterwards keeps the reason it was revoked for.
    let out = app
        .post("/api/logout", json!({"refresh_token": refreshed.body["refresh_token"]}))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    assert_eq!(
        app.revoked_session(&session).await.map(|s| s.reason),
        Some(RevokeReason::RefreshReuse)
    );
}

#[tokio::test]
async fn a_logout_the_gateways_could_not_hear_of_answers_503_and_a_retry_records_it() {
    let app = spawn_app_with_nats(&[]).await;
    let tokens = app.register("petra").await;
    let session = sid(access(&tokens));
    let js = jetstream::new(app.nats_client().await);
    js.delete_stream(format!("KV_{REVOKED_SESSIONS_BUCKET}"))
        .await
        .expect("the bucket's stream is removed");

    let out = app
        .post("/api/logout", json!({"refresh_token": tokens["refresh_token"]}))
        .await;
    out.assert_error(503, "unavailable");
    let message = out.body["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("live connections") && message.contains("retry"),
        "{message}"
    );
    // The session is over for the API all the same: PostgreSQL decides, the bucket only carries the news.
    app.get("/api/rooms", Some(access(&tokens)))
        .await
        .assert_error(401, "token_revoked");
    // A refresh with its token meets the revoked session and tries to tell the gateways too.
    app.post("/api/refresh", json!({"refresh_token": tokens["refresh_token"]}))
        .await
        .assert_error(503, "unavailable");

    natter_stream::sessions::bucket(&js, 1)
        .await
        .expect("the bucket is back");
    assert_eq!(app.revoked_session(&session).await, None);
    let retried = app
        .post("/api/logout", json!({"refresh_token": tokens["refresh_token"]}))
        .await;
    assert_eq!(retried.status, StatusCode::NO_CONTENT, "{}", retried.body);
    assert_eq!(
        app.revoked_session(&session).await.map(|s| s.reason),
        Some(RevokeReason::Logout)
    );
}

#[tokio::test]
async fn a_refresh_with_a_logged_out_sessions_token_records_it_again() {
    let app = spawn_app_with_nats(&[]).await;
    let tokens = app.register("quinn").await;
    let session = sid(access(&tokens));
    let out = app
        .post("/api/logout", json!({"refresh_token": tokens["refresh_token"]}))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    // Forget the record, as if its write had been lost.
    let js = jetstream::new(app.nats_client().await);
    js.get_stream(format!("KV_{REVOKED_SESSIONS_BUCKET}"))
        .await
        .expect("the bucket's stream")
        .purge()
        .await
        .expect("purged");
    assert_eq!(app.revoked_session(&session).await, None);

    app.post("/api/refresh", json!({"refresh_token": tokens["refresh_token"]}))
        .await
        .assert_error(401, "refresh_token_revoked");
    assert_eq!(
        app.revoked_session(&session).await.map(|s| s.reason),
        Some(RevokeReason::Logout)
    );
}

#[tokio::test]
async fn an_unknown_refresh_token_logs_nothing_out_and_records_nothing() {
    let app = spawn_app_with_nats(&[]).await;
    let tokens = app.register("rhea").await;
    let out = app
        .post("/api/logout", json!({"refresh_token": "not-a-token-anyone-has"}))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    assert_eq!(
        app.get("/api/rooms", Some(access(&tokens))).await.status,
        StatusCode::OK
    );
    let js = jetstream::new(app.nats_client().await);
    let store = js.get_key_value(REVOKED_SESSIONS_BUCKET).await.expect("the bucket");
    assert_eq!(store.status().await.expect("status").values(), 0);
}
