//! The messages that mention a user, newest first, across the rooms the caller says they may read: the
//! `messages_mentions_idx` index of each partition answers `mentions @> [{"id": user}]`.

use chrono::{DateTime, Utc};
use natter_proto::bus::timestamp;
use natter_proto::frame::UserRef;
use sqlx::PgPool;

/// A message mentioning the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// The room.
    pub room: String,
    /// The message's position.
    pub seq: u64,
    /// Its author.
    pub user: UserRef,
    /// Its text as it reads now.
    pub body: String,
    /// When it was sent (RFC 3339).
    pub ts: String,
}

/// Up to `limit` messages before position `before` in `rooms` that mention `user` (a user id), newest first (not
/// deleted ones); whether more lie beyond.
pub async fn of(
    db: &PgPool,
    user: &str,
    rooms: &[String],
    before: i64,
    limit: i64,
) -> Result<(Vec<Mention>, bool), sqlx::Error> {
    if rooms.is_empty() {
        return Ok((Vec::new(), false));
    }
    let mut rows: Vec<(String, i64, String, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT room_id, position, user_id, user_name, body, sent_at FROM messages \
         WHERE mentions @> jsonb_build_array(jsonb_build_object('id', $1::text)) AND mentions IS NOT NULL \
           AND kind = 'message' AND deleted_at IS NULL AND room_id = ANY($2) AND position < $3 \
         ORDER BY position DESC LIMIT $4",
    )
    .bind(user)
    .bind(rooms)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    Ok((
        rows.into_iter()
            .map(|(room, position, user_id, user_name, body, sent_at)| Mention {
                room,
                seq: u64::try_from(position).unwrap_or_default(),
                user: UserRef {
                    id: user_id,
                    name: user_name,
                },
                body,
                ts: timestamp(sent_at),
            })
            .collect(),
        has_more,
    ))
}
