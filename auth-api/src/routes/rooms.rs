//! Rooms and memberships.
//!
//! Public rooms are visible to everyone and joinable by anyone signed in. Private rooms are visible only to
//! their members; a non-member joins with the room's join code, which only the owner is shown.
//!
//! Each membership keeps a read cursor (the highest sequence the member has seen), so a room's unread count is
//! the same on every device of the user.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use natter_history::counts;
use natter_proto::{RoomId, RoomName};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorBody};
use natter_proto::bus::RoomEvent;
use natter_proto::frame::PersonalEvent;

use crate::extract::{ApiJson, AuthUser, OptionalJson, RoomPath};
use crate::room_events;
use crate::state::AppState;

/// A new room.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    /// Display name, 1 to 64 characters (see `RoomName`).
    #[schema(value_type = crate::routes::RoomName)]
    pub name: String,
    /// Private rooms are visible to members only.
    #[serde(default)]
    pub private: bool,
}

/// Optional body of a join.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRoom {
    /// The join code of a private room (ignored for public rooms).
    pub code: Option<String>,
}

/// A room as the caller sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Room {
    /// The room id: a safe NATS subject token, used on the WebSocket.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Whether the room is private (conversations always are).
    pub private: bool,
    /// `room`, `direct` (a conversation of two people) or `group` (a conversation of 3 to 8).
    #[schema(pattern = "^(room|direct|group)$")]
    pub kind: String,
    /// The owner's user id.
    pub owner_id: Uuid,
    /// Number of members.
    pub member_count: i64,
    /// Whether the caller is a member.
    pub joined: bool,
    /// The caller's role: `owner`, `moderator` or `member` (absent when not a member).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The join code: shown to the owner of a private room only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_code: Option<String>,
    /// When the room was created.
    pub created_at: DateTime<Utc>,
    /// The position (`seq`) of the room's newest stored message (0 when it has none).
    pub last_seq: i64,
    /// The caller's read cursor: the highest sequence they have seen here (0 when not a member).
    pub read_seq: i64,
    /// Messages by others among the [`UNREAD_MAX`] after the read cursor (0 when not a member).
    pub unread: i64,
    /// Of those, the messages that mention the caller.
    pub mentions: i64,
    /// Whether the caller muted it: no notifications, no unread badge unless mentioned.
    pub muted: bool,
    /// In a direct conversation, the other person (whose name is also the conversation's `name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<Person>,
}

/// A person, as another user sees them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Person {
    /// User id.
    pub id: Uuid,
    /// User name.
    pub name: String,
}

/// Where a member has read up to in a room.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadCursor {
    /// The room id.
    pub room: String,
    /// The highest sequence the caller has seen in the room.
    pub read_seq: i64,
    /// The sequence of the room's newest stored message.
    pub last_seq: i64,
    /// Messages by others among the [`UNREAD_MAX`] after `read_seq`.
    pub unread: i64,
    /// Of those, the messages that mention the caller.
    pub mentions: i64,
}

/// Whether to mute a room.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mute {
    /// `true` to mute, `false` to hear it again.
    pub muted: bool,
}

/// A new position of the caller's read cursor.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    /// The highest sequence the caller has seen (a `seq` from the WebSocket or the history API). A cursor only
    /// moves forward: a lower value leaves it where it is. 0 to 2^53 - 1.
    #[schema(minimum = 0, maximum = 9007199254740991_i64)]
    pub seq: i64,
}

/// A member of a room.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Member {
    /// User id.
    pub id: Uuid,
    /// User name.
    pub name: String,
    /// `owner` or `member`.
    pub role: String,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
}

/// Most rooms returned by a listing.
const LIST_LIMIT: i64 = 500;

pub use natter_history::counts::UNREAD_MAX;

/// The largest sequence a read cursor takes: the largest integer a JavaScript client holds exactly.
const MAX_SEQ: i64 = (1 << 53) - 1;

