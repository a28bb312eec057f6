//! Reading history: a room's events a page at a time, each message as it is now (its current text or its
//! tombstone, when it was last edited, its reactions as the caller sees them) and each change event as it was
//! sent, in `seq` order, so a client can show a page as is, or fill a gap by applying the changes it holds.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use natter_proto::bus::{Change, EditMark, HistoryMessage, ReactionCount, StoredMessage, Tombstone, timestamp};
use natter_proto::frame::UserRef;
use natter_proto::{ClientMsgId, RoomId};
use sqlx::PgPool;

/// Which page of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest events before this position, newest first.
    Before(i64),
    /// The oldest events after this position, oldest first.
    After(i64),
}

/// A row of `messages` as a page reads it.
#[derive(sqlx::FromRow)]
struct Row {
    position: i64,
    client_id: String,
    user_id: String,
    user_name: String,
    body: String,
    sent_at: DateTime<Utc>,
    kind: String,
    target: Option<i64>,
    reply_to: Option<i64>,
    emoji: Option<String>,
    reaction_on: Option<bool>,
    edited_at: Option<DateTime<Utc>>,
    edit_position: Option<i64>,
    deleted_at: Option<DateTime<Utc>>,
    deleted_by: Option<String>,
    mentions: Option<String>,
}

/// The columns of [`Row`].
const COLUMNS: &str = "position, client_id, user_id, user_name, body, sent_at, kind, target, reply_to, emoji, \
                       reaction_on, edited_at, edit_position, deleted_at, deleted_by, mentions::text AS mentions";

/// Reads up to `limit` events of `room` from `page` for `caller` (whose reactions are marked `me`); whether more
/// lie beyond.
pub async fn read(
    db: &PgPool,
    room: &RoomId,
    caller: &str,
    page: Page,
    limit: i64,
) -> Result<(Vec<HistoryMessage>, bool), sqlx::Error> {
    let (sql, cursor) = match page {
        Page::After(after) => (
            format!(
                "SELECT {COLUMNS} FROM messages WHERE room_id = $1 AND position > $2 ORDER BY position ASC LIMIT $3"
            ),
            after,
        ),
        Page::Before(before) => (
            format!(
                "SELECT {COLUMNS} FROM messages WHERE room_id = $1 AND position < $2 ORDER BY position DESC LIMIT $3"
            ),
            before,
        ),
    };
    // One more than the page: whether it came tells if there is more.
    let mut rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(room.as_str())
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(db)
        .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let targets: Vec<i64> = rows
        .iter()
        .filter(|r| r.kind == "message")
        .map(|r| r.position)
        .collect();
    let mut reactions = reactions_of(db, room, caller, &targets).await?;
    let events = rows
        .into_iter()
        .filter_map(|row| {
            let (counts, seq) = reactions.remove(&row.position).unwrap_or_default();
            event(row, counts, seq)
        })
        .collect();
    Ok((events, has_more))
}

/// One emoji's reactions to one message: target, emoji, users with it now, whether the caller is one, the newest
/// reaction event, the oldest present one, the users with it.
type ReactionRow = (i64, String, i64, Option<bool>, i64, Option<i64>, Option<Vec<String>>);

/// The reactions to `targets`: each message's counts (most first, then the emoji used first) and the newest
/// reaction event folded in.
async fn reactions_of(
    db: &PgPool,
    room: &RoomId,
    caller: &str,
    targets: &[i64],
) -> Result<HashMap<i64, (Vec<ReactionCount>, u64)>, sqlx::Error> {
    if targets.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<ReactionRow> = sqlx::query_as(
        "SELECT target, emoji, count(*) FILTER (WHERE present), bool_or(present AND user_id = $2), max(position), \
           min(position) FILTER (WHERE present), array_agg(user_id ORDER BY position) FILTER (WHERE present) \
         FROM reactions WHERE room_id = $1 AND target = ANY($3) GROUP BY target, emoji",
    )
    .bind(room.as_str())
    .bind(caller)
    .bind(targets)
    .fetch_all(db)
    .await?;
    let mut gathered: HashMap<i64, (Vec<(i64, ReactionCount)>, u64)> = HashMap::new();
    for (target, emoji, count, me, newest, first, users) in rows {
        let entry = gathered.entry(target).or_default();
        entry.1 = entry.1.max(u64::try_from(newest).unwrap_or(0));
        if count > 0 {
            let reaction = ReactionCount {
                emoji,
                count: u32::try_from(count).unwrap_or(u32::MAX),
                me: me.unwrap_or(false),
                users: users.unwrap_or_default(),
            };
            entry.0.push((first.unwrap_or(i64::MAX), reaction));
        }
    }
    Ok(gathered
        .into_iter()
        .map(|(target, (mut counts, newest))| {
            counts.sort_by(|(a_first, a), (b_first, b)| b.count.cmp(&a.count).then(a_first.cmp(b_first)));
            (target, (counts.into_iter().map(|(_, c)| c).collect(), newest))
        })
        .collect())
}

/// A row as the event it holds; `None` (and a warning) for one whose client id is no longer valid.
fn event(row: Row, reactions: Vec<ReactionCount>, reactions_seq: u64) -> Option<HistoryMessage> {
    let seq = u64::try_from(row.position).unwrap_or_default();
    let id = match ClientMsgId::parse(&row.client_id) {
        Ok(id) => id,
        Err(err) => {
            tracing::warn!(seq, error = %err, "a stored message has an invalid id; left out of history");
            return None;
        }
    };
    let target = row.target.and_then(|t| u64::try_from(t).ok()).unwrap_or(0);
    let change = match row.kind.as_str() {
        "edit" => Some(Change::Edit { target }),
        "delete" => Some(Change::Delete { target }),
        "react" => Some(Change::React {
            target,
            emoji: row.emoji.unwrap_or_default(),
            on: row.reaction_on.unwrap_or(false),
        }),
        _ => None,
    };
    Some(HistoryMessage {
        seq,
        message: StoredMessage {
            id,
            user: UserRef {
                id: row.user_id,
                name: row.user_name,
            },
            body: row.body,
            ts: timestamp(row.sent_at),
            reply_to: row.reply_to.and_then(|r| u64::try_from(r).ok()),
            mentions: row
                .mentions
                .and_then(|m| serde_json::from_str(&m).ok())
                .unwrap_or_default(),
            change,
        },
        edited: row.edited_at.zip(row.edit_position).map(|(at, seq)| EditMark {
            seq: u64::try_from(seq).unwrap_or_default(),
            at: timestamp(at),
        }),
        deleted: row.deleted_at.map(|at| Tombstone {
            by: row.deleted_by.unwrap_or_default(),
            at: timestamp(at),
        }),
        reactions,
        reactions_seq,
    })
}
