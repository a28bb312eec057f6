//! Latency recording in HDR histograms (microseconds, 3 significant digits), serialized by workers and merged
//! exactly by the coordinator: percentiles are computed from the merged counts, never averaged across workers.
//!
//! Latency is measured from when a send was *due* (its place in the schedule), not from when the harness got round
//! to sending it, so a stalled harness shows up as latency instead of hiding it (coordinated omission).

use std::time::Duration;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

/// Highest latency recorded: 60 s; longer ones are clamped to it.
const MAX_MICROS: u64 = 60_000_000;

/// Why a histogram could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    /// Serializing failed.
    #[error("cannot serialize a histogram: {0}")]
    Serialize(String),
    /// The bytes are not a serialized histogram.
    #[error("cannot read a histogram: {0}")]
    Deserialize(String),
    /// Two histograms cannot be merged.
    #[error("cannot merge histograms: {0}")]
    Merge(String),
}

/// A latency distribution.
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty distribution.
    pub fn new() -> Self {
        // Bounds are constants that hdrhistogram accepts (low 1, high > 2 × low, 3 significant digits).
        let histogram = Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds");
        Self { histogram }
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        self.histogram.saturating_record(micros);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at `quantile` (0.0 to 1.0).
    pub fn quantile(&self, quantile: f64) -> Duration {
        Duration::from_micros(self.histogram.value_at_quantile(quantile))
    }

    /// Adds another distribution's samples exactly.
    pub fn merge(&mut self, other: &Latencies) -> Result<(), LatencyError> {
        self.histogram
            .add(&other.histogram)
            .map_err(|e| LatencyError::Merge(format!("{e:?}")))
    }

    /// The distribution as bytes, for a worker to send to the coordinator.
    pub fn to_bytes(&self) -> Result<Vec<u8>, LatencyError> {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(&self.histogram, &mut bytes)
            .map_err(|e| LatencyError::Serialize(format!("{e:?}")))?;
        Ok(bytes)
    }

    /// Reads bytes made by [`Latencies::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LatencyError> {
        let histogram: Histogram<u64> = Deserializer::new()
            .deserialize(&mut std::io::Cursor::new(bytes))
            .map_err(|e| LatencyError::Deserialize(format!("{e:?}")))?;
        Ok(Self { histogram })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic spread of latencies from 50 µs to about 2 s.
    fn samples() -> Vec<Duration> {
        (0..20_000u64)
            .map(|i| Duration::from_micros(50 + (i * 7919) % 2_000_000))
            .collect()
    }

    #[test]
    fn merged_worker_histograms_equal_one_process() {
        let all = samples();
        let mut single = Latencies::new();
        all.iter().for_each(|d| single.record(*d));

        // Three workers take the samples unevenly, ship their histograms as bytes, and the coordinator merges.
        let mut merged = Latencies::new();
        for part in [&all[..1000], &all[1000..12_000], &all[12_000..]] {
            let mut worker = Latencies::new();
            part.iter().for_each(|d| worker.record(*d));
            let shipped = Latencies::from_bytes(&worker.to_bytes().expect("serializes")).expect("deserializes");
            merged.merge(&shipped).expect("merges");
        }
        assert_eq!(merged.count(), single.count());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(merged.quantile(q), single.quantile(q), "quantile {q}");
        }
    }

    #[test]
    fn extremes_are_clamped_not_lost() {
        let mut latencies = Latencies::new();
        latencies.record(Duration::ZERO);
        latencies.record(Duration::from_secs(3600));
        assert_eq!(latencies.count(), 2);
        assert!(latencies.quantile(1.0) >= Duration::from_secs(59));
    }

    #[test]
    fn garbage_bytes_are_an_error() {
        assert!(Latencies::from_bytes(b"not a histogram").is_err());
    }
}
