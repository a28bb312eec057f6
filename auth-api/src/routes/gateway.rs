//! Gateway assignment for direct ingress.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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

/// Most gateway ids `avoid` takes; the rest are ignored.
const MAX_AVOID: usize = 16;

/// Which gateways to pass over.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AssignQuery {
    /// Comma-separated gateway ids to pass over (the one a client just lost), unless no other is live.
    pub avoid: Option<String>,
}

/// The least-loaded live gateway, for clients that connect to gateways directly rather than through a load
/// balancer.
#[utoipa::path(get, path = "/api/gateway", tag = "gateways", params(AssignQuery),
    responses(
        (status = 200, description = "A gateway to connect to", body = GatewayAssignment),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 503, description = "`no_gateway`: none is registered, or NATS is not configured", body = ErrorBody),
    ))]
pub async fn assign_gateway(
    State(state): State<AppState>,
    query: Result<Query<AssignQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<GatewayAssignment>> {
    let none = || ApiError::Http {
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        code: "no_gateway",
        message: "no gateway is available right now".into(),
    };
    if state.nats.is_none() {
        return Err(none());
    }
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let avoid = query.avoid.unwrap_or_default();
    let avoid: Vec<&str> = avoid.split(',').filter(|id| !id.is_empty()).take(MAX_AVOID).collect();
    let info = state.gateways.least_loaded(&avoid).ok_or_else(none)?;
    Ok(Json(GatewayAssignment {
        url: info.url,
        id: info.id,
        connections: info.connections,
    }))
}
