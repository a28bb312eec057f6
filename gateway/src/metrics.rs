//! Metric names (the contract with the Grafana dashboards) and the Prometheus recorder.

use natter_proto::close;
use natter_proto::error::ErrorCode;

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
/// Gaps a room could not fill from the stream within its patience (a stream without a leader or replica that
/// has the messages for 45 s): receivers then see the gap through `prev`.
pub const GAP_FILL_FAILURES: &str = "natter_gateway_gap_fill_failures_total";
/// Messages replayed to rejoining clients.
pub const REPLAYED: &str = "natter_gateway_replayed_messages_total";
/// Rejoins with a gap to replay, by where it came from (`stream`: read from JetStream; `shared`: from the room's
/// window another rejoin read).
pub const REPLAYS: &str = "natter_gateway_replays_total";
/// Access tokens accepted or refused, by how: `signature` (checked) or `cached` (verified before in this process).
pub const TOKENS_VERIFIED: &str = "natter_gateway_tokens_verified_total";
/// Seconds from a gateway accepting a message to its frame being handed to this gateway's members, for the last
/// batch delivered (gauge; sends are refused with `overloaded` while it is over `--shed-lag`).
pub const DELIVERY_LAG: &str = "natter_gateway_delivery_lag_seconds";
/// Sends refused with `overloaded` because the delivery lag was over `--shed-lag`.
pub const SENDS_SHED: &str = "natter_gateway_sends_shed_total";
/// The share of new sends being refused with `overloaded` (gauge, 0 to 1): 0 up to `--shed-lag`, 1 from twice it.
pub const SHED_SHARE: &str = "natter_gateway_shed_share";
/// Frames refused by a rate limit, by `kind` (`send`, `typing`, `join`, `leave`).
pub const RATE_LIMITED: &str = "natter_gateway_rate_limited_total";
/// Seconds from a gateway accepting a message (its `ts`) to its frame being handed to this gateway's members,
/// one sample per delivered batch (its oldest message).
pub const DELIVERY_LATENCY: &str = "natter_gateway_delivery_latency_seconds";
/// Seconds from a `send` frame being read to its `ack` being queued for the sender, for sends stored (those refused
/// or failed are counted in [`SENDS`], not timed: a quick refusal is no fast ack).
pub const ACK_LATENCY: &str = "natter_gateway_ack_latency_seconds";
/// Sends (messages, edits, deletions, reactions) the gateway took on or turned away for its own sake, by `outcome`:
/// `acked` (stored; the ack went out), `overloaded` (refused by load shedding; nothing stored) or `failed` (the
/// publish failed, or the stream or the auth API could not be asked about the message a change or reply names; the
/// sender is told to send again). Refusals for the sender's own doing (a rate limit, a bad
/// body, a room not joined) are not counted. Send availability is `acked` over all of them.
pub const SENDS: &str = "natter_gateway_sends_total";
/// Joins with `since` answered `recovered: false` (the gap was older than the stream keeps).
pub const JOINS_UNRECOVERED: &str = "natter_gateway_joins_unrecovered_total";
/// Whether this gateway is draining (gauge, 1 from SIGTERM until it exits).
pub const DRAINING: &str = "natter_gateway_draining";
/// Frames waiting in the deepest outbound queue of this gateway's connections, measured each second (gauge; a
/// queue reaching `--outbound-queue` closes its client with 4008).
pub const OUTBOUND_QUEUE_MAX: &str = "natter_gateway_outbound_queue_max";

/// Times this gateway found the chat stream recreated (a new epoch) and sent its rooms' members to rejoin.
pub const STREAM_RECREATED: &str = "natter_gateway_stream_recreations_total";