/// The columns of [`Room`] for `caller` ($1), as one SELECT over `rooms r` with the caller's membership `me` and,
/// in a direct conversation, the other person `peer`; the last sequence and the unread count are the history
/// schema's (`natter_history::counts`).
fn room_select() -> String {
    format!(
        "SELECT r.id, {SHOWN_NAME} AS name, \
         r.private, r.kind, r.owner_id, \
         (SELECT count(*) FROM memberships m WHERE m.room_id = r.id) AS member_count, \
         me.user_id IS NOT NULL AS joined, me.role, \
         CASE WHEN r.owner_id = $1 THEN r.join_code END AS join_code, r.created_at, \
         {} AS last_seq, \
         coalesce(me.read_seq, 0) AS read_seq, \
         CASE WHEN me.user_id IS NULL THEN 0 ELSE {} END AS unread, \
         CASE WHEN me.user_id IS NULL THEN 0 ELSE {} END AS mentions, \
         coalesce(me.muted, false) AS muted, \
         peer.id AS peer_id, peer.username AS peer_name \
         FROM rooms r LEFT JOIN memberships me ON me.room_id = r.id AND me.user_id = $1 {PEER_JOIN}",
        counts::last_position("r.id"),
        counts::unread("r.id", "me.read_seq", "$1::text"),
        counts::unread_mentions("r.id", "me.read_seq", "$1::text"),
    )
}

/// The name room `r` shows the user `$1`: a direct conversation's is the other person's (`peer`, of [`PEER_JOIN`]).
const SHOWN_NAME: &str = "CASE WHEN r.kind = 'direct' THEN coalesce(peer.username, r.name) ELSE r.name END";

/// Joins the other person of a direct conversation `r` of the user `$1`, as `peer`.
const PEER_JOIN: &str =
    "LEFT JOIN users peer ON peer.id = CASE WHEN r.direct_low = $1 THEN r.direct_high ELSE r.direct_low END";

/// The id and shown name of every room and conversation `user` is a member of.
pub(crate) async fn names_of_rooms_of(state: &AppState, user: Uuid) -> ApiResult<Vec<(String, String)>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT r.id, {SHOWN_NAME} FROM memberships m JOIN rooms r ON r.id = m.room_id {PEER_JOIN} \
         WHERE m.user_id = $1"
    )))
    .bind(user)
    .fetch_all(&state.db)
    .await?)
}

/// A row of [`room_select`].
#[derive(sqlx::FromRow)]
struct RoomRow {
    id: String,
    name: String,
    private: bool,
    kind: String,
    owner_id: Uuid,
    member_count: i64,
    joined: bool,
    role: Option<String>,
    join_code: Option<String>,
    created_at: DateTime<Utc>,
    last_seq: i64,
    read_seq: i64,
    unread: i64,
    mentions: i64,
    muted: bool,
    peer_id: Option<Uuid>,
    peer_name: Option<String>,
}

fn to_room(row: RoomRow) -> Room {
    Room {
        id: row.id,
        name: row.name,
        private: row.private,
        kind: row.kind,
        owner_id: row.owner_id,
        member_count: row.member_count,
        joined: row.joined,
        role: row.role,
        join_code: row.join_code,
        created_at: row.created_at,
        last_seq: row.last_seq,
        read_seq: row.read_seq,
        unread: row.unread,
        mentions: row.mentions,
        muted: row.muted,
        peer: row.peer_id.zip(row.peer_name).map(|(id, name)| Person { id, name }),
    }
}

pub(crate) fn room_not_found(id: &RoomId) -> ApiError {
    ApiError::not_found("room_not_found", format!("no room '{id}'"))
}

fn room_private() -> ApiError {
    ApiError::forbidden("room_private", "this room is private and you are not a member")
}

pub(crate) fn banned(id: &RoomId) -> ApiError {
    ApiError::forbidden("banned", format!("you are banned from room '{id}'"))
}

/// Whether `user` is banned from room `id`.
pub(crate) async fn is_banned(state: &AppState, id: &RoomId, user: Uuid) -> ApiResult<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM room_bans WHERE room_id = $1 AND user_id = $2)")
            .bind(id.as_str())
            .bind(user)
            .fetch_one(&state.db)
            .await?,
    )
}

/// Loads a room as `caller` sees it: 404 if missing, 403 `room_private` if private and the caller is not a member,
/// 403 `banned` if the caller is banned from it.
pub(crate) async fn visible_room(state: &AppState, caller: Uuid, id: &RoomId) -> ApiResult<Room> {
    let room = load_room(state, caller, id).await?;
    if room.private && !room.joined {
        return Err(room_private());
    }
    if !room.joined && is_banned(state, id, caller).await? {
        return Err(banned(id));
    }
    Ok(room)
}

