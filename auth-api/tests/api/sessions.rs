//! A user ends a stolen session: a password change ends every other session, sessions are listed and ended one by
//! one or all at once, a session ends at its absolute lifetime however often it is refreshed, and a spent refresh
//! token shown again within the grace window gets the same successor (one chain, never two).

use std::time::Duration;

use natter_proto::bus::{RevokeReason, RevokedSession};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, access, claims_of, spawn_app, spawn_app_with, spawn_app_with_nats};

/// The session id of a token response.
fn sid(tokens: &Value) -> String {
    claims_of(access(tokens))["sid"].as_str().expect("a sid").to_owned()
}

fn refresh_token(tokens: &Value) -> &str {
    tokens["refresh_token"].as_str().expect("a refresh token")
}

/// Asserts that the session of `tokens` is over: its access token refused, its refresh token too, and the
/// gateways told (as a logout).
async fn assert_ended(app: &TestApp, tokens: &Value, user: &str) {
    app.get("/api/rooms", Some(access(tokens)))
        .await
        .assert_error(401, "token_revoked");
    app.post("/api/refresh", json!({"refresh_token": refresh_token(tokens)}))
        .await
        .assert_error(401, "refresh_token_revoked");
    assert_eq!(
        app.revoked_session(&sid(tokens)).await,
        Some(RevokedSession {
            user: user.to_owned(),
            reason: RevokeReason::Logout
        })
    );
}

