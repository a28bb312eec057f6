//! Feeds arbitrary tokens to the access-token verifier every gateway runs at the upgrade and on `refresh`, with a
//! fixed key set: verifying and reading the key id never panic, whatever the bytes.
//!
//! Random bytes seldom get past the signature check, so half the inputs are signed first: the first byte picks
//! the mode; in the signed mode the rest is a header and a claims part (split at the first NUL byte, each
//! encoded as is, JSON or not) signed with the key the verifier trusts. A token that verifies then meets every
//! rule (EdDSA, a known key, our issuer and audience, not expired, not before its `nbf`), and the same token with
//! one bit of its signature flipped does not verify.
#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use natter_proto::token::{ALGORITHM, LEEWAY_SECS, Verifier, unverified_key_id};

const KID: &str = "fuzz-key";
const ISSUER: &str = "natter";
const AUDIENCE: &str = "natter";

/// PKCS#8 v1 wrapping of a raw Ed25519 seed (RFC 8410), as natter-proto's own tests make keys.
fn key(seed: u8) -> EncodingKey {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    der.extend_from_slice(&[seed; 32]);
    EncodingKey::from_ed_der(&der)
}

static SIGNING: LazyLock<EncodingKey> = LazyLock::new(|| key(7));

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    let mut ours = Jwk::from_encoding_key(&SIGNING, ALGORITHM).expect("an Ed25519 JWK");
    ours.common.key_id = Some(KID.into());
    // A key without a kid, which the verifier ignores: a token may not reach it.
    let unnamed = Jwk::from_encoding_key(&key(8), ALGORITHM).expect("an Ed25519 JWK");
    Verifier::from_jwks(
        &JwkSet {
            keys: vec![ours, unnamed],
        },
        ISSUER,
        AUDIENCE,
    )
});

/// A token of `header` and `claims` (any bytes) signed with the trusted key.
fn signed(header: &[u8], claims: &[u8]) -> String {
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &SIGNING, Algorithm::EdDSA).expect("signs");
    format!("{message}.{signature}")
}

/// `token` with one bit of its signature flipped, when the signature is readable.
fn flipped(token: &str, bit: u8) -> Option<String> {
    let (message, signature) = token.rsplit_once('.')?;
    let mut raw = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let at = usize::from(bit / 8) % raw.len().max(1);
    *raw.get_mut(at)? ^= 1 << (bit % 8);
    Some(format!("{message}.{}", URL_SAFE_NO_PAD.encode(raw)))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let (header, claims) = match rest.iter().position(|&b| b == 0) {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &b""[..]),
        };
        signed(header, claims)
    };
    let kid = unverified_key_id(&token);
    let Ok(claims) = VERIFIER.verify(&token) else { return };

    // Whatever the header and claims said, a token that verifies keeps every rule.
    let header = jsonwebtoken::decode_header(&token).expect("a verified token has a readable header");
    assert_eq!(header.alg, ALGORITHM, "{token}");
    assert_eq!(kid.as_deref(), Some(KID), "{token}");
    assert_eq!(
        (claims.iss.as_str(), claims.aud.as_str()),
        (ISSUER, AUDIENCE),
        "{token}"
    );
    let now = jsonwebtoken::get_current_timestamp();
    assert!(claims.exp.saturating_add(LEEWAY_SECS) >= now, "expired: {token}");
    assert!(
        claims.nbf.is_none_or(|nbf| nbf <= now.saturating_add(LEEWAY_SECS)),
        "not yet valid: {token}"
    );
    if let Some(forged) = flipped(&token, mode) {
        assert!(
            VERIFIER.verify(&forged).is_err(),
            "a flipped signature bit verifies: {forged}"
        );
    }
});
