//! Request extractors that turn bad input into [`ApiError`]s instead of axum's plain-text rejections.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use natter_proto::token::AccessClaims;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body whose rejections (syntax, types, size, content type) answer with the API's error format.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(err) => ApiError::validation("invalid_body", err.body_text()),
            JsonRejection::JsonSyntaxError(err) => ApiError::bad_request("malformed_json", err.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::Http {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                message: "send the body as JSON with 'Content-Type: application/json'".into(),
            },
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::Http {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "payload_too_large",
                message: "the request body is too large".into(),
            },
            other => ApiError::bad_request("unreadable_body", other.body_text()),
        }
    }
}

/// The caller, authenticated by a valid access token in `Authorization: Bearer …`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user's id (`sub`).
    pub id: Uuid,
    /// The verified claims.
    pub claims: AccessClaims,
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
        let claims = state.keys.verifier().verify(token).map_err(|err| {
            crate::metrics::auth_failure(err.code());
            ApiError::unauthorized(err.code(), err.to_string())
        })?;
        let id = Uuid::parse_str(&claims.sub)
            .map_err(|_| ApiError::unauthorized("token_missing_claim", "the token's subject is not a user id"))?;
        Ok(Self { id, claims })
    }
}

/// The client's address: the peer address, or the first address in the configured proxy header.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(name) = &state.settings.client_ip_header
            && let Some(ip) = parts
                .headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
        {
            return Ok(Self(ip));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(Self(peer))
    }
}
