//! Access-token claims and their verification against a JWKS.
//!
//! The auth-api signs access tokens with Ed25519 (`alg: EdDSA`) and publishes the public keys as a JWKS. Anything
//! that accepts a token (the auth-api itself, every gateway) verifies it here, so the rules are the same
//! everywhere: the algorithm is pinned to EdDSA whatever the header says, the key is chosen by `kid`, and `exp`,
//! `iss`, `aud` and `sub` are required and checked.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// The only signing algorithm Natter accepts.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;

/// Clock skew tolerated when checking `exp`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// The claims of a Natter access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: the auth-api's configured issuer.
    pub iss: String,
    /// Audience: the configured audience of the Natter deployment.
    pub aud: String,
    /// Subject: the user's id.
    pub sub: String,
    /// The user's name, so gateways can show it without a database.
    pub name: String,
    /// Whether the user is a guest (no password).
    #[serde(default)]
    pub guest: bool,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
    /// Not before, seconds since the Unix epoch: checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The session (login) the token belongs to: every token refreshed from one login shares it, and revoking the
    /// session (logout, a refresh token used twice) refuses them all before they expire.
    pub sid: String,
}

/// Why a token was refused. Callers branch on the kind: an unknown key may mean the JWKS should be refetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or its header or claims could not be read.
    #[error("the token is malformed")]
    Malformed,
    /// The header names an algorithm other than EdDSA (including `none`).
    #[error("the token's algorithm is not accepted")]
    WrongAlgorithm,
    /// The header has no `kid`, or names a key not in the key set.
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    /// The signature does not match.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// The token has expired.
    #[error("the token has expired")]
    Expired,
    /// The token's `nbf` lies in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The token was issued by someone else, or for someone else.
    #[error("the token's issuer or audience is wrong")]
    WrongIssuerOrAudience,
    /// A required claim is missing or of the wrong type.
    #[error("the token lacks a required claim")]
    MissingClaim,
    /// The token's session was revoked (logout, or a refresh token used twice).
    #[error("the token's session was revoked; log in again")]
    Revoked,
}

impl TokenError {
    /// Every [`code`](Self::code), for registering metrics labels up front.
    pub const CODES: [&'static str; 9] = [
        "token_malformed",
        "token_wrong_algorithm",
        "token_unknown_key",
        "token_bad_signature",
        "token_expired",
        "token_not_yet_valid",
        "token_wrong_issuer_or_audience",
        "token_missing_claim",
        "token_revoked",
    ];

    /// A stable code for API responses and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "token_malformed",
            Self::WrongAlgorithm => "token_wrong_algorithm",
            Self::UnknownKey => "token_unknown_key",
            Self::BadSignature => "token_bad_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongIssuerOrAudience => "token_wrong_issuer_or_audience",
            Self::MissingClaim => "token_missing_claim",
            Self::Revoked => "token_revoked",
        }
    }
}

impl From<jsonwebtoken::errors::Error> for TokenError {
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match err.kind() {
            K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm | K::MissingAlgorithm => {
                Self::WrongAlgorithm
            }
            K::InvalidSignature | K::InvalidEddsaKey | K::InvalidKeyFormat => Self::BadSignature,
            K::ExpiredSignature => Self::Expired,
            K::ImmatureSignature => Self::NotYetValid,
            K::InvalidIssuer | K::InvalidAudience => Self::WrongIssuerOrAudience,
            K::MissingRequiredClaim(_) | K::InvalidClaimFormat(_) => Self::MissingClaim,
            // Well-formed JSON that does not fit the claims: a claim is missing or has the wrong type.
            K::Json(json) if json.classify() == serde_json::error::Category::Data => Self::MissingClaim,
            _ => Self::Malformed,
        }
    }
}

/// Verifies access tokens against a fixed set of Ed25519 public keys.
#[derive(Clone)]
pub struct Verifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Verifier {
    /// Builds a verifier from a JWKS, keeping only Ed25519 keys that have a `kid`; other keys are ignored.
    pub fn from_jwks(jwks: &JwkSet, issuer: &str, audience: &str) -> Self {
        let keys = jwks
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                match &jwk.algorithm {
                    AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                        DecodingKey::from_ed_components(&okp.x).ok().map(|key| (kid, key))
                    }
                    _ => None,
                }
            })
            .collect();
        let mut validation = Validation::new(ALGORITHM);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        Self { keys, validation }
    }

    /// Whether the key set holds a key with this id.
    pub fn knows_key(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| match raw_algorithm(token) {
            // A readable header naming an algorithm the library does not even know, such as `none`.
            Some(alg) if alg != "EdDSA" => TokenError::WrongAlgorithm,
            _ => TokenError::Malformed,
        })?;
        if header.alg != ALGORITHM {
            return Err(TokenError::WrongAlgorithm);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)?;
        Ok(data.claims)
    }
}

