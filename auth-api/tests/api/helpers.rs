//! Starting the real application on a free port with a fresh database, and calling it over HTTP.

use natter_auth_api::config::Config;
use natter_auth_api::startup::Application;
use natter_service::Validate;
use natter_test_support::{NatsServer, TestDb};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use clap::Parser;

/// A running auth-api on 127.0.0.1 with its own database.
pub struct TestApp {
    pub base: String,
    pub db_url: String,
    pub db: sqlx::PgPool,
    pub http: reqwest::Client,
    /// The NATS server the app uses, if started with one.
    pub nats: Option<NatsServer>,
    /// Stops the server when dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A response: status, headers and body parsed as JSON (`Value::Null` when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<no error code>")
    }

    /// Asserts status and error code together, with the body in the failure message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.code()),
            (status, code),
            "body: {}",
            self.body
        );
        assert!(
            self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.body
        );
    }
}

/// Starts the app with the default configuration plus `args`.
pub async fn spawn_app_with(args: &[&str]) -> TestApp {
    let db = TestDb::create().await;
    spawn_app_on(db.url().to_owned(), args).await
}

/// Starts the app with the default configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the app with its own NATS server, with the default configuration plus `args`.
pub async fn spawn_app_with_nats(args: &[&str]) -> TestApp {
    let nats = NatsServer::start();
    // As the auth API is deployed: its own NATS user, allowed only what its role needs.
    let url = nats.url();
    let credentials = natter_test_support::nats_credentials("natter-auth-api");
    let mut all = vec!["--nats-url", url.as_str()];
    all.extend(credentials.iter().map(String::as_str));
    all.extend_from_slice(args);
    let db = TestDb::create().await;
    let mut app = spawn_app_on(db.url().to_owned(), &all).await;
    app.nats = Some(nats);
    app
}

/// Starts the app against an existing database URL.
pub async fn spawn_app_on(db_url: String, args: &[&str]) -> TestApp {
    let mut argv = vec!["natter-auth-api", "--listen", "127.0.0.1:0", "--database-url", &db_url];
    argv.extend_from_slice(args);
    let config = Config::try_parse_from(argv).expect("test config parses");
    config.validate().expect("test config is valid");
    let app = Application::build(config).await.expect("application builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let db = app.state().db.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        base,
        db_url,
        db,
        http: reqwest::Client::new(),
        nats: None,
        _stop: stop,
    }
}

impl TestApp {
    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        read(req.send().await.expect("request reaches the server")).await
    }

    /// POST JSON without a token.
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, None, Some(body)).await
    }

    /// POSTs JSON from the client address `from` (a loopback address: the client socket is bound to it, so the
    /// API sees it as the peer address).
    pub async fn post_from(&self, from: std::net::IpAddr, path: &str, body: Value) -> Reply {
        post_from(&self.base, from, path, body).await
    }

    /// Sends raw bytes with a content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Reply {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        read(req.send().await.expect("request reaches the server")).await
    }

    /// GET with a token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    /// The `/metrics` page.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics request reaches the server")
            .text()
            .await
            .expect("metrics page is text")
    }

    /// A client of the app's NATS server (the app must have been started with one).
    pub async fn nats_client(&self) -> async_nats::Client {
        let nats = self.nats.as_ref().expect("the app was started with NATS");
        async_nats::connect(nats.url())
            .await
            .expect("connects to the test's NATS")
    }

    /// Publishes a gateway heartbeat for each `(id, url, connections)` on the app's NATS, as gateways (or a client
    /// passing for one) do, and flushes.
    pub async fn announce_gateways(&self, gateways: &[(&str, &str, u64)]) {
        let nats = self.nats_client().await;
        for (id, url, connections) in gateways {
            let beat = natter_proto::bus::GatewayInfo {
                id: (*id).into(),
                url: (*url).into(),
                connections: *connections,
                draining: false,
                instance: String::new(),
            };
            nats.publish(
                natter_proto::subject::gateway_heartbeat(),
                serde_json::to_vec(&beat).expect("json").into(),
            )
            .await
            .expect("published");
        }
        nats.flush().await.expect("flushed");
    }

    /// What the revoked-sessions bucket holds for session `sid`, if anything.
    pub async fn revoked_session(&self, sid: &str) -> Option<natter_proto::bus::RevokedSession> {
        let js = async_nats::jetstream::new(self.nats_client().await);
        let store = js
            .get_key_value(natter_proto::bus::REVOKED_SESSIONS_BUCKET)
            .await
            .expect("the auth API made the bucket");
        let entry = store.get(sid).await.expect("the bucket answers")?;
        Some(serde_json::from_slice(&entry).expect("a revoked session"))
    }

    /// Logs `name` in with the password [`TestApp::register`] gives; returns the token response.
    pub async fn login(&self, name: &str) -> Value {
        let reply = self
            .post("/api/login", json!({"username": name, "password": "correct horse"}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "login {name}: {}", reply.body);
        reply.body
    }

    /// Registers `name` with a good password; returns the token response.
    pub async fn register(&self, name: &str) -> Value {
        let reply = self
            .post("/api/register", json!({"username": name, "password": "correct horse"}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "register {name}: {}", reply.body);
        reply.body
    }

    /// Creates a room as the holder of `token`; returns the room.
    pub async fn create_room(&self, token: &str, name: &str, private: bool) -> Value {
        let reply = self
            .call(
                Method::POST,
                "/api/rooms",
                Some(token),
                Some(json!({"name": name, "private": private})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body
    }

    /// POSTs to `path` with `token` and no body.
    pub async fn post_as(&self, token: &str, path: &str) -> Reply {
        self.call(Method::POST, path, Some(token), None).await
    }

    /// Joins private room `room` with its join `code` as the holder of `token`.
    pub async fn join_with_code(&self, token: &str, room: &str, code: &str) -> Reply {
        let path = format!("/api/rooms/{room}/join");
        self.call(Method::POST, &path, Some(token), Some(json!({"code": code})))
            .await
    }

    /// DELETEs `path` with `token`.
    pub async fn delete_as(&self, token: &str, path: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Registers `name` and returns its access token.
    pub async fn token_for(&self, name: &str) -> String {
        self.register(name).await["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }
}

/// POSTs JSON to the API at `base` (`http://HOST:PORT`, this process's app or another process) from the client
/// address `from` (a loopback address the client socket is bound to).
pub async fn post_from(base: &str, from: std::net::IpAddr, path: &str, body: Value) -> Reply {
    let client = reqwest::Client::builder()
        .local_address(from)
        .build()
        .expect("a client bound to the address");
    let req = client.post(format!("{base}{path}")).json(&body);
    read(req.send().await.expect("request reaches the server")).await
}

/// The claims of a token, read without verifying it.
pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("the payload is base64url");
    serde_json::from_slice(&bytes).expect("the payload is JSON")
}

/// The access token of a token response.
pub fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().expect("an access token")
}

async fn read(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body is readable");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("{status}: body is not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    Reply { status, headers, body }
}
