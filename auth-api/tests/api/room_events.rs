//! Room changes made through the API reach the gateways as room events on NATS, after the change is committed.

use std::time::Duration;

use futures::StreamExt;
use natter_proto::bus::RoomEvent;
use natter_proto::subject;

use crate::helpers::{TestApp, access, spawn_app_with_nats};

/// The next room event, with its room id.
async fn next_event(events: &mut async_nats::Subscriber) -> (String, RoomEvent) {
    let msg = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("a room event within 10 s")
        .expect("the subscription is open");
    let room = msg.subject.as_str().rsplit('.').next().expect("a subject").to_owned();
    (room, serde_json::from_slice(&msg.payload).expect("a room event"))
}

async fn is_member(app: &TestApp, room: &str, user: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM memberships WHERE room_id = $1 AND user_id = $2::uuid)")
        .bind(room)
        .bind(user)
        .fetch_one(&app.db)
        .await
        .expect("query")
}

#[tokio::test]
async fn joining_a_private_room_leaving_removing_and_deleting_each_publish_their_event() {
    let app = spawn_app_with_nats(&[]).await;
    let nats = app.nats_client().await;
    let mut events = nats.subscribe(subject::all_room_events()).await.expect("subscribes");
    nats.flush().await.expect("the subscription is in place");

    let owner = app.register("yara").await;
    let leaver = app.register("zeno").await;
    let removed = app.register("abel").await;
    let room = app.create_room(access(&owner), "Events", false).await;
    let room_id = room["id"].as_str().expect("id").to_owned();
    for who in [&leaver, &removed] {
        app.post_as(access(who), &format!("/api/rooms/{room_id}/join")).await;
    }
    let leaver_id = leaver["user"]["id"].as_str().expect("id").to_owned();
    let removed_id = removed["user"]["id"].as_str().expect("id").to_owned();

    app.post_as(access(&leaver), &format!("/api/rooms/{room_id}/leave"))
        .await;
    let left = RoomEvent::MemberLeft {
        user: leaver_id.clone(),
    };
    assert_eq!(next_event(&mut events).await, (room_id.clone(), left));
    assert!(
        !is_member(&app, &room_id, &leaver_id).await,
        "published after the commit"
    );

    let path = format!("/api/rooms/{room_id}/members/{removed_id}/remove");
    let reply = app.post_as(access(&owner), &path).await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    let removal = RoomEvent::MemberRemoved {
        user: removed_id.clone(),
    };
    assert_eq!(next_event(&mut events).await, (room_id.clone(), removal));
    assert!(
        !is_member(&app, &room_id, &removed_id).await,
        "published after the commit"
    );

    // A refused change publishes nothing: the next event is the deletion's.
    app.post_as(access(&leaver), &path)
        .await
        .assert_error(403, "not_room_moderator");
    let reply = app.delete_as(access(&owner), &format!("/api/rooms/{room_id}")).await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    assert_eq!(next_event(&mut events).await, (room_id.clone(), RoomEvent::Deleted));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM rooms WHERE id = $1")
        .bind(&room_id)
        .fetch_one(&app.db)
        .await
        .expect("query");
    assert_eq!(left, 0, "published after the commit");

    // A new member of a private room is announced (gateways may remember refusing them); a public room's is not.
    let private = app.create_room(access(&owner), "Closed", true).await;
    let private_id = private["id"].as_str().expect("id").to_owned();
    let code = private["join_code"].as_str().expect("the owner sees the code");
    let reply = app.join_with_code(access(&leaver), &private_id, code).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.body);
    let joined = RoomEvent::MemberJoined { user: leaver_id };
    assert_eq!(next_event(&mut events).await, (private_id, joined));
}

#[tokio::test]
async fn room_changes_go_through_while_nats_is_down() {
    let mut app = spawn_app_with_nats(&[]).await;
    let owner = app.register("bert").await;
    let member = app.register("cora").await;
    let room = app.create_room(access(&owner), "Outage", false).await;
    let room_id = room["id"].as_str().expect("id").to_owned();
    app.post_as(access(&member), &format!("/api/rooms/{room_id}/join"))
        .await;

    app.nats.as_mut().expect("nats").kill();
    let left = app
        .post_as(access(&member), &format!("/api/rooms/{room_id}/leave"))
        .await;
    assert_eq!(
        left.status.as_u16(),
        204,
        "a lost event does not fail the leave: {}",
        left.body
    );
    let deleted = app.delete_as(access(&owner), &format!("/api/rooms/{room_id}")).await;
    assert_eq!(deleted.status.as_u16(), 204, "{}", deleted.body);
    app.get(&format!("/api/rooms/{room_id}"), Some(access(&owner)))
        .await
        .assert_error(404, "room_not_found");
}

#[tokio::test]
async fn a_leave_that_changes_nothing_publishes_nothing() {
    let app = spawn_app_with_nats(&[]).await;
    let nats = app.nats_client().await;
    let mut events = nats.subscribe(subject::all_room_events()).await.expect("subscribes");
    nats.flush().await.expect("the subscription is in place");
    let owner = app.register("dina").await;
    let stranger = app.register("egon").await;
    let member = app.register("fritz").await;
    let room = app.create_room(access(&owner), "Quiet", false).await;
    let room_id = room["id"].as_str().expect("id").to_owned();
    app.post_as(access(&member), &format!("/api/rooms/{room_id}/join"))
        .await;

    // Not a member: 204 as before, and nothing for the gateways; twice over, for a member who already left.
    let leave = format!("/api/rooms/{room_id}/leave");
    for _ in 0..3 {
        let reply = app.post_as(access(&stranger), &leave).await;
        assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    }
    let reply = app.post_as(access(&member), &leave).await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    let reply = app.post_as(access(&member), &leave).await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    // The one leave that changed something is the only event.
    let member_id = member["user"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        next_event(&mut events).await,
        (room_id.clone(), RoomEvent::MemberLeft { user: member_id })
    );
    let more = tokio::time::timeout(Duration::from_millis(500), events.next()).await;
    assert!(more.is_err(), "only one event: {more:?}");
}
