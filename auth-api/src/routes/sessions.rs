//! A user's own sessions: the list of them, ending one or all of them ("log out everywhere"), and changing the
//! password, which ends every session but the one it was changed from.
//!
//! A session is a token family: one sign-in and every refresh token rotated from it, the `sid` of its access
//! tokens. Ending one is what a logout does: the family is revoked in PostgreSQL (its refresh tokens stop working,
//! its access tokens are refused with `token_revoked`), and recorded in the revoked-sessions bucket, from which the
//! gateways close its sockets with 4003.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use natter_proto::Username;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, AuthUser, ClientAddr};
use crate::password;
use crate::revocation::{self, reason_from_column};
use crate::routes::auth::tell_gateways;
use crate::state::AppState;

/// Most sessions listed: the most recently used first.
pub const LIST_LIMIT: i64 = 100;

/// One of the caller's sessions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// The session id: the `sid` of its access tokens.
    pub id: Uuid,
    /// When it was signed in.
    pub created_at: DateTime<Utc>,
    /// When it last got tokens: its sign-in or its latest refresh.
    pub last_used_at: DateTime<Utc>,
    /// When it ends unless refreshed again (its newest refresh token's expiry; never past
    /// `--refresh-family-max-age` after its sign-in).
    pub expires_at: DateTime<Utc>,
    /// The `User-Agent` of its sign-in or latest refresh, when one was sent.
    pub user_agent: Option<String>,
    /// The client address of its sign-in or latest refresh (IPv6 addresses by their /64).
    pub address: Option<String>,
    /// Whether this is the session of the access token that asked.
    pub current: bool,
}

/// How many sessions a request ended.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EndedSessions {
    /// Sessions ended by this request (ones ended before are not counted).
    pub ended: u64,
}

/// Which sessions `DELETE /api/sessions` ends.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EndAllQuery {
    /// `true`: every session but the caller's. Absent or `false`: every session, the caller's included ("log out
    /// everywhere").
    #[serde(default)]
    pub keep_current: bool,
}

/// A password change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    pub current_password: String,
    /// The new password: at least 8 characters, at most 256 bytes in UTF-8 (as `Credentials`' `password`).
    #[schema(min_length = 8, max_length = 256)]
    pub new_password: String,
}

/// The caller's session id, when its token names a session (load-test tokens name one that has no row).
fn current_session(user: &AuthUser) -> Option<Uuid> {
    Uuid::parse_str(&user.claims.sid).ok()
}

fn unavailable(what: &str) -> ApiError {
    ApiError::Unavailable(format!(
        "{what}, but the live connections of the ended sessions could not be told yet; end them again with \
         DELETE /api/sessions?keep_current=true"
    ))
}

/// List the caller's live sessions (not ended, not expired), the most recently used first (at most 100).
#[utoipa::path(get, path = "/api/sessions", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "Sessions", body = [SessionInfo]),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ))]
pub async fn list_sessions(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Vec<SessionInfo>>> {
    let max_age = chrono::Duration::from_std(state.settings.refresh_family_max_age)
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    type Row = (
        Uuid,
        DateTime<Utc>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT f.id, f.created_at, f.last_used_at, \
         (SELECT max(t.expires_at) FROM refresh_tokens t WHERE t.family_id = f.id) AS expires_at, \
         f.user_agent, f.address \
         FROM token_families f WHERE f.user_id = $1 AND f.revoked_at IS NULL AND f.created_at > $2 \
         ORDER BY f.last_used_at DESC, f.id LIMIT $3",
    )
    .bind(user.id)
    .bind(Utc::now() - max_age)
    .bind(LIST_LIMIT)
    .fetch_all(&state.db)
    .await?;
    let now = Utc::now();
    let current = current_session(&user);
    Ok(Json(
        rows.into_iter()
            .filter_map(|(id, created_at, last_used_at, expires_at, user_agent, address)| {
                let expires_at = expires_at.filter(|at| *at > now)?;
                Some(SessionInfo {
                    id,
                    created_at,
                    last_used_at,
                    expires_at,
                    user_agent,
                    address,
                    current: current == Some(id),
                })
            })
            .collect(),
    ))
}

/// End one of the caller's sessions (the caller's own included): its refresh tokens stop working, its access
/// tokens are refused, and the gateways close its sockets with 4003. Ending an ended session again records it
/// again for the gateways (the way to complete one answered 503).
#[utoipa::path(delete, path = "/api/sessions/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The session id (`sid`)")),
    responses(
        (status = 204, description = "Ended"),
        (status = 400, description = "`invalid_session_id`", body = ErrorBody),
        (status = 404, description = "`session_not_found`: no session of the caller's has this id", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
        (status = 503, description = "`unavailable`: ended, but its live connections could not be told yet; retry",
            body = ErrorBody),
    ))]
