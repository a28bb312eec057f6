//! Accounts and sessions: register, login, guest, refresh, logout.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use natter_proto::Username;
use natter_proto::bus::RevokeReason;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ClientAddr, OptionalJson, UserAgent};
use crate::metrics;
use crate::password;
use crate::refresh_cookie::{self, RefreshMode};
use crate::revocation::{self, reason_from_column};
use crate::state::AppState;

/// Credentials for register and login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// 3 to 32 characters of letters, digits, `_` and `-`, starting with a letter or digit.
    #[schema(value_type = crate::routes::Username)]
    pub username: String,
    /// At least 8 characters and at most 256 bytes in UTF-8: up to 256 characters, fewer where they are not ASCII
    /// (a longer one is refused with 422 `invalid_password` at registration).
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
}

/// A guest login: a name, no password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuestRequest {
    /// The name to appear under; same rules as account names, and unique among all users.
    #[schema(value_type = crate::routes::Username)]
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
    /// Single-use token for `POST /api/refresh`. Absent in cookie mode (`Natter-Refresh-Token: cookie`), where
    /// it is set as an `HttpOnly` cookie instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the refresh token expires (for the cookie's lifetime; not sent).
    #[serde(skip)]
    #[schema(ignore)]
    pub refresh_expires_at: DateTime<Utc>,
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

/// Where a sign-in or a refresh came from: kept with its session, for the user's list of sessions.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// The client address (as rate limits see it).
    pub address: std::net::IpAddr,
}

/// The key a spent refresh token's successor is sealed with: only a holder of the spent token can derive it.
fn sealing_key(spent: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"natter refresh successor\0");
    hasher.update(spent.as_bytes());
    hasher.finalize().into()
}

/// Seals `successor` (a refresh token as handed out) with the token it replaces, for `successor_sealed`.
fn seal(successor: &str, spent: &str) -> Option<Vec<u8>> {
    let raw = URL_SAFE_NO_PAD.decode(successor).ok()?;
    let raw: [u8; 32] = raw.try_into().ok()?;
    Some(raw.iter().zip(sealing_key(spent)).map(|(a, b)| a ^ b).collect())
}

/// Opens what [`seal`] sealed, given the same spent token.
fn unseal(sealed: &[u8], spent: &str) -> Option<String> {
    let raw: [u8; 32] = sealed.try_into().ok()?;
    let opened: Vec<u8> = raw.iter().zip(sealing_key(spent)).map(|(a, b)| a ^ b).collect();
    Some(URL_SAFE_NO_PAD.encode(opened))
}

/// When a refresh token minted now in a session started at `session_started` expires: after the refresh-token
/// lifetime, but never after the session's maximum age.
fn refresh_expiry(state: &AppState, session_started: DateTime<Utc>) -> ApiResult<DateTime<Utc>> {
    let ttl = chrono::Duration::from_std(state.settings.refresh_ttl).map_err(|e| ApiError::Unexpected(e.into()))?;
    let max_age = chrono::Duration::from_std(state.settings.refresh_family_max_age)
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok((Utc::now() + ttl).min(session_started + max_age))
}

/// Stores a new refresh token of `family`, expiring at `expires_at`; returns it.
async fn store_refresh_token(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    family: Uuid,
    user: Uuid,
    expires_at: DateTime<Utc>,
) -> ApiResult<String> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let refresh_token = URL_SAFE_NO_PAD.encode(raw);
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::new_v4())
    .bind(family)
    .bind(user)
    .bind(hash_refresh(&refresh_token))
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(refresh_token)
}

/// A token response: a new access token of session `family` with `refresh_token`, which expires at `expires_at`.
fn token_response(
    state: &AppState,
    user: UserInfo,
    family: Uuid,
    refresh_token: String,
    expires_at: DateTime<Utc>,
) -> ApiResult<TokenResponse> {
    let access_token = state
        .keys
        .mint(&user.id.to_string(), &user.name, user.guest, &family.to_string())?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: state.keys.access_ttl().as_secs(),
        refresh_token: Some(refresh_token),
        refresh_expires_at: expires_at,
        user,
    })
}

