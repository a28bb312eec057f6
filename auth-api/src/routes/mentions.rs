//! "Mentions of me": the messages that mention the caller, newest first, across the rooms they are in.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use natter_proto::frame::UserRef;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::AuthUser;
use crate::state::AppState;

/// Largest page.
pub const MAX_LIMIT: i64 = 100;

/// Which page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MentionsQuery {
    /// Mentions before this position (a `seq` of the previous page's last one); the newest without it.
    #[param(minimum = 0)]
    pub before: Option<i64>,
    /// Page size, 1 to 100 (default 30).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// A message that mentions the caller.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MentionOfMe {
    /// The room's id.
    pub room: String,
    /// The room's name (for a direct conversation, the other person's).
    pub room_name: String,
    /// The message's position in the room.
    pub seq: u64,
    /// Who wrote it.
    #[schema(value_type = Object)]
    pub user: UserRef,
    /// Its text as it reads now.
    pub body: String,
    /// When it was sent (RFC 3339).
    pub ts: String,
}

/// A page of mentions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Mentions {
    /// Newest first.
    pub mentions: Vec<MentionOfMe>,
    /// Whether older ones remain (ask with `before` = the last one's `seq`).
    pub has_more: bool,
}

/// The messages that mention the caller (`@name`, resolved by the server against each room's members when sent),
/// newest first, in the rooms and conversations the caller is in now; deleted messages are left out.
#[utoipa::path(get, path = "/api/mentions", tag = "rooms", security(("bearer" = [])), params(MentionsQuery),
    responses(
        (status = 200, description = "A page of mentions", body = Mentions),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn my_mentions(
    State(state): State<AppState>,
    user: AuthUser,
    query: Result<Query<MentionsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Mentions>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(30);
    let before = query.before.unwrap_or(i64::MAX);
    if !(1..=MAX_LIMIT).contains(&limit) || before < 0 {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1 to {MAX_LIMIT}, and before a position"),
        ));
    }
    let rooms = crate::routes::rooms::names_of_rooms_of(&state, user.id).await?;
    let ids: Vec<String> = rooms.iter().map(|(id, _)| id.clone()).collect();
    let names: HashMap<String, String> = rooms.into_iter().collect();
    let (found, has_more) = natter_history::mentions::of(&state.db, &user.id.to_string(), &ids, before, limit).await?;
    let mentions = found
        .into_iter()
        .map(|m| MentionOfMe {
            room_name: names.get(&m.room).cloned().unwrap_or_default(),
            room: m.room,
            seq: m.seq,
            user: m.user,
            body: m.body,
            ts: m.ts,
        })
        .collect();
    Ok(Json(Mentions { mentions, has_more }))
}
