//! Searching messages: found by their words as they read now, only in rooms the caller may read, ranked, with
//! bounded pages, a budget, and an index on every partition.

use chrono::Utc;
use natter_history::write::{Row, Rows, Writer};
use natter_proto::bus::{Change, StoredMessage, timestamp};
use natter_proto::frame::UserRef;
use natter_proto::{ClientMsgId, RoomId};
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{Reply, TestApp, access, spawn_app, spawn_app_with};

struct Person {
    id: String,
    name: String,
    token: String,
}

async fn person(app: &TestApp, name: &str) -> Person {
    let body = app.register(name).await;
    Person {
        id: body["user"]["id"].as_str().expect("id").to_owned(),
        name: name.to_owned(),
        token: access(&body).to_owned(),
    }
}

/// Events written the way the persister writes them (its COPY, its folding of edits and deletions).
struct History {
    writer: Writer,
    rows: Rows,
    seq: i64,
}

impl History {
    fn new(app: &TestApp) -> Self {
        Self {
            writer: Writer::new(&app.db_url).expect("a writer"),
            rows: Rows::with_capacity(0, 16),
            seq: 0,
        }
    }

    /// Adds an event by `who` to `room`; returns its position.
    fn event(&mut self, room: &str, who: &Person, body: &str, change: Option<Change>) -> u64 {
        self.seq += 1;
        let now = Utc::now();
        self.rows.push(Row {
            seq: self.seq,
            room: RoomId::parse(room).expect("room id"),
            message: StoredMessage {
                id: ClientMsgId::parse(&format!("c{}", self.seq)).expect("client id"),
                user: UserRef {
                    id: who.id.clone(),
                    name: who.name.clone(),
                },
                body: body.to_owned(),
                ts: timestamp(now),
                reply_to: None,
                mentions: Vec::new(),
                change,
            },
            sent_at: now,
        });
        self.seq as u64
    }

    fn say(&mut self, room: &str, who: &Person, body: &str) -> u64 {
        self.event(room, who, body, None)
    }

    async fn write(&mut self) {
        let rows = std::mem::replace(&mut self.rows, Rows::with_capacity(0, 16));
        self.writer.write(&rows, &[]).await.expect("written");
    }
}

async fn search(app: &TestApp, who: &Person, query: &str) -> Reply {
    app.call(Method::GET, &format!("/api/search?{query}"), Some(&who.token), None)
        .await
}

/// The positions of a page of results, in order.
fn found(reply: &Reply) -> Vec<u64> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|hit| hit["seq"].as_u64().expect("seq"))
        .collect()
}

