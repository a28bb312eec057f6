//! Accounts and sessions: register, login, guest, refresh, logout.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use natter_proto::Username;
use natter_proto::bus::RevokeReason;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ClientAddr};
use crate::metrics;
use crate::password;
use crate::revocation::{self, reason_from_column};
use crate::state::AppState;

/// Credentials for register and login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// 3 to 32 characters of letters, digits, `_` and `-`, starting with a letter or digit.
    pub username: String,
    /// At least 8 characters.
    pub password: String,
}

/// A guest login: a name, no password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuestRequest {
    /// The name to appear under; same rules as account names, and unique among all users.
    pub username: String,
}

/// A refresh token to rotate or revoke.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last token response.
    pub refresh_token: String,
}

/// A user as others see them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    /// Stable id (the `sub` of access tokens).
    pub id: Uuid,
    /// User name.
    pub name: String,
    /// Whether this is a guest account.
    pub guest: bool,
}

/// Tokens, as in OAuth 2 (RFC 6749 §5.1).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// EdDSA-signed JWT; send as `Authorization: Bearer …` and to the gateway.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single-use token for `POST /api/refresh`.
    pub refresh_token: String,
    /// Who the tokens are for.
    pub user: UserInfo,
}

fn parse_username(raw: &str) -> ApiResult<Username> {
    Username::parse(raw).map_err(|e| ApiError::validation("invalid_username", e.to_string()))
}

fn limited(wait: std::time::Duration) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs: wait.as_secs().max(1),
    }
}

fn hash_refresh(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Mints an access token and a new refresh token in `family` (a new family when `None`).
async fn issue_tokens(
    state: &AppState,
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user: UserInfo,
    family: Option<Uuid>,
) -> ApiResult<TokenResponse> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let refresh_token = URL_SAFE_NO_PAD.encode(raw);
    let expires_at = Utc::now()
        + chrono::Duration::from_std(state.settings.refresh_ttl).map_err(|e| ApiError::Unexpected(e.into()))?;
    let family = match family {
        Some(family) => family,
        None => {
            let family = Uuid::new_v4();
            sqlx::query("INSERT INTO token_families (id, user_id) VALUES ($1, $2)")
                .bind(family)
                .bind(user.id)
                .execute(&mut **tx)
                .await?;
            family
        }
    };
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::new_v4())
    .bind(family)
    .bind(user.id)
    .bind(hash_refresh(&refresh_token))
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    let access_token = state
        .keys
        .mint(&user.id.to_string(), &user.name, user.guest, &family.to_string())?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: state.keys.access_ttl().as_secs(),
        refresh_token,
        user,
    })
}

