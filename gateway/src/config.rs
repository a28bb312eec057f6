//! Configuration from flags and environment, validated before any port is bound.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use natter_proto::duration::parse as parse_duration;

/// Settings of one gateway process. Every flag can also be given through the environment variable it names.
#[derive(Debug, Clone, Parser)]
#[command(name = "natter-gateway", version, about = "Natter's WebSocket gateway")]
pub struct Config {
    /// Address the WebSocket and HTTP endpoints listen on. Several processes may share it (SO_REUSEPORT).
    #[arg(long, env = "NATTER_GATEWAY_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,

    /// Where `/healthz`, `/readyz` and `/metrics` are served, on a listener of their own so scrapes and health
    /// checks work whatever the public port suffers; the public port then serves only `/ws`. Unset: they are
    /// served on the public port beside `/ws`.
    #[arg(long, env = "NATTER_GATEWAY_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// NATS server URL, or several separated by commas: every node of a cluster, so the gateway moves to another
    /// when its node goes.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// The NATS user and password (`--nats-user`, `NATS_PASSWORD`).
    #[command(flatten)]
    pub nats_auth: natter_service::NatsAuth,

    /// Where the auth API publishes its token keys.
    #[arg(
        long,
        env = "NATTER_JWKS_URL",
        default_value = "http://127.0.0.1:8080/.well-known/jwks.json"
    )]
    pub jwks_url: String,

    /// Expected `iss` of access tokens.
    #[arg(long, env = "NATTER_JWT_ISSUER", default_value = "natter")]
    pub issuer: String,

    /// Expected `aud` of access tokens.
    #[arg(long, env = "NATTER_JWT_AUDIENCE", default_value = "natter")]
    pub audience: String,

    /// This gateway's id in the fleet (default: random).
    #[arg(long, env = "NATTER_GATEWAY_ID")]
    pub id: Option<String>,

    /// The WebSocket URL clients reach this gateway at, as registered for direct ingress
    /// (default: ws://LISTEN/ws).
    #[arg(long, env = "NATTER_GATEWAY_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Browser origins allowed to connect, comma-separated; `*` allows any. Clients that send no `Origin`
    /// (not browsers) are always allowed.
    #[arg(
        long,
        env = "NATTER_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080,http://localhost:8080"
    )]
    pub allowed_origins: Vec<String>,

    /// Largest client message in bytes, counted over all fragments (larger: closed with 1009).
    #[arg(long, env = "NATTER_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024)]
    pub max_message_bytes: usize,

    /// Longest chat message body, in characters.
    #[arg(long, env = "NATTER_MAX_BODY_CHARS", default_value_t = 4000)]
    pub max_body_chars: usize,

    /// Frames queued to one client before it counts as too slow and is disconnected.
    #[arg(long, env = "NATTER_OUTBOUND_QUEUE", default_value_t = 512)]
    pub outbound_queue: usize,

    /// Kernel send buffer of each client socket in bytes; 0 lets the kernel size it (on Linux it grows to
    /// net.ipv4.tcp_wmem's maximum, 4 MiB by default). A fixed size bounds the kernel memory a client that stops
    /// reading can hold, and with it how much it falls behind before its queue fills and it is closed with 4008.
    #[arg(long, env = "NATTER_SOCKET_SEND_BUFFER", default_value_t = 0)]
    pub socket_send_buffer: usize,

    /// Chat messages one connection may send per second (with a burst of twice that).
    #[arg(long, env = "NATTER_SENDS_PER_SECOND", default_value_t = 20)]
    pub sends_per_second: u32,

    /// Typing updates one connection may send per second (with a burst of twice that).
    #[arg(long, env = "NATTER_TYPING_PER_SECOND", default_value_t = 20)]
    pub typing_per_second: u32,

    /// Invalid frames tolerated per connection before it is closed.
    #[arg(long, env = "NATTER_MAX_BAD_FRAMES", default_value_t = 10)]
    pub max_bad_frames: u32,

    /// Connections one user may hold over the whole gateway fleet (this gateway's and those the others report;
    /// racing connects on several gateways can pass it by at most one per other gateway, for a moment).
    #[arg(long, env = "NATTER_MAX_CONNECTIONS_PER_USER", default_value_t = 16)]
    pub max_connections_per_user: usize,

    /// Connections this gateway accepts in all (keep below the process's open-file limit).
    #[arg(long, env = "NATTER_MAX_CONNECTIONS", default_value_t = 18_000)]
    pub max_connections: usize,

    /// Accepted connections that have not upgraded to a WebSocket yet (still sending or idle in HTTP), in all;
    /// past it, new ones get a 503 and are closed at once.
    #[arg(long, env = "NATTER_MAX_PENDING_CONNECTIONS", default_value_t = 2048)]
    pub max_pending_connections: usize,

    /// Such connections from one client address; 0 for no per-address cap (behind a proxy or load balancer every
    /// client shares its address).
    #[arg(long, env = "NATTER_MAX_PENDING_PER_ADDRESS", default_value_t = 256)]
    pub max_pending_per_address: usize,

    /// Load balancers (addresses or blocks, `10.0.0.0/8`, separated by commas) that begin each connection with a
    /// PROXY protocol header (v1 or v2; HAProxy's `send-proxy-v2`) naming the client: connections from them are
    /// capped, counted and logged by that client's address, and one without a valid header is closed. Any other
    /// connection is taken as it is.
    #[arg(long, env = "NATTER_PROXY_PROTOCOL_FROM", value_delimiter = ',')]
    pub proxy_protocol_from: Vec<natter_service::net::Network>,

    /// How long a new connection has to send its whole HTTP request head (slow or idle sockets are dropped).
    #[arg(long, env = "NATTER_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// The header timeout while the pending pool is at least half full: idle connections older than this are
    /// closed as newcomers arrive, so sockets that never finish their request cannot hold the pool.
    #[arg(long, env = "NATTER_HEADER_TIMEOUT_UNDER_PRESSURE", default_value = "2s", value_parser = parse_duration)]
    pub header_timeout_under_pressure: Duration,

    /// Rooms one connection may be in at once.
    #[arg(long, env = "NATTER_MAX_ROOMS_PER_CONNECTION", default_value_t = 64)]
    pub max_rooms_per_connection: usize,

    /// Interval of server pings.
    #[arg(long, env = "NATTER_PING_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// A connection silent for this long (no frame, no pong) is closed.
    #[arg(long, env = "NATTER_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Messages replayed at most on a rejoin; older gaps answer `recovered: false`.
    #[arg(long, env = "NATTER_MAX_REPLAY", default_value_t = 1000)]
    pub max_replay: usize,

    /// The chat stream's age, byte cap and copies.
    #[command(flatten)]
    pub stream: natter_stream::StreamArgs,

    /// Listen backlog: large, so connect storms do not end in SYN retries.
    #[arg(long, env = "NATTER_LISTEN_BACKLOG", default_value_t = 8192)]
    pub listen_backlog: u32,

    /// Longest drain on SIGTERM before the process exits anyway.
    #[arg(long, env = "NATTER_DRAIN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub drain_grace: Duration,

    /// Window over which draining closes are spread, so clients do not all reconnect at once.
    #[arg(long, env = "NATTER_DRAIN_JITTER", default_value = "5s", value_parser = parse_duration)]
    pub drain_jitter: Duration,

    /// How long a drained gateway goes on answering on its admin port (`/metrics` showing
    /// `natter_gateway_draining 1`, `/readyz` 503) before it exits: at least the Prometheus scrape interval, so the
    /// drain is seen and a gateway that exits after one raises no alert (0: exit at once).
    #[arg(long, env = "NATTER_DRAIN_LINGER", default_value = "0s", value_parser = parse_duration)]
    pub drain_linger: Duration,

    /// Interval of fleet heartbeats; a gateway silent for three is taken as dead and its users' presence expires.
    #[arg(long, env = "NATTER_HEARTBEAT_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Delivery lag (from a message's acceptance to its frames reaching members' sockets) over which new sends
    /// are refused with `overloaded`, so a saturated gateway sheds load instead of acknowledging messages it can
    /// only deliver seconds later; `0s` never sheds.
    #[arg(long, env = "NATTER_SHED_LAG", default_value = "200ms", value_parser = parse_duration)]
    pub shed_lag: Duration,

    /// Threads the process runs connections on: 1 is a single-threaded runtime (run one process per core,
    /// sharing the port with SO_REUSEPORT), 0 one thread per core.
    #[arg(long, env = "NATTER_GATEWAY_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// How often the auth API is asked again whether each user with a connection in a room may still be in it
    /// (one question per room for a public room, one per local user for a private one; rooms are spread over the
    /// interval). Removals reach gateways as room events at once; this bounds how long a member whose removal
    /// event was lost stays in.
    #[arg(long, env = "NATTER_ACCESS_RECHECK_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub access_recheck_interval: Duration,

    /// Joins (and leaves of rooms it is not in) one connection may send per second, after a burst of
    /// `--max-rooms-per-connection` (or twice the rate, if more) so a reconnecting client rejoins all its rooms
    /// at once; over it, `rate_limited`.
    #[arg(long, env = "NATTER_JOINS_PER_SECOND", default_value_t = 5)]
    pub joins_per_second: u32,

    /// When a send is acked: `stored`, once JetStream stored it (in memory on a majority of its replicas; nats-server
    /// 2.9 acks before fsync); `persisted`, once a persister has also committed it to PostgreSQL, so an ack means
    /// "in the database" (docs/protocol.md). `persisted` costs a wait per send and needs a persister running.
    #[arg(long, env = "NATTER_GATEWAY_ACK_AFTER", value_enum, default_value_t = AckAfter::Stored)]
    pub ack_after: AckAfter,

    /// With `--ack-after persisted`: how long a send waits for the persister's confirmation before it is answered
    /// `publish_failed` (outcome unknown; the client resends with the same id).
    #[arg(long, env = "NATTER_PERSISTED_ACK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub persisted_ack_timeout: Duration,

    /// With `--ack-after persisted`: most sends of this gateway waiting for the persister at once; further sends
    /// are refused with `overloaded` (each connection has at most 32 sends in flight in any mode).
    #[arg(long, env = "NATTER_MAX_WAITING_SENDS", default_value_t = 20_000)]
    pub max_waiting_sends: usize,
}

