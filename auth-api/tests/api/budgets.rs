//! Per-user budgets on authenticated routes: one user flooding a route is answered 429 `rate_limited` with a
//! `Retry-After`, counted in a metric, while other users are served as usual.

use std::time::Duration;

use futures::StreamExt;
use natter_test_support::metrics_page::value;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Reply, TestApp, access, spawn_app, spawn_app_with, spawn_app_with_nats};

/// Asserts a 429 in the API's error shape with a whole number of seconds to wait, at least one.
#[track_caller]
fn assert_limited(reply: &Reply) -> u64 {
    reply.assert_error(429, "rate_limited");
    let wait: u64 = reply.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds");
    assert!(wait >= 1, "{wait}");
    wait
}

async fn refused(app: &TestApp, limit: &str) -> f64 {
    let page = app.metrics_text().await;
    value(&page, &format!("natter_api_rate_limited_total{{limit=\"{limit}\"}}")).expect("registered at start-up")
}

#[tokio::test]
async fn a_leave_flood_is_answered_429_publishes_nothing_and_others_are_served() {
    let app = spawn_app_with_nats(&[]).await;
    let owner = app.register("olga").await;
    let flooder = app.post("/api/guest", json!({"username": "flood"})).await.body;
    let bystander = app.register("bea").await;
    let room = app.create_room(access(&owner), "Lobby", false).await;
    let room_id = room["id"].as_str().expect("id").to_owned();
    app.post_as(access(&bystander), &format!("/api/rooms/{room_id}/join"))
        .await;
    let nats = app.nats_client().await;
    let mut events = nats
        .subscribe(natter_proto::subject::room_events(
            &natter_proto::RoomId::parse(&room_id).expect("room id"),
        ))
        .await
        .expect("subscribes");
    nats.flush().await.expect("subscribed");
    let before = refused(&app, "user_membership_changes").await;

    // The default budget: 120 membership changes a minute, at once.
    let path = format!("/api/rooms/{room_id}/leave");
    let (mut left, mut limited) = (0, 0);
    let started = std::time::Instant::now();
    for _ in 0..150 {
        let reply = app.post_as(access(&flooder), &path).await;
        if reply.status == StatusCode::NO_CONTENT {
            left += 1;
        } else {
            assert_limited(&reply);
            limited += 1;
        }
    }
    // Two a second come back meanwhile.
    let refilled = (started.elapsed().as_secs_f64() * 2.0).ceil() as u32;
    assert!((120..=120 + refilled).contains(&left), "{left} leaves answered 204");
    assert!(limited > 0);
    assert_eq!(left + limited, 150);
    assert!(refused(&app, "user_membership_changes").await >= before + f64::from(limited));

    // Leaving a room one is not in changes nothing, and told the gateways nothing.
    let quiet = tokio::time::timeout(Duration::from_millis(500), events.next()).await;
    assert!(quiet.is_err(), "a leave that changed nothing published {quiet:?}");

    // Another user is served as usual, and a real leave is published.
    assert_eq!(
        app.get("/api/rooms", Some(access(&bystander))).await.status,
        StatusCode::OK
    );
    let reply = app.post_as(access(&bystander), &path).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("the real leave's event")
        .expect("open");
    let event: natter_proto::bus::RoomEvent = serde_json::from_slice(&event.payload).expect("an event");
    assert_eq!(
        event,
        natter_proto::bus::RoomEvent::MemberLeft {
            user: bystander["user"]["id"].as_str().expect("id").to_owned()
        }
    );
}

