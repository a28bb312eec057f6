//! A whole harness run against a real fleet: NATS, PostgreSQL, the auth API in its load-test mode, two gateways and
//! a persister. Nothing may be lost while clients drop and rejoin, or while a gateway drains; every acknowledged
//! message must be in the history exactly once.

use natter_test_support::stack::Stack;
use serde_json::Value;

use crate::{run_harness, said};

const KEY: &str = "fleet-test-load-test-key";

/// NATS, PostgreSQL, the auth API in load-test mode, two gateways and a persister, each a process.
pub(crate) async fn fleet() -> Stack {
    Stack::builder()
        .gateways(2)
        .persisters(1)
        .load_test_key(KEY)
        .start()
        .await
}

pub(crate) fn args(fleet: &Stack, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--api", &fleet.api_url(), "--load-test-key", KEY]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for gateway in fleet.gateways() {
        args.extend([
            "--gateway".into(),
            gateway.ws_url(),
            "--metrics".into(),
            gateway.admin_url("/metrics"),
        ]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

pub(crate) fn clean(report: &Value) -> bool {
    let f = &report["faults"];
    f["lost"] == 0 && f["duplicates"] == 0 && f["reordered"] == 0 && f["unrecovered"] == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_drop_and_rejoin_miss_nothing_and_history_holds_every_ack() {
    let fleet = fleet().await;
    let args = args(
        &fleet,
        &[
            "--scenario",
            "reconnect",
            "--users",
            "120",
            "--rooms",
            "4",
            "--room-sizes",
            "zipf",
            "--senders",
            "2",
            "--rate",
            "10",
            "--duration",
            "4s",
            "--ramp-up",
            "1s",
            "--workers",
            "2",
            "--reconnect-share",
            "0.3",
            "--reconnect-after",
            "500ms",
            "--verify-history",
            "--history-readers",
            "2",
            "--max-history-p99-ms",
            "2000",
            "--max-loss",
            "0",
            "--min-connected",
            "1",
        ],
    );
    let (output, report) = run_harness(&args).await;
    assert!(output.status.success(), "{}", said(&output));
    assert!(clean(&report), "{}", said(&output));
    assert_eq!(report["connect"]["connected"], 120);
    assert!(
        report["reconnects"].as_u64().expect("reconnects") >= 30,
        "a share rejoined: {}",
        said(&output)
    );
    let acked = report["messages"]["acked"].as_u64().expect("acked");
    assert!(acked >= 60, "8 senders at 10/s for 4s: {}", said(&output));
    assert_eq!(report["messages"]["unacked"], 0);
    assert_eq!(report["history"]["checked"], acked);
    assert_eq!(report["history"]["missing"], 0);
    assert_eq!(report["history"]["duplicated"], 0);
    // Two readers, a page every 100 ms each through the 4 s of sending.
    let reads = &report["history_reads"];
    assert!(reads["pages"].as_u64().is_some_and(|p| p >= 20), "{}", said(&output));
    assert_eq!(reads["errors"], 0, "{}", said(&output));
    assert!(reads["latency"]["p99_ms"].as_f64().is_some_and(|p| p > 0.0));
    assert!(
        report["slo"]
            .as_array()
            .expect("slo")
            .iter()
            .any(|c| c["flag"] == "--max-history-p99-ms" && c["passed"] == true),
        "{}",
        said(&output)
    );
    let per_conn = report["gateway_metrics"]["memory_per_connection_bytes"].as_f64();
    assert!(
        per_conn.is_some_and(|b| b > 0.0),
        "gateway memory read from /metrics: {}",
        said(&output)
    );
    assert!(!report["timeline"].as_array().expect("timeline").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_drained_under_load_loses_nothing() {
    let fleet = fleet().await;
    let args = args(
        &fleet,
        &[
            "--users",
            "80",
            "--rooms",
            "2",
            "--senders",
            "2",
            "--rate",
            "10",
            "--duration",
            "5s",
            "--ramp-up",
            "500ms",
            "--workers",
            "2",
            "--max-loss",
            "0",
        ],
    );
    let draining = fleet.gateway(0);
    let harness = tokio::spawn(async move { run_harness(&args).await });
    // Half-way through the send phase (after setup and the ramp-up), the first gateway drains: its clients are
    // closed with 1012 and rejoin the other from their last seq.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    draining.terminate();
    let (output, report) = harness.await.expect("harness task");
    let exit = draining.wait_exit(std::time::Duration::from_secs(10)).await;
    assert!(
        exit.as_ref().is_some_and(|e| e.expected),
        "the drained gateway exited 0: {exit:?}"
    );
    assert!(output.status.success(), "{}", said(&output));
    assert!(clean(&report), "{}", said(&output));
    assert!(
        report["close_codes"]["1012"].as_u64().unwrap_or(0) >= 1,
        "the drain closed clients: {}",
        said(&output)
    );
    assert!(report["reconnects"].as_u64().unwrap_or(0) >= 1, "{}", said(&output));
}