/// When a gateway acks a send (`--ack-after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AckAfter {
    /// Once JetStream stored it.
    Stored,
    /// Once a persister committed it to PostgreSQL.
    Persisted,
}

impl natter_service::Validate for Config {
    fn validate(&self) -> Result<(), String> {
        let fail = |msg: &str| Err(msg.to_owned());
        natter_service::nats_servers(&self.nats_url)?;
        self.nats_auth.validate()?;
        if !self.jwks_url.starts_with("http://") && !self.jwks_url.starts_with("https://") {
            return fail("--jwks-url must be an http(s) URL");
        }
        if let Some(id) = &self.id
            && (id.is_empty()
                || id.len() > 64
                || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return fail("--id may only hold 1 to 64 letters, digits, '-' and '_'");
        }
        if !(128..=1024 * 1024).contains(&self.max_message_bytes) {
            return fail("--max-message-bytes must be between 128 and 1048576");
        }
        if self.max_body_chars == 0 || self.max_body_chars > self.max_message_bytes {
            return fail("--max-body-chars must be at least 1 and at most --max-message-bytes");
        }
        if self.outbound_queue < 8 || self.sends_per_second == 0 || self.typing_per_second == 0 {
            return fail("--outbound-queue must be at least 8, and rates at least 1 per second");
        }
        if self.socket_send_buffer != 0 && !(4096..=64 * 1024 * 1024).contains(&self.socket_send_buffer) {
            return fail("--socket-send-buffer must be 0 (the kernel's choice) or 4096 to 67108864 bytes");
        }
        if self.threads > 256 {
            return fail("--threads must be between 0 (one per core) and 256");
        }
        if self.max_connections == 0 || self.max_connections_per_user == 0 || self.max_rooms_per_connection == 0 {
            return fail("connection and room limits must be at least 1");
        }
        if self.max_pending_connections == 0 {
            return fail("--max-pending-connections must be at least 1");
        }
        if self.header_timeout < Duration::from_millis(100) || self.header_timeout > Duration::from_secs(300) {
            return fail("--header-timeout must be between 100ms and 300s");
        }
        if self.header_timeout_under_pressure < Duration::from_millis(100)
            || self.header_timeout_under_pressure > self.header_timeout
        {
            return fail("--header-timeout-under-pressure must be at least 100ms and at most --header-timeout");
        }
        if self.idle_timeout <= self.ping_interval {
            return fail("--idle-timeout must be longer than --ping-interval");
        }
        if self.heartbeat_interval < Duration::from_millis(100) {
            return fail("--heartbeat-interval must be at least 100ms");
        }
        if self.access_recheck_interval < Duration::from_secs(1)
            || self.access_recheck_interval > Duration::from_secs(3600)
        {
            return fail("--access-recheck-interval must be between 1s and 1h");
        }
        if self.joins_per_second == 0 {
            return fail("--joins-per-second must be at least 1");
        }
        // Shorter than JetStream's own 5 s publish timeout would answer sends before their stored-ack could come.
        if self.persisted_ack_timeout < Duration::from_secs(5) || self.persisted_ack_timeout > Duration::from_secs(300)
        {
            return fail("--persisted-ack-timeout must be between 5s and 300s");
        }
        if self.max_waiting_sends == 0 {
            return fail("--max-waiting-sends must be at least 1");
        }
        if self.allowed_origins.iter().any(|o| o.trim().is_empty()) {
            return fail("--allowed-origins has an empty entry");
        }
        Ok(())
    }
}

