//! The HTTP routes and the OpenAPI document generated from them.
//!
//! Every API route is registered through `utoipa_axum`, so a route cannot exist without its OpenAPI entry.

pub mod auth;
pub mod conversations;
pub mod gateway;
pub mod health;
pub mod history;
pub mod load_test;
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
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Natter API", description = "Accounts, tokens and rooms of a Natter deployment. \
        Errors are `{\"error\":{\"code\",\"message\"}}`; the codes are listed per response."),
    modifiers(&BearerAuth),
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
    }
}

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
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
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