/// Connections taken out of a room by the gateway, by `reason` (a `left` frame's reason: `room_deleted`,
/// `member_left`, `member_removed`, `access_revoked`).
pub const EVICTIONS: &str = "natter_gateway_room_evictions_total";
/// Accepted TCP connections that have not yet upgraded to a WebSocket (gauge; capped by
/// `--max-pending-connections` and `--max-pending-per-address`).
pub const PENDING: &str = "natter_gateway_pending_connections";
/// Accepted TCP connections closed at once because too many were pending, by `scope` (`gateway`, `address`).
pub const PENDING_REFUSED: &str = "natter_gateway_pending_refused_total";
/// Connections from a `--proxy-protocol-from` address closed for want of a valid PROXY header, by `reason`
/// (`missing`, `malformed`, `closed`, `timeout`).
pub const PROXY_HEADER_REFUSED: &str = "natter_gateway_proxy_header_refused_total";
/// Pending connections the gateway closed to let a newcomer in or because they were slow while the pool was under
/// pressure, by `reason` (`busiest_address`, `oldest`, `slow_under_pressure`).
pub const PENDING_SHED: &str = "natter_gateway_pending_shed_total";

/// Invalid frames, each counted against `--max-bad-frames`, by the `code` of the error that answered it
/// (`bad_frame`, `binary_frame`, `room_not_found`: a join of a room that does not exist).
pub const BAD_FRAMES: &str = "natter_gateway_bad_frames_total";
/// Room-access questions asked of the auth API, by `answer` (`public`, `allowed`, `denied`, `not_found`, or
/// `error` when none came).
pub const ACCESS_QUESTIONS: &str = "natter_gateway_access_questions_total";
/// Room-access questions about users already in a room, asked again every `--access-recheck-interval` and after
/// room events may have been missed, by `answer` as [`ACCESS_QUESTIONS`] (which counts them too).
pub const ACCESS_RECHECKS: &str = "natter_gateway_access_rechecks_total";
/// Questions to the auth API about whom a message mentions, by `outcome` (`answered`, or `failed`: no answer in
/// time, and the message was sent mentioning no one).
pub const MENTION_QUESTIONS: &str = "natter_gateway_mention_questions_total";
/// Times every room's access was asked about again because room events may have been missed, by `cause`
/// (`reconnect`: NATS came back; `slow_consumer`: a subscription of this gateway fell behind and NATS dropped
/// messages for it).
pub const ACCESS_CATCH_UPS: &str = "natter_gateway_access_catch_ups_total";
/// Refetches of the auth API's JWKS on a token naming an unknown key (at most one per 2 seconds), by `outcome`
/// (`ok`, `error`).
pub const JWKS_REFETCHES: &str = "natter_gateway_jwks_refetches_total";
/// Sends stored by JetStream and waiting for a persister's confirmation that they are in PostgreSQL, with
/// `--ack-after persisted` (gauge; capped by `--max-waiting-sends`).
pub const PERSISTED_WAITING: &str = "natter_gateway_sends_awaiting_persistence";
/// Sends refused with `overloaded` because `--max-waiting-sends` were already waiting for a persister.
pub const PERSISTED_REFUSED: &str = "natter_gateway_persisted_waiting_refused_total";
/// Sends confirmed in PostgreSQL, by `via` (`notice`: a persister's notice after its commit; `ask`: the answer to
/// this gateway's question, after a missed notice or for a resend JetStream called a duplicate).
pub const PERSISTED_CONFIRMED: &str = "natter_gateway_persisted_confirmations_total";
/// Questions asked of the persisters about which sequences history holds, by `outcome` (`answered`, `error`).
pub const PERSISTED_ASKS: &str = "natter_gateway_persisted_asks_total";
/// Upgrades refused by the per-user connection cap counted over the fleet: the user's connections here were
/// under the cap, those on other gateways brought the total to it.
pub const USER_CAP_FLEET_REFUSED: &str = "natter_gateway_user_cap_fleet_refused_total";
/// Messages of users' connection counts published to the other gateways, by `kind` (`update`: counts that
/// changed; `sync`: every count, answering a gateway that asked).
pub const USER_COUNTS_SENT: &str = "natter_gateway_user_counts_sent_total";
/// Messages of users' connection counts received from other gateways.
pub const USER_COUNTS_RECEIVED: &str = "natter_gateway_user_counts_received_total";
/// Users holding connections on other gateways, as this gateway knows them (gauge).
pub const REMOTE_USERS: &str = "natter_gateway_remote_users";

