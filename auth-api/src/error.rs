//! The API's error type: every failure becomes `{"error":{"code","message"}}` with the right status.
//!
//! Codes are stable and documented in the OpenAPI document; messages are for humans. Unexpected failures are
//! logged here, once, and answered with a generic 500 that leaks nothing.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `username_taken`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

/// An API failure, by cause.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request cannot be read (malformed JSON, a bad path parameter).
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
    /// 422: the request was read but a value is not acceptable.
    #[error("{message}")]
    Validation {
        /// Stable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
    /// 401: no credentials, or credentials that are wrong, expired or revoked.
    #[error("{message}")]
    Unauthorized {
        /// Stable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
    /// 403: authenticated, but not allowed.
    #[error("{message}")]
    Forbidden {
        /// Stable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
    /// 404: no such thing.
    #[error("{message}")]
    NotFound {
        /// Stable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
    /// 409: conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
    /// 405, 413, 415 and other protocol-level refusals carrying their own status.
    #[error("{message}")]
    Http {
        /// The status to answer with.
        status: StatusCode,
        /// Stable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
    /// 429: too many attempts; retry after this many seconds.
    #[error("too many attempts; retry in {retry_after_secs}s")]
    RateLimited {
        /// Seconds until the next attempt is allowed.
        retry_after_secs: u64,
    },
    /// 503: a dependency is down.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure; details go to the log only.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }
    /// 422 with a code.
    pub fn validation(code: &'static str, message: impl Into<String>) -> Self {
        Self::Validation {
            code,
            message: message.into(),
        }
    }
    /// 401 with a code.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unauthorized {
            code,
            message: message.into(),
        }
    }
    /// 403 with a code.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }
    /// 404 with a code.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }
    /// 409 with a code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Http { status, .. } => *status,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Validation { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::Forbidden { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::Http { code, .. } => code,
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Unexpected(_) => "internal_error",
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %err, "database unavailable");
                Self::Unavailable("the database is unavailable; try again shortly".into())
            }
            other => Self::Unexpected(anyhow::Error::new(other).context("database query failed")),
        }
    }
}

impl From<crate::login_limits::LoginLimitError> for ApiError {
    fn from(err: crate::login_limits::LoginLimitError) -> Self {
        match err {
            crate::login_limits::LoginLimitError::Limited(wait) => Self::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            },
            crate::login_limits::LoginLimitError::Database(err) => err.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Unexpected(err) => {
                tracing::error!(error = ?err, "request failed unexpectedly");
                "something went wrong on our side".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code(),
                    message,
                },
            }),
        )
            .into_response();
        match self {
            Self::RateLimited { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            Self::Unauthorized { .. } => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
