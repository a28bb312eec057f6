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
/// Seconds from a gateway accepting a message to its frame being handed to this gateway's members, for the last
/// batch delivered (gauge; sends are refused with `overloaded` while it is over `--shed-lag`).
pub const DELIVERY_LAG: &str = "natter_gateway_delivery_lag_seconds";
/// Sends refused with `overloaded` because the delivery lag was over `--shed-lag`.
pub const SENDS_SHED: &str = "natter_gateway_sends_shed_total";
/// The share of new sends being refused with `overloaded` (gauge, 0 to 1): 0 up to `--shed-lag`, 1 from twice it.
pub const SHED_SHARE: &str = "natter_gateway_shed_share";
/// Frames refused by a rate limit, by `kind` (`send`, `typing`).
pub const RATE_LIMITED: &str = "natter_gateway_rate_limited_total";

/// Handles of the metrics recorded once per delivery, send or frame, looked up in the registry once per process
/// instead of on every call.
pub struct Hot {
    /// [`FANOUT_LATENCY`].
    pub fanout_latency: ::metrics::Histogram,
    /// [`MESSAGES_OUT`].
    pub messages_out: ::metrics::Counter,
    /// [`PUBLISH_LATENCY`].
    pub publish_latency: ::metrics::Histogram,
    /// [`DELIVERY_LAG`].
    pub delivery_lag: ::metrics::Gauge,
    /// [`SHED_SHARE`].
    pub shed_share: ::metrics::Gauge,
    /// [`FRAMES_IN`] by `type`, in the order of [`FRAME_TYPES`].
    pub frames_in: [::metrics::Counter; FRAME_TYPES.len()],
}

/// The `type` labels of [`FRAMES_IN`].
pub const FRAME_TYPES: [&str; 7] = ["join", "leave", "send", "typing", "ping", "refresh", "invalid"];

/// The hot-path handles (registering them, and the recorder, on first use).
pub fn hot() -> &'static Hot {
    static HOT: std::sync::OnceLock<Hot> = std::sync::OnceLock::new();
    HOT.get_or_init(|| {
        // The recorder must exist before a handle is taken, or the handle records nowhere.
        let _ = handle();
        Hot {
            fanout_latency: ::metrics::histogram!(FANOUT_LATENCY),
            messages_out: ::metrics::counter!(MESSAGES_OUT),
            publish_latency: ::metrics::histogram!(PUBLISH_LATENCY),
            delivery_lag: ::metrics::gauge!(DELIVERY_LAG),
            shed_share: ::metrics::gauge!(SHED_SHARE),
            frames_in: FRAME_TYPES.map(|kind| ::metrics::counter!(FRAMES_IN, "type" => kind)),
        }
    })
}

/// Counts one client frame of `kind` (one of [`FRAME_TYPES`]).
pub fn frame_in(kind: &str) {
    if let Some(i) = FRAME_TYPES.iter().position(|k| *k == kind) {
        hot().frames_in[i].increment(1);
    }
}

/// The process-wide Prometheus recorder.
pub fn handle() -> metrics_exporter_prometheus::PrometheusHandle {
    natter_service::metrics_handle()
}
