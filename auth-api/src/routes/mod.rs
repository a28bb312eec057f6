//! The HTTP routes and the OpenAPI document generated from them.
//!
//! Every API route is registered through `utoipa_axum`, so a route cannot exist without its OpenAPI entry.

pub mod auth;
pub mod conversations;
pub mod gateway;
pub mod health;
pub mod history;
pub mod load_test;
pub mod mentions;
pub mod moderation;
pub mod rooms;
pub mod search;
pub mod sessions;
pub mod web;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::JwkSet;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, HeaderBuilder, Ref, RefOr, Required, ResponseBuilder, Schema};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Natter API", description = "Accounts, tokens and rooms of a Natter deployment. \
        Errors are `{\"error\":{\"code\",\"message\"}}`; the codes are listed per response."),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, Username, RoomName)),
    tags((name = "auth", description = "Accounts and sessions"), (name = "rooms", description = "Rooms and memberships"),
         (name = "conversations", description = "Direct and group conversations, and blocking"),
         (name = "keys", description = "Token verification keys"), (name = "gateways", description = "The WebSocket fleet"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
        let mut key = Http::new(HttpAuthScheme::Bearer);
        key.description = Some("The operator's `--load-test-key`: only the load-test mode's route takes it".into());
        components.add_security_scheme("load_test_key", SecurityScheme::Http(key));
    }
}

/// Documents on every operation what its extractors answer before its handler runs, so that no route has to repeat
/// it: on every operation that takes an access token (security `bearer`), 401 for a missing, invalid, expired or
/// revoked one, 429 past the user's request budget and 503 when the session cannot be looked up; on every
/// operation that reads a JSON body, 400 for a body that is not JSON, 413 for one over `--max-body-bytes`, 415
/// for one without `Content-Type: application/json` and 422 for JSON of another shape; on every operation with a
/// room id in its path (`params(RoomPath)`, `params(MemberPath)`) or a user id, 400 for one that is not one. Codes
/// an operation lists already are kept; the others are added to its description. Every 401 carries
/// `WWW-Authenticate`, every 429 `Retry-After`. And an optional body is one that may be left out, not a JSON `null`
/// (which is refused as `invalid_body`): its schema is the body's own, not "null or the body".
struct ExtractorResponses;

/// What an access token's extractor answers, by status: `(status, [(code, why)])`.
const TOKEN_RESPONSES: &[(&str, &[(&str, &str)])] = &[
    (
        "401",
        &[
            ("missing_token", "no `Authorization: Bearer …` header"),
            ("token_expired", "the access token has expired: refresh it"),
            ("token_revoked", "its session was ended"),
            (
                "token_malformed",
                "not a token (or `token_bad_signature`, `token_unknown_key`, `token_wrong_algorithm`, \
            `token_not_yet_valid`, `token_wrong_issuer_or_audience`, `token_missing_claim`)",
            ),
        ],
    ),
    (
        "429",
        &[(
            "rate_limited",
            "over the user's request budget; `Retry-After` says when to try again",
        )],
    ),
    ("503", &[("unavailable", "the database cannot be reached")]),
];

/// What a JSON body's extractor answers, by status.
const BODY_RESPONSES: &[(&str, &[(&str, &str)])] = &[
    (
        "400",
        &[
            ("malformed_json", "the body is not JSON"),
            ("unreadable_body", "the body could not be read"),
        ],
    ),
    (
        "413",
        &[("payload_too_large", "the body is larger than `--max-body-bytes`")],
    ),
    (
        "415",
        &[(
            "unsupported_media_type",
            "the body is not sent as `Content-Type: application/json`",
        )],
    ),
    (
        "422",
        &[(
            "invalid_body",
            "JSON, but not of this schema: a field missing, unknown or of the wrong type",
        )],
    ),
];

impl Modify for ExtractorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let bearer = SecurityRequirement::new("bearer", Vec::<String>::new());
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                if operation.security.as_ref().is_some_and(|s| s.contains(&bearer)) {
                    add_responses(operation, TOKEN_RESPONSES);
                }
                let path_params = operation
                    .parameters
                    .iter()
                    .flatten()
                    .filter(|p| p.parameter_in == ParameterIn::Path);
                let (mut room, mut user) = (false, false);
                for param in path_params {
                    let Some(RefOr::T(Schema::Object(schema))) = &param.schema else {
                        continue;
                    };
                    room |= schema.pattern.as_deref() == Some(crate::extract::ROOM_ID_PATTERN);
                    user |= param.name == "user";
                }
                if room {
                    add_responses(operation, &[("400", &[("invalid_room_id", "the room id is not one")])]);
                }
                if user {
                    add_responses(
                        operation,
                        &[("400", &[("invalid_user_id", "the user id is not a UUID")])],
                    );
                }
                if let Some(body) = &mut operation.request_body {
                    if body.required != Some(Required::True) {
                        for content in body.content.values_mut() {
                            if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema
                                && let [RefOr::T(Schema::Object(null)), schema] = one_of.items.as_slice()
                                && null.schema_type == utoipa::openapi::schema::Type::Null.into()
                            {
                                content.schema = Some(schema.clone());
                            }
                        }
                    }
                    add_responses(operation, BODY_RESPONSES);
                }
                for (status, response) in &mut operation.responses.responses {
                    let RefOr::T(response) = response else { continue };
                    let header = match status.as_str() {
                        "401" => ("WWW-Authenticate", "`Bearer`", utoipa::openapi::schema::Type::String),
                        "429" => (
                            "Retry-After",
                            "Seconds to wait before trying again",
                            utoipa::openapi::schema::Type::Integer,
                        ),
                        _ => continue,
                    };
                    let schema = utoipa::openapi::ObjectBuilder::new().schema_type(header.2);
                    response
                        .headers
                        .entry(header.0.into())
                        .or_insert_with(|| HeaderBuilder::new().schema(schema).description(Some(header.1)).build());
                }
            }
        }
    }
}

