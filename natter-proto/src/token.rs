//! Access-token claims and their verification against a JWKS.
//!
//! The auth-api signs access tokens with Ed25519 (`alg: EdDSA`) and publishes the public keys as a JWKS. Anything
//! that accepts a token (the auth-api itself, every gateway) verifies it here, so the rules are the same
//! everywhere: the algorithm is pinned to EdDSA whatever the header says, the key is chosen by `kid`, and `exp`,
//! `iss`, `aud` and `sub` are required and checked.

use std::collections::HashMap;

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
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
    /// Not before, seconds since the Unix epoch: checked when present (then a number, never `null`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_number"
    )]
    pub nbf: Option<u64>,
    /// The session (login) the token belongs to: every token refreshed from one login shares it, and revoking the
    /// session (logout, a refresh token used twice) refuses them all before they expire.
    pub sid: String,
}

/// Which public key signed a token: the key's first 8 bytes (keys are random points; the set's holder chose
/// them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId([u8; 8]);

impl KeyId {
    fn of(key: &VerifyingKey) -> Self {
        let mut id = [0; 8];
        id.copy_from_slice(&key.as_bytes()[..8]);
        Self(id)
    }
}

/// An optional claim that, when present, must be a number.
fn present_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    u64::deserialize(d).map(Some)
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
///
/// The keys are decoded once, when the key set is read, and a token is checked here rather than by
/// `jsonwebtoken::decode`, which decodes the public key again for every token (an Ed25519 point decompression)
/// and reads the header and the claims twice: on a gateway in a connect storm that was a tenth of the
/// verification's cost (docs/architecture.md). `jsonwebtoken` still signs the tokens, reads the JWKS and, in the
/// tests, is the reference each rule here is checked against.
#[derive(Clone)]
pub struct Verifier {
    keys: HashMap<String, VerifyingKey>,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The header fields a verifier reads.
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<std::borrow::Cow<'a, str>>,
}