/// Refuses `act` on a conversation (direct or group): only rooms have owners' and moderators' powers.
pub(crate) fn a_room(room: Room, act: &str) -> ApiResult<Room> {
    if room.kind != "room" {
        return Err(ApiError::conflict(
            "not_a_room",
            format!("a conversation is not a room: nobody can {act}"),
        ));
    }
    Ok(room)
}

/// Loads a room the caller must own to `act` on: as [`visible_room`], and 403 `not_room_owner` for anyone else.
pub(crate) async fn owned_room(state: &AppState, caller: Uuid, id: &RoomId, act: &str) -> ApiResult<Room> {
    let room = a_room(visible_room(state, caller, id).await?, act)?;
    if room.owner_id != caller {
        return Err(ApiError::forbidden(
            "not_room_owner",
            format!("only the room's owner can {act}"),
        ));
    }
    Ok(room)
}

pub(crate) async fn load_room(state: &AppState, caller: Uuid, id: &RoomId) -> ApiResult<Room> {
    let row: Option<RoomRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{} WHERE r.id = $2", room_select())))
        .bind(caller)
        .bind(id.as_str())
        .fetch_optional(&state.db)
        .await?;
    row.map(to_room).ok_or_else(|| room_not_found(id))
}

/// A new room id: 12 characters of `a-z0-9`, a safe subject token by construction.
pub(crate) fn new_room_id() -> RoomId {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    let id: String = (0..12)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    // Built from the alphabet above, which RoomId accepts.
    RoomId::parse(&id).expect("generated room ids are valid")
}

fn new_join_code() -> String {
    let mut raw = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Create a room; the caller becomes its owner and first member.
#[utoipa::path(post, path = "/api/rooms", tag = "rooms", request_body = CreateRoom, security(("bearer" = [])),
    responses(
        (status = 201, description = "Room created", body = Room),
        (status = 401, description = "`unknown_user`: the token's user no longer exists", body = ErrorBody),
        (status = 422, description = "`invalid_room_name`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's room-creation or request budget", body = ErrorBody),
    ))]
pub async fn create_room(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateRoom>,
) -> ApiResult<(StatusCode, Json<Room>)> {
    let name = RoomName::parse(&body.name).map_err(|e| ApiError::validation("invalid_room_name", e.to_string()))?;
    user.spend(&state.budgets.room_creations)?;
    let id = new_room_id();
    let join_code = body.private.then(new_join_code);
    let mut tx = state.db.begin().await?;
    sqlx::query("INSERT INTO rooms (id, name, private, owner_id, join_code) VALUES ($1, $2, $3, $4, $5)")
        .bind(id.as_str())
        .bind(name.as_str())
        .bind(body.private)
        .bind(user.id)
        .bind(&join_code)
        .execute(&mut *tx)
        .await
        .map_err(|err| match &err {
            // The token outlived its user (deleted account): the row it would own does not exist.
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                ApiError::unauthorized("unknown_user", "the token's user no longer exists")
            }
            _ => err.into(),
        })?;
    sqlx::query("INSERT INTO memberships (room_id, user_id, role) VALUES ($1, $2, 'owner')")
        .bind(id.as_str())
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(load_room(&state, user.id, &id).await?)))
}

/// A page of the room listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoomListing {
    /// Where the page starts: the `after` of the previous page's `Link: <…>; rel="next"` header, an opaque cursor.
    /// Without it, the first page.
    #[param(pattern = r"^[01]\.[0-9]{1,18}\.[A-Za-z0-9_-]{1,64}$")]
    pub after: Option<String>,
    /// Rooms per page, 1 to 500 (default 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Where a page of the room listing ends, in its order (joined first, then oldest first, then by id): the next
/// page's `after`, `JOINED.MICROS.ID`.
#[derive(Debug, PartialEq, Eq)]
struct ListingCursor {
    joined: bool,
    created_micros: i64,
    id: String,
}

