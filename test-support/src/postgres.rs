//! A real, throwaway PostgreSQL cluster for tests, and one fresh database per test on it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::Connection;

use crate::process::{Recipe, Service, port_open};

/// A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 on a free port with trust auth.
///
/// The cluster is tuned for tests: no fsync, which still survives a process crash (the OS keeps the written
/// WAL) though not a power cut, which is fine for a cluster that is thrown away. Commits stay synchronous so
/// that a killed server loses no committed row, exactly as in production. When the process runs as root the
/// cluster runs as the `postgres` user, since PostgreSQL refuses to run as root.
pub struct PgServer {
    service: Service,
}

impl PgServer {
    /// Creates and starts a new cluster. Panics if it cannot: a test cannot go on without it.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("natter-pg-")
            .tempdir()
            .expect("create a temp dir for postgres");
        let owner = service_user();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the postgres temp dir");
        }
        copy_template(&dir.path().join("data"), owner);
        let recipe = Recipe {
            name: "postgres",
            command,
            ready: is_ready,
            // SIGQUIT is PostgreSQL's immediate shutdown: no checkpoint, so the next start runs crash recovery;
            // the postmaster takes its backends down with it (SIGKILL would orphan them).
            crash_signal: "QUIT",
            // SIGINT is its fast shutdown: clients are disconnected, a checkpoint is written.
            stop_signal: "INT",
            log_file: "postgres.log",
            ready_within: Duration::from_secs(30),
        };
        Self {
            service: Service::start(recipe, dir),
        }
    }

    /// One cluster shared by every test in this process, started on first use.
    ///
    /// It is never dropped; the watcher started with it stops it when the process exits.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(PgServer::start)
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        self.service.log()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.service.port()
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port())
    }

    /// Creates a new, empty database with a unique name and returns its URL.
    pub async fn create_database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test cluster");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create a test database");
        let _ = conn.close().await;
        self.url(&name)
    }

    /// Stops the server the way a crash would: an immediate shutdown writes no checkpoint, so the next start
    /// runs crash recovery from the WAL. The data stays for [`PgServer::restart`].
    pub fn kill(&mut self) {
        self.service.crash();
    }

    /// Starts the server again on the same port with the same data. Panics if it does not come up.
    pub fn restart(&mut self) {
        self.service.restart();
    }
}

fn command(port: u16, dir: &Path) -> Result<Command, String> {
    let log = std::fs::File::create(dir.join("postgres.log")).map_err(|e| format!("cannot create the log: {e}"))?;
    let mut cmd = as_service_user(&bin("postgres"));
    cmd.arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
        ])
        .args(["-c", "max_connections=300", "-c", "shared_buffers=64MB"])
        .stderr(log);
    Ok(cmd)
}

/// A fresh database for one test, on the process-wide [`PgServer::shared`] cluster.
pub struct TestDb {
    url: String,
}

impl TestDb {
    /// Creates the database.
    pub async fn create() -> Self {
        let server = PgServer::shared();
        Self {
            url: server.create_database().await,
        }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Whether our PostgreSQL accepts connections (not merely TCP: it refuses queries while starting up). Asked over
/// the Unix socket in its own directory, so the answer cannot come from another server on the same port; and
/// PostgreSQL exits when it cannot bind its TCP port, so ours being ready means the port is ours too.
fn is_ready(port: u16, dir: &Path) -> bool {
    Command::new(bin("pg_isready"))
        .arg("-q")
        .arg("-h")
        .arg(dir)
        .args(["-p", &port.to_string(), "-U", "postgres"])
        .status()
        .is_ok_and(|s| s.success())
        && port_open(port)
}

/// Puts a freshly initialised cluster at `data`, copying a template made once per machine by `initdb`.
///
/// initdb takes over a second; a copy takes a tenth of that, which adds up over many tests.
fn copy_template(data: &Path, owner: Option<(u32, u32)>) {
    let template = std::env::temp_dir().join(format!("natter-pg-template-{}", server_version()));
    if !template.join("PG_VERSION").exists() {
        let staging = std::env::temp_dir().join(format!("natter-pg-staging-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&staging).expect("create an initdb staging dir");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&staging, Some(uid), Some(gid)).expect("chown the initdb staging dir");
        }
        let out = as_service_user(&bin("initdb"))
            .arg("-D")
            .arg(&staging)
            .args(["-U", "postgres", "-A", "trust", "-N", "-E", "UTF8", "--locale=C.UTF-8"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Another test process may have won the race; then ours is simply discarded.
        if std::fs::rename(&staging, &template).is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
    }
    let status = Command::new("cp")
        .arg("-a")
        .arg(&template)
        .arg(data)
        .status()
        .expect("run cp");
    assert!(status.success(), "copying the postgres template failed");
}

/// The major version of the PostgreSQL binaries in use, to key the template by.
fn server_version() -> String {
    let dir = bin_dir();
    let version = dir
        .parent()
        .and_then(Path::file_name)
        .map(|v| v.to_string_lossy().into_owned());
    version.unwrap_or_else(|| "local".into())
}

/// The directory with PostgreSQL's server binaries: `$NATTER_PG_BIN`, else the newest `/usr/lib/postgresql/N/bin`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NATTER_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| PathBuf::from("/usr/bin"))
}

fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// When running as root: the uid and gid of `postgres`, which the cluster must run as.
fn service_user() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    if id("-u")? != 0 {
        return None;
    }
    let user_id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((
        user_id("-u").expect("running as root needs a 'postgres' user"),
        user_id("-g")?,
    ))
}

/// A command for `program`, run as `postgres` when this process is root (via setpriv, which execs in place so
/// the child's pid is the program's own).
fn as_service_user(program: &Path) -> Command {
    if service_user().is_some() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"])
            .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}
