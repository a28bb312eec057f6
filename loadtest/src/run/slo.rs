//! The SLO verdict: each bound the flags set, against the report's figures.

use super::args::SloArgs;
use crate::report::{Report, SloCheck};

/// The checks of every bound the flags set (and of `--verify-history`'s findings, when it ran).
pub(crate) fn slo_checks(slo: &SloArgs, report: &Report) -> Vec<SloCheck> {
    let mut checks = Vec::new();
    if let Some(bound) = slo.max_p99_ms {
        let actual = report.messages.latency.p99_ms;
        checks.push(SloCheck {
            flag: "--max-p99-ms".into(),
            bound,
            actual,
            passed: actual <= bound,
        });
    }
    if let Some(bound) = slo.max_loss {
        let actual = report.faults.total() + report.messages.counts.unacked;
        checks.push(SloCheck {
            flag: "--max-loss".into(),
            bound: bound as f64,
            actual: actual as f64,
            passed: actual <= bound,
        });
    }
    if let Some(bound) = slo.min_connected {
        let connect = &report.connect.counts;
        let actual = connect.connected as f64 / connect.clients.max(1) as f64;
        checks.push(SloCheck {
            flag: "--min-connected".into(),
            bound,
            actual,
            passed: actual >= bound,
        });
    }
    if let (Some(bound), Some(reads)) = (slo.max_history_p99_ms, &report.history_reads) {
        checks.push(SloCheck {
            flag: "--max-history-p99-ms".into(),
            bound,
            actual: reads.latency.p99_ms,
            passed: reads.latency.p99_ms <= bound && reads.errors == 0,
        });
    }
    if let Some(h) = &report.history {
        checks.push(SloCheck {
            flag: "--verify-history".into(),
            bound: 0.0,
            actual: (h.missing + h.duplicated + h.views_diverged) as f64,
            passed: h.missing == 0 && h.duplicated == 0 && h.views_diverged == 0,
        });
    }
    checks
}
