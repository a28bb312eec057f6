//! Presence across the fleet, private rooms, gateway assignment and drain.

use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{Client, Stack, WAIT, refused_status, request};

fn names(users: &Value) -> Vec<String> {
    let mut names: Vec<String> = users
        .as_array()
        .expect("array")
        .iter()
        .map(|u| u["name"].as_str().expect("name").to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn presence_spans_gateways_and_expires_when_a_gateway_dies() {
    let stack = Stack::start().await;
    let (mut a, b) = (stack.gateway(&[]).await, stack.gateway(&[]).await);
    let (alice_token, _) = stack.user("heidi").await;
    let (bob_token, _) = stack.user("ivan").await;
    let room = stack.room(&alice_token, false).await;

    let mut alice = Client::connect(&a, &alice_token).await;
    let joined = alice.join(&room, None).await;
    assert_eq!(names(&joined["members"]), ["heidi"]);

    // A member, who sees drafts (someone previewing the room does not: `drafts_go_to_members_never_to_previewers`).
    let (status, _) = stack
        .post_with(&format!("/api/rooms/{room}/join"), Some(&bob_token), json!({}))
        .await;
    assert_eq!(status, 200);
    let mut bob = Client::connect(&b, &bob_token).await;
    let joined = bob.join(&room, None).await;
    assert_eq!(
        names(&joined["members"]),
        ["heidi", "ivan"],
        "members online on the other gateway are listed"
    );
    let presence = alice.recv_type("presence").await;
    assert_eq!(names(&presence["joined"]), ["ivan"], "{presence}");

    // Typing streams across gateways too, and clears on send.
    alice.send(json!({"type": "typing", "room": room, "text": "hel"})).await;
    let typing = bob.recv_type("typing").await;
    assert_eq!(
        (typing["user"]["name"].as_str(), typing["text"].as_str()),
        (Some("heidi"), Some("hel"))
    );
    alice.say(&room, "t1", "hello").await;
    let cleared = bob.recv_type("typing").await;
    assert_eq!(cleared["text"], "", "sending clears the draft: {cleared}");

    // A crash: no goodbye. Bob still learns that Alice is gone, within a few heartbeats.
    a.kill();
    let started = std::time::Instant::now();
    let presence = bob.recv_type("presence").await;
    assert_eq!(names(&presence["left"]), ["heidi"], "{presence}");
    assert!(started.elapsed() < WAIT);
}

#[tokio::test]
async fn leaving_and_closing_announce_departure() {
    let stack = Stack::start().await;
    let (a, b) = (stack.gateway(&[]).await, stack.gateway(&[]).await);
    let (alice_token, _) = stack.user("judy").await;
    let (bob_token, _) = stack.user("ken").await;
    let room = stack.room(&alice_token, false).await;
    let mut alice = Client::connect(&a, &alice_token).await;
    alice.join(&room, None).await;
    let mut bob = Client::connect(&b, &bob_token).await;
    bob.join(&room, None).await;
    alice.recv_type("presence").await;

    bob.send(json!({"type": "leave", "room": room})).await;
    assert_eq!(bob.recv_type("left").await["room"], room.as_str());
    assert_eq!(names(&alice.recv_type("presence").await["left"]), ["ken"]);

    bob.join(&room, None).await;
    assert_eq!(names(&alice.recv_type("presence").await["joined"]), ["ken"]);
    drop(bob);
    assert_eq!(names(&alice.recv_type("presence").await["left"]), ["ken"]);
}

#[tokio::test]
async fn a_room_filling_up_is_announced_in_batches_and_each_member_hears_of_each_user_once() {
    let stack = Stack::start().await;
    let (a, b) = (stack.gateway(&[]).await, stack.gateway(&[]).await);
    let (first_token, _) = stack.user("pat").await;
    let room = stack.room(&first_token, false).await;
    let mut first = Client::connect(&a, &first_token).await;
    first.join(&room, None).await;

    // Eight more join at once, half on each gateway.
    let mut everyone = vec!["pat".to_owned()];
    let mut clients = vec![first];
    for i in 0..8 {
        let name = format!("quinn{i}");
        let (token, _) = stack.user(&name).await;
        clients.push(Client::connect(if i % 2 == 0 { &a } else { &b }, &token).await);
        everyone.push(name);
    }
    everyone.sort();
    let joins = clients[1..].iter_mut().map(|c| c.join(&room, None));
    let mut members: Vec<Vec<String>> = vec![vec!["pat".to_owned()]];
    members.extend(
        futures::future::join_all(joins)
            .await
            .iter()
            .map(|j| names(&j["members"])),
    );

    // Each member knows everyone from its `joined` frame and the presence frames after, hearing of nobody twice
    // and never of itself.
    let mut frames = vec![0; clients.len()];
    for (i, client) in clients.iter_mut().enumerate() {
        let me = name_of(i);
        let mut known = members[i].clone();
        while known.len() < everyone.len() {
            let presence = client.recv_type("presence").await;
            frames[i] += 1;
            assert!(names(&presence["left"]).is_empty(), "{presence}");
            for user in names(&presence["joined"]) {
                assert_ne!(user, me, "told about itself: {presence}");
                assert!(!known.contains(&user), "member {i} heard of {user} twice: {presence}");
                known.push(user);
            }
        }
        known.sort();
        assert_eq!(known, everyone, "member {i}");
    }
    assert!(
        frames[0] < 8,
        "eight joins in a moment reach the first member in fewer frames than joins: {frames:?}"
    );

    // Nothing more is announced: a message sent after the announcement interval overtakes no presence frame.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    clients[0].say(&room, "after", "all here").await;
    for (i, client) in clients.iter_mut().enumerate() {
        client.recv_type("message").await;
        assert_eq!(client.queued("presence"), Vec::<Value>::new(), "member {i}");
    }
}

fn name_of(i: usize) -> String {
    if i == 0 {
        "pat".to_owned()
    } else {
        format!("quinn{}", i - 1)
    }
}

#[tokio::test]
async fn joins_of_a_public_room_ask_the_auth_api_about_the_room_once() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    // A plain subscriber hears every question the queue group answers.
    let nats = async_nats::connect(stack.nats.url()).await.expect("NATS");
    let mut questions = nats
        .subscribe(natter_proto::subject::room_access())
        .await
        .expect("subscribe");
    nats.flush().await.expect("flush");
    let (owner_token, _) = stack.user("rosa").await;
    let room = stack.room(&owner_token, false).await;
    let mut clients = Vec::new();
    for i in 0..12 {
        let (token, _) = stack.user(&format!("sam{i}")).await;
        clients.push(Client::connect(&gw, &token).await);
    }
    let joins = clients.iter_mut().map(|c| c.join(&room, None));
    for joined in futures::future::join_all(joins).await {
        assert_eq!(joined["type"], "joined", "{joined}");
    }
    let mut asked = 0;
    while let Ok(Some(_)) = tokio::time::timeout(std::time::Duration::from_millis(300), questions.next()).await {
        asked += 1;
    }
    assert_eq!(asked, 1, "twelve joins at once, one question about the public room");

    // A private room's members are each asked about (and strangers are refused).
    let private = stack.room(&owner_token, true).await;
    let mut owner = Client::connect(&gw, &owner_token).await;
    owner.join(&private, None).await;
    clients[0].send(json!({"type": "join", "room": private})).await;
    assert_eq!(clients[0].recv_type("error").await["code"], "room_private");
    let mut asked = 0;
    while let Ok(Some(_)) = tokio::time::timeout(std::time::Duration::from_millis(300), questions.next()).await {
        asked += 1;
    }
    assert_eq!(asked, 2, "one question per user of a private room");
}

#[tokio::test]
async fn private_rooms_are_refused_to_non_members() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (owner_token, _) = stack.user("leo").await;
    let (outsider_token, _) = stack.user("mia").await;
    let room = stack.room(&owner_token, true).await;

    let mut owner = Client::connect(&gw, &owner_token).await;
    assert_eq!(owner.join(&room, None).await["recovered"], true);

    let mut outsider = Client::connect(&gw, &outsider_token).await;
    outsider.send(json!({"type": "join", "room": room})).await;
    let error = outsider.recv_type("error").await;
    assert_eq!(error["code"], "room_private", "{error}");
    outsider
        .send(json!({"type": "send", "room": room, "id": "x", "body": "sneak"}))
        .await;
    assert_eq!(outsider.recv_type("error").await["code"], "not_joined");

    outsider.send(json!({"type": "join", "room": "doesnotexist"})).await;
    assert_eq!(outsider.recv_type("error").await["code"], "room_not_found");
}

