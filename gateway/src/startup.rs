//! Building and running a gateway: connect to NATS, set up the stream, fetch the token keys, bind, serve, drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use rand::Rng;
use serde_json::json;
use tokio::net::TcpListener;

use crate::auth::TokenVerifier;
use crate::config::Config;
use crate::epoch::Epoch;
use crate::hub::Hub;
use crate::load::Load;
use crate::state::Gateway;

/// A built gateway: connected, bound, not yet serving.
pub struct Application {
    listener: TcpListener,
    /// `--admin-listen`'s listener, if any.
    admin: Option<TcpListener>,
    gw: Gateway,
    url: String,
    room_events: async_nats::Subscriber,
    user_events: async_nats::Subscriber,
    revocations: async_nats::jetstream::kv::Store,
}

impl Application {
    /// Connects to NATS, makes sure the chat stream exists, fetches the JWKS and binds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // First, so what start-up records (a key's age, the NATS connection) has a recorder to go to.
        crate::metrics::register();
        let id = config.gateway_id();
        let nats = natter_service::nats_options(
            format!("natter-gateway {id}"),
            natter_service::NatsRole::Gateway,
            &config.nats_auth,
        )
        .connect(natter_service::nats_servers(&config.nats_url).map_err(anyhow::Error::msg)?)
        .await
        .with_context(|| format!("failed to connect to NATS at {}", config.nats_url))?;
        natter_service::nats_connected();
        // Detached: it lives as long as the process, as the connection does.
        drop(natter_service::watch_quorum(nats.clone()));
        let js = async_nats::jetstream::new(nats.clone());
        let stream = natter_stream::ensure(&js, config.stream.limits()).await?;
        let verifier = TokenVerifier::fetch(
            config.jwks_url.clone(),
            config.issuer.clone(),
            config.audience.clone(),
            Duration::from_secs(30),
        )
        .await?;
        let listener = bind(config.listen, config.listen_backlog)
            .with_context(|| format!("failed to listen on {}", config.listen))?;
        let admin = natter_service::bind_admin(config.admin_listen).await?;
        let addr = listener.local_addr()?;
        let url = config.public_url.clone().unwrap_or_else(|| format!("ws://{addr}/ws"));
        let epoch = Arc::new(Epoch::new(js.clone(), stream.clone(), config.stream.limits()));
        let room_events = crate::lifecycle::subscribe_rooms(&nats).await?;
        let user_events = crate::lifecycle::subscribe_users(&nats).await?;
        let revocations = natter_stream::sessions::bucket(&js, config.stream.replicas.into()).await?;
        let hub = Hub::new(
            id.clone(),
            nats,
            stream,
            epoch,
            Arc::new(Load::new(config.shed_lag)),
            config.access_recheck_interval,
        );
        let gw = Gateway::new(id, config, verifier, hub, js);
        Ok(Self {
            listener,
            admin,
            gw,
            url,
            room_events,
            user_events,
            revocations,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has a local address.
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// This gateway's id.
    pub fn id(&self) -> &str {
        &self.gw.id
    }

    /// The URL clients reach it at.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves until `shutdown` completes, then drains: stops accepting, closes every client with 1012 spread
    /// over the jitter window, and returns once all are gone or the grace period is over.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self {
            listener,
            admin,
            gw,
            url,
            room_events,
            user_events,
            revocations,
        } = self;
        let clients = Router::new()
            .route("/ws", get(crate::upgrade::upgrade))
            .with_state(gw.clone());
        let health = Router::new()
            .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(natter_service::metrics_page))
            .with_state(gw.clone());
        let (app, admin) = natter_service::serve_admin(clients, health, admin);
        let announcer = tokio::spawn(crate::fleet::announce(gw.clone(), url.clone()));
        let watcher = tokio::spawn(crate::fleet::watch(gw.clone()));
        let census = [
            tokio::spawn(crate::census::publish(gw.clone())),
            tokio::spawn(crate::census::follow(gw.clone())),
        ];
        let sweeper = tokio::spawn(crate::sweep::run(gw.clone()));
        let epoch_watch = tokio::spawn(gw.hub.epoch().clone().watch());
        let persisted = gw.persisted.clone().map(|persisted| tokio::spawn(persisted.run()));
        let lifecycle = [
            tokio::spawn(crate::lifecycle::follow_rooms(gw.clone(), room_events)),
            tokio::spawn(crate::lifecycle::follow_users(gw.clone(), user_events)),
            tokio::spawn(crate::lifecycle::follow_revocations(gw.clone(), revocations)),
            tokio::spawn(crate::lifecycle::catch_up_after_missed_events(gw.clone())),
        ];

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let accepting = Accepting {
            send_buffer: gw.config.socket_send_buffer,
            header_timeout: gw.config.header_timeout,
            proxy_protocol_from: gw.config.proxy_protocol_from.clone(),
            pending: crate::pending::PendingLimits::new(
                gw.config.max_pending_connections,
                gw.config.max_pending_per_address,
                gw.config.header_timeout_under_pressure,
            ),
        };
        let mut serve = std::pin::pin!(serve_http(listener, app, accepting, stop_rx));
        tokio::select! {
            () = &mut serve => anyhow::bail!("the HTTP server stopped"),
            () = shutdown => {}
        }
        // HTTP is still served while the clients go: `/readyz` answers 503, `/metrics` shows the drain, and
        // upgrades are refused as `draining`.
        let drained = drain(&gw, &url);
        tokio::pin!(drained);
        tokio::select! {
            () = &mut serve => {
                tracing::error!("the HTTP server stopped while draining");
                drained.await;
            }
            () = &mut drained => {}
        }
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut serve).await;
        if let Some(admin) = admin {
            admin.abort();
        }
        announcer.abort();
        watcher.abort();
        for task in census {
            task.abort();
        }
        sweeper.abort();
        epoch_watch.abort();
        if let Some(persisted) = persisted {
            persisted.abort();
        }
        for task in lifecycle {
            task.abort();
        }
        // NATS may be gone already (a whole stack stopping at once): do not wait for it.
        let _ = tokio::time::timeout(Duration::from_secs(1), gw.hub.nats().flush()).await;
        Ok(())
    }
}

