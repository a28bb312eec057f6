//! Building and running a persister: connect, migrate, make sure the stream and the lease bucket exist, then read
//! the partitions it holds and write them.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;

use crate::backlog::Backlog;
use crate::config::Config;
use crate::consumer::{Batching, Writers};
use crate::health::Health;
use crate::leases::Leases;
use crate::ownership::Ownership;
use crate::source::Source;

/// A built persister: connected and bound, not yet consuming.
pub struct Application {
    db: PgPool,
    nats: async_nats::Client,
    source: Source,
    /// This persister's partition leases, none held yet.
    leases: Leases,
    listener: TcpListener,
    batching: Batching,
    /// One connection per batch written at once.
    writers: Vec<natter_history::write::Writer>,
    /// How long history is kept (`None`: for ever).
    retention: Option<Duration>,
}

impl Application {
    /// Connects to PostgreSQL (migrating the schema) and NATS, and creates the stream and the lease bucket if
    /// they are missing. The partitions' consumers are opened as their leases are taken.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // First, so what start-up records (a key's age, the NATS connection) has a recorder to go to.
        crate::metrics::register();
        let db = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&config.database_url)
            .await
            .context("failed to connect to PostgreSQL (check --database-url / DATABASE_URL)")?;
        natter_history::migrate(&db)
            .await
            .context("failed to migrate the history schema")?;
        let nats = natter_service::nats_options(
            "natter-persister",
            natter_service::NatsRole::Persister,
            &config.nats_auth,
        )
        .connect(natter_service::nats_servers(&config.nats_url).map_err(anyhow::Error::msg)?)
        .await
        .with_context(|| format!("failed to connect to NATS at {}", config.nats_url))?;
        natter_service::nats_connected();
        // Detached: it lives as long as the process, as the connection does.
        drop(natter_service::watch_quorum(nats.clone()));
        let js = async_nats::jetstream::new(nats.clone());
        let source = Source::new(js.clone(), &config);
        source.stream().await?;
        let id = config.persister_id();
        let leases = Leases::open(&js, &id, config.stream.replicas.into()).await?;
        tracing::info!(id, "persister ready to take partitions");
        let listener = TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("failed to listen on {} (--admin-listen)", config.admin_listen))?;
        let batching = Batching {
            size: config.batch_size,
            max_wait: config.max_wait,
            ack_wait: config.ack_wait,
            writers: config.writers,
        };
        let writers = (0..config.writers.max(1))
            .map(|_| natter_history::write::Writer::new(&config.database_url))
            .collect::<Result<_, _>>()
            .context("--database-url / DATABASE_URL is not a PostgreSQL URL the writers can use")?;
        Ok(Self {
            db,
            nats,
            source,
            leases,
            listener,
            batching,
            writers,
            retention: config.history_retention,
        })
    }

    /// Where the health and metrics endpoints are served.
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Reads the partitions it holds until `shutdown` completes; then hands every one over (what it read is written
    /// and acked, then the lease released) within 30 s, and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self {
            db,
            nats,
            source,
            leases,
            listener,
            batching,
            writers,
            retention,
        } = self;
        let health = std::sync::Arc::new(Health::default());
        let app = Router::new()
            .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(natter_service::metrics_page))
            .with_state(Ready {
                db: db.clone(),
                nats: nats.clone(),
                health: health.clone(),
            });
        let http = tokio::spawn(async move { axum::serve(listener, app).await });
        crate::notice::install(nats.clone());
        let asks = tokio::spawn(crate::notice::answer(nats.clone(), db.clone()));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let writers = Writers::start(writers, health, async_nats::jetstream::new(nats.clone()));
        let ownership = Ownership::new(
            leases,
            source.clone(),
            batching,
            writers.sender(),
            std::sync::Arc::new(Backlog::default()),
        );
        let mut owning = tokio::spawn(ownership.run(stop_rx));
        let stream_report = tokio::spawn(crate::source::report(source));
        let partitions = tokio::spawn(maintain_partitions(db.clone(), retention));
        tokio::select! {
            _ = &mut owning => anyhow::bail!("the partition ownership loop ended"),
            () = shutdown => {
                tracing::info!("stopping: handing the partitions over");
                let _ = stop_tx.send(true);
                let finished = tokio::time::timeout(Duration::from_secs(30), async {
                    let _ = (&mut owning).await;
                    writers.finish().await;
                })
                .await;
                if finished.is_err() {
                    tracing::warn!("what was held was not all written within 30 s; it comes back to the next holder");
                }
            }
        }
        http.abort();
        stream_report.abort();
        partitions.abort();
        asks.abort();
        db.close().await;
        Ok(())
    }
}

/// Keeps the days ahead's history partitions made and, with a retention, drops those older than it: at start and
/// every [`natter_history::partitions::EVERY`].
async fn maintain_partitions(db: PgPool, retention: Option<Duration>) {
    let mut tick = tokio::time::interval(natter_history::partitions::EVERY);
    loop {
        tick.tick().await;
        match natter_history::partitions::maintain(&db, chrono::Utc::now(), retention).await {
            Ok(done) => {
                for partition in &done.created {
                    tracing::info!(partition = %partition, "history partition created");
                }
                for partition in &done.dropped {
                    tracing::info!(partition = %partition, "history partition dropped (older than the retention)");
                }
                ::metrics::counter!(crate::metrics::PARTITIONS_DROPPED).increment(done.dropped.len() as u64);
            }
            Err(err) => tracing::warn!(error = %err, "maintaining the history partitions failed; retrying in an hour"),
        }
    }
}

/// What `/readyz` looks at.
#[derive(Clone)]
struct Ready {
    db: PgPool,
    nats: async_nats::Client,
    health: std::sync::Arc<Health>,
}

/// 200 while NATS answers a round trip within 1 s (a frozen server keeps the connection looking up), PostgreSQL
/// answers within 2 s and no writer holds a batch it failed to write;
/// else 503, with the JSON saying which. The writers' own state covers what a lone `SELECT 1` can miss (a
/// database that answers queries but refuses the writes), and clears by itself once the held batches are written.
async fn readyz(State(ready): State<Ready>) -> impl IntoResponse {
    let db = tokio::time::timeout(Duration::from_secs(2), sqlx::query("SELECT 1").execute(&ready.db));
    let (nats_ok, db_ok) = tokio::join!(natter_service::nats_answers(&ready.nats, Duration::from_secs(1)), db);
    let db_ok = db_ok.is_ok_and(|r| r.is_ok());
    let writing = !ready.health.failing();
    let status = if nats_ok && db_ok && writing {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"nats": nats_ok, "database": db_ok, "writing": writing})),
    )
}

impl natter_service::Service for Application {
    type Config = Config;
    const NAME: &'static str = "natter-persister";
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
