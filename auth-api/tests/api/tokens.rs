//! Access tokens verify against the published JWKS with the algorithm pinned, and every forgery fails.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use natter_proto::token::{AccessClaims, TokenError, Verifier};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn jwks(app: &TestApp) -> JwkSet {
    let reply = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    serde_json::from_value(reply.body).expect("a JWK set")
}

/// The active signing key, read from the database, so the test can sign claims the API would never issue.
async fn signing_key(app: &TestApp) -> (String, EncodingKey) {
    let (kid, der): (String, Vec<u8>) =
        sqlx::query_as("SELECT kid, private_der FROM signing_keys WHERE retired_at IS NULL")
            .fetch_one(&app.db)
            .await
            .expect("an active key");
    (kid, EncodingKey::from_ed_der(&der))
}

fn sign(kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("signs")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(user: &Value) -> Value {
    json!({"iss": "natter", "aud": "natter", "sub": user["id"], "name": user["name"], "guest": false,
           "iat": now(), "exp": now() + 600, "sid": uuid::Uuid::new_v4().to_string()})
}

#[tokio::test]
async fn issued_tokens_verify_against_the_jwks() {
    let app = spawn_app().await;
    let tokens = app.register("judy").await;
    let set = jwks(&app).await;
    assert_eq!(set.keys.len(), 1);
    let raw = serde_json::to_value(&set).expect("serializes");
    assert_eq!(raw["keys"][0]["kty"], "OKP");
    assert_eq!(raw["keys"][0]["crv"], "Ed25519");
    assert_eq!(raw["keys"][0]["alg"], "EdDSA");
    assert!(
        raw["keys"][0].get("d").is_none(),
        "the JWKS must not leak the private key"
    );

    let token = tokens["access_token"].as_str().expect("token");
    let header = jsonwebtoken::decode_header(token).expect("header");
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), set.keys[0].common.key_id.as_deref());

    let claims = Verifier::from_jwks(&set, "natter", "natter")
        .verify(token)
        .expect("verifies");
    assert_eq!(claims.name, "judy");
    assert_eq!(claims.sub, tokens["user"]["id"].as_str().expect("id"));
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(
        Verifier::from_jwks(&set, "natter", "someone-else").verify(token),
        Err(TokenError::WrongIssuerOrAudience)
    );
}

#[tokio::test]
async fn forged_and_stale_tokens_are_refused_by_the_verifier_and_the_api() {
    let app = spawn_app().await;
    let tokens = app.register("mallory").await;
    let user = &tokens["user"];
    let (kid, key) = signing_key(&app).await;
    let verifier = Verifier::from_jwks(&jwks(&app).await, "natter", "natter");

    // Control: the test's own signing with the real key is accepted, so the refusals below are meaningful.
    let good = sign(&kid, &key, &claims(user));
    verifier.verify(&good).expect("a correctly signed token verifies");
    assert_eq!(app.get("/api/rooms", Some(&good)).await.status, StatusCode::OK);

    let real = tokens["access_token"].as_str().expect("token");
    let parts: Vec<&str> = real.split('.').collect();

    // Tampered payload: same header and signature, different claims.
    let mut forged_claims = claims(user);
    forged_claims["name"] = json!("admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged_claims.to_string()),
        parts[2]
    );

    // alg: none, no signature.
    let none_header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string());
    let alg_none = format!("{none_header}.{}.", parts[1]);

    // HS256 keyed with the public key: the classic algorithm-confusion forgery.
    let x = jwks(&app).await.keys[0].clone();
    let public = serde_json::to_value(&x).expect("jwk")["x"]
        .as_str()
        .expect("x")
        .to_owned();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let confused =
        jsonwebtoken::encode(&hs_header, &claims(user), &EncodingKey::from_secret(public.as_bytes())).expect("signs");

    let mut expired = claims(user);
    expired["exp"] = json!(now() - 120);
    let mut wrong_aud = claims(user);
    wrong_aud["aud"] = json!("another-app");
    let mut wrong_iss = claims(user);
    wrong_iss["iss"] = json!("https://evil.example");
    let mut no_exp = claims(user);
    no_exp.as_object_mut().expect("object").remove("exp");

    let mut unknown_seed = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    unknown_seed.extend_from_slice(&[7u8; 32]);
    let stranger = EncodingKey::from_ed_der(&unknown_seed);

    let cases: Vec<(&str, String, TokenError)> = vec![
        ("tampered payload", tampered, TokenError::BadSignature),
        ("alg none", alg_none, TokenError::WrongAlgorithm),
        ("HS256 with the public key", confused, TokenError::WrongAlgorithm),
        ("expired", sign(&kid, &key, &expired), TokenError::Expired),
        (
            "wrong aud",
            sign(&kid, &key, &wrong_aud),
            TokenError::WrongIssuerOrAudience,
        ),
        (
            "wrong iss",
            sign(&kid, &key, &wrong_iss),
            TokenError::WrongIssuerOrAudience,
        ),
        ("no exp", sign(&kid, &key, &no_exp), TokenError::MissingClaim),
        (
            "unknown key id",
            sign("not-a-kid", &stranger, &claims(user)),
            TokenError::UnknownKey,
        ),
        (
            "known kid, wrong key",
            sign(&kid, &stranger, &claims(user)),
            TokenError::BadSignature,
        ),
        ("garbage", "abc.def".into(), TokenError::Malformed),
    ];
    for (what, token, expected) in cases {
        assert_eq!(
            verifier.verify(&token).map(|c: AccessClaims| c.name),
            Err(expected.clone()),
            "{what}"
        );
        app.get("/api/rooms", Some(&token))
            .await
            .assert_error(401, expected.code());
    }
    app.get("/api/rooms", None).await.assert_error(401, "missing_token");
}

