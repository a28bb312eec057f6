//! A whole Natter stack for a test, every piece a real process: `nats-server` with JetStream, PostgreSQL (a cluster
//! of the stack's own, or a fresh database on the test process's shared one), the auth API, N gateways and M
//! persisters, each service the workspace's own binary on a free port.
//!
//! ```no_run
//! # async fn example() {
//! use natter_test_support::stack::Stack;
//! let mut stack = Stack::builder().gateways(2).persisters(1).load_test_key("a-key-of-16-chars+").start().await;
//! stack.gateway(0).kill(); // SIGKILL, as a crash
//! stack.nats.kill(); // and NATS too
//! stack.nats.restart(); // same port, same store
//! stack.gateway(0).restart().await; // same port, same flags
//! # }
//! ```
//!
//! Each process can be killed (SIGKILL), stopped (SIGTERM), frozen (SIGSTOP) and started again on its port;
//! [`Stack::supervise`] starts a supervisor that restarts whatever a test killed, as an orchestrator would. [`cut::Cut`] cuts a process off from
//! NATS on the network. Dropping the stack kills every process it started.
//!
//! The service binaries are found next to the test executable (`target/<profile>/`), or in `$NATTER_BIN_DIR`:
//! `cargo nextest run --workspace` (and `./natter test`) builds them; a test of one crate needs them built first
//! (`cargo build --bins`).

pub mod cut;
mod program;
mod supervisor;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use program::{Exit, Program};
use supervisor::{Members, Supervisor};

use crate::{NatsCluster, NatsServer, PgServer};

/// The gateway binary's name.
pub const GATEWAY_BIN: &str = "natter-gateway";
/// The persister binary's name.
pub const PERSISTER_BIN: &str = "natter-persister";
/// The auth API binary's name.
pub const AUTH_API_BIN: &str = "natter-auth-api";

/// What a stack is made of; [`StackBuilder::start`] brings it up.
#[derive(Debug, Clone)]
pub struct StackBuilder {
    gateways: usize,
    persisters: usize,
    gateway_args: Vec<String>,
    persister_args: Vec<String>,
    api_args: Vec<String>,
    load_test_key: Option<String>,
    own_postgres: bool,
    nats_nodes: usize,
    apis: usize,
}

impl Default for StackBuilder {
    fn default() -> Self {
        Self {
            gateways: 1,
            persisters: 0,
            gateway_args: Vec::new(),
            persister_args: Vec::new(),
            api_args: Vec::new(),
            load_test_key: None,
            own_postgres: false,
            nats_nodes: 1,
            apis: 1,
        }
    }
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

impl StackBuilder {
    /// Gateway processes to start (1 by default).
    pub fn gateways(mut self, n: usize) -> Self {
        self.gateways = n;
        self
    }

    /// NATS nodes: 1 (the default) is a lone server; 3 is a JetStream cluster on loopback, the shape of
    /// docker-compose.yml, with every service given every node's URL and the chat stream made in 3 replicas.
    pub fn nats_nodes(mut self, n: usize) -> Self {
        self.nats_nodes = n.max(1);
        self
    }

    /// Auth API processes on one database (1 by default): room-access questions go to whichever answers first,
    /// as behind a load balancer; the gateways fetch the token keys from the first.
    pub fn apis(mut self, n: usize) -> Self {
        self.apis = n.max(1);
        self
    }

    /// Persister processes to start (none by default).
    pub fn persisters(mut self, n: usize) -> Self {
        self.persisters = n;
        self
    }

    /// Extra flags for every gateway, after the stack's own: `--listen`, `--admin-listen`, `--nats-url`, `--jwks-url`, and unless
    /// given here (or to [`Stack::add_gateway`]) a unique `--id`, a 250 ms `--heartbeat-interval` and a 300 ms
    /// `--drain-jitter`.
    pub fn gateway_args(mut self, args: &[&str]) -> Self {
        self.gateway_args = owned(args);
        self
    }

    /// Extra flags for every persister, after `--admin-listen`, `--nats-url` and `--database-url`; unless given
    /// here (or to [`Stack::add_persister`]), each gets a unique `--id` that its restarts keep.
    pub fn persister_args(mut self, args: &[&str]) -> Self {
        self.persister_args = owned(args);
        self
    }

