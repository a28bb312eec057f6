//! Building and running a persister: connect, migrate, make sure the stream and the consumer exist, consume.

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

use crate::config::Config;
use crate::consumer::Batching;
use crate::health::Health;
use crate::source::{Opened, Source};

/// A built persister: connected and bound, not yet consuming.
pub struct Application {
    db: PgPool,
    nats: async_nats::Client,
    source: Source,
    opened: Opened,
    listener: TcpListener,
    batching: Batching,
    /// One connection per batch written at once.
    writers: Vec<crate::store::Writer>,
    /// How long history is kept (`None`: for ever).
    retention: Option<Duration>,
}

impl Application {
    /// Connects to PostgreSQL (migrating the schema) and NATS, and creates the stream and the durable consumer
    /// if they are missing.
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
        let nats = natter_service::nats_options("natter-persister")
            .connect(&config.nats_url)
            .await
            .with_context(|| format!("failed to connect to NATS at {}", config.nats_url))?;
        natter_service::nats_connected();
        let source = Source::new(async_nats::jetstream::new(nats.clone()), &config);
        let opened = source.open().await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("failed to listen on {}", config.listen))?;
        let batching = Batching {
            size: config.batch_size,
            max_wait: config.max_wait,
            ack_wait: config.ack_wait,
            writers: config.writers,
        };
        let writers = (0..config.writers.max(1))
            .map(|_| crate::store::Writer::new(&config.database_url))
            .collect::<Result<_, _>>()
            .context("--database-url / DATABASE_URL is not a PostgreSQL URL the writers can use")?;
        Ok(Self {
            db,
            nats,
            source,
            opened,
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

    /// Consumes until `shutdown` completes; then finishes the batch in hand and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self {
            db,
            nats,
            source,
            opened,
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
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut consuming = tokio::spawn(crate::consumer::run(source, opened, writers, batching, health, stop_rx));
        let partitions = tokio::spawn(maintain_partitions(db.clone(), retention));
        tokio::select! {
            _ = &mut consuming => anyhow::bail!("the consume loop ended"),
            () = shutdown => {
                tracing::info!("stopping: finishing the batch in hand");
                let _ = stop_tx.send(true);
                let _ = tokio::time::timeout(Duration::from_secs(30), &mut consuming).await;
            }
        }
        http.abort();
        partitions.abort();
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