#[tokio::test]
async fn rotation_keeps_old_keys_published_until_their_tokens_expire() {
    let app = spawn_app().await;
    let old_token = app.token_for("oscar").await;
    let old_kid = jsonwebtoken::decode_header(&old_token)
        .expect("header")
        .kid
        .expect("kid");

    // Age the signing key past the rotation period; the next instance to load keys rotates (running instances
    // do the same on their periodic refresh).
    sqlx::query("UPDATE signing_keys SET created_at = now() - interval '30 days'")
        .execute(&app.db)
        .await
        .expect("age the key");
    let third = crate::helpers::spawn_app_on(app.db_url.clone(), &[]).await;
    let set = jwks(&third).await;
    assert_eq!(set.keys.len(), 2, "old and new keys are both published");
    let new_token = third.token_for("peggy").await;
    let new_kid = jsonwebtoken::decode_header(&new_token)
        .expect("header")
        .kid
        .expect("kid");
    assert_ne!(new_kid, old_kid, "a new key signs after rotation");
    // Tokens from before the rotation still work.
    assert_eq!(third.get("/api/rooms", Some(&old_token)).await.status, StatusCode::OK);
    assert_eq!(third.get("/api/rooms", Some(&new_token)).await.status, StatusCode::OK);

    // Once the old key retired longer ago than an access token lives, it leaves the JWKS.
    sqlx::query("UPDATE signing_keys SET retired_at = now() - interval '1 hour' WHERE kid = $1")
        .bind(&old_kid)
        .execute(&app.db)
        .await
        .expect("age the retirement");
    let fourth = crate::helpers::spawn_app_on(app.db_url.clone(), &[]).await;
    let set = jwks(&fourth).await;
    assert_eq!(set.keys.len(), 1);
    assert_eq!(set.keys[0].common.key_id.as_deref(), Some(new_kid.as_str()));
    fourth
        .get("/api/rooms", Some(&old_token))
        .await
        .assert_error(401, "token_unknown_key");
}

#[tokio::test]
async fn an_instance_learns_of_another_instances_new_key_when_it_meets_one_of_its_tokens() {
    let a = spawn_app().await;
    sqlx::query("UPDATE signing_keys SET created_at = now() - interval '30 days'")
        .execute(&a.db)
        .await
        .expect("age the key");
    // B starts on the same database, rotates, and signs with a key A has not loaded yet.
    let b = crate::helpers::spawn_app_on(a.db_url.clone(), &[]).await;
    let token = b.token_for("trent").await;
    // Past the guard against reload floods from forged kids.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let reply = a.get("/api/rooms", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(jwks(&a).await.keys.len(), 2);
}
