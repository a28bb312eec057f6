//! Building and running the application: connect, migrate, load keys, bind, serve, drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::Digest;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::keys::KeyRing;
use crate::login_limits::LoginLimits;
use crate::rate_limit::RateLimiter;
use crate::revocation::Revocations;
use crate::state::{AppState, Settings};

/// A built application: connected to the database, migrated, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    /// `--admin-listen`'s listener, if any.
    admin: Option<TcpListener>,
    state: AppState,
    max_body_bytes: usize,
    shutdown_grace: Duration,
}

impl Application {
    /// Connects to PostgreSQL, runs migrations, loads signing keys and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // First, so what start-up records (a key's age, the NATS connection) has a recorder to go to.
        crate::metrics::register();
        crate::password::set_concurrent_hashes(
            config
                .max_concurrent_hashes
                .map_or_else(crate::password::default_concurrent_hashes, usize::from),
        );
        let db = PgPoolOptions::new()
            .max_connections(config.db_max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&config.database_url)
            .await
            .context("failed to connect to PostgreSQL (check --database-url / DATABASE_URL)")?;
        migrate(&db).await?;
        let keys = KeyRing::load(
            &db,
            config.issuer.clone(),
            config.audience.clone(),
            config.access_token_ttl,
            config.key_rotation,
            config
                .key_encryption_key
                .as_deref()
                .map(crate::sealed_keys::KeySealer::new)
                .transpose()
                .map_err(anyhow::Error::msg)?
                .map(Arc::new),
        )
        .await
        .context("failed to load signing keys")?;
        let nats = match &config.nats_url {
            Some(url) => Some(
                natter_service::nats_options("natter-auth-api", natter_service::NatsRole::AuthApi, &config.nats_auth)
                    // Start even while NATS is down; the client connects in the background.
                    .retry_on_initial_connect()
                    .connect(natter_service::nats_servers(url).map_err(anyhow::Error::msg)?)
                    .await
                    .with_context(|| format!("failed to set up the NATS connection to {url}"))?,
            ),
            None => None,
        };
        if let Some(nats) = &nats {
            // Detached: it lives as long as the process, as the connection does.
            drop(natter_service::watch_quorum(nats.clone()));
        }
        let revocations = nats
            .clone()
            .map(|nats| Arc::new(Revocations::new(nats, config.stream_replicas.into())));
        if let Some(revocations) = &revocations {
            // Opened now so a broken bucket shows at start; if NATS is not reachable yet, the first logout opens it.
            match revocations.open().await {
                Ok(()) => tracing::info!("recording revoked sessions in NATS KV"),
                Err(err) => tracing::warn!(error = %err, "cannot open the revoked-sessions bucket yet"),
            }
        }
        let window = Duration::from_secs(60);
        let state = AppState {
            db: db.clone(),
            keys,
            settings: Arc::new(Settings {
                guests: config.guests,
                refresh_ttl: config.refresh_token_ttl,
                refresh_reuse_grace: config.refresh_reuse_grace,
                refresh_family_max_age: config.refresh_family_max_age,
                client_ip_header: config.client_ip_header.clone(),
                trusted_proxies: config.trusted_proxies.clone(),
                web_dir: config.web_dir.clone(),
                load_test_key: config
                    .load_test_key
                    .as_ref()
                    .map(|key| sha2::Sha256::digest(key.as_bytes()).into()),
            }),
            logins: Arc::new(LoginLimits::new(
                db.clone(),
                config.login_failures_per_user_address,
                config.login_failures_per_user,
            )),
            auth_per_address: Arc::new(RateLimiter::new(
                "auth_per_address",
                config.auth_attempts_per_address,
                window,
            )),
            budgets: Arc::new(crate::state::UserBudgets::new(&config)),
            nats,
            revocations,
            gateways: crate::fleet::GatewayTable::new(config.gateway_url_patterns.clone()),
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("failed to listen on {}", config.listen))?;
        let admin = natter_service::bind_admin(config.admin_listen).await?;
        match &config.web_dir {
            Some(dir) => tracing::info!(dir = %dir.display(), "serving the web client at /"),
            None => tracing::info!("no --web-dir: serving the API only"),
        }
        Ok(Self {
            listener,
            admin,
            state,
            max_body_bytes: config.max_body_bytes,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// The address it is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// The port it is bound to.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The shared state (for tests that need the key ring or the pool).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish for the grace period.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self {
            listener,
            admin,
            state,
            max_body_bytes,
            shutdown_grace,
        } = self;
        let (app, admin) = crate::routes::app(state.clone(), max_body_bytes, admin);

        let fleet = state.nats.clone().map(|nats| {
            let responder = tokio::spawn(crate::fleet::answer_room_access(nats.clone(), state.db.clone()));
            let mentions = tokio::spawn(crate::fleet::answer_mentions(nats.clone(), state.db.clone()));
            let members = tokio::spawn(crate::fleet::answer_members(nats.clone(), state.db.clone()));
            let follower = tokio::spawn(state.gateways.clone().follow(nats));
            (responder, mentions, members, follower)
        });
        let cleaner = {
            let logins = state.logins.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(crate::login_limits::CLEAN_EVERY);
                // Logged once per outage, not every minute of it.
                let mut failing = false;
                loop {
                    tick.tick().await;
                    match logins.clean().await {
                        Ok(_) => failing = false,
                        Err(err) if !failing => {
                            failing = true;
                            tracing::warn!(error = %err, "failed to delete old login budgets; will retry");
                        }
                        Err(_) => {}
                    }
                }
            })
        };
        let refresher = {
            let state = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(crate::keys::RELOAD_EVERY);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(err) = state.keys.refresh(&state.db).await {
                        tracing::warn!(error = ?err, "failed to refresh signing keys; keeping the current ones");
                    }
                }
            })
        };

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let graceful = {
            let mut stop_rx = stop_rx.clone();
            async move {
                let _ = stop_rx.wait_for(|stopped| *stopped).await;
            }
        };
        let serve = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(graceful);
        let mut serve = std::pin::pin!(serve.into_future());
        tokio::select! {
            result = &mut serve => result.context("the HTTP server failed")?,
            () = shutdown => {
                tracing::info!("shutting down: no new connections, waiting for in-flight requests");
                let _ = stop_tx.send(true);
                match tokio::time::timeout(shutdown_grace, &mut serve).await {
                    Ok(result) => result.context("the HTTP server failed while draining")?,
                    Err(_) => tracing::warn!(grace = ?shutdown_grace, "grace period over; dropping open requests"),
                }
            }
        }
        refresher.abort();
        cleaner.abort();
        if let Some(admin) = admin {
            admin.abort();
        }
        if let Some((responder, mentions, members, follower)) = fleet {
            responder.abort();
            mentions.abort();
            members.abort();
            follower.abort();
        }
        state.db.close().await;
        Ok(())
    }
}