/// Adds `responses` to `operation`: a status it lacks with an error body and a description listing the codes, and
/// to a status it has, the codes its description does not name yet.
fn add_responses(operation: &mut Operation, responses: &[(&str, &[(&str, &str)])]) {
    for (status, codes) in responses {
        let listed = |codes: &[(&str, &str)], description: &str| -> Vec<String> {
            codes
                .iter()
                .filter(|(code, _)| !description.contains(&format!("`{code}`")))
                .map(|(code, why)| format!("`{code}`: {why}"))
                .collect()
        };
        match operation.responses.responses.get_mut(*status) {
            Some(RefOr::T(response)) => {
                let missing = listed(codes, &response.description);
                if !missing.is_empty() {
                    response.description = format!("{}; {}", response.description, missing.join("; "));
                }
            }
            Some(RefOr::Ref(_)) => {}
            None => {
                let response = ResponseBuilder::new()
                    .description(listed(codes, "").join("; "))
                    .content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                    )
                    .build();
                operation
                    .responses
                    .responses
                    .insert((*status).into(), RefOr::T(response));
            }
        }
    }
}

/// A user name: 3 to 32 characters of letters, digits, `_` and `-`, starting with a letter or a digit. Names are
/// compared without case.
// Only the document's: the API parses names as `natter_proto::Username`, which this pattern states exactly.
#[derive(ToSchema)]
#[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{2,31}$")]
pub struct Username(pub String);

/// A room's display name: 1 to 64 characters once the white space around it is trimmed, none of them a control,
/// text direction, invisible or blank-looking format character, line separator or noncharacter. The pattern says
/// exactly that: white space, then a first and a last character that are neither white space nor hidden with at
/// most 62 visible characters or spaces between them, then white space.
// Only the document's, as `Username`: the API parses names as `natter_proto::RoomName` (`text::plain_name`).
#[derive(ToSchema)]
#[schema(
    pattern = "^[\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*\
    [^\\u0000-\\u0020\\u007F-\\u00A0\\u00AD\\u034F\\u0600-\\u0605\\u061C\\u06DD\\u070F\\u0890\\u0891\\u08E2\\u115F\\u1160\\u1680\\u17B4\\u17B5\\u180B-\\u180F\\u2000-\\u200F\\u2028-\\u202F\\u205F-\\u2064\\u2066-\\u206F\\u2800\\u3000\\u3164\\uFDD0-\\uFDEF\\uFEFF\\uFFA0\\uFFF9-\\uFFFB\\uFFFE\\uFFFF\
    \u{110BD}\u{110CD}\u{13430}-\u{1343F}\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0001}\u{E0020}-\u{E007F}\
    \u{1FFFE}\u{1FFFF}\u{2FFFE}\u{2FFFF}\u{3FFFE}\u{3FFFF}\u{4FFFE}\u{4FFFF}\u{5FFFE}\u{5FFFF}\u{6FFFE}\u{6FFFF}\
    \u{7FFFE}\u{7FFFF}\u{8FFFE}\u{8FFFF}\u{9FFFE}\u{9FFFF}\u{AFFFE}\u{AFFFF}\u{BFFFE}\u{BFFFF}\u{CFFFE}\u{CFFFF}\
    \u{DFFFE}\u{DFFFF}\u{EFFFE}\u{EFFFF}\u{FFFFE}\u{FFFFF}\u{10FFFE}\u{10FFFF}]\
    (?:[^\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u034F\\u0600-\\u0605\\u061C\\u06DD\\u070F\\u0890\\u0891\\u08E2\\u115F\\u1160\\u17B4\\u17B5\\u180B-\\u180F\\u200B-\\u200F\\u2028-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\u2800\\u3164\\uFDD0-\\uFDEF\\uFEFF\\uFFA0\\uFFF9-\\uFFFB\\uFFFE\\uFFFF\
    \u{110BD}\u{110CD}\u{13430}-\u{1343F}\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0001}\u{E0020}-\u{E007F}\
    \u{1FFFE}\u{1FFFF}\u{2FFFE}\u{2FFFF}\u{3FFFE}\u{3FFFF}\u{4FFFE}\u{4FFFF}\u{5FFFE}\u{5FFFF}\u{6FFFE}\u{6FFFF}\
    \u{7FFFE}\u{7FFFF}\u{8FFFE}\u{8FFFF}\u{9FFFE}\u{9FFFF}\u{AFFFE}\u{AFFFF}\u{BFFFE}\u{BFFFF}\u{CFFFE}\u{CFFFF}\
    \u{DFFFE}\u{DFFFF}\u{EFFFE}\u{EFFFF}\u{FFFFE}\u{FFFFF}\u{10FFFE}\u{10FFFF}]{0,62}\
    [^\\u0000-\\u0020\\u007F-\\u00A0\\u00AD\\u034F\\u0600-\\u0605\\u061C\\u06DD\\u070F\\u0890\\u0891\\u08E2\\u115F\\u1160\\u1680\\u17B4\\u17B5\\u180B-\\u180F\\u2000-\\u200F\\u2028-\\u202F\\u205F-\\u2064\\u2066-\\u206F\\u2800\\u3000\\u3164\\uFDD0-\\uFDEF\\uFEFF\\uFFA0\\uFFF9-\\uFFFB\\uFFFE\\uFFFF\
    \u{110BD}\u{110CD}\u{13430}-\u{1343F}\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0001}\u{E0020}-\u{E007F}\
    \u{1FFFE}\u{1FFFF}\u{2FFFE}\u{2FFFF}\u{3FFFE}\u{3FFFF}\u{4FFFE}\u{4FFFF}\u{5FFFE}\u{5FFFF}\u{6FFFE}\u{6FFFF}\
    \u{7FFFE}\u{7FFFF}\u{8FFFE}\u{8FFFF}\u{9FFFE}\u{9FFFF}\u{AFFFE}\u{AFFFF}\u{BFFFE}\u{BFFFF}\u{CFFFE}\u{CFFFF}\
    \u{DFFFE}\u{DFFFF}\u{EFFFE}\u{EFFFF}\u{FFFFE}\u{FFFFF}\u{10FFFE}\u{10FFFF}])?\
    [\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*$"
)]
pub struct RoomName(pub String);

