//! Metric names (the contract with the Grafana dashboards) and the Prometheus recorder.

/// Open client connections (gauge).
pub const CONNECTIONS: &str = "natter_gateway_connections";
/// Connections accepted since start.
pub const CONNECTIONS_OPENED: &str = "natter_gateway_connections_opened_total";
/// Connections closed, by WebSocket close `code`.
pub const CONNECTIONS_CLOSED: &str = "natter_gateway_connections_closed_total";
/// Upgrades refused, by `reason` (a token error code, `origin`, `too_many_connections`, `draining`).
pub const AUTH_FAILURES: &str = "natter_gateway_auth_failures_total";
/// Room joins.
pub const JOINS: &str = "natter_gateway_joins_total";
/// Rooms with a NATS subscription on this gateway (gauge).
pub const ROOMS_SUBSCRIBED: &str = "natter_gateway_rooms_subscribed";
/// Client frames received, by `type` (or `invalid`).
pub const FRAMES_IN: &str = "natter_gateway_frames_in_total";
/// Chat messages delivered to client queues (one per recipient).
pub const MESSAGES_OUT: &str = "natter_gateway_messages_out_total";
/// Seconds from a message's arrival from NATS to its frame being written to a client socket.
pub const FANOUT_LATENCY: &str = "natter_gateway_fanout_latency_seconds";
/// Seconds from publishing a chat message to JetStream's stored-ack.
pub const PUBLISH_LATENCY: &str = "natter_gateway_publish_latency_seconds";
/// Publishes that failed, by `reason`.
pub const PUBLISH_FAILURES: &str = "natter_gateway_publish_failures_total";
/// Clients disconnected for not reading fast enough.
pub const SLOW_CONSUMERS: &str = "natter_gateway_slow_consumer_disconnects_total";
/// Messages fetched from the stream to fill a gap in a room's live feed.
pub const GAP_FILLS: &str = "natter_gateway_gap_fill_messages_total";
/// Messages replayed to rejoining clients.
pub const REPLAYED: &str = "natter_gateway_replayed_messages_total";
/// Frames refused by a rate limit, by `kind` (`send`, `typing`).
pub const RATE_LIMITED: &str = "natter_gateway_rate_limited_total";

/// The process-wide Prometheus recorder.
pub fn handle() -> metrics_exporter_prometheus::PrometheusHandle {
    natter_service::metrics_handle()
}
