//! Conversations between people, and blocking.
//!
//! A direct conversation (two people) and a group (3 to 8) are private rooms: the chat stream, history, unread
//! counts, drafts and presence work as in any room, and the WebSocket protocol is the same. What differs is who is
//! in them: set when they are made, never by a join code, and nobody has an owner's powers. The same two people
//! always get the same direct conversation. While one of them blocks the other, their direct conversation is
//! closed to both (no live join, no message; a clear `blocked` error), and neither can start it again.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use natter_proto::bus::RoomEvent;
use natter_proto::{RoomId, RoomName, Username};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, AuthUser};
use crate::room_events;
use crate::routes::rooms::{Person, Room, load_room, new_room_id, tell_rooms_changed};
use crate::state::AppState;

/// Fewest other people in a group.
pub const GROUP_MIN_OTHERS: usize = 2;

/// Most other people in a group (8 with its maker).
pub const GROUP_MAX_OTHERS: usize = 7;

/// Who to talk to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDirect {
    /// The other person's user name (a name no account holds is a 404 `user_not_found`).
    #[schema(value_type = crate::routes::Username)]
    pub user: String,
}

/// A new group conversation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// The user names of the others: 2 to 7 different people (the caller is in it anyway; names are compared
    /// without case, and a name no account holds is a 404 `user_not_found`).
    #[schema(schema_with = group_members)]
    pub members: Vec<String>,
    /// A display name, 1 to 64 characters (see `RoomName`); without it, the members' names.
    #[schema(value_type = Option<crate::routes::RoomName>)]
    pub name: Option<String>,
}

/// The schema of [`NewGroup::members`]: 2 to 7 different user names.
fn group_members() -> utoipa::openapi::Array {
    utoipa::openapi::ArrayBuilder::new()
        .items(utoipa::openapi::Ref::from_schema_name("Username"))
        .min_items(Some(GROUP_MIN_OTHERS))
        .max_items(Some(GROUP_MAX_OTHERS))
        .unique_items(true)
        .description(Some(
            "The user names of the others: 2 to 7 different people (the caller is in it anyway; names are compared \
             without case, and a name no account holds is a 404 `user_not_found`).",
        ))
        .build()
}

/// Someone the caller blocked.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Blocked {
    /// Their user id.
    pub id: Uuid,
    /// Their name.
    pub name: String,
    /// Since when.
    pub since: DateTime<Utc>,
}

fn user_not_found(name: &str) -> ApiError {
    ApiError::not_found("user_not_found", format!("no user named '{name}'"))
}

/// The id and name of the user named `name`.
async fn person_named(state: &AppState, name: &str) -> ApiResult<Person> {
    let key = Username::parse(name.trim()).map_err(|_| user_not_found(name))?.key();
    let row: Option<(Uuid, String)> = sqlx::query_as("SELECT id, username FROM users WHERE username_key = $1")
        .bind(key)
        .fetch_optional(&state.db)
        .await?;
    row.map(|(id, name)| Person { id, name })
        .ok_or_else(|| user_not_found(name))
}

/// Refuses a conversation between `caller` and `other` while either blocks the other.
async fn not_blocked(state: &AppState, caller: Uuid, other: &Person) -> ApiResult<()> {
    let blocks: Vec<Uuid> = sqlx::query_scalar(
        "SELECT blocker FROM blocks WHERE (blocker = $1 AND blocked = $2) OR (blocker = $2 AND blocked = $1)",
    )
    .bind(caller)
    .bind(other.id)
    .fetch_all(&state.db)
    .await?;
    if blocks.contains(&caller) {
        return Err(ApiError::forbidden(
            "blocked",
            format!("you blocked {}; unblock them to write to them", other.name),
        ));
    }
    if !blocks.is_empty() {
        return Err(ApiError::forbidden(
            "blocked",
            format!("{} does not take messages from you", other.name),
        ));
    }
    Ok(())
}

/// The direct conversation of the pair `a`, `b`, if there is one.
async fn direct_between(state: &AppState, a: Uuid, b: Uuid) -> ApiResult<Option<RoomId>> {
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    let id: Option<String> = sqlx::query_scalar("SELECT id FROM rooms WHERE direct_low = $1 AND direct_high = $2")
        .bind(low)
        .bind(high)
        .fetch_optional(&state.db)
        .await?;
    Ok(id.and_then(|id| RoomId::parse(&id).ok()))
}

/// Start a direct conversation with someone, or get the one there is: the same two people always get the same
/// conversation (201 when it was made now, 200 when it existed).
#[utoipa::path(post, path = "/api/conversations/direct", tag = "conversations", request_body = NewDirect,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation the two already had", body = Room),
        (status = 201, description = "A new conversation", body = Room),
        (status = 403, description = "`blocked`: one of the two blocked the other", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`try_again`: the two started it at once and it changed meanwhile", body = ErrorBody),
        (status = 422, description = "`cannot_message_yourself`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's conversation or request budget",
            body = ErrorBody),
    ))]