impl Config {
    /// This gateway's id: configured, or a fresh random one.
    pub fn gateway_id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("gw-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
    }
}

#[cfg(test)]
mod tests {
    use natter_service::Validate;

    use super::*;

    fn config(args: &[&str]) -> Config {
        let mut argv = vec!["natter-gateway"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv).expect("parses")
    }

    #[test]
    fn defaults_are_valid() {
        config(&[]).validate().expect("defaults validate");
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        assert!(config(&["--nats-url", "http://x"]).validate().is_err());
        assert!(
            config(&["--idle-timeout", "5s", "--ping-interval", "10s"])
                .validate()
                .is_err()
        );
        assert!(config(&["--id", "a.b"]).validate().is_err());
        assert!(config(&["--max-message-bytes", "10"]).validate().is_err());
        assert!(config(&["--socket-send-buffer", "1000"]).validate().is_err());
        assert!(config(&["--access-recheck-interval", "500ms"]).validate().is_err());
        assert!(config(&["--joins-per-second", "0"]).validate().is_err());
        assert!(config(&["--persisted-ack-timeout", "1s"]).validate().is_err());
        assert!(config(&["--max-waiting-sends", "0"]).validate().is_err());
        assert!(Config::try_parse_from(["natter-gateway", "--ack-after", "fsynced"]).is_err());
        assert_eq!(config(&[]).ack_after, AckAfter::Stored, "off by default");
        config(&["--ack-after", "persisted", "--persisted-ack-timeout", "30s"])
            .validate()
            .expect("acks after persistence");
        config(&["--socket-send-buffer", "16384"])
            .validate()
            .expect("a fixed send buffer");
    }
}