/// Whether a database error is the unique violation on user names.
fn is_name_taken(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

async fn create_user(state: &AppState, name: Username, password_hash: Option<String>) -> ApiResult<TokenResponse> {
    let guest = password_hash.is_none();
    let mut tx = state.db.begin().await?;
    let id = Uuid::new_v4();
    let inserted = sqlx::query(
        "INSERT INTO users (id, username, username_key, password_hash, is_guest) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(name.as_str())
    .bind(name.key())
    .bind(password_hash)
    .bind(guest)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(err) if is_name_taken(&err) => {
            return Err(ApiError::conflict(
                "username_taken",
                format!("the name '{name}' is already taken"),
            ));
        }
        other => other?,
    };
    let user = UserInfo {
        id,
        name: name.into_string(),
        guest,
    };
    let tokens = issue_tokens(state, &mut tx, user, None).await?;
    tx.commit().await?;
    Ok(tokens)
}

/// Create an account and log in.
#[utoipa::path(post, path = "/api/register", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "Account created", body = TokenResponse),
        (status = 409, description = "`username_taken`", body = ErrorBody),
        (status = 422, description = "`invalid_username`, `invalid_password`, `invalid_body`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ))]
pub async fn register(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    state.auth_per_address.hit(&addr.to_string()).map_err(limited)?;
    let name = parse_username(&body.username)?;
    password::check_policy(&body.password).map_err(|m| ApiError::validation("invalid_password", m))?;
    let hash = password::hash(body.password).await?;
    let key = name.key();
    let tokens = create_user(&state, name, Some(hash)).await?;
    // The account's first sign-in: its address is one it logs in from.
    state.logins.remember(&key, addr);
    metrics::login("register", "ok");
    Ok((StatusCode::CREATED, Json(tokens)))
}

/// Log in with a user name and password.
#[utoipa::path(post, path = "/api/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many failed logins for this user name from this \
            address, or from addresses it has not logged in from lately, or too many attempts from this address",
            body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Json<TokenResponse>> {
    let invalid = || ApiError::unauthorized("invalid_credentials", "wrong user name or password");
    state.auth_per_address.hit(&addr.to_string()).map_err(limited)?;
    // A malformed name cannot exist: it gets the same answer and the same work as a wrong password, but no
    // per-user limiter entry (those maps should hold names, not whatever a client sends). Names that exist and
    // names that do not are limited alike, so a 429 does not tell which is which.
    let (attempt, row) = match Username::parse(&body.username) {
        Ok(name) => {
            let attempt = state.logins.begin(&name.key(), addr).map_err(limited)?;
            let row: Option<(Uuid, String, Option<String>)> =
                sqlx::query_as("SELECT id, username, password_hash FROM users WHERE username_key = $1")
                    .bind(name.key())
                    .fetch_optional(&state.db)
                    .await?;
            (Some(attempt), row)
        }
        Err(_) => (None, None),
    };
    let (id, name, stored) = match row {
        Some((id, name, stored)) => (Some(id), name, stored),
        None => (None, String::new(), None),
    };
    if !password::verify(body.password, stored).await? {
        metrics::login("password", "invalid_credentials");
        return Err(invalid());
    }
    let id = id.ok_or_else(invalid)?;
    if let Some(attempt) = attempt {
        attempt.succeeded();
    }
    let mut tx = state.db.begin().await?;
    let tokens = issue_tokens(&state, &mut tx, UserInfo { id, name, guest: false }, None).await?;
    tx.commit().await?;
    metrics::login("password", "ok");
    Ok(Json(tokens))
}

/// Log in as a guest under a new, unique name (if guest logins are enabled).
#[utoipa::path(post, path = "/api/guest", tag = "auth", request_body = GuestRequest,
    responses(
        (status = 201, description = "Guest account created", body = TokenResponse),
        (status = 403, description = "`guests_disabled`", body = ErrorBody),
        (status = 409, description = "`username_taken`", body = ErrorBody),
        (status = 422, description = "`invalid_username`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ))]
pub async fn guest(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(body): ApiJson<GuestRequest>,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    if !state.settings.guests {
        return Err(ApiError::forbidden(
            "guests_disabled",
            "guest logins are turned off on this server",
        ));
    }
    state.auth_per_address.hit(&addr.to_string()).map_err(limited)?;
    let name = parse_username(&body.username)?;
    let tokens = create_user(&state, name, None).await?;
    metrics::login("guest", "ok");
    Ok((StatusCode::CREATED, Json(tokens)))
}

/// Trade a refresh token for new tokens. The old refresh token is spent; presenting a spent token again after
/// `--refresh-reuse-grace` (10 s) is treated as theft and revokes every token of its family, access tokens
/// included. A token of a revoked family records the revocation again for the gateways, as a logout does.
#[utoipa::path(post, path = "/api/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "`invalid_refresh_token`, `refresh_token_expired`, `refresh_token_revoked`, \
            `refresh_token_reused`", body = ErrorBody),
        (status = 503, description = "`unavailable`: the session was revoked (reuse, or an earlier logout) but its \
            live connections could not be told yet; retry", body = ErrorBody),
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let mut tx = state.db.begin().await?;
    // Lock the token, then its family: a concurrent refresh of the same token waits here and then sees it spent;
    // a concurrent logout either revokes the family first (seen below) or after this commit (the new token is
    // then in the revoked family and unusable).
    type TokenRow = (Uuid, Uuid, chrono::DateTime<Utc>, Option<chrono::DateTime<Utc>>);
    let row: Option<TokenRow> = sqlx::query_as(
        "SELECT family_id, user_id, expires_at, used_at FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(hash_refresh(&body.refresh_token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((family, user_id, expires_at, used_at)) = row else {
        metrics::login("refresh", "invalid_refresh_token");
        return Err(ApiError::unauthorized("invalid_refresh_token", "unknown refresh token"));
    };
    let (revoked, reason): (Option<chrono::DateTime<Utc>>, Option<String>) =
        sqlx::query_as("SELECT revoked_at, revoked_reason FROM token_families WHERE id = $1 FOR UPDATE")
            .bind(family)
            .fetch_one(&mut *tx)
            .await?;
    if let Some(revoked_at) = revoked {
        // Unlocked before NATS is waited for.
        drop(tx);
        metrics::login("refresh", "refresh_token_revoked");
        // Told again: the write when the session ended may have failed.
        tell_gateways(
            &state,
            family,
            user_id,
            revoked_at,
            reason_from_column(reason.as_deref()),
        )
        .await?;
        return Err(ApiError::unauthorized(
            "refresh_token_revoked",
            "this session was logged out; log in again",
        ));
    }
    // A token presented again shortly after its first use is a second tab of the same browser that read the
    // session before the first tab's refresh reached it, or a retry after a lost response: it gets a new pair in
    // the same family. Later, it can only be a copy.
    let grace = chrono::Duration::from_std(state.settings.refresh_reuse_grace).unwrap_or_default();
    let within_grace = used_at.is_some_and(|used| Utc::now() - used < grace);
    if used_at.is_some() && !within_grace {
        let revoked_at: chrono::DateTime<Utc> = sqlx::query_scalar(
            "UPDATE token_families SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 RETURNING revoked_at",
        )
        .bind(family)
        .bind(revocation::REFRESH_REUSE)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        ::metrics::counter!(crate::metrics::REFRESH_REUSE).increment(1);
        metrics::login("refresh", "refresh_token_reused");
        tracing::warn!(%user_id, %family, "refresh token reused; token family revoked");
        tell_gateways(&state, family, user_id, revoked_at, RevokeReason::RefreshReuse).await?;
        return Err(ApiError::unauthorized(
            "refresh_token_reused",
            "this refresh token was already used; every session from it is revoked, log in again",
        ));
    }
    if expires_at <= Utc::now() {
        metrics::login("refresh", "refresh_token_expired");
        return Err(ApiError::unauthorized(
            "refresh_token_expired",
            "the refresh token has expired; log in again",
        ));
    }
    if within_grace {
        metrics::login("refresh", "reused_within_grace");
    } else {
        sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1")
            .bind(hash_refresh(&body.refresh_token))
            .execute(&mut *tx)
            .await?;
    }
    let (name, guest): (String, bool) = sqlx::query_as("SELECT username, is_guest FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
    let tokens = issue_tokens(
        &state,
        &mut tx,
        UserInfo {
            id: user_id,
            name,
            guest,
        },
        Some(family),
    )
    .await?;
    tx.commit().await?;
    if !within_grace {
        metrics::login("refresh", "ok");
    }
    Ok(Json(tokens))
}

/// Log out: revoke the refresh token and every token rotated from the same login, and tell the gateways, which
/// then refuse the session's access tokens and close its connections. Answers 204 whether or not the token was
/// known, so it cannot be used to test tokens. Logging out again records the revocation again: a logout answered
/// 503 (the gateways could not be told) is completed by retrying it.
#[utoipa::path(post, path = "/api/logout", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 204, description = "Logged out"),
        (status = 503, description = "`unavailable`: the session is ended for refresh, but its live connections \
            could not be told yet; retry", body = ErrorBody),
    ))]
pub async fn logout(State(state): State<AppState>, ApiJson(body): ApiJson<RefreshRequest>) -> ApiResult<StatusCode> {
    type FamilyRow = (Uuid, Uuid, chrono::DateTime<Utc>, Option<String>);
    let row: Option<FamilyRow> = sqlx::query_as(
        "UPDATE token_families SET revoked_at = coalesce(revoked_at, now()), \
         revoked_reason = CASE WHEN revoked_at IS NULL THEN $2 ELSE revoked_reason END \
         WHERE id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1) \
         RETURNING id, user_id, revoked_at, revoked_reason",
    )
    .bind(hash_refresh(&body.refresh_token))
    .bind(revocation::LOGOUT)
    .fetch_optional(&state.db)
    .await?;
    if let Some((family, user, revoked_at, reason)) = row {
        tell_gateways(&state, family, user, revoked_at, reason_from_column(reason.as_deref())).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Records the revoked session `family` where the gateways follow it, unless it was revoked longer ago than any
/// access token lives (none is minted after the revocation, and the configuration keeps every lifetime within
/// the bucket's [`natter_stream::sessions::MAX_AGE`]). Without NATS there are no gateways to tell.
async fn tell_gateways(
    state: &AppState,
    family: Uuid,
    user: Uuid,
    revoked_at: chrono::DateTime<Utc>,
    reason: RevokeReason,
) -> ApiResult<()> {
    let Some(revocations) = &state.revocations else {
        return Ok(());
    };
    if (Utc::now() - revoked_at)
        .to_std()
        .is_ok_and(|since| since > natter_stream::sessions::MAX_AGE)
    {
        return Ok(());
    }
    revocations.record(family, user, reason).await.map_err(|err| {
        tracing::warn!(%user, session = %family, ?reason, error = %err,
            "session revoked but the gateways could not be told; its connections stay open until a retry");
        ApiError::Unavailable(
            "the session is ended (its refresh tokens no longer work), but its live connections could not be told \
             yet; retry"
                .into(),
        )
    })
}
