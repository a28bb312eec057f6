//! Refresh tokens out of the page's reach: in cookie mode (`Natter-Refresh-Token: cookie`, what the browser client
//! sends) the refresh token travels only in an `HttpOnly; Secure; SameSite=Strict` cookie scoped to the routes that
//! read it; without the header, API clients keep the JSON field as before.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with_nats};

const MODE: (&str, &str) = ("natter-refresh-token", "cookie");

/// A response's status, `Set-Cookie` headers and JSON body.
struct Answer {
    status: StatusCode,
    cookies: Vec<String>,
    body: Value,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.expect("request reaches the server");
    let status = resp.status();
    let cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON")
    };
    Answer { status, cookies, body }
}

/// The refresh token a set of `Set-Cookie` headers keeps (the same for both paths).
fn kept(cookies: &[String]) -> String {
    let values: Vec<&str> = cookies
        .iter()
        .map(|c| {
            c.strip_prefix("natter_refresh=")
                .and_then(|rest| rest.split(';').next())
                .expect("the refresh cookie")
        })
        .collect();
    assert_eq!(values.len(), 2, "{cookies:?}");
    assert_eq!(values[0], values[1], "one token for both paths: {cookies:?}");
    values[0].to_owned()
}

fn post(app: &TestApp, path: &str) -> reqwest::RequestBuilder {
    app.http.post(format!("{}{path}", app.base))
}

