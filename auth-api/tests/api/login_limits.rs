//! Login guessing is slowed per (user, address) and per user, without locking the user out: each client here
//! has its own loopback address (127.0.0.0/8 is all local), which the API sees as the peer address. The budgets
//! and the known addresses are in the database, shared by every instance and kept across restarts.

use std::net::IpAddr;

use natter_test_support::metrics_page::value;
use natter_test_support::stack::Stack;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Reply, TestApp, post_from, spawn_app_on, spawn_app_with};

fn addr(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

async fn login_from(app: &TestApp, from: IpAddr, name: &str, password: &str) -> Reply {
    app.post_from(from, "/api/login", json!({"username": name, "password": password}))
        .await
}

/// Registers `name` from an address no test logs in from, so no address of the test is known for it yet.
async fn register_elsewhere(app: &TestApp, name: &str) {
    let reply = app
        .post_from(
            addr(250),
            "/api/register",
            json!({"username": name, "password": "correct horse"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

fn retry_after(reply: &Reply) -> u64 {
    reply.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds")
}

#[tokio::test]
async fn bad_passwords_from_one_address_do_not_stop_the_right_one_from_another() {
    let app = spawn_app_with(&[
        "--login-failures-per-user-address",
        "3",
        "--login-failures-per-user",
        "50",
    ])
    .await;
    register_elsewhere(&app, "ines").await;
    for attempt in 0..10 {
        let reply = login_from(&app, addr(2), "ines", "wrong horse").await;
        let want = if attempt < 3 {
            (401, "invalid_credentials")
        } else {
            (429, "rate_limited")
        };
        reply.assert_error(want.0, want.1);
    }
    let limited = login_from(&app, addr(2), "ines", "correct horse").await;
    limited.assert_error(429, "rate_limited");
    assert!((1..=60).contains(&retry_after(&limited)), "{}", retry_after(&limited));

    let owner = login_from(&app, addr(3), "ines", "correct horse").await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);
    // The guesser's address is limited for this user only.
    login_from(&app, addr(2), "someone-else", "wrong horse")
        .await
        .assert_error(401, "invalid_credentials");
}

#[tokio::test]
async fn guessing_from_many_addresses_is_stopped_by_the_per_user_budget() {
    let app = spawn_app_with(&[
        "--login-failures-per-user-address",
        "3",
        "--login-failures-per-user",
        "5",
    ])
    .await;
    register_elsewhere(&app, "jonas").await;
    for last in 10..15 {
        login_from(&app, addr(last), "jonas", "wrong horse")
            .await
            .assert_error(401, "invalid_credentials");
    }
    for last in 15..18 {
        let reply = login_from(&app, addr(last), "jonas", "wrong horse").await;
        reply.assert_error(429, "rate_limited");
        assert!((1..=3600).contains(&retry_after(&reply)), "{}", retry_after(&reply));
    }
    // A name that does not exist is limited the same way, so a 429 does not tell names apart.
    for last in 10..15 {
        login_from(&app, addr(last), "nobody-here", "wrong horse")
            .await
            .assert_error(401, "invalid_credentials");
    }
    login_from(&app, addr(15), "nobody-here", "wrong horse")
        .await
        .assert_error(429, "rate_limited");
    // The budget is the user's: another user from the same addresses is not affected.
    register_elsewhere(&app, "karla").await;
    let other = login_from(&app, addr(15), "karla", "correct horse").await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
}

#[tokio::test]
async fn an_address_the_user_logged_in_from_is_not_held_to_the_per_user_budget() {
    let app = spawn_app_with(&[
        "--login-failures-per-user-address",
        "3",
        "--login-failures-per-user",
        "4",
    ])
    .await;
    register_elsewhere(&app, "lotte").await;
    let home = login_from(&app, addr(20), "lotte", "correct horse").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);

    for last in 30..34 {
        login_from(&app, addr(last), "lotte", "wrong horse")
            .await
            .assert_error(401, "invalid_credentials");
    }
    // The budget is spent: the right password from a new address waits too.
    login_from(&app, addr(34), "lotte", "correct horse")
        .await
        .assert_error(429, "rate_limited");
    // From home, a typo is still only a typo, and the right password works.
    login_from(&app, addr(20), "lotte", "wrong horse")
        .await
        .assert_error(401, "invalid_credentials");
    let again = login_from(&app, addr(20), "lotte", "correct horse").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    // So does the address the account was registered from.
    let registered = login_from(&app, addr(250), "lotte", "correct horse").await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.body);
}

#[tokio::test]
async fn successful_logins_consume_no_failure_budget() {
    let app = spawn_app_with(&[
        "--login-failures-per-user-address",
        "2",
        "--login-failures-per-user",
        "2",
    ])
    .await;
    register_elsewhere(&app, "mads").await;
    // Each from a new address, so each goes through the per-user budget before its password is checked.
    for last in 40..46 {
        let reply = login_from(&app, addr(last), "mads", "correct horse").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    for _ in 0..4 {
        let reply = login_from(&app, addr(40), "mads", "correct horse").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    // Both budgets are whole.
    for last in [50, 51] {
        login_from(&app, addr(last), "mads", "wrong horse")
            .await
            .assert_error(401, "invalid_credentials");
    }
    login_from(&app, addr(52), "mads", "wrong horse")
        .await
        .assert_error(429, "rate_limited");
    let page = app.metrics_text().await;
    let refused = "natter_api_rate_limited_total{limit=\"login_failures_per_user\"}";
    assert_eq!(value(&page, refused), Some(1.0), "{page}");
}

#[tokio::test]
async fn every_attempt_from_an_address_counts_against_its_own_limit() {
    let app = spawn_app_with(&["--auth-attempts-per-address", "8"]).await;
    app.register("ivan").await;
    for i in 0..7 {
        app.post("/api/login", json!({"username": format!("other{i}"), "password": "x"}))
            .await
            .assert_error(401, "invalid_credentials");
    }
    app.post("/api/login", json!({"username": "ivan", "password": "correct horse"}))
        .await
        .assert_error(429, "rate_limited");
    app.post("/api/guest", json!({"username": "someone"}))
        .await
        .assert_error(429, "rate_limited");
    let elsewhere = login_from(&app, addr(60), "ivan", "correct horse").await;
    assert_eq!(elsewhere.status, StatusCode::OK, "{}", elsewhere.body);
}

#[tokio::test]
async fn two_instances_share_the_budgets_and_a_restart_keeps_the_known_addresses() {
    let limits = [
        "--login-failures-per-user-address",
        "3",
        "--login-failures-per-user",
        "5",
    ];
    // One instance is a separate process (the stack's), the other runs here; both on the stack's database.
    let stack = Stack::builder().gateways(0).api_args(&limits).start().await;
    let here = spawn_app_on(stack.db_url().to_owned(), &limits).await;
    let there = stack.api_url();
    let instances = [here.base.clone(), there.clone()];
    let login_at = |base: &str, from: u8, password: &str| {
        let (base, password) = (base.to_owned(), password.to_owned());
        async move {
            post_from(
                &base,
                addr(from),
                "/api/login",
                json!({"username": "nora", "password": password}),
            )
            .await
        }
    };
    register_elsewhere(&here, "nora").await;
    let home = login_at(&there, 20, "correct horse").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);

    // Guesses from one address, alternated between the instances: stopped after 3, as through one instance.
    for attempt in 0..3 {
        login_at(&instances[attempt % 2], 2, "wrong horse")
            .await
            .assert_error(401, "invalid_credentials");
    }
    for base in &instances {
        login_at(base, 2, "wrong horse").await.assert_error(429, "rate_limited");
    }
    // Those 3 count against the user's budget of 5 too: 2 more from other addresses, then none, on either.
    for (i, from) in [10, 11].into_iter().enumerate() {
        login_at(&instances[i % 2], from, "wrong horse")
            .await
            .assert_error(401, "invalid_credentials");
    }
    for (base, from) in instances.iter().zip([12, 13]) {
        let reply = login_at(base, from, "correct horse").await;
        reply.assert_error(429, "rate_limited");
        assert!((61..=3600).contains(&retry_after(&reply)), "{}", retry_after(&reply));
    }

    // A restart forgets neither the spent budget nor the address the user logged in from.
    stack.api().restart().await;
    login_at(&there, 14, "correct horse")
        .await
        .assert_error(429, "rate_limited");
    login_at(&there, 20, "wrong horse")
        .await
        .assert_error(401, "invalid_credentials");
    let again = login_at(&there, 20, "correct horse").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
}

/// Sign-ups from `from` (the socket's address) carrying `X-Forwarded-For: forwarded`: the statuses, in order.
async fn guests_from(app: &TestApp, from: IpAddr, forwarded: &[String], name: &str) -> Vec<StatusCode> {
    let client = reqwest::Client::builder()
        .local_address(from)
        .build()
        .expect("a client bound to the address");
    let mut statuses = Vec::new();
    for (i, xff) in forwarded.iter().enumerate() {
        let reply = client
            .post(format!("{}/api/guest", app.base))
            .header("x-forwarded-for", xff)
            .json(&json!({"username": format!("{name}{i}")}))
            .send()
            .await
            .expect("request reaches the server");
        statuses.push(reply.status());
    }
    statuses
}

#[tokio::test]
async fn a_forwarded_address_is_believed_only_from_a_trusted_proxy() {
    let app = spawn_app_with(&[
        "--auth-attempts-per-address",
        "3",
        "--client-ip-header",
        "x-forwarded-for",
        "--trusted-proxies",
        "127.0.0.50",
    ])
    .await;
    let created = |n| vec![StatusCode::CREATED; n];
    // Straight to the API, a new made-up address each time: limited as the one address it comes from.
    let spoofed: Vec<String> = (0..5).map(|i| format!("198.51.100.{i}")).collect();
    let statuses = guests_from(&app, addr(60), &spoofed, "spoof").await;
    assert_eq!(statuses[..3], created(3)[..], "{statuses:?}");
    assert_eq!(statuses[3..], [StatusCode::TOO_MANY_REQUESTS; 2], "{statuses:?}");
    // Through the proxy, each client its own budget: what the client wrote itself (left of what the proxy
    // appended) is not believed either.
    let through: Vec<String> = (0..5).map(|i| format!("6.6.6.6, 203.0.113.{i}")).collect();
    assert_eq!(guests_from(&app, addr(50), &through, "proxied").await, created(5));
    let one_client: Vec<String> = (0..4).map(|i| format!("7.7.7.{i}, 203.0.113.99")).collect();
    let statuses = guests_from(&app, addr(50), &one_client, "same").await;
    assert_eq!(
        statuses,
        [created(3), vec![StatusCode::TOO_MANY_REQUESTS]].concat(),
        "one client behind the proxy is limited as itself"
    );
}