async fn assert_live(app: &TestApp, tokens: &Value) {
    let reply = app.get("/api/rooms", Some(access(tokens))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

async fn change_password(app: &TestApp, tokens: &Value, current: &str, new: &str) -> crate::helpers::Reply {
    app.call(
        Method::POST,
        "/api/account/password",
        Some(access(tokens)),
        Some(json!({"current_password": current, "new_password": new})),
    )
    .await
}

#[tokio::test]
async fn a_password_change_ends_every_other_session_and_keeps_this_one() {
    let app = spawn_app_with_nats(&[]).await;
    let here = app.register("pia").await;
    let stolen = app.login("pia").await;
    let other = app.login("pia").await;
    let user = here["user"]["id"].as_str().expect("id").to_owned();

    change_password(&app, &here, "wrong horse", "battery staple")
        .await
        .assert_error(403, "wrong_password");
    change_password(&app, &here, "correct horse", "short")
        .await
        .assert_error(422, "invalid_password");
    assert_live(&app, &stolen).await;

    let changed = change_password(&app, &here, "correct horse", "battery staple").await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.body["ended"], 2);

    for ended in [&stolen, &other] {
        assert_ended(&app, ended, &user).await;
    }
    // This session goes on, refresh included.
    assert_live(&app, &here).await;
    assert_eq!(app.revoked_session(&sid(&here)).await, None);
    let refreshed = app
        .post("/api/refresh", json!({"refresh_token": refresh_token(&here)}))
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_eq!(sid(&refreshed.body), sid(&here));

    app.post("/api/login", json!({"username": "pia", "password": "correct horse"}))
        .await
        .assert_error(401, "invalid_credentials");
    let reply = app
        .post("/api/login", json!({"username": "pia", "password": "battery staple"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    // A guest has no password to change.
    let guest = app.post("/api/guest", json!({"username": "visiting"})).await;
    change_password(&app, &guest.body, "", "battery staple")
        .await
        .assert_error(403, "no_password");
}

#[tokio::test]
async fn wrong_current_passwords_are_held_to_the_login_budgets() {
    let app = spawn_app_with(&["--login-failures-per-user-address", "3"]).await;
    let tokens = app.register("quill").await;
    for _ in 0..3 {
        change_password(&app, &tokens, "guess", "battery staple")
            .await
            .assert_error(403, "wrong_password");
    }
    let limited = change_password(&app, &tokens, "correct horse", "battery staple").await;
    limited.assert_error(429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn sessions_are_listed_with_where_they_were_used_and_which_is_current() {
    let app = spawn_app().await;
    let first = app.register("rosa").await;
    let phone = app
        .http
        .post(format!("{}/api/login", app.base))
        .header("user-agent", "NatterPhone/1.0")
        .json(&json!({"username": "rosa", "password": "correct horse"}))
        .send()
        .await
        .expect("login");
    assert_eq!(phone.status(), StatusCode::OK);
    let phone: Value = phone.json().await.expect("tokens");
    let third = app.login("rosa").await;
    let someone_else = app.register("sven").await;

    let listed = app.get("/api/sessions", Some(access(&first))).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let sessions = listed.body.as_array().expect("a list").clone();
    assert_eq!(sessions.len(), 3, "{}", listed.body);
    let ids: Vec<&str> = sessions.iter().map(|s| s["id"].as_str().expect("id")).collect();
    for tokens in [&first, &phone, &third] {
        assert!(ids.contains(&sid(tokens).as_str()), "{}", listed.body);
    }
    assert!(!ids.contains(&sid(&someone_else).as_str()));
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], sid(&first).as_str());
    let on_phone = sessions
        .iter()
        .find(|s| s["id"] == sid(&phone).as_str())
        .expect("listed");
    assert_eq!(on_phone["user_agent"], "NatterPhone/1.0");
    assert_eq!(on_phone["address"], "127.0.0.1");
    for session in &sessions {
        for field in ["created_at", "last_used_at", "expires_at"] {
            assert!(session[field].is_string(), "{field}: {session}");
        }
    }

    // A refresh moves its session to the top as the most recently used.
    let refreshed = app
        .post("/api/refresh", json!({"refresh_token": refresh_token(&first)}))
        .await;
    assert_eq!(refreshed.status, StatusCode::OK);
    let listed = app.get("/api/sessions", Some(access(&phone))).await;
    assert_eq!(listed.body[0]["id"], sid(&first).as_str(), "{}", listed.body);
    assert_eq!(listed.body[0]["current"], false);

    // A logged-out session is no longer listed.
    let out = app
        .post("/api/logout", json!({"refresh_token": refresh_token(&third)}))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let listed = app.get("/api/sessions", Some(access(&phone))).await;
    assert_eq!(listed.body.as_array().expect("a list").len(), 2, "{}", listed.body);
}

#[tokio::test]
async fn one_session_is_ended_by_its_id_and_only_by_its_user() {
    let app = spawn_app_with_nats(&[]).await;
    let here = app.register("tara").await;
    let stolen = app.login("tara").await;
    let user = here["user"]["id"].as_str().expect("id").to_owned();
    let stranger = app.register("ugo").await;

    // Another user's session cannot be ended, nor told apart from one that does not exist.
    app.delete_as(access(&stranger), &format!("/api/sessions/{}", sid(&stolen)))
        .await
        .assert_error(404, "session_not_found");
    app.delete_as(access(&here), &format!("/api/sessions/{}", uuid::Uuid::new_v4()))
        .await
        .assert_error(404, "session_not_found");
    app.delete_as(access(&here), "/api/sessions/not-a-uuid")
        .await
        .assert_error(400, "invalid_session_id");
    assert_live(&app, &stolen).await;

    let ended = app
        .delete_as(access(&here), &format!("/api/sessions/{}", sid(&stolen)))
        .await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT, "{}", ended.body);
    assert_ended(&app, &stolen, &user).await;
    assert_live(&app, &here).await;
    // Again: still 204 (it records the session again for the gateways).
    let again = app
        .delete_as(access(&here), &format!("/api/sessions/{}", sid(&stolen)))
        .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "{}", again.body);

    // Its own session, too.
    let own = app
        .delete_as(access(&here), &format!("/api/sessions/{}", sid(&here)))
        .await;
    assert_eq!(own.status, StatusCode::NO_CONTENT, "{}", own.body);
    assert_ended(&app, &here, &user).await;
}

#[tokio::test]
async fn every_session_is_ended_at_once_all_but_this_one_or_all() {
    let app = spawn_app_with_nats(&[]).await;
    let here = app.register("vera").await;
    let others = [app.login("vera").await, app.login("vera").await];
    let bystander = app.register("walt").await;
    let user = here["user"]["id"].as_str().expect("id").to_owned();

    let reply = app.delete_as(access(&here), "/api/sessions?keep_current=true").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["ended"], 2);
    for ended in &others {
        assert_ended(&app, ended, &user).await;
    }
    assert_live(&app, &here).await;
    assert_live(&app, &bystander).await;
    let listed = app.get("/api/sessions", Some(access(&here))).await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1), "{}", listed.body);

    app.delete_as(access(&here), "/api/sessions?keep_current=maybe")
        .await
        .assert_error(400, "invalid_query");

    // Log out everywhere: this session too.
    let reply = app.delete_as(access(&here), "/api/sessions").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["ended"], 1);
    assert_ended(&app, &here, &user).await;
    assert_live(&app, &bystander).await;
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_often_it_was_refreshed() {
    let app = spawn_app().await;
    let tokens = app.register("xena").await;
    let session = sid(&tokens);
    let set_age = |days: i32| {
        sqlx::query("UPDATE token_families SET created_at = now() - make_interval(days => $2) WHERE id = $1::uuid")
            .bind(session.clone())
            .bind(days)
            .execute(&app.db)
    };

    // 80 days in, refreshed monthly: it still refreshes, but its new token ends with the session, in 10 days.
    set_age(80).await.expect("aged");
    let refreshed = app
        .post("/api/refresh", json!({"refresh_token": refresh_token(&tokens)}))
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    let expires_in_days: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - now())::float8 / 86400 FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(sha256(refresh_token(&refreshed.body)))
    .fetch_one(&app.db)
    .await
    .expect("the new token's row");
    assert!((9.9..=10.0).contains(&expires_in_days), "{expires_in_days} days");

    // 91 days in: refused, although the refresh token itself has not expired.
    set_age(91).await.expect("aged");
    let refused = app
        .post("/api/refresh", json!({"refresh_token": refresh_token(&refreshed.body)}))
        .await;
    refused.assert_error(401, "session_expired");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("90 days")),
        "{}",
        refused.body
    );
    // And it is no longer listed among the user's sessions.
    let listed = app.get("/api/sessions", Some(access(&refreshed.body))).await;
    assert_eq!(listed.body, json!([]));

    // The flag sets it.
    let short = spawn_app_with(&["--refresh-family-max-age", "1h"]).await;
    let tokens = short.register("yuri").await;
    let expires_in_secs: f64 =
        sqlx::query_scalar("SELECT extract(epoch FROM expires_at - now())::float8 FROM refresh_tokens")
            .fetch_one(&short.db)
            .await
            .expect("the token's row");
    assert!(expires_in_secs <= 3600.0, "{expires_in_secs}");
    sqlx::query("UPDATE token_families SET created_at = now() - interval '61 minutes'")
        .execute(&short.db)
        .await
        .expect("aged");
    short
        .post("/api/refresh", json!({"refresh_token": refresh_token(&tokens)}))
        .await
        .assert_error(401, "session_expired");
}

