//! PostgreSQL roles of least privilege (deploy/postgres/roles.sql): after the owner migrates, the API and the
//! persister each connect as a role allowed only their own part, the exporter only reads statistics, and nobody
//! but the owner changes the schema.

use natter_test_support::PgServer;
use reqwest::StatusCode;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The owner's URL of a database on `pg` connecting as `role` instead.
fn as_role(url: &str, role: &str) -> String {
    url.replacen(
        "postgres://postgres@",
        &format!("postgres://{role}:secret-of-{role}@"),
        1,
    )
}

async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .expect("connects")
}

/// Whether `sql` is refused to `db` for want of a privilege.
async fn denied(db: &PgPool, sql: &str) -> bool {
    match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(db).await {
        Ok(_) => false,
        Err(err) => {
            let text = err.to_string();
            assert!(
                text.contains("permission denied") || text.contains("must be owner"),
                "{sql}: {text}"
            );
            true
        }
    }
}

#[tokio::test]
async fn each_service_role_may_do_only_its_own_part() {
    // A cluster of its own: roles belong to the whole cluster.
    let pg = PgServer::start();
    let owner_url = pg.create_database().await;
    let owner = pool(&owner_url).await;
    // The owner migrates (what `natter-auth-api --migrate-only` does), then gives out the roles.
    natter_auth_api::startup::migrate(&owner)
        .await
        .expect("the owner migrates");
    let mut conn = owner.acquire().await.expect("a connection");
    for role in ["api", "persister", "exporter"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET natter.{role}_password = 'secret-of-natter_{role}'"
        )))
        .execute(&mut *conn)
        .await
        .expect("set a password setting");
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(include_str!("../../../deploy/postgres/roles.sql")))
        .execute(&mut *conn)
        .await
        .expect("deploy/postgres/roles.sql runs");
    drop(conn);

    // The API as natter_api: starts on the current schema without migrating, and serves.
    let api_url = as_role(&owner_url, "natter_api");
    let api = crate::helpers::spawn_app_on(api_url.clone(), &[]).await;
    let token = api.token_for("rita").await;
    let room = api.create_room(&token, "roles", false).await;
    let room_id = room["id"].as_str().expect("id");
    let history = api.get(&format!("/api/rooms/{room_id}/messages"), Some(&token)).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    // Search, bans and moderators: each of its tables and indexes within its grants.
    let found = api.get("/api/search?q=anything", Some(&token)).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    let pest = api.register("pest").await;
    let pest_id = pest["user"]["id"].as_str().expect("id");
    let banned = api
        .post_as(&token, &format!("/api/rooms/{room_id}/members/{pest_id}/ban"))
        .await;
    assert_eq!(banned.status, StatusCode::NO_CONTENT, "{}", banned.body);
    let bans = api.get(&format!("/api/rooms/{room_id}/bans"), Some(&token)).await;
    assert_eq!(bans.status, StatusCode::OK, "{}", bans.body);
    let as_api = pool(&api_url).await;
    assert!(
        denied(
            &as_api,
            "INSERT INTO messages (seq, room_id, client_id, user_id, user_name, body, sent_at) \
                            VALUES (1, 'r', 'c', 'u', 'n', 'forged', now())"
        )
        .await
    );
    assert!(
        denied(&as_api, "CREATE TABLE api_made (x int)").await,
        "the API changes no schema"
    );
    assert!(denied(&as_api, "DROP TABLE dead_letters").await);

    // The persister's role: the history is its own, nothing else is.
    let as_persister = pool(&as_role(&owner_url, "natter_persister")).await;
    for table in [
        "signing_keys",
        "users",
        "token_families",
        "refresh_tokens",
        "memberships",
    ] {
        assert!(
            denied(&as_persister, &format!("SELECT * FROM {table}")).await,
            "the persister reads {table}"
        );
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(
        "INSERT INTO messages (seq, room_id, client_id, user_id, user_name, body, sent_at) \
         VALUES (1, 'r', 'c', 'u', 'n', 'stored', now())"
            .to_owned(),
    ))
    .execute(&as_persister)
    .await
    .expect("the persister stores a message");
    let later = chrono::Utc::now() + chrono::Duration::days(10);
    let done = natter_history::partitions::maintain(&as_persister, later, None)
        .await
        .expect("the persister makes day partitions");
    assert!(!done.created.is_empty(), "{done:?}");
    natter_history::migrate(&as_persister)
        .await
        .expect("a current schema: nothing to migrate");

    // The exporter: statistics, no table of Natter's.
    let as_exporter = pool(&as_role(&owner_url, "natter_exporter")).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe("SELECT * FROM pg_stat_database".to_owned()))
        .execute(&as_exporter)
        .await
        .expect("the exporter reads statistics");
    assert!(denied(&as_exporter, "SELECT * FROM messages").await);
    assert!(denied(&as_exporter, "SELECT * FROM users").await);

    // A schema behind (an upgrade not migrated yet): the API's role may not migrate it, and says what to do.
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)")
        .execute(&owner)
        .await
        .expect("forget the last migration");
    let err = natter_auth_api::startup::migrate(&as_api)
        .await
        .expect_err("not the API's to migrate");
    assert!(format!("{err:#}").contains("--migrate-only"), "{err:#}");
}