/// Every metric this gateway exports besides the shared `process_*` and `natter_nats_*` ones, each from start-up.
pub const ALL: [&str; 48] = [
    CONNECTIONS,
    EVICTIONS,
    PENDING,
    PENDING_REFUSED,
    PROXY_HEADER_REFUSED,
    PENDING_SHED,
    CONNECTIONS_OPENED,
    CONNECTIONS_CLOSED,
    AUTH_FAILURES,
    JOINS,
    ROOMS_SUBSCRIBED,
    FRAMES_IN,
    MESSAGES_OUT,
    FANOUT_LATENCY,
    PUBLISH_LATENCY,
    PUBLISH_FAILURES,
    SLOW_CONSUMERS,
    GAP_FILLS,
    GAP_FILL_FAILURES,
    REPLAYED,
    REPLAYS,
    TOKENS_VERIFIED,
    DELIVERY_LAG,
    SENDS_SHED,
    SHED_SHARE,
    RATE_LIMITED,
    DELIVERY_LATENCY,
    ACK_LATENCY,
    SENDS,
    JOINS_UNRECOVERED,
    DRAINING,
    OUTBOUND_QUEUE_MAX,
    STREAM_RECREATED,
    natter_service::MAX_FDS,
    BAD_FRAMES,
    ACCESS_QUESTIONS,
    ACCESS_RECHECKS,
    MENTION_QUESTIONS,
    ACCESS_CATCH_UPS,
    JWKS_REFETCHES,
    PERSISTED_WAITING,
    PERSISTED_REFUSED,
    PERSISTED_CONFIRMED,
    PERSISTED_ASKS,
    USER_CAP_FLEET_REFUSED,
    USER_COUNTS_SENT,
    USER_COUNTS_RECEIVED,
    REMOTE_USERS,
];

/// Close codes a gateway closes with or sees, registered at 0 from start-up.
const CLOSE_CODES: [u16; 12] = [
    close::NORMAL,
    1001,
    close::PROTOCOL_ERROR,
    close::INVALID_DATA,
    close::POLICY,
    close::TOO_BIG,
    close::UNAVAILABLE,
    close::RESTART,
    close::TOKEN_EXPIRED,
    close::SESSION_REVOKED,
    close::SLOW_CONSUMER,
    close::IDLE,
];

/// Why upgrades are refused besides a bad token, registered at 0 from start-up.
const REFUSALS: [&str; 4] = ["draining", "origin", "missing_token", "too_many_connections"];

