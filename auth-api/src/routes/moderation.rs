//! Moderation: the owner appoints moderators; the owner and moderators remove members, ban and unban users (and,
//! on the WebSocket, delete others' messages). A moderator acts on members only: never on the owner or another
//! moderator. A ban takes the membership away and keeps the user out (joins, join codes, reads) until lifted.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use natter_proto::RoomId;
use natter_proto::bus::RoomEvent;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, AuthUser, MemberPath, RoomPath};
use crate::room_events;
use crate::routes::rooms::{Member, Room, a_room, owned_room, room_not_found, tell_rooms_changed, visible_room};
use crate::state::AppState;

/// A new role for a member.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    /// `moderator` or `member`.
    #[schema(pattern = "^(moderator|member)$")]
    pub role: String,
}

/// A user banned from a room.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Ban {
    /// The banned user's id.
    pub id: Uuid,
    /// Their name.
    pub name: String,
    /// Who banned them (absent if that account is gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub banned_by: Option<String>,
    /// When.
    pub banned_at: DateTime<Utc>,
}

/// The caller's room when they own or moderate it: as [`visible_room`], and 403 `not_room_moderator` for anyone
/// else.
async fn moderated_room(state: &AppState, caller: Uuid, id: &RoomId, act: &str) -> ApiResult<Room> {
    let room = a_room(visible_room(state, caller, id).await?, act)?;
    match room.role.as_deref() {
        Some("owner" | "moderator") => Ok(room),
        _ => Err(ApiError::forbidden(
            "not_room_moderator",
            format!("only the room's owner or a moderator can {act}"),
        )),
    }
}

/// The role of `user` in room `id`, if a member.
async fn role_of(state: &AppState, id: &RoomId, user: Uuid) -> ApiResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT role FROM memberships WHERE room_id = $1 AND user_id = $2")
            .bind(id.as_str())
            .bind(user)
            .fetch_optional(&state.db)
            .await?,
    )
}

/// What a moderator does to a user.
#[derive(Clone, Copy)]
enum Act {
    Remove,
    Ban,
}

impl Act {
    fn verb(self) -> &'static str {
        match self {
            Act::Remove => "remove",
            Act::Ban => "ban",
        }
    }
}

/// Whether `caller` may `act` on `target` in room `id`: within their budget, owning or moderating the room, and
/// not on the owner, on themself, nor (a moderator) on another moderator.
async fn may_act_on(state: &AppState, caller: &AuthUser, id: &RoomId, target: Uuid, act: Act) -> ApiResult<()> {
    caller.spend(&state.budgets.membership_changes)?;
    let what = match act {
        Act::Remove => "remove members",
        Act::Ban => "ban users",
    };
    let room = moderated_room(state, caller.id, id, what).await?;
    let target_role = role_of(state, id, target).await?;
    let caller = caller.id;
    if target == room.owner_id {
        return Err(match act {
            Act::Remove => ApiError::conflict(
                "owner_cannot_be_removed",
                "the owner cannot be removed from their room; delete it instead",
            ),
            Act::Ban => ApiError::conflict("owner_cannot_be_banned", "the owner cannot be banned from their room"),
        });
    }
    let verb = act.verb();
    if target == caller {
        return Err(ApiError::conflict(
            "cannot_moderate_yourself",
            format!("you cannot {verb} yourself; leave the room instead"),
        ));
    }
    if target_role.as_deref() == Some("moderator") && room.role.as_deref() != Some("owner") {
        return Err(ApiError::forbidden(
            "not_room_owner",
            format!("only the room's owner can {verb} a moderator"),
        ));
    }
    Ok(())
}

