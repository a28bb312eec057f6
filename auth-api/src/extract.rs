//! Request extractors that turn bad input into [`ApiError`]s instead of axum's plain-text rejections.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use natter_proto::token::{AccessClaims, TokenError};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body whose rejections (syntax, types, size, content type) answer with the API's error format.
///
/// A whole number written with a fraction or an exponent (`2.0`, `1e3`) is taken where an integer is expected:
/// JSON Schema, in which the OpenAPI document describes every body, counts `2.0` as the integer 2, and serde takes
/// it only for a float. The body is read into its type first, as axum's `Json` reads it (so a body that does not
/// fit costs no more than its first token that does not); only a body refused for its data is read again, once,
/// with its whole numbers written as integers, and if that does not fit either, the first refusal stands.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(unsupported_media_type());
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                payload_too_large()
            } else {
                ApiError::bad_request("unreadable_body", rejection.body_text())
            }
        })?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(refused @ JsonRejection::JsonDataError(_)) => with_whole_numbers_as_integers(&bytes)
                .map(Self)
                .ok_or_else(|| refused.into()),
            Err(refused) => Err(refused.into()),
        }
    }
}

/// Whether `headers` say the body is JSON, as axum's `Json` decides it: `application/json` or `application/*+json`,
/// with any parameters.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(Ok(value)) = headers.get(axum::http::header::CONTENT_TYPE).map(|v| v.to_str()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.strip_suffix("+json").is_some_and(is_token),
        _ => false,
    }
}

/// Whether `s` is a non-empty media-type token (RFC 9110 `token`).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `bytes` read as a `T` once every whole number in them written with a fraction or an exponent is written as the
/// integer it is; `None` if there is none, or the body still does not fit.
fn with_whole_numbers_as_integers<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    fn integers(value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(number) => match number.as_f64() {
                // Beyond 2^53 a float is not one integer but the nearest of several: left as it is.
                Some(whole) if number.is_f64() && whole.fract() == 0.0 && whole.abs() < 9_007_199_254_740_992.0 => {
                    *number = (whole as i64).into();
                    true
                }
                _ => false,
            },
            serde_json::Value::Array(items) => items.iter_mut().fold(false, |changed, item| integers(item) | changed),
            serde_json::Value::Object(fields) => fields
                .values_mut()
                .fold(false, |changed, field| integers(field) | changed),
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if !integers(&mut value) {
        return None;
    }
    serde_json::from_value(value).ok()
}

fn unsupported_media_type() -> ApiError {
    ApiError::Http {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        code: "unsupported_media_type",
        message: "send the body as JSON with 'Content-Type: application/json'".into(),
    }
}

fn payload_too_large() -> ApiError {
    ApiError::Http {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "payload_too_large",
        message: "the request body is too large".into(),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(err) => ApiError::validation("invalid_body", err.body_text()),
            JsonRejection::JsonSyntaxError(err) => ApiError::bad_request("malformed_json", err.body_text()),
            JsonRejection::MissingJsonContentType(_) => unsupported_media_type(),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => payload_too_large(),
            other => ApiError::bad_request("unreadable_body", other.body_text()),
        }
    }
}

/// The caller, authenticated by a valid access token in `Authorization: Bearer …` whose session (`sid`, a token
/// family) has not been revoked, within the user's request budget (429 `rate_limited` past it).
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user's id (`sub`).
    pub id: Uuid,
    /// The verified claims.
    pub claims: AccessClaims,
    /// Whether the user's budgets apply: to everyone but the load-test mode's guests while that mode is on.
    budgeted: bool,
}

impl AuthUser {
    /// Spends from the caller's bucket of `budget` (one of [`crate::state::UserBudgets`]).
    pub fn spend(&self, budget: &crate::rate_limit::TokenBuckets) -> Result<(), ApiError> {
        if !self.budgeted {
            return Ok(());
        }
        budget
            .spend(&self.id.to_string())
            .map_err(|wait| ApiError::RateLimited {
                // Rounded up: a client that waits what it is told finds a token.
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            })
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("missing_token", "send an access token as 'Authorization: Bearer …'")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized("missing_token", "the Authorization header must be 'Bearer <token>'")
            })?;
        let mut verified = state.keys.verifier().verify(token);
        if verified == Err(TokenError::UnknownKey) && state.keys.reload_for_unknown_key(&state.db).await {
            verified = state.keys.verifier().verify(token);
        }
        let claims = verified.map_err(|err| {
            crate::metrics::auth_failure(err.code());
            ApiError::unauthorized(err.code(), err.to_string())
        })?;
        let refuse = |err: TokenError, message: &str| {
            crate::metrics::auth_failure(err.code());
            ApiError::unauthorized(err.code(), message)
        };
        let id = Uuid::parse_str(&claims.sub)
            .map_err(|_| refuse(TokenError::MissingClaim, "the token's subject is not a user id"))?;
        let sid = Uuid::parse_str(&claims.sid)
            .map_err(|_| refuse(TokenError::MissingClaim, "the token's session id is not a session id"))?;
        let user = Self {
            id,
            claims,
            budgeted: !(state.settings.load_test_key.is_some() && crate::routes::load_test::is_load_test_session(sid)),
        };
        // Spent before the database is asked about the session: a flood is refused without costing a connection.
        // (So a revoked session's tokens still spend their user's budget until they expire.)
        user.spend(&state.budgets.requests)?;
        // A session without a row (a load-test token's) cannot be logged out, so it is never revoked.
        let revoked: Option<bool> =
            sqlx::query_scalar("SELECT revoked_at IS NOT NULL FROM token_families WHERE id = $1")
                .bind(sid)
                .fetch_optional(&state.db)
                .await?;
        if revoked == Some(true) {
            return Err(refuse(TokenError::Revoked, &TokenError::Revoked.to_string()));
        }
        Ok(user)
    }
}

