//! A mixed run against a real fleet: a share of the sends are edits, reactions, deletions and replies, each an
//! event of its room's chain, acked, delivered and stored like a message. Light enough to share the machine with
//! other tests (it holds no bound on time), so it is not among the fleet runs that run alone.

use crate::fleet::{args, clean, fleet};
use crate::{run_harness, said};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mix_of_messages_and_changes_loses_nothing_and_history_holds_every_one() {
    let fleet = fleet().await;
    let args = args(
        &fleet,
        &[
            "--users",
            "60",
            "--rooms",
            "3",
            "--senders",
            "2",
            "--rate",
            "10",
            "--duration",
            "3s",
            "--ramp-up",
            "1s",
            "--workers",
            "2",
            "--changes",
            "40",
            "--verify-history",
            "--max-loss",
            "0",
            "--min-connected",
            "1",
        ],
    );
    let (output, report) = run_harness(&args).await;
    assert!(output.status.success(), "{}", said(&output));
    assert!(clean(&report), "{}", said(&output));
    let messages = &report["messages"];
    let acked = messages["acked"].as_u64().expect("acked");
    assert!(acked >= 40, "6 senders at 10/s for 3s: {}", said(&output));
    assert_eq!(messages["unacked"], 0, "no change refused: {}", said(&output));
    assert!(
        report["error_codes"].as_object().is_none_or(|codes| codes.is_empty()),
        "no frame refused: {}",
        said(&output)
    );
    // Changes were made, delivered and timed apart from messages.
    assert!(
        messages["change_latency"]["count"].as_u64().is_some_and(|n| n > 0),
        "{}",
        said(&output)
    );
    assert_eq!(report["history"]["checked"], acked);
    assert_eq!(report["history"]["missing"], 0);
    assert_eq!(report["history"]["duplicated"], 0);
    // Every receiver folded the changes into the same view of its room's messages as the history serves.
    assert_eq!(report["history"]["views_compared"], 60, "{}", said(&output));
    assert_eq!(report["history"]["views_diverged"], 0, "{}", said(&output));
}