#[tokio::test]
async fn the_api_assigns_the_least_loaded_gateway() {
    let stack = Stack::start().await;
    let (a, b) = (stack.gateway(&[]).await, stack.gateway(&[]).await);
    let (token, _) = stack.user("nina").await;
    // Load gateway A with two connections.
    let _c1 = Client::connect(&a, &token).await;
    let _c2 = Client::connect(&a, &token).await;
    let mut assigned = String::new();
    for _ in 0..40 {
        let reply = stack.get("/api/gateway").await;
        if reply.status().is_success() {
            let body: Value = reply.json().await.expect("json");
            assigned = body["url"].as_str().unwrap_or_default().to_owned();
            if assigned.contains(&b.port.to_string()) {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(
        assigned,
        format!("ws://127.0.0.1:{}/ws", b.port),
        "the idle gateway is assigned"
    );
}

#[tokio::test]
async fn sigterm_drains_clients_with_1012() {
    let stack = Stack::start().await;
    // Twelve clients closed over three seconds: the last goes close to the end, so the drain can be watched.
    let mut gw = stack.gateway(&["--drain-jitter", "3s"]).await;
    let (token, _) = stack.user("oscar").await;
    let room = stack.room(&token, false).await;
    let mut clients = Vec::new();
    for _ in 0..12 {
        let mut client = Client::connect(&gw, &token).await;
        client.join(&room, None).await;
        clients.push(client);
    }
    gw.terminate();
    // While it drains, the gateway still answers HTTP: not ready, the drain on its metrics, upgrades refused.
    let mut readiness = serde_json::Value::Null;
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        let response = reqwest::get(gw.admin("/readyz"))
            .await
            .expect("readyz answers while draining");
        if response.status() == 503 {
            readiness = response.json().await.expect("json");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(readiness["draining"], true, "{readiness}");
    let page = gw.metrics().await;
    assert_eq!(
        natter_test_support::metrics_page::value(&page, "natter_gateway_draining"),
        Some(1.0)
    );
    assert_eq!(refused_status(request(&gw.ws_url(&token), &[])).await, 503);
    for client in &mut clients {
        assert_eq!(
            client.closed().await,
            Some(1012),
            "drain closes with 1012 (service restart)"
        );
    }
    assert_eq!(gw.wait().await, Some(0), "the gateway exits cleanly once drained");
}

#[tokio::test]
async fn gateway_processes_can_share_one_port() {
    let stack = Stack::start().await;
    let port = natter_test_support::free_port();
    let mut first = stack.gateway_on(port, &[]).await;
    let second = stack.gateway_on(port, &[]).await;
    let (token, _) = stack.user("pia").await;
    let room = stack.room(&token, false).await;
    // The kernel spreads connections over both; each works wherever it lands.
    let mut clients = Vec::new();
    for i in 0..6 {
        let mut client = Client::connect(&second, &token).await;
        client.join(&room, None).await;
        client.say(&room, &format!("r{i}"), "hi").await;
        clients.push(client);
    }
    // With one of them stopped, the port still serves.
    first.kill();
    let mut after = Client::connect(&second, &token).await;
    after.join(&room, None).await;
    after.say(&room, "after", "still here").await;
}

/// A gateway's metric, 0 when absent.
async fn metric(gw: &crate::helpers::GatewayProc, series: &str) -> f64 {
    natter_test_support::metrics_page::value(&gw.metrics().await, series).unwrap_or(0.0)
}

/// Waits (generously) until gateway `gw` has received at least `count` messages of other gateways' user
/// connection counts.
async fn until_counts_received(gw: &crate::helpers::GatewayProc, count: f64) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let received = metric(gw, "natter_gateway_user_counts_received_total").await;
        if received >= count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gateway on port {} received {received} count messages, waited for {count}",
            gw.port
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_per_user_cap_holds_across_the_fleet_and_forgets_a_dead_gateway() {
    let stack = Stack::start().await;
    // A slower heartbeat than the tests' default, so a loaded machine does not take a gateway for dead mid-test.
    let args = ["--max-connections-per-user", "2", "--heartbeat-interval", "1s"];
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(stack.gateway(&args).await);
    }
    let (token, _) = stack.user("una").await;

    // Round-robin: one on the first gateway, one on the second; the third gateway hears of both (each sends one
    // message of counts) and refuses a third connection as the first two would.
    let first = Client::connect(&gws[0], &token).await;
    let _second = Client::connect(&gws[1], &token).await;
    until_counts_received(&gws[2], 2.0).await;
    assert_eq!(refused_status(request(&gws[2].ws_url(&token), &[])).await, 429);
    assert_eq!(
        metric(&gws[2], "natter_gateway_user_cap_fleet_refused_total").await,
        1.0
    );
    // Another user is not affected.
    let (other, _) = stack.user("vic").await;
    let _other = Client::connect(&gws[2], &other).await;
    // The first gateway has heard of the second's una and of vic before anything else changes, so the third's
    // next change comes in a message of its own (changes within one publish interval share one).
    until_counts_received(&gws[0], 2.0).await;

    // Closing the one on the first gateway lets a new one in on the third.
    drop(first);
    until_counts_received(&gws[2], 3.0).await;
    let _third = Client::connect(&gws[2], &token).await;
    // Now the second and third hold the cap: the first refuses once it has heard of both.
    until_counts_received(&gws[0], 3.0).await;
    assert_eq!(refused_status(request(&gws[0].ws_url(&token), &[])).await, 429);

    // The second gateway dies without a word: once its heartbeat is missed, its connection no longer counts.
    gws[1].kill();
    let deadline = std::time::Instant::now() + WAIT * 3;
    let _fourth = loop {
        match tokio_tungstenite::connect_async(gws[0].ws_url(&token)).await {
            Ok((ws, _)) => break ws,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) if resp.status().as_u16() == 429 => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the dead gateway's connection still counts"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(other) => panic!("connect failed: {other}"),
        }
    };
    // And the cap still holds: two connections now, on the first and third gateways.
    until_counts_received(&gws[2], 4.0).await;
    assert_eq!(refused_status(request(&gws[2].ws_url(&token), &[])).await, 429);
}

/// The text of every `typing` frame of `author` that `client` receives within `within`, in order.
async fn drafts_seen(client: &mut Client, author: &str, within: std::time::Duration) -> Vec<String> {
    let mut seen: Vec<String> = client
        .queued("typing")
        .iter()
        .filter(|f| f["user"]["name"] == author)
        .map(|f| f["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    while let Ok(frame) = tokio::time::timeout(within, client.recv_type("typing")).await {
        if frame["user"]["name"] == author {
            seen.push(frame["text"].as_str().unwrap_or_default().to_owned());
        }
    }
    seen
}

#[tokio::test]
async fn drafts_go_to_members_never_to_previewers() {
    let stack = Stack::start().await;
    let (a, b) = (stack.gateway(&[]).await, stack.gateway(&[]).await);
    let (owner_token, _) = stack.user("quill").await;
    let (member_token, _) = stack.user("rowan").await;
    let (previewer_token, _) = stack.user("sable").await;
    let (far_previewer_token, _) = stack.user("tamsin").await;
    let room = stack.room(&owner_token, false).await;
    let (status, _) = stack
        .post_with(&format!("/api/rooms/{room}/join"), Some(&member_token), json!({}))
        .await;
    assert_eq!(status, 200);

    let mut owner = Client::connect(&a, &owner_token).await;
    owner.join(&room, None).await;
    // On the same gateway as the member, and on the typist's: a public room's preview, live but not joined.
    let mut member = Client::connect(&b, &member_token).await;
    member.join(&room, None).await;
    let mut previewer = Client::connect(&b, &previewer_token).await;
    previewer.join(&room, None).await;
    let mut far_previewer = Client::connect(&a, &far_previewer_token).await;
    far_previewer.join(&room, None).await;

    // The member sees the draft, at once or once the gateway has asked who is a member.
    owner
        .send(json!({"type": "typing", "room": room, "text": "the surprise party is on friday"}))
        .await;
    let first = member.recv_type("typing").await;
    assert_eq!(first["text"], "the surprise party is on friday", "{first}");
    owner
        .send(json!({"type": "typing", "room": room, "text": "the surprise party is on saturday"}))
        .await;
    assert_eq!(
        member.recv_type("typing").await["text"],
        "the surprise party is on saturday"
    );
    // The message itself is for everyone in the room; the drafts before it were not.
    let seq = owner.say(&room, "party", "the party is on saturday").await;
    for client in [&mut member, &mut previewer, &mut far_previewer] {
        assert_eq!(client.recv_type("message").await["seq"].as_u64(), Some(seq));
    }
    for client in [&mut previewer, &mut far_previewer] {
        let seen = drafts_seen(client, "quill", std::time::Duration::from_millis(500)).await;
        assert!(seen.is_empty(), "a previewer saw drafts: {seen:?}");
    }

    // The previewer joins through the API: drafts reach them within the 10 s a non-member's answer holds.
    let (status, _) = stack
        .post_with(&format!("/api/rooms/{room}/join"), Some(&previewer_token), json!({}))
        .await;
    assert_eq!(status, 200);
    let joined_at = std::time::Instant::now();
    let mut seen = Vec::new();
    let mut i = 0;
    while seen.is_empty() && joined_at.elapsed() < std::time::Duration::from_secs(20) {
        i += 1;
        owner
            .send(json!({"type": "typing", "room": room, "text": format!("draft {i}")}))
            .await;
        seen = drafts_seen(&mut previewer, "quill", std::time::Duration::from_millis(1000))
            .await
            .into_iter()
            .filter(|text| !text.is_empty())
            .collect();
    }
    assert!(!seen.is_empty(), "a new member saw no draft within 20 s");
    assert!(
        joined_at.elapsed() < std::time::Duration::from_secs(13),
        "a new member saw drafts only after {:?}",
        joined_at.elapsed()
    );
    let seen = drafts_seen(&mut far_previewer, "quill", std::time::Duration::from_millis(500)).await;
    assert!(seen.is_empty(), "the other previewer saw drafts: {seen:?}");
}
