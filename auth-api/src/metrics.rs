//! Metric names (the contract with the Grafana dashboards) and the Prometheus recorder.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// Requests served, by `method`, `route` (the route pattern, not the raw path) and `status`.
pub const HTTP_REQUESTS: &str = "natter_api_http_requests_total";
/// Request latency in seconds, by `method` and `route`.
pub const HTTP_DURATION: &str = "natter_api_http_request_duration_seconds";
/// Refused access tokens, by `reason`.
pub const AUTH_FAILURES: &str = "natter_api_auth_failures_total";
/// Logins, by `kind` (`password`, `guest`, `register`, `refresh`) and `outcome` (`ok` or an error code).
pub const LOGINS: &str = "natter_api_logins_total";
/// Requests refused by a rate limit, by `limit`.
pub const RATE_LIMITED: &str = "natter_api_rate_limited_total";
/// Guest accounts made through the load-test mode.
pub const LOAD_TEST_GUESTS: &str = "natter_api_load_test_guests_total";
/// Refresh-token reuse detections (each revokes a token family).
pub const REFRESH_REUSE: &str = "natter_api_refresh_token_reuse_total";
/// Access tokens minted (logins, registrations, guests, refreshes).
pub const TOKENS_ISSUED: &str = "natter_api_tokens_issued_total";
/// Signing keys rotated by this instance.
pub const KEY_ROTATIONS: &str = "natter_api_key_rotations_total";
/// Times a rate limiter's table was full and forgot its least recently used tenth to let newcomers in.
pub const RATE_LIMIT_EVICTIONS: &str = "natter_api_rate_limit_evictions_total";
/// Gateway heartbeats ignored for naming a URL outside `--gateway-url-patterns`.
pub const GATEWAY_HEARTBEATS_REFUSED: &str = "natter_api_gateway_heartbeats_refused_total";
/// Age of the key that signs now, in seconds, as of the last key reload (gauge; reloads are a minute apart).
pub const SIGNING_KEY_AGE: &str = "natter_api_signing_key_age_seconds";
/// The configured rotation period of signing keys (`--key-rotation`), in seconds (gauge): a key older than this by
/// much is one rotation failed to replace.
pub const SIGNING_KEY_ROTATION: &str = "natter_api_signing_key_rotation_seconds";

/// Every metric the auth API exports besides the shared `process_*` and `natter_nats_*` ones, each from start-up
/// (the request counts by route and documented status; latency histograms appear with a route's first request).
pub const ALL: [&str; 13] = [
    HTTP_REQUESTS,
    AUTH_FAILURES,
    LOGINS,
    RATE_LIMITED,
    LOAD_TEST_GUESTS,
    REFRESH_REUSE,
    TOKENS_ISSUED,
    KEY_ROTATIONS,
    SIGNING_KEY_AGE,
    SIGNING_KEY_ROTATION,
    GATEWAY_HEARTBEATS_REFUSED,
    RATE_LIMIT_EVICTIONS,
    natter_service::MAX_FDS,
];

/// Login outcomes by kind, registered at 0 from start-up.
const LOGIN_OUTCOMES: [(&str, &str); 11] = [
    ("guest", "ok"),
    ("password", "ok"),
    ("password", "invalid_credentials"),
    ("register", "ok"),
    ("refresh", "ok"),
    ("refresh", "invalid_refresh_token"),
    ("refresh", "refresh_token_expired"),
    ("refresh", "refresh_token_reused"),
    ("refresh", "refresh_token_revoked"),
    ("refresh", "reused_within_grace"),
    ("refresh", "session_expired"),
];

