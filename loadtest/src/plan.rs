//! What the coordinator tells a worker process and what the worker answers: JSON lines over the worker's stdin and
//! stdout, so a worker could as well run on another host behind `ssh`.
//!
//! The conversation, in order:
//! 1. coordinator → worker: one [`WorkerPlan`] line.
//! 2. worker → coordinator: [`FromWorker::Progress`] every second throughout, and [`FromWorker::Ready`] once every
//!    client has connected and joined (or failed to).
//! 3. coordinator → worker: [`ToWorker::Go`] with the wall-clock start of the send phase, the same for all workers.
//! 4. worker → coordinator: [`FromWorker::Acked`] once its senders are done: the seqs acknowledged per room.
//! 5. coordinator → worker: [`ToWorker::Expect`], every room's acknowledged seqs from all workers.
//! 6. worker → coordinator: [`FromWorker::Done`] with its figures, once its receivers hold every expected message or
//!    the drain timeout has passed; then it exits.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::counts::Counts;

/// Everything one worker process needs to run its share of the clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerPlan {
    /// This worker's index, for logs and message ids.
    pub worker: usize,
    /// Gateway WebSocket URLs; a user's `gateway` indexes this list.
    pub gateways: Vec<String>,
    /// Source addresses client sockets are bound to, in turn.
    pub source_addrs: Vec<IpAddr>,
    /// The clients this worker runs.
    pub users: Vec<UserPlan>,
    /// When and how fast things happen.
    pub schedule: Schedule,
}

/// One simulated user: one connection, one room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserPlan {
    /// The user's name (for logs).
    pub name: String,
    /// An access token for the user.
    pub token: String,
    /// The room it joins.
    pub room: String,
    /// Whether it sends messages (every user receives).
    pub sender: bool,
    /// Index into [`WorkerPlan::gateways`] of the gateway it connects to first.
    pub gateway: usize,
    /// Whether it drops its connection in the middle of the send phase and rejoins with its last seq.
    pub drops: bool,
    /// Whether it stops reading for a while in the send phase, as a client on a stalled network does: the gateway
    /// should close it as a slow consumer (4008), and it rejoins with its last seq.
    pub stalls: bool,
}

/// The timing of a run, shared by all workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Schedule {
    /// Connections are opened evenly over this many milliseconds (0: as fast as `connect_concurrency` allows).
    pub ramp_up_ms: u64,
    /// Connection attempts in flight at once per worker.
    pub connect_concurrency: usize,
    /// A connection attempt (TCP, upgrade, hello) that takes longer fails as `timeout`.
    pub connect_timeout_ms: u64,
    /// Length of the send phase.
    pub duration_ms: u64,
    /// Messages per second per sender.
    pub rate_per_sender: f64,
    /// Most messages one sender sends.
    pub messages_per_sender: u64,
    /// Body size in bytes.
    pub body_bytes: usize,
    /// The share of sends (percent) that are changes to the sender's earlier messages.
    #[serde(default)]
    pub changes_percent: u8,
    /// How long after the send phase a sender waits for its last acks.
    pub ack_timeout_ms: u64,
    /// How long receivers may take to get every acknowledged message once the acks are in.
    pub drain_timeout_ms: u64,
    /// When droppers drop, from the start of the send phase.
    pub drop_at_ms: u64,
    /// How long droppers stay away before rejoining.
    pub drop_for_ms: u64,
    /// When slow readers stop reading, from the start of the send phase.
    pub stall_at_ms: u64,
    /// How long slow readers stop reading.
    pub stall_for_ms: u64,
}

/// A line from the coordinator to a worker (after the plan).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ToWorker {
    /// Start the send phase at this wall-clock time (Unix milliseconds).
    Go {
        /// Start of the send phase.
        start_unix_ms: u64,
    },
    /// Every room's acknowledged seqs, from all workers: what each receiver must end up holding.
    Expect {
        /// Room → acknowledged seqs.
        acked: HashMap<String, Vec<u64>>,
    },
}

/// A line from a worker to the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FromWorker {
    /// Figures of the last second.
    Progress(Progress),
    /// Every client has connected and joined, or failed to.
    Ready {
        /// Clients connected and joined.
        connected: u64,
        /// Clients that could not connect.
        failed: u64,
        /// The worker's CPU seconds (user + system) so far: the connect phase's cost.
        #[serde(default)]
        cpu_secs: f64,
    },
    /// The senders are done: seqs acknowledged to them, by room.
    Acked {
        /// Room → acknowledged seqs.
        acked: HashMap<String, Vec<u64>>,
    },
    /// The worker's final figures.
    Done(Box<WorkerResult>),
    /// The worker cannot go on.
    Failed {
        /// Why.
        message: String,
    },
}

/// What a worker saw in one second.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Connections open now.
    pub open: u64,
    /// Connections opened in the interval.
    pub connected: u64,
    /// Connection attempts failed in the interval.
    pub connect_failed: u64,
    /// Messages sent in the interval.
    pub sent: u64,
    /// Messages delivered to receivers in the interval.
    pub delivered: u64,
    /// Errors (error frames, unexpected closes) in the interval.
    pub errors: u64,
    /// End-to-end latencies of the interval: a serialized histogram, base64.
    pub latency: String,
}

/// A worker's figures for the whole run. Counts add up across workers; histograms merge.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    /// Clients, messages, faults and events, as counted by this worker.
    pub counts: Counts,
    /// The worker's CPU seconds (user + system) at its end, its final accounting included.
    #[serde(default)]
    pub cpu_secs: f64,
    /// Time from starting the TCP connect to the hello frame (serialized histogram, base64).
    pub connect_latency: String,
    /// Time from a message being due to its arrival at each receiver (serialized histogram, base64).
    pub latency: String,
    /// Time from a message being due to its ack (serialized histogram, base64).
    pub ack_latency: String,
    /// Time from the send the gateway took to each arrival (serialized histogram, base64).
    pub accepted_latency: String,
    /// Time from a change to a message being due to its arrival at each receiver (serialized histogram, base64).
    #[serde(default)]
    pub change_latency: String,
    /// Each room's receivers' folded views of its messages (accounting's `Fold`): each digest with how many
    /// receivers hold it. Receivers with a gap the gateway could not replay are left out.
    #[serde(default)]
    pub views: BTreeMap<String, BTreeMap<String, u64>>,
}

impl WorkerResult {
    /// Adds another worker's counts, CPU time and views; the histograms (serialized) are merged by the caller.
    pub fn add(&mut self, other: &WorkerResult) {
        self.counts.add(&other.counts);
        self.cpu_secs += other.cpu_secs;
        merge_views(&mut self.views, &other.views);
    }
}

/// Adds one set of rooms' folded views (see [`WorkerResult::views`]) to another.
pub fn merge_views(into: &mut BTreeMap<String, BTreeMap<String, u64>>, from: &BTreeMap<String, BTreeMap<String, u64>>) {
    for (room, views) in from {
        let into = into.entry(room.clone()).or_default();
        for (digest, receivers) in views {
            *into.entry(digest.clone()).or_default() += receivers;
        }
    }
}
