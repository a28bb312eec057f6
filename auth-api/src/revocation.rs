//! Telling the fleet that a session ended early: the revoked-sessions KV bucket every gateway follows.
//!
//! PostgreSQL (`token_families.revoked_at`) is where a revocation is decided; the bucket is how it reaches the
//! gateways, which hold no database and would otherwise accept the session's access tokens until they expire.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use natter_proto::bus::{RevokeReason, RevokedSession};
use tokio::sync::OnceCell;
use uuid::Uuid;

/// Longest a bucket write may take before the caller is told it failed: a request waits for it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// The revoked-sessions bucket, opened at start-up or, if NATS was not reachable then, at the first write.
pub struct Revocations {
    js: jetstream::Context,
    /// Copies of the bucket, when this process creates it (`--stream-replicas`).
    replicas: usize,
    /// Set once the bucket is open; stays set for the life of the process (the handle survives reconnects).
    store: OnceCell<kv::Store>,
}

/// A revocation that did not reach the bucket (NATS down or too slow, the bucket missing).
#[derive(Debug, thiserror::Error)]
#[error("the revoked session was not recorded: {0}")]
pub struct NotRecorded(String);

impl Revocations {
    /// Revocations written through `nats` into a bucket of `replicas` copies (when this process creates it);
    /// nothing is opened yet.
    pub fn new(nats: async_nats::Client, replicas: usize) -> Self {
        Self {
            js: jetstream::new(nats),
            replicas,
            store: OnceCell::new(),
        }
    }

    /// Opens the bucket, creating it if missing.
    pub async fn open(&self) -> Result<(), NotRecorded> {
        self.store().await.map(|_| ())
    }

    async fn store(&self) -> Result<&kv::Store, NotRecorded> {
        let opened = tokio::time::timeout(
            WRITE_TIMEOUT,
            self.store
                .get_or_try_init(|| natter_stream::sessions::bucket(&self.js, self.replicas)),
        )
        .await;
        match opened {
            Ok(Ok(store)) => Ok(store),
            Ok(Err(err)) => Err(NotRecorded(format!("{err:#}"))),
            Err(_) => Err(NotRecorded(format!("opening the bucket took over {WRITE_TIMEOUT:?}"))),
        }
    }

    /// Records that session `sid` of `user` is revoked, for `reason`. Writing it again is harmless: the bucket
    /// keeps one entry per session.
    pub async fn record(&self, sid: Uuid, user: Uuid, reason: RevokeReason) -> Result<(), NotRecorded> {
        let store = self.store().await?;
        let session = RevokedSession {
            user: user.to_string(),
            reason,
        };
        let written = tokio::time::timeout(
            WRITE_TIMEOUT,
            natter_stream::sessions::revoke(store, &sid.to_string(), &session),
        )
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(NotRecorded(format!("{err:#}"))),
            Err(_) => Err(NotRecorded(format!("the write took over {WRITE_TIMEOUT:?}"))),
        }
    }
}

/// The reason as stored in `token_families.revoked_reason` (NULL, from before reasons were kept, is a logout).
pub fn reason_from_column(column: Option<&str>) -> RevokeReason {
    match column {
        Some(REFRESH_REUSE) => RevokeReason::RefreshReuse,
        _ => RevokeReason::Logout,
    }
}

/// `token_families.revoked_reason` of a logout.
pub const LOGOUT: &str = "logout";
/// `token_families.revoked_reason` of a refresh token used twice.
pub const REFRESH_REUSE: &str = "refresh_reuse";
/// `token_families.revoked_reason` of a session ended by its user's password change (every session but the one
/// that changed it). Told to the gateways as a logout.
pub const PASSWORD_CHANGE: &str = "password_change";
/// `token_families.revoked_reason` of a session its user ended from the list of their sessions. Told to the
/// gateways as a logout.
pub const ENDED: &str = "ended";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_reasons_map_back_and_old_rows_are_logouts() {
        assert_eq!(reason_from_column(Some(LOGOUT)), RevokeReason::Logout);
        assert_eq!(reason_from_column(Some(REFRESH_REUSE)), RevokeReason::RefreshReuse);
        assert_eq!(reason_from_column(None), RevokeReason::Logout);
        assert_eq!(reason_from_column(Some(PASSWORD_CHANGE)), RevokeReason::Logout);
        assert_eq!(reason_from_column(Some(ENDED)), RevokeReason::Logout);
    }
}
