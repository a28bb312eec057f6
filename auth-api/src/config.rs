//! Configuration from flags and environment, validated before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use natter_proto::duration::parse as parse_duration;
use sqlx::postgres::PgConnectOptions;

/// Settings of the auth API. Every flag can also be given through the environment variable it names.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "natter-auth-api",
    version,
    about = "Natter's HTTP API: accounts, tokens and rooms"
)]
pub struct Config {
    /// Address the HTTP API listens on.
    #[arg(long, env = "NATTER_API_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Where `/healthz`, `/readyz` and `/metrics` are served, on a listener of their own so scrapes and health
    /// checks work whatever the public port suffers; the public port then serves only the API and the web client.
    /// Unset: they are served on the public port.
    #[arg(long, env = "NATTER_API_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// PostgreSQL connection URL. The schema is migrated on start.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/natter",
        hide_env_values = true
    )]
    pub database_url: String,

    /// NATS server URL, or several separated by commas (every node of a cluster). With it, the API answers gateways' room-access checks, hands out gateway assignments
    /// (`GET /api/gateway`), publishes room events and records revoked sessions for the gateways; without it,
    /// none of these happen (set it wherever gateways run).
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,

    /// The NATS user and password (`--nats-user`, `NATS_PASSWORD`).
    #[command(flatten)]
    pub nats_auth: natter_service::NatsAuth,

    /// Copies of the revoked-sessions bucket JetStream keeps, when this process creates it: 1 on a single NATS
    /// server, 3 on a cluster of three (as the gateways' and persisters' `--stream-replicas`).
    #[arg(long, env = "NATTER_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub stream_replicas: u8,

    /// Most connections held to PostgreSQL.
    #[arg(long, env = "NATTER_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// `iss` claim of issued tokens, checked by every verifier.
    #[arg(long, env = "NATTER_JWT_ISSUER", default_value = "natter")]
    pub issuer: String,

    /// `aud` claim of issued tokens, checked by every verifier.
    #[arg(long, env = "NATTER_JWT_AUDIENCE", default_value = "natter")]
    pub audience: String,

    /// Lifetime of an access token (e.g. 900s, 15m); at most 24h less the 5s clock leeway, since revoked sessions
    /// are remembered for 24h.
    #[arg(long, env = "NATTER_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_token_ttl: Duration,

    /// Lifetime of a refresh token (e.g. 30d).
    #[arg(long, env = "NATTER_REFRESH_TOKEN_TTL", default_value = "30d", value_parser = parse_duration)]
    pub refresh_token_ttl: Duration,

    /// The longest a session (a sign-in and every refresh token rotated from it) lasts, however often it is
    /// refreshed: past it, a refresh is refused with `session_expired` and the user signs in again. Refresh tokens
    /// minted near the end expire with the session.
    #[arg(long, env = "NATTER_REFRESH_FAMILY_MAX_AGE", default_value = "90d", value_parser = parse_duration)]
    pub refresh_family_max_age: Duration,

    /// How long after its first use a refresh token may be presented again without counting as stolen: the
    /// second tab of a browser refreshing the same session, or a retry after a lost response, gets the same new
    /// refresh token its first use got (one chain, never two).
    /// Later reuse revokes the session. 0s makes every reuse a theft.
    #[arg(long, env = "NATTER_REFRESH_REUSE_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub refresh_reuse_grace: Duration,

    /// Age after which the signing key is replaced by a new one (e.g. 7d).
    #[arg(long, env = "NATTER_KEY_ROTATION", default_value = "7d", value_parser = parse_duration)]
    pub key_rotation: Duration,

    /// Whether `POST /api/guest` hands out guest accounts.
    #[arg(long, env = "NATTER_GUESTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub guests: bool,

    /// Failed logins allowed per user name per client address per minute. Successful logins do not count.
    #[arg(long, env = "NATTER_LOGIN_FAILURES_PER_USER_ADDRESS", default_value_t = 10)]
    pub login_failures_per_user_address: u32,

    /// Failed logins allowed per user name per hour over all client addresses, except addresses the user logged
    /// in from within the last 30 days (so guessing from many addresses cannot lock the user out of their own).
    #[arg(long, env = "NATTER_LOGIN_FAILURES_PER_USER", default_value_t = 100)]
    pub login_failures_per_user: u32,

    /// Login, register and guest attempts allowed per client address per minute.
    #[arg(long, env = "NATTER_AUTH_ATTEMPTS_PER_ADDRESS", default_value_t = 60)]
    pub auth_attempts_per_address: u32,

    /// Requests a signed-in user may make per minute, over every authenticated route together (a token bucket: up
    /// to this many at once, then this many a minute). Over it: 429 `rate_limited` with `Retry-After`.
    #[arg(long, env = "NATTER_USER_REQUESTS_PER_MINUTE", default_value_t = 600)]
    pub user_requests_per_minute: u32,

    /// Room listings (`GET /api/rooms`, the costliest read) a user may make per minute, within the budget above.
    #[arg(long, env = "NATTER_USER_ROOM_LISTINGS_PER_MINUTE", default_value_t = 120)]
    pub user_room_listings_per_minute: u32,

    /// Rooms a user may create per hour (up to this many at once, then evenly over the hour).
    #[arg(long, env = "NATTER_USER_ROOM_CREATIONS_PER_HOUR", default_value_t = 30)]
    pub user_room_creations_per_hour: u32,

    /// Joins, leaves, member removals, bans and their lifting, role changes and room deletions a user may make per
    /// minute (each leave, removal and ban is an event every gateway hears).
    #[arg(long, env = "NATTER_USER_MEMBERSHIP_CHANGES_PER_MINUTE", default_value_t = 120)]
    pub user_membership_changes_per_minute: u32,

    /// Searches (`GET /api/search`) a user may make per minute, within the request budget: each one ranks every
    /// message its words match, up to a few seconds of a database core.
    #[arg(long, env = "NATTER_USER_SEARCHES_PER_MINUTE", default_value_t = 30)]
    pub user_searches_per_minute: u32,

    /// New direct and group conversations a user may start per hour (up to this many at once, then evenly over the
    /// hour); getting a direct conversation that exists costs nothing.
    #[arg(long, env = "NATTER_USER_CONVERSATIONS_PER_HOUR", default_value_t = 60)]
    pub user_conversations_per_hour: u32,

    /// The gateway URLs this API hands out, as patterns separated by commas, where `*` stands for any run of
    /// characters other than `/` (e.g. `wss://gw-*.chat.example/ws`). A heartbeat naming any other URL is ignored
    /// and counted (`natter_api_gateway_heartbeats_refused_total`), so a client on NATS that passes for a gateway
    /// cannot send browsers, with their tokens, elsewhere. Unset: every URL is accepted, with a warning at start.
    #[arg(long, env = "NATTER_GATEWAY_URL_PATTERNS", value_delimiter = ',')]
    pub gateway_url_patterns: Vec<String>,

    /// Header holding the client address when behind a proxy (e.g. x-forwarded-for), read only on requests from
    /// `--trusted-proxies`; off by default, since a client could otherwise pick its own address and dodge the
    /// per-address limits.
    #[arg(long, env = "NATTER_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,

    /// The proxies (addresses or blocks, `10.0.0.0/8`, separated by commas) whose `--client-ip-header` is
    /// believed; a request from any other address is limited by its own address, whatever the header says.
    /// Required with `--client-ip-header`.
    #[arg(long, env = "NATTER_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::trusted_proxy::Network>,

    /// Apply the database schema's migrations (accounts and history) and exit, serving nothing: what the
    /// database's owner runs when services connect as roles of least privilege (deploy/postgres/roles.sql), which
    /// may not change the schema.
    #[arg(long)]
    pub migrate_only: bool,

    /// A secret (at least 32 bytes: e.g. 32 random letters and digits) under which the signing keys are sealed in
    /// PostgreSQL, so a copy of the database cannot mint tokens. Keys stored before it was given are sealed at
    /// start; once given, every instance needs the same one. Unset: keys are stored unencrypted, with a warning.
    #[arg(long, env = "NATTER_KEY_ENCRYPTION_KEY", hide_env_values = true)]
    pub key_encryption_key: Option<String>,

    /// Password hashes (Argon2id, 19 MiB each) run at once; more wait their turn. Unset: two per core, at most 8.
    /// The process needs about 64 MiB plus 19 MiB per concurrent hash: size a container's memory limit for it.
    #[arg(long, env = "NATTER_MAX_CONCURRENT_HASHES", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_concurrent_hashes: Option<u16>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "NATTER_MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,

    /// Turns on the load-test mode: `POST /api/load-test/guests` mints up to 1,000 guest accounts and access tokens
    /// per request for a caller presenting this key as a bearer token, so a load test can act as many users without
    /// the per-address limits. Leave unset in production (the default): the route then answers 404.
    #[arg(long, env = "NATTER_LOAD_TEST_KEY", hide_env_values = true)]
    pub load_test_key: Option<String>,

    /// Directory of the built browser client (`web/dist`), served at `/` on the API's origin. Unset: the API
    /// only, and `/` answers 404.
    #[arg(long, env = "NATTER_WEB_DIR")]
    pub web_dir: Option<PathBuf>,

    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "NATTER_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl natter_service::Validate for Config {
    fn validate(&self) -> Result<(), String> {
        let fail = |msg: String| Err(msg);
        if !self.database_url.starts_with("postgres://") && !self.database_url.starts_with("postgresql://") {
            return fail("--database-url / DATABASE_URL must start with postgres:// or postgresql://".into());
        }
        if let Err(err) = PgConnectOptions::from_str(&self.database_url) {
            // The URL may hold a password: name the problem, never the value.
            return fail(format!(
                "--database-url / DATABASE_URL is not a PostgreSQL URL ({})",
                redact(&err.to_string())
            ));
        }
        if let Some(url) = &self.nats_url {
            natter_service::nats_servers(url)?;
            self.nats_auth.validate()?;
        }
        if self.issuer.trim().is_empty() || self.audience.trim().is_empty() {
            return fail("--issuer and --audience must not be empty".into());
        }
        if self.access_token_ttl < Duration::from_secs(10) {
            return fail("--access-token-ttl must be at least 10s".into());
        }
        // Gateways learn of a revoked session from a bucket that forgets it after MAX_AGE: a token living longer
        // (its lifetime plus the verifiers' clock leeway) would be accepted again once its revocation is forgotten.
        let longest = natter_stream::sessions::MAX_AGE - Duration::from_secs(natter_proto::token::LEEWAY_SECS);
        if self.access_token_ttl > longest {
            return fail(format!(
                "--access-token-ttl must be at most {}s: revoked sessions are remembered for {}s, and tokens are \
                 accepted for {}s past their expiry",
                longest.as_secs(),
                natter_stream::sessions::MAX_AGE.as_secs(),
                natter_proto::token::LEEWAY_SECS
            ));
        }
        if self.refresh_token_ttl <= self.access_token_ttl {
            return fail("--refresh-token-ttl must be longer than --access-token-ttl".into());
        }
        if self.refresh_family_max_age <= self.access_token_ttl {
            return fail("--refresh-family-max-age must be longer than --access-token-ttl".into());
        }
        if self.refresh_reuse_grace > Duration::from_secs(60) {
            return fail("--refresh-reuse-grace must be at most 60s".into());
        }
        if self.key_rotation < Duration::from_secs(60) {
            return fail("--key-rotation must be at least 60s".into());
        }
        if self.db_max_connections == 0 {
            return fail("--db-max-connections must be at least 1".into());
        }
        if self.login_failures_per_user_address == 0 || self.login_failures_per_user == 0 {
            return fail("--login-failures-per-user-address and --login-failures-per-user must be at least 1".into());
        }
        if self.login_failures_per_user_address > self.login_failures_per_user {
            return fail(
                "--login-failures-per-user-address must not exceed --login-failures-per-user (the hourly budget)"
                    .into(),
            );
        }
        if self.auth_attempts_per_address == 0 {
            return fail("--auth-attempts-per-address must allow at least one attempt per minute".into());
        }
        if self.user_requests_per_minute == 0
            || self.user_room_listings_per_minute == 0
            || self.user_room_creations_per_hour == 0
            || self.user_membership_changes_per_minute == 0
            || self.user_searches_per_minute == 0
            || self.user_conversations_per_hour == 0
        {
            return fail(
                "--user-requests-per-minute, --user-room-listings-per-minute, --user-room-creations-per-hour, \
                 --user-membership-changes-per-minute, --user-searches-per-minute and \
                 --user-conversations-per-hour must each allow at least 1"
                    .into(),
            );
        }
        if !(256..=1024 * 1024).contains(&self.max_body_bytes) {
            return fail("--max-body-bytes must be between 256 and 1048576".into());
        }
        for pattern in &self.gateway_url_patterns {
            if crate::fleet::ws_origin(&pattern.replace('*', "x")).is_none() {
                return fail(format!(
                    "--gateway-url-patterns: {pattern:?} is not a ws:// or wss:// URL (with * for any run of \
                     characters other than /)"
                ));
            }
        }
        if let Some(secret) = &self.key_encryption_key {
            crate::sealed_keys::KeySealer::new(secret)?;
        }
        if self.client_ip_header.is_some() && self.trusted_proxies.is_empty() {
            return fail(
                "--client-ip-header needs --trusted-proxies (NATTER_TRUSTED_PROXIES): the header is believed only on \
                 requests from the proxies that set it"
                    .into(),
            );
        }
        if let Some(header) = &self.client_ip_header
            && axum::http::HeaderName::from_str(header).is_err()
        {
            return fail(format!("--client-ip-header {header:?} is not a valid header name"));
        }
        if let Some(dir) = &self.web_dir
            && !crate::routes::web::is_built(dir)
        {
            return fail(format!(
                "--web-dir / NATTER_WEB_DIR {} holds no index.html (build the client: cd web && npm ci && npm run build)",
                dir.display()
            ));
        }
        if self.load_test_key.as_ref().is_some_and(|key| key.chars().count() < 16) {
            return fail("--load-test-key / NATTER_LOAD_TEST_KEY must be at least 16 characters".into());
        }
        Ok(())
    }
}