/// Describes every metric and registers each series at zero. Called once at start-up.
pub fn register() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    let _ = handle();
    describe_counter!(HTTP_REQUESTS, "Requests served, by method, route and status.");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "Request latency, by method and route.");
    describe_counter!(AUTH_FAILURES, "Refused access tokens, by reason.");
    describe_counter!(
        RATE_LIMIT_EVICTIONS,
        "Times a rate limiter's table was full and forgot its least recently used tenth to let newcomers in."
    );
    describe_counter!(
        GATEWAY_HEARTBEATS_REFUSED,
        "Gateway heartbeats ignored for naming a URL outside --gateway-url-patterns."
    );
    describe_counter!(LOGINS, "Logins, by kind and outcome.");
    describe_counter!(RATE_LIMITED, "Requests refused by a rate limit, by limit.");
    describe_counter!(LOAD_TEST_GUESTS, "Guest accounts made through the load-test mode.");
    describe_counter!(REFRESH_REUSE, "Refresh-token reuse detections.");
    describe_counter!(TOKENS_ISSUED, "Access tokens minted.");
    describe_counter!(KEY_ROTATIONS, "Signing keys rotated by this instance.");
    describe_gauge!(SIGNING_KEY_AGE, Unit::Seconds, "Age of the key that signs now.");
    describe_gauge!(
        SIGNING_KEY_ROTATION,
        Unit::Seconds,
        "The configured rotation period of signing keys."
    );
    describe_gauge!(natter_service::MAX_FDS, "The most files this process may hold open.");
    for reason in natter_proto::token::TokenError::CODES {
        metrics::counter!(AUTH_FAILURES, "reason" => reason).absolute(0);
    }
    for (kind, outcome) in LOGIN_OUTCOMES {
        metrics::counter!(LOGINS, "kind" => kind, "outcome" => outcome).absolute(0);
    }
    for limit in [
        "login_failures_per_user_address",
        "login_failures_per_user",
        "auth_per_address",
        "user_requests",
        "user_room_listings",
        "user_room_creations",
        "user_membership_changes",
        "user_searches",
        "user_conversations",
    ] {
        metrics::counter!(RATE_LIMITED, "limit" => limit).absolute(0);
    }
    for name in [
        LOAD_TEST_GUESTS,
        REFRESH_REUSE,
        TOKENS_ISSUED,
        KEY_ROTATIONS,
        GATEWAY_HEARTBEATS_REFUSED,
        RATE_LIMIT_EVICTIONS,
    ] {
        metrics::counter!(name).absolute(0);
    }
}

/// Registers at 0 the request count of every route of `openapi` with each status it documents, and of each of
/// `others` (plain `GET` routes) with 200, in the labels [`track`] gives them.
pub fn register_routes(openapi: &utoipa::openapi::OpenApi, others: &[&str]) {
    for (route, item) in &openapi.paths.paths {
        let operations = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            for status in operation.responses.responses.keys() {
                zero_requests(method, route, status);
            }
        }
    }
    for route in others {
        zero_requests("GET", route, "200");
    }
}

fn zero_requests(method: &'static str, route: &str, status: &str) {
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route.to_owned(), "status" => status.to_owned())
        .absolute(0);
}

/// The process-wide Prometheus recorder.
pub fn handle() -> metrics_exporter_prometheus::PrometheusHandle {
    natter_service::metrics_handle()
}

/// Middleware recording request count and latency per route.
pub async fn track(request: Request, next: Next) -> Response {
    let start = Instant::now();
    // Only standard methods become labels: a client inventing methods must not invent time series.
    let method = match *request.method() {
        Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::HEAD | Method::OPTIONS => {
            request.method().as_str().to_owned()
        }
        _ => "other".to_owned(),
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route).record(start.elapsed().as_secs_f64());
    response
}

/// Counts a refused access token.
pub fn auth_failure(reason: &'static str) {
    metrics::counter!(AUTH_FAILURES, "reason" => reason).increment(1);
}

/// Counts a login attempt's outcome.
pub fn login(kind: &'static str, outcome: &'static str) {
    metrics::counter!(LOGINS, "kind" => kind, "outcome" => outcome).increment(1);
}

/// Counts guest accounts made by the load-test mode.
pub fn load_test_guests(count: u64) {
    metrics::counter!(LOAD_TEST_GUESTS).increment(count);
}
