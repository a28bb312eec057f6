//! Access tokens verify against the published JWKS, and keys rotate without logging anyone out. Forgeries are in
//! `attacks.rs`, with the helpers here.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use natter_proto::token::{TokenError, Verifier};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

pub(crate) async fn jwks(app: &TestApp) -> JwkSet {
    let reply = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    serde_json::from_value(reply.body).expect("a JWK set")
}

/// The active signing key, read from the database, so the test can sign claims the API would never issue.
pub(crate) async fn signing_key(app: &TestApp) -> (String, EncodingKey) {
    let (kid, der): (String, Vec<u8>) =
        sqlx::query_as("SELECT kid, private_der FROM signing_keys WHERE retired_at IS NULL")
            .fetch_one(&app.db)
            .await
            .expect("an active key");
    (kid, EncodingKey::from_ed_der(&der))
}

pub(crate) fn sign(kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("signs")
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims the API would issue to `user`, in a session of their own (no family row: never revoked).
pub(crate) fn claims(user: &Value) -> Value {
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
    // And it is gone from the database: no copy of it can mint a token.
    let left: Vec<(String,)> = sqlx::query_as("SELECT kid FROM signing_keys")
        .fetch_all(&fourth.db)
        .await
        .expect("keys");
    assert_eq!(
        left,
        vec![(new_kid,)],
        "the retired key whose tokens have expired is deleted"
    );
}

/// Why an instance on `db_url` with `args` does not start.
async fn refused_start(db_url: &str, args: &[&str]) -> String {
    use clap::Parser;
    let mut argv = vec!["natter-auth-api", "--listen", "127.0.0.1:0", "--database-url", db_url];
    argv.extend_from_slice(args);
    let config = natter_auth_api::config::Config::try_parse_from(argv).expect("parses");
    match natter_auth_api::startup::Application::build(config).await {
        Ok(_) => panic!("an instance started with {args:?}"),
        Err(err) => format!("{err:#}"),
    }
}

#[tokio::test]
async fn signing_keys_are_sealed_at_rest_under_the_environments_secret() {
    let app = spawn_app().await;
    let token = app.token_for("uma").await;
    let row = |db: sqlx::PgPool| async move {
        sqlx::query_as::<_, (String, Vec<u8>)>("SELECT kid, private_der FROM signing_keys WHERE retired_at IS NULL")
            .fetch_one(&db)
            .await
            .expect("an active key")
    };
    let (kid, plain) = row(app.db.clone()).await;
    let seed = plain[plain.len() - 32..].to_vec();

    // Given a secret, an instance seals the key stored before it, and goes on signing with it.
    let secret = "a-secret-of-at-least-32-bytes-0123";
    let sealed = crate::helpers::spawn_app_on(app.db_url.clone(), &["--key-encryption-key", secret]).await;
    let (same_kid, stored) = row(sealed.db.clone()).await;
    assert_eq!(same_kid, kid);
    assert!(stored.starts_with(b"NSK1"), "stored sealed");
    assert!(
        !stored.windows(32).any(|w| w == seed.as_slice()),
        "the private key is not in the row"
    );
    assert_eq!(sealed.get("/api/rooms", Some(&token)).await.status, StatusCode::OK);
    let new_token = sealed.token_for("victor").await;
    assert_eq!(
        jsonwebtoken::decode_header(&new_token).expect("header").kid,
        Some(kid.clone())
    );

    // Without the secret, or with another, no instance starts: it says why.
    let err = refused_start(&app.db_url, &[]).await;
    assert!(err.contains("is sealed"), "{err}");
    let err = refused_start(
        &app.db_url,
        &["--key-encryption-key", "another-secret-of-32-bytes-456789"],
    )
    .await;
    assert!(err.contains("another NATTER_KEY_ENCRYPTION_KEY"), "{err}");

    // A rotation under the secret stores the new key sealed too.
    sqlx::query("UPDATE signing_keys SET created_at = now() - interval '30 days'")
        .execute(&app.db)
        .await
        .expect("age the key");
    let rotated = crate::helpers::spawn_app_on(app.db_url.clone(), &["--key-encryption-key", secret]).await;
    let (new_kid, stored) = row(rotated.db.clone()).await;
    assert_ne!(new_kid, kid);
    assert!(stored.starts_with(b"NSK1"), "a new key is stored sealed");
    assert_eq!(rotated.get("/api/rooms", Some(&token)).await.status, StatusCode::OK);
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
