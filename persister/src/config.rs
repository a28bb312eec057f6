//! Configuration from flags and environment, validated before anything is connected.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use natter_proto::duration::parse as parse_duration;

/// Settings of one persister process. Every flag can also be given through the environment variable it names.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "natter-persister",
    version,
    about = "Writes Natter's chat stream to PostgreSQL"
)]
pub struct Config {
    /// NATS server URL, or several separated by commas: every node of a cluster, so the persister moves to
    /// another when its node goes.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// The NATS user and password (`--nats-user`, `NATS_PASSWORD`).
    #[command(flatten)]
    pub nats_auth: natter_service::NatsAuth,

    /// PostgreSQL connection URL. The schema is migrated on start.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/natter",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Where `/healthz`, `/readyz` and `/metrics` are served: the persister's only listener, its admin port
    /// (`--listen` is the older name of this flag).
    #[arg(
        long,
        alias = "listen",
        env = "NATTER_PERSISTER_ADMIN_LISTEN",
        default_value = "127.0.0.1:9100"
    )]
    pub admin_listen: SocketAddr,

    /// Prefix of the partitions' durable consumers: partition NN is read through `{consumer}-pNN`, by whichever
    /// persister holds its lease. Every persister of a fleet gives the same.
    #[arg(long, env = "NATTER_PERSISTER_CONSUMER", default_value = "natter-persister")]
    pub consumer: String,

    /// This persister's id in the partition leases: unique among the live persisters (a pod's name, say).
    /// Random when not given. A persister restarted with the same id takes its own leases back at once instead of
    /// waiting for them to age out.
    #[arg(long, env = "NATTER_PERSISTER_ID")]
    pub id: Option<String>,

    /// Most messages written in one transaction.
    #[arg(long, env = "NATTER_PERSISTER_BATCH", default_value_t = 1000)]
    pub batch_size: usize,

    /// Batches written at once, each in its own transaction on its own connection: while one commits (waiting
    /// for its WAL flush), another inserts.
    #[arg(long, env = "NATTER_PERSISTER_WRITERS", default_value_t = 2)]
    pub writers: usize,

    /// How long a batch waits for more messages after its first even when the writer is free (0: a message is
    /// written as soon as the writer can take it; batches still grow while a commit is in progress).
    #[arg(long, env = "NATTER_PERSISTER_MAX_WAIT", default_value = "0ms", value_parser = parse_duration)]
    pub max_wait: Duration,

    /// How long JetStream waits for an ack before redelivering; what a persister holds (gathering, waiting for a
    /// writer, retried while PostgreSQL is away) is marked in progress every third of it. At least 1s.
    #[arg(long, env = "NATTER_PERSISTER_ACK_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub ack_wait: Duration,

    /// How long chat history is kept in PostgreSQL (off: for ever). Whole days go at once, so history is kept at
    /// least this long and at most a day longer; at least 1d.
    #[arg(long, env = "NATTER_HISTORY_RETENTION", value_parser = parse_duration)]
    pub history_retention: Option<Duration>,

    /// The chat stream's age, byte cap and copies.
    #[command(flatten)]
    pub stream: natter_stream::StreamArgs,
}

impl natter_service::Validate for Config {
    fn validate(&self) -> Result<(), String> {
        natter_service::nats_servers(&self.nats_url)?;
        self.nats_auth.validate()?;
        if !self.database_url.starts_with("postgres://") && !self.database_url.starts_with("postgresql://") {
            return Err("--database-url / DATABASE_URL must start with postgres:// or postgresql://".into());
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return Err("--batch-size must be between 1 and 10000".into());
        }
        if !(1..=16).contains(&self.writers) {
            return Err("--writers must be between 1 and 16".into());
        }
        // What a persister holds is marked in progress every third of the ack wait: a shorter one would be a
        // stream of marks, and would leave a batch's write no time before JetStream handed it out again.
        if self.ack_wait < Duration::from_secs(1) {
            return Err("--ack-wait must be at least 1s".into());
        }
        if self.max_wait >= self.ack_wait.min(Duration::from_secs(10)) {
            return Err("--max-wait must be shorter than --ack-wait and than 10s".into());
        }
        if self.history_retention.is_some_and(|r| r < Duration::from_secs(86_400)) {
            return Err("--history-retention must be at least 1d: history goes a day's partition at a time".into());
        }
        if !is_name(&self.consumer, 60) {
            return Err("--consumer must be 1 to 60 letters, digits, '-' and '_'".into());
        }
        if self.id.as_deref().is_some_and(|id| !is_name(id, 64)) {
            return Err("--id must be 1 to 64 letters, digits, '-' and '_'".into());
        }
        Ok(())
    }
}

impl Config {
    /// This persister's id: `--id`, or a random one.
    pub fn persister_id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("persister-{:016x}", rand::random::<u64>()))
    }
}

/// Whether `name` is 1 to `max` letters, digits, '-' and '_': safe as a consumer name and a KV key token.
fn is_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use natter_service::Validate;

    use super::*;

    fn config(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("natter-persister").chain(args.iter().copied())).expect("parses")
    }

    #[test]
    fn defaults_are_valid_and_nonsense_is_refused() {
        config(&[]).validate().expect("defaults validate");
        assert!(config(&["--batch-size", "0"]).validate().is_err());
        assert!(config(&["--max-wait", "1m", "--ack-wait", "30s"]).validate().is_err());
        assert!(config(&["--ack-wait", "500ms"]).validate().is_err());
        assert!(config(&["--consumer", "a.b"]).validate().is_err());
        assert!(config(&["--id", "host.1"]).validate().is_err(), "a KV key token");
        config(&["--id", "persister-0"]).validate().expect("an id");
        assert_ne!(
            config(&[]).persister_id(),
            config(&[]).persister_id(),
            "random ids differ"
        );
        assert_eq!(config(&["--id", "p-7"]).persister_id(), "p-7");
        assert!(config(&["--database-url", "mysql://x"]).validate().is_err());
        assert!(config(&["--history-retention", "12h"]).validate().is_err());
        config(&["--history-retention", "30d"])
            .validate()
            .expect("a month of history");
    }
}
