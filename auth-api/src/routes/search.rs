//! Searching messages by their words, in the rooms the caller may read (`natter_history::search`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use natter_history::search::{self, MAX_LIMIT, MAX_OFFSET, MAX_QUERY_CHARS, SearchError};
use natter_proto::frame::UserRef;
use natter_proto::{RoomId, Username};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::AuthUser;
use crate::routes::rooms::visible_room;
use crate::state::AppState;

/// What to search for.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The words: all must be in a message; `"a phrase"`, `or` and `-word` work as in a web search. 1 to 200
    /// characters, not all white space, without a NUL character.
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000]*\
            [^\\u0000\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]\
            [^\\u0000]*$"
    )]
    pub q: String,
    /// Only this room (any room the caller may read, public ones included). Without it: every room the caller is
    /// a member of.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub room: Option<String>,
    /// Only messages by the user of this name.
    pub author: Option<String>,
    /// Page size, 1 to 50 (default 20).
    #[param(minimum = 1, maximum = 50)]
    pub limit: Option<i64>,
    /// Results to skip, 0 to 500 (default 0).
    #[param(minimum = 0, maximum = 500)]
    pub offset: Option<i64>,
}

/// A message found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    /// The room's id.
    pub room: String,
    /// The room's name.
    pub room_name: String,
    /// The message's position in the room (open it in context with the history API's `before`/`after`).
    pub seq: u64,
    /// The author.
    #[schema(value_type = Object)]
    pub user: UserRef,
    /// Its text as it reads now.
    pub body: String,
    /// When it was sent (RFC 3339).
    pub ts: String,
    /// Whether it was edited since it was sent.
    pub edited: bool,
    /// How well it matches the words: larger is better.
    pub rank: f32,
}

/// One page of results: the best matches first, the newest first among equals.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    /// The messages found.
    pub results: Vec<SearchHit>,
    /// Whether more lie beyond this page (ask again with a larger `offset`).
    pub has_more: bool,
}

/// Find messages by their words in the rooms the caller may read: every room they are a member of, or one room
/// they may read. Messages are found by their text as it reads now: a deleted message is not found, an edited one
/// only by its new words.
#[utoipa::path(get, path = "/api/search", tag = "rooms", security(("bearer" = [])), params(SearchQuery),
    responses(
        (status = 200, description = "A page of results", body = SearchResults),
        (status = 400, description = "`invalid_query`: a parameter missing or out of range, `invalid_room_id`",
            body = ErrorBody),
        (status = 403, description = "`room_private`: the room given is private and the caller not a member",
            body = ErrorBody),
        (status = 404, description = "`room_not_found`, `user_not_found` (the author)", body = ErrorBody),
        (status = 422, description = "`query_too_broad`: the words match too much to rank in time; add words or \
            choose a room", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's search or request budget", body = ErrorBody),
        (status = 503, description = "`unavailable`: the database cannot be reached", body = ErrorBody),
    ))]
pub async fn search_messages(
    State(state): State<AppState>,
    user: AuthUser,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<SearchResults>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let words = query.q.trim();
    if words.is_empty() || query.q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("q must be 1 to {MAX_QUERY_CHARS} characters of words"),
        ));
    }
    // No stored text holds one, and the database refuses it in a query.
    if natter_proto::text::storable(words).is_err() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q must not hold a NUL character",
        ));
    }
    let limit = query.limit.unwrap_or(20);
    let offset = query.offset.unwrap_or(0);
    if !(1..=MAX_LIMIT).contains(&limit) || !(0..=MAX_OFFSET).contains(&offset) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1 to {MAX_LIMIT} and offset 0 to {MAX_OFFSET}"),
        ));
    }
    user.spend(&state.budgets.searches)?;
    // The rooms searched, with their names: one the caller may read, or every room they are in.
    let rooms: Vec<(String, String)> = match &query.room {
        Some(room) => {
            let id = RoomId::parse(room).map_err(|e| ApiError::bad_request("invalid_room_id", e.to_string()))?;
            let room = visible_room(&state, user.id, &id).await?;
            vec![(room.id, room.name)]
        }
        None => crate::routes::rooms::names_of_rooms_of(&state, user.id).await?,
    };
    let author = match &query.author {
        None => None,
        Some(name) => {
            let unknown = || ApiError::not_found("user_not_found", format!("no user named '{name}'"));
            // A name no account can have names no one.
            let key = Username::parse(name).map_err(|_| unknown())?.key();
            let id: Option<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE username_key = $1")
                .bind(key)
                .fetch_optional(&state.db)
                .await?;
            Some(id.ok_or_else(unknown)?.to_string())
        }
    };
    let ids: Vec<String> = rooms.iter().map(|(id, _)| id.clone()).collect();
    let names: HashMap<String, String> = rooms.into_iter().collect();
    let found = search::find(
        &state.db,
        &search::Search {
            words,
            rooms: &ids,
            author: author.as_deref(),
            limit,
            offset,
        },
    )
    .await;
    let (hits, has_more) = match found {
        Ok(found) => found,
        Err(SearchError::TooCostly) => {
            return Err(ApiError::validation(
                "query_too_broad",
                "these words match too many messages to rank in time; add words, or search one room",
            ));
        }
        Err(SearchError::Db(err)) => return Err(err.into()),
    };
    let results = hits
        .into_iter()
        .map(|hit| SearchHit {
            room_name: names.get(&hit.room).cloned().unwrap_or_default(),
            room: hit.room,
            seq: hit.seq,
            user: hit.user,
            body: hit.body,
            ts: hit.ts,
            edited: hit.edited,
            rank: hit.rank,
        })
        .collect();
    Ok(Json(SearchResults { results, has_more }))
}
