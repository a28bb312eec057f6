//! Rooms: create, list, get, join, leave, delete, members, and who may see private rooms.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::spawn_app;

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn public_room_lifecycle() {
    let app = spawn_app().await;
    let owner = app.token_for("olive").await;
    let guest = app.token_for("gus").await;

    let room = app.create_room(&owner, "  General  ", false).await;
    let id = room["id"].as_str().expect("id").to_owned();
    assert_eq!(room["name"], "General");
    assert_eq!(room["private"], false);
    assert_eq!(room["joined"], true);
    assert_eq!(room["member_count"], 1);
    assert!(room.get("join_code").is_none(), "public rooms have no join code");
    natter_proto::RoomId::parse(&id).expect("room ids are safe subject tokens");

    let seen = app.get(&format!("/api/rooms/{id}"), Some(&guest)).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.body["joined"], false);
    assert_eq!(ids(&app.get("/api/rooms", Some(&guest)).await.body), vec![id.clone()]);

    let joined = app
        .call(Method::POST, &format!("/api/rooms/{id}/join"), Some(&guest), None)
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    assert_eq!(joined.body["joined"], true);
    assert_eq!(joined.body["member_count"], 2);
    // Joining twice is harmless.
    let again = app
        .call(Method::POST, &format!("/api/rooms/{id}/join"), Some(&guest), None)
        .await;
    assert_eq!(again.body["member_count"], 2);

    let members = app.get(&format!("/api/rooms/{id}/members"), Some(&guest)).await;
    let names: Vec<(&str, &str)> = members
        .body
        .as_array()
        .expect("array")
        .iter()
        .map(|m| (m["name"].as_str().expect("name"), m["role"].as_str().expect("role")))
        .collect();
    assert_eq!(names, vec![("olive", "owner"), ("gus", "member")]);

    let left = app
        .call(Method::POST, &format!("/api/rooms/{id}/leave"), Some(&guest), None)
        .await;
    assert_eq!(left.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/api/rooms/{id}"), Some(&guest)).await.body["member_count"],
        1
    );
    app.call(Method::POST, &format!("/api/rooms/{id}/leave"), Some(&owner), None)
        .await
        .assert_error(409, "owner_cannot_leave");

    app.call(Method::DELETE, &format!("/api/rooms/{id}"), Some(&guest), None)
        .await
        .assert_error(403, "not_room_owner");
    let deleted = app
        .call(Method::DELETE, &format!("/api/rooms/{id}"), Some(&owner), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get(&format!("/api/rooms/{id}"), Some(&owner))
        .await
        .assert_error(404, "room_not_found");
    app.call(Method::POST, &format!("/api/rooms/{id}/join"), Some(&guest), None)
        .await
        .assert_error(404, "room_not_found");
}

