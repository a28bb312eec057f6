//! Direct and group conversations: the same pair always gets the same conversation, nobody else can read, join,
//! list or search one, blocking closes a direct conversation to both, and a conversation has no owner's powers.

use natter_proto::bus::{RoomAccess, RoomAccessRequest, RoomEvent};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, access, spawn_app, spawn_app_with, spawn_app_with_nats};

fn id(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_owned()
}

fn user_id(tokens: &Value) -> String {
    id(&tokens["user"])
}

async fn direct(app: &TestApp, who: &Value, with: &str) -> Reply {
    app.call(
        Method::POST,
        "/api/conversations/direct",
        Some(access(who)),
        Some(json!({"user": with})),
    )
    .await
}

async fn group(app: &TestApp, who: &Value, body: Value) -> Reply {
    app.call(Method::POST, "/api/conversations/group", Some(access(who)), Some(body))
        .await
}

async fn ask_access(app: &TestApp, room: &str, user: &str) -> RoomAccess {
    let request = RoomAccessRequest {
        room: natter_proto::RoomId::parse(room).expect("room id"),
        user: user.to_owned(),
        owner: false,
        reaction: None,
    };
    natter_auth_api::fleet::room_access(&app.db, &request)
        .await
        .expect("answered")
}

fn listed(reply: &Reply) -> Vec<(String, String)> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply
        .body
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| (id(r), r["kind"].as_str().expect("kind").to_owned()))
        .collect()
}

#[tokio::test]
async fn the_same_two_people_always_get_the_same_conversation_and_nobody_else_can_reach_it() {
    let app = spawn_app().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let eve = app.register("eve").await;

    let made = direct(&app, &ann, "BOB").await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let conversation = id(&made.body);
    assert_eq!(made.body["kind"], "direct");
    assert_eq!(made.body["name"], "bob", "named for the other person");
    assert_eq!(made.body["peer"]["name"], "bob");
    assert_eq!(made.body["private"], true);
    assert!(
        made.body.get("join_code").is_none(),
        "no invite code applies: {}",
        made.body
    );
    // From the other side: the same conversation, named for ann.
    let found = direct(&app, &bob, "ann").await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(id(&found.body), conversation);
    assert_eq!(found.body["name"], "ann");
    assert_eq!(found.body["member_count"], 2);
    assert_eq!(id(&direct(&app, &ann, "bob").await.body), conversation);
    assert!(
        listed(&app.get("/api/rooms", Some(access(&bob))).await).contains(&(conversation.clone(), "direct".into()))
    );

    // A third person: not listed, not readable, not joinable, not searchable, not guessable into.
    assert!(listed(&app.get("/api/rooms", Some(access(&eve))).await).is_empty());
    for path in [
        format!("/api/rooms/{conversation}"),
        format!("/api/rooms/{conversation}/messages"),
        format!("/api/rooms/{conversation}/members"),
        format!("/api/search?q=hello&room={conversation}"),
    ] {
        app.get(&path, Some(access(&eve)))
            .await
            .assert_error(403, "room_private");
    }
    app.post_as(access(&eve), &format!("/api/rooms/{conversation}/join"))
        .await
        .assert_error(403, "room_private");
    assert_eq!(
        ask_access(&app, &conversation, &user_id(&eve)).await,
        RoomAccess::Denied
    );
    assert_eq!(
        ask_access(&app, &conversation, &user_id(&ann)).await,
        RoomAccess::Allowed
    );

    // Not with oneself, not with no one; and no owner's powers: no code, no deletion, no bans, no leaving.
    direct(&app, &ann, "ann")
        .await
        .assert_error(422, "cannot_message_yourself");
    direct(&app, &ann, "nobody").await.assert_error(404, "user_not_found");
    direct(&app, &ann, "no such name!")
        .await
        .assert_error(404, "user_not_found");
    app.post_as(access(&ann), &format!("/api/rooms/{conversation}/join-code"))
        .await
        .assert_error(409, "not_a_room");
    app.delete_as(access(&ann), &format!("/api/rooms/{conversation}"))
        .await
        .assert_error(409, "not_a_room");
    app.post_as(
        access(&ann),
        &format!("/api/rooms/{conversation}/members/{}/ban", user_id(&bob)),
    )
    .await
    .assert_error(409, "not_a_room");
    app.post_as(access(&bob), &format!("/api/rooms/{conversation}/leave"))
        .await
        .assert_error(409, "direct_cannot_be_left");
}

