//! Both schemas' migrations on a real PostgreSQL, applied as the services apply them: in either order, at once,
//! and again.

use natter_test_support::TestDb;
use sqlx::PgPool;

async fn applied(db: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(db)
        .await
        .expect("versions")
}

async fn accounts(db: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    natter_history::run(sqlx::migrate!("../auth-api/migrations"), db).await
}

#[tokio::test]
async fn the_persister_may_migrate_first_and_each_service_ignores_the_others_versions() {
    let db = TestDb::create().await;
    let pool = PgPool::connect(db.url()).await.expect("db");
    // A persister on a fresh database: the history tables only.
    natter_history::migrate(&pool).await.expect("history first");
    assert_eq!(applied(&pool).await, vec![2, 4, 5, 9, 10, 13]);
    // Then the auth API: history (nothing left to do), then its accounts.
    natter_history::migrate(&pool).await.expect("history again");
    accounts(&pool).await.expect("accounts after");
    assert_eq!(applied(&pool).await, (1..=14).collect::<Vec<i64>>());
    // A persister restarting sees versions it does not hold, and is fine with them.
    natter_history::migrate(&pool)
        .await
        .expect("history with the accounts' versions applied");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('messages', 'dead_letters', 'rooms')",
    )
    .fetch_one(&pool)
    .await
    .expect("tables");
    assert_eq!(tables, 3);
}

#[tokio::test]
async fn services_starting_together_each_migrate_once() {
    let db = TestDb::create().await;
    let persister = PgPool::connect(db.url()).await.expect("db");
    let api = PgPool::connect(db.url()).await.expect("db");
    let (history, both) = tokio::join!(natter_history::migrate(&persister), async {
        natter_history::migrate(&api).await?;
        accounts(&api).await
    });
    history.expect("the persister migrates");
    both.expect("the auth API migrates");
    assert_eq!(applied(&persister).await, (1..=14).collect::<Vec<i64>>());
}
