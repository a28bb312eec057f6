//! `--scenario capacity` against a real fleet: two small steps of a rising user count on one worker, each with
//! its figures and the harness's CPU, and the verdict. Nothing here bounds time or CPU (the machine is shared with
//! other tests); the steps' figures must be there and consistent.

use crate::fleet::{args, fleet};
use crate::said;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_steps_up_the_users_on_one_worker_and_reports_each_step() {
    let fleet = fleet().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("capacity.json");
    let args = args(
        &fleet,
        &[
            "--scenario",
            "capacity",
            "--users",
            "200",
            "--rooms",
            "2",
            "--rate",
            "5",
            "--duration",
            "2s",
            "--ramp-up",
            "500ms",
            "--step-factor",
            "1.5",
            "--max-steps",
            "2",
            // Generous: a step that breaks only because the shared machine was busy would end the test early.
            "--max-p99-ms",
            "5000",
            "--quiet",
        ],
    );
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter-loadtest"))
        .arg("run")
        .args(&args)
        .arg("--report")
        .arg(&path)
        .output()
        .await
        .expect("run the harness");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("no report: {}", said(&output)));
    let report: serde_json::Value = serde_json::from_str(&text).expect("report is JSON");
    assert!(output.status.success(), "{}", said(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The table, for whoever runs the test with its output shown.
    eprintln!("{stdout}");
    assert!(stdout.contains("most users that held: 300"), "{}", said(&output));

    assert_eq!(report["room_size"], 100);
    assert_eq!(report["settings"]["workers"], 1, "one worker: {}", said(&output));
    let steps = report["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{}", said(&output));
    for (step, (users, rooms)) in steps.iter().zip([(200, 2), (300, 3)]) {
        assert_eq!(step["users"], users, "{}", said(&output));
        assert_eq!(step["rooms"], rooms, "{}", said(&output));
        assert_eq!(step["held"], true, "{}", said(&output));
        assert_eq!(step["faults"], 0, "{}", said(&output));
        // One sender per room at 5/s, each message to every member of its room: hundreds a second.
        assert!(
            step["delivered_per_sec"].as_f64().is_some_and(|d| d > 100.0),
            "{}",
            said(&output)
        );
        assert!(
            step["cpu_per_delivery_us"].as_f64().is_some_and(|us| us > 0.0),
            "{}",
            said(&output)
        );
        assert!(
            step["cpu_per_connection_us"].as_f64().is_some_and(|us| us > 0.0),
            "{}",
            said(&output)
        );
        assert!(
            step["cpu_share"].as_f64().is_some_and(|share| share > 0.0),
            "{}",
            said(&output)
        );
    }
    assert_eq!(report["most_held"]["users"], 300);
    assert!(
        report["cpu_per_user_us"].as_f64().is_some_and(|us| us > 0.0),
        "{}",
        said(&output)
    );
    assert_eq!(report["ended"], "--max-steps 2 ran", "{}", said(&output));
}