pub async fn start_direct(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<NewDirect>,
) -> ApiResult<(StatusCode, Json<Room>)> {
    let other = person_named(&state, &body.user).await?;
    if other.id == user.id {
        return Err(ApiError::validation(
            "cannot_message_yourself",
            "a direct conversation is with someone else",
        ));
    }
    not_blocked(&state, user.id, &other).await?;
    if let Some(id) = direct_between(&state, user.id, other.id).await? {
        return Ok((StatusCode::OK, Json(load_room(&state, user.id, &id).await?)));
    }
    user.spend(&state.budgets.conversations)?;
    let (low, high) = if user.id < other.id {
        (user.id, other.id)
    } else {
        (other.id, user.id)
    };
    let id = new_room_id();
    let mut tx = state.db.begin().await?;
    // Two people starting it at once: one insert wins, the other finds its conversation.
    let made = sqlx::query(
        "INSERT INTO rooms (id, name, private, owner_id, kind, direct_low, direct_high) \
         VALUES ($1, 'direct', true, $2, 'direct', $3, $4) ON CONFLICT (direct_low, direct_high) DO NOTHING",
    )
    .bind(id.as_str())
    .bind(user.id)
    .bind(low)
    .bind(high)
    .execute(&mut *tx)
    .await
    .map_err(gone_user)?;
    if made.rows_affected() == 0 {
        tx.rollback().await?;
        let id = direct_between(&state, user.id, other.id)
            .await?
            .ok_or_else(|| ApiError::conflict("try_again", "the conversation changed meanwhile; try again"))?;
        return Ok((StatusCode::OK, Json(load_room(&state, user.id, &id).await?)));
    }
    sqlx::query("INSERT INTO memberships (room_id, user_id, role) SELECT $1, unnest($2::uuid[]), 'member'")
        .bind(id.as_str())
        .bind(vec![user.id, other.id])
        .execute(&mut *tx)
        .await
        .map_err(gone_user)?;
    tx.commit().await?;
    tell_rooms_changed(&state, &[user.id, other.id], &id).await;
    Ok((StatusCode::CREATED, Json(load_room(&state, user.id, &id).await?)))
}

/// The token's user, or a person named, was deleted meanwhile.
fn gone_user(err: sqlx::Error) -> ApiError {
    match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            ApiError::not_found("user_not_found", "a person of the conversation no longer exists")
        }
        _ => err.into(),
    }
}

/// Start a group conversation of 3 to 8 people: the caller and 2 to 7 others, each of whom can read and write in
/// it at once. Anyone in it may leave it (`POST /api/rooms/{id}/leave`); nobody else joins it.
#[utoipa::path(post, path = "/api/conversations/group", tag = "conversations", request_body = NewGroup,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new group", body = Room),
        (status = 403, description = "`blocked`: someone named blocked the caller, or the caller blocked them",
            body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 422, description = "`invalid_members` (2 to 7 different others: the caller, or one person twice \
            under names differing in case, is refused), `invalid_room_name`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's conversation or request budget",
            body = ErrorBody),
    ))]
pub async fn start_group(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<NewGroup>,
) -> ApiResult<(StatusCode, Json<Room>)> {
    if !(GROUP_MIN_OTHERS..=GROUP_MAX_OTHERS).contains(&body.members.len()) {
        return Err(invalid_members());
    }
    let name = body
        .name
        .as_deref()
        .map(RoomName::parse)
        .transpose()
        .map_err(|e| ApiError::validation("invalid_room_name", e.to_string()))?;
    let mut others: Vec<Person> = Vec::with_capacity(body.members.len());
    for name in &body.members {
        let person = person_named(&state, name).await?;
        if person.id == user.id || others.iter().any(|o| o.id == person.id) {
            return Err(invalid_members());
        }
        others.push(person);
    }
    for other in &others {
        not_blocked(&state, user.id, other).await?;
    }
    user.spend(&state.budgets.conversations)?;
    let name = match name {
        Some(name) => name.as_str().to_owned(),
        None => group_name(&user.claims.name, &others),
    };
    let id = new_room_id();
    let mut ids: Vec<Uuid> = others.iter().map(|o| o.id).collect();
    ids.push(user.id);
    let mut tx = state.db.begin().await?;
    sqlx::query("INSERT INTO rooms (id, name, private, owner_id, kind) VALUES ($1, $2, true, $3, 'group')")
        .bind(id.as_str())
        .bind(&name)
        .bind(user.id)
        .execute(&mut *tx)
        .await
        .map_err(gone_user)?;
    sqlx::query("INSERT INTO memberships (room_id, user_id, role) SELECT $1, unnest($2::uuid[]), 'member'")
        .bind(id.as_str())
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(gone_user)?;
    tx.commit().await?;
    tell_rooms_changed(&state, &ids, &id).await;
    Ok((StatusCode::CREATED, Json(load_room(&state, user.id, &id).await?)))
}

