//! Signing keys sealed at rest: with `--key-encryption-key` (`NATTER_KEY_ENCRYPTION_KEY`), every private key in
//! `signing_keys` is stored encrypted and authenticated (ChaCha20-Poly1305 under SHA-256 of that secret, a random
//! nonce per key, the key's `kid` as associated data), so a copy of the database or a role that can read the table
//! does not yield a key that can mint tokens. Keys stored before the secret was given are sealed at the next start.

use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, ChaCha20Poly1305, Nonce};
use sha2::{Digest, Sha256};

/// What a sealed key starts with: no PKCS#8 DER does (DER starts with 0x30).
pub const MAGIC: &[u8; 4] = b"NSK1";
const NONCE_LEN: usize = 12;

/// Shortest secret accepted, in bytes: it is the only thing between a database copy and the signing keys.
pub const MIN_SECRET_BYTES: usize = 32;

/// Seals and opens signing keys under the secret given by the environment.
pub struct KeySealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for KeySealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySealer(…)")
    }
}

impl KeySealer {
    /// A sealer under `secret` (at least [`MIN_SECRET_BYTES`] bytes, e.g. 32 random characters).
    pub fn new(secret: &str) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "--key-encryption-key / NATTER_KEY_ENCRYPTION_KEY must be at least {MIN_SECRET_BYTES} bytes"
            ));
        }
        let key = Sha256::digest(secret.as_bytes());
        Ok(Self {
            cipher: ChaCha20Poly1305::new(&key),
        })
    }

    /// `der` sealed for key `kid`: the magic, a random nonce, the ciphertext and its tag.
    pub fn seal(&self, kid: &str, der: &[u8]) -> anyhow::Result<Vec<u8>> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: der,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("failed to seal signing key {kid}"))?;
        Ok([MAGIC.as_slice(), &nonce[..], &sealed].concat())
    }

    /// The DER of sealed key `kid`; an error when it was sealed under another secret, or altered.
    pub fn open(&self, kid: &str, blob: &[u8]) -> anyhow::Result<Vec<u8>> {
        let body = blob
            .strip_prefix(MAGIC.as_slice())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(|| anyhow::anyhow!("signing key {kid} is not sealed"))?;
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into()?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "cannot open signing key {kid}: it was sealed under another NATTER_KEY_ENCRYPTION_KEY, or altered"
                )
            })
    }
}

/// Whether a stored key is sealed.
pub fn is_sealed(blob: &[u8]) -> bool {
    blob.starts_with(MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_under_its_secret_and_its_kid() {
        let sealer = KeySealer::new("0123456789abcdef0123456789abcdef").expect("long enough");
        let der = b"\x30\x2e private key bytes".to_vec();
        let sealed = sealer.seal("kid-1", &der).expect("sealed");
        assert!(is_sealed(&sealed) && !is_sealed(&der));
        assert!(
            !sealed.windows(der.len()).any(|w| w == der.as_slice()),
            "the key is not in the clear"
        );
        assert_eq!(sealer.open("kid-1", &sealed).expect("opens"), der);
        assert!(sealer.open("kid-2", &sealed).is_err(), "bound to its kid");
        let other = KeySealer::new("another secret of thirty-two bytes!").expect("long enough");
        assert!(other.open("kid-1", &sealed).is_err(), "another secret cannot open it");
        let mut altered = sealed.clone();
        *altered.last_mut().expect("bytes") ^= 1;
        assert!(sealer.open("kid-1", &altered).is_err(), "an altered key is refused");
        assert_ne!(
            sealer.seal("kid-1", &der).expect("sealed"),
            sealed,
            "a fresh nonce each time"
        );
        assert!(KeySealer::new("short").is_err());
    }
}