    /// Extra flags for the auth API, after `--listen`, `--admin-listen`, `--database-url` and `--nats-url`.
    pub fn api_args(mut self, args: &[&str]) -> Self {
        self.api_args = owned(args);
        self
    }

    /// Turns on the auth API's load-test mode with `key` (at least 16 characters), for the harness.
    pub fn load_test_key(mut self, key: &str) -> Self {
        self.load_test_key = Some(key.to_owned());
        self
    }

    /// A PostgreSQL cluster of the stack's own, which the test may kill and restart ([`Stack::postgres_mut`]),
    /// instead of a database on the test process's shared cluster.
    pub fn own_postgres(mut self) -> Self {
        self.own_postgres = true;
        self
    }

    /// Starts NATS and PostgreSQL, then the auth API, the gateways and the persisters, each ready (its `/readyz`
    /// answering 200) before the next. Panics when a piece does not come up, with its log.
    pub async fn start(self) -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("natter-stack-")
            .tempdir()
            .expect("create a temp dir for the stack's logs");
        let (nats, nats_peers, route_ports) = if self.nats_nodes > 1 {
            let (mut nodes, route_ports) = NatsCluster::start(self.nats_nodes).await.into_parts();
            let first = nodes.remove(0);
            (first, nodes, route_ports)
        } else {
            (NatsServer::start(), Vec::new(), Vec::new())
        };
        let nats_urls = std::iter::once(&nats)
            .chain(&nats_peers)
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",");
        let (postgres, db_url) = if self.own_postgres {
            let server = PgServer::start();
            let url = server.create_database().await;
            (Some(server), url)
        } else {
            (None, PgServer::shared().create_database().await)
        };
        let mut api_args = vec![
            "--database-url".to_owned(),
            db_url.clone(),
            "--nats-url".to_owned(),
            nats_urls.clone(),
        ];
        api_args.extend(crate::nats_credentials("natter-auth-api"));
        if let Some(key) = &self.load_test_key {
            api_args.extend(["--load-test-key".to_owned(), key.clone()]);
        }
        api_args.extend(self.api_args.iter().cloned());
        if self.nats_nodes > 1 && !self.api_args.iter().any(|a| a.starts_with("--stream-replicas")) {
            api_args.extend(["--stream-replicas".to_owned(), self.nats_nodes.to_string()]);
        }
        let mut apis = Vec::with_capacity(self.apis);
        for n in 1..=self.apis {
            let name = if n == 1 {
                "auth-api".to_owned()
            } else {
                format!("auth-api-{n}")
            };
            let api = Program::start(name, binary(AUTH_API_BIN), api_args.clone(), true, dir.path()).await;
            apis.push(Arc::new(api));
        }
        let stack = Stack {
            nats,
            nats_peers,
            nats_urls,
            route_ports,
            postgres,
            db_url,
            api: Arc::new(Mutex::new(apis)),
            gateways: Members::default(),
            persisters: Members::default(),
            spec: self,
            dir,
            supervisors: Mutex::default(),
        };
        for _ in 0..stack.spec.gateways {
            stack.add_gateway(&[]).await;
        }
        for _ in 0..stack.spec.persisters {
            stack.add_persister(&[]).await;
        }
        stack
    }
}

