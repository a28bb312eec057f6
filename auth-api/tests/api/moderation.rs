//! Moderation that sticks: bans keep a user out of a room (joins, join codes, reads, listings) until lifted, and
//! the owner's moderators remove and ban members but never the owner or each other.

use natter_proto::bus::{RoomAccess, RoomAccessRequest, RoomEvent};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, access, spawn_app, spawn_app_with_nats};

fn id(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_owned()
}

fn user_id(tokens: &Value) -> String {
    id(&tokens["user"])
}

async fn ask_access(app: &TestApp, room: &str, user: &str, owner: bool) -> RoomAccess {
    let request = RoomAccessRequest {
        room: natter_proto::RoomId::parse(room).expect("room id"),
        user: user.to_owned(),
        owner,
        reaction: None,
    };
    natter_auth_api::fleet::room_access(&app.db, &request)
        .await
        .expect("answered")
}

#[tokio::test]
async fn a_banned_user_cannot_join_read_see_or_use_the_code_until_the_ban_is_lifted() {
    let app = spawn_app_with_nats(&[]).await;
    let owner = app.register("olga").await;
    let pest = app.register("pest").await;
    let other = app.register("otto").await;
    let open = app.create_room(access(&owner), "Open", false).await;
    let secret = app.create_room(access(&owner), "Secret", true).await;
    let (open_id, secret_id) = (id(&open), id(&secret));
    let code = secret["join_code"].as_str().expect("code").to_owned();
    app.post_as(access(&pest), &format!("/api/rooms/{open_id}/join")).await;
    app.join_with_code(access(&pest), &secret_id, &code).await;
    // Nobody banned: the public room is open to all alike.
    assert_eq!(
        ask_access(&app, &open_id, &user_id(&other), false).await,
        RoomAccess::Public
    );

    let nats = app.nats_client().await;
    let mut events = nats
        .subscribe(natter_proto::subject::all_room_events())
        .await
        .expect("subscribes");
    nats.flush().await.expect("subscribed");
    for room in [&open_id, &secret_id] {
        let banned = app
            .post_as(
                access(&owner),
                &format!("/api/rooms/{room}/members/{}/ban", user_id(&pest)),
            )
            .await;
        assert_eq!(banned.status, StatusCode::NO_CONTENT, "{}", banned.body);
        let event = tokio::time::timeout(std::time::Duration::from_secs(5), futures::StreamExt::next(&mut events))
            .await
            .expect("an event in time")
            .expect("an event");
        let event: RoomEvent = serde_json::from_slice(&event.payload).expect("a room event");
        assert_eq!(event, RoomEvent::MemberBanned { user: user_id(&pest) });
    }

    // Out of both rooms, and kept out: no join, not with the code, no history, no member list, not listed.
    for room in [&open_id, &secret_id] {
        app.post_as(access(&pest), &format!("/api/rooms/{room}/join"))
            .await
            .assert_error(403, "banned");
        assert_eq!(ask_access(&app, room, &user_id(&pest), false).await, RoomAccess::Banned);
    }
    app.join_with_code(access(&pest), &secret_id, &code)
        .await
        .assert_error(403, "banned");
    app.get(&format!("/api/rooms/{open_id}/messages"), Some(access(&pest)))
        .await
        .assert_error(403, "banned");
    app.get(&format!("/api/rooms/{open_id}/members"), Some(access(&pest)))
        .await
        .assert_error(403, "banned");
    let listed = app.get("/api/rooms", Some(access(&pest))).await;
    assert!(listed.body.as_array().expect("rooms").is_empty(), "{}", listed.body);
    // Others are let in one by one now: a gateway may no longer take the room as open to all.
    assert_eq!(
        ask_access(&app, &open_id, &user_id(&other), false).await,
        RoomAccess::Allowed
    );

    // The ban list, then the ban lifted: the public room is open again, the private one needs its code again.
    let bans = app
        .get(&format!("/api/rooms/{open_id}/bans"), Some(access(&owner)))
        .await;
    assert_eq!(bans.status, StatusCode::OK, "{}", bans.body);
    assert_eq!(bans.body[0]["name"], "pest");
    assert_eq!(bans.body[0]["banned_by"], "olga");
    app.get(&format!("/api/rooms/{open_id}/bans"), Some(access(&other)))
        .await
        .assert_error(403, "not_room_moderator");
    for room in [&open_id, &secret_id] {
        let lifted = app
            .delete_as(access(&owner), &format!("/api/rooms/{room}/bans/{}", user_id(&pest)))
            .await;
        assert_eq!(lifted.status, StatusCode::NO_CONTENT, "{}", lifted.body);
    }
    app.delete_as(access(&owner), &format!("/api/rooms/{open_id}/bans/{}", user_id(&pest)))
        .await
        .assert_error(404, "ban_not_found");
    assert_eq!(
        ask_access(&app, &open_id, &user_id(&other), false).await,
        RoomAccess::Public
    );
    let back = app.post_as(access(&pest), &format!("/api/rooms/{open_id}/join")).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    app.post_as(access(&pest), &format!("/api/rooms/{secret_id}/join"))
        .await
        .assert_error(403, "invalid_join_code");
}

