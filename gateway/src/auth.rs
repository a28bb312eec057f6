//! Access-token verification against the auth API's JWKS, fetched at start and refetched on an unknown `kid`.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use natter_proto::token::{AccessClaims, TokenError, Verifier};

/// Least time between two refetches triggered by unknown `kid`s, so forged tokens cannot hammer the auth API.
const REFETCH_GAP: Duration = Duration::from_secs(2);

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
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    fn current(&self) -> Arc<Verifier> {
        self.inner.verifier.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Verifies a token, refetching the key set once if it names a key not known yet.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        match self.current().verify(token) {
            Err(TokenError::UnknownKey) if self.refetch().await => self.current().verify(token),
            other => other,
        }
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