fn room_id(room: &Value) -> String {
    room["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_search_finds_words_as_they_read_now_and_only_in_rooms_the_caller_may_read() {
    let app = spawn_app().await;
    let alice = person(&app, "alice").await;
    let bob = person(&app, "bob").await;
    let carol = person(&app, "carol").await;
    let open = room_id(&app.create_room(&alice.token, "Open", false).await);
    let alices = room_id(&app.create_room(&alice.token, "Alice's", true).await);
    let carols = room_id(&app.create_room(&carol.token, "Carol's", true).await);
    let elsewhere = room_id(&app.create_room(&carol.token, "Elsewhere", false).await);
    app.post_as(&bob.token, &format!("/api/rooms/{open}/join")).await;

    let mut history = History::new(&app);
    let late = history.say(&open, &alice, "the quarterly report is late");
    let attached = history.say(&open, &bob, "report attached");
    let lunch = history.say(&open, &alice, "lunch anyone?");
    let private = history.say(&alices, &alice, "my report draft, private");
    history.say(&carols, &carol, "carol's own report");
    // A public room bob is not in: searched only when he names it.
    let public_elsewhere = history.say(&elsewhere, &carol, "a report for anyone who looks");
    let twice = history.say(&open, &alice, "report, report: the report");
    history.write().await;
    // bob deletes his message; alice changes her words.
    history.event(&open, &bob, "", Some(Change::Delete { target: attached }));
    history.event(&open, &alice, "dinner anyone?", Some(Change::Edit { target: lunch }));
    history.write().await;

    // Ranked (three times the word first), then newest first among equals; no deleted message, no room bob cannot
    // read, no public room he is not in.
    assert_eq!(found(&search(&app, &bob, "q=report").await), vec![twice, late]);
    let alices_view = found(&search(&app, &alice, "q=REPORT").await);
    assert_eq!(
        alices_view,
        vec![twice, private, late],
        "her private room too, without regard to case"
    );
    // Gone words are not found; the new ones are, marked edited.
    assert!(found(&search(&app, &bob, "q=lunch").await).is_empty());
    assert!(
        found(&search(&app, &alice, "q=attached").await).is_empty(),
        "a deleted message"
    );
    let dinner = search(&app, &bob, "q=dinner").await;
    assert_eq!(found(&dinner), vec![lunch]);
    let hit = &dinner.body["results"][0];
    assert_eq!(hit["edited"], true);
    assert_eq!(hit["body"], "dinner anyone?");
    assert_eq!(hit["room"], open.as_str());
    assert_eq!(hit["room_name"], "Open");
    assert_eq!(hit["user"]["name"], "alice");

    // A private room of others, named: refused; a public one: searched.
    search(&app, &bob, &format!("q=report&room={carols}"))
        .await
        .assert_error(403, "room_private");
    assert_eq!(
        found(&search(&app, &bob, &format!("q=report&room={elsewhere}")).await),
        vec![public_elsewhere]
    );
    search(&app, &bob, "q=report&room=nowhere")
        .await
        .assert_error(404, "room_not_found");
    search(&app, &bob, "q=report&room=no%20such")
        .await
        .assert_error(400, "invalid_room_id");

    // By author, phrases and exclusions as in a web search.
    assert_eq!(
        found(&search(&app, &alice, "q=report&author=ALICE").await),
        vec![twice, private, late]
    );
    assert!(found(&search(&app, &alice, "q=report&author=bob").await).is_empty());
    search(&app, &alice, "q=report&author=nobody")
        .await
        .assert_error(404, "user_not_found");
    assert_eq!(found(&search(&app, &bob, "q=%22is+late%22").await), vec![late]);
    assert_eq!(found(&search(&app, &bob, "q=report+-late").await), vec![twice]);
    // Punctuation makes no search term: nothing, not an error.
    assert!(found(&search(&app, &bob, "q=%21%3F%21").await).is_empty());

    // Pages.
    let first = search(&app, &alice, "q=report&limit=2").await;
    assert_eq!(found(&first), vec![twice, private]);
    assert_eq!(first.body["has_more"], true);
    let second = search(&app, &alice, "q=report&limit=2&offset=2").await;
    assert_eq!(found(&second), vec![late]);
    assert_eq!(second.body["has_more"], false);
}

#[tokio::test]
async fn a_bad_search_is_refused_clearly() {
    let app = spawn_app().await;
    let alice = person(&app, "alice").await;
    for query in [
        "",
        "q=",
        "q=%20%20",
        "q=report&limit=0",
        "q=report&limit=51",
        "q=report&offset=501",
        "q=report&limit=ten",
    ] {
        search(&app, &alice, query).await.assert_error(400, "invalid_query");
    }
    let long = "w".repeat(201);
    search(&app, &alice, &format!("q={long}"))
        .await
        .assert_error(400, "invalid_query");
    let anonymous = app.call(Method::GET, "/api/search?q=report", None, None).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
}

#[tokio::test]
async fn searches_spend_their_own_budget() {
    let app = spawn_app_with(&["--user-searches-per-minute", "2"]).await;
    let alice = person(&app, "alice").await;
    let bob = person(&app, "bob").await;
    for _ in 0..2 {
        found(&search(&app, &alice, "q=anything").await);
    }
    search(&app, &alice, "q=anything")
        .await
        .assert_error(429, "rate_limited");
    // Others are not held up; and the rest of the API still answers alice.
    found(&search(&app, &bob, "q=anything").await);
    assert_eq!(app.get("/api/rooms", Some(&alice.token)).await.status, 200);
}

#[tokio::test]
async fn every_partition_has_its_search_index_including_ones_made_later() {
    let app = spawn_app().await;
    sqlx::query(
        "CREATE TABLE messages_p21000101 PARTITION OF messages FOR VALUES FROM ('2100-01-01') TO ('2100-01-02')",
    )
    .execute(&app.db)
    .await
    .expect("a later partition");
    let partitions: Vec<String> =
        sqlx::query_scalar("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'messages'::regclass")
            .fetch_all(&app.db)
            .await
            .expect("partitions");
    let indexed: Vec<String> = sqlx::query_scalar(
        "SELECT x.indrelid::regclass::text FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid \
         WHERE i.inhparent = 'messages_search_idx'::regclass",
    )
    .fetch_all(&app.db)
    .await
    .expect("search indexes");
    assert!(partitions.len() >= 5, "{partitions:?}");
    let mut missing: Vec<&String> = partitions.iter().filter(|p| !indexed.contains(p)).collect();
    missing.sort();
    assert!(missing.is_empty(), "partitions without a search index: {missing:?}");
}

#[tokio::test]
async fn a_direct_conversation_is_searched_by_its_two_people_and_named_after_the_other() {
    let app = spawn_app().await;
    let (ann, bob, eve) = (
        person(&app, "ann").await,
        person(&app, "bob").await,
        person(&app, "eve").await,
    );
    let made = app
        .call(
            Method::POST,
            "/api/conversations/direct",
            Some(&ann.token),
            Some(serde_json::json!({"user": "bob"})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let dm = room_id(&made.body);
    let mut history = History::new(&app);
    let seq = history.say(&dm, &ann, "the lighthouse keys are under the mat");
    history.write().await;

    // Each finds it, named after the other person, as their sidebar names it.
    for (who, shown) in [(&ann, "bob"), (&bob, "ann")] {
        let reply = search(&app, who, "q=lighthouse").await;
        assert_eq!(found(&reply), vec![seq]);
        assert_eq!(reply.body["results"][0]["room"], dm.as_str());
        assert_eq!(reply.body["results"][0]["room_name"], shown, "{}", reply.body);
    }
    // Someone else finds nothing, and asking for the conversation by id is refused.
    assert!(found(&search(&app, &eve, "q=lighthouse").await).is_empty());
    search(&app, &eve, &format!("q=lighthouse&room={dm}"))
        .await
        .assert_error(403, "room_private");
}
