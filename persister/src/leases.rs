//! Partition leases in a NATS KV bucket: which persister reads which partition of the chat stream, and which
//! persisters are alive.
//!
//! The bucket ([`BUCKET`]) holds a key per partition (`p00`…`p15`, the holder's id as value) and a key per live
//! persister (`m.{id}`). nats-server 2.9 has no per-key TTL, so the bucket's max age ([`TTL`]) is the lease's life:
//! a holder writes its keys again every [`REFRESH`], each lease with a revision-checked update (so a lease that
//! lapsed and was taken by another is never written back), and a dead holder's keys age out. A free partition is
//! taken with a create that fails when the key exists; a partition handed over is deleted, revision-checked.
//!
//! A holder that cannot confirm a lease for [`FENCE`] stops reading that partition and lets the lease go, well
//! before it can age out and be taken: two persisters never pull from one partition's consumer at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use natter_proto::subject::PARTITIONS;
use tokio::time::Instant;

/// The bucket of partition leases and persister memberships.
pub const BUCKET: &str = "natter-persister-leases";

/// How long a key lives unless written again (the bucket's max age): a dead persister's leases are free after
/// this.
pub const TTL: Duration = Duration::from_secs(10);

/// How often a persister writes its leases and its membership again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// Longest a partition is read without a refresh of its lease that got through, counted from when that refresh was
/// sent (the key's age is counted from no earlier): far enough inside [`TTL`] that reading has stopped before the
/// lease can age out and another persister take it.
pub const FENCE: Duration = Duration::from_secs(5);

/// Longest wait for one answer from the bucket: a refresh that takes longer counts as not confirmed.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The key of partition `partition`'s lease.
pub fn key(partition: u8) -> String {
    format!("p{partition:02}")
}

/// The key of persister `id`'s membership.
fn member_key(id: &str) -> String {
    format!("m.{id}")
}

/// How many partitions each of `members` live persisters aims at: every partition has a reader when each holds
/// its share.
pub fn share(members: usize) -> usize {
    usize::from(PARTITIONS).div_ceil(members.max(1))
}

/// Why a lease was taken: the `reason` label of `natter_persister_leases_taken_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Nobody held it: never taken, or its holder's lease aged out (the holder died or was cut off).
    Vacant,
    /// Its holder handed it over (a rebalance, a persister stopping).
    Released,
}

impl Taken {
    /// Every reason, for registering the counter's series.
    pub const ALL: [Taken; 2] = [Taken::Vacant, Taken::Released];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Taken::Vacant => "vacant",
            Taken::Released => "released",
        }
    }
}

/// Why a lease was lost: the `reason` label of `natter_persister_leases_lost_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The bucket refused the refresh: the lease aged out, or another persister holds it now.
    Superseded,
    /// No refresh got through for [`FENCE`] (NATS unreachable or too slow): given up before it could age out.
    Unconfirmed,
}

impl Lost {
    /// Every reason, for registering the counter's series.
    pub const ALL: [Lost; 2] = [Lost::Superseded, Lost::Unconfirmed];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Lost::Superseded => "superseded",
            Lost::Unconfirmed => "unconfirmed",
        }
    }
}

/// What went wrong asking the bucket.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer within [`ANSWER_WITHIN`].
    #[error("the lease bucket did not answer within {ANSWER_WITHIN:?}")]
    TimedOut,
    /// A revision-checked write found the key at another revision.
    #[error("the lease changed under a revision-checked write")]
    Conflict,
    /// JetStream answered with another error, or the connection failed.
    #[error("the lease bucket refused: {0}")]
    Refused(String),
}

/// Waits for `request` up to [`ANSWER_WITHIN`].
async fn answer<T, E: std::fmt::Display>(request: impl Future<Output = Result<T, E>>) -> Result<T, Error> {
    match tokio::time::timeout(ANSWER_WITHIN, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(Error::Refused(err.to_string())),
        Err(_) => Err(Error::TimedOut),
    }
}

/// What the bucket says of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    /// Live persisters, this one included.
    pub members: usize,
    /// Partitions nobody holds, in order.
    pub free: Vec<u8>,
}

/// A lease this persister holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// The revision of its key last written by this persister: the next refresh must find it unchanged.
    revision: u64,
    /// When the write of that revision was sent.
    confirmed: Instant,
}

/// This persister's view of the bucket: the leases it holds, under its id.
pub struct Leases {
    kv: kv::Store,
    /// This persister's id: the value of every lease it holds, unique among live persisters.
    id: String,
    held: BTreeMap<u8, Held>,
    /// How many persisters the last listing of members found.
    members_seen: Option<usize>,
}

