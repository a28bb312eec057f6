//! Metric names (the contract with the Grafana dashboards).

/// Messages per written batch (histogram).
pub const BATCH_SIZE: &str = "natter_persister_batch_size";
/// Seconds to write and commit one batch (histogram).
pub const INSERT_LATENCY: &str = "natter_persister_insert_latency_seconds";
/// Rows written.
pub const ROWS_WRITTEN: &str = "natter_persister_rows_written_total";
/// Messages already stored (redeliveries), skipped by `ON CONFLICT DO NOTHING`.
pub const DUPLICATES: &str = "natter_persister_duplicates_skipped_total";
/// Messages moved to the dead-letter table.
pub const DEAD_LETTERED: &str = "natter_persister_dead_lettered_total";
/// Messages the consumer still has to deliver (lag), as last reported by JetStream (gauge).
pub const PENDING: &str = "natter_persister_consumer_pending";
/// Messages delivered more than once.
pub const REDELIVERIES: &str = "natter_persister_redeliveries_total";
/// Failed attempts to write a batch (each is retried).
pub const WRITE_FAILURES: &str = "natter_persister_write_failures_total";
