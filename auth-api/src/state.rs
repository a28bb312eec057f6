//! State shared by every request handler.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::keys::KeyRing;
use crate::rate_limit::{RateLimiter, TokenBuckets};

/// Everything a handler may need. Cheap to clone: all fields are handles.
#[derive(Clone)]
pub struct AppState {
    /// The database pool; closed when the application stops.
    pub db: PgPool,
    /// Signing and verification keys.
    pub keys: KeyRing,
    /// Settings handlers read.
    pub settings: Arc<Settings>,
    /// Failed-login budgets per user and per (user, address), and the addresses users logged in from, kept in
    /// PostgreSQL so every instance shares them.
    pub logins: Arc<crate::login_limits::LoginLimits>,
    /// Login, register and guest attempts per client address.
    pub auth_per_address: Arc<RateLimiter>,
    /// Per-user budgets on authenticated routes.
    pub budgets: Arc<UserBudgets>,
    /// NATS, when configured.
    pub nats: Option<async_nats::Client>,
    /// Where revoked sessions are recorded for the gateways: with NATS only (without it there are no gateways).
    pub revocations: Option<Arc<crate::revocation::Revocations>>,
    /// Gateways heard from on NATS.
    pub gateways: crate::fleet::GatewayTable,
}

/// What each signed-in user may spend, keyed by user id. Every authenticated request spends from `requests`
/// (in the [`crate::extract::AuthUser`] extractor, before the database is asked anything); the costlier routes
/// spend from their own bucket too.
#[derive(Debug)]
pub struct UserBudgets {
    /// Every authenticated route.
    pub requests: TokenBuckets,
    /// `GET /api/rooms`.
    pub room_listings: TokenBuckets,
    /// `POST /api/rooms`.
    pub room_creations: TokenBuckets,
    /// Join, leave, remove or ban a member, lift a ban, change a role, delete a room.
    pub membership_changes: TokenBuckets,
    /// `GET /api/search`.
    pub searches: TokenBuckets,
    /// New direct and group conversations.
    pub conversations: TokenBuckets,
}

impl UserBudgets {
    /// The budgets the configuration sets.
    pub fn new(config: &crate::config::Config) -> Self {
        const MINUTE: Duration = Duration::from_secs(60);
        Self {
            requests: TokenBuckets::new("user_requests", config.user_requests_per_minute, MINUTE),
            room_listings: TokenBuckets::new("user_room_listings", config.user_room_listings_per_minute, MINUTE),
            room_creations: TokenBuckets::new(
                "user_room_creations",
                config.user_room_creations_per_hour,
                Duration::from_secs(3600),
            ),
            membership_changes: TokenBuckets::new(
                "user_membership_changes",
                config.user_membership_changes_per_minute,
                MINUTE,
            ),
            searches: TokenBuckets::new("user_searches", config.user_searches_per_minute, MINUTE),
            conversations: TokenBuckets::new(
                "user_conversations",
                config.user_conversations_per_hour,
                Duration::from_secs(3600),
            ),
        }
    }
}

/// The part of the configuration handlers read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether guest logins are allowed.
    pub guests: bool,
    /// Lifetime of refresh tokens.
    pub refresh_ttl: Duration,
    /// The longest a session lasts, refreshed or not.
    pub refresh_family_max_age: Duration,
    /// How long a spent refresh token may be presented again without revoking its family.
    pub refresh_reuse_grace: Duration,
    /// SHA-256 of the load-test key, when the load-test mode is on.
    pub load_test_key: Option<[u8; 32]>,
    /// Header holding the client address behind a trusted proxy.
    pub client_ip_header: Option<String>,
    /// The proxies whose `client_ip_header` is believed.
    pub trusted_proxies: Vec<crate::trusted_proxy::Network>,
    /// The built browser client served at `/`, when configured.
    pub web_dir: Option<PathBuf>,
}