impl Leases {
    /// Opens the bucket (with `replicas` copies when this process creates it) for persister `id`. A bucket made
    /// otherwise is refused: the leases' safety rests on its max age.
    pub async fn open(js: &jetstream::Context, id: &str, replicas: usize) -> anyhow::Result<Self> {
        let kv = match js.get_key_value(BUCKET).await {
            Ok(kv) => kv,
            Err(_) => {
                // Made as a stream with a KV bucket's settings: the client's own KV creation asks for settings newer
                // than nats-server 2.9 (see natter-stream's `sessions`).
                let config = jetstream::stream::Config {
                    name: format!("KV_{BUCKET}"),
                    description: Some("Natter persisters' partition leases and memberships".to_owned()),
                    subjects: vec![format!("$KV.{BUCKET}.>")],
                    max_messages_per_subject: 1,
                    max_age: TTL,
                    // JetStream requires the duplicate window to fit in the max age.
                    duplicate_window: TTL,
                    storage: jetstream::stream::StorageType::File,
                    discard: jetstream::stream::DiscardPolicy::New,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    num_replicas: replicas.max(1),
                    ..Default::default()
                };
                natter_stream::get_or_create(js, config)
                    .await
                    .map_err(|e| anyhow::anyhow!("failed to create the {BUCKET} bucket: {e:#}"))?;
                js.get_key_value(BUCKET)
                    .await
                    .map_err(|e| anyhow::anyhow!("failed to open the {BUCKET} bucket: {e}"))?
            }
        };
        let max_age = kv.stream.cached_info().config.max_age;
        anyhow::ensure!(
            max_age == TTL,
            "the {BUCKET} bucket keeps entries {max_age:?}, not {TTL:?}: a dead persister's partitions would not be \
             freed in time; delete the bucket (nats kv rm {BUCKET}) and the persisters make it again"
        );
        Ok(Self {
            kv,
            id: id.to_owned(),
            held: BTreeMap::new(),
            members_seen: None,
        })
    }