/// Applies both schemas' migrations not yet applied: the history's first, since the accounts schema refers to it.
/// A role that may not change the schema gets an error saying what to do.
pub async fn migrate(db: &sqlx::PgPool) -> anyhow::Result<()> {
    const OWNER: &str = "if this service connects as a role of least privilege, run natter-auth-api --migrate-only \
                         with the database owner's DATABASE_URL first (deploy/postgres/roles.sql)";
    natter_history::migrate(db)
        .await
        .with_context(|| format!("failed to migrate the history schema ({OWNER})"))?;
    natter_history::run(sqlx::migrate!("./migrations"), db)
        .await
        .with_context(|| format!("failed to migrate the accounts schema ({OWNER})"))
}

/// `natter-auth-api --migrate-only`: applies the migrations with the configured database URL and exits (0 when
/// the schema is current, 1 on a failure, 64 for bad settings).
pub fn migrate_only() -> std::process::ExitCode {
    let config = match natter_service::config::<Config>("natter-auth-api") {
        Ok(config) => config,
        Err(code) => return code,
    };
    natter_service::init_logging("info,sqlx=warn");
    let done = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            runtime.block_on(async {
                let db = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(&config.database_url)
                    .await
                    .context("failed to connect to PostgreSQL (check --database-url / DATABASE_URL)")?;
                migrate(&db).await
            })
        });
    match done {
        Ok(()) => {
            tracing::info!("the schema is current");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "migration failed");
            std::process::ExitCode::FAILURE
        }
    }
}

impl natter_service::Service for Application {
    type Config = Config;
    const NAME: &'static str = "natter-auth-api";
    const LOG_FILTER: &'static str = "info,sqlx=warn";

    async fn build(config: Config) -> anyhow::Result<Self> {
        Application::build(config).await
    }

    fn local_addr(&self) -> SocketAddr {
        Application::local_addr(self)
    }

    async fn run(self, shutdown: natter_service::Shutdown) -> anyhow::Result<()> {
        self.run_until_stopped(shutdown).await
    }
}
