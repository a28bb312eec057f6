//! Which partitions this persister reads. Every [`REFRESH`] it refreshes the leases it holds (a partition whose
//! lease is lost stops being read at once), renews its membership and surveys the bucket: holding more than its
//! share of the live persisters, it hands the extras over gracefully; holding fewer, it takes free partitions up
//! to its share. Each partition held is read by its own [`Reader`], and every reader feeds the same writers. On
//! shutdown it hands every partition over and leaves.

use std::collections::BTreeMap;
use std::sync::Arc;

use natter_proto::subject::PARTITIONS;
use tokio::sync::{mpsc, watch};

use crate::backlog::Backlog;
use crate::consumer::{Batch, Batching};
use crate::leases::{self, Leases, Lost, REFRESH};
use crate::metrics;
use crate::reader::{Ended, Reader};
use crate::source::Source;

/// Why a partition is handed over: the `reason` label of `natter_persister_leases_handed_over_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    /// This persister held more than its share after another one appeared.
    Rebalance,
    /// This persister is stopping.
    Shutdown,
}

impl Handover {
    /// Every reason, for registering the counter's series.
    pub const ALL: [Handover; 2] = [Handover::Rebalance, Handover::Shutdown];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Handover::Rebalance => "rebalance",
            Handover::Shutdown => "shutdown",
        }
    }
}

/// A partition whose lease this persister holds.
enum Owned {
    /// Being read.
    Reading(Reader),
    /// Being handed over: no longer pulled, its batches still being written; the lease goes once they are acked.
    HandingOver(Handover),
}

/// The partitions this persister holds and what it does with them.
pub struct Ownership {
    leases: Leases,
    source: Source,
    batching: Batching,
    /// The writers' input, cloned into every reader; the writers end once this and every reader's clone are gone.
    batches: mpsc::Sender<Batch>,
    backlog: Arc<Backlog>,
    owned: BTreeMap<u8, Owned>,
    /// The partition free ones are first tried from, this persister's own: two newcomers mostly try different
    /// ones rather than racing for the same.
    start_at: u8,
    /// Whether the bucket failed to answer the last time it was asked (an outage is logged once).
    bucket_failing: bool,
}

impl Ownership {
    /// Holds nothing yet: partitions are taken from the first round of [`Ownership::run`].
    pub fn new(
        leases: Leases,
        source: Source,
        batching: Batching,
        batches: mpsc::Sender<Batch>,
        backlog: Arc<Backlog>,
    ) -> Self {
        let start_at = leases
            .id()
            .bytes()
            .fold(0u32, |hash, byte| hash.wrapping_mul(31).wrapping_add(byte.into()))
            % u32::from(PARTITIONS);
        Self {
            leases,
            source,
            batching,
            batches,
            backlog,
            owned: BTreeMap::new(),
            // Below PARTITIONS, a u8.
            start_at: start_at as u8,
            bucket_failing: false,
        }
    }