    /// This persister's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The partitions whose leases this persister holds.
    pub fn held(&self) -> impl Iterator<Item = u8> + '_ {
        self.held.keys().copied()
    }

    /// Until when partition `partition` may be read: [`FENCE`] after the last write of its lease that got through
    /// was sent. `None` when it is not held.
    pub fn confirmed_until(&self, partition: u8) -> Option<Instant> {
        self.held.get(&partition).map(|held| held.confirmed + FENCE)
    }

    /// Stops holding partition `partition`'s lease without deleting it: it ages out, unless this persister takes
    /// it again first (a take finds it under this persister's id).
    pub fn forget(&mut self, partition: u8) {
        self.held.remove(&partition);
    }

    /// Writes every lease held again, each revision-checked, at once. Returns the leases lost, which are no longer
    /// held: refused by the bucket (aged out or taken), or unconfirmed for [`FENCE`].
    pub async fn refresh(&mut self) -> Vec<(u8, Lost)> {
        let sent = Instant::now();
        let this = &*self;
        let writes = this
            .held
            .iter()
            .map(|(&partition, held)| async move { (partition, this.write(partition, held.revision).await) });
        let answers = futures::future::join_all(writes).await;
        let mut lost = Vec::new();
        for (partition, written) in answers {
            match written {
                Ok(revision) => {
                    self.held.insert(
                        partition,
                        Held {
                            revision,
                            confirmed: sent,
                        },
                    );
                }
                Err(Error::Conflict) => match self.own_revision(partition).await {
                    // A refresh that got through with its answer lost: still ours, at the revision it wrote. It is
                    // confirmed again by the next refresh.
                    Some(revision) => {
                        if let Some(held) = self.held.get_mut(&partition) {
                            held.revision = revision;
                        }
                    }
                    None => lost.push((partition, Lost::Superseded)),
                },
                // Not confirmed; given up once unconfirmed for FENCE, below.
                Err(Error::TimedOut | Error::Refused(_)) => {}
            }
        }
        for (&partition, held) in &self.held {
            if held.confirmed.elapsed() >= FENCE && !lost.iter().any(|(p, _)| *p == partition) {
                lost.push((partition, Lost::Unconfirmed));
            }
        }
        for (partition, _) in &lost {
            self.held.remove(partition);
        }
        lost
    }

    /// Writes this persister's id as partition `partition`'s lease if the key is still at revision `after` (0: if
    /// it does not exist); returns the new revision.
    async fn write(&self, partition: u8, after: u64) -> Result<u64, Error> {
        let update = self.kv.update(key(partition), self.id.clone().into(), after);
        match tokio::time::timeout(ANSWER_WITHIN, update).await {
            Ok(Ok(revision)) => Ok(revision),
            Ok(Err(err)) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(Error::Conflict),
            Ok(Err(err)) if err.kind() == kv::UpdateErrorKind::TimedOut => Err(Error::TimedOut),
            Ok(Err(err)) => Err(Error::Refused(err.to_string())),
            Err(_) => Err(Error::TimedOut),
        }
    }

    /// The revision of partition `partition`'s lease if it holds this persister's id, as read from the bucket now.
    async fn own_revision(&self, partition: u8) -> Option<u64> {
        match answer(self.kv.entry(key(partition))).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put && entry.value == self.id.as_bytes() => {
                Some(entry.revision)
            }
            _ => None,
        }
    }

    /// Writes this persister's membership again.
    pub async fn heartbeat(&self) -> Result<(), Error> {
        answer(self.kv.put(member_key(&self.id), self.id.clone().into()))
            .await
            .map(|_| ())
    }

    /// Ends this persister's membership, so the others count it out at once rather than after [`TTL`].
    pub async fn leave(&self) -> Result<(), Error> {
        answer(self.kv.delete(member_key(&self.id))).await
    }

    /// Reads which persisters are alive and which partitions are free. Each partition's lease is read with a
    /// direct get (answered by a replica, nothing made on the server); the members by listing the bucket's keys,
    /// which makes a consumer and so needs the cluster's meta leader. A healed cluster settling can refuse new
    /// consumers for half a minute while it answers direct gets and writes: then the last count of members stands
    /// (this one alone if it never had one), and free partitions are still found and taken.
    pub async fn survey(&mut self) -> Result<Survey, Error> {
        let leases = futures::future::join_all((0..PARTITIONS).map(|partition| answer(self.kv.entry(key(partition)))));
        let (leases, members) = tokio::join!(leases, self.members());
        let mut free = Vec::new();
        for (partition, lease) in (0..PARTITIONS).zip(leases) {
            if lease?.is_none_or(|entry| entry.operation != kv::Operation::Put) {
                free.push(partition);
            }
        }
        let members = match members {
            Ok(members) => {
                self.members_seen = Some(members);
                members
            }
            Err(err) => {
                tracing::debug!(error = %err, "cannot list the persisters; counting the last ones seen");
                self.members_seen.unwrap_or(1)
            }
        };
        Ok(Survey { members, free })
    }

    /// How many persisters are alive, this one included (whether or not its own membership got through).
    async fn members(&self) -> Result<usize, Error> {
        let listed = async {
            let mut keys = self.kv.keys().await.map_err(|e| Error::Refused(e.to_string()))?;
            let mut members = BTreeSet::new();
            while let Some(key) = keys.next().await {
                let key = key.map_err(|e| Error::Refused(e.to_string()))?;
                if let Some(id) = key.strip_prefix("m.") {
                    members.insert(id.to_owned());
                }
            }
            members.insert(self.id.clone());
            Ok::<_, Error>(members.len())
        };
        tokio::time::timeout(ANSWER_WITHIN, listed)
            .await
            .unwrap_or(Err(Error::TimedOut))
    }

    /// Takes partition `partition`'s lease if nobody holds it: `Some` with why it was free, `None` when another
    /// persister holds it (or took it first).
    pub async fn take(&mut self, partition: u8) -> Result<Option<Taken>, Error> {
        let sent = Instant::now();
        let (after, taken) = match answer(self.kv.entry(key(partition))).await? {
            None => (0, Taken::Vacant),
            Some(entry) if entry.operation != kv::Operation::Put => (entry.revision, Taken::Released),
            // Written under this id by an earlier take whose answer was lost, or by this persister's previous run
            // (the same `--id`, restarted): nobody else reads it. Written again below, which restarts its age.
            Some(entry) if entry.value == self.id.as_bytes() => (entry.revision, Taken::Vacant),
            Some(_) => return Ok(None),
        };
        // Revision-checked: of two persisters taking the same free lease, one gets it.
        let revision = match self.write(partition, after).await {
            Ok(revision) => revision,
            Err(Error::Conflict) => return Ok(None),
            Err(err) => return Err(err),
        };
        self.held.insert(
            partition,
            Held {
                revision,
                confirmed: sent,
            },
        );
        Ok(Some(taken))
    }

    /// Lets partition `partition`'s lease go: deleted, revision-checked, so that another persister takes it at
    /// once. It is no longer held either way; when the delete does not get through, it ages out within [`TTL`].
    /// Returns whether the delete got through.
    pub async fn release(&mut self, partition: u8) -> bool {
        let Some(held) = self.held.remove(&partition) else {
            return false;
        };
        answer(self.kv.delete_expect_revision(key(partition), Some(held.revision)))
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_live_persister_aims_at_its_share_and_every_partition_is_covered() {
        assert_eq!(
            (1..=6).map(share).collect::<Vec<_>>(),
            vec![16, 8, 6, 4, 4, 3],
            "ceil(16 / live persisters)"
        );
        assert_eq!(share(0), 16, "a persister that counts nobody counts itself");
        for members in 1..=20 {
            assert!(share(members) * members >= usize::from(PARTITIONS), "{members}");
        }
        assert_eq!(key(3), "p03");
        assert_eq!(key(15), "p15");
        assert_eq!(member_key("persister-1a2b"), "m.persister-1a2b");
    }
}