/// Answers `tokens` with `status`: in cookie mode the refresh token goes in the cookie, not the body.
fn deliver(status: StatusCode, mut tokens: TokenResponse, mode: &RefreshMode) -> Response {
    let mut headers = axum::http::HeaderMap::new();
    if mode.cookie
        && let Some(token) = tokens.refresh_token.take()
    {
        headers = refresh_cookie::set(&token, tokens.refresh_expires_at);
    }
    (status, headers, Json(tokens)).into_response()
}

/// Starts a session (a new token family) for `user`: its first refresh token and an access token.
async fn start_session(
    state: &AppState,
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user: UserInfo,
    origin: &Origin,
) -> ApiResult<TokenResponse> {
    let family = Uuid::new_v4();
    let started: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO token_families (id, user_id, user_agent, address) VALUES ($1, $2, $3, $4) RETURNING created_at",
    )
    .bind(family)
    .bind(user.id)
    .bind(origin.user_agent.as_deref())
    .bind(origin.address.to_string())
    .fetch_one(&mut **tx)
    .await?;
    let expires_at = refresh_expiry(state, started)?;
    let refresh_token = store_refresh_token(tx, family, user.id, expires_at).await?;
    token_response(state, user, family, refresh_token, expires_at)
}

/// Whether a database error is the unique violation on user names.
fn is_name_taken(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

async fn create_user(
    state: &AppState,
    name: Username,
    password_hash: Option<String>,
    origin: &Origin,
) -> ApiResult<TokenResponse> {
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
    let tokens = start_session(state, &mut tx, user, origin).await?;
    tx.commit().await?;
    Ok(tokens)
}

/// Create an account and log in.
#[utoipa::path(post, path = "/api/register", tag = "auth", request_body = Credentials,
    params(("Natter-Refresh-Token" = Option<String>, Header,
        description = "`cookie`: the refresh token travels in an HttpOnly cookie, not in the JSON body")),
    responses(
        (status = 201, description = "Account created", body = TokenResponse),
        (status = 409, description = "`username_taken`", body = ErrorBody),
        (status = 422, description = "`invalid_username`, `invalid_password`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many attempts from this address", body = ErrorBody),
        (status = 503, description = "`unavailable`: the database cannot be reached", body = ErrorBody),
    ))]
