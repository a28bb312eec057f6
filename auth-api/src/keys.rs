//! Ed25519 signing keys: minting access tokens, publishing the JWKS, and rotating keys.
//!
//! Keys live in PostgreSQL so every auth-api instance signs with the same key and publishes the same set. The
//! newest unretired key signs. When it is older than the rotation period a new key is made and the old one
//! retired; a retired key stays in the JWKS until every token it signed has expired, so rotation never logs
//! anybody out, and is deleted after that. With a key-encryption secret every private key is stored sealed
//! ([`crate::sealed_keys`]).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{EncodingKey, Header};
use natter_proto::token::{ALGORITHM, AccessClaims, LEEWAY_SECS, Verifier};
use rand::RngCore;
use sqlx::PgPool;

use crate::sealed_keys::{KeySealer, is_sealed};

/// PKCS#8 v1 prefix for a raw 32-byte Ed25519 seed (RFC 8410).
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// How often every instance reloads the key set (and rotates when due). Other instances learn of a new key within
/// this time, or sooner when they meet a token with an unknown `kid`.
pub const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// Least time between two reloads triggered by tokens with unknown `kid`s, so forged kids cannot hammer the
/// database.
const UNKNOWN_KID_RELOAD_GAP: Duration = Duration::from_secs(1);

/// An advisory-lock key so only one instance rotates at a time.
const ROTATION_LOCK: i64 = 0x6e61_7474_6572_6b31;

/// One key that can sign.
struct SigningKey {
    kid: String,
    key: EncodingKey,
}

/// The keys in force at one moment: the one that signs, and every one tokens may still carry.
struct Snapshot {
    signing: SigningKey,
    jwks: JwkSet,
    verifier: Verifier,
}

/// Signing keys shared by the request handlers; reloaded from the database by [`KeyRing::refresh`].
#[derive(Clone)]
pub struct KeyRing {
    current: Arc<RwLock<Arc<Snapshot>>>,
    issuer: String,
    audience: String,
    access_ttl: Duration,
    rotation: Duration,
    /// When the key set was last loaded; gates reloads triggered by unknown `kid`s.
    loaded_at: Arc<std::sync::Mutex<std::time::Instant>>,
    /// Seals keys at rest, when a key-encryption secret was given.
    sealer: Option<Arc<KeySealer>>,
    /// When the newest unretired key was made, as last read from the database (Unix seconds): the signing key's
    /// age is reported from it after every reload, failed or not.
    newest_created: Arc<std::sync::atomic::AtomicI64>,
}

impl KeyRing {
    /// Loads the keys, creating or rotating the signing key first when needed.
    pub async fn load(
        pool: &PgPool,
        issuer: String,
        audience: String,
        access_ttl: Duration,
        rotation: Duration,
        sealer: Option<Arc<KeySealer>>,
    ) -> anyhow::Result<Self> {
        if sealer.is_none() {
            tracing::warn!(
                "signing keys are stored in PostgreSQL unencrypted: set NATTER_KEY_ENCRYPTION_KEY to seal them"
            );
        }
        let newest_created = Arc::new(std::sync::atomic::AtomicI64::new(Utc::now().timestamp()));
        let snapshot = load_snapshot(
            pool,
            &issuer,
            &audience,
            access_ttl,
            rotation,
            sealer.as_deref(),
            &newest_created,
        )
        .await?;
        report_age(&newest_created);
        ::metrics::gauge!(crate::metrics::SIGNING_KEY_ROTATION).set(rotation.as_secs_f64());
        Ok(Self {
            current: Arc::new(RwLock::new(Arc::new(snapshot))),
            issuer,
            audience,
            access_ttl,
            rotation,
            loaded_at: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
            sealer,
            newest_created,
        })
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        // A poisoned lock still holds a complete snapshot: writers only swap the Arc.
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rotates if due and reloads the key set from the database. The signing key's age is reported either way: a
    /// rotation that keeps failing shows as a key growing old.
    pub async fn refresh(&self, pool: &PgPool) -> anyhow::Result<()> {
        let loaded = load_snapshot(
            pool,
            &self.issuer,
            &self.audience,
            self.access_ttl,
            self.rotation,
            self.sealer.as_deref(),
            &self.newest_created,
        )
        .await;
        report_age(&self.newest_created);
        let snapshot = loaded?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
        *self.loaded_at.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
        Ok(())
    }

    /// Reloads because a token named a key this instance does not know (another instance may have rotated),
    /// unless a reload happened within the last few seconds. Returns whether it reloaded.
    pub async fn reload_for_unknown_key(&self, pool: &PgPool) -> bool {
        {
            let mut loaded_at = self.loaded_at.lock().unwrap_or_else(|p| p.into_inner());
            if loaded_at.elapsed() < UNKNOWN_KID_RELOAD_GAP {
                return false;
            }
            // Claim this reload so concurrent requests with unknown kids do not all reload.
            *loaded_at = std::time::Instant::now();
        }
        match self.refresh(pool).await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = ?err, "failed to reload signing keys for an unknown kid");
                false
            }
        }
    }

    /// The public keys as a JWKS document.
    pub fn jwks(&self) -> JwkSet {
        self.snapshot().jwks.clone()
    }

    /// A verifier for access tokens against the published keys.
    pub fn verifier(&self) -> Verifier {
        self.snapshot().verifier.clone()
    }

    /// The id of the key that signs now.
    pub fn signing_kid(&self) -> String {
        self.snapshot().signing.kid.clone()
    }

    /// Lifetime of access tokens.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// Mints an access token for a user's session `sid` (a login: its refresh-token family).
    pub fn mint(&self, user_id: &str, name: &str, guest: bool, sid: &str) -> anyhow::Result<String> {
        let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id.to_owned(),
            name: name.to_owned(),
            guest,
            iat: now,
            exp: now + self.access_ttl.as_secs(),
            nbf: None,
            sid: sid.to_owned(),
        };
        let snapshot = self.snapshot();
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(snapshot.signing.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &snapshot.signing.key)?;
        ::metrics::counter!(crate::metrics::TOKENS_ISSUED).increment(1);
        Ok(token)
    }
}

