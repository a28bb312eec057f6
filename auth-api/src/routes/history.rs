//! Chat history, as the persister stored it: keyset pages of a room by position (`seq`: the stream's epoch plus
//! the message's sequence in it, increasing across recreations of the stream; see docs/protocol.md).

use axum::Json;
use axum::extract::{Query, State};
use natter_history::page::Page;
use natter_proto::bus::HistoryMessage;
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
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Messages before this sequence, newest first (the default, without `before` or `after`: the newest). Not
    /// with `after`: both at once are a 400 `invalid_query`.
    pub before: Option<i64>,
    /// Messages after this sequence, oldest first (catching up forward). Not with `before`.
    pub after: Option<i64>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One page of history: messages as they are now, and the changes to messages (edits, deletions, reactions) as
/// events in their places, so a client filling a gap can apply them (see docs/protocol.md, "History").
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    /// The events: newest first for `before` (and by default), oldest first for `after`.
    pub messages: Vec<HistoryMessage>,
    /// Whether more messages lie beyond this page in the same direction.
    pub has_more: bool,
}

/// A room's messages, a page at a time (private rooms: members only).
#[utoipa::path(get, path = "/api/rooms/{id}/messages", tag = "rooms", security(("bearer" = [])),
    params(RoomPath, HistoryQuery),
    responses(
        (status = 200, description = "A page of messages", body = HistoryPage),
        (status = 400, description = "`invalid_room_id`, `invalid_query` (a parameter not a number or out of range, \
            or both `before` and `after`)", body = ErrorBody),
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
    let page = match (query.before, query.after) {
        (_, Some(after)) => Page::After(after),
        (Some(before), None) => Page::Before(before),
        (None, None) => Page::Before(i64::MAX),
    };
    let (messages, has_more) = natter_history::page::read(&state.db, &room, &user.id.to_string(), page, limit).await?;
    Ok(Json(HistoryPage { messages, has_more }))
}