pub async fn register(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    UserAgent(user_agent): UserAgent,
    mode: RefreshMode,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Response> {
    state.auth_per_address.hit(&addr.to_string()).map_err(limited)?;
    let name = parse_username(&body.username)?;
    password::check_policy(&body.password).map_err(|m| ApiError::validation("invalid_password", m))?;
    let hash = password::hash(body.password).await?;
    let key = name.key();
    let origin = Origin {
        user_agent,
        address: addr,
    };
    let tokens = create_user(&state, name, Some(hash), &origin).await?;
    // The account's first sign-in: its address is one it logs in from.
    state.logins.remember(&key, addr).await?;
    metrics::login("register", "ok");
    Ok(deliver(StatusCode::CREATED, tokens, &mode))
}

/// Log in with a user name and password.
#[utoipa::path(post, path = "/api/login", tag = "auth", request_body = Credentials,
    params(("Natter-Refresh-Token" = Option<String>, Header,
        description = "`cookie`: the refresh token travels in an HttpOnly cookie, not in the JSON body")),
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many failed logins for this user name from this \
            address, or from addresses it has not logged in from lately, or too many attempts from this address",
            body = ErrorBody),
        (status = 503, description = "`unavailable`: the database cannot be reached", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    UserAgent(user_agent): UserAgent,
    mode: RefreshMode,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Response> {
    let invalid = || ApiError::unauthorized("invalid_credentials", "wrong user name or password");
    state.auth_per_address.hit(&addr.to_string()).map_err(limited)?;
    // A malformed name cannot exist: it gets the same answer and the same work as a wrong password, but no
    // per-user limiter entry (those maps should hold names, not whatever a client sends). Names that exist and
    // names that do not are limited alike, so a 429 does not tell which is which.
    let (attempt, row) = match Username::parse(&body.username) {
        Ok(name) => {
            let attempt = state.logins.begin(&name.key(), addr).await?;
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
        attempt.succeeded().await?;
    }
    let mut tx = state.db.begin().await?;
    let origin = Origin {
        user_agent,
        address: addr,
    };
    let tokens = start_session(&state, &mut tx, UserInfo { id, name, guest: false }, &origin).await?;
    tx.commit().await?;
    metrics::login("password", "ok");
    Ok(deliver(StatusCode::OK, tokens, &mode))
}

/// Log in as a guest under a new, unique name (if guest logins are enabled).
#[utoipa::path(post, path = "/api/guest", tag = "auth", request_body = GuestRequest,
    params(("Natter-Refresh-Token" = Option<String>, Header,
        description = "`cookie`: the refresh token travels in an HttpOnly cookie, not in the JSON body")),
    responses(
        (status = 201, description = "Guest account created", body = TokenResponse),
        (status = 403, description = "`guests_disabled`", body = ErrorBody),
        (status = 409, description = "`username_taken`", body = ErrorBody),
        (status = 422, description = "`invalid_username`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many attempts from this address", body = ErrorBody),
        (status = 503, description = "`unavailable`: the database cannot be reached", body = ErrorBody),
    ))]
pub async fn guest(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    UserAgent(user_agent): UserAgent,
    mode: RefreshMode,
    ApiJson(body): ApiJson<GuestRequest>,
) -> ApiResult<Response> {
    if !state.settings.guests {
        return Err(ApiError::forbidden(
            "guests_disabled",
            "guest logins are turned off on this server",
        ));
    }
    state.auth_per_address.hit(&addr.to_string()).map_err(limited)?;
    let name = parse_username(&body.username)?;
    let origin = Origin {
        user_agent,
        address: addr,
    };
    let tokens = create_user(&state, name, None, &origin).await?;
    metrics::login("guest", "ok");
    Ok(deliver(StatusCode::CREATED, tokens, &mode))
}

/// Trade a refresh token for new tokens. The old refresh token is spent. Presented again within
/// `--refresh-reuse-grace` (10 s) of its first use (a second tab, a retry after a lost response), it is answered
/// with the same new refresh token as its first use, so a session never forks into two live chains; presented again
/// later, it is treated as theft and revokes every token of its session, access tokens included. A session older
/// than `--refresh-family-max-age` (90 days) is refreshed no more, however often it was. A token of a revoked
/// session records the revocation again for the gateways, as a logout does. The token comes in the body or, in
/// cookie mode (`Natter-Refresh-Token: cookie`, browsers), in the `HttpOnly` cookie: then the new one is set as the
/// cookie and left out of the body, and a refusal removes the cookie.
#[utoipa::path(post, path = "/api/refresh", tag = "auth", request_body(content = Option<RefreshRequest>),
    params(("Natter-Refresh-Token" = Option<String>, Header,
        description = "`cookie`: the refresh token travels in an HttpOnly cookie, not in the JSON body")),
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "`invalid_refresh_token`, `refresh_token_expired`, `session_expired` (the \
            session is older than `--refresh-family-max-age`), `refresh_token_revoked`, `refresh_token_reused`",
            body = ErrorBody),
        (status = 503, description = "`unavailable`: the session was revoked (reuse, or an earlier logout) but its \
            live connections could not be told yet, or the database cannot be reached; retry", body = ErrorBody),
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    UserAgent(user_agent): UserAgent,
    mode: RefreshMode,
    OptionalJson(body): OptionalJson<RefreshRequest>,
) -> Response {
    let origin = Origin {
        user_agent,
        address: addr,
    };
    let presented = body.map(|b| b.refresh_token).or_else(|| mode.presented.clone());
    let Some(presented) = presented else {
        metrics::login("refresh", "invalid_refresh_token");
        let err = ApiError::unauthorized(
            "invalid_refresh_token",
            "no refresh token: send it as {\"refresh_token\": …}, or as the cookie with 'Natter-Refresh-Token: \
             cookie'",
        );
        return err.into_response();
    };
    match rotate(&state, &origin, presented).await {
        Ok(tokens) => deliver(StatusCode::OK, tokens, &mode),
        // A cookie that will never work again is dropped, so the browser stops sending it.
        Err(err) if mode.cookie && err.status() == StatusCode::UNAUTHORIZED => {
            (refresh_cookie::clear(), err).into_response()
        }
        Err(err) => err.into_response(),
    }
}

