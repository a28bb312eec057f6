//! State shared by every request handler.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::keys::KeyRing;
use crate::rate_limit::RateLimiter;

/// Everything a handler may need. Cheap to clone: all fields are handles.
#[derive(Clone)]
pub struct AppState {
    /// The database pool; closed when the application stops.
    pub db: PgPool,
    /// Signing and verification keys.
    pub keys: KeyRing,
    /// Settings handlers read.
    pub settings: Arc<Settings>,
    /// Failed-login budgets per user and per (user, address), and the addresses users logged in from.
    pub logins: Arc<crate::login_limits::LoginLimits>,
    /// Login, register and guest attempts per client address.
    pub auth_per_address: Arc<RateLimiter>,
    /// NATS, when configured.
    pub nats: Option<async_nats::Client>,
    /// Where revoked sessions are recorded for the gateways: with NATS only (without it there are no gateways).
    pub revocations: Option<Arc<crate::revocation::Revocations>>,
    /// Gateways heard from on NATS.
    pub gateways: crate::fleet::GatewayTable,
}

/// The part of the configuration handlers read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether guest logins are allowed.
    pub guests: bool,
    /// Lifetime of refresh tokens.
    pub refresh_ttl: Duration,
    /// How long a spent refresh token may be presented again without revoking its family.
    pub refresh_reuse_grace: Duration,
    /// SHA-256 of the load-test key, when the load-test mode is on.
    pub load_test_key: Option<[u8; 32]>,
    /// Header holding the client address behind a trusted proxy.
    pub client_ip_header: Option<String>,
    /// The built browser client served at `/`, when configured.
    pub web_dir: Option<PathBuf>,
}