fn b64(part: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok()
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
                        let bytes: [u8; 32] = b64(&okp.x)?.try_into().ok()?;
                        VerifyingKey::from_bytes(&bytes).ok().map(|key| (kid, key))
                    }
                    _ => None,
                }
            })
            .collect();
        Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// Whether the key set holds a key with this id.
    pub fn knows_key(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Verifies `token` and returns its claims: the header names EdDSA and a known `kid`, the signature over the
    /// first two parts is that key's, `exp` has not passed and `nbf` (when present) has, within [`LEEWAY_SECS`],
    /// `iss` and `aud` are this deployment's, and every claim of [`AccessClaims`] is there with its type.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        self.check(token, None).map(|(claims, _)| claims)
    }

    /// [`verify`](Self::verify), also answering the identity of the key that signed the token (the first 8 bytes
    /// of the public key), for a cache of verified tokens.
    pub fn verify_keyed(&self, token: &str) -> Result<(AccessClaims, KeyId), TokenError> {
        self.check(token, None)
    }

    /// The rules of [`verify`](Self::verify) but the signature's, for the very token whose signature a cache saw
    /// checked by key `signed_by` (from [`verify_keyed`](Self::verify_keyed)): the header must still name that key
    /// (a `kid` now holding another key is refused as unknown), and the time, the issuer, the audience and the
    /// claims are checked afresh. Never for a token not verified before: anyone can write claims.
    pub fn verify_signed_before(&self, token: &str, signed_by: KeyId) -> Result<AccessClaims, TokenError> {
        self.check(token, Some(signed_by)).map(|(claims, _)| claims)
    }

    /// Every rule; the signature's only when `signed_by` is `None`.
    fn check(&self, token: &str, signed_by: Option<KeyId>) -> Result<(AccessClaims, KeyId), TokenError> {
        let mut parts = token.split('.');
        let (Some(header_part), Some(claims_part), Some(signature_part), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header_json = b64(header_part).ok_or(TokenError::Malformed)?;
        let header: Header<'_> = serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
        if header.alg != "EdDSA" {
            return Err(TokenError::WrongAlgorithm);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        let key_id = KeyId::of(key);
        if signed_by.is_some_and(|signer| signer != key_id) {
            return Err(TokenError::UnknownKey);
        }
        if signed_by.is_none() {
            let signature = b64(signature_part).ok_or(TokenError::Malformed)?;
            let signature = Signature::from_slice(&signature).map_err(|_| TokenError::BadSignature)?;
            let signed = &token[..header_part.len() + 1 + claims_part.len()];
            key.verify(signed.as_bytes(), &signature)
                .map_err(|_| TokenError::BadSignature)?;
        }
        let claims_json = b64(claims_part).ok_or(TokenError::Malformed)?;
        match serde_json::from_slice::<AccessClaims>(&claims_json) {
            Ok(claims) => {
                Self::check_times(&claims)?;
                if claims.iss != self.issuer || claims.aud != self.audience {
                    return Err(TokenError::WrongIssuerOrAudience);
                }
                Ok((claims, key_id))
            }
            Err(err) => Err(Self::why_unreadable(&err)),
        }
    }

    /// Whether verified claims are still in their time: `exp` has not passed and `nbf` has, within the leeway.
    fn check_times(claims: &AccessClaims) -> Result<(), TokenError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if claims.exp < now.saturating_sub(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    /// Why signed claims do not read as [`AccessClaims`]: not JSON at all, or a claim missing or of the wrong type
    /// (whatever else is wrong with them: the claims are read before they are checked).
    fn why_unreadable(err: &serde_json::Error) -> TokenError {
        if err.classify() == serde_json::error::Category::Data {
            TokenError::MissingClaim
        } else {
            TokenError::Malformed
        }
    }
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

    /// The rules as `jsonwebtoken::decode` applies them (this module's verifier before it decoded keys once).
    fn reference_verify(jwks: &JwkSet, token: &str) -> Result<AccessClaims, TokenError> {
        use jsonwebtoken::{DecodingKey, Validation};
        let header = jsonwebtoken::decode_header(token).map_err(|_| match raw_algorithm(token) {
            Some(alg) if alg != "EdDSA" => TokenError::WrongAlgorithm,
            _ => TokenError::Malformed,
        })?;
        if header.alg != ALGORITHM {
            return Err(TokenError::WrongAlgorithm);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| jwks.find(kid))
            .and_then(|jwk| match &jwk.algorithm {
                AlgorithmParameters::OctetKeyPair(okp) => DecodingKey::from_ed_components(&okp.x).ok(),
                _ => None,
            })
            .ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(ALGORITHM);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&["natter"]);
        validation.set_audience(&["natter-chat"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        Ok(jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)?.claims)
    }

    #[test]
    fn every_token_gets_the_answer_jsonwebtoken_gives() {
        use base64::Engine;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let k1 = key(1);
        let set = jwks("k1", &k1);
        let verifier = Verifier::from_jwks(&set, "natter", "natter-chat");
        let now = jsonwebtoken::get_current_timestamp();
        let good = serde_json::to_value(claims(60)).expect("json");
        let mut bodies = vec![good.clone()];
        let changes: Vec<(&str, serde_json::Value)> = vec![
            ("exp", serde_json::json!(now - 3)),
            ("exp", serde_json::json!(now - 60)),
            ("exp", serde_json::json!("soon")),
            ("exp", serde_json::json!(1.5)),
            ("nbf", serde_json::json!(now + 3)),
            ("nbf", serde_json::json!(now + 60)),
            ("nbf", serde_json::json!(null)),
            ("iss", serde_json::json!("other")),
            ("iss", serde_json::json!(7)),
            ("aud", serde_json::json!("other")),
            ("aud", serde_json::json!(["natter-chat"])),
            ("sub", serde_json::json!(5)),
            ("name", serde_json::json!(null)),
            ("guest", serde_json::json!("yes")),
            ("extra", serde_json::json!({"a": 1})),
        ];
        for (name, value) in changes {
            let mut body = good.clone();
            body[name] = value;
            bodies.push(body);
        }
        for name in ["exp", "iss", "aud", "sub", "name", "iat", "sid", "guest"] {
            let mut body = good.clone();
            body.as_object_mut().expect("object").remove(name);
            bodies.push(body);
        }
        // An expired token that also lacks a claim, and one with the wrong audience that lacks one.
        let mut both = good.clone();
        both["exp"] = serde_json::json!(now - 60);
        both.as_object_mut().expect("object").remove("sid");
        bodies.push(both);
        let mut both = good.clone();
        both["aud"] = serde_json::json!("other");
        both.as_object_mut().expect("object").remove("name");
        bodies.push(both);

        let mut tokens = Vec::new();
        for body in &bodies {
            for kid in ["k1", "k9"] {
                let mut header = jsonwebtoken::Header::new(ALGORITHM);
                header.kid = Some(kid.into());
                tokens.push(jsonwebtoken::encode(&header, body, &k1).expect("signs"));
            }
            let mut header = jsonwebtoken::Header::new(ALGORITHM);
            header.kid = Some("k1".into());
            tokens.push(jsonwebtoken::encode(&header, body, &key(2)).expect("signs"));
        }
        let good_token = sign("k1", &k1, &claims(60));
        let parts: Vec<&str> = good_token.split('.').collect();
        let signed_with = |header: &str, claims: &str| {
            use ed25519_dalek::Signer as _;
            let seed = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
            let header = b64(header.as_bytes());
            let text = format!("{header}.{claims}");
            format!("{text}.{}", b64(&seed.sign(text.as_bytes()).to_bytes()))
        };
        tokens.extend([
            String::new(),
            "garbage".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            format!("{}.{}.{}.", parts[0], parts[1], parts[2]),
            format!("{}.{}.", parts[0], parts[1]),
            format!("{}.{}.{}", parts[0], parts[1], &parts[2][..40]),
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}", parts[0], parts[1], parts[2].replace('A', "B")),
            format!("{}.{}x.{}", parts[0], parts[1], parts[2]),
            format!("{}.!!.{}", parts[0], parts[2]),
            format!("{}.{}.!!", parts[0], parts[1]),
            signed_with(r#"{"alg":"none","kid":"k1"}"#, parts[1]),
            signed_with(r#"{"alg":"HS256","kid":"k1"}"#, parts[1]),
            signed_with(r#"{"alg":"EdDSA"}"#, parts[1]),
            signed_with(r#"{"kid":"k1"}"#, parts[1]),
            signed_with(r#"{"alg":"EdDSA","kid":"k1","typ":"JWT","x":[1]}"#, parts[1]),
            signed_with(r#"{"alg":"EdDSA","kid":"k1"}"#, &b64(b"not json")),
            signed_with(r#"{"alg":"EdDSA","kid":"k1"}"#, &b64(b"[1,2]")),
            signed_with(r#"{"alg":"EdDSA","kid":"k1"}"#, &b64(b"{}")),
            signed_with(r#"{"alg":"EdDSA","kid":"k1""#, parts[1]),
            signed_with(r#"{"alg":"EdDSA","kid":7}"#, parts[1]),
        ]);
        assert!(tokens.len() > 100);
        for token in &tokens {
            assert_eq!(verifier.verify(token), reference_verify(&set, token), "token {token}");
        }
    }

    #[test]
    fn a_token_signed_before_is_checked_on_every_rule_but_its_signature() {
        let k1 = key(1);
        let verifier = Verifier::from_jwks(&jwks("k1", &k1), "natter", "natter-chat");
        let good = claims(60);
        let token = sign("k1", &k1, &good);
        let (claims_back, signer) = verifier.verify_keyed(&token).expect("verifies");
        assert_eq!(claims_back, good);
        assert_eq!(verifier.verify_signed_before(&token, signer), Ok(good.clone()));
        // What it does not check: the signature (the caller's cache vouches for it).
        assert_eq!(
            verifier.verify_signed_before(&sign("k1", &key(2), &good), signer),
            Ok(good.clone())
        );
        // What it does: the time, the key behind the kid, the issuer and audience, the claims.
        assert_eq!(
            verifier.verify_signed_before(&sign("k1", &k1, &claims(-60)), signer),
            Err(TokenError::Expired)
        );
        let other = Verifier::from_jwks(&jwks("k2", &k1), "natter", "natter-chat");
        assert_eq!(other.verify_signed_before(&token, signer), Err(TokenError::UnknownKey));
        let rotated = Verifier::from_jwks(&jwks("k1", &key(3)), "natter", "natter-chat");
        assert_eq!(
            rotated.verify_signed_before(&token, signer),
            Err(TokenError::UnknownKey),
            "the kid now names another key"
        );
        let elsewhere = Verifier::from_jwks(&jwks("k1", &k1), "natter", "another");
        assert_eq!(
            elsewhere.verify_signed_before(&token, signer),
            Err(TokenError::WrongIssuerOrAudience)
        );
        assert_eq!(verifier.verify_signed_before("a.b", signer), Err(TokenError::Malformed));
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
