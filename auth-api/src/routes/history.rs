//! Chat history, as the persister stored it: keyset pages of a room by position (`seq`: the stream's epoch plus
//! the message's sequence in it, increasing across recreations of the stream; see docs/protocol.md).

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use natter_proto::ClientMsgId;
use natter_proto::bus::{HistoryMessage, StoredMessage};
use natter_proto::frame::UserRef;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, RoomPath};
use crate::routes::rooms::visible_room;
use crate::state::AppState;

/// Largest page.
pub const MAX_LIMIT: i64 = 200;

/// Which page.
#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// Messages before this sequence, newest first (the default, without `before` or `after`: the newest).
    pub before: Option<i64>,
    /// Messages after this sequence, oldest first (catching up forward).
    pub after: Option<i64>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<i64>,
}

/// One page of history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    /// The messages: newest first for `before` (and by default), oldest first for `after`.
    pub messages: Vec<HistoryMessage>,
    /// Whether more messages lie beyond this page in the same direction.
    pub has_more: bool,
}

type Row = (i64, String, String, String, String, DateTime<Utc>);

/// A row as the message it holds; `None` (and a warning) for one whose client id is no longer valid.
fn history_message((seq, id, user_id, user_name, body, ts): Row) -> Option<HistoryMessage> {
    let id = match ClientMsgId::parse(&id) {
        Ok(id) => id,
        Err(err) => {
            tracing::warn!(seq, error = %err, "a stored message has an invalid id; left out of history");
            return None;
        }
    };
    Some(HistoryMessage {
        seq: u64::try_from(seq).unwrap_or_default(),
        message: StoredMessage {
            id,
            user: UserRef {
                id: user_id,
                name: user_name,
            },
            body,
            ts: natter_proto::bus::timestamp(ts),
        },
    })
}

/// A room's messages, a page at a time (private rooms: members only).
#[utoipa::path(get, path = "/api/rooms/{id}/messages", tag = "rooms", security(("bearer" = [])),
    params(("id" = String, Path, description = "Room id"), HistoryQuery),
    responses(
        (status = 200, description = "A page of messages", body = HistoryPage),
        (status = 400, description = "`invalid_room_id`, `invalid_query`", body = ErrorBody),
        (status = 403, description = "`room_private`", body = ErrorBody),
        (status = 404, description = "`room_not_found`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn room_messages(
    State(state): State<AppState>,
    user: AuthUser,
    RoomPath(room): RoomPath,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<HistoryPage>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    if query.before.is_some() && query.after.is_some() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "give `before` or `after`, not both",
        ));
    }
    visible_room(&state, user.id, &room).await?;
    const COLUMNS: &str =
        "SELECT position, client_id, user_id, user_name, body, sent_at FROM messages WHERE room_id = $1";
    // One more than the page: whether it came tells if there is more.
    let (sql, cursor) = match (query.before, query.after) {
        (_, Some(after)) => (
            format!("{COLUMNS} AND position > $2 ORDER BY position ASC LIMIT $3"),
            after,
        ),
        (Some(before), None) => (
            format!("{COLUMNS} AND position < $2 ORDER BY position DESC LIMIT $3"),
            before,
        ),
        (None, None) => (
            format!("{COLUMNS} AND position < $2 ORDER BY position DESC LIMIT $3"),
            i64::MAX,
        ),
    };
    let mut rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(room.as_str())
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(&state.db)
        .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let messages = rows.into_iter().filter_map(history_message).collect();
    Ok(Json(HistoryPage { messages, has_more }))
}
