//! The load-test mode: bulk guest accounts and access tokens for a load-test harness, behind a key, off by default.
//!
//! A load test acts as tens of thousands of users. `POST /api/guest` allows 60 accounts a minute per address, as
//! it should; this route makes up to 1,000 per request for whoever holds the operator's key, and does not exist
//! (404) unless the API was started with `--load-test-key`. The gateway is not weakened: these are ordinary
//! tokens, verified like any other.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use natter_proto::Username;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::metrics;
use crate::state::AppState;

/// Most accounts one request makes.
pub const MAX_BULK: u32 = 1000;

/// Which guests to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkGuestsRequest {
    /// Names are `{prefix}-{i}` for i in 0..count; each must be a valid user name (at most 32 characters): a
    /// prefix of letters, digits, `_` and `-` starting with a letter or a digit, of at most 30 characters for up
    /// to 10 guests, 29 for up to 100, 28 for more.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,29}$")]
    pub prefix: String,
    /// How many, 1 to 1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub count: u32,
}

/// Adds to the document what [`BulkGuestsRequest`]'s fields cannot say alone: how long the prefix may be depends on
/// how many digits the last name's number takes.
pub(crate) struct NameLengths;

impl utoipa::Modify for NameLengths {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Schema, Type};
        let Some(schemas) = openapi.components.as_mut().map(|c| &mut c.schemas) else {
            return;
        };
        let Some(shape) = schemas.get("BulkGuestsRequest").cloned() else {
            return;
        };
        // Longest prefix by most guests: `{prefix}-{count - 1}` within 32 characters.
        let branch = |most: Option<u32>, prefix: usize| {
            let count = ObjectBuilder::new().schema_type(Type::Integer).maximum(most);
            let prefix = ObjectBuilder::new().schema_type(Type::String).max_length(Some(prefix));
            ObjectBuilder::new().property("count", count).property("prefix", prefix)
        };
        let lengths = AnyOfBuilder::new()
            .item(branch(Some(10), 30))
            .item(branch(Some(100), 29))
            .item(branch(None, 28));
        let rule = AllOfBuilder::new().item(shape).item(lengths);
        schemas.insert("BulkGuestsRequest".into(), Schema::AllOf(rule.build()).into());
    }
}

/// A guest made for a load test.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkGuest {
    /// The user's id (`sub` of the token).
    pub id: Uuid,
    /// The user's name.
    pub name: String,
    /// An access token (no refresh token: a load test lasts less than a token's lifetime, or sets a longer one).
    pub access_token: String,
}

/// The guests made.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkGuestsResponse {
    /// One per name, in order.
    pub users: Vec<BulkGuest>,
    /// Seconds until the access tokens expire.
    pub expires_in: u64,
}

/// Whether `headers` carry the configured key as a bearer token. The digests are compared with a fold over every
/// byte, so the time taken says nothing about how much of a guessed key was right.
/// A session id for a load-test guest's token: a UUID of version 8 (every sign-in's is version 4), which only this
/// route mints and only the signing key can put in a token. It has no row, so it is never revoked; and while the
/// load-test mode is on, it is spared the per-user budgets, so a harness can create its rooms and read back its
/// history as one user.
fn load_test_session() -> Uuid {
    uuid::Builder::from_custom_bytes(*Uuid::new_v4().as_bytes()).into_uuid()
}

/// Whether `sid` is a load-test guest's session (see [`load_test_session`]).
pub fn is_load_test_session(sid: Uuid) -> bool {
    sid.get_version_num() == 8
}

fn holds_key(headers: &HeaderMap, key_digest: &[u8; 32]) -> bool {
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
    else {
        return false;
    };
    let digest = Sha256::digest(presented.as_bytes());
    digest.iter().zip(key_digest).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Make up to 1,000 guest accounts with access tokens at once (load-test mode only; needs the load-test key).
#[utoipa::path(post, path = "/api/load-test/guests", tag = "auth", request_body = BulkGuestsRequest,
    security(("load_test_key" = [])),
    responses(
        (status = 201, description = "Guests made", body = BulkGuestsResponse),
        (status = 401, description = "`invalid_load_test_key`", body = ErrorBody),
        (status = 404, description = "`load_test_mode_off`: the API was started without `--load-test-key`",
            body = ErrorBody),
        (status = 409, description = "`username_taken`: a name is taken; nothing was made", body = ErrorBody),
        (status = 422, description = "`invalid_count`, `invalid_username`", body = ErrorBody),
        (status = 503, description = "`unavailable`: the database cannot be reached", body = ErrorBody),
    ))]
pub async fn bulk_guests(
    State(state): State<AppState>,
    headers: HeaderMap,
    // Read only after the mode and the key are checked: whoever lacks the key learns nothing from the body.
    body: Result<ApiJson<BulkGuestsRequest>, ApiError>,
) -> ApiResult<(StatusCode, Json<BulkGuestsResponse>)> {
    let Some(key_digest) = &state.settings.load_test_key else {
        return Err(ApiError::not_found(
            "load_test_mode_off",
            "the load-test mode is off on this server",
        ));
    };
    if !holds_key(&headers, key_digest) {
        return Err(ApiError::unauthorized(
            "invalid_load_test_key",
            "send the load-test key as 'Authorization: Bearer <key>'",
        ));
    }
    let ApiJson(body) = body?;
    if !(1..=MAX_BULK).contains(&body.count) {
        return Err(ApiError::validation(
            "invalid_count",
            format!("count must be between 1 and {MAX_BULK}"),
        ));
    }
    let names = (0..body.count)
        .map(|i| Username::parse(&format!("{}-{i}", body.prefix)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::validation("invalid_username", format!("{e} (names are '{}-<i>')", body.prefix)))?;
    let ids: Vec<Uuid> = names.iter().map(|_| Uuid::new_v4()).collect();
    let display: Vec<&str> = names.iter().map(Username::as_str).collect();
    let keys: Vec<String> = names.iter().map(Username::key).collect();

    let mut tx = state.db.begin().await?;
    // One statement for the whole batch: a single round trip, and one taken name refuses all of them.
    let inserted = sqlx::query(
        "INSERT INTO users (id, username, username_key, password_hash, is_guest) \
         SELECT id, username, username_key, NULL, true \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS t (id, username, username_key)",
    )
    .bind(&ids)
    .bind(&display)
    .bind(&keys)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            return Err(ApiError::conflict(
                "username_taken",
                format!(
                    "a name from '{0}-0' to '{0}-{1}' is already taken; nothing was made (use another prefix)",
                    body.prefix,
                    body.count - 1
                ),
            ));
        }
        other => other?,
    };
    // Minted before the commit, so a failure leaves no accounts behind that nobody holds a token for.
    let users = ids
        .into_iter()
        .zip(display)
        .map(|(id, name)| {
            Ok(BulkGuest {
                id,
                name: name.to_owned(),
                access_token: state
                    .keys
                    .mint(&id.to_string(), name, true, &load_test_session().to_string())?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    tx.commit().await?;

    tracing::info!(count = body.count, prefix = %body.prefix, "load-test guests made");
    metrics::load_test_guests(u64::from(body.count));
    Ok((
        StatusCode::CREATED,
        Json(BulkGuestsResponse {
            users,
            expires_in: state.keys.access_ttl().as_secs(),
        }),
    ))
}
