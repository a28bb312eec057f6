//! Password hashing with Argon2id at OWASP's recommended cost (m = 19 MiB, t = 2, p = 1).
//!
//! Hashing is deliberately slow and takes 19 MiB, so it runs on the blocking pool (never stalling the async
//! workers) and at most `--max-concurrent-hashes` run at once (two per core, at most 8, by default): a flood of
//! logins queues instead of exhausting memory. The process's memory is about 64 MiB plus 19 MiB per concurrent
//! hash; a container limit must allow that.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Shortest password accepted, in characters.
pub const MIN_LEN: usize = 8;
/// Longest password accepted, in bytes (bounds the hashing work an attacker can ask for).
pub const MAX_BYTES: usize = 256;

fn argon2() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: Argon2id, 19 MiB, 2 iterations, 1 lane. Constant, valid parameters.
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

static PERMITS: std::sync::OnceLock<Semaphore> = std::sync::OnceLock::new();

/// The default of `--max-concurrent-hashes`: two per core, at most 8 (152 MiB of hashing), so a container sized
/// for a small machine is not killed for memory on a big node's core count.
pub fn default_concurrent_hashes() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 2).min(8)
}

/// Sets how many hashes may run at once (`--max-concurrent-hashes`); the first call wins, before any hash.
pub fn set_concurrent_hashes(n: usize) {
    let _ = PERMITS.set(Semaphore::new(n.max(1)));
}

/// Runs `work` on the blocking pool once one of the hashing permits is free.
async fn run_limited<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let permits = PERMITS.get_or_init(|| Semaphore::new(default_concurrent_hashes()));
    let _permit = permits.acquire().await?;
    tokio::task::spawn_blocking(work).await?
}

/// Why a password was refused.
pub fn check_policy(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < MIN_LEN {
        return Err("the password must be at least 8 characters long");
    }
    if password.len() > MAX_BYTES {
        return Err("the password must be at most 256 bytes long");
    }
    Ok(())
}

/// Hashes a password into a PHC string.
pub async fn hash(password: String) -> anyhow::Result<String> {
    run_limited(move || {
        // A random salt of the recommended length, from the operating system.
        argon2()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("failed to hash a password: {e}"))
    })
    .await
}

/// Checks a password against a PHC string. With no stored hash (unknown user, guest) it still does the work of
/// one verification, so response time does not tell which user names exist.
pub async fn verify(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    run_limited(move || {
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let parsed = PasswordHash::new(&stored).map_err(|e| anyhow::anyhow!("stored password hash unreadable: {e}"))?;
        let ok = argon2().verify_password(password.as_bytes(), &parsed).is_ok();
        Ok(ok && stored != DUMMY_HASH)
    })
    .await
}

/// A valid Argon2id hash of a random password nobody knows, with the same cost as real ones.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$ZP6QwQnvxsrOPmNnKWvxd+6tRSbT/4AP1jmQ4lMHAi0";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let hash = hash("correct horse".into()).await.expect("hashes");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(
            verify("correct horse".into(), Some(hash.clone()))
                .await
                .expect("verifies")
        );
        assert!(!verify("wrong horse".into(), Some(hash)).await.expect("verifies"));
        assert!(!verify("anything".into(), None).await.expect("dummy verifies"));
    }

    #[tokio::test]
    async fn hashes_stored_before_the_argon2_upgrade_still_verify() {
        // Written by argon2 0.5 (this module before the upgrade to 0.6) for "correct horse battery staple".
        let stored =
            "$argon2id$v=19$m=19456,t=2,p=1$gaSUV1Oe7TC7Vk2KOpdPZg$z5XaGINI7UaS624cyVtRcjwljj7+wOWhg1ntgJJ8YtQ";
        assert!(
            verify("correct horse battery staple".into(), Some(stored.into()))
                .await
                .expect("verifies")
        );
        assert!(
            !verify("correct horse battery".into(), Some(stored.into()))
                .await
                .expect("verifies")
        );
    }

    #[test]
    fn policy_bounds_length() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough").is_ok());
        assert!(check_policy(&"x".repeat(257)).is_err());
    }
}