impl ListingCursor {
    fn of(room: &Room) -> Self {
        Self {
            joined: room.joined,
            created_micros: room.created_at.timestamp_micros(),
            id: room.id.clone(),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '.');
        let joined = match parts.next()? {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        let micros = parts.next()?;
        if micros.is_empty() || micros.len() > 18 || !micros.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let id = RoomId::parse(parts.next()?).ok()?;
        Some(Self {
            joined,
            created_micros: micros.parse().ok()?,
            id: id.as_str().to_owned(),
        })
    }

    fn text(&self) -> String {
        format!("{}.{}.{}", u8::from(self.joined), self.created_micros, self.id)
    }
}

/// List the rooms the caller is in, then the other public rooms; oldest first within each, a page of at most 500.
/// A page with more beyond it says where the next starts in a `Link` header (`rel="next"`).
#[utoipa::path(get, path = "/api/rooms", tag = "rooms", security(("bearer" = [])), params(RoomListing),
    responses(
        (status = 200, description = "Rooms", body = [Room],
            headers(("Link" = String, description = "`</api/rooms?after=…&limit=…>; rel=\"next\"`, when more rooms \
                follow this page"))),
        (status = 400, description = "`invalid_query`: `after` is not a cursor of this listing or `limit` is out of \
            range", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's room-listing or request budget", body = ErrorBody),
    ))]
pub async fn list_rooms(
    State(state): State<AppState>,
    user: AuthUser,
    query: Result<Query<RoomListing>, QueryRejection>,
) -> ApiResult<(HeaderMap, Json<Vec<Room>>)> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(LIST_LIMIT);
    if !(1..=LIST_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1 to {LIST_LIMIT}"),
        ));
    }
    let after = match &query.after {
        None => None,
        Some(text) => Some(ListingCursor::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                "after must be the cursor of a Link header of this listing",
            )
        })?),
    };
    user.spend(&state.budgets.room_listings)?;
    // After a cursor: the rest of its group (joined or not) past it, then the groups after it (not joined).
    let rows: Vec<RoomRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{} WHERE (NOT r.private OR me.user_id IS NOT NULL) \
           AND NOT EXISTS (SELECT 1 FROM room_bans b WHERE b.room_id = r.id AND b.user_id = $1) \
           AND ($2::bool IS NULL \
                OR (me.user_id IS NOT NULL) < $2 \
                OR ((me.user_id IS NOT NULL) = $2 AND (r.created_at, r.id) > ($3, $4))) \
         ORDER BY joined DESC, r.created_at, r.id LIMIT $5",
        room_select()
    )))
    .bind(user.id)
    .bind(after.as_ref().map(|a| a.joined))
    .bind(
        after
            .as_ref()
            .and_then(|a| DateTime::<Utc>::from_timestamp_micros(a.created_micros)),
    )
    .bind(after.as_ref().map(|a| a.id.clone()))
    .bind(limit + 1)
    .fetch_all(&state.db)
    .await?;
    let more = rows.len() as i64 > limit;
    let rooms: Vec<Room> = rows.into_iter().take(limit as usize).map(to_room).collect();
    let mut headers = HeaderMap::new();
    if more && let Some(last) = rooms.last() {
        let next = format!(
            "</api/rooms?after={}&limit={limit}>; rel=\"next\"",
            ListingCursor::of(last).text()
        );
        // Digits, dots, a room id's characters: always a valid header value.
        if let Ok(value) = HeaderValue::from_str(&next) {
            headers.insert(header::LINK, value);
        }
    }
    Ok((headers, Json(rooms)))
}