/// A running stack; dropping it kills every process it started.
pub struct Stack {
    /// The NATS server (a cluster's first node, `n1`), to kill, restart, pause or resume.
    pub nats: NatsServer,
    /// A cluster's other nodes (`n2`, `n3`, ...); none for a lone server.
    nats_peers: Vec<NatsServer>,
    /// Every node's client URL, separated by commas: what every service is given (with its own user).
    nats_urls: String,
    /// A cluster's route ports, by node; none for a lone server.
    route_ports: Vec<u16>,
    /// The stack's own cluster, if it was asked for one; else the database is on the shared cluster.
    postgres: Option<PgServer>,
    db_url: String,
    /// The auth APIs, the first the one gateways fetch their token keys from (a list so that a supervisor watches
    /// them like the others).
    api: Members,
    /// Every gateway started, replacements included, in order of start.
    gateways: Members,
    /// Every persister started, in order of start.
    persisters: Members,
    spec: StackBuilder,
    /// Holds every process's log; removed on drop.
    dir: tempfile::TempDir,
    /// Supervisors started by [`Stack::supervise`], stopped on drop before the processes are.
    supervisors: Mutex<Vec<Supervisor>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The lists are only pushed to; a panic elsewhere cannot leave one half-changed.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Stack {
    /// A builder: one gateway, no persister, the shared PostgreSQL cluster, unless told otherwise.
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    /// The stack's own PostgreSQL cluster, to kill and restart. Panics when the stack uses the shared cluster
    /// ([`StackBuilder::own_postgres`] was not asked for): killing that would break other tests.
    pub fn postgres_mut(&mut self) -> &mut PgServer {
        self.postgres
            .as_mut()
            .expect("the stack uses the shared PostgreSQL cluster; ask the builder for own_postgres()")
    }

    /// The URL of the stack's database.
    pub fn db_url(&self) -> &str {
        &self.db_url
    }

    /// The (first) auth API process.
    pub fn api(&self) -> Arc<Program> {
        lock(&self.api)[0].clone()
    }

    /// Every auth API process.
    pub fn apis(&self) -> Vec<Arc<Program>> {
        lock(&self.api).clone()
    }

    /// Every NATS node's client URL, separated by commas, as the services are given them (with `--nats-user` and
    /// `--nats-password` of their role); a test's own client connecting without credentials acts as the operator.
    pub fn nats_urls(&self) -> &str {
        &self.nats_urls
    }

    /// How many NATS nodes the stack runs.
    pub fn nats_nodes(&self) -> usize {
        1 + self.nats_peers.len()
    }

    /// NATS node `i` (0 is [`Stack::nats`]).
    pub fn nats_node(&self, i: usize) -> &NatsServer {
        if i == 0 { &self.nats } else { &self.nats_peers[i - 1] }
    }

    /// NATS node `i`, to kill, restart, freeze or resume.
    pub fn nats_node_mut(&mut self, i: usize) -> &mut NatsServer {
        if i == 0 {
            &mut self.nats
        } else {
            &mut self.nats_peers[i - 1]
        }
    }

    /// The NATS node leading JetStream stream `stream` (the chat stream is `natter_proto::bus::CHAT_STREAM`), for a
    /// cluster; `None` while it has none or for a lone server.
    pub async fn nats_leader_of(&self, stream: &str) -> Option<usize> {
        crate::nats::leader_of(&self.nats_urls, stream).await
    }

    /// Cuts NATS node `i` off from the other nodes (its clients stay connected to it): a network partition that
    /// leaves it a minority of one. Fails for a lone server or where cuts cannot be made ([`cut::Cut::available`]).
    pub fn cut_nats_node(&self, i: usize) -> Result<cut::Cut, String> {
        if self.route_ports.is_empty() {
            return Err("the stack runs a lone NATS server, not a cluster".into());
        }
        let pid = self.nats_node(i).pid().ok_or("the node is not running")?;
        cut::Cut::node_from_cluster(pid, self.route_ports[i], &self.route_ports)
    }

    /// The NATS node `program` is connected to now, read from its TCP connections (`ss`); `None` when it has none.
    pub fn nats_node_of(&self, program: &Program) -> Option<usize> {
        let pid = program.pid()?;
        (0..self.nats_nodes()).find(|&i| cut::connections(pid, self.nats_node(i).port()).is_ok_and(|c| !c.is_empty()))
    }

    /// Waits until every replica of JetStream stream `stream` is current (caught up with its leader), as a rolling
    /// restart must before it takes the next node down: taking a second replica away while the first is still
    /// catching up would leave the stream without a quorum. Panics after `within`.
    pub async fn wait_for_replicas(&self, stream: &str, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        let js = async_nats::jetstream::new(self.nats_client().await);
        loop {
            let mut state = String::from("no answer");
            if let Ok(mut s) = js.get_stream(stream).await
                && let Ok(info) = s.info().await
                && let Some(cluster) = &info.cluster
            {
                let current = cluster.replicas.iter().filter(|r| r.current && !r.offline).count();
                if cluster.leader.is_some() && current + 1 >= self.nats_nodes() {
                    return;
                }
                state = format!("leader {:?}, {current} current replicas", cluster.leader);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the {stream} stream's replicas did not catch up within {within:?}: {state}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until JetStream answers through NATS node `i` after it was restarted or healed. Panics after
    /// `within`.
    pub async fn wait_for_nats_node(&self, i: usize, within: Duration) {
        crate::nats::wait_for_jetstream(self.nats_node(i), within).await;
    }

    /// The auth API's base URL, `http://127.0.0.1:PORT`.
    pub fn api_url(&self) -> String {
        self.api().http_url("")
    }

    /// The JWKS URL gateways verify tokens against.
    pub fn jwks_url(&self) -> String {
        self.api().http_url("/.well-known/jwks.json")
    }

    /// The `i`th gateway started (replacements count, in order of start).
    pub fn gateway(&self, i: usize) -> Arc<Program> {
        lock(&self.gateways)[i].clone()
    }

    /// Every gateway started, replacements included.
    pub fn gateways(&self) -> Vec<Arc<Program>> {
        lock(&self.gateways).clone()
    }

    /// The `i`th persister started.
    pub fn persister(&self, i: usize) -> Arc<Program> {
        lock(&self.persisters)[i].clone()
    }

    /// Every persister started.
    pub fn persisters(&self) -> Vec<Arc<Program>> {
        lock(&self.persisters).clone()
    }

    /// The distinct gateway ports, in order of first use: what a client (or the harness) is given to connect to.
    pub fn gateway_ports(&self) -> Vec<u16> {
        let mut ports = Vec::new();
        for gateway in lock(&self.gateways).iter() {
            if !ports.contains(&gateway.port()) {
                ports.push(gateway.port());
            }
        }
        ports
    }

    fn gateway_command(&self, id: &str, args: &[&str]) -> Vec<String> {
        let mut given = self.spec.gateway_args.clone();
        given.extend(owned(args));
        let mut all = owned(&["--nats-url", &self.nats_urls, "--jwks-url", &self.jwks_url()]);
        all.extend(crate::nats_credentials("natter-gateway"));
        given.extend(self.replicas(&given));
        // Test defaults, each left out when the test gives the flag itself (the services refuse a flag twice).
        for (flag, value) in [
            ("--id", id),
            ("--heartbeat-interval", "250ms"),
            ("--drain-jitter", "300ms"),
        ] {
            if !given.iter().any(|g| g == flag || g.starts_with(&format!("{flag}="))) {
                all.extend(owned(&[flag, value]));
            }
        }
        all.extend(given);
        all
    }

    /// `--stream-replicas N` for a cluster of N nodes, unless `given` has it: the chat stream is made in a replica
    /// per node, as in docker-compose.yml.
    fn replicas(&self, given: &[String]) -> Vec<String> {
        let flag = "--stream-replicas";
        if self.nats_peers.is_empty() || given.iter().any(|g| g == flag || g.starts_with(&format!("{flag}="))) {
            return Vec::new();
        }
        owned(&[flag, &self.nats_nodes().to_string()])
    }

    /// Starts one more gateway on a free port, with the stack's gateway flags plus `args`, and waits until it is
    /// ready.
    pub async fn add_gateway(&self, args: &[&str]) -> Arc<Program> {
        let (name, args) = self.next_gateway(args);
        let gateway = Program::start(name, binary(GATEWAY_BIN), args, true, self.dir.path()).await;
        self.keep_gateway(gateway)
    }

    /// Starts one more gateway on `port`, which a running gateway may share (SO_REUSEPORT): a replacement in a
    /// rolling restart. Its readiness is taken from a 200 on `/readyz` of its own admin port.
    pub async fn add_gateway_on(&self, port: u16, args: &[&str]) -> Arc<Program> {
        let (name, args) = self.next_gateway(args);
        let gateway = Program::start_on(name, binary(GATEWAY_BIN), args, port, self.dir.path()).await;
        self.keep_gateway(gateway)
    }

    /// The next gateway's name and flags (a new `--id` each).
    fn next_gateway(&self, args: &[&str]) -> (String, Vec<String>) {
        let n = lock(&self.gateways).len() + 1;
        let id = format!("gw{n}-{}", uuid::Uuid::new_v4().simple());
        (format!("gateway-{n}"), self.gateway_command(&id, args))
    }

    fn keep_gateway(&self, gateway: Program) -> Arc<Program> {
        let gateway = Arc::new(gateway);
        lock(&self.gateways).push(gateway.clone());
        gateway
    }

    /// Starts one more persister, with the stack's persister flags plus `args` (and a unique `--id` unless they
    /// give one), and waits until it is ready.
    pub async fn add_persister(&self, args: &[&str]) -> Arc<Program> {
        let n = lock(&self.persisters).len() + 1;
        let mut all = owned(&["--nats-url", &self.nats_urls, "--database-url", &self.db_url]);
        all.extend(crate::nats_credentials("natter-persister"));
        all.extend(self.spec.persister_args.iter().cloned());
        all.extend(owned(args));
        let replicas = self.replicas(&all);
        all.extend(replicas);
        // An id of its own that a restart keeps (the same flags), as an orchestrator's stable names would: a
        // persister started again takes its partition leases back at once instead of waiting for them to age out.
        if !all.iter().any(|a| a == "--id" || a.starts_with("--id=")) {
            let id = format!("persister-{n}-{}", uuid::Uuid::new_v4().simple());
            all.extend(["--id".to_owned(), id]);
        }
        let persister = Program::start(
            format!("persister-{n}"),
            binary(PERSISTER_BIN),
            all,
            false,
            self.dir.path(),
        )
        .await;
        let persister = Arc::new(persister);
        lock(&self.persisters).push(persister.clone());
        persister
    }

    /// Every service process: the auth API, the gateways, the persisters.
    pub fn programs(&self) -> Vec<Arc<Program>> {
        let mut all = vec![self.api()];
        all.extend(self.gateways());
        all.extend(self.persisters());
        all
    }

    /// Starts a supervisor that starts again, `restart_after` after it died, every service process that is wanted
    /// and not running (killed, or dead by itself); one stopped with SIGTERM is left alone. It runs until the stack
    /// is dropped.
    pub fn supervise(&self, restart_after: Duration) {
        let lists = vec![self.api.clone(), self.gateways.clone(), self.persisters.clone()];
        lock(&self.supervisors).push(Supervisor::start(lists, restart_after));
    }

    /// Every exit of every service process that the test did not cause (a crash, a non-zero exit after SIGTERM),
    /// as `name: exit` lines; empty when every process only ever died of what the test did to it.
    pub fn unexpected_exits(&self) -> Vec<String> {
        let mut found = Vec::new();
        for program in self.programs() {
            for exit in program.exits() {
                if !exit.expected {
                    found.push(format!("{}: {exit}", program.name()));
                }
            }
        }
        found
    }

    /// The end of every process's log (services, NATS, the stack's PostgreSQL), for failure messages: the last 30
    /// lines of each service and 20 of each NATS node, a run of lines that differ only in their digits (time stamps,
    /// sequence numbers) shown once with its count, so that one warning repeated under load does not hide the rest.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for program in self.programs() {
            let tail = crate::process::collapsed_tail(&program.log(), 30);
            if !tail.is_empty() {
                out.push_str(&format!("--- {} (last 30 lines)\n{tail}\n", program.name()));
            }
        }
        for i in 0..self.nats_nodes() {
            out.push_str(&format!(
                "--- nats-server {} (last 20 lines)\n{}\n",
                i + 1,
                crate::process::collapsed_tail(&self.nats_node(i).log(), 20)
            ));
        }
        out
    }

    /// Copies every process's whole log into `dir/<test>/`, `test` being the running thread's name (the test's,
    /// under the test harness): what [`Drop`] does for a failing test when `NATTER_KEEP_LOGS` names a directory.
    fn keep_logs(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let test = std::thread::current()
            .name()
            .unwrap_or("stack")
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "-");
        // A second stack of the same test (or its rerun) replaces the first's logs rather than mixing with them.
        let dir = dir.join(test);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        for program in self.programs() {
            std::fs::write(dir.join(format!("{}.log", program.name())), program.log())?;
        }
        for i in 0..self.nats_nodes() {
            std::fs::write(dir.join(format!("nats-{}.log", i + 1)), self.nats_node(i).log())?;
        }
        Ok(dir)
    }

    /// The sum over the gateways that answer of the metric series `series` (a name with its labels, as the page
    /// writes them).
    pub async fn gateway_metric_sum(&self, series: &str) -> f64 {
        let mut sum = 0.0;
        for gateway in self.gateways() {
            if let Some(page) = gateway.metrics().await {
                sum += crate::metrics_page::value(&page, series).unwrap_or(0.0);
            }
        }
        sum
    }

    /// Waits until the gateways together have had `count` sends stored by JetStream (acknowledged), polling their
    /// metrics; panics after `within`. Tests use it to inject a fault once traffic is flowing.
    pub async fn wait_for_acks(&self, count: u64, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let acks = self
                .gateway_metric_sum("natter_gateway_publish_latency_seconds_count")
                .await;
            if acks >= count as f64 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {acks} sends acknowledged after {within:?}, waiting for {count}; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The rows in the history (`messages`) by stream epoch, oldest epoch first: what the persisters stored, read
    /// from PostgreSQL directly.
    pub async fn history_rows_by_epoch(&self) -> Vec<(i64, i64)> {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&self.db_url)
            .await
            .expect("connect to the stack's database");
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT epoch, count(*) FROM messages GROUP BY epoch ORDER BY epoch")
                .fetch_all(&mut conn)
                .await
                .expect("count the history's rows");
        let _ = conn.close().await;
        rows
    }

    /// The messages of stream `stream` that its durable consumers whose names start with `prefix` have not had
    /// acked yet: waiting to be delivered, or delivered and not acked. The persisters read through one consumer per
    /// partition (`natter-persister-p00`…), so `natter-persister-p` counts them all; 0 means they hold nothing
    /// unfinished.
    pub async fn consumers_backlog(&self, stream: &str, prefix: &str) -> u64 {
        use futures::TryStreamExt as _;
        let client = self.nats_client().await;
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(stream).await.expect("the stream exists");
        let infos: Vec<async_nats::jetstream::consumer::Info> =
            stream.consumers().try_collect().await.expect("the stream's consumers");
        infos
            .iter()
            .filter(|info| info.name.starts_with(prefix))
            .map(|info| info.num_pending + info.num_ack_pending as u64)
            .sum()
    }

    /// Deletes the JetStream stream `name` (the chat stream is `natter_proto::bus::CHAT_STREAM`), as an operator's
    /// mistake would; the services create it again by themselves.
    pub async fn delete_stream(&self, name: &str) {
        let client = self.nats_client().await;
        let js = async_nats::jetstream::new(client);
        js.delete_stream(name).await.expect("delete the stream");
    }
}

impl Stack {
    /// A client of the stack's NATS, connected to whichever node answers.
    pub async fn nats_client(&self) -> async_nats::Client {
        let servers: Vec<async_nats::ServerAddr> = self.nats_urls.split(',').filter_map(|u| u.parse().ok()).collect();
        async_nats::ConnectOptions::new()
            .connect(servers)
            .await
            .expect("connect to the stack's NATS")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Supervisors first, so none starts a process again while the rest are being killed.
        lock(&self.supervisors).clear();
        // A failing test loses the logs with the stack's directory: show their ends first.
        if std::thread::panicking() {
            eprintln!("the stack's logs at the failure:\n{}", self.logs());
            if let Some(dir) = std::env::var_os("NATTER_KEEP_LOGS") {
                match self.keep_logs(Path::new(&dir)) {
                    Ok(kept) => eprintln!("the stack's whole logs are in {}", kept.display()),
                    Err(err) => eprintln!("could not keep the stack's logs in {dir:?}: {err}"),
                }
            }
        }
        for program in self.programs() {
            program.kill();
        }
    }
}

/// The path of a workspace binary: in `$NATTER_BIN_DIR` if set, else next to the test executable (an
/// integration test runs from `target/<profile>/deps/`, the binaries are in `target/<profile>/`). Panics when it
/// is not built.
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("NATTER_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("the test executable's path");
            let mut dir = exe
                .parent()
                .expect("the test executable is in a directory")
                .to_path_buf();
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{name} is not built at {}: build the workspace's binaries first (`cargo build --workspace --bins`; \
         `cargo nextest run --workspace` and `./natter test` build them), or point NATTER_BIN_DIR at them",
        path.display()
    );
    path
}
