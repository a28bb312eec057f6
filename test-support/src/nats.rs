//! A real `nats-server` with JetStream for one test, or a JetStream cluster of several ([`NatsCluster`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{Recipe, Service, port_open};

/// Ready once the server wrote its ports file into its own directory (it does so after it listens) and the
/// port answers.
fn is_ready(port: u16, dir: &Path) -> bool {
    let wrote_ports = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".ports"))
        })
        .unwrap_or(false);
    wrote_ports && port_open(port)
}

/// A running `nats-server` with JetStream enabled, storing in its own temporary directory.
///
/// Dropping it stops the server and removes the directory.
pub struct NatsServer {
    service: Service,
}

impl NatsServer {
    /// Starts a server on a free port. Panics if `nats-server` cannot be started: a test cannot go on without it.
    pub fn start() -> Self {
        Self::start_in(temp_dir())
    }

    /// Starts a server as deployments run it: a client without credentials is refused (no operator's user for
    /// anonymous clients, as [`NatsServer::start`] has for tests' convenience).
    pub fn start_as_deployed() -> Self {
        let dir = temp_dir();
        std::fs::write(dir.path().join(AS_DEPLOYED), "").expect("mark the server as deployed");
        Self::start_in(dir)
    }

    /// Starts a server on a free port storing in `dir`, with the cluster node's configuration file there if one was
    /// written (its name and routes; the client port is still given on the command line).
    fn start_in(dir: tempfile::TempDir) -> Self {
        let recipe = Recipe {
            name: "nats-server",
            command,
            ready: is_ready,
            crash_signal: "KILL",
            stop_signal: "TERM",
            log_file: "nats.log",
            ready_within: Duration::from_secs(15),
        };
        Self {
            service: Service::start(recipe, dir),
        }
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        self.service.log()
    }

    /// The client URL, `nats://127.0.0.1:PORT`. A client that connects without credentials acts as the operator's
    /// user (every subject allowed): what a test's own clients do. Services are given their own users
    /// ([`nats_credentials`]), which deploy/nats/auth.conf allows only what their role needs.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.service.port())
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.service.port()
    }

    /// The running server's process id, `None` while it is stopped.
    pub fn pid(&self) -> Option<u32> {
        self.service.pid()
    }

    /// Kills the server abruptly (SIGKILL), as a crash would. JetStream data stays for [`NatsServer::restart`].
    pub fn kill(&mut self) {
        self.service.crash();
    }

    /// Freezes the server (SIGSTOP): clients stay connected and get no answers, as with a hung server.
    pub fn pause(&mut self) {
        self.service.pause();
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn resume(&mut self) {
        self.service.resume();
    }

    /// Starts the server again on the same port with the same store. Panics if it does not come up.
    pub fn restart(&mut self) {
        self.service.restart();
    }
}

