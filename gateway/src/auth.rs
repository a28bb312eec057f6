//! Access-token verification against the auth API's JWKS, fetched at start and refetched on an unknown `kid`, and
//! a cache of the tokens verified: each distinct token is verified once in this process (an Ed25519 check is most
//! of a connection's token cost), then answered from the cache until it expires or its key leaves the set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use natter_proto::token::{AccessClaims, KeyId, TokenError, Verifier};
use sha2::Digest;

/// Least time between two refetches triggered by unknown `kid`s, so forged tokens cannot hammer the auth API.
const REFETCH_GAP: Duration = Duration::from_secs(2);

/// Most tokens the cache holds (about 40 bytes each); at the cap, the expired go, and if that leaves it over
/// three quarters full, all do (so a full cache is not scanned again for every new token).
const CACHED_TOKENS: usize = 200_000;

/// A token's key in the cache: the first half of its SHA-256 (finding another token with the same key is
/// finding a SHA-256 collision in 128 bits).
type TokenKey = [u8; 16];

/// Verifies tokens; shared by every connection.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    issuer: String,
    audience: String,
    http: reqwest::Client,
    verifier: RwLock<Arc<Verifier>>,
    fetched_at: std::sync::Mutex<Instant>,
    /// Tokens whose signature was checked, with when they expire and the key that checked it: the claims are read
    /// again from the token itself on each use, so the cache holds no copy of them.
    verified: Mutex<HashMap<TokenKey, (u64, KeyId)>>,
}

impl TokenVerifier {
    /// Fetches the key set, retrying for up to `patience` (the auth API may start after the gateway).
    pub async fn fetch(url: String, issuer: String, audience: String, patience: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        let deadline = Instant::now() + patience;
        let verifier = loop {
            match fetch_verifier(&http, &url, &issuer, &audience).await {
                Ok(v) => break v,
                Err(err) if Instant::now() < deadline => {
                    tracing::info!(error = %err, url = %url, "waiting for the JWKS");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(err) => return Err(err.context(format!("failed to fetch the JWKS from {url}"))),
            }
        };
        let inner = Inner {
            url,
            issuer,
            audience,
            http,
            verifier: RwLock::new(Arc::new(verifier)),
            fetched_at: std::sync::Mutex::new(Instant::now()),
            verified: Mutex::default(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    fn current(&self) -> Arc<Verifier> {
        self.inner.verifier.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Verifies a token, refetching the key set once if it names a key not known yet; a token whose signature was
    /// checked before is checked on every other rule without it.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let key: TokenKey = sha2::Sha256::digest(token.as_bytes())[..16]
            .try_into()
            .unwrap_or_default();
        let seen = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .map(|(_, signer)| *signer);
        if let Some(signer) = seen {
            ::metrics::counter!(crate::metrics::TOKENS_VERIFIED, "how" => "cached").increment(1);
            return self.current().verify_signed_before(token, signer);
        }
        ::metrics::counter!(crate::metrics::TOKENS_VERIFIED, "how" => "signature").increment(1);
        let (claims, signer) = match self.current().verify_keyed(token) {
            Err(TokenError::UnknownKey) if self.refetch().await => self.current().verify_keyed(token),
            other => other,
        }?;
        let mut cache = self.inner.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHED_TOKENS {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            cache.retain(|_, (exp, _)| *exp + natter_proto::token::LEEWAY_SECS >= now);
            if cache.len() >= CACHED_TOKENS * 3 / 4 {
                cache.clear();
            }
        }
        cache.insert(key, (claims.exp, signer));
        Ok(claims)
    }

    /// Refetches unless that happened moments ago. Returns whether the key set was replaced.
    async fn refetch(&self) -> bool {
        {
            let mut at = self.inner.fetched_at.lock().unwrap_or_else(|p| p.into_inner());
            if at.elapsed() < REFETCH_GAP {
                return false;
            }
            *at = Instant::now();
        }
        let inner = &self.inner;
        let fetched = fetch_verifier(&inner.http, &inner.url, &inner.issuer, &inner.audience).await;
        let outcome = if fetched.is_ok() { "ok" } else { "error" };
        ::metrics::counter!(crate::metrics::JWKS_REFETCHES, "outcome" => outcome).increment(1);
        match fetched {
            Ok(verifier) => {
                // A cached token stands for the key that checked it (its entry names the key): nothing to forget.
                *inner.verifier.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(verifier);
                true
            }
            Err(err) => {
                tracing::warn!(error = %err, "failed to refetch the JWKS");
                false
            }
        }
    }
}

async fn fetch_verifier(http: &reqwest::Client, url: &str, issuer: &str, audience: &str) -> anyhow::Result<Verifier> {
    let jwks = http.get(url).send().await?.error_for_status()?.json().await?;
    Ok(Verifier::from_jwks(&jwks, issuer, audience))
}
