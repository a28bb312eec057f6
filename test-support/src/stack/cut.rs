//! A real network cut between one process and NATS on loopback, made with nftables: every packet of the process's
//! TCP connections to the NATS port is dropped both ways, as a broken network would (no reset, no FIN: each side
//! only sees silence), and new connections to the port are dropped too, so the process cannot reconnect around
//! the cut. Healing removes the rules; TCP then delivers what it held back, or the sides find their connection
//! dead and reconnect.
//!
//! Needs root and the `nft` tool (Debian's `nftables`). New connections to the NATS port are refused to every
//! process while the cut lasts (the rules cannot tell a new connection's owner on loopback), so only the cut
//! process should be making one.

use std::process::Command;

/// A cut in force; [`Cut::heal`] or dropping it removes it.
pub struct Cut {
    /// The nftables table holding the rules, unique to this cut.
    table: String,
    /// The local ports of the connections cut.
    ports: Vec<u16>,
}

/// Why a cut cannot be made here.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Cut {
    /// Whether cuts can be made here (root and `nft`); the reason when not.
    pub fn available() -> Result<(), Unavailable> {
        let nft = Command::new("nft").arg("--version").output();
        match nft {
            Ok(out) if out.status.success() => {}
            _ => {
                return Err(Unavailable(
                    "nft (Debian's nftables) is not installed; `apt-get install nftables` as root".into(),
                ));
            }
        }
        // Listing needs the same privilege as changing the rules.
        let list = Command::new("nft").args(["list", "tables"]).output();
        match list {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(Unavailable(format!(
                "nft cannot read the ruleset (root needed): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
            Err(err) => Err(Unavailable(format!("cannot run nft: {err}"))),
        }
    }

    /// Cuts process `pid` off from the NATS server on 127.0.0.1:`nats_port`. Fails when the process has no
    /// connection to it, or the rules cannot be installed.
    pub fn process_from_nats(pid: u32, nats_port: u16) -> Result<Self, String> {
        Self::available().map_err(|e| e.0)?;
        let ports = connections(pid, nats_port)?;
        if ports.is_empty() {
            return Err(format!("process {pid} has no TCP connection to port {nats_port}"));
        }
        let table = format!("natter_cut_{pid}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let list = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
        // Loopback packets pass the output hook once each way, so one chain sees both directions.
        let rules = format!(
            "table inet {table} {{\n\
             \tchain output {{\n\
             \t\ttype filter hook output priority 0; policy accept;\n\
             \t\ttcp sport {{ {list} }} tcp dport {nats_port} drop\n\
             \t\ttcp sport {nats_port} tcp dport {{ {list} }} drop\n\
             \t\ttcp dport {nats_port} tcp flags & (syn | ack) == syn drop\n\
             \t}}\n\
             }}\n"
        );
        nft(&["-f", "-"], Some(&rules))?;
        remove_when_gone(&table);
        Ok(Self { table, ports })
    }

    /// Cuts the cluster node `pid`, whose route port is `own_route`, off from the other nodes (route ports
    /// `route_ports`): every packet of its route connections, both those the others opened to it and those it
    /// opened to them, is dropped, and no new route connection can be opened while the cut lasts. Its clients stay
    /// connected to it: the node is a minority of one, as a network partition leaves it.
    pub fn node_from_cluster(pid: u32, own_route: u16, route_ports: &[u16]) -> Result<Self, String> {
        Self::available().map_err(|e| e.0)?;
        let mut outgoing = Vec::new();
        for port in route_ports.iter().filter(|p| **p != own_route) {
            outgoing.extend(connections(pid, *port)?);
        }
        let table = format!("natter_cut_{pid}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let routes = route_ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
        let mut rules = format!(
            "table inet {table} {{\n\tchain output {{\n\t\ttype filter hook output priority 0; policy accept;\n\
             \t\ttcp dport {own_route} drop\n\t\ttcp sport {own_route} drop\n\
             \t\ttcp dport {{ {routes} }} tcp flags & (syn | ack) == syn drop\n"
        );
        if !outgoing.is_empty() {
            let list = outgoing.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
            rules.push_str(&format!(
                "\t\ttcp sport {{ {list} }} drop\n\t\ttcp dport {{ {list} }} drop\n"
            ));
        }
        rules.push_str("\t}\n}\n");
        nft(&["-f", "-"], Some(&rules))?;
        remove_when_gone(&table);
        outgoing.push(own_route);
        Ok(Self { table, ports: outgoing })
    }

    /// The local ports of the connections that were cut.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Removes the cut.
    pub fn heal(self) {
        drop(self);
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        if let Err(err) = nft(&["delete", "table", "inet", &self.table], None) {
            eprintln!("cannot remove the network cut {}: {err}", self.table);
        }
    }
}

/// Starts a detached watcher that removes `table` once this test process has exited, so a test that dies with a
/// cut in force leaves no rule behind (a later server on the same port would find its new connections dropped).
fn remove_when_gone(table: &str) {
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; nft delete table inet {table} 2>/dev/null",
        std::process::id()
    );
    let _ = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// The local ports of `pid`'s established TCP connections to 127.0.0.1:`port`, read from `ss`.
pub(crate) fn connections(pid: u32, port: u16) -> Result<Vec<u16>, String> {
    let out = Command::new("ss")
        .args(["-Htnp", "state", "established", "dst", &format!("127.0.0.1:{port}")])
        .output()
        .map_err(|e| format!("cannot run ss: {e}"))?;
    if !out.status.success() {
        return Err(format!("ss failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let owner = format!("pid={pid},");
    let mut ports = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.contains(&owner) {
            continue;
        }
        // With a state filter: Recv-Q Send-Q Local:Port Peer:Port Process
        let local = line.split_whitespace().nth(2).unwrap_or_default();
        if let Some(p) = local.rsplit(':').next().and_then(|p| p.parse().ok()) {
            ports.push(p);
        }
    }
    Ok(ports)
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .map_err(|e| format!("cannot give nft its rules: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
