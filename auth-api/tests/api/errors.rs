//! Bad input of every kind gets a 4xx with a JSON error body, never a 500 or a dropped connection.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn malformed_bodies_get_clear_errors() {
    let app = spawn_app().await;
    app.post_raw("/api/register", "application/json", "{not json")
        .await
        .assert_error(400, "malformed_json");
    app.post_raw("/api/register", "application/json", "")
        .await
        .assert_error(400, "malformed_json");
    app.post("/api/register", json!({"username": 5, "password": "correct horse"}))
        .await
        .assert_error(422, "invalid_body");
    app.post("/api/register", json!({"username": "zed"}))
        .await
        .assert_error(422, "invalid_body");
    app.post(
        "/api/register",
        json!({"username": "zed", "password": "correct horse", "admin": true}),
    )
    .await
    .assert_error(422, "invalid_body");
    app.post_raw(
        "/api/register",
        "text/plain",
        r#"{"username":"zed","password":"correct horse"}"#,
    )
    .await
    .assert_error(415, "unsupported_media_type");
    let huge = json!({"username": "zed", "password": "x".repeat(100_000)}).to_string();
    app.post_raw("/api/register", "application/json", huge)
        .await
        .assert_error(413, "payload_too_large");
    app.post_raw("/api/register", "application/json", vec![0xff, 0xfe, 0x00])
        .await
        .assert_error(400, "malformed_json");
}

#[tokio::test]
async fn sql_looking_input_is_only_data() {
    let app = spawn_app().await;
    app.post(
        "/api/register",
        json!({"username": "x' OR '1'='1", "password": "correct horse"}),
    )
    .await
    .assert_error(422, "invalid_username");
    app.post(
        "/api/login",
        json!({"username": "x' OR '1'='1' --", "password": "' OR '1'='1"}),
    )
    .await
    .assert_error(401, "invalid_credentials");
    app.post("/api/refresh", json!({"refresh_token": "' OR 1=1; --"}))
        .await
        .assert_error(401, "invalid_refresh_token");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let app = spawn_app().await;
    app.get("/api/nothing-here", None).await.assert_error(404, "not_found");
    app.call(Method::PUT, "/api/login", None, Some(json!({})))
        .await
        .assert_error(405, "method_not_allowed");
    app.get("/api/rooms", Some("not a jwt"))
        .await
        .assert_error(401, "token_malformed");
    let reply = app
        .http
        .get(format!("{}/api/rooms", app.base))
        .header("authorization", "Basic abc")
        .send()
        .await
        .expect("sent");
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
}
