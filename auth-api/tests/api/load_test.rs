//! The load-test mode: off by default, behind a key, and its tokens are ordinary tokens.

use std::collections::HashSet;

use jsonwebtoken::jwk::JwkSet;
use natter_proto::token::Verifier;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const KEY: &str = "a-load-test-key-for-tests";

async fn bulk(app: &TestApp, key: Option<&str>, prefix: &str, count: u32) -> crate::helpers::Reply {
    let body = json!({"prefix": prefix, "count": count});
    app.call(Method::POST, "/api/load-test/guests", key, Some(body)).await
}

/// A request without a key and with a body the route cannot read.
async fn nonsense(app: &TestApp) -> crate::helpers::Reply {
    let body = json!({"nonsense": true});
    app.call(Method::POST, "/api/load-test/guests", None, Some(body)).await
}

async fn users(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.db)
        .await
        .expect("count users")
}

#[tokio::test]
async fn the_mode_is_off_by_default() {
    let app = spawn_app().await;
    bulk(&app, Some(KEY), "lt", 5)
        .await
        .assert_error(404, "load_test_mode_off");
    // Off means off, whatever the body.
    nonsense(&app).await.assert_error(404, "load_test_mode_off");
    assert_eq!(users(&app).await, 0);
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_refused() {
    let app = spawn_app_with(&["--load-test-key", KEY]).await;
    bulk(&app, None, "lt", 5)
        .await
        .assert_error(401, "invalid_load_test_key");
    bulk(&app, Some("a-load-test-key-for-tesTs"), "lt", 5)
        .await
        .assert_error(401, "invalid_load_test_key");
    // The key is checked before the body is read.
    nonsense(&app).await.assert_error(401, "invalid_load_test_key");
    assert_eq!(users(&app).await, 0);
}

#[tokio::test]
async fn a_thousand_guests_get_tokens_that_verify() {
    let app = spawn_app_with(&["--load-test-key", KEY]).await;
    let reply = bulk(&app, Some(KEY), "lt7f3a", 1000).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let made = reply.body["users"].as_array().expect("users");
    assert_eq!(made.len(), 1000);
    assert_eq!(reply.body["expires_in"], 900);
    let jwks: JwkSet = serde_json::from_value(app.get("/.well-known/jwks.json", None).await.body).expect("jwks");
    let verifier = Verifier::from_jwks(&jwks, "natter", "natter");
    let mut names = HashSet::new();
    for (i, user) in made.iter().enumerate() {
        let name = user["name"].as_str().expect("name");
        assert_eq!(name, format!("lt7f3a-{i}"));
        assert!(names.insert(name.to_owned()), "names are unique");
        let claims = verifier
            .verify(user["access_token"].as_str().expect("token"))
            .expect("the token verifies against the JWKS");
        assert_eq!(claims.sub, user["id"].as_str().expect("id"));
        assert_eq!(claims.name, name);
    }
    assert_eq!(users(&app).await, 1000);
    // The tokens work on the API like any other.
    let token = made[0]["access_token"].as_str().expect("token");
    assert_eq!(app.get("/api/rooms", Some(token)).await.status, StatusCode::OK);

    // The same request again: refused whole, nothing added; names clash without regard to case.
    bulk(&app, Some(KEY), "lt7f3a", 1000)
        .await
        .assert_error(409, "username_taken");
    bulk(&app, Some(KEY), "LT7F3A", 1)
        .await
        .assert_error(409, "username_taken");
    assert_eq!(users(&app).await, 1000);

    let metrics = app.metrics_text().await;
    assert!(
        metrics.lines().any(|l| l == "natter_api_load_test_guests_total 1000"),
        "{metrics}"
    );
}

#[tokio::test]
async fn counts_and_names_out_of_bounds_are_refused() {
    let app = spawn_app_with(&["--load-test-key", KEY]).await;
    bulk(&app, Some(KEY), "lt", 0).await.assert_error(422, "invalid_count");
    bulk(&app, Some(KEY), "lt", 1001)
        .await
        .assert_error(422, "invalid_count");
    bulk(&app, Some(KEY), "a.b", 1)
        .await
        .assert_error(422, "invalid_username");
    bulk(&app, Some(KEY), &"x".repeat(31), 10)
        .await
        .assert_error(422, "invalid_username");
    app.call(
        Method::POST,
        "/api/load-test/guests",
        Some(KEY),
        Some(json!({"prefix": "lt", "count": 1, "admin": true})),
    )
    .await
    .assert_error(422, "invalid_body");
    assert_eq!(users(&app).await, 0);
}
