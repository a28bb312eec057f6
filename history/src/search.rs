//! Full-text search of messages as they read now: a message's current text (an edit's words replace the old ones,
//! a deletion empties it), matched with PostgreSQL's full-text search over the `messages_search_idx` index of each
//! partition, ranked, newest first among equals.
//!
//! The caller decides which rooms a search may see; this module never widens that set. A search's cost is
//! bounded by a statement timeout and a page size.

use std::time::Duration;

use chrono::{DateTime, Utc};
use natter_proto::bus::timestamp;
use natter_proto::frame::UserRef;
use sqlx::PgPool;

/// Longest a search runs before it is cancelled ([`SearchError::TooCostly`]).
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Most results a page holds.
pub const MAX_LIMIT: i64 = 50;

/// Deepest a page may start: a search is a question, not a way to read a room (that is the history API's).
pub const MAX_OFFSET: i64 = 500;

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;

/// What to look for, where.
#[derive(Debug, Clone)]
pub struct Search<'a> {
    /// The words, in web-search syntax: words all present, `"a phrase"`, `or`, `-word` (PostgreSQL's
    /// `websearch_to_tsquery`).
    pub words: &'a str,
    /// The rooms searched: the caller's to choose, and only rooms the user may read.
    pub rooms: &'a [String],
    /// Only messages by this user id.
    pub author: Option<&'a str>,
    /// Page size, 1 to [`MAX_LIMIT`].
    pub limit: i64,
    /// Results skipped, 0 to [`MAX_OFFSET`].
    pub offset: i64,
}

/// A message found.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The room.
    pub room: String,
    /// Its position (`seq`).
    pub seq: u64,
    /// The author.
    pub user: UserRef,
    /// Its text as it reads now.
    pub body: String,
    /// When it was sent (RFC 3339).
    pub ts: String,
    /// Whether it was edited.
    pub edited: bool,
    /// How well it matches (PostgreSQL's `ts_rank`): larger is better.
    pub rank: f32,
}

/// Why a search found nothing to answer with.
#[derive(Debug)]
pub enum SearchError {
    /// It ran past [`TIMEOUT`]: the words match too much to rank in time.
    TooCostly,
    /// The database failed.
    Db(sqlx::Error),
}

impl From<sqlx::Error> for SearchError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            // query_canceled: the statement timeout.
            sqlx::Error::Database(db) if db.code().as_deref() == Some("57014") => SearchError::TooCostly,
            _ => SearchError::Db(err),
        }
    }
}

type HitRow = (String, i64, String, String, String, DateTime<Utc>, bool, f32);

/// Finds messages matching `search`, best first (then newest); whether more lie beyond this page. Words that make
/// no search term (punctuation only) find nothing.
pub async fn find(db: &PgPool, search: &Search<'_>) -> Result<(Vec<Hit>, bool), SearchError> {
    if search.rooms.is_empty() {
        return Ok((Vec::new(), false));
    }
    let mut tx = db.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL statement_timeout = {}",
        TIMEOUT.as_millis()
    )))
    .execute(&mut *tx)
    .await?;
    // Planned for its words each time: after five runs PostgreSQL would keep a generic plan, which cannot tell a
    // rare word (an index lookup, ~1 ms) from a common one and scans every searched room's messages instead
    // (~100 ms on a million messages; docs/benchmarks.md).
    sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
        .execute(&mut *tx)
        .await?;
    // The expression and the predicate match `messages_search_idx`, so each partition's index answers.
    let mut rows: Vec<HitRow> = sqlx::query_as(
        "WITH q AS (SELECT websearch_to_tsquery('simple', $1) AS q) \
         SELECT m.room_id, m.position, m.user_id, m.user_name, m.body, m.sent_at, m.edited_at IS NOT NULL, \
                ts_rank(to_tsvector('simple', m.body), q.q) AS rank \
         FROM messages m, q \
         WHERE m.kind = 'message' AND to_tsvector('simple', m.body) @@ q.q \
           AND m.deleted_at IS NULL AND m.room_id = ANY($2) AND ($3::text IS NULL OR m.user_id = $3) \
         ORDER BY rank DESC, m.position DESC LIMIT $4 OFFSET $5",
    )
    .bind(search.words)
    .bind(search.rooms)
    .bind(search.author)
    .bind(search.limit + 1)
    .bind(search.offset)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let has_more = rows.len() as i64 > search.limit;
    rows.truncate(usize::try_from(search.limit).unwrap_or(0));
    let hits = rows
        .into_iter()
        .map(
            |(room, position, user_id, user_name, body, sent_at, edited, rank)| Hit {
                room,
                seq: u64::try_from(position).unwrap_or_default(),
                user: UserRef {
                    id: user_id,
                    name: user_name,
                },
                body,
                ts: timestamp(sent_at),
                edited,
                rank,
            },
        )
        .collect();
    Ok((hits, has_more))
}