fn invalid_members() -> ApiError {
    ApiError::validation(
        "invalid_members",
        format!("a group is you and {GROUP_MIN_OTHERS} to {GROUP_MAX_OTHERS} other, different people"),
    )
}

/// A group's name from its people's names: "ann, bob, cy", cut to a room name's 64 characters.
fn group_name(me: &str, others: &[Person]) -> String {
    let mut name = me.to_owned();
    for other in others {
        name.push_str(", ");
        name.push_str(&other.name);
    }
    if name.chars().count() > 64 {
        name = name.chars().take(63).collect::<String>() + "…";
    }
    name
}

/// The people the caller blocked, the latest first.
#[utoipa::path(get, path = "/api/blocks", tag = "conversations", security(("bearer" = [])),
    responses(
        (status = 200, description = "Blocked people", body = [Blocked]),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ))]
pub async fn list_blocks(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Vec<Blocked>>> {
    let rows: Vec<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT u.id, u.username, b.created_at FROM blocks b JOIN users u ON u.id = b.blocked \
         WHERE b.blocker = $1 ORDER BY b.created_at DESC LIMIT 1000",
    )
    .bind(user.id)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(
        rows.into_iter()
            .map(|(id, name, since)| Blocked { id, name, since })
            .collect(),
    ))
}

/// Block someone: the direct conversation of the two closes at once for both (the gateways take both out of it,
/// `left` with reason `blocked`, and refuse it with `blocked`), and neither can start it again until the block
/// is lifted. Blocking twice changes nothing.
#[utoipa::path(put, path = "/api/blocks/{user}", tag = "conversations", security(("bearer" = [])),
    params(("user" = Uuid, Path, description = "The user id of the person to block")),
    responses(
        (status = 204, description = "Blocked"),
        (status = 400, description = "`invalid_user_id`", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 422, description = "`cannot_block_yourself`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ))]
pub async fn block(State(state): State<AppState>, user: AuthUser, Path(other): Path<String>) -> ApiResult<StatusCode> {
    let other = user_id(&other)?;
    if other == user.id {
        return Err(ApiError::validation(
            "cannot_block_yourself",
            "you cannot block yourself",
        ));
    }
    user.spend(&state.budgets.membership_changes)?;
    sqlx::query("INSERT INTO blocks (blocker, blocked) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(user.id)
        .bind(other)
        .execute(&state.db)
        .await
        .map_err(|err| match &err {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                ApiError::not_found("user_not_found", format!("no user {other}"))
            }
            _ => err.into(),
        })?;
    if let Some(room) = direct_between(&state, user.id, other).await? {
        room_events::publish(state.nats.as_ref(), &room, RoomEvent::Blocked).await;
        tell_rooms_changed(&state, &[user.id, other], &room).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Lift a block: the direct conversation opens again (unless the other person blocks the caller too).
#[utoipa::path(delete, path = "/api/blocks/{user}", tag = "conversations", security(("bearer" = [])),
    params(("user" = Uuid, Path, description = "The user id of the person blocked")),
    responses(
        (status = 204, description = "Unblocked"),
        (status = 400, description = "`invalid_user_id`", body = ErrorBody),
        (status = 404, description = "`block_not_found`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ))]
pub async fn unblock(
    State(state): State<AppState>,
    user: AuthUser,
    Path(other): Path<String>,
) -> ApiResult<StatusCode> {
    let other = user_id(&other)?;
    user.spend(&state.budgets.membership_changes)?;
    let lifted = sqlx::query("DELETE FROM blocks WHERE blocker = $1 AND blocked = $2")
        .bind(user.id)
        .bind(other)
        .execute(&state.db)
        .await?;
    if lifted.rows_affected() == 0 {
        return Err(ApiError::not_found(
            "block_not_found",
            format!("you have not blocked user {other}"),
        ));
    }
    if let Some(room) = direct_between(&state, user.id, other).await? {
        // Gateways forget refusing the conversation; if the other still blocks, their next question finds it.
        room_events::publish(state.nats.as_ref(), &room, RoomEvent::Unblocked).await;
        tell_rooms_changed(&state, &[user.id, other], &room).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

fn user_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::bad_request("invalid_user_id", "the user id is not a UUID"))
}
