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