/// Makes a new random key and stores it (sealed, with a sealer).
async fn insert_new_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    sealer: Option<&KeySealer>,
) -> anyhow::Result<()> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    let mut kid_bytes = [0u8; 9];
    rand::rngs::OsRng.fill_bytes(&mut kid_bytes);
    let kid = URL_SAFE_NO_PAD.encode(kid_bytes);
    let stored = match sealer {
        Some(sealer) => sealer.seal(&kid, &der)?,
        None => der,
    };
    sqlx::query("INSERT INTO signing_keys (kid, private_der) VALUES ($1, $2)")
        .bind(kid)
        .bind(stored)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Sets the signing-key age gauge from the newest key's creation time.
fn report_age(newest_created: &std::sync::atomic::AtomicI64) {
    let created = newest_created.load(std::sync::atomic::Ordering::Relaxed);
    let age = (Utc::now().timestamp() - created).max(0);
    ::metrics::gauge!(crate::metrics::SIGNING_KEY_AGE).set(age as f64);
}

/// Rotates the signing key if it is due, and reads the key set. `newest_created` is set as soon as the newest key
/// is read, and again once a rotation is committed, so a rotation that fails leaves the old key's time.
async fn load_snapshot(
    pool: &PgPool,
    issuer: &str,
    audience: &str,
    access_ttl: Duration,
    rotation: Duration,
    sealer: Option<&KeySealer>,
    newest_created: &std::sync::atomic::AtomicI64,
) -> anyhow::Result<Snapshot> {
    // Rotate under an advisory lock, so two instances starting together make one key, not two.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ROTATION_LOCK)
        .execute(&mut *tx)
        .await?;
    let newest: Option<(DateTime<Utc>,)> =
        sqlx::query_as("SELECT created_at FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((created,)) = newest {
        newest_created.store(created.timestamp(), std::sync::atomic::Ordering::Relaxed);
    }
    let due = newest
        .is_none_or(|(created,)| Utc::now().signed_duration_since(created).to_std().unwrap_or_default() >= rotation);
    if due {
        sqlx::query("UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL")
            .execute(&mut *tx)
            .await?;
        insert_new_key(&mut tx, sealer).await?;
        ::metrics::counter!(crate::metrics::KEY_ROTATIONS).increment(1);
        tracing::info!("signing key rotated");
    }
    // Keys retired within the last token lifetime may still have live tokens. Add the clock leeway, and one reload
    // period: another instance may go on signing with a key for that long after it was retired. Older ones can
    // verify nothing still valid: deleted, so no copy of the database holds them.
    let keep_secs = i64::try_from(access_ttl.as_secs() + LEEWAY_SECS + RELOAD_EVERY.as_secs()).unwrap_or(i64::MAX);
    let deleted = sqlx::query("DELETE FROM signing_keys WHERE retired_at <= now() - make_interval(secs => $1)")
        .bind(keep_secs as f64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted > 0 {
        tracing::info!(deleted, "retired signing keys whose last token has expired deleted");
    }
    // Keys stored before a key-encryption secret was given are sealed now.
    if let Some(sealer) = sealer {
        // Only those not sealed yet: a reload every minute reads nothing more once all are.
        let plain: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT kid, private_der FROM signing_keys WHERE substring(private_der FROM 1 FOR 4) <> $1")
                .bind(crate::sealed_keys::MAGIC.as_slice())
                .fetch_all(&mut *tx)
                .await?;
        for (kid, der) in plain.into_iter().filter(|(_, der)| !is_sealed(der)) {
            sqlx::query("UPDATE signing_keys SET private_der = $2 WHERE kid = $1")
                .bind(&kid)
                .bind(sealer.seal(&kid, &der)?)
                .execute(&mut *tx)
                .await?;
            tracing::info!(kid, "a signing key stored unencrypted is now sealed");
        }
    }
    tx.commit().await?;
    if due {
        newest_created.store(Utc::now().timestamp(), std::sync::atomic::Ordering::Relaxed);
    }

    let rows: Vec<(String, Vec<u8>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT kid, private_der, retired_at FROM signing_keys \
         WHERE retired_at IS NULL OR retired_at > now() - make_interval(secs => $1) \
         ORDER BY created_at DESC",
    )
    .bind(keep_secs as f64)
    .fetch_all(pool)
    .await?;

    let mut signing = None;
    let mut keys = Vec::with_capacity(rows.len());
    for (kid, stored, retired_at) in rows {
        let der = match (sealer, is_sealed(&stored)) {
            (Some(sealer), true) => sealer.open(&kid, &stored)?,
            (None, true) => anyhow::bail!(
                "signing key {kid} is sealed: start with the NATTER_KEY_ENCRYPTION_KEY it was sealed under"
            ),
            (_, false) => stored,
        };
        let key = EncodingKey::from_ed_der(&der);
        let mut jwk = Jwk::from_encoding_key(&key, ALGORITHM)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
        keys.push(jwk);
        if retired_at.is_none() && signing.is_none() {
            signing = Some(SigningKey { kid, key });
        }
    }
    let signing = signing.ok_or_else(|| anyhow::anyhow!("no active signing key after rotation"))?;
    let jwks = JwkSet { keys };
    let verifier = Verifier::from_jwks(&jwks, issuer, audience);
    Ok(Snapshot {
        signing,
        jwks,
        verifier,
    })
}