#[tokio::test]
async fn a_room_creation_flood_is_answered_429_and_others_create_rooms() {
    let app = spawn_app().await;
    let flooder = app.post("/api/guest", json!({"username": "builder"})).await.body;
    let other = app.post("/api/guest", json!({"username": "calm"})).await.body;
    let before = refused(&app, "user_room_creations").await;

    // The default budget: 30 rooms an hour, at once.
    let mut created = 0;
    let mut last = None;
    for i in 0..40 {
        let reply = app
            .call(
                Method::POST,
                "/api/rooms",
                Some(access(&flooder)),
                Some(json!({"name": format!("spam {i}")})),
            )
            .await;
        if reply.status == StatusCode::CREATED {
            created += 1;
        } else {
            last = Some(reply);
        }
    }
    assert_eq!(created, 30);
    let wait = assert_limited(last.as_ref().expect("refusals"));
    assert!((100..=120).contains(&wait), "one room back every 2 minutes: {wait}");
    assert_eq!(refused(&app, "user_room_creations").await, before + 10.0);
    let rooms: i64 = sqlx::query_scalar("SELECT count(*) FROM rooms")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(rooms, 30, "a refused creation touched nothing");

    app.create_room(access(&other), "Mine", false).await;
    // The flooder may still do everything else.
    assert_eq!(
        app.get("/api/rooms", Some(access(&flooder))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_authenticated_route_spends_from_one_budget_per_user() {
    let app = spawn_app_with(&["--user-requests-per-minute", "6"]).await;
    let user = app.register("dora").await;
    let other = app.register("emil").await;
    let room = app.create_room(access(&other), "Open", false).await;
    let id = room["id"].as_str().expect("id");
    let before = refused(&app, "user_requests").await;

    // Six requests over six routes, then every route is refused until a token is back (10 s).
    let served = [
        app.get("/api/rooms", Some(access(&user))).await,
        app.get(&format!("/api/rooms/{id}"), Some(access(&user))).await,
        app.get(&format!("/api/rooms/{id}/members"), Some(access(&user))).await,
        app.get(&format!("/api/rooms/{id}/messages"), Some(access(&user))).await,
        app.get("/api/sessions", Some(access(&user))).await,
        app.post_as(access(&user), &format!("/api/rooms/{id}/join")).await,
    ];
    for reply in &served {
        assert!(reply.status.is_success(), "{}: {}", reply.status, reply.body);
    }
    let limited = [
        app.get("/api/rooms", Some(access(&user))).await,
        app.get(&format!("/api/rooms/{id}"), Some(access(&user))).await,
        app.call(
            Method::PUT,
            &format!("/api/rooms/{id}/read"),
            Some(access(&user)),
            Some(json!({"seq": 0})),
        )
        .await,
        app.post_as(access(&user), &format!("/api/rooms/{id}/leave")).await,
        app.delete_as(access(&user), "/api/sessions?keep_current=true").await,
        app.call(
            Method::POST,
            "/api/account/password",
            Some(access(&user)),
            Some(json!({"current_password": "correct horse", "new_password": "battery staple"})),
        )
        .await,
    ];
    for reply in &limited {
        assert!(assert_limited(reply) <= 10);
    }
    assert_eq!(refused(&app, "user_requests").await, before + 6.0);
    // A fresh sign-in of the same user shares the budget: it is the user's, not the session's.
    let again = app.login("dora").await;
    assert_limited(&app.get("/api/rooms", Some(access(&again))).await);
    // Another user is served.
    assert_eq!(app.get("/api/rooms", Some(access(&other))).await.status, StatusCode::OK);
    // Unauthenticated routes are not this budget's.
    assert_eq!(app.get("/.well-known/jwks.json", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn room_listings_have_a_budget_of_their_own() {
    let app = spawn_app_with(&["--user-room-listings-per-minute", "3"]).await;
    let user = app.register("finn").await;
    let room = app.create_room(access(&user), "Mine", false).await;
    for _ in 0..3 {
        assert_eq!(app.get("/api/rooms", Some(access(&user))).await.status, StatusCode::OK);
    }
    let wait = assert_limited(&app.get("/api/rooms", Some(access(&user))).await);
    assert!(wait <= 20, "{wait}");
    let one = app
        .get(
            &format!("/api/rooms/{}", room["id"].as_str().expect("id")),
            Some(access(&user)),
        )
        .await;
    assert_eq!(one.status, StatusCode::OK, "other reads go on");
}

#[tokio::test]
async fn load_test_guests_are_spared_only_while_the_mode_is_on() {
    const KEY: &str = "budget-test-key-0123456789";
    let app = spawn_app_with(&["--load-test-key", KEY, "--user-requests-per-minute", "2"]).await;
    let minted = app
        .http
        .post(format!("{}/api/load-test/guests", app.base))
        .bearer_auth(KEY)
        .json(&json!({"prefix": "lt", "count": 1}))
        .send()
        .await
        .expect("request");
    assert_eq!(minted.status(), StatusCode::CREATED);
    let body: serde_json::Value = minted.json().await.expect("json");
    let token = body["users"][0]["access_token"].as_str().expect("token").to_owned();
    for _ in 0..10 {
        assert_eq!(app.get("/api/rooms", Some(&token)).await.status, StatusCode::OK);
    }
    // An ordinary user of the same server is held to the budget.
    let user = app.register("gus").await;
    for _ in 0..2 {
        assert_eq!(app.get("/api/rooms", Some(access(&user))).await.status, StatusCode::OK);
    }
    assert_limited(&app.get("/api/rooms", Some(access(&user))).await);

    // The same token on a server without the mode is an ordinary user's (same database and keys).
    let plain = crate::helpers::spawn_app_on(app.db_url.clone(), &["--user-requests-per-minute", "2"]).await;
    for _ in 0..2 {
        assert_eq!(plain.get("/api/rooms", Some(&token)).await.status, StatusCode::OK);
    }
    assert_limited(&plain.get("/api/rooms", Some(&token)).await);
}