/// Describes every metric and registers each series at zero, so a dashboard or an alert over a counter that
/// never moved still finds its series. Called once at start-up.
pub fn register() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    let _ = hot();
    describe_gauge!(CONNECTIONS, "Open client connections.");
    describe_counter!(CONNECTIONS_OPENED, "Client connections accepted since start.");
    describe_counter!(
        CONNECTIONS_CLOSED,
        "Client connections closed, by WebSocket close code."
    );
    describe_counter!(AUTH_FAILURES, "Upgrades refused, by reason.");
    describe_counter!(JOINS, "Room joins.");
    describe_gauge!(ROOMS_SUBSCRIBED, "Rooms with local members (a NATS subscription each).");
    describe_counter!(FRAMES_IN, "Client frames received, by type.");
    describe_counter!(
        MESSAGES_OUT,
        "Chat messages handed to client sockets, one per recipient."
    );
    describe_histogram!(
        FANOUT_LATENCY,
        Unit::Seconds,
        "A message's arrival from NATS to its frame being written."
    );
    describe_histogram!(
        PUBLISH_LATENCY,
        Unit::Seconds,
        "Publishing a chat message to JetStream's stored-ack."
    );
    describe_counter!(PUBLISH_FAILURES, "Publishes that failed, by reason.");
    describe_counter!(SLOW_CONSUMERS, "Clients closed with 4008 for not reading fast enough.");
    describe_counter!(
        GAP_FILLS,
        "Messages fetched from the stream to fill a gap in a room's live feed."
    );
    describe_counter!(
        GAP_FILL_FAILURES,
        "Gaps in a room's live feed the stream could not fill within 45 s; receivers see them through prev."
    );
    describe_counter!(REPLAYED, "Messages replayed to rejoining clients.");
    describe_counter!(
        TOKENS_VERIFIED,
        "Access tokens checked, by how: signature (an Ed25519 check) or cached (the same token verified before in this process)."
    );
    describe_counter!(
        REPLAYS,
        "Rejoins with a gap to replay, by source: read from JetStream (stream) or from the room's window another rejoin read (shared)."
    );
    describe_gauge!(
        DELIVERY_LAG,
        Unit::Seconds,
        "Smoothed delay from acceptance to hand-off to members."
    );
    describe_counter!(SENDS_SHED, "Sends refused with overloaded.");
    describe_gauge!(
        PERSISTED_WAITING,
        "Sends stored by JetStream waiting for a persister's confirmation."
    );
    describe_counter!(
        PERSISTED_REFUSED,
        "Sends refused with overloaded: too many already wait for a persister."
    );
    describe_counter!(PERSISTED_CONFIRMED, "Sends confirmed in PostgreSQL, by how.");
    describe_counter!(
        PERSISTED_ASKS,
        "Questions to the persisters about stored sequences, by outcome."
    );
    describe_gauge!(SHED_SHARE, "Share of new sends refused with overloaded (0 to 1).");
    describe_counter!(RATE_LIMITED, "Frames refused by a rate limit, by kind.");
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "A message's acceptance to hand-off to members, per batch."
    );
    describe_histogram!(
        ACK_LATENCY,
        Unit::Seconds,
        "A send frame read to its ack queued, for sends stored."
    );
    describe_counter!(
        SENDS,
        "Sends taken on or turned away for the gateway's sake, by outcome: acked, overloaded, failed."
    );
    describe_counter!(JOINS_UNRECOVERED, "Rejoins answered recovered: false.");
    describe_gauge!(DRAINING, "1 while this gateway drains, else 0.");
    describe_counter!(
        STREAM_RECREATED,
        "Times the chat stream was found recreated (a new epoch)."
    );
    describe_gauge!(OUTBOUND_QUEUE_MAX, "Frames in the deepest outbound queue, each second.");
    describe_counter!(EVICTIONS, "Connections taken out of a room by the gateway, by reason.");
    describe_gauge!(PENDING, "Accepted connections not yet upgraded to a WebSocket.");
    describe_counter!(
        PENDING_REFUSED,
        "Connections closed at once because too many were pending, by scope."
    );
    describe_counter!(
        PROXY_HEADER_REFUSED,
        "Connections from the load balancer closed for want of a valid PROXY header, by reason."
    );
    describe_counter!(
        PENDING_SHED,
        "Pending connections closed to let newcomers in, or for being slow under pressure, by reason."
    );
    describe_gauge!(natter_service::MAX_FDS, "The most files this process may hold open.");
    describe_counter!(
        BAD_FRAMES,
        "Invalid frames counted against --max-bad-frames, by error code."
    );
    describe_counter!(
        ACCESS_QUESTIONS,
        "Room-access questions asked of the auth API, by answer."
    );
    describe_counter!(
        ACCESS_RECHECKS,
        "Room-access questions about users already in a room, by answer."
    );
    describe_counter!(
        MENTION_QUESTIONS,
        "Questions to the auth API about whom a message mentions, by outcome."
    );
    describe_counter!(
        ACCESS_CATCH_UPS,
        "Times every room's access was asked about again after events may have been missed, by cause."
    );
    describe_counter!(JWKS_REFETCHES, "JWKS refetches on unknown key ids, by outcome.");
    describe_counter!(
        USER_CAP_FLEET_REFUSED,
        "Upgrades refused because the user's connections over the whole fleet reached the per-user cap."
    );
    describe_counter!(
        USER_COUNTS_SENT,
        "Messages of users' connection counts published to the other gateways, by kind."
    );
    describe_counter!(
        USER_COUNTS_RECEIVED,
        "Messages of users' connection counts received from other gateways."
    );
    describe_gauge!(
        REMOTE_USERS,
        "Users holding connections on other gateways, as known here."
    );
    ::metrics::gauge!(REMOTE_USERS).set(0.0);
    for kind in ["update", "sync"] {
        ::metrics::counter!(USER_COUNTS_SENT, "kind" => kind).absolute(0);
    }
    ::metrics::gauge!(CONNECTIONS).set(0.0);
    ::metrics::gauge!(ROOMS_SUBSCRIBED).set(0.0);
    ::metrics::gauge!(DRAINING).set(0.0);
    ::metrics::gauge!(OUTBOUND_QUEUE_MAX).set(0.0);
    ::metrics::gauge!(PENDING).set(0.0);
    for reason in [
        natter_proto::frame::left_reason::ROOM_DELETED,
        natter_proto::frame::left_reason::MEMBER_LEFT,
        natter_proto::frame::left_reason::MEMBER_REMOVED,
        natter_proto::frame::left_reason::ACCESS_REVOKED,
    ] {
        ::metrics::counter!(EVICTIONS, "reason" => reason).absolute(0);
    }
    for reason in ["missing", "malformed", "closed", "timeout"] {
        ::metrics::counter!(PROXY_HEADER_REFUSED, "reason" => reason).absolute(0);
    }
    for how in ["signature", "cached"] {
        ::metrics::counter!(TOKENS_VERIFIED, "how" => how).absolute(0);
    }
    for source in ["stream", "shared"] {
        ::metrics::counter!(REPLAYS, "source" => source).absolute(0);
    }
    for scope in ["gateway", "address"] {
        ::metrics::counter!(PENDING_REFUSED, "scope" => scope).absolute(0);
    }
    for shed in crate::pending::Shed::ALL {
        ::metrics::counter!(PENDING_SHED, "reason" => shed.reason()).absolute(0);
    }
    for name in [
        CONNECTIONS_OPENED,
        JOINS,
        SLOW_CONSUMERS,
        GAP_FILLS,
        GAP_FILL_FAILURES,
        REPLAYED,
        SENDS_SHED,
        JOINS_UNRECOVERED,
        STREAM_RECREATED,
        USER_CAP_FLEET_REFUSED,
        USER_COUNTS_RECEIVED,
    ] {
        ::metrics::counter!(name).absolute(0);
    }
    for code in CLOSE_CODES {
        ::metrics::counter!(CONNECTIONS_CLOSED, "code" => code.to_string()).absolute(0);
    }
    for reason in REFUSALS.into_iter().chain(natter_proto::token::TokenError::CODES) {
        ::metrics::counter!(AUTH_FAILURES, "reason" => reason).absolute(0);
    }
    for reason in ["encode", "error", "timeout", "not_persisted"] {
        ::metrics::counter!(PUBLISH_FAILURES, "reason" => reason).absolute(0);
    }
    for kind in ["send", "typing", "join", "leave"] {
        ::metrics::counter!(RATE_LIMITED, "kind" => kind).absolute(0);
    }
    for code in [ErrorCode::BadFrame, ErrorCode::BinaryFrame, ErrorCode::RoomNotFound].map(ErrorCode::as_str) {
        ::metrics::counter!(BAD_FRAMES, "code" => code).absolute(0);
    }
    for answer in ACCESS_ANSWERS {
        ::metrics::counter!(ACCESS_QUESTIONS, "answer" => answer).absolute(0);
        ::metrics::counter!(ACCESS_RECHECKS, "answer" => answer).absolute(0);
    }
    for outcome in ["answered", "failed"] {
        ::metrics::counter!(MENTION_QUESTIONS, "outcome" => outcome).absolute(0);
    }
    for cause in ["reconnect", "slow_consumer"] {
        ::metrics::counter!(ACCESS_CATCH_UPS, "cause" => cause).absolute(0);
    }
    for outcome in ["ok", "error"] {
        ::metrics::counter!(JWKS_REFETCHES, "outcome" => outcome).absolute(0);
    }
    for via in ["notice", "ask"] {
        ::metrics::counter!(PERSISTED_CONFIRMED, "via" => via).absolute(0);
    }
    for outcome in ["answered", "error"] {
        ::metrics::counter!(PERSISTED_ASKS, "outcome" => outcome).absolute(0);
    }
    ::metrics::counter!(PERSISTED_REFUSED).absolute(0);
    ::metrics::gauge!(PERSISTED_WAITING).set(0.0);
    let _ = ::metrics::histogram!(DELIVERY_LATENCY);
    let _ = ::metrics::histogram!(ACK_LATENCY);
}

