//! Metric names (the contract with the Grafana dashboards).

/// Messages per written batch (histogram).
pub const BATCH_SIZE: &str = "natter_persister_batch_size";
/// Seconds to write and commit one batch (histogram).
pub const INSERT_LATENCY: &str = "natter_persister_insert_latency_seconds";
/// Rows written.
pub const ROWS_WRITTEN: &str = "natter_persister_rows_written_total";
/// Messages already stored (redeliveries), skipped by `ON CONFLICT DO NOTHING`.
pub const DUPLICATES: &str = "natter_persister_duplicates_skipped_total";
/// Deleted messages and their edits erased from the chat stream.
pub const ERASED: &str = "natter_persister_erased_total";
/// Messages moved to the dead-letter table.
pub const DEAD_LETTERED: &str = "natter_persister_dead_lettered_total";
/// Messages the consumer still has to deliver (lag), as last reported by JetStream (gauge).
pub const PENDING: &str = "natter_persister_consumer_pending";
/// Messages delivered more than once.
pub const REDELIVERIES: &str = "natter_persister_redeliveries_total";
/// Failed attempts to write a batch (each is retried).
pub const WRITE_FAILURES: &str = "natter_persister_write_failures_total";
/// Messages handed to a persister and not yet acked, as last reported by JetStream (gauge).
pub const ACK_PENDING: &str = "natter_persister_consumer_ack_pending";
/// Pull streams reopened because they delivered nothing while the consumer had messages waiting.
pub const STALLS: &str = "natter_persister_stream_stalls_total";
/// Times the chat stream was found recreated (a new epoch) and reading went on in it.
pub const STREAM_RECREATED: &str = "natter_persister_stream_recreations_total";
/// The chat stream's epoch: its creation time in Unix microseconds (gauge; it changes when the stream is
/// recreated).
pub const STREAM_EPOCH: &str = "natter_stream_epoch";
/// Day partitions of history dropped for being older than `--history-retention`.
pub const PARTITIONS_DROPPED: &str = "natter_persister_history_partitions_dropped_total";
/// Seconds between a gateway accepting the newest message of the last batch written and its commit; while a
/// batch cannot be written, the age of its oldest message at each failed attempt; 0 once nothing is pending
/// (gauge).
pub const LAG: &str = "natter_persister_lag_seconds";
/// Messages in the chat stream (gauge).
pub const STREAM_MESSAGES: &str = "natter_stream_messages";
/// Bytes in the chat stream (gauge).
pub const STREAM_BYTES: &str = "natter_stream_bytes";
/// The chat stream's first sequence still held (gauge).
pub const STREAM_FIRST_SEQ: &str = "natter_stream_first_seq";
/// The chat stream's last sequence assigned (gauge).
pub const STREAM_LAST_SEQ: &str = "natter_stream_last_seq";
/// The chat stream's byte cap (gauge; 0: none). Full, the stream refuses new messages.
pub const STREAM_MAX_BYTES: &str = "natter_stream_max_bytes";
/// Copies of the chat stream JetStream is configured to keep (gauge).
pub const STREAM_REPLICAS_CONFIGURED: &str = "natter_stream_replicas_configured";
/// The chat stream's copies by `state` (gauge): `current` (the leader and replicas caught up), `lagging`
/// (reachable, behind), `offline` (unreachable).
pub const STREAM_REPLICAS: &str = "natter_stream_replicas";
/// Whether the chat stream has a leader (gauge, 1 or 0): without one nothing can be stored or read.
pub const STREAM_LEADER: &str = "natter_stream_leader";
/// Servers of the NATS cluster, as the server this persister is connected to lists them to clients (its INFO's
/// `connect_urls`; 0 for a server outside a cluster) (gauge): a node that lost its routes lists fewer.
pub const NATS_CLUSTER_SERVERS: &str = "natter_nats_cluster_servers";
/// Notices published right after a commit, one per room per batch, of the sequences written to history.
pub const NOTICES: &str = "natter_persister_persisted_notices_total";
/// Gateways' asks answered (which of some sequences history holds).
pub const ASKS: &str = "natter_persister_persisted_asks_total";

/// Partitions of the chat stream whose leases this persister holds: read, or being handed over (gauge).
pub const PARTITIONS_OWNED: &str = "natter_persister_partitions_owned";
/// Partition leases taken, by `reason`: `vacant` (nobody held it) or `released` (handed over by its holder).
pub const LEASES_TAKEN: &str = "natter_persister_leases_taken_total";
/// Partition leases handed over gracefully (read to the end, written, acked, then released), by `reason`:
/// `rebalance` (more than this persister's share) or `shutdown`.
pub const LEASES_HANDED_OVER: &str = "natter_persister_leases_handed_over_total";
/// Partition leases lost, by `reason`: `superseded` (aged out or taken by another) or `unconfirmed` (no refresh got
/// through in time); reading stopped at once.
pub const LEASES_LOST: &str = "natter_persister_leases_lost_total";

/// Every metric a persister exports besides the shared `process_*` and `natter_nats_*` ones, each from start-up.
pub const ALL: [&str; 31] = [
    BATCH_SIZE,
    ERASED,
    INSERT_LATENCY,
    ROWS_WRITTEN,
    DUPLICATES,
    DEAD_LETTERED,
    PENDING,
    REDELIVERIES,
    WRITE_FAILURES,
    ACK_PENDING,
    STALLS,
    STREAM_RECREATED,
    PARTITIONS_DROPPED,
    LAG,
    STREAM_EPOCH,
    STREAM_MESSAGES,
    STREAM_BYTES,
    STREAM_FIRST_SEQ,
    STREAM_LAST_SEQ,
    STREAM_MAX_BYTES,
    STREAM_REPLICAS_CONFIGURED,
    STREAM_REPLICAS,
    STREAM_LEADER,
    NATS_CLUSTER_SERVERS,
    NOTICES,
    ASKS,
    PARTITIONS_OWNED,
    LEASES_TAKEN,
    LEASES_HANDED_OVER,
    LEASES_LOST,
    natter_service::MAX_FDS,
];

