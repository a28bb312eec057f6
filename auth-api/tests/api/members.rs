//! The owner's moderation: removing a member from a room, and who may not.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, access, spawn_app};

/// The names in a room's member list, as `token`'s holder sees it.
async fn member_names(app: &TestApp, token: &str, room: &str) -> Vec<String> {
    let reply = app.get(&format!("/api/rooms/{room}/members"), Some(token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply
        .body
        .as_array()
        .expect("an array")
        .iter()
        .map(|m| m["name"].as_str().expect("a name").to_owned())
        .collect()
}

fn id(value: &Value) -> &str {
    value["id"].as_str().expect("an id")
}

#[tokio::test]
async fn the_owner_removes_a_member_who_then_cannot_read_a_private_room() {
    let app = spawn_app().await;
    let owner = app.register("sven").await;
    let member = app.register("tilda").await;
    let room = app.create_room(access(&owner), "Backroom", true).await;
    let room_id = id(&room);
    let code = room["join_code"].as_str().expect("the owner sees the join code");
    let joined = app.join_with_code(access(&member), room_id, code).await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    let history = format!("/api/rooms/{room_id}/messages");
    assert_eq!(app.get(&history, Some(access(&member))).await.status, StatusCode::OK);
    assert_eq!(member_names(&app, access(&owner), room_id).await, ["sven", "tilda"]);

    let removed = app
        .post_as(
            access(&owner),
            &format!("/api/rooms/{room_id}/members/{}/remove", id(&member["user"])),
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);

    assert_eq!(member_names(&app, access(&owner), room_id).await, ["sven"]);
    app.get(&history, Some(access(&member)))
        .await
        .assert_error(403, "room_private");
    app.get(&format!("/api/rooms/{room_id}"), Some(access(&member)))
        .await
        .assert_error(403, "room_private");
    // Removing them again finds no member.
    app.post_as(
        access(&owner),
        &format!("/api/rooms/{room_id}/members/{}/remove", id(&member["user"])),
    )
    .await
    .assert_error(404, "member_not_found");
}

#[tokio::test]
async fn only_the_owner_or_a_moderator_removes_and_not_the_owner_nor_a_stranger() {
    let app = spawn_app().await;
    let owner = app.register("ulla").await;
    let member = app.register("viggo").await;
    let other = app.register("wenke").await;
    let room = app.create_room(access(&owner), "Commons", false).await;
    let room_id = id(&room);
    for who in [&member, &other] {
        let joined = app.post_as(access(who), &format!("/api/rooms/{room_id}/join")).await;
        assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    }
    let remove = |user: &str| format!("/api/rooms/{room_id}/members/{user}/remove");

    app.post_as(access(&member), &remove(id(&other["user"])))
        .await
        .assert_error(403, "not_room_moderator");
    app.post_as(access(&member), &remove(id(&owner["user"])))
        .await
        .assert_error(403, "not_room_moderator");
    app.post_as(access(&owner), &remove(id(&owner["user"])))
        .await
        .assert_error(409, "owner_cannot_be_removed");
    app.post_as(access(&owner), &remove(&uuid::Uuid::new_v4().to_string()))
        .await
        .assert_error(404, "member_not_found");
    let stranger = app.register("xaver").await;
    app.post_as(access(&owner), &remove(id(&stranger["user"])))
        .await
        .assert_error(404, "member_not_found");
    app.post_as(access(&owner), &remove("not-a-uuid"))
        .await
        .assert_error(400, "invalid_user_id");
    app.post_as(
        access(&owner),
        &format!("/api/rooms/nosuchroom/members/{}/remove", id(&member["user"])),
    )
    .await
    .assert_error(404, "room_not_found");
    app.post_as(
        access(&owner),
        &format!("/api/rooms/bad.room/members/{}/remove", id(&member["user"])),
    )
    .await
    .assert_error(400, "invalid_room_id");
    assert_eq!(
        member_names(&app, access(&owner), room_id).await,
        ["ulla", "viggo", "wenke"],
        "no refused removal removed anyone"
    );

    // Removed is not banned: a member removed from a public room can join it again.
    let removed = app.post_as(access(&owner), &remove(id(&member["user"]))).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    let back = app
        .post_as(access(&member), &format!("/api/rooms/{room_id}/join"))
        .await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert_eq!(back.body["joined"], true);
}