pub async fn end_session(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> ApiResult<StatusCode> {
    let invalid = || ApiError::bad_request("invalid_session_id", "the session id is not a UUID");
    let axum::extract::Path(raw) = path.map_err(|_| invalid())?;
    let sid = Uuid::parse_str(&raw).map_err(|_| invalid())?;
    type Row = (Uuid, DateTime<Utc>, Option<String>);
    let row: Option<Row> = sqlx::query_as(
        "UPDATE token_families SET revoked_at = coalesce(revoked_at, now()), \
         revoked_reason = CASE WHEN revoked_at IS NULL THEN $3 ELSE revoked_reason END \
         WHERE id = $1 AND user_id = $2 RETURNING id, revoked_at, revoked_reason",
    )
    .bind(sid)
    .bind(user.id)
    .bind(revocation::ENDED)
    .fetch_optional(&state.db)
    .await?;
    let Some((family, revoked_at, reason)) = row else {
        return Err(ApiError::not_found(
            "session_not_found",
            "you have no session with this id",
        ));
    };
    tell_gateways(
        &state,
        family,
        user.id,
        revoked_at,
        reason_from_column(reason.as_deref()),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// End every session of the caller ("log out everywhere"), or with `?keep_current=true` every one but the
/// caller's. Sessions ended lately (within the day the gateways remember them) are recorded for the gateways
/// again, so repeating this completes an earlier request answered 503, a password change's included.
#[utoipa::path(delete, path = "/api/sessions", tag = "auth", security(("bearer" = [])), params(EndAllQuery),
    responses(
        (status = 200, description = "Ended", body = EndedSessions),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
        (status = 503, description = "`unavailable`: ended, but their live connections could not be told yet; \
            retry", body = ErrorBody),
    ))]
pub async fn end_all_sessions(
    State(state): State<AppState>,
    user: AuthUser,
    query: Result<Query<EndAllQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<EndedSessions>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let keep = query.keep_current.then(|| current_session(&user)).flatten();
    let ended = revoke_sessions(&state, user.id, keep, revocation::ENDED).await?;
    // Those ended lately by anything but reuse are recorded again, in case an earlier write was lost.
    let remembered = chrono::Duration::from_std(natter_stream::sessions::MAX_AGE).unwrap_or_default();
    let lately: Vec<(Uuid, DateTime<Utc>, Option<String>)> = sqlx::query_as(
        "SELECT id, revoked_at, revoked_reason FROM token_families \
         WHERE user_id = $1 AND revoked_at > $2 AND ($3::uuid IS NULL OR id <> $3)",
    )
    .bind(user.id)
    .bind(Utc::now() - remembered)
    .bind(keep)
    .fetch_all(&state.db)
    .await?;
    for (family, revoked_at, reason) in lately {
        tell_gateways(
            &state,
            family,
            user.id,
            revoked_at,
            reason_from_column(reason.as_deref()),
        )
        .await
        .map_err(|_| unavailable("the sessions are ended (their refresh tokens no longer work)"))?;
    }
    Ok(Json(EndedSessions { ended }))
}

/// Change the caller's password, given the current one. Every other session of the user is ended, as if logged
/// out (the gateways close their sockets with 4003); the caller's session goes on. Wrong current passwords count
/// against the same failure budgets as logins (`docs/security.md`, "Login guessing").
#[utoipa::path(post, path = "/api/account/password", tag = "auth", request_body = PasswordChange,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed; `ended` other sessions were ended", body = EndedSessions),
        (status = 401, description = "`unknown_user`: the token's user no longer exists", body = ErrorBody),
        (status = 403, description = "`wrong_password`: the current password is not right; `no_password`: a guest \
            account has no password", body = ErrorBody),
        (status = 422, description = "`invalid_password`: shorter than 8 characters or longer than 256 bytes",
            body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many wrong passwords, or too many requests", body = ErrorBody),
        (status = 503, description = "`unavailable`: changed and the other sessions ended, but their live \
            connections could not be told yet; complete it with `DELETE /api/sessions?keep_current=true`",
            body = ErrorBody),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    ClientAddr(addr): ClientAddr,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<Json<EndedSessions>> {
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT username, password_hash FROM users WHERE id = $1")
            .bind(user.id)
            .fetch_optional(&state.db)
            .await?;
    let Some((name, stored)) = row else {
        return Err(ApiError::unauthorized(
            "unknown_user",
            "the token's user no longer exists",
        ));
    };
    if stored.is_none() {
        return Err(ApiError::forbidden(
            "no_password",
            "a guest account has no password to change",
        ));
    }
    password::check_policy(&body.new_password).map_err(|m| ApiError::validation("invalid_password", m))?;
    // Someone holding a stolen access token must not be able to guess the password here faster than at login.
    let key = Username::parse(&name).map(|n| n.key()).unwrap_or(name);
    let attempt = state.logins.begin(&key, addr).await?;
    if !password::verify(body.current_password, stored).await? {
        return Err(ApiError::forbidden(
            "wrong_password",
            "the current password is not right",
        ));
    }
    attempt.succeeded().await?;
    let hash = password::hash(body.new_password).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(user.id)
        .bind(hash)
        .execute(&mut *tx)
        .await?;
    let current = current_session(&user);
    let ended = revoke_in(&mut tx, user.id, current, revocation::PASSWORD_CHANGE).await?;
    tx.commit().await?;
    tracing::info!(user = %user.id, sessions_ended = ended.len(), "password changed; other sessions ended");
    for (family, revoked_at) in &ended {
        tell_gateways(
            &state,
            *family,
            user.id,
            *revoked_at,
            reason_from_column(Some(revocation::PASSWORD_CHANGE)),
        )
        .await
        .map_err(|_| unavailable("the password is changed and the other sessions are ended"))?;
    }
    Ok(Json(EndedSessions {
        ended: ended.len() as u64,
    }))
}

/// Revokes every live session of `user` but `keep`, for `reason`; returns how many it revoked. (The caller tells
/// the gateways.)
async fn revoke_sessions(state: &AppState, user: Uuid, keep: Option<Uuid>, reason: &str) -> ApiResult<u64> {
    let mut tx = state.db.begin().await?;
    let ended = revoke_in(&mut tx, user, keep, reason).await?;
    tx.commit().await?;
    Ok(ended.len() as u64)
}

/// Revokes every live session of `user` but `keep` within `tx`; returns each with when it was revoked.
async fn revoke_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> ApiResult<Vec<(Uuid, DateTime<Utc>)>> {
    Ok(sqlx::query_as(
        "UPDATE token_families SET revoked_at = now(), revoked_reason = $3 \
         WHERE user_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR id <> $2) RETURNING id, revoked_at",
    )
    .bind(user)
    .bind(keep)
    .bind(reason)
    .fetch_all(&mut **tx)
    .await?)
}