/// Closes every client with 1012, each at a random moment within the jitter window so they do not all reconnect
/// at once, and waits for them to go (at most the grace period).
async fn drain(gw: &Gateway, url: &str) {
    gw.draining.store(true, Ordering::Relaxed);
    ::metrics::gauge!(crate::metrics::DRAINING).set(1.0);
    // Tell the fleet at once, so the auth API stops assigning this gateway.
    let _ = tokio::time::timeout(Duration::from_secs(1), crate::fleet::beat(gw, url)).await;
    let peers = gw.peers();
    tracing::info!(connections = peers.len(), "draining");
    let jitter = gw.config.drain_jitter;
    for peer in peers {
        let delay = if jitter.is_zero() {
            Duration::ZERO
        } else {
            rand::thread_rng().gen_range(Duration::ZERO..jitter)
        };
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            peer.close(natter_proto::close::RESTART, "gateway restarting; reconnect");
        });
    }
    let deadline = Instant::now() + gw.config.drain_grace;
    while gw.open_connections() > 0 {
        if Instant::now() >= deadline {
            tracing::warn!(
                left = gw.open_connections(),
                "drain grace period over; exiting with clients connected"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!("drained");
    // Scraped at least once more while draining, so the exit is known for a drain's.
    tokio::time::sleep(gw.config.drain_linger).await;
}

/// How new connections are taken.
struct Accepting {
    /// Other than 0: each socket's kernel send buffer, in bytes.
    send_buffer: usize,
    /// How long a connection has to send its request head.
    header_timeout: Duration,
    /// Load balancers whose connections begin with a PROXY header naming the client.
    proxy_protocol_from: Vec<natter_service::net::Network>,
    /// Caps on connections not yet upgraded.
    pending: Arc<crate::pending::PendingLimits>,
}

/// Accepts connections and serves each with HTTP/1.1 and upgrades, until `stop` turns true. Each holds a pending
/// place until it upgrades or ends, and is closed if the pool sheds it; one over its address's cap (or arriving
/// when every pending connection is busy) is answered 503 and closed.
///
/// Not `axum::serve`: its protocol auto-detection wraps every socket in a private rewind type, so an upgraded
/// WebSocket could not be unwrapped to the bare TCP stream, and each idle connection would keep the HTTP read
/// buffer alive (see `upgrade::upgrade`).
async fn serve_http(
    listener: TcpListener,
    app: Router,
    accepting: Accepting,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let accepting = Arc::new(accepting);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => Some(accepted),
            _ = stop.wait_for(|stopped| *stopped) => None,
        };
        let Some(accepted) = accepted else { return };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, say: back off instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if accepting.proxy_protocol_from.iter().any(|lb| lb.contains(peer.ip())) {
            // The balancer says who the client is before the request; read apart, so that the accept loop never
            // waits on one socket.
            let (app, accepting) = (app.clone(), Arc::clone(&accepting));
            tokio::spawn(async move {
                let mut tcp = tcp;
                let header =
                    tokio::time::timeout(accepting.header_timeout, crate::proxy_protocol::read_header(&mut tcp));
                let client = match header.await {
                    Ok(Ok(client)) => client.unwrap_or(peer),
                    Ok(Err(refused)) => {
                        ::metrics::counter!(crate::metrics::PROXY_HEADER_REFUSED, "reason" => refused.reason())
                            .increment(1);
                        tracing::debug!(%peer, reason = refused.reason(), "no valid PROXY header from a load balancer");
                        return;
                    }
                    Err(_) => {
                        ::metrics::counter!(crate::metrics::PROXY_HEADER_REFUSED, "reason" => "timeout").increment(1);
                        return;
                    }
                };
                admit_and_serve(tcp, client, &app, &accepting);
            });
            continue;
        }
        admit_and_serve(tcp, peer, &app, &accepting);
    }
}