/// Remove a member from a room (owner or moderator; a moderator removes members only). The gateways take the
/// member's sockets out of the room (a `member_removed` room event). A removed user may join again (a public room
/// at once, a private one with its join code); ban them to keep them out.
#[utoipa::path(post, path = "/api/rooms/{id}/members/{user}/remove", tag = "rooms", security(("bearer" = [])),
    params(MemberPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`invalid_room_id`, `invalid_user_id`", body = ErrorBody),
        (status = 403, description = "`not_room_moderator`, `not_room_owner` (a moderator removing a moderator), \
            `room_private`, `banned`", body = ErrorBody),
        (status = 404, description = "`room_not_found`, `member_not_found`", body = ErrorBody),
        (status = 409, description = "`owner_cannot_be_removed`, `cannot_moderate_yourself`, `not_a_room` (a \
            conversation)", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn remove_member(
    State(state): State<AppState>,
    user: AuthUser,
    MemberPath(id, member): MemberPath,
) -> ApiResult<StatusCode> {
    may_act_on(&state, &user, &id, member, Act::Remove).await?;
    let removed = sqlx::query("DELETE FROM memberships WHERE room_id = $1 AND user_id = $2 AND role <> 'owner'")
        .bind(id.as_str())
        .bind(member)
        .execute(&state.db)
        .await?;
    if removed.rows_affected() == 0 {
        return Err(ApiError::not_found(
            "member_not_found",
            format!("user {member} is not a member of room '{id}'"),
        ));
    }
    let event = RoomEvent::MemberRemoved {
        user: member.to_string(),
    };
    room_events::publish(state.nats.as_ref(), &id, event).await;
    tell_rooms_changed(&state, &[member], &id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Ban a user from a room (owner or moderator; a moderator bans members and non-members only): their membership,
/// if any, ends, their sockets are taken out of the room (a `member_banned` room event: `left` with reason
/// `banned`), and until the ban is lifted they cannot join it (with or without a join code), read its history or
/// see it listed. Banning someone already banned changes nothing.
#[utoipa::path(post, path = "/api/rooms/{id}/members/{user}/ban", tag = "rooms", security(("bearer" = [])),
    params(MemberPath),
    responses(
        (status = 204, description = "Banned"),
        (status = 400, description = "`invalid_room_id`, `invalid_user_id`", body = ErrorBody),
        (status = 403, description = "`not_room_moderator`, `not_room_owner` (a moderator banning a moderator), \
            `room_private`, `banned`", body = ErrorBody),
        (status = 404, description = "`room_not_found`, `user_not_found`", body = ErrorBody),
        (status = 409, description = "`owner_cannot_be_banned`, `cannot_moderate_yourself`, `not_a_room` (a \
            conversation)", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn ban_user(
    State(state): State<AppState>,
    user: AuthUser,
    MemberPath(id, target): MemberPath,
) -> ApiResult<StatusCode> {
    may_act_on(&state, &user, &id, target, Act::Ban).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM memberships WHERE room_id = $1 AND user_id = $2 AND role <> 'owner'")
        .bind(id.as_str())
        .bind(target)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO room_bans (room_id, user_id, banned_by) VALUES ($1, $2, $3) ON CONFLICT (room_id, user_id) \
         DO NOTHING",
    )
    .bind(id.as_str())
    .bind(target)
    .bind(user.id)
    .execute(&mut *tx)
    .await
    .map_err(|err| match &err {
        sqlx::Error::Database(db) if db.constraint() == Some("room_bans_user_id_fkey") => {
            ApiError::not_found("user_not_found", format!("no user {target}"))
        }
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => room_not_found(&id),
        _ => err.into(),
    })?;
    tx.commit().await?;
    let event = RoomEvent::MemberBanned {
        user: target.to_string(),
    };
    room_events::publish(state.nats.as_ref(), &id, event).await;
    tell_rooms_changed(&state, &[target], &id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Lift a ban (owner or moderator): the user may join again (a private room still needs its join code).
#[utoipa::path(delete, path = "/api/rooms/{id}/bans/{user}", tag = "rooms", security(("bearer" = [])),
    params(MemberPath),
    responses(
        (status = 204, description = "The ban is lifted"),
        (status = 400, description = "`invalid_room_id`, `invalid_user_id`", body = ErrorBody),
        (status = 403, description = "`not_room_moderator`, `room_private`, `banned`", body = ErrorBody),
        (status = 404, description = "`room_not_found`, `ban_not_found`", body = ErrorBody),
        (status = 409, description = "`not_a_room`: a conversation has no bans", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn unban_user(
    State(state): State<AppState>,
    user: AuthUser,
    MemberPath(id, target): MemberPath,
) -> ApiResult<StatusCode> {
    user.spend(&state.budgets.membership_changes)?;
    moderated_room(&state, user.id, &id, "lift bans").await?;
    let lifted = sqlx::query("DELETE FROM room_bans WHERE room_id = $1 AND user_id = $2")
        .bind(id.as_str())
        .bind(target)
        .execute(&state.db)
        .await?;
    if lifted.rows_affected() == 0 {
        return Err(ApiError::not_found(
            "ban_not_found",
            format!("user {target} is not banned from room '{id}'"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The users banned from a room, the latest first (owner and moderators only; at most 500).
#[utoipa::path(get, path = "/api/rooms/{id}/bans", tag = "rooms", security(("bearer" = [])),
    params(RoomPath),
    responses(
        (status = 200, description = "Bans", body = [Ban]),
        (status = 400, description = "`invalid_room_id`", body = ErrorBody),
        (status = 403, description = "`not_room_moderator`, `room_private`, `banned`", body = ErrorBody),
        (status = 404, description = "`room_not_found`", body = ErrorBody),
        (status = 409, description = "`not_a_room`: a conversation has no bans", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn room_bans(
    State(state): State<AppState>,
    user: AuthUser,
    RoomPath(id): RoomPath,
) -> ApiResult<Json<Vec<Ban>>> {
    moderated_room(&state, user.id, &id, "see its bans").await?;
    let rows: Vec<(Uuid, String, Option<String>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT u.id, u.username, by.username, b.banned_at FROM room_bans b JOIN users u ON u.id = b.user_id \
         LEFT JOIN users by ON by.id = b.banned_by WHERE b.room_id = $1 ORDER BY b.banned_at DESC LIMIT 500",
    )
    .bind(id.as_str())
    .fetch_all(&state.db)
    .await?;
    Ok(Json(
        rows.into_iter()
            .map(|(id, name, banned_by, banned_at)| Ban {
                id,
                name,
                banned_by,
                banned_at,
            })
            .collect(),
    ))
}

/// Make a member a moderator, or a moderator a member again (owner only). A moderator's new powers hold at once;
/// taken back, at once too (every deletion of another's message is asked about).
#[utoipa::path(put, path = "/api/rooms/{id}/members/{user}/role", tag = "rooms", request_body = SetRole,
    security(("bearer" = [])),
    params(MemberPath),
    responses(
        (status = 200, description = "The member with the new role", body = Member),
        (status = 400, description = "`invalid_room_id`, `invalid_user_id`", body = ErrorBody),
        (status = 403, description = "`not_room_owner`, `room_private`, `banned`", body = ErrorBody),
        (status = 404, description = "`room_not_found`, `member_not_found`", body = ErrorBody),
        (status = 409, description = "`owner_role_fixed`: the owner stays the owner; `not_a_room`", body = ErrorBody),
        (status = 422, description = "`invalid_role`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn set_role(
    State(state): State<AppState>,
    user: AuthUser,
    MemberPath(id, member): MemberPath,
    ApiJson(body): ApiJson<SetRole>,
) -> ApiResult<Json<Member>> {
    if !matches!(body.role.as_str(), "moderator" | "member") {
        return Err(ApiError::validation(
            "invalid_role",
            "a role is `moderator` or `member`",
        ));
    }
    user.spend(&state.budgets.membership_changes)?;
    let room = owned_room(&state, user.id, &id, "appoint moderators").await?;
    if member == room.owner_id {
        return Err(ApiError::conflict(
            "owner_role_fixed",
            "the owner stays the room's owner",
        ));
    }
    let row: Option<(Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
        "UPDATE memberships m SET role = $3 FROM users u \
         WHERE m.room_id = $1 AND m.user_id = $2 AND m.role <> 'owner' AND u.id = m.user_id \
         RETURNING u.id, u.username, m.role, m.joined_at",
    )
    .bind(id.as_str())
    .bind(member)
    .bind(&body.role)
    .fetch_optional(&state.db)
    .await?;
    let (id_, name, role, joined_at) = row.ok_or_else(|| {
        ApiError::not_found(
            "member_not_found",
            format!("user {member} is not a member of room '{id}'"),
        )
    })?;
    Ok(Json(Member {
        id: id_,
        name,
        role,
        joined_at,
    }))
}