    /// Takes, keeps and hands over partitions every [`REFRESH`] until `stop` turns true; then hands every
    /// partition over (each read to its end, written and acked, then its lease deleted) and ends the membership.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        // Each handover's task says here when everything it read is acked.
        let (handed_tx, mut handed) = mpsc::unbounded_channel::<u8>();
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = false;
        loop {
            tokio::select! {
                _ = tick.tick() => self.round(stopping, &handed_tx).await,
                Some(partition) = handed.recv() => self.release(partition).await,
                // (The guard it answers with is not held across an await.)
                () = async { let _ = stop.wait_for(|s| *s).await; }, if !stopping => {
                    stopping = true;
                    let reading = self.reading();
                    tracing::info!(partitions = ?reading, "stopping: handing every partition over");
                    for partition in reading {
                        self.hand_over(partition, Handover::Shutdown, &handed_tx);
                    }
                }
            }
            if stopping && self.owned.is_empty() {
                break;
            }
        }
        if let Err(err) = self.leases.leave().await {
            tracing::debug!(error = %err, "ending the membership failed; it ages out");
        }
    }

    /// One round: refresh the leases, then (unless stopping) survey the bucket and take or hand over partitions
    /// towards this persister's share.
    async fn round(&mut self, stopping: bool, handed: &mpsc::UnboundedSender<u8>) {
        let lost = self.leases.refresh().await;
        if !lost.is_empty() {
            tracing::warn!(
                partitions = ?lost.iter().map(|(p, why)| (*p, why.label())).collect::<Vec<_>>(),
                "partition leases lost; stopped reading them at once"
            );
        }
        for (partition, why) in lost {
            ::metrics::counter!(metrics::LEASES_LOST, "reason" => why.label()).increment(1);
            // One being handed over finishes writing what it read; its lease is gone already.
            if let Some(Owned::Reading(reader)) = self.owned.remove(&partition) {
                reader.abandon();
            }
        }
        // A reader that stopped by itself reads nothing. One whose lease went unconfirmed past its deadline counts
        // as lost: its lease is forgotten here (taken back in a later round if it is still under this persister's
        // id). One that failed (a bug: it panicked) lets its lease go for another to take.
        let mut ended = Vec::new();
        for (partition, owned) in &mut self.owned {
            if let Owned::Reading(reader) = owned
                && let Some(why) = reader.ended()
            {
                ended.push((*partition, why));
            }
        }
        for (partition, why) in ended {
            self.owned.remove(&partition);
            match why {
                Ended::Unconfirmed => {
                    tracing::warn!(
                        partition,
                        "a partition's lease went unconfirmed; stopped reading it at once"
                    );
                    ::metrics::counter!(metrics::LEASES_LOST, "reason" => Lost::Unconfirmed.label()).increment(1);
                    self.leases.forget(partition);
                }
                Ended::Failed => {
                    tracing::error!(partition, "a partition's reader failed; letting the partition go");
                    self.leases.release(partition).await;
                }
            }
        }
        for (partition, owned) in &self.owned {
            if let (Owned::Reading(reader), Some(until)) = (owned, self.leases.confirmed_until(*partition)) {
                reader.confirm(until);
            }
        }
        if !stopping {
            self.rebalance(handed).await;
        }
        ::metrics::gauge!(metrics::PARTITIONS_OWNED).set(self.owned.len() as f64);
    }

    /// Takes free partitions up to this persister's share, or hands over those beyond it.
    async fn rebalance(&mut self, handed: &mpsc::UnboundedSender<u8>) {
        let surveyed = match self.leases.heartbeat().await {
            Ok(()) => self.leases.survey().await,
            Err(err) => Err(err),
        };
        let survey = match surveyed {
            Ok(survey) => {
                if std::mem::take(&mut self.bucket_failing) {
                    tracing::info!("the lease bucket answers again");
                }
                survey
            }
            Err(err) => {
                if !std::mem::replace(&mut self.bucket_failing, true) {
                    tracing::warn!(
                        error = %err,
                        "the lease bucket does not answer: reading on what is held while its leases are confirmed"
                    );
                }
                return;
            }
        };
        let share = leases::share(survey.members);
        let reading = self.reading();
        if reading.len() > share {
            let extra: Vec<u8> = reading.iter().rev().take(reading.len() - share).copied().collect();
            tracing::info!(partitions = ?extra, share, members = survey.members, "handing partitions over");
            for partition in extra {
                self.hand_over(partition, Handover::Rebalance, handed);
            }
            return;
        }
        let mut wanted = share - reading.len();
        let mut taken = Vec::new();
        let from = survey.free.iter().position(|p| *p >= self.start_at).unwrap_or(0);
        for &partition in survey.free[from..].iter().chain(&survey.free[..from]) {
            if wanted == 0 {
                break;
            }
            // Still being read or handed over here (its lease aged out meanwhile, which the next refresh finds):
            // a second reader of it would replace the first without stopping it.
            if self.owned.contains_key(&partition) {
                continue;
            }
            match self.leases.take(partition).await {
                Ok(Some(why)) => {
                    ::metrics::counter!(metrics::LEASES_TAKEN, "reason" => why.label()).increment(1);
                    // Just written, so confirmed.
                    let Some(until) = self.leases.confirmed_until(partition) else {
                        continue;
                    };
                    let reader = Reader::start(
                        partition,
                        self.source.clone(),
                        self.batching,
                        self.batches.clone(),
                        self.backlog.clone(),
                        until,
                    );
                    self.owned.insert(partition, Owned::Reading(reader));
                    taken.push((partition, why.label()));
                    wanted -= 1;
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::debug!(partition, error = %err, "taking a partition failed; trying again next round");
                    break;
                }
            }
        }
        if !taken.is_empty() {
            tracing::info!(partitions = ?taken, share, members = survey.members, "partitions taken");
        }
    }

    /// The partitions being read, in order.
    fn reading(&self) -> Vec<u8> {
        self.owned
            .iter()
            .filter(|(_, owned)| matches!(owned, Owned::Reading(_)))
            .map(|(partition, _)| *partition)
            .collect()
    }

    /// Starts handing partition `partition` over: its reader reads what its pull stream holds and stops, and once
    /// everything it read is acked, `handed` hears of it and the lease is released.
    fn hand_over(&mut self, partition: u8, why: Handover, handed: &mpsc::UnboundedSender<u8>) {
        if let Some(Owned::Reading(reader)) = self.owned.remove(&partition) {
            self.owned.insert(partition, Owned::HandingOver(why));
            let handed = handed.clone();
            tokio::spawn(async move {
                reader.hand_over().await;
                let _ = handed.send(partition);
            });
        }
    }

    /// Partition `partition`'s handover is done: its lease goes, for another persister to take at once.
    async fn release(&mut self, partition: u8) {
        // Lost meanwhile (and maybe taken again since), nothing is left to release.
        let Some(Owned::HandingOver(why)) = self.owned.get(&partition) else {
            return;
        };
        let why = *why;
        self.owned.remove(&partition);
        if self.leases.release(partition).await {
            ::metrics::counter!(metrics::LEASES_HANDED_OVER, "reason" => why.label()).increment(1);
            tracing::info!(partition, reason = why.label(), "partition handed over");
        } else {
            tracing::warn!(
                partition,
                "a partition handed over kept its lease (the bucket did not answer); it is free once that ages out"
            );
        }
        ::metrics::gauge!(metrics::PARTITIONS_OWNED).set(self.owned.len() as f64);
    }
}
