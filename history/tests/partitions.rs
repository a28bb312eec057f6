//! Day partitions and retention on a real PostgreSQL: rows land in their day's partition, the maintenance job
//! makes the days ahead, and with a retention whole partitions older than it are dropped while newer history
//! stays.

use chrono::{DateTime, Days, NaiveDate, Utc};
use natter_history::partitions::maintain;
use natter_test_support::TestDb;
use sqlx::PgPool;

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

async fn store(db: &PgPool, seq: i64, at: DateTime<Utc>) {
    sqlx::query(
        "INSERT INTO messages (epoch, seq, room_id, client_id, user_id, user_name, body, sent_at) \
         VALUES (1, $1, 'lobby', $2, 'u1', 'alice', 'hi', $3) ON CONFLICT (epoch, seq, sent_at) DO NOTHING",
    )
    .bind(seq)
    .bind(format!("m{seq}"))
    .bind(at)
    .execute(db)
    .await
    .expect("insert");
}

/// Each row's seq and the partition holding it, by seq.
async fn placed(db: &PgPool) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT seq, tableoid::regclass::text FROM messages ORDER BY seq")
        .fetch_all(db)
        .await
        .expect("rows")
}

#[tokio::test]
async fn old_days_go_a_partition_at_a_time_and_newer_history_stays() {
    let db = TestDb::create().await;
    let pool = PgPool::connect(db.url()).await.expect("db");
    natter_history::migrate(&pool).await.expect("migrate");
    let today = Utc::now().date_naive();
    let day = |n: u64| today.checked_add_days(Days::new(n)).expect("day");
    let name = |n: u64| format!("messages_p{}", day(n).format("%Y%m%d"));

    // Ten days on, the job makes that day's partition and the three after it.
    let later = midnight(day(10));
    let made = maintain(&pool, later, None).await.expect("maintain");
    assert_eq!(made.created, vec![name(10), name(11), name(12), name(13)]);
    assert_eq!(
        maintain(&pool, later, None).await.expect("again").created,
        Vec::<String>::new()
    );

    let yesterday = midnight(today) - chrono::Duration::hours(1);
    store(&pool, 1, yesterday).await;
    store(&pool, 2, midnight(day(1)) + chrono::Duration::hours(5)).await;
    store(&pool, 3, midnight(day(4))).await; // no partition that day: the default one
    store(&pool, 4, midnight(day(6))).await; // nor that one
    store(&pool, 5, later).await;
    store(&pool, 5, later).await; // a redelivery
    let before = format!("messages_before_{}", today.format("%Y%m%d"));
    assert_eq!(
        placed(&pool).await,
        vec![
            (1, before.clone()),
            (2, name(1)),
            (3, "messages_default".to_owned()),
            (4, "messages_default".to_owned()),
            (5, name(10)),
        ]
    );

    // Keeping five days: everything before day 5 goes, whole partitions and the default partition's old rows.
    let kept = maintain(&pool, later, Some(std::time::Duration::from_secs(5 * 86_400)))
        .await
        .expect("retention");
    let mut dropped = kept.dropped.clone();
    dropped.sort();
    let mut want = vec![before, name(0), name(1), name(2), name(3)];
    want.sort();
    assert_eq!(dropped, want);
    assert_eq!(kept.deleted_from_default, 1);
    assert_eq!(
        placed(&pool).await,
        vec![(4, "messages_default".to_owned()), (5, name(10))]
    );
    // Without a retention nothing is dropped.
    assert!(
        maintain(&pool, later, None)
            .await
            .expect("no retention")
            .dropped
            .is_empty()
    );
}

#[tokio::test]
async fn one_maintainer_at_a_time() {
    let db = TestDb::create().await;
    let pool = PgPool::connect(db.url()).await.expect("db");
    natter_history::migrate(&pool).await.expect("migrate");
    let at = midnight(Utc::now().date_naive().checked_add_days(Days::new(30)).expect("day"));
    let (a, b) = tokio::join!(maintain(&pool, at, None), maintain(&pool, at, None));
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(a.created.len() + b.created.len(), 4, "{a:?} {b:?}");
}