#[tokio::test]
async fn a_block_closes_the_direct_conversation_to_both_until_it_is_lifted() {
    let app = spawn_app_with_nats(&[]).await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let conversation = id(&direct(&app, &ann, "bob").await.body);
    let nats = app.nats_client().await;
    let mut events = nats
        .subscribe(natter_proto::subject::all_room_events())
        .await
        .expect("subscribes");
    nats.flush().await.expect("subscribed");

    let blocked = app
        .call(
            Method::PUT,
            &format!("/api/blocks/{}", user_id(&bob)),
            Some(access(&ann)),
            None,
        )
        .await;
    assert_eq!(blocked.status, StatusCode::NO_CONTENT, "{}", blocked.body);
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), futures::StreamExt::next(&mut events))
        .await
        .expect("an event in time")
        .expect("an event");
    assert_eq!(event.subject.as_str(), format!("chat.v1.events.room.{conversation}"));
    let event: RoomEvent = serde_json::from_slice(&event.payload).expect("a room event");
    assert_eq!(event, RoomEvent::Blocked);

    // Neither can start it again or take part live; each is told clearly why.
    let refused = direct(&app, &bob, "ann").await;
    refused.assert_error(403, "blocked");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("ann does not take messages")
    );
    let own = direct(&app, &ann, "bob").await;
    own.assert_error(403, "blocked");
    assert!(
        own.body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("you blocked bob")
    );
    for who in [&ann, &bob] {
        assert_eq!(
            ask_access(&app, &conversation, &user_id(who)).await,
            RoomAccess::Blocked
        );
    }
    // Nor in a group with the one who blocked.
    let cyd = app.register("cyd").await;
    group(&app, &bob, json!({"members": ["ann", "cyd"]}))
        .await
        .assert_error(403, "blocked");
    let _ = cyd;
    // What was said stays readable to both.
    let history = app
        .get(&format!("/api/rooms/{conversation}/messages"), Some(access(&bob)))
        .await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);

    let blocks = app.get("/api/blocks", Some(access(&ann))).await;
    assert_eq!(blocks.body[0]["name"], "bob", "{}", blocks.body);
    let lifted = app
        .call(
            Method::DELETE,
            &format!("/api/blocks/{}", user_id(&bob)),
            Some(access(&ann)),
            None,
        )
        .await;
    assert_eq!(lifted.status, StatusCode::NO_CONTENT, "{}", lifted.body);
    app.call(
        Method::DELETE,
        &format!("/api/blocks/{}", user_id(&bob)),
        Some(access(&ann)),
        None,
    )
    .await
    .assert_error(404, "block_not_found");
    assert_eq!(direct(&app, &bob, "ann").await.status, StatusCode::OK);
    assert_eq!(
        ask_access(&app, &conversation, &user_id(&bob)).await,
        RoomAccess::Allowed
    );

    app.call(
        Method::PUT,
        &format!("/api/blocks/{}", user_id(&ann)),
        Some(access(&ann)),
        None,
    )
    .await
    .assert_error(422, "cannot_block_yourself");
    app.call(
        Method::PUT,
        &format!("/api/blocks/{}", uuid::Uuid::new_v4()),
        Some(access(&ann)),
        None,
    )
    .await
    .assert_error(404, "user_not_found");
    app.call(Method::PUT, "/api/blocks/not-a-uuid", Some(access(&ann)), None)
        .await
        .assert_error(400, "invalid_user_id");
}

#[tokio::test]
async fn a_group_is_three_to_eight_people_who_may_each_leave_it() {
    let app = spawn_app().await;
    let names = ["ann", "bob", "cyd", "dee", "eddy", "flo", "gus", "hal", "ida"];
    let mut people = Vec::new();
    for name in names {
        people.push(app.register(name).await);
    }
    let ann = &people[0];
    for members in [
        json!(["bob"]),
        json!(names[1..9]),
        json!(["bob", "BOB"]),
        json!(["bob", "ann"]),
    ] {
        group(&app, ann, json!({"members": members}))
            .await
            .assert_error(422, "invalid_members");
    }
    group(&app, ann, json!({"members": ["bob", "nobody"]}))
        .await
        .assert_error(404, "user_not_found");
    group(&app, ann, json!({"members": ["bob", "cyd"], "name": " "}))
        .await
        .assert_error(422, "invalid_room_name");

    let made = group(&app, ann, json!({"members": names[1..8]})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!(made.body["kind"], "group");
    assert_eq!(made.body["member_count"], 8);
    assert_eq!(made.body["name"], "ann, bob, cyd, dee, eddy, flo, gus, hal");
    let small = group(&app, ann, json!({"members": ["bob", "cyd"], "name": "Lunch"})).await;
    assert_eq!(small.body["name"], "Lunch");
    let lunch = id(&small.body);
    // Each member has it at once; the ninth person cannot see it.
    assert!(listed(&app.get("/api/rooms", Some(access(&people[2]))).await).contains(&(lunch.clone(), "group".into())));
    app.get(&format!("/api/rooms/{lunch}"), Some(access(&people[8])))
        .await
        .assert_error(403, "room_private");
    // Anyone leaves, its maker too; nobody joins.
    for who in [&people[1], ann] {
        let left = app.post_as(access(who), &format!("/api/rooms/{lunch}/leave")).await;
        assert_eq!(left.status, StatusCode::NO_CONTENT, "{}", left.body);
    }
    app.post_as(access(&people[1]), &format!("/api/rooms/{lunch}/join"))
        .await
        .assert_error(403, "room_private");
    let rest = app
        .get(&format!("/api/rooms/{lunch}/members"), Some(access(&people[2])))
        .await;
    assert_eq!(rest.body.as_array().expect("members").len(), 1, "{}", rest.body);
}

#[tokio::test]
async fn new_conversations_spend_their_own_budget_and_an_existing_one_costs_nothing() {
    let app = spawn_app_with(&["--user-conversations-per-hour", "2"]).await;
    let ann = app.register("ann").await;
    for name in ["bob", "cyd", "dee"] {
        app.register(name).await;
    }
    assert_eq!(direct(&app, &ann, "bob").await.status, StatusCode::CREATED);
    assert_eq!(direct(&app, &ann, "cyd").await.status, StatusCode::CREATED);
    direct(&app, &ann, "dee").await.assert_error(429, "rate_limited");
    group(&app, &ann, json!({"members": ["bob", "cyd"]}))
        .await
        .assert_error(429, "rate_limited");
    assert_eq!(
        direct(&app, &ann, "bob").await.status,
        StatusCode::OK,
        "getting one made costs nothing"
    );
}
