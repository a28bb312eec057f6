//! Revoked sessions: one NATS KV bucket the auth API writes when a session ends early (logout, a refresh token
//! used twice) and every process that accepts access tokens follows, so a revoked session's tokens are refused
//! everywhere before they expire, and its live connections are closed.
//!
//! Entries live [`MAX_AGE`], longer than any access token; the bucket is made by whichever process opens it first,
//! with the same settings, in as many copies as that process's `--stream-replicas` asks (3 on a cluster of three,
//! so the bucket survives the loss of a server as the chat stream does).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use natter_proto::bus::{REVOKED_SESSIONS_BUCKET, RevokedSession};

/// How long a revocation is kept: longer than any access token lives (the auth API refuses a longer lifetime).
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Opens the bucket of revoked sessions, creating it with `replicas` copies if missing. An existing bucket is
/// used as it is; one kept in fewer copies than asked is logged, since it does not survive what the chat stream
/// survives (it applies when the bucket is created, as for the chat stream).
///
/// The bucket's stream is made here with the settings of a KV bucket rather than by `create_key_value`: the
/// client's KV creation asks for settings newer than nats-server 2.9, whose answer it then cannot read.
pub async fn bucket(js: &jetstream::Context, replicas: usize) -> anyhow::Result<kv::Store> {
    let replicas = replicas.max(1);
    if let Ok(store) = js.get_key_value(REVOKED_SESSIONS_BUCKET).await {
        if let Ok(mut stream) = js.get_stream(format!("KV_{REVOKED_SESSIONS_BUCKET}")).await
            && let Ok(info) = stream.info().await
            && info.config.num_replicas < replicas
        {
            tracing::warn!(
                have = info.config.num_replicas,
                want = replicas,
                "the {REVOKED_SESSIONS_BUCKET} bucket keeps fewer copies than --stream-replicas asks"
            );
        }
        return Ok(store);
    }
    let config = jetstream::stream::Config {
        name: format!("KV_{REVOKED_SESSIONS_BUCKET}"),
        description: Some("Natter sessions revoked before their access tokens expire".to_owned()),
        subjects: vec![format!("$KV.{REVOKED_SESSIONS_BUCKET}.>")],
        max_messages_per_subject: 1,
        max_age: MAX_AGE,
        storage: jetstream::stream::StorageType::File,
        discard: jetstream::stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: replicas,
        ..Default::default()
    };
    crate::get_or_create(js, config)
        .await
        .map_err(|e| anyhow::anyhow!("failed to create the {REVOKED_SESSIONS_BUCKET} bucket: {e:#}"))?;
    js.get_key_value(REVOKED_SESSIONS_BUCKET)
        .await
        .map_err(|e| anyhow::anyhow!("failed to open the {REVOKED_SESSIONS_BUCKET} bucket: {e}"))
}

/// Records that session `sid` is revoked.
pub async fn revoke(store: &kv::Store, sid: &str, session: &RevokedSession) -> anyhow::Result<()> {
    let value = serde_json::to_vec(session)?;
    store
        .put(sid, value.into())
        .await
        .map_err(|e| anyhow::anyhow!("failed to record the revoked session: {e}"))?;
    Ok(())
}

/// The revoked sessions this process knows of, as followed from the bucket by [`follow`].
#[derive(Debug, Default)]
pub struct Revoked {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Session id → when this process learned of its revocation.
    sessions: HashMap<String, Instant>,
    /// Whether every revocation already in the bucket has been read.
    loaded: bool,
}

/// Revocations held before those older than [`MAX_AGE`] are pruned.
const PRUNE_AT: usize = 100_000;

impl Revoked {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock means a panic mid-update of a plain map; its contents are still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether session `sid` is revoked.
    pub fn contains(&self, sid: &str) -> bool {
        self.state().sessions.contains_key(sid)
    }

    /// Whether the revocations already in the bucket have all been read (until then, a revoked token could pass).
    pub fn loaded(&self) -> bool {
        self.state().loaded
    }

    /// Records a revocation; returns whether it was new.
    pub fn insert(&self, sid: &str) -> bool {
        let mut state = self.state();
        if state.sessions.len() >= PRUNE_AT {
            state.sessions.retain(|_, at| at.elapsed() < MAX_AGE);
        }
        state.sessions.insert(sid.to_owned(), Instant::now()).is_none()
    }

    fn set_loaded(&self) {
        self.state().loaded = true;
    }
}

/// Follows the bucket into `revoked` for as long as the process runs, calling `on_revoke` with each session newly
/// revoked (the ones already in the bucket at the start included). The watch resumes by itself after a NATS
/// reconnect; if it ends, it is opened again.
pub async fn follow(
    store: kv::Store,
    revoked: std::sync::Arc<Revoked>,
    mut on_revoke: impl FnMut(&str, RevokedSession),
) {
    loop {
        match store.status().await {
            Ok(status) if status.values() == 0 => revoked.set_loaded(),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "cannot read the revoked-sessions bucket; retrying"),
        }
        let mut watch = match store.watch_with_history(">").await {
            Ok(watch) => watch,
            Err(err) => {
                tracing::warn!(error = %err, "cannot follow the revoked-sessions bucket; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(entry) = watch.next().await {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    tracing::warn!(error = %err, "the revoked-sessions watch failed; reopening it");
                    break;
                }
            };
            if entry.operation == kv::Operation::Put {
                match serde_json::from_slice::<RevokedSession>(&entry.value) {
                    Ok(session) => {
                        if revoked.insert(&entry.key) {
                            on_revoke(&entry.key, session);
                        }
                    }
                    Err(err) => tracing::warn!(key = %entry.key, error = %err, "unreadable revoked session"),
                }
            }
            if entry.delta == 0 {
                revoked.set_loaded();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