/// Drops anything that looks like `user:password@` from an error text.
fn redact(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &text[..scheme], &text[at..])
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use natter_service::Validate;

    use super::*;

    fn config(args: &[&str]) -> Config {
        let mut argv = vec!["natter-auth-api"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv).expect("parses")
    }

    #[test]
    fn defaults_are_valid() {
        config(&[]).validate().expect("defaults validate");
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        assert!(
            config(&["--refresh-token-ttl", "1m", "--access-token-ttl", "15m"])
                .validate()
                .is_err()
        );
        assert!(config(&["--database-url", "mysql://x"]).validate().is_err());
        assert!(config(&["--access-token-ttl", "9s"]).validate().is_err());
        assert!(config(&["--refresh-family-max-age", "15m"]).validate().is_err());
        assert!(config(&["--login-failures-per-user", "0"]).validate().is_err());
        assert!(
            config(&[
                "--login-failures-per-user-address",
                "20",
                "--login-failures-per-user",
                "10"
            ])
            .validate()
            .is_err()
        );
        assert!(config(&["--issuer", " "]).validate().is_err());
        assert!(config(&["--user-room-creations-per-hour", "0"]).validate().is_err());
        assert!(
            config(&["--client-ip-header", "bad header", "--trusted-proxies", "10.0.0.1"])
                .validate()
                .is_err()
        );
        assert!(
            config(&["--client-ip-header", "x-forwarded-for"]).validate().is_err(),
            "no trusted proxies"
        );
        assert!(
            config(&[
                "--client-ip-header",
                "x-forwarded-for",
                "--trusted-proxies",
                "10.0.0.0/8,::1"
            ])
            .validate()
            .is_ok()
        );
        assert!(config(&["--load-test-key", "short"]).validate().is_err());
        assert!(config(&["--web-dir", "/nonexistent/web/dist"]).validate().is_err());
        for replicas in ["0", "6", "three"] {
            let parsed = Config::try_parse_from(["natter-auth-api", "--stream-replicas", replicas]);
            assert!(parsed.is_err(), "--stream-replicas {replicas}");
        }
        assert_eq!(config(&["--stream-replicas", "3"]).stream_replicas, 3);
        config(&["--load-test-key", "long-enough-load-test-key"])
            .validate()
            .expect("a 25-character key is fine");
    }

    #[test]
    fn access_tokens_cannot_outlive_the_memory_of_revoked_sessions() {
        let longest = natter_stream::sessions::MAX_AGE - Duration::from_secs(natter_proto::token::LEEWAY_SECS);
        let at_most = format!("{}s", longest.as_secs());
        config(&["--access-token-ttl", &at_most])
            .validate()
            .expect("the longest lifetime is accepted");
        let over = format!("{}s", longest.as_secs() + 1);
        let err = config(&["--access-token-ttl", &over])
            .validate()
            .expect_err("a second longer is refused");
        assert!(err.contains("revoked sessions are remembered"), "{err}");
    }

    #[test]
    fn database_errors_do_not_show_the_password() {
        let err = config(&["--database-url", "postgres://u:s3cret@host:notaport/db"])
            .validate()
            .expect_err("bad port");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