/// The public keys access tokens are signed with (RFC 7517). Gateways verify tokens with these.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "keys",
    responses((status = 200, description = "JWK set of Ed25519 keys", content_type = "application/json")))]
async fn jwks(State(state): State<AppState>) -> Json<JwkSet> {
    Json(state.keys.jwks())
}

/// Builds the application's router with its state: the API, the web client and the OpenAPI document, with the
/// health checks and metrics beside them, or served on `admin` (the `--admin-listen` listener) by the task
/// returned.
pub fn app(
    state: AppState,
    max_body_bytes: usize,
    admin: Option<tokio::net::TcpListener>,
) -> (Router, Option<tokio::task::JoinHandle<()>>) {
    let (api, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::guest))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(sessions::list_sessions, sessions::end_all_sessions))
        .routes(routes!(sessions::end_session))
        .routes(routes!(sessions::change_password))
        .routes(routes!(load_test::bulk_guests))
        .routes(routes!(rooms::create_room, rooms::list_rooms))
        .routes(routes!(rooms::get_room, rooms::delete_room))
        .routes(routes!(rooms::join_room))
        .routes(routes!(rooms::rotate_join_code))
        .routes(routes!(rooms::leave_room))
        .routes(routes!(rooms::mark_read))
        .routes(routes!(rooms::mute_room))
        .routes(routes!(mentions::my_mentions))
        .routes(routes!(rooms::room_members))
        .routes(routes!(moderation::remove_member))
        .routes(routes!(moderation::ban_user))
        .routes(routes!(moderation::unban_user))
        .routes(routes!(moderation::room_bans))
        .routes(routes!(moderation::set_role))
        .routes(routes!(history::room_messages))
        .routes(routes!(search::search_messages))
        .routes(routes!(conversations::start_direct))
        .routes(routes!(conversations::start_group))
        .routes(routes!(conversations::list_blocks))
        .routes(routes!(conversations::block, conversations::unblock))
        .routes(routes!(jwks))
        .routes(routes!(gateway::assign_gateway))
        .split_for_parts();
    // Over every route's operation, so only once they are all in.
    ExtractorResponses.modify(&mut openapi);
    load_test::NameLengths.modify(&mut openapi);
    crate::metrics::register_routes(&openapi, &["/api/openapi.json", "/healthz", "/readyz", "/metrics"]);
    let openapi = std::sync::Arc::new(openapi);
    let health = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(natter_service::metrics_page))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(state.clone());
    let public = api
        .route(
            "/api/openapi.json",
            get(move || async move { Json(openapi.as_ref().clone()) }),
        )
        .fallback(web::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(state);
    natter_service::serve_admin(public, health, admin)
}

async fn method_not_allowed() -> ApiError {
    ApiError::Http {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "this endpoint does not take that method; see /api/openapi.json".into(),
    }
}