/// Spends `presented` for new tokens of its session (see [`refresh`]).
async fn rotate(state: &AppState, origin: &Origin, presented: String) -> ApiResult<TokenResponse> {
    let mut tx = state.db.begin().await?;
    // Lock the token, then its family: a concurrent refresh of the same token waits here and then sees it spent
    // (and its successor); a concurrent logout either revokes the family first (seen below) or after this commit
    // (the new token is then in the revoked family and unusable).
    type TokenRow = (Uuid, Uuid, DateTime<Utc>, Option<DateTime<Utc>>, Option<Vec<u8>>);
    let row: Option<TokenRow> = sqlx::query_as(
        "SELECT family_id, user_id, expires_at, used_at, successor_sealed FROM refresh_tokens \
         WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(hash_refresh(&presented))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((family, user_id, expires_at, used_at, sealed)) = row else {
        metrics::login("refresh", "invalid_refresh_token");
        return Err(ApiError::unauthorized("invalid_refresh_token", "unknown refresh token"));
    };
    let (revoked, reason, started): (Option<DateTime<Utc>>, Option<String>, DateTime<Utc>) =
        sqlx::query_as("SELECT revoked_at, revoked_reason, created_at FROM token_families WHERE id = $1 FOR UPDATE")
            .bind(family)
            .fetch_one(&mut *tx)
            .await?;
    if let Some(revoked_at) = revoked {
        // Unlocked before NATS is waited for.
        drop(tx);
        metrics::login("refresh", "refresh_token_revoked");
        // Told again: the write when the session ended may have failed.
        tell_gateways(
            state,
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
    // session before the first tab's refresh reached it, or a retry after a lost response: it gets what the first
    // use got. Later, it can only be a copy.
    let grace = chrono::Duration::from_std(state.settings.refresh_reuse_grace).unwrap_or_default();
    let within_grace = used_at.is_some_and(|used| Utc::now() - used < grace);
    if used_at.is_some() && !within_grace {
        let revoked_at: DateTime<Utc> = sqlx::query_scalar(
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
        tell_gateways(state, family, user_id, revoked_at, RevokeReason::RefreshReuse).await?;
        return Err(ApiError::unauthorized(
            "refresh_token_reused",
            "this refresh token was already used; every session from it is revoked, log in again",
        ));
    }
    let max_age = chrono::Duration::from_std(state.settings.refresh_family_max_age)
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    if started + max_age <= Utc::now() {
        metrics::login("refresh", "session_expired");
        return Err(ApiError::unauthorized(
            "session_expired",
            format!(
                "this session is older than the {} days a session may last, however often it is refreshed; log in \
                 again",
                max_age.num_days()
            ),
        ));
    }
    if expires_at <= Utc::now() {
        metrics::login("refresh", "refresh_token_expired");
        return Err(ApiError::unauthorized(
            "refresh_token_expired",
            "the refresh token has expired; log in again",
        ));
    }
    let expires_at = refresh_expiry(state, started)?;
    let refresh_token = match sealed.as_deref().filter(|_| within_grace) {
        // The same successor as the first use: one chain. (A spent token without a sealed successor was spent
        // before successors were kept: it gets a new one, as then.)
        Some(sealed) => unseal(sealed, &presented)
            .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("a sealed successor of the wrong size")))?,
        None => {
            let successor = store_refresh_token(&mut tx, family, user_id, expires_at).await?;
            if !within_grace {
                sqlx::query("UPDATE refresh_tokens SET used_at = now(), successor_sealed = $2 WHERE token_hash = $1")
                    .bind(hash_refresh(&presented))
                    .bind(seal(&successor, &presented))
                    .execute(&mut *tx)
                    .await?;
            }
            successor
        }
    };
    sqlx::query("UPDATE token_families SET last_used_at = now(), user_agent = $2, address = $3 WHERE id = $1")
        .bind(family)
        .bind(origin.user_agent.as_deref())
        .bind(origin.address.to_string())
        .execute(&mut *tx)
        .await?;
    let (name, guest): (String, bool) = sqlx::query_as("SELECT username, is_guest FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
    let user = UserInfo {
        id: user_id,
        name,
        guest,
    };
    let tokens = token_response(state, user, family, refresh_token, expires_at)?;
    tx.commit().await?;
    metrics::login("refresh", if within_grace { "reused_within_grace" } else { "ok" });
    Ok(tokens)
}

/// Log out: revoke the refresh token and every token rotated from the same login, and tell the gateways, which
/// then refuse the session's access tokens and close its connections. The token comes in the body or, in cookie
/// mode (`Natter-Refresh-Token: cookie`), in the cookie, which the answer removes. Answers 204 whether or not the
/// token was known, so it cannot be used to test tokens. Logging out again records the revocation again: a logout
/// answered 503 (the gateways could not be told) is completed by retrying it.
#[utoipa::path(post, path = "/api/logout", tag = "auth", request_body(content = Option<RefreshRequest>),
    params(("Natter-Refresh-Token" = Option<String>, Header,
        description = "`cookie`: the refresh token travels in an HttpOnly cookie, not in the JSON body")),
    responses(
        (status = 204, description = "Logged out"),
        (status = 503, description = "`unavailable`: the session is ended for refresh, but its live connections \
            could not be told yet, or the database cannot be reached; retry", body = ErrorBody),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    mode: RefreshMode,
    OptionalJson(body): OptionalJson<RefreshRequest>,
) -> ApiResult<Response> {
    let presented = body.map(|b| b.refresh_token).or(mode.presented);
    if let Some(presented) = presented {
        type FamilyRow = (Uuid, Uuid, chrono::DateTime<Utc>, Option<String>);
        let row: Option<FamilyRow> = sqlx::query_as(
            "UPDATE token_families SET revoked_at = coalesce(revoked_at, now()), \
             revoked_reason = CASE WHEN revoked_at IS NULL THEN $2 ELSE revoked_reason END \
             WHERE id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1) \
             RETURNING id, user_id, revoked_at, revoked_reason",
        )
        .bind(hash_refresh(&presented))
        .bind(revocation::LOGOUT)
        .fetch_optional(&state.db)
        .await?;
        if let Some((family, user, revoked_at, reason)) = row {
            // On a 503 the cookie stays, so that the retry can name the session again.
            tell_gateways(&state, family, user, revoked_at, reason_from_column(reason.as_deref())).await?;
        }
    }
    Ok((StatusCode::NO_CONTENT, refresh_cookie::clear()).into_response())
}

/// Records the revoked session `family` where the gateways follow it, unless it was revoked longer ago than any
/// access token lives (none is minted after the revocation, and the configuration keeps every lifetime within
/// the bucket's [`natter_stream::sessions::MAX_AGE`]). Without NATS there are no gateways to tell.
pub(crate) async fn tell_gateways(
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
