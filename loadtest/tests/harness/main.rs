//! The harness itself under test: its accounting against a server that injects faults, a whole run against a
//! real fleet (NATS, PostgreSQL, auth API, two gateways, persister), a capacity search on one worker, and the fault
//! suite (`chaos`): runs against a stack of real processes while one of them is killed, frozen, cut off or its
//! stream deleted.

mod capacity;
mod chaos;
mod cluster;
mod faults;
mod fleet;
mod mixed;

use std::process::Output;

/// Runs `natter-loadtest run` with `args`, returning its output and parsed JSON report.
pub async fn run_harness(args: &[String]) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let report = dir.path().join("report.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter-loadtest"))
        .arg("run")
        .args(args)
        .arg("--report")
        .arg(&report)
        .arg("--plot")
        .arg(dir.path().join("plots"))
        .arg("--quiet")
        .output()
        .await
        .expect("run the harness");
    let text = std::fs::read_to_string(&report).unwrap_or_else(|_| {
        panic!(
            "no report; stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    for plot in ["latency-over-time.svg", "latency-distribution.svg"] {
        let svg = std::fs::read_to_string(dir.path().join("plots").join(plot)).expect("plot written");
        assert!(svg.trim_start().starts_with("<svg"), "{plot} is an SVG");
    }
    (output, serde_json::from_str(&text).expect("report is JSON"))
}

/// The harness's own words, for assertion messages.
pub fn said(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