#[tokio::test]
async fn in_cookie_mode_the_refresh_token_is_an_http_only_strict_secure_cookie_and_never_in_the_body() {
    let app = spawn_app().await;
    let signed_up = send(
        post(&app, "/api/register")
            .header(MODE.0, MODE.1)
            .json(&json!({"username": "hana", "password": "correct horse"})),
    )
    .await;
    assert_eq!(signed_up.status, StatusCode::CREATED, "{}", signed_up.body);
    assert!(signed_up.body["access_token"].is_string());
    assert!(
        signed_up.body.get("refresh_token").is_none(),
        "no refresh token in the body: {}",
        signed_up.body
    );
    assert_eq!(signed_up.cookies.len(), 2, "{:?}", signed_up.cookies);
    for (cookie, path) in signed_up.cookies.iter().zip(["/api/refresh", "/api/logout"]) {
        let attributes: Vec<&str> = cookie.split("; ").skip(1).collect();
        for wanted in ["HttpOnly", "Secure", "SameSite=Strict", &format!("Path={path}")] {
            assert!(attributes.contains(&wanted), "{wanted} in {cookie}");
        }
        let max_age: i64 = attributes
            .iter()
            .find_map(|a| a.strip_prefix("Max-Age="))
            .expect("a Max-Age: the cookie outlives the browser session")
            .parse()
            .expect("seconds");
        assert!((30 * 86_400 - 60..=30 * 86_400).contains(&max_age), "{max_age}");
        assert!(!cookie.contains("Domain="), "host-only: {cookie}");
    }
    let first = kept(&signed_up.cookies);

    // Guests and logins in cookie mode get one too.
    let guest = send(
        post(&app, "/api/guest")
            .header(MODE.0, MODE.1)
            .json(&json!({"username": "ida"})),
    )
    .await;
    assert_eq!(guest.status, StatusCode::CREATED);
    assert!(guest.body.get("refresh_token").is_none());
    kept(&guest.cookies);
    let login = send(
        post(&app, "/api/login")
            .header(MODE.0, MODE.1)
            .json(&json!({"username": "hana", "password": "correct horse"})),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.get("refresh_token").is_none());
    kept(&login.cookies);

    // A refresh reads the cookie, and rotates it.
    let refreshed = send(
        post(&app, "/api/refresh")
            .header(MODE.0, MODE.1)
            .header("cookie", format!("theme=dark; natter_refresh={first}")),
    )
    .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert!(refreshed.body["access_token"].is_string());
    assert!(refreshed.body.get("refresh_token").is_none());
    assert_eq!(refreshed.body["user"]["name"], "hana");
    let second = kept(&refreshed.cookies);
    assert_ne!(second, first);

    // Without the header a cookie is not read (a page elsewhere cannot send the header without a preflight).
    let plain = send(post(&app, "/api/refresh").header("cookie", format!("natter_refresh={second}"))).await;
    assert_eq!(plain.status, StatusCode::UNAUTHORIZED);
    assert_eq!(plain.body["error"]["code"], "invalid_refresh_token");
    // Nor does the header alone do anything.
    let empty = send(post(&app, "/api/refresh").header(MODE.0, MODE.1)).await;
    assert_eq!(empty.body["error"]["code"], "invalid_refresh_token");

    // Logging out in cookie mode ends the session of the cookie and removes the cookie from both paths.
    let out = send(
        post(&app, "/api/logout")
            .header(MODE.0, MODE.1)
            .header("cookie", format!("natter_refresh={second}")),
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    assert_eq!(out.cookies.len(), 2);
    for cookie in &out.cookies {
        assert!(
            cookie.starts_with("natter_refresh=;") && cookie.contains("Max-Age=0"),
            "{cookie}"
        );
    }
    // A refresh with the dead cookie is refused, and told to drop it.
    let dead = send(
        post(&app, "/api/refresh")
            .header(MODE.0, MODE.1)
            .header("cookie", format!("natter_refresh={second}")),
    )
    .await;
    assert_eq!(dead.status, StatusCode::UNAUTHORIZED);
    assert_eq!(dead.body["error"]["code"], "refresh_token_revoked");
    assert!(dead.cookies.iter().all(|c| c.contains("Max-Age=0")) && dead.cookies.len() == 2);
}

#[tokio::test]
async fn without_cookie_mode_the_json_field_works_as_before_and_no_cookie_is_set() {
    let app = spawn_app().await;
    let tokens = send(post(&app, "/api/register").json(&json!({"username": "jan", "password": "correct horse"}))).await;
    assert_eq!(tokens.status, StatusCode::CREATED);
    assert!(tokens.cookies.is_empty(), "{:?}", tokens.cookies);
    let refresh = tokens.body["refresh_token"].as_str().expect("in the body").to_owned();
    let next = send(post(&app, "/api/refresh").json(&json!({"refresh_token": refresh}))).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    assert!(next.cookies.is_empty());
    assert!(next.body["refresh_token"].is_string());
    // A body token wins over the mode: a client may name the token it means.
    let named = send(
        post(&app, "/api/refresh")
            .header(MODE.0, MODE.1)
            .json(&json!({"refresh_token": next.body["refresh_token"]})),
    )
    .await;
    assert_eq!(named.status, StatusCode::OK, "{}", named.body);
    assert!(
        named.body.get("refresh_token").is_none(),
        "cookie mode answers with the cookie"
    );
    kept(&named.cookies);
}

#[tokio::test]
async fn the_pages_connect_src_is_this_origin_and_the_gateways_heard_of() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("index.html"), "<!doctype html><title>Natter</title>").expect("index");
    let app = spawn_app_with_nats(&["--web-dir", dir.path().to_str().expect("utf-8")]).await;
    let csp = || async {
        let page = app.http.get(format!("{}/", app.base)).send().await.expect("page");
        page.headers()["content-security-policy"]
            .to_str()
            .expect("ascii")
            .to_owned()
    };
    let connect = |policy: &str| {
        policy
            .split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix("connect-src "))
            .expect("a connect-src")
            .to_owned()
    };
    assert_eq!(
        connect(&csp().await),
        "'self'",
        "no gateway heard of yet: this origin only"
    );

    app.announce_gateways(&[
        ("g1", "ws://127.0.0.1:9001/ws", 0),
        ("g2", "wss://gw2.example/ws", 0),
        ("bad", "ws://x; script-src *", 0),
    ])
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let policy = csp().await;
        if connect(&policy) == "'self' ws://127.0.0.1:9001 wss://gw2.example" {
            assert!(policy.contains("script-src 'self'"), "{policy}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{policy}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
