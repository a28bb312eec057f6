//! CPU time from `/proc`: what the harness's own processes and any process it is told to watch spend, read at the
//! phases' edges, so that a run reports its cost per unit of work (per connection, per delivery).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The kernel's clock ticks per second in `/proc/PID/stat` (`USER_HZ`, 100 on Linux whatever the kernel's HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds a process has spent, all its threads, from `/proc/PID/stat`; `None` if it is gone
/// or unreadable.
pub fn process_seconds(pid: u32) -> Option<f64> {
    seconds_in(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// This process's user + system CPU seconds.
pub fn own_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| seconds_in(&stat))
        .unwrap_or(0.0)
}

/// User + system CPU seconds of a process and of all its children: those still running (read one by one) and
/// those that ended and were waited for (counted in the parent's `cutime` and `cstime`). For a server that forks
/// a process per connection, such as PostgreSQL.
pub fn family_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut total = seconds_in(&stat)? + ended_children_seconds(&stat).unwrap_or(0.0);
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat"))
            && fields(&stat).and_then(|mut f| f.nth(1)?.parse::<u32>().ok()) == Some(pid)
        {
            total += seconds_in(&stat).unwrap_or(0.0);
        }
    }
    Some(total)
}

/// The fields of a `/proc/PID/stat` line after the command name (field 2, which may hold spaces and parentheses):
/// the state (field 3) first.
fn fields(stat: &str) -> Option<std::str::SplitAsciiWhitespace<'_>> {
    Some(stat[stat.rfind(')')? + 1..].split_ascii_whitespace())
}

/// Fields 14 and 15 (utime, stime) of a `/proc/PID/stat` line, in seconds.
fn seconds_in(stat: &str) -> Option<f64> {
    let mut fields = fields(stat)?.skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / TICKS_PER_SECOND)
}

/// Fields 16 and 17 (cutime, cstime: children that ended and were waited for), in seconds.
fn ended_children_seconds(stat: &str) -> Option<f64> {
    let mut fields = fields(stat)?.skip(13);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / TICKS_PER_SECOND)
}

/// A process the run watches, by role (`nats=PID`, `gateway=PID`; one role may name several processes), with its
/// children (`postgres=PID+`) or alone.
#[derive(Debug, Clone, Serialize)]
pub struct Watched {
    /// What the process is (`nats`, `persister`, `postgres`, `gateway`...).
    pub role: String,
    /// Its process id.
    pub pid: u32,
    /// Whether its children count too.
    pub children: bool,
}

/// Parses `ROLE=PID` or `ROLE=PID+` (with its children).
pub fn parse_watched(text: &str) -> Result<Watched, String> {
    let (role, pid) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not ROLE=PID"))?;
    let (pid, children) = match pid.trim().strip_suffix('+') {
        Some(pid) => (pid, true),
        None => (pid.trim(), false),
    };
    let pid = pid.parse().map_err(|_| format!("'{pid}' is not a process id"))?;
    if role.is_empty() || !role.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("'{role}' is not a role name (letters, digits, - and _)"));
    }
    Ok(Watched {
        role: role.to_owned(),
        pid,
        children,
    })
}

/// CPU seconds of every watched process, summed by role.
pub fn by_role(watched: &[Watched]) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for w in watched {
        let seconds = if w.children {
            family_seconds(w.pid)
        } else {
            process_seconds(w.pid)
        };
        *sums.entry(w.role.clone()).or_insert(0.0) += seconds.unwrap_or(0.0);
    }
    sums
}

/// What one role spent in each phase, and per unit of work.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseCost {
    /// CPU seconds over the connect phase (from the first connection attempt to every client settled).
    pub connect_secs: f64,
    /// CPU seconds over the send phase and the drain (from every client connected to the run's end).
    pub send_secs: f64,
    /// Connect-phase CPU per connection made, in µs.
    pub per_connection_us: Option<f64>,
    /// Send-phase CPU per delivery received, in µs.
    pub per_delivery_us: Option<f64>,
}

impl PhaseCost {
    /// The cost of a role from its CPU seconds at the three edges and the units of work done.
    pub fn of(start: f64, connected_at: f64, end: f64, connections: u64, deliveries: u64) -> Self {
        let connect_secs = (connected_at - start).max(0.0);
        let send_secs = (end - connected_at).max(0.0);
        let per = |secs: f64, units: u64| (units > 0).then(|| secs * 1e6 / units as f64);
        Self {
            connect_secs,
            send_secs,
            per_connection_us: per(connect_secs, connections),
            per_delivery_us: per(send_secs, deliveries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_past_a_command_with_spaces_and_parentheses() {
        let stat = "4242 (natter (gw) 1) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(seconds_in(stat), Some(3.25));
        assert_eq!(seconds_in("4242 (x) S 1"), None);
        assert_eq!(seconds_in("garbage"), None);
        assert_eq!(ended_children_seconds(stat), Some(0.0));
        let waited = "7 (pg) S 1 7 7 0 -1 0 0 0 0 0 100 100 300 150 20 0 1 0 0 0 0";
        assert_eq!(ended_children_seconds(waited), Some(4.5));
    }

    #[test]
    fn a_family_counts_its_running_children() {
        // This test process and a child that burns CPU until killed.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("a shell");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let own = process_seconds(std::process::id()).expect("this process");
        let family = family_seconds(std::process::id()).expect("this process");
        let _ = child.kill();
        let _ = child.wait();
        assert!(family >= own + 0.05, "own {own}, with children {family}");
    }

    #[test]
    fn this_process_is_readable_and_a_missing_one_is_not() {
        // Burn a little CPU so the figure is not only the start-up's.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_seconds(std::process::id()).is_some());
        assert!(own_seconds() > 0.0);
        assert_eq!(process_seconds(u32::MAX), None);
    }

    #[test]
    fn roles_parse_or_say_why_not() {
        let w = parse_watched("nats=17").expect("parses");
        assert_eq!((w.role.as_str(), w.pid, w.children), ("nats", 17, false));
        let w = parse_watched("postgres=18+").expect("parses");
        assert_eq!((w.role.as_str(), w.pid, w.children), ("postgres", 18, true));
        assert!(parse_watched("nats").is_err());
        assert!(parse_watched("nats=x").is_err());
        assert!(parse_watched("=5").is_err());
        assert!(parse_watched("a b=5").is_err());
    }

    #[test]
    fn costs_divide_each_phase_by_its_work() {
        let c = PhaseCost::of(1.0, 2.5, 4.5, 10_000, 1_000_000);
        assert_eq!(c.connect_secs, 1.5);
        assert_eq!(c.send_secs, 2.0);
        assert_eq!(c.per_connection_us, Some(150.0));
        assert_eq!(c.per_delivery_us, Some(2.0));
        assert_eq!(PhaseCost::of(0.0, 1.0, 2.0, 0, 0).per_connection_us, None);
    }
}