/// The `alg` of a token's header, read without the library's closed list of algorithms.
fn raw_algorithm(token: &str) -> Option<String> {
    use base64::Engine;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("alg")?.as_str().map(str::to_owned)
}

/// Reads the `kid` from a token's header without verifying anything, so a verifier can tell whether to refetch
/// its key set. Returns `None` for a malformed token.
pub fn unverified_key_id(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    /// PKCS#8 v1 wrapping of a raw Ed25519 seed (RFC 8410).
    fn key(seed: u8) -> EncodingKey {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
        ];
        der.extend_from_slice(&[seed; 32]);
        EncodingKey::from_ed_der(&der)
    }

    fn jwks(kid: &str, key: &EncodingKey) -> JwkSet {
        let mut jwk = Jwk::from_encoding_key(key, ALGORITHM).expect("ed25519 jwk");
        jwk.common.key_id = Some(kid.into());
        JwkSet { keys: vec![jwk] }
    }

    fn claims(exp_offset: i64) -> AccessClaims {
        let now = jsonwebtoken::get_current_timestamp();
        AccessClaims {
            iss: "natter".into(),
            aud: "natter-chat".into(),
            sub: "u1".into(),
            name: "alice".into(),
            guest: false,
            iat: now,
            exp: now.saturating_add_signed(exp_offset),
            nbf: None,
            sid: "s1".into(),
        }
    }

    fn sign(kid: &str, key: &EncodingKey, claims: &AccessClaims) -> String {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, key).expect("signs")
    }

    #[test]
    fn verifies_a_good_token_and_refuses_each_fault() {
        let k1 = key(1);
        let verifier = Verifier::from_jwks(&jwks("k1", &k1), "natter", "natter-chat");
        let good = claims(60);
        assert_eq!(verifier.verify(&sign("k1", &k1, &good)), Ok(good.clone()));

        assert_eq!(
            verifier.verify(&sign("k1", &k1, &claims(-60))),
            Err(TokenError::Expired)
        );
        assert_eq!(verifier.verify(&sign("k2", &k1, &good)), Err(TokenError::UnknownKey));
        assert_eq!(
            verifier.verify(&sign("k1", &key(2), &good)),
            Err(TokenError::BadSignature)
        );
        let wrong_aud = AccessClaims {
            aud: "other".into(),
            ..good.clone()
        };
        assert_eq!(
            verifier.verify(&sign("k1", &k1, &wrong_aud)),
            Err(TokenError::WrongIssuerOrAudience)
        );
        let wrong_iss = AccessClaims {
            iss: "other".into(),
            ..good.clone()
        };
        assert_eq!(
            verifier.verify(&sign("k1", &k1, &wrong_iss)),
            Err(TokenError::WrongIssuerOrAudience)
        );
        assert_eq!(verifier.verify("garbage"), Err(TokenError::Malformed));
        // {"alg":"none","typ":"JWT","kid":"k1"} with the good token's claims and no signature.
        let claims_part = sign("k1", &k1, &good)
            .split('.')
            .nth(1)
            .map(str::to_owned)
            .expect("claims part");
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIiwia2lkIjoiazEifQ.{claims_part}.");
        assert_eq!(verifier.verify(&none), Err(TokenError::WrongAlgorithm));
    }

    #[test]
    fn nbf_is_checked_when_present_and_sid_is_required() {
        let k1 = key(1);
        let verifier = Verifier::from_jwks(&jwks("k1", &k1), "natter", "natter-chat");
        let now = jsonwebtoken::get_current_timestamp();
        let started = AccessClaims {
            nbf: Some(now - 10),
            ..claims(60)
        };
        assert_eq!(verifier.verify(&sign("k1", &k1, &started)), Ok(started.clone()));
        let future = AccessClaims {
            nbf: Some(now + 600),
            ..claims(60)
        };
        assert_eq!(verifier.verify(&sign("k1", &k1, &future)), Err(TokenError::NotYetValid));
        let mut header = Header::new(ALGORITHM);
        header.kid = Some("k1".into());
        let mut text_nbf = serde_json::to_value(claims(60)).expect("json");
        text_nbf["nbf"] = serde_json::json!("0");
        let token = jsonwebtoken::encode(&header, &text_nbf, &k1).expect("signs");
        assert_eq!(verifier.verify(&token), Err(TokenError::MissingClaim));
        let mut no_sid = serde_json::to_value(claims(60)).expect("json");
        no_sid.as_object_mut().expect("object").remove("sid");
        let token = jsonwebtoken::encode(&header, &no_sid, &k1).expect("signs");
        assert_eq!(verifier.verify(&token), Err(TokenError::MissingClaim));
    }
}