/// One room.
#[utoipa::path(get, path = "/api/rooms/{id}", tag = "rooms", security(("bearer" = [])),
    params(RoomPath),
    responses(
        (status = 200, description = "The room", body = Room),
        (status = 400, description = "`invalid_room_id`", body = ErrorBody),
        (status = 403, description = "`room_private`", body = ErrorBody),
        (status = 404, description = "`room_not_found`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn get_room(State(state): State<AppState>, user: AuthUser, RoomPath(id): RoomPath) -> ApiResult<Json<Room>> {
    Ok(Json(visible_room(&state, user.id, &id).await?))
}

/// Give a private room a new join code (owner only): the old code, and every invite link made of it, stops
/// working at once; members stay members. Answers the room with its new code.
#[utoipa::path(post, path = "/api/rooms/{id}/join-code", tag = "rooms", security(("bearer" = [])),
    params(RoomPath),
    responses(
        (status = 200, description = "The room, with its new join code", body = Room),
        (status = 403, description = "`not_room_owner`, `room_private`", body = ErrorBody),
        (status = 404, description = "`room_not_found`", body = ErrorBody),
        (status = 409, description = "`room_public`: a public room has no join code; `not_a_room`: nor has a \
            conversation", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn rotate_join_code(
    State(state): State<AppState>,
    user: AuthUser,
    RoomPath(id): RoomPath,
) -> ApiResult<Json<Room>> {
    user.spend(&state.budgets.membership_changes)?;
    let room = owned_room(&state, user.id, &id, "change its join code").await?;
    if !room.private {
        return Err(ApiError::conflict(
            "room_public",
            "a public room has no join code: anyone may join it",
        ));
    }
    sqlx::query("UPDATE rooms SET join_code = $3 WHERE id = $1 AND owner_id = $2")
        .bind(id.as_str())
        .bind(user.id)
        .bind(new_join_code())
        .execute(&state.db)
        .await?;
    Ok(Json(load_room(&state, user.id, &id).await?))
}

/// Join a room. Private rooms need their join code in the body: `{"code": "…"}`; a new member of a private room is
/// announced to the gateways (a `member_joined` room event), which may remember refusing them.
#[utoipa::path(post, path = "/api/rooms/{id}/join", tag = "rooms", security(("bearer" = [])),
    params(RoomPath), request_body(content = Option<JoinRoom>),
    responses(
        (status = 200, description = "Joined (or already a member)", body = Room),
        (status = 403, description = "`invalid_join_code`, `banned`, `room_private` (a conversation: nobody joins \
            one)", body = ErrorBody),
        (status = 404, description = "`room_not_found`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn join_room(
    State(state): State<AppState>,
    user: AuthUser,
    RoomPath(id): RoomPath,
    OptionalJson(request): OptionalJson<JoinRoom>,
) -> ApiResult<Json<Room>> {
    let request = request.unwrap_or_default();
    user.spend(&state.budgets.membership_changes)?;
    let room = load_room(&state, user.id, &id).await?;
    if room.joined {
        return Ok(Json(room));
    }
    if is_banned(&state, &id, user.id).await? {
        return Err(banned(&id));
    }
    if room.kind != "room" {
        // A conversation's people are set when it is made; no code lets anyone else in.
        return Err(room_private());
    }
    if room.private {
        let stored: Option<String> = sqlx::query_scalar("SELECT join_code FROM rooms WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&state.db)
            .await?
            .flatten();
        let matches = match (stored, request.code) {
            (Some(stored), Some(given)) => constant_time_eq(stored.as_bytes(), given.as_bytes()),
            _ => false,
        };
        if !matches {
            return Err(ApiError::forbidden(
                "invalid_join_code",
                "this room is private; a valid join code is needed",
            ));
        }
    }
    // A new member has read everything stored so far: only what arrives after joining is unread.
    // (Built from constant text only.)
    let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO memberships (room_id, user_id, role, read_seq) SELECT $1, $2, 'member', {} \
         WHERE NOT EXISTS (SELECT 1 FROM room_bans WHERE room_id = $1 AND user_id = $2) ON CONFLICT DO NOTHING",
        counts::last_position("$1")
    )))
    .bind(id.as_str())
    .bind(user.id)
    .execute(&state.db)
    .await
    .map_err(|err| match &err {
        // Deleted between the check above and this insert.
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => room_not_found(&id),
        _ => err.into(),
    })?;
    if room.private && inserted.rows_affected() > 0 {
        // A gateway may remember refusing this user a moment ago; it forgets that.
        let event = RoomEvent::MemberJoined {
            user: user.id.to_string(),
        };
        room_events::publish(state.nats.as_ref(), &id, event).await;
    }
    if inserted.rows_affected() > 0 {
        tell_rooms_changed(&state, &[user.id], &id).await;
    }
    Ok(Json(load_room(&state, user.id, &id).await?))
}

/// Tells `users` (each of their connections) that their rooms changed by `room`: their clients re-read them.
pub(crate) async fn tell_rooms_changed(state: &AppState, users: &[Uuid], room: &RoomId) {
    let event = PersonalEvent::Rooms { room: room.clone() };
    room_events::tell_users(state.nats.as_ref(), users, event).await;
}

/// Leave a room. The owner cannot leave (delete the room instead). The gateways are told (a `member_left` room
/// event) and take the caller's sockets out of the room; a public room can be joined again at any time. Leaving a
/// room one is not in changes nothing and tells no one.
#[utoipa::path(post, path = "/api/rooms/{id}/leave", tag = "rooms", security(("bearer" = [])),
    params(RoomPath),
    responses(
        (status = 204, description = "Left"),
        (status = 404, description = "`room_not_found`", body = ErrorBody),
        (status = 409, description = "`owner_cannot_leave`, `direct_cannot_be_left`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn leave_room(
    State(state): State<AppState>,
    user: AuthUser,
    RoomPath(id): RoomPath,
) -> ApiResult<StatusCode> {
    user.spend(&state.budgets.membership_changes)?;
    let room = load_room(&state, user.id, &id).await?;
    if room.kind == "direct" && room.joined {
        return Err(ApiError::conflict(
            "direct_cannot_be_left",
            "a direct conversation cannot be left; block the person to close it",
        ));
    }
    // A group has no owner's powers: whoever made it may leave it like anyone.
    if room.kind == "room" && room.owner_id == user.id {
        return Err(ApiError::conflict(
            "owner_cannot_leave",
            "the owner cannot leave a room; delete it instead",
        ));
    }
    let left = sqlx::query("DELETE FROM memberships WHERE room_id = $1 AND user_id = $2")
        .bind(id.as_str())
        .bind(user.id)
        .execute(&state.db)
        .await?;
    if left.rows_affected() == 0 {
        // Not a member: nothing changed, so nothing is published (a leave repeated in a loop would otherwise be an
        // event every gateway hears). Gateways let members only into private rooms, and a member who left or was
        // removed before was taken out then; a socket in a public room without a membership is its client's to
        // leave with a `leave` frame.
        return Ok(StatusCode::NO_CONTENT);
    }
    room_events::publish(
        state.nats.as_ref(),
        &id,
        RoomEvent::MemberLeft {
            user: user.id.to_string(),
        },
    )
    .await;
    tell_rooms_changed(&state, &[user.id], &id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a room (owner only). The gateways take every socket out of it (a `deleted` room event).
#[utoipa::path(delete, path = "/api/rooms/{id}", tag = "rooms", security(("bearer" = [])),
    params(RoomPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`not_room_owner`, `room_private`", body = ErrorBody),
        (status = 404, description = "`room_not_found`", body = ErrorBody),
        (status = 409, description = "`not_a_room`: a conversation is not deleted", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn delete_room(
    State(state): State<AppState>,
    user: AuthUser,
    RoomPath(id): RoomPath,
) -> ApiResult<StatusCode> {
    user.spend(&state.budgets.membership_changes)?;
    owned_room(&state, user.id, &id, "delete it").await?;
    // The room and its history go together. The stream first, so that less of what it still holds reaches the
    // table after the rows are deleted.
    if let Some(nats) = &state.nats {
        purge_from_stream(nats, &id).await;
    }
    let members: Vec<Uuid> = sqlx::query_scalar("SELECT user_id FROM memberships WHERE room_id = $1")
        .bind(id.as_str())
        .fetch_all(&state.db)
        .await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM rooms WHERE id = $1 AND owner_id = $2")
        .bind(id.as_str())
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
    natter_history::delete_room(&mut tx, &id).await?;
    tx.commit().await?;
    room_events::publish(state.nats.as_ref(), &id, RoomEvent::Deleted).await;
    tell_rooms_changed(&state, &members, &id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a deleted room's messages from the chat stream too, so no gateway replays them. If the stream cannot be
/// reached they age out with its retention; the room is gone either way (its history reads answer 404).
async fn purge_from_stream(nats: &async_nats::Client, room: &natter_proto::RoomId) {
    let js = async_nats::jetstream::new(nats.clone());
    let purged = async {
        js.get_stream(natter_proto::bus::CHAT_STREAM)
            .await?
            .purge()
            .filter(natter_proto::subject::room_messages(room))
            .await
            .map_err(anyhow::Error::from)
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), purged).await {
        Ok(Ok(done)) => {
            tracing::info!(room = %room, messages = done.purged, "deleted room purged from the chat stream")
        }
        Ok(Err(err)) => {
            tracing::warn!(room = %room, error = %err, "cannot purge the deleted room from the chat stream")
        }
        Err(_) => tracing::warn!(room = %room, "purging the deleted room from the chat stream timed out"),
    }
}

/// Move the caller's read cursor in a room forward to `seq`; answers the cursor and the room's unread count.
#[utoipa::path(put, path = "/api/rooms/{id}/read", tag = "rooms", request_body = MarkRead, security(("bearer" = [])),
    params(RoomPath),
    responses(
        (status = 200, description = "The cursor as stored (never lowered)", body = ReadCursor),
        (status = 403, description = "`not_member`, `room_private`", body = ErrorBody),
        (status = 404, description = "`room_not_found`", body = ErrorBody),
        (status = 422, description = "`invalid_seq`, `invalid_body`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn mark_read(
    State(state): State<AppState>,
    user: AuthUser,
    RoomPath(id): RoomPath,
    ApiJson(body): ApiJson<MarkRead>,
) -> ApiResult<Json<ReadCursor>> {
    if !(0..=MAX_SEQ).contains(&body.seq) {
        return Err(ApiError::validation(
            "invalid_seq",
            format!("seq must be between 0 and {MAX_SEQ}"),
        ));
    }
    let room = visible_room(&state, user.id, &id).await?;
    if !room.joined {
        return Err(ApiError::forbidden(
            "not_member",
            "join the room before marking it read",
        ));
    }
    // The seq is not checked against stored history: a live message is seen before the persister stores it.
    let updated =
        sqlx::query("UPDATE memberships SET read_seq = GREATEST(read_seq, $3) WHERE room_id = $1 AND user_id = $2")
            .bind(id.as_str())
            .bind(user.id)
            .bind(body.seq)
            .execute(&state.db)
            .await?;
    if updated.rows_affected() == 0 {
        // Left or deleted between the check and the update.
        return Err(ApiError::forbidden(
            "not_member",
            "join the room before marking it read",
        ));
    }
    let room = load_room(&state, user.id, &id).await?;
    // Every device of the user: their counts drop everywhere at once.
    let moved = PersonalEvent::Read {
        room: id.clone(),
        read_seq: room.read_seq,
        unread: room.unread,
        mentions: room.mentions,
    };
    room_events::tell_users(state.nats.as_ref(), &[user.id], moved).await;
    Ok(Json(ReadCursor {
        room: room.id,
        read_seq: room.read_seq,
        last_seq: room.last_seq,
        unread: room.unread,
        mentions: room.mentions,
    }))
}

/// Mute a room or conversation the caller is in, or hear it again: a muted one notifies nothing and shows no
/// unread badge unless a message mentions the caller (the web client's part; the counts are answered as ever).
#[utoipa::path(put, path = "/api/rooms/{id}/mute", tag = "rooms", request_body = Mute, security(("bearer" = [])),
    params(RoomPath),
    responses(
        (status = 200, description = "The room as the caller now sees it", body = Room),
        (status = 403, description = "`not_member`, `room_private`, `banned`", body = ErrorBody),
        (status = 404, description = "`room_not_found`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn mute_room(
    State(state): State<AppState>,
    user: AuthUser,
    RoomPath(id): RoomPath,
    ApiJson(body): ApiJson<Mute>,
) -> ApiResult<Json<Room>> {
    visible_room(&state, user.id, &id).await?;
    let updated = sqlx::query("UPDATE memberships SET muted = $3 WHERE room_id = $1 AND user_id = $2")
        .bind(id.as_str())
        .bind(user.id)
        .bind(body.muted)
        .execute(&state.db)
        .await?;
    if updated.rows_affected() == 0 {
        return Err(ApiError::forbidden("not_member", "join the room before muting it"));
    }
    tell_rooms_changed(&state, &[user.id], &id).await;
    Ok(Json(load_room(&state, user.id, &id).await?))
}

/// The members of a room (private rooms: members only).
#[utoipa::path(get, path = "/api/rooms/{id}/members", tag = "rooms", security(("bearer" = [])),
    params(RoomPath),
    responses(
        (status = 200, description = "Members, owner first", body = [Member]),
        (status = 403, description = "`room_private`", body = ErrorBody),
        (status = 404, description = "`room_not_found`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the user's request budget", body = ErrorBody),
    ))]
pub async fn room_members(
    State(state): State<AppState>,
    user: AuthUser,
    RoomPath(id): RoomPath,
) -> ApiResult<Json<Vec<Member>>> {
    visible_room(&state, user.id, &id).await?;
    let rows: Vec<(Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT u.id, u.username, m.role, m.joined_at FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.room_id = $1 ORDER BY m.role = 'owner' DESC, m.joined_at, u.username",
    )
    .bind(id.as_str())
    .fetch_all(&state.db)
    .await?;
    Ok(Json(
        rows.into_iter()
            .map(|(id, name, role, joined_at)| Member {
                id,
                name,
                role,
                joined_at,
            })
            .collect(),
    ))
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
