//! Day partitions of `messages` and history retention: each day's partition is created ahead of time, and with a
//! retention the partitions wholly older than it are dropped (a `DROP TABLE`, cheap whatever their size, never a
//! huge `DELETE`). Run by the persister at start and every hour (see [`EVERY`]); any number of persisters may run
//! it, one at a time under an advisory lock.

use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::PgPool;

/// How often the persister runs [`maintain`].
pub const EVERY: Duration = Duration::from_secs(3600);

/// Days of partitions kept ready after today.
pub const DAYS_AHEAD: u64 = 3;

/// The advisory lock held while maintaining ("natter-h" in ASCII).
const LOCK: i64 = 0x6e61_7474_6572_2d68;

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Maintenance {
    /// Whether this run held the lock (another process may have been maintaining).
    pub ran: bool,
    /// Partitions created.
    pub created: Vec<String>,
    /// Partitions dropped for being older than the retention.
    pub dropped: Vec<String>,
    /// Rows older than the retention deleted from the default partition.
    pub deleted_from_default: u64,
    /// Reactions deleted with the messages they were to.
    pub reactions_deleted: u64,
}

/// The partition for the day `day`.
fn day_partition(day: NaiveDate) -> String {
    format!("messages_p{}", day.format("%Y%m%d"))
}

/// When the rows of partition `name` end, for the partitions this module and the migrations create: a day's
/// (`messages_pYYYYMMDD`) at the next midnight, the one for rows stored before partitioning
/// (`messages_before_YYYYMMDD`) at that day's.
fn partition_end(name: &str) -> Option<NaiveDate> {
    let parse = |digits: &str| NaiveDate::parse_from_str(digits, "%Y%m%d").ok();
    if let Some(day) = name.strip_prefix("messages_p") {
        parse(day)?.checked_add_days(Days::new(1))
    } else {
        parse(name.strip_prefix("messages_before_")?)
    }
}

/// Makes sure today's and the next [`DAYS_AHEAD`] days' partitions exist as of `now`; with `retention`, drops
/// the partitions whose every row is older than `now - retention` and deletes such rows from the default
/// partition. History is thus kept at least `retention`, and at most a day longer.
pub async fn maintain(
    db: &PgPool,
    now: DateTime<Utc>,
    retention: Option<Duration>,
) -> Result<Maintenance, sqlx::Error> {
    let mut conn = db.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(Maintenance::default());
    }
    let result = maintain_locked(&mut conn, now, retention).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK)
        .execute(&mut *conn)
        .await;
    result
}

async fn maintain_locked(
    conn: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
    retention: Option<Duration>,
) -> Result<Maintenance, sqlx::Error> {
    let mut done = Maintenance {
        ran: true,
        ..Maintenance::default()
    };
    let partitions: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'messages'::regclass",
    )
    .fetch_all(&mut *conn)
    .await?;
    // Days already covered up to: nothing is created over the partition of older rows.
    let covered_until = partitions
        .iter()
        .filter(|name| name.starts_with("messages_before_"))
        .filter_map(|name| partition_end(name))
        .max();
    let today = now.date_naive();
    for ahead in 0..=DAYS_AHEAD {
        let Some(day) = today.checked_add_days(Days::new(ahead)) else {
            continue;
        };
        let name = day_partition(day);
        if partitions.contains(&name) || covered_until.is_some_and(|end| day < end) {
            continue;
        }
        let Some(next) = day.checked_add_days(Days::new(1)) else {
            continue;
        };
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF messages FOR VALUES FROM ('{day} 00:00:00+00') TO \
             ('{next} 00:00:00+00')"
        );
        match sqlx::query(sqlx::AssertSqlSafe(create.clone()))
            .execute(&mut *conn)
            .await
        {
            Ok(_) => done.created.push(name),
            // Rows of that day already in the default partition (the job did not run in time) keep it from
            // being created; they stay there, and retention still deletes them in time.
            Err(err) => tracing::warn!(partition = %name, error = %err, "cannot create a history partition"),
        }
    }
    let Some(retention) = retention else { return Ok(done) };
    let Some(cutoff) = chrono::Duration::from_std(retention)
        .ok()
        .and_then(|r| now.checked_sub_signed(r))
    else {
        return Ok(done);
    };
    for name in &partitions {
        let Some(end) = partition_end(name) else { continue };
        if end.and_hms_opt(0, 0, 0).is_some_and(|end| end.and_utc() <= cutoff) {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {name}")))
                .execute(&mut *conn)
                .await?;
            done.dropped.push(name.clone());
        }
    }
    done.deleted_from_default = sqlx::query("DELETE FROM messages_default WHERE sent_at < $1")
        .bind(cutoff)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    // Reactions to messages that went with them.
    if !done.dropped.is_empty() || done.deleted_from_default > 0 {
        done.reactions_deleted = sqlx::query(
            "DELETE FROM reactions r WHERE NOT EXISTS \
             (SELECT 1 FROM messages m WHERE m.room_id = r.room_id AND m.position = r.target)",
        )
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_end_at_the_midnight_after_their_day() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        assert_eq!(partition_end("messages_p20261231"), Some(day(2027, 1, 1)));
        assert_eq!(partition_end("messages_before_20261202"), Some(day(2026, 12, 2)));
        assert_eq!(partition_end("messages_default"), None);
        assert_eq!(partition_end("messages_p2026"), None);
        assert_eq!(day_partition(day(2026, 3, 4)), "messages_p20260304");
    }
}