#[tokio::test]
async fn a_spent_token_shown_again_within_the_grace_gets_the_same_successor_and_later_is_reuse() {
    let app = spawn_app_with(&["--refresh-reuse-grace", "3s"]).await;
    let first = app.register("zora").await;
    let spent = refresh_token(&first).to_owned();

    // Two tabs refresh with the same token at once, and a third a moment later: one successor for all.
    let (a, b) = tokio::join!(
        app.post("/api/refresh", json!({"refresh_token": spent})),
        app.post("/api/refresh", json!({"refresh_token": spent})),
    );
    let c = app.post("/api/refresh", json!({"refresh_token": spent})).await;
    for reply in [&a, &b, &c] {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(sid(&reply.body), sid(&first), "one session");
    }
    let successor = refresh_token(&a.body).to_owned();
    assert_ne!(successor, spent);
    assert_eq!(refresh_token(&b.body), successor, "the second successor is the first");
    assert_eq!(refresh_token(&c.body), successor);
    let family_tokens = || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM refresh_tokens WHERE family_id = $1::uuid")
            .bind(sid(&first))
            .fetch_one(&app.db)
    };
    assert_eq!(
        family_tokens().await.expect("count"),
        2,
        "one chain: the spent token and one successor"
    );

    // The chain goes on from the successor.
    let next = app.post("/api/refresh", json!({"refresh_token": successor})).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    assert_eq!(family_tokens().await.expect("count"), 3);

    // Past the grace, either spent token is a copy: the session is revoked, the live token with it.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    app.post("/api/refresh", json!({"refresh_token": successor}))
        .await
        .assert_error(401, "refresh_token_reused");
    app.post("/api/refresh", json!({"refresh_token": refresh_token(&next.body)}))
        .await
        .assert_error(401, "refresh_token_revoked");
    app.post("/api/refresh", json!({"refresh_token": spent}))
        .await
        .assert_error(401, "refresh_token_revoked");
    app.get("/api/rooms", Some(access(&next.body)))
        .await
        .assert_error(401, "token_revoked");
}

#[tokio::test]
async fn the_first_spent_token_of_a_chain_shown_again_late_is_reuse_too() {
    let app = spawn_app_with(&["--refresh-reuse-grace", "2s"]).await;
    let first = app.register("abby").await;
    let spent = refresh_token(&first).to_owned();
    let one = app.post("/api/refresh", json!({"refresh_token": spent})).await;
    let two = app.post("/api/refresh", json!({"refresh_token": spent})).await;
    assert_eq!(refresh_token(&one.body), refresh_token(&two.body));
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    app.post("/api/refresh", json!({"refresh_token": spent}))
        .await
        .assert_error(401, "refresh_token_reused");
    app.post("/api/refresh", json!({"refresh_token": refresh_token(&one.body)}))
        .await
        .assert_error(401, "refresh_token_revoked");
}

fn sha256(text: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).to_vec()
}