/// The client's address: the peer address, or, on a request from one of `--trusted-proxies`, the rightmost
/// address in the configured header that no trusted proxy holds (what the proxies appended; earlier entries are
/// whatever the client sent). IPv6 addresses are reduced to
/// their /64, the block one subscriber usually holds, so rate limits cannot be dodged by walking a prefix.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let settings = &state.settings;
        if let Some(name) = &settings.client_ip_header
            && settings.trusted_proxies.iter().any(|proxy| proxy.contains(peer))
        {
            let values: Vec<&str> = parts
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let client = crate::trusted_proxy::client_address(peer, values.into_iter(), &settings.trusted_proxies);
            return Ok(Self(limit_key(client)));
        }
        Ok(Self(limit_key(peer)))
    }
}

/// The client's `User-Agent`, kept with its session so the user can tell their sessions apart: at most
/// [`UserAgent::MAX_CHARS`] characters, control characters dropped; `None` when absent or empty.
#[derive(Debug, Clone)]
pub struct UserAgent(pub Option<String>);

impl UserAgent {
    /// The longest user agent kept, in characters.
    pub const MAX_CHARS: usize = 256;
}

impl<S: Send + Sync> FromRequestParts<S> for UserAgent {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .map(|v| {
                v.chars()
                    .filter(|c| !c.is_control())
                    .take(Self::MAX_CHARS)
                    .collect::<String>()
            })
            .filter(|v| !v.trim().is_empty());
        Ok(Self(agent))
    }
}

/// The address a client is rate limited by: IPv4 as is (IPv4-mapped IPv6 as IPv4), IPv6 cut to its /64.
fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// An optional JSON body: absent (no body, or no content type) is `None`; present, it is read as [`ApiJson`].
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = req.headers().get(axum::http::header::CONTENT_TYPE).is_none()
            && req
                .headers()
                .get(axum::http::header::CONTENT_LENGTH)
                .is_none_or(|len| len.as_bytes() == b"0");
        if empty {
            return Ok(Self(None));
        }
        let ApiJson(value) = ApiJson::<T>::from_request(req, state).await?;
        Ok(Self(Some(value)))
    }
}

/// A room id from the path, validated: anything that is not a valid room id is a 400 `invalid_room_id`.
#[derive(Debug, Clone)]
pub struct RoomPath(pub natter_proto::RoomId);

impl<S: Send + Sync> FromRequestParts<S> for RoomPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_room_id", e.body_text()))?;
        natter_proto::RoomId::parse(&raw)
            .map(Self)
            .map_err(|e| ApiError::bad_request("invalid_room_id", e.to_string()))
    }
}

/// The pattern of a room id (`natter_proto::RoomId`), as the document gives it.
pub const ROOM_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// The path parameter `id`, a room id.
fn room_id_param() -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::{ObjectBuilder, Required, path::ParameterBuilder, path::ParameterIn, schema::Type};
    ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(
            "Room id: 1 to 64 letters, digits, `_` and `-` (anything else is a 400 `invalid_room_id`)",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(ROOM_ID_PATTERN)),
        ))
        .build()
}

/// Documents the path parameter the extractor reads: `params(RoomPath)` in a route's `#[utoipa::path]`.
impl utoipa::IntoParams for RoomPath {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![room_id_param()]
    }
}

/// A room id and a user id from a path such as `/api/rooms/{id}/members/{user}/…`, validated: a bad room id is a
/// 400 `invalid_room_id`, a user id that is not a UUID a 400 `invalid_user_id`.
#[derive(Debug, Clone)]
pub struct MemberPath(pub natter_proto::RoomId, pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for MemberPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path((room, user)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request("invalid_room_id", e.body_text()))?;
        let room =
            natter_proto::RoomId::parse(&room).map_err(|e| ApiError::bad_request("invalid_room_id", e.to_string()))?;
        let user = Uuid::parse_str(&user)
            .map_err(|_| ApiError::bad_request("invalid_user_id", "the user id is not a UUID"))?;
        Ok(Self(room, user))
    }
}

/// Documents the path parameters the extractor reads: `params(MemberPath)` in a route's `#[utoipa::path]`.
impl utoipa::IntoParams for MemberPath {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::{KnownFormat, ObjectBuilder, Required, SchemaFormat, path::ParameterBuilder};
        use utoipa::openapi::{path::ParameterIn, schema::Type};
        let user = ParameterBuilder::new()
            .name("user")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("The user's id, a UUID (anything else is a 400 `invalid_user_id`)"))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            ))
            .build();
        vec![room_id_param(), user]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(limit_key(a), limit_key(b));
        assert_ne!(limit_key(a), limit_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(limit_key(mapped), "192.0.2.7".parse::<IpAddr>().expect("ip"));
    }
}
