//! Gateway assignment for direct ingress.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

/// Where to open the WebSocket.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GatewayAssignment {
    /// The gateway's WebSocket URL (`ws://…/ws`).
    pub url: String,
    /// The gateway's id.
    pub id: String,
    /// Its open connections when it last reported.
    pub connections: u64,
}

/// The least-loaded live gateway, for clients that connect to gateways directly rather than through a load
/// balancer.
#[utoipa::path(get, path = "/api/gateway", tag = "gateways",
    responses(
        (status = 200, description = "A gateway to connect to", body = GatewayAssignment),
        (status = 503, description = "`no_gateway`: none is registered, or NATS is not configured", body = ErrorBody),
    ))]
pub async fn assign_gateway(State(state): State<AppState>) -> ApiResult<Json<GatewayAssignment>> {
    let none = || ApiError::Http {
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        code: "no_gateway",
        message: "no gateway is available right now".into(),
    };
    if state.nats.is_none() {
        return Err(none());
    }
    let info = state.gateways.least_loaded().ok_or_else(none)?;
    Ok(Json(GatewayAssignment {
        url: info.url,
        id: info.id,
        connections: info.connections,
    }))
}