/// The `answer` labels of [`ACCESS_QUESTIONS`] and [`ACCESS_RECHECKS`].
const ACCESS_ANSWERS: [&str; 9] = [
    "public",
    "allowed",
    "denied",
    "banned",
    "blocked",
    "not_found",
    "owner",
    "too_many_reactions",
    "error",
];

/// The `answer` label of a room-access question's outcome (`None`: no answer came).
pub fn access_answer(answer: Option<&natter_proto::bus::RoomAccess>) -> &'static str {
    use natter_proto::bus::RoomAccess;
    match answer {
        Some(RoomAccess::Public) => "public",
        Some(RoomAccess::Allowed) => "allowed",
        Some(RoomAccess::Denied) => "denied",
        Some(RoomAccess::Banned) => "banned",
        Some(RoomAccess::Blocked) => "blocked",
        Some(RoomAccess::NotFound) => "not_found",
        Some(RoomAccess::Owner) => "owner",
        Some(RoomAccess::TooManyReactions) => "too_many_reactions",
        None => "error",
    }
}

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
    /// [`DELIVERY_LATENCY`].
    pub delivery_latency: ::metrics::Histogram,
    /// [`ACK_LATENCY`].
    pub ack_latency: ::metrics::Histogram,
    /// [`SENDS`] by `outcome`, in the order of [`SEND_OUTCOMES`].
    pub sends: [::metrics::Counter; SEND_OUTCOMES.len()],
    /// [`FRAMES_IN`] by `type`, in the order of [`FRAME_TYPES`].
    pub frames_in: [::metrics::Counter; FRAME_TYPES.len()],
}

/// How a send ended, for [`SENDS`].
#[derive(Clone, Copy, Debug)]
pub enum SendOutcome {
    /// Stored and acked.
    Acked = 0,
    /// Refused by load shedding.
    Overloaded = 1,
    /// The publish failed.
    Failed = 2,
}

/// The `outcome` labels of [`SENDS`], indexed by [`SendOutcome`].
pub const SEND_OUTCOMES: [&str; 3] = ["acked", "overloaded", "failed"];

/// Counts a send's outcome.
pub fn send(outcome: SendOutcome) {
    hot().sends[outcome as usize].increment(1);
}

/// The `type` labels of [`FRAMES_IN`].
pub const FRAME_TYPES: [&str; 10] = [
    "join", "leave", "send", "edit", "delete", "react", "typing", "ping", "refresh", "invalid",
];

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
            delivery_latency: ::metrics::histogram!(DELIVERY_LATENCY),
            ack_latency: ::metrics::histogram!(ACK_LATENCY),
            sends: SEND_OUTCOMES.map(|outcome| ::metrics::counter!(SENDS, "outcome" => outcome)),
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