/// Waits until JetStream answers an account-info request through `node` (for a cluster node: its meta group has
/// a leader and the node is part of it). Panics after `within`, with the node's log.
pub(crate) async fn wait_for_jetstream(node: &NatsServer, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    let mut last;
    loop {
        match async_nats::connect(node.url()).await {
            // The account-info request by hand: async-nats's own parse of the answer fails on a 2.9 cluster.
            Ok(client) => match client.request("$JS.API.INFO", "".into()).await {
                Ok(answer) => {
                    let text = String::from_utf8_lossy(&answer.payload);
                    if !text.contains("\"error\"") {
                        return;
                    }
                    last = text.into_owned();
                }
                Err(err) => last = err.to_string(),
            },
            Err(err) => last = err.to_string(),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "JetStream did not answer through the node on port {} within {within:?} ({last}); its log:\n{}",
            node.port(),
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// deploy/nats/auth.conf, which every server a test starts includes: the services' users and what each may do.
const AUTH_CONF: &str = include_str!("../../deploy/nats/auth.conf");

/// Present in a server's directory: started by [`NatsServer::start_as_deployed`].
const AS_DEPLOYED: &str = "as-deployed";

/// The operator's NATS user, allowed every subject: what tests connect as.
pub const NATS_ADMIN_USER: &str = "natter-admin";

/// The password of NATS user `user` (one of deploy/nats/auth.conf's) on the servers tests start: fixed, as these
/// servers listen on loopback only for the length of a test.
pub fn nats_password(user: &str) -> String {
    format!("test-password-of-{user}")
}

/// The flags that make a service connect as NATS user `user`: `--nats-user` and `--nats-password`.
pub fn nats_credentials(user: &str) -> Vec<String> {
    vec![
        "--nats-user".to_owned(),
        user.to_owned(),
        "--nats-password".to_owned(),
        nats_password(user),
    ]
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("natter-nats-")
        .tempdir()
        .expect("create a temp dir for nats")
}

/// The configuration file a cluster node is started with, in its directory.
const CLUSTER_CONF: &str = "cluster.conf";

/// A JetStream cluster of real `nats-server`s on loopback, each with its own client port, route port and store,
/// routed to every other: the shape docker-compose.yml and deploy/k8s run, so that a node can be killed,
/// restarted, frozen or cut off from the others ([`crate::stack::cut::Cut::node_from_cluster`]) while the rest
/// keep a quorum. Dropping it stops every node.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
    route_ports: Vec<u16>,
}

impl NatsCluster {
    /// Starts `size` nodes (named `n1`, `n2`, ...) and waits until JetStream answers through each, so a stream
    /// with `size` replicas can be made at once. Panics when the cluster does not form.
    pub async fn start(size: usize) -> Self {
        let route_ports: Vec<u16> = (0..size).map(|_| crate::free_port()).collect();
        let mut nodes = Vec::with_capacity(size);
        for (i, own) in route_ports.iter().enumerate() {
            let routes = route_ports
                .iter()
                .filter(|p| *p != own)
                .map(|p| format!("nats-route://127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(", ");
            let dir = temp_dir();
            let conf = format!(
                "server_name: n{n}\ncluster {{\n  name: natter-test\n  listen: 127.0.0.1:{own}\n  routes: [{routes}]\n}}\n",
                n = i + 1
            );
            std::fs::write(dir.path().join(CLUSTER_CONF), conf).expect("write a cluster node's configuration");
            nodes.push(NatsServer::start_in(dir));
        }
        let cluster = Self { nodes, route_ports };
        for i in 0..size {
            cluster.wait_for_jetstream(i, Duration::from_secs(60)).await;
        }
        cluster.wait_for_placement(Duration::from_secs(60)).await;
        cluster
    }

    /// Waits until a stream with a replica on every node can be made: JetStream answering through each node is not
    /// enough, as the meta leader may not know every peer yet ("no suitable peers for placement"), and a service
    /// that makes the chat stream at start would fail. Makes and deletes a small probe stream.
    async fn wait_for_placement(&self, within: Duration) {
        use async_nats::jetstream::stream;
        let deadline = std::time::Instant::now() + within;
        let client = async_nats::connect(self.nodes[0].url())
            .await
            .expect("connect to the first node");
        let js = async_nats::jetstream::new(client);
        loop {
            let probe = stream::Config {
                name: "NATTER_TEST_PLACEMENT".into(),
                subjects: vec!["natter.test.placement".into()],
                num_replicas: self.nodes.len(),
                storage: stream::StorageType::Memory,
                ..Default::default()
            };
            let last = match js.create_stream(probe).await {
                Ok(_) => match js.delete_stream("NATTER_TEST_PLACEMENT").await {
                    Ok(_) => return,
                    Err(err) => err.to_string(),
                },
                Err(err) => err.to_string(),
            };
            assert!(
                std::time::Instant::now() < deadline,
                "the cluster could not place a stream on all {} nodes within {within:?}: {last}",
                self.nodes.len()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until JetStream answers an account-info request through node `i` (its meta group has a leader and
    /// the node is part of it). Panics after `within`, with the node's log.
    pub async fn wait_for_jetstream(&self, i: usize, within: Duration) {
        wait_for_jetstream(&self.nodes[i], within).await;
    }

    /// How many nodes it has.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Node `i` (from 0; its server name is `n{i+1}`).
    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// Node `i`, to kill, restart, freeze or resume.
    pub fn node_mut(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// Node `i`'s route port, where the other nodes reach it.
    pub fn route_port(&self, i: usize) -> u16 {
        self.route_ports[i]
    }

    /// Every route port.
    pub fn route_ports(&self) -> &[u16] {
        &self.route_ports
    }

    /// Every node's client URL, separated by commas: what the services are given as `--nats-url` (with their own
    /// users) and what a test's own clients connect to.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    /// The node index of JetStream stream `stream`'s leader, asked through any node that answers.
    pub async fn leader_of(&self, stream: &str) -> Option<usize> {
        leader_of(&self.urls(), stream).await
    }

    /// The nodes and their route ports, for a holder that keeps them apart (the first node is a stack's `nats`).
    pub fn into_parts(self) -> (Vec<NatsServer>, Vec<u16>) {
        (self.nodes, self.route_ports)
    }
}

/// The index of the cluster node (named `n1`, `n2`, ... as [`NatsCluster`] names them) leading JetStream stream
/// `stream`, asked through any of `urls` (comma-separated) that answers.
pub(crate) async fn leader_of(urls: &str, stream: &str) -> Option<usize> {
    let servers: Vec<async_nats::ServerAddr> = urls.split(',').filter_map(|u| u.parse().ok()).collect();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(servers)
        .await
        .ok()?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(stream).await.ok()?;
    let info = stream.info().await.ok()?;
    let leader = info.cluster.as_ref()?.leader.clone()?;
    leader.strip_prefix('n')?.parse::<usize>().ok()?.checked_sub(1)
}

fn command(port: u16, dir: &Path) -> Result<Command, String> {
    // A ports file left by a killed predecessor would make the new server look ready before it is.
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".ports") {
            std::fs::remove_file(entry.path()).map_err(|e| format!("cannot remove a stale ports file: {e}"))?;
        }
    }
    // A cluster node may run another build than a lone server (see `cluster_binary`).
    let cluster = dir.join(CLUSTER_CONF).exists();
    let mut cmd = Command::new(if cluster { cluster_binary() } else { binary() });
    std::fs::write(dir.join("auth.conf"), AUTH_CONF).map_err(|e| format!("cannot write auth.conf: {e}"))?;
    let mut conf = String::from("include \"auth.conf\"\n");
    if !dir.join(AS_DEPLOYED).exists() {
        conf.push_str(&format!("no_auth_user: {NATS_ADMIN_USER}\n"));
    }
    if let Ok(cluster) = std::fs::read_to_string(dir.join(CLUSTER_CONF)) {
        conf.push_str(&cluster);
    }
    std::fs::write(dir.join("nats.conf"), conf).map_err(|e| format!("cannot write nats.conf: {e}"))?;
    cmd.arg("-c").arg(dir.join("nats.conf"));
    for (var, user) in [
        ("NATTER_NATS_GATEWAY_PASSWORD", "natter-gateway"),
        ("NATTER_NATS_AUTH_API_PASSWORD", "natter-auth-api"),
        ("NATTER_NATS_PERSISTER_PASSWORD", "natter-persister"),
        ("NATTER_NATS_ADMIN_PASSWORD", NATS_ADMIN_USER),
    ] {
        cmd.env(var, nats_password(user));
    }
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("store"))
        .arg("-l")
        .arg(dir.join("nats.log"))
        .arg("--ports_file_dir")
        .arg(dir);
    Ok(cmd)
}

/// The `nats-server` binary of a cluster's nodes: `$NATS_CLUSTER_SERVER_BIN`, else the lone server's. nats-server
/// 2.9.10 (Debian 12's) can leave a stream's replicas holding different messages at the same sequence after a
/// partition heals (fixed in 2.9.21; docs/faults.md, C2), so `./natter test` gives the cluster faults a newer one.
fn cluster_binary() -> PathBuf {
    std::env::var_os("NATS_CLUSTER_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(binary)
}

/// The `nats-server` binary: `$NATS_SERVER_BIN`, or the first found in the usual places, or `PATH`.
fn binary() -> PathBuf {
    std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            [
                "/usr/sbin/nats-server",
                "/usr/bin/nats-server",
                "/usr/local/bin/nats-server",
            ]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("nats-server"))
        })
}