/// Takes an accepted connection from `client` (its peer, or the client a load balancer named) into the pending
/// pool and serves it with HTTP/1.1 and upgrades on a task of its own; one over its address's cap (or arriving when
/// every pending connection is busy) is answered 503 and closed.
fn admit_and_serve(tcp: tokio::net::TcpStream, client: SocketAddr, app: &Router, accepting: &Accepting) {
    use tower::ServiceExt;
    let pending = match accepting.pending.admit(client.ip()) {
        Ok(pending) => pending,
        Err(full) => {
            ::metrics::counter!(crate::metrics::PENDING_REFUSED, "scope" => full.scope()).increment(1);
            // Best effort, without waiting: the socket is closed either way.
            let _ = tcp.try_write(crate::pending::FULL_RESPONSE);
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    if accepting.send_buffer > 0 {
        set_send_buffer(&tcp, accepting.send_buffer);
    }
    let header_timeout = accepting.header_timeout;
    let app = app.clone();
    let pending = Arc::new(pending);
    let in_service = Arc::clone(&pending);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(axum::extract::ConnectInfo(client));
        // Answering a request: not to be shed meanwhile.
        let busy = in_service.busy();
        let answer = app.clone().oneshot(req.map(axum::body::Body::new));
        async move {
            let response = answer.await;
            drop(busy);
            response
        }
    });
    tokio::spawn(async move {
        let conn = hyper::server::conn::http1::Builder::new()
            // A socket that never finishes its request headers is dropped, not kept forever.
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
            .with_upgrades();
        tokio::select! {
            ended = conn => {
                if let Err(err) = ended {
                    tracing::debug!(%client, error = %err, "HTTP connection ended with an error");
                }
            }
            // Shed by the pool to let another in: the socket closes as the connection is dropped.
            () = pending.shed() => {}
        }
        // Upgraded (the WebSocket now counts in the connection limits) or gone.
        drop(pending);
    });
}

/// Fixes a client socket's kernel send buffer, warning once if the kernel holds it below the size asked for
/// (Linux caps SO_SNDBUF at net.core.wmem_max, and reports twice what it was given).
fn set_send_buffer(tcp: &tokio::net::TcpStream, bytes: usize) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let socket = socket2::SockRef::from(tcp);
    let given = socket
        .set_send_buffer_size(bytes)
        .and_then(|()| socket.send_buffer_size());
    match given {
        Ok(given) if given < bytes => WARNED.call_once(|| {
            tracing::warn!(
                asked = bytes,
                given,
                "the kernel holds --socket-send-buffer below the size asked for; raise net.core.wmem_max"
            );
        }),
        Ok(_) => {}
        Err(err) => WARNED.call_once(|| tracing::warn!(error = %err, "cannot set a socket's send buffer")),
    }
}

/// Binds with SO_REUSEPORT (several gateway processes may share the port) and a large backlog.
fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    TcpListener::from_std(socket.into())
}

/// How long NATS has to answer a readiness check.
const READY_WITHIN: Duration = Duration::from_secs(1);

/// Ready while NATS answers (not just while the connection looks up: a frozen server keeps it open), the revoked
/// sessions are loaded (until then a revoked token could pass), and the gateway is not draining.
async fn readyz(State(gw): State<Gateway>) -> impl IntoResponse {
    let draining = gw.draining.load(Ordering::Relaxed);
    // A draining gateway answers at once: it is leaving whatever NATS says.
    let nats = if draining {
        matches!(
            gw.hub.nats().connection_state(),
            async_nats::connection::State::Connected
        )
    } else {
        natter_service::nats_answers(gw.hub.nats(), READY_WITHIN).await
    };
    let revocations = gw.revoked.loaded();
    let status = if nats && revocations && !draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({
            "nats": nats,
            "revocations_loaded": revocations,
            "draining": draining,
            "connections": gw.open_connections(),
        })),
    )
}

impl natter_service::Service for Application {
    type Config = Config;
    const NAME: &'static str = "natter-gateway";
    const LOG_FILTER: &'static str = "info";

    async fn build(config: Config) -> anyhow::Result<Self> {
        Application::build(config).await
    }

    fn runtime_threads(config: &Config) -> Option<usize> {
        (config.threads > 0).then_some(config.threads)
    }

    fn local_addr(&self) -> SocketAddr {
        Application::local_addr(self)
    }

    async fn run(self, shutdown: natter_service::Shutdown) -> anyhow::Result<()> {
        self.run_until_stopped(shutdown).await
    }
}
