//! Telling gateways what is in history: right after a batch commits, one core-NATS notice per room of the stream
//! sequences written ([`natter_proto::subject::persisted_notice`]), and answers to gateways that ask which of some
//! sequences history holds ([`natter_proto::subject::persisted_ask`], a queue group: one persister answers).
//!
//! A gateway started with `--ack-after persisted` acks a send only once one of these says it is in PostgreSQL.
//! Notices go out whether or not a gateway listens: one publish per room per batch, buffered by the NATS client
//! and dropped by the server when nobody subscribes, next to a transaction's commit (docs/benchmarks.md measures
//! it). They are core NATS and can be lost (a reconnect); a gateway that waits longer than a moment asks instead.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use natter_proto::bus::PersistedSeqs;
use natter_proto::subject;
use sqlx::PgPool;

use crate::metrics;
use natter_history::write::Rows;

/// The queue group persisters answer asks in.
const QUEUE: &str = "natter-persister";

/// Asks answered at once (each holds one of the pool's connections while its query runs).
const ASKS_AT_ONCE: usize = 2;

/// The NATS connection notices go out on, installed once at start-up ([`install`]). Process-wide, so that the
/// write path announces a commit with one call ([`committed`]) and carries nothing for it.
static NOTICES: RwLock<Option<async_nats::Client>> = RwLock::new(None);

/// Sends notices over `nats` from now on.
pub fn install(nats: async_nats::Client) {
    *NOTICES.write().unwrap_or_else(|p| p.into_inner()) = Some(nats);
}

/// Announces, per room, the sequences of `rows` just committed to history. Called after the commit and before
/// the acks: a notice never names a row that is not committed.
pub async fn committed(rows: &Rows) {
    let Some(nats) = NOTICES.read().unwrap_or_else(|p| p.into_inner()).clone() else {
        return;
    };
    // The stream's epochs are positive microsecond counts; the row's `i64` is the column's type.
    let epoch = u64::try_from(rows.epoch()).unwrap_or(0);
    let mut by_room: HashMap<&natter_proto::RoomId, Vec<u64>> = HashMap::new();
    for row in rows.iter() {
        by_room
            .entry(&row.room)
            .or_default()
            .push(u64::try_from(row.seq).unwrap_or(0));
    }
    for (room, seqs) in by_room {
        let notice = PersistedSeqs::new(epoch, seqs);
        let Ok(payload) = serde_json::to_vec(&notice) else {
            continue;
        };
        // Handed to the client's buffer; a NATS that is away loses it, and the waiting gateway asks instead.
        if nats
            .publish(subject::persisted_notice(room), payload.into())
            .await
            .is_ok()
        {
            ::metrics::counter!(metrics::NOTICES).increment(1);
        }
    }
}

/// Answers gateways' asks from PostgreSQL (one query each) for as long as the persister runs. An ask that cannot
/// be answered (PostgreSQL away) gets an empty answer: nothing is known to be stored; the outage is logged once.
pub async fn answer(nats: async_nats::Client, db: PgPool) {
    let asks = match nats.queue_subscribe(subject::persisted_ask(), QUEUE.to_owned()).await {
        Ok(asks) => asks,
        Err(err) => {
            tracing::error!(error = %err, "cannot serve persisted asks; gateways acking after persistence wait for notices only");
            return;
        }
    };
    let failing = AtomicBool::new(false);
    asks.for_each_concurrent(ASKS_AT_ONCE, |ask| {
        let (nats, db, failing) = (&nats, &db, &failing);
        async move {
            let Some(reply) = ask.reply else { return };
            let stored = match serde_json::from_slice::<PersistedSeqs>(&ask.payload) {
                Ok(asked) => match stored(db, &asked).await {
                    Ok(stored) => {
                        if failing.swap(false, Ordering::Relaxed) {
                            tracing::info!("persisted asks are answered again");
                        }
                        stored
                    }
                    Err(err) => {
                        if !failing.swap(true, Ordering::Relaxed) {
                            tracing::warn!(error = %err, "cannot answer persisted asks; answering that nothing is known stored");
                        }
                        PersistedSeqs::new(asked.epoch, [])
                    }
                },
                Err(err) => {
                    tracing::debug!(error = %err, "unreadable persisted ask");
                    PersistedSeqs::default()
                }
            };
            ::metrics::counter!(metrics::ASKS).increment(1);
            if let Ok(payload) = serde_json::to_vec(&stored) {
                let _ = nats.publish(reply, payload.into()).await;
            }
        }
    })
    .await;
}

/// Which of the first [`PersistedSeqs::MAX_ASKED`] sequences of `asked` history holds.
async fn stored(db: &PgPool, asked: &PersistedSeqs) -> Result<PersistedSeqs, sqlx::Error> {
    let Ok(epoch) = i64::try_from(asked.epoch) else {
        return Ok(PersistedSeqs::new(asked.epoch, []));
    };
    let seqs: Vec<i64> = asked
        .iter()
        .take(PersistedSeqs::MAX_ASKED as usize)
        .filter_map(|seq| i64::try_from(seq).ok())
        .collect();
    if seqs.is_empty() {
        return Ok(PersistedSeqs::new(asked.epoch, []));
    }
    let found = natter_history::stored(db, epoch, &seqs).await?;
    Ok(PersistedSeqs::new(
        asked.epoch,
        found.into_iter().filter_map(|seq| u64::try_from(seq).ok()),
    ))
}