#[tokio::test]
async fn moderators_remove_and_ban_members_but_not_the_owner_or_each_other() {
    let app = spawn_app().await;
    let owner = app.register("olga").await;
    let moderator = app.register("mona").await;
    let second = app.register("mads").await;
    let member = app.register("mia").await;
    let stranger = app.register("sten").await;
    let room = id(&app.create_room(access(&owner), "Hall", false).await);
    for who in [&moderator, &second, &member] {
        app.post_as(access(who), &format!("/api/rooms/{room}/join")).await;
    }
    let role = |who: &Value| format!("/api/rooms/{room}/members/{}/role", user_id(who));
    let set = |token: String, path: String, role: &'static str| {
        let app = &app;
        async move {
            app.call(Method::PUT, &path, Some(&token), Some(json!({"role": role})))
                .await
        }
    };

    // Only the owner appoints, and only members.
    set(access(&moderator).to_owned(), role(&second), "moderator")
        .await
        .assert_error(403, "not_room_owner");
    for who in [&moderator, &second] {
        let made = set(access(&owner).to_owned(), role(who), "moderator").await;
        assert_eq!(made.status, StatusCode::OK, "{}", made.body);
        assert_eq!(made.body["role"], "moderator");
    }
    set(access(&owner).to_owned(), role(&owner), "member")
        .await
        .assert_error(409, "owner_role_fixed");
    set(access(&owner).to_owned(), role(&stranger), "moderator")
        .await
        .assert_error(404, "member_not_found");
    set(access(&owner).to_owned(), role(&member), "admin")
        .await
        .assert_error(422, "invalid_role");
    let mine = app.get(&format!("/api/rooms/{room}"), Some(access(&moderator))).await;
    assert_eq!(mine.body["role"], "moderator", "the room says what the caller is");
    // A moderator may delete others' messages: the gateways' question answers so.
    assert_eq!(
        ask_access(&app, &room, &user_id(&moderator), true).await,
        RoomAccess::Owner
    );
    assert_eq!(
        ask_access(&app, &room, &user_id(&member), true).await,
        RoomAccess::Public
    );

    let path = |who: &Value, act: &str| format!("/api/rooms/{room}/members/{}/{act}", user_id(who));
    // Never the owner, never another moderator, never oneself.
    app.post_as(access(&moderator), &path(&owner, "ban"))
        .await
        .assert_error(409, "owner_cannot_be_banned");
    app.post_as(access(&moderator), &path(&owner, "remove"))
        .await
        .assert_error(409, "owner_cannot_be_removed");
    app.post_as(access(&moderator), &path(&second, "ban"))
        .await
        .assert_error(403, "not_room_owner");
    app.post_as(access(&moderator), &path(&moderator, "ban"))
        .await
        .assert_error(409, "cannot_moderate_yourself");
    // A member is not a moderator.
    app.post_as(access(&member), &path(&stranger, "ban"))
        .await
        .assert_error(403, "not_room_moderator");
    // Members and strangers: yes (a stranger banned before ever joining stays out).
    for who in [&member, &stranger] {
        let banned = app.post_as(access(&moderator), &path(who, "ban")).await;
        assert_eq!(banned.status, StatusCode::NO_CONTENT, "{}", banned.body);
        app.post_as(access(who), &format!("/api/rooms/{room}/join"))
            .await
            .assert_error(403, "banned");
    }
    // Banning twice changes nothing; banning no one is a clear 404.
    let again = app.post_as(access(&moderator), &path(&member, "ban")).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "{}", again.body);
    app.post_as(
        access(&moderator),
        &format!("/api/rooms/{room}/members/{}/ban", uuid::Uuid::new_v4()),
    )
    .await
    .assert_error(404, "user_not_found");

    // The owner takes a moderator's role back: from then on a member like any other.
    let demoted = set(access(&owner).to_owned(), role(&second), "member").await;
    assert_eq!(demoted.body["role"], "member");
    let removed = app.post_as(access(&moderator), &path(&second, "remove")).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
}
