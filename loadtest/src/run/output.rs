//! What a run writes besides its summary: the JSON report (`--report`) and the latency plots (`--plot`).

use anyhow::Context;

use super::args::RunArgs;
use crate::latency::Latencies;
use crate::report::{Report, Second};

/// Writes the JSON report and the plots, where the flags ask for them.
pub(crate) fn write(args: &RunArgs, report: &Report, latency: &Latencies) -> anyhow::Result<()> {
    if let Some(path) = &args.output.report {
        let json = serde_json::to_vec_pretty(report)?;
        std::fs::write(path, json).with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    if let Some(dir) = &args.output.plot {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let points: Vec<_> = report.timeline.iter().map(Second::point).collect();
        let title = format!(
            "natter-loadtest {:?}: {} users, {} rooms",
            args.common.scenario, args.load.users, args.load.rooms
        );
        std::fs::write(
            dir.join("latency-over-time.svg"),
            crate::plot::latency_over_time(&title, &points),
        )?;
        let spectrum: Vec<(f64, f64)> = percentile_spectrum(latency);
        std::fs::write(
            dir.join("latency-distribution.svg"),
            crate::plot::latency_distribution(&title, &spectrum),
        )?;
    }
    Ok(())
}

/// (percentile, ms) pairs for the distribution plot.
fn percentile_spectrum(latency: &Latencies) -> Vec<(f64, f64)> {
    if latency.count() == 0 {
        return Vec::new();
    }
    let mut points = Vec::new();
    let mut p: f64 = 0.0;
    // Halve the distance to 100% each step, like HdrHistogram's percentile output.
    while p < 99.9999 {
        points.push((p, latency.quantile(p / 100.0).as_secs_f64() * 1000.0));
        let gap = 100.0 - p;
        p += gap / 8.0;
        p = (p * 1e6).round() / 1e6;
    }
    points.push((100.0, latency.quantile(1.0).as_secs_f64() * 1000.0));
    points
}