#[tokio::test]
async fn private_rooms_are_for_members_only() {
    let app = spawn_app().await;
    let owner = app.token_for("paula").await;
    let outsider = app.token_for("quentin").await;
    let invited = app.token_for("rita").await;

    let room = app.create_room(&owner, "Secret", true).await;
    let id = room["id"].as_str().expect("id").to_owned();
    let code = room["join_code"]
        .as_str()
        .expect("the owner sees the join code")
        .to_owned();

    assert!(
        ids(&app.get("/api/rooms", Some(&outsider)).await.body).is_empty(),
        "not listed to non-members"
    );
    assert_eq!(ids(&app.get("/api/rooms", Some(&owner)).await.body), vec![id.clone()]);
    app.get(&format!("/api/rooms/{id}"), Some(&outsider))
        .await
        .assert_error(403, "room_private");
    app.get(&format!("/api/rooms/{id}/members"), Some(&outsider))
        .await
        .assert_error(403, "room_private");
    app.call(Method::DELETE, &format!("/api/rooms/{id}"), Some(&outsider), None)
        .await
        .assert_error(403, "room_private");
    app.call(Method::POST, &format!("/api/rooms/{id}/join"), Some(&outsider), None)
        .await
        .assert_error(403, "invalid_join_code");
    app.call(
        Method::POST,
        &format!("/api/rooms/{id}/join"),
        Some(&outsider),
        Some(json!({"code": "guess"})),
    )
    .await
    .assert_error(403, "invalid_join_code");

    let joined = app
        .call(
            Method::POST,
            &format!("/api/rooms/{id}/join"),
            Some(&invited),
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    assert!(joined.body.get("join_code").is_none(), "only the owner sees the code");
    assert_eq!(
        app.get(&format!("/api/rooms/{id}/members"), Some(&invited))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(ids(&app.get("/api/rooms", Some(&invited)).await.body), vec![id.clone()]);

    // After leaving, the room is closed again.
    app.call(Method::POST, &format!("/api/rooms/{id}/leave"), Some(&invited), None)
        .await;
    app.get(&format!("/api/rooms/{id}"), Some(&invited))
        .await
        .assert_error(403, "room_private");
}

#[tokio::test]
async fn room_input_is_validated() {
    let app = spawn_app().await;
    let token = app.token_for("sam").await;
    for bad in ["", "   ", "a\u{0}b", &"x".repeat(65)] {
        app.call(Method::POST, "/api/rooms", Some(&token), Some(json!({"name": bad})))
            .await
            .assert_error(422, "invalid_room_name");
    }
    app.call(Method::POST, "/api/rooms", Some(&token), Some(json!({"name": 42})))
        .await
        .assert_error(422, "invalid_body");
    for hostile in ["a.b", "*", "%3E", "a%20b", "a%00"] {
        app.get(&format!("/api/rooms/{hostile}"), Some(&token))
            .await
            .assert_error(400, "invalid_room_id");
    }
    app.get("/api/rooms/nosuchroom", Some(&token))
        .await
        .assert_error(404, "room_not_found");
    // Not even UTF-8: still a JSON error.
    app.get("/api/rooms/%FF%FE", Some(&token))
        .await
        .assert_error(400, "invalid_room_id");

    // The optional join body follows the same rules as every other body.
    let room = app.create_room(&token, "Joinable", false).await;
    let join = format!("/api/rooms/{}/join", room["id"].as_str().expect("id"));
    let other = app.token_for("sue").await;
    app.call(Method::POST, &join, Some(&other), Some(json!({"code": 5})))
        .await
        .assert_error(422, "invalid_body");
    app.call(Method::POST, &join, Some(&other), Some(json!({"invite": "x"})))
        .await
        .assert_error(422, "invalid_body");
    let raw = |body: Vec<u8>| {
        app.http
            .post(format!("{}{join}", app.base))
            .bearer_auth(&other)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_eq!(
        raw(b"{oops".to_vec()).await.expect("sent").status(),
        StatusCode::BAD_REQUEST
    );
    let reply = raw(vec![b' '; 100_000]).await.expect("sent");
    assert_eq!(reply.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = reply.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], "payload_too_large");
    // No body at all is a plain join.
    let joined = app.call(Method::POST, &join, Some(&other), None).await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    // SQL-looking names are just names.
    let room = app.create_room(&token, "'); DROP TABLE rooms; --", false).await;
    assert_eq!(room["name"], "'); DROP TABLE rooms; --");
    let listed = app.get("/api/rooms", Some(&token)).await.body;
    assert_eq!(
        ids(&listed).len(),
        2,
        "both rooms are there, the table intact: {listed}"
    );
}

#[tokio::test]
async fn a_new_join_code_shuts_out_the_old_invite_and_keeps_the_members() {
    let app = spawn_app().await;
    let owner = app.token_for("sofia").await;
    let member = app.token_for("tomas").await;
    let late = app.token_for("ulla").await;
    let room = app.create_room(&owner, "Board", true).await;
    let id = room["id"].as_str().expect("id").to_owned();
    let old = room["join_code"]
        .as_str()
        .expect("the owner sees the join code")
        .to_owned();
    let join = |token: &str, code: &str| {
        let (token, code, path) = (token.to_owned(), code.to_owned(), format!("/api/rooms/{id}/join"));
        let app = &app;
        async move {
            app.call(Method::POST, &path, Some(&token), Some(json!({"code": code})))
                .await
        }
    };
    assert_eq!(join(&member, &old).await.status, StatusCode::OK);

    let rotate = format!("/api/rooms/{id}/join-code");
    app.call(Method::POST, &rotate, Some(&member), None)
        .await
        .assert_error(403, "not_room_owner");
    let rotated = app.call(Method::POST, &rotate, Some(&owner), None).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new = rotated.body["join_code"].as_str().expect("the new code").to_owned();
    assert_ne!(new, old);

    // The old invite no longer lets anyone in; the new one does; who was in stays in.
    join(&late, &old).await.assert_error(403, "invalid_join_code");
    assert_eq!(join(&late, &new).await.status, StatusCode::OK);
    assert_eq!(
        app.get(&format!("/api/rooms/{id}/members"), Some(&member)).await.status,
        StatusCode::OK
    );

    // A public room has no code to change.
    let public = app.create_room(&owner, "Lobby", false).await;
    let public = public["id"].as_str().expect("id");
    app.call(
        Method::POST,
        &format!("/api/rooms/{public}/join-code"),
        Some(&owner),
        None,
    )
    .await
    .assert_error(409, "room_public");
}

/// The Link header's `after` cursor of a listing page, if it names a next page.
fn next_page(reply: &crate::helpers::Reply) -> Option<String> {
    let link = reply.headers.get("link")?.to_str().expect("an ASCII Link header");
    let target = link.strip_prefix('<')?.split_once('>')?.0;
    assert!(link.ends_with("rel=\"next\""), "{link}");
    Some(target.to_owned())
}

#[tokio::test]
async fn room_listings_page_past_five_hundred_with_a_cursor() {
    let app = spawn_app().await;
    let owner = app.token_for("pia").await;
    let reader = app.token_for("rex").await;
    let owner_id = crate::helpers::claims_of(&owner)["sub"]
        .as_str()
        .expect("sub")
        .to_owned();
    // 520 public rooms of another person, made at two instants (equal times are ordered by id), and one private
    // room of theirs that must never be listed; the reader is a member of three, listed first.
    sqlx::query(
        "INSERT INTO rooms (id, name, private, owner_id, created_at) \
         SELECT 'page' || lpad(n::text, 4, '0'), 'Room ' || n, n = 0, $1::uuid, \
                now() - CASE WHEN n % 2 = 0 THEN interval '1 hour' ELSE interval '2 hours' END \
         FROM generate_series(0, 520) n",
    )
    .bind(uuid::Uuid::parse_str(&owner_id).expect("uuid"))
    .execute(&app.db)
    .await
    .expect("rooms inserted");
    for room in ["page0007", "page0300", "page0519"] {
        let joined = app.post_as(&reader, &format!("/api/rooms/{room}/join")).await;
        assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
    }

    let first = app.get("/api/rooms", Some(&reader)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(ids(&first.body).len(), 500, "a page holds at most 500");
    assert_eq!(
        ids(&first.body)[..3],
        ["page0007", "page0519", "page0300"].map(String::from)
    );
    let rest = next_page(&first).expect("a next page past 500");
    let second = app.get(&rest, Some(&reader)).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert!(next_page(&second).is_none(), "the last page names no next");
    let mut all = ids(&first.body);
    all.extend(ids(&second.body));
    assert_eq!(all.len(), 520, "every public room once, the private one never");
    assert!(!all.contains(&"page0000".to_owned()));
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "no room on two pages");

    // Small pages walk the same order.
    let mut walked = Vec::new();
    let mut page = Some("/api/rooms?limit=7".to_owned());
    while let Some(path) = page {
        let reply = app.get(&path, Some(&reader)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        walked.extend(ids(&reply.body));
        page = next_page(&reply);
    }
    assert_eq!(walked, all);

    for bad in [
        "/api/rooms?limit=0",
        "/api/rooms?limit=501",
        "/api/rooms?limit=x",
        "/api/rooms?after=2.1.abc",
        "/api/rooms?after=1.12.no%20such",
        "/api/rooms?after=1.1234567890123456789.abc",
        "/api/rooms?after=",
    ] {
        app.get(bad, Some(&reader)).await.assert_error(400, "invalid_query");
    }
}