/// Describes every metric and registers each series at zero. Called once at start-up.
pub fn register() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    let _ = natter_service::metrics_handle();
    describe_histogram!(BATCH_SIZE, "Messages per written batch.");
    describe_histogram!(INSERT_LATENCY, Unit::Seconds, "Writing and committing one batch.");
    describe_counter!(ROWS_WRITTEN, "Rows written.");
    describe_counter!(DUPLICATES, "Redelivered messages already stored, skipped.");
    describe_counter!(ERASED, "Deleted messages and their edits erased from the chat stream.");
    describe_counter!(DEAD_LETTERED, "Messages moved to the dead-letter table.");
    describe_gauge!(
        PENDING,
        "Messages a partition's consumer has yet to deliver, by partition read here."
    );
    describe_counter!(REDELIVERIES, "Messages delivered more than once.");
    describe_counter!(WRITE_FAILURES, "Failed attempts to write a batch (each retried).");
    describe_gauge!(ACK_PENDING, "Messages delivered to persisters and not yet acked.");
    describe_counter!(
        STALLS,
        "Pull streams reopened for delivering nothing while messages waited."
    );
    describe_counter!(
        STREAM_RECREATED,
        "Times the chat stream was found recreated (a new epoch)."
    );
    describe_counter!(
        PARTITIONS_DROPPED,
        "Day partitions of history dropped for being older than the retention."
    );
    describe_gauge!(STREAM_EPOCH, "The chat stream's creation time in Unix microseconds.");
    describe_gauge!(
        LAG,
        Unit::Seconds,
        "Acceptance of the newest written message to its commit."
    );
    describe_gauge!(STREAM_MESSAGES, "Messages in the chat stream.");
    describe_gauge!(STREAM_BYTES, Unit::Bytes, "Bytes in the chat stream.");
    describe_gauge!(STREAM_FIRST_SEQ, "The chat stream's first sequence still held.");
    describe_gauge!(STREAM_LAST_SEQ, "The chat stream's last sequence.");
    describe_gauge!(STREAM_MAX_BYTES, Unit::Bytes, "The chat stream's byte cap (0: none).");
    describe_gauge!(STREAM_REPLICAS_CONFIGURED, "Copies of the chat stream configured.");
    describe_gauge!(
        STREAM_REPLICAS,
        "The chat stream's copies by state: current, lagging or offline."
    );
    describe_gauge!(STREAM_LEADER, "Whether the chat stream has a leader (1) or not (0).");
    describe_gauge!(
        NATS_CLUSTER_SERVERS,
        "Servers of the NATS cluster as the connected server lists them (0 outside a cluster)."
    );
    describe_counter!(
        NOTICES,
        "Notices of the sequences a commit wrote to history, one per room per batch."
    );
    describe_counter!(ASKS, "Gateways' asks answered about which sequences history holds.");
    describe_gauge!(natter_service::MAX_FDS, "The most files this process may hold open.");
    describe_gauge!(
        PARTITIONS_OWNED,
        "Partitions of the chat stream whose leases this persister holds."
    );
    describe_counter!(LEASES_TAKEN, "Partition leases taken, by why they were free.");
    describe_counter!(LEASES_HANDED_OVER, "Partition leases handed over gracefully, by why.");
    describe_counter!(LEASES_LOST, "Partition leases lost (reading stopped at once), by why.");
    for reason in crate::leases::Taken::ALL {
        ::metrics::counter!(LEASES_TAKEN, "reason" => reason.label()).absolute(0);
    }
    for reason in crate::ownership::Handover::ALL {
        ::metrics::counter!(LEASES_HANDED_OVER, "reason" => reason.label()).absolute(0);
    }
    for reason in crate::leases::Lost::ALL {
        ::metrics::counter!(LEASES_LOST, "reason" => reason.label()).absolute(0);
    }
    for name in [
        ROWS_WRITTEN,
        ERASED,
        DUPLICATES,
        DEAD_LETTERED,
        REDELIVERIES,
        WRITE_FAILURES,
        STALLS,
        STREAM_RECREATED,
        PARTITIONS_DROPPED,
        NOTICES,
        ASKS,
    ] {
        ::metrics::counter!(name).absolute(0);
    }
    for partition in 0..natter_proto::subject::PARTITIONS {
        ::metrics::gauge!(PENDING, "partition" => partition.to_string()).set(0.0);
    }
    for state in ["current", "lagging", "offline"] {
        ::metrics::gauge!(STREAM_REPLICAS, "state" => state).set(0.0);
    }
    for name in [
        ACK_PENDING,
        LAG,
        STREAM_EPOCH,
        STREAM_MESSAGES,
        STREAM_BYTES,
        STREAM_FIRST_SEQ,
        STREAM_LAST_SEQ,
        STREAM_MAX_BYTES,
        STREAM_REPLICAS_CONFIGURED,
        STREAM_LEADER,
        NATS_CLUSTER_SERVERS,
        PARTITIONS_OWNED,
    ] {
        ::metrics::gauge!(name).set(0.0);
    }
    let _ = ::metrics::histogram!(BATCH_SIZE);
    let _ = ::metrics::histogram!(INSERT_LATENCY);
}
