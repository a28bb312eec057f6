//! What reaches sockets already open: a room deleted, a member who left or was removed, a session revoked, and a
//! NATS server that freezes (readiness, presence healing after it).

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Client, Stack, WAIT, refused_status, request};

/// Registers `name` (so it can log in again: a second session) and returns the token response.
async fn register(stack: &Stack, name: &str) -> serde_json::Value {
    let (status, tokens) = stack
        .post_with(
            "/api/register",
            None,
            json!({"username": name, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, 201, "{tokens}");
    tokens
}

fn access(tokens: &serde_json::Value) -> String {
    tokens["access_token"].as_str().expect("access token").to_owned()
}

/// A private room `owner` made, which `member` joined with its code.
async fn private_room_with(stack: &Stack, owner: &str, member: &str) -> String {
    let room = stack.room(owner, true).await;
    let info = stack.get_with(&format!("/api/rooms/{room}"), owner).await;
    let code = info["join_code"].as_str().expect("the owner sees the join code");
    let (status, _) = stack
        .post_with(&format!("/api/rooms/{room}/join"), Some(member), json!({"code": code}))
        .await;
    assert_eq!(status, 200);
    room
}

/// Sends until acked, again after each `overloaded`; returns the acked seq.
async fn resend_until_acked(client: &mut Client, room: &str, id: &str, body: &str) -> u64 {
    for _ in 0..50 {
        client
            .send(json!({"type": "send", "room": room, "id": id, "body": body}))
            .await;
        loop {
            let frame = client.recv().await;
            match frame["type"].as_str() {
                Some("ack") if frame["id"] == id => return frame["seq"].as_u64().expect("seq"),
                Some("error") if frame["code"] == "overloaded" && frame["ref"] == id => break,
                Some("error") => panic!("refused: {frame}"),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{id} was never acked");
}

/// Reads presence frames until one says `user` joined.
async fn seen_again(client: &mut Client, user: &str) {
    loop {
        let presence = client.recv_type("presence").await;
        if presence["joined"]
            .as_array()
            .is_some_and(|j| j.iter().any(|u| u["id"] == user))
        {
            return;
        }
    }
}

#[tokio::test]
async fn a_deleted_room_takes_its_sockets_out_and_takes_no_more_sends() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (owner, _) = stack.user("olga").await;
    let (guest, _) = stack.user("gus").await;
    let room = stack.room(&owner, false).await;
    let mut olga = Client::connect(&gw, &owner).await;
    let mut gus = Client::connect(&gw, &guest).await;
    olga.join(&room, None).await;
    gus.join(&room, None).await;
    gus.say(&room, "before", "still here").await;

    assert_eq!(stack.delete_with(&format!("/api/rooms/{room}"), &owner).await, 204);
    for client in [&mut olga, &mut gus] {
        let left = client.recv_type("left").await;
        assert_eq!(left, json!({"type": "left", "room": room, "reason": "room_deleted"}));
    }
    gus.send(json!({"type": "send", "room": room, "id": "after", "body": "into the void"}))
        .await;
    let refused = gus.recv_type("error").await;
    assert_eq!(refused["code"], "not_joined", "{refused}");
    assert!(gus.queued("ack").is_empty(), "no send is acked after the delete");
    gus.send(json!({"type": "join", "room": room})).await;
    let refused = gus.recv_type("error").await;
    assert_eq!(refused["code"], "room_not_found", "{refused}");
    let page = gw.metrics().await;
    assert_eq!(
        natter_test_support::metrics_page::value(&page, "natter_gateway_room_evictions_total{reason=\"room_deleted\"}"),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_member_who_leaves_a_private_room_through_the_api_is_taken_out_and_cannot_rejoin() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (owner, _) = stack.user("pam").await;
    let (member, _) = stack.user("max").await;
    let room = private_room_with(&stack, &owner, &member).await;
    let mut max = Client::connect(&gw, &member).await;
    max.join(&room, None).await;

    let (status, _) = stack
        .post_with(&format!("/api/rooms/{room}/leave"), Some(&member), json!({}))
        .await;
    assert_eq!(status, 204);
    let left = max.recv_type("left").await;
    assert_eq!(left, json!({"type": "left", "room": room, "reason": "member_left"}));
    // The gateway trusted this member for a while; the event made it forget, so the rejoin is asked about.
    max.send(json!({"type": "join", "room": room})).await;
    let refused = max.recv_type("error").await;
    assert_eq!(refused["code"], "room_private", "{refused}");
}

#[tokio::test]
async fn logout_closes_that_sessions_sockets_with_4003_and_its_token_is_refused_while_others_go_on() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let first = register(&stack, "lena").await;
    let (status, second) = stack
        .post_with(
            "/api/login",
            None,
            json!({"username": "lena", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    let room = stack.room(&access(&first), false).await;
    let mut laptop = Client::connect(&gw, &access(&first)).await;
    let mut phone = Client::connect(&gw, &access(&second)).await;
    laptop.join(&room, None).await;
    phone.join(&room, None).await;

    let (status, _) = stack
        .post_with("/api/logout", None, json!({"refresh_token": first["refresh_token"]}))
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        laptop.closed().await,
        Some(4003),
        "the logged-out session's socket is closed"
    );
    assert_eq!(
        refused_status(request(&gw.ws_url(&access(&first)), &[])).await,
        401,
        "its access token no longer upgrades"
    );
    phone.say(&room, "still-on", "the other session goes on").await;
    let fresh = Client::connect(&gw, &access(&second)).await;
    drop(fresh);
}

#[tokio::test]
async fn a_password_change_and_logging_out_everywhere_close_every_other_sessions_sockets_with_4003() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let laptop_tokens = register(&stack, "ines").await;
    let login = || async {
        let (status, tokens) = stack
            .post_with(
                "/api/login",
                None,
                json!({"username": "ines", "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(status, 200, "{tokens}");
        tokens
    };
    let (phone_tokens, tablet_tokens) = (login().await, login().await);
    let room = stack.room(&access(&laptop_tokens), false).await;
    let mut laptop = Client::connect(&gw, &access(&laptop_tokens)).await;
    let mut phone = Client::connect(&gw, &access(&phone_tokens)).await;
    let mut tablet = Client::connect(&gw, &access(&tablet_tokens)).await;
    for client in [&mut laptop, &mut phone, &mut tablet] {
        client.join(&room, None).await;
    }

    // A password change from the laptop ends the phone's and the tablet's sessions, not its own.
    let (status, ended) = stack
        .post_with(
            "/api/account/password",
            Some(&access(&laptop_tokens)),
            json!({"current_password": "correct horse battery", "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!((status, ended["ended"].as_u64()), (200, Some(2)), "{ended}");
    assert_eq!(phone.closed().await, Some(4003), "the phone's socket is closed");
    assert_eq!(tablet.closed().await, Some(4003), "the tablet's socket is closed");
    laptop.say(&room, "kept", "this session goes on").await;

    // A new sign-in, then "log out everywhere" from it: the laptop's socket goes too, and its own.
    let (status, desk_tokens) = stack
        .post_with(
            "/api/login",
            None,
            json!({"username": "ines", "password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(status, 200, "{desk_tokens}");
    let mut desk = Client::connect(&gw, &access(&desk_tokens)).await;
    desk.join(&room, None).await;
    let status = stack.delete_with("/api/sessions", &access(&desk_tokens)).await;
    assert_eq!(status, 200, "log out everywhere");
    assert_eq!(laptop.closed().await, Some(4003), "the laptop's socket is closed");
    assert_eq!(desk.closed().await, Some(4003), "the caller's own socket is closed too");
    assert_eq!(
        refused_status(request(&gw.ws_url(&access(&laptop_tokens)), &[])).await,
        401,
        "an ended session's token no longer upgrades"
    );
}

#[tokio::test]
async fn a_frozen_nats_makes_the_gateway_unready_and_sends_unconfirmed_and_presence_heals_after() {
    let mut stack = Stack::start().await;
    let one = stack.gateway(&[]).await;
    let two = stack.gateway(&[]).await;
    let (alice_token, alice_id) = stack.user("alice").await;
    let (bob_token, bob_id) = stack.user("bob").await;
    let room = stack.room(&alice_token, false).await;
    let mut alice = Client::connect(&one, &alice_token).await;
    alice.join(&room, None).await;
    let mut bob = Client::connect(&two, &bob_token).await;
    bob.join(&room, None).await;
    let seen = alice.recv_type("presence").await;
    assert_eq!(seen["joined"][0]["id"], bob_id, "{seen}");

    stack.nats.pause();
    // Each gateway stops hearing the other (heartbeats every 250 ms: taken for dead after 750 ms), and its
    // readiness check gets no answer.
    let mut unready = serde_json::Value::Null;
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        let response = reqwest::get(one.admin("/readyz")).await.expect("readyz answers");
        if response.status() == 503 {
            unready = response.json().await.expect("json");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(unready["nats"], false, "a frozen NATS is reported: {unready}");
    alice
        .send(json!({"type": "send", "room": room, "id": "frozen", "body": "anyone?"}))
        .await;
    let answer = alice.recv_type("error").await;
    assert_eq!(
        answer["code"], "publish_failed",
        "never an ack while NATS is frozen: {answer}"
    );
    assert_eq!(answer["ref"], "frozen");
    let gone = alice.recv_type("presence").await;
    assert_eq!(
        gone["left"][0]["id"], bob_id,
        "bob's gateway was taken for dead: {gone}"
    );

    stack.nats.resume();
    // Presence heals both ways: each hears the other come back.
    seen_again(&mut alice, &bob_id).await;
    seen_again(&mut bob, &alice_id).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let response = reqwest::get(one.admin("/readyz")).await.expect("readyz answers");
        if response.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "ready again once NATS answers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The unconfirmed send is settled by a resend with its id: stored at most once. (Messages held through the
    // freeze arrive late, so the gateway may shed sends for a moment: those are resent too, as clients are told.)
    let seq = resend_until_acked(&mut alice, &room, "frozen", "anyone?").await;
    let again = resend_until_acked(&mut alice, &room, "frozen", "anyone?").await;
    assert_eq!(seq, again, "a resend is acked with the stored message's seq");
    let mut carol = Client::connect(&one, &stack.user("carol").await.0).await;
    let joined = carol.join(&room, None).await;
    let members: Vec<&str> = joined["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        members.contains(&bob_id.as_str()),
        "a new member sees bob online: {joined}"
    );
}

#[tokio::test]
async fn idle_sockets_over_an_address_cap_get_503_and_a_full_pool_sheds_the_busiest_address_for_newcomers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = Stack::start().await;
    let gw = stack
        .gateway(&["--max-pending-connections", "8", "--max-pending-per-address", "5"])
        .await;
    let connect_from = |source: [u8; 4]| {
        let port = gw.port;
        async move {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind((std::net::Ipv4Addr::from(source), 0).into())
                .expect("bind a loopback source address");
            socket
                .connect(([127, 0, 0, 1], port).into())
                .await
                .expect("TCP connects")
        }
    };
    // What the gateway wrote before closing the socket, or `None` while it stays open for `wait`.
    async fn answer(tcp: &mut tokio::net::TcpStream, wait: Duration) -> Option<String> {
        let mut buf = vec![0u8; 256];
        let n = tokio::time::timeout(wait, tcp.read(&mut buf)).await.ok()?.unwrap_or(0);
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
    let mut busiest = Vec::new();
    for _ in 0..5 {
        busiest.push(connect_from([127, 0, 0, 2]).await);
    }
    // Accepted and counted before the next: give the gateway a moment to take each.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let over_address = answer(&mut connect_from([127, 0, 0, 2]).await, WAIT).await;
    assert!(
        over_address.as_deref().is_some_and(|a| a.starts_with("HTTP/1.1 503")),
        "{over_address:?}"
    );
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(connect_from([127, 0, 0, 3]).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The pool is full: a newcomer gets in, and the busiest address's longest-waiting socket is closed for it.
    let mut newcomer = connect_from([127, 0, 0, 4]).await;
    assert_eq!(
        answer(&mut busiest[0], WAIT).await.as_deref(),
        Some(""),
        "the busiest address's oldest socket is closed"
    );
    for tcp in busiest.iter_mut().skip(1).chain(others.iter_mut()) {
        assert_eq!(answer(tcp, Duration::from_millis(100)).await, None, "the others stay");
    }
    newcomer
        .write_all(b"GET /nothing-here HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let served = answer(&mut newcomer, WAIT).await;
    assert!(
        served.as_deref().is_some_and(|a| a.starts_with("HTTP/1.1 404")),
        "the newcomer is served: {served:?}"
    );
    let page = gw.metrics().await;
    let value = |series: &str| natter_test_support::metrics_page::value(&page, series);
    let refused = value("natter_gateway_pending_refused_total{scope=\"address\"}");
    assert!(refused.is_some_and(|n| n >= 1.0), "{refused:?}");
    let shed = value("natter_gateway_pending_shed_total{reason=\"busiest_address\"}");
    assert!(shed.is_some_and(|n| n >= 1.0), "{shed:?}");
    // WebSockets connect meanwhile, and as the idle sockets go.
    let (token, _) = stack.user("wanda").await;
    let mut client = Client::connect(&gw, &token).await;
    client.send(json!({"type": "ping", "id": "p"})).await;
    assert_eq!(client.recv_type("pong").await["id"], "p");
    drop((busiest, others));
}

#[tokio::test]
async fn a_gateway_back_from_a_nats_outage_asks_again_about_its_rooms_and_evicts_whoever_lost_access() {
    let mut stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (owner, _) = stack.user("rita").await;
    let (member, member_id) = stack.user("sam").await;
    let room = private_room_with(&stack, &owner, &member).await;
    let mut sam = Client::connect(&gw, &member).await;
    sam.join(&room, None).await;
    let mut rita = Client::connect(&gw, &owner).await;
    rita.join(&room, None).await;

    // NATS goes down; meanwhile the membership ends where no event can announce it (straight in the database).
    stack.nats.kill();
    let db = sqlx::PgPool::connect(&stack.db_url).await.expect("database");
    sqlx::query("DELETE FROM memberships WHERE room_id = $1 AND user_id = $2::uuid")
        .bind(&room)
        .bind(&member_id)
        .execute(&db)
        .await
        .expect("membership removed");
    stack.nats.restart();
    let left = sam.recv_type("left").await;
    assert_eq!(left, json!({"type": "left", "room": room, "reason": "access_revoked"}));
    // The owner's access still holds: asked again, kept.
    rita.send(json!({"type": "ping", "id": "still-in"})).await;
    assert_eq!(rita.recv_type("pong").await["id"], "still-in");
    assert!(rita.queued("left").is_empty(), "the owner stays in the room");
}

#[tokio::test]
async fn a_member_the_owner_removes_is_taken_out_at_once_and_cannot_rejoin_a_private_room() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (owner, _) = stack.user("ona").await;
    let (member, member_id) = stack.user("moe").await;
    let room = private_room_with(&stack, &owner, &member).await;
    let mut mo = Client::connect(&gw, &member).await;
    mo.join(&room, None).await;
    let mut ona = Client::connect(&gw, &owner).await;
    ona.join(&room, None).await;

    let (status, answer) = stack
        .post_with(
            &format!("/api/rooms/{room}/members/{member_id}/remove"),
            Some(&owner),
            json!({}),
        )
        .await;
    assert_eq!(status, 204, "{answer}");
    let left = mo.recv_type("left").await;
    assert_eq!(left, json!({"type": "left", "room": room, "reason": "member_removed"}));
    mo.send(json!({"type": "send", "room": room, "id": "late", "body": "still here?"}))
        .await;
    assert_eq!(mo.recv_type("error").await["code"], "not_joined");
    mo.send(json!({"type": "join", "room": room})).await;
    assert_eq!(mo.recv_type("error").await["code"], "room_private");
    // The owner stays, and hears that the removed member went.
    let gone = ona.recv_type("presence").await;
    assert_eq!(gone["left"][0]["id"], member_id, "{gone}");
}

#[tokio::test]
async fn members_whose_removal_no_event_announced_are_taken_out_by_the_periodic_recheck() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&["--access-recheck-interval", "1s"]).await;
    let (owner, _) = stack.user("tess").await;
    let (member, member_id) = stack.user("uma").await;
    let private = private_room_with(&stack, &owner, &member).await;
    let public = stack.room(&owner, false).await;
    let mut uma = Client::connect(&gw, &member).await;
    uma.join(&private, None).await;
    let mut tess = Client::connect(&gw, &owner).await;
    tess.join(&private, None).await;
    tess.join(&public, None).await;
    uma.join(&public, None).await;

    // The membership ends, and later the public room goes, straight in the database: no room event is published,
    // as when the auth API cannot publish one or NATS drops it.
    let db = sqlx::PgPool::connect(&stack.db_url).await.expect("database");
    sqlx::query("DELETE FROM memberships WHERE room_id = $1 AND user_id = $2::uuid")
        .bind(&private)
        .bind(&member_id)
        .execute(&db)
        .await
        .expect("membership removed");
    let left = uma.recv_type("left").await;
    assert_eq!(
        left,
        json!({"type": "left", "room": private, "reason": "access_revoked"})
    );
    // The re-check's answer replaced the trust the join left behind: a rejoin is refused at once.
    uma.send(json!({"type": "join", "room": private})).await;
    assert_eq!(uma.recv_type("error").await["code"], "room_private");
    // The refusal is remembered for a while, but joining through the API again announces the member: let in at once.
    let info = stack.get_with(&format!("/api/rooms/{private}"), &owner).await;
    let code = info["join_code"].as_str().expect("the owner sees the join code");
    let (status, _) = stack
        .post_with(
            &format!("/api/rooms/{private}/join"),
            Some(&member),
            json!({"code": code}),
        )
        .await;
    assert_eq!(status, 200);
    // The event and the join frame race to the gateway: a join that got there first is refused; the refusal
    // itself would be remembered for 5 s, so a second is long enough to tell.
    let mut tries = 0;
    loop {
        uma.send(json!({"type": "join", "room": private})).await;
        let answer = loop {
            let frame = uma.recv().await;
            if frame["type"] == "joined" || frame["type"] == "error" {
                break frame;
            }
        };
        if answer["type"] == "joined" {
            break;
        }
        assert_eq!(answer["code"], "room_private", "{answer}");
        tries += 1;
        assert!(tries < 10, "still refused after the member joined through the API");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    uma.send(json!({"type": "leave", "room": private})).await;
    uma.recv_type("left").await;
    tess.send(json!({"type": "ping", "id": "still-in"})).await;
    assert_eq!(tess.recv_type("pong").await["id"], "still-in");
    assert!(tess.queued("left").is_empty(), "the owner stays in the room");

    sqlx::query("DELETE FROM rooms WHERE id = $1")
        .bind(&public)
        .execute(&db)
        .await
        .expect("room deleted");
    for client in [&mut uma, &mut tess] {
        let left = client.recv_type("left").await;
        assert_eq!(left, json!({"type": "left", "room": public, "reason": "room_deleted"}));
    }
    let page = gw.metrics().await;
    let rechecked = |answer: &str| {
        natter_test_support::metrics_page::value(
            &page,
            &format!("natter_gateway_access_rechecks_total{{answer=\"{answer}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(rechecked("denied") >= 1.0 && rechecked("not_found") >= 1.0, "{page}");
    assert!(rechecked("allowed") >= 1.0, "the owner was asked about and kept");
}
