//! A test stack (NATS, PostgreSQL, auth API, gateway processes) and a WebSocket test client.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use futures::{SinkExt, StreamExt};
use natter_test_support::{NatsServer, TestDb, free_port};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long a test waits for any one expected frame.
pub const WAIT: Duration = Duration::from_secs(10);

/// NATS, the auth API (in this process) and gateway processes.
pub struct Stack {
    pub nats: NatsServer,
    pub api: String,
    pub db_url: String,
    http: reqwest::Client,
    _stop_api: tokio::sync::oneshot::Sender<()>,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A stack whose auth API gets extra flags.
    pub async fn start_with(api_args: &[&str]) -> Self {
        let nats = NatsServer::start();
        let db = TestDb::create().await;
        let config = natter_auth_api::config::Config::try_parse_from(
            [
                "natter-auth-api",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                db.url(),
                "--nats-url",
                &nats.url(),
            ]
            .into_iter()
            .chain(api_args.iter().copied()),
        )
        .expect("auth-api config");
        let app = natter_auth_api::startup::Application::build(config)
            .await
            .expect("auth-api builds");
        let api = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            nats,
            api,
            db_url: db.url().to_owned(),
            http: reqwest::Client::new(),
            _stop_api: stop,
        }
    }

    /// Starts a gateway process with the test defaults plus `args`.
    pub async fn gateway(&self, args: &[&str]) -> GatewayProc {
        GatewayProc::start(&self.nats.url(), &format!("{}/.well-known/jwks.json", self.api), args).await
    }

    /// Starts a gateway process on a given port (several may share one: SO_REUSEPORT).
    pub async fn gateway_on(&self, port: u16, args: &[&str]) -> GatewayProc {
        let jwks = format!("{}/.well-known/jwks.json", self.api);
        GatewayProc::start_on(port, &self.nats.url(), &jwks, args).await
    }

    /// A guest user's access token and id.
    pub async fn user(&self, name: &str) -> (String, String) {
        let reply = self.guest(name).await;
        let token = reply["access_token"].as_str().expect("access token").to_owned();
        let id = reply["user"]["id"].as_str().expect("user id").to_owned();
        (token, id)
    }

    /// A guest login's whole token response.
    pub async fn guest(&self, name: &str) -> Value {
        self.http
            .post(format!("{}/api/guest", self.api))
            .json(&json!({"username": name}))
            .send()
            .await
            .expect("guest login")
            .json()
            .await
            .expect("token response")
    }

    /// Trades a refresh token for new tokens.
    pub async fn refresh(&self, refresh_token: &str) -> Value {
        self.http
            .post(format!("{}/api/refresh", self.api))
            .json(&json!({"refresh_token": refresh_token}))
            .send()
            .await
            .expect("refresh")
            .json()
            .await
            .expect("token response")
    }

    /// Creates a room through the API and returns its id.
    pub async fn room(&self, token: &str, private: bool) -> String {
        let reply: Value = self
            .http
            .post(format!("{}/api/rooms", self.api))
            .bearer_auth(token)
            .json(&json!({"name": "test room", "private": private}))
            .send()
            .await
            .expect("create room")
            .json()
            .await
            .expect("room");
        reply["id"].as_str().expect("room id").to_owned()
    }

    /// Starts a persister in this process, writing to the stack's database; stopped when the sender drops.
    pub async fn persister(&self) -> tokio::sync::oneshot::Sender<()> {
        let config = natter_persister::config::Config::try_parse_from([
            "natter-persister",
            "--listen",
            "127.0.0.1:0",
            "--nats-url",
            &self.nats.url(),
            "--database-url",
            &self.db_url,
        ])
        .expect("persister config");
        let app = natter_persister::startup::Application::build(config)
            .await
            .expect("persister builds");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        stop
    }

    /// GET with a bearer token.
    pub async fn get_with(&self, path: &str, token: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.api))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("JSON")
    }

    /// POST a JSON body (with a bearer token, if given); the status and the JSON answer (`null` when none).
    pub async fn post_with(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.api)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// DELETE with a bearer token; the status.
    pub async fn delete_with(&self, path: &str, token: &str) -> u16 {
        self.http
            .delete(format!("{}{path}", self.api))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .expect("request")
    }
}

/// A gateway process, killed on drop.
pub struct GatewayProc {
    child: Child,
    pub port: u16,
}

impl GatewayProc {
    async fn start(nats_url: &str, jwks_url: &str, args: &[&str]) -> Self {
        Self::start_on(free_port(), nats_url, jwks_url, args).await
    }

    async fn start_on(port: u16, nats_url: &str, jwks_url: &str, args: &[&str]) -> Self {
        let id = format!("gw-{}", uuid::Uuid::new_v4().simple());
        let child = Command::new(env!("CARGO_BIN_EXE_natter-gateway"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--id",
                &id,
                "--nats-url",
                nats_url,
            ])
            .args(["--jwks-url", jwks_url, "--heartbeat-interval", "250ms"])
            // A short drain unless the test sets its own.
            .args(if args.contains(&"--drain-jitter") {
                &[][..]
            } else {
                &["--drain-jitter", "200ms"][..]
            })
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("NATTER_TEST_GATEWAY_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("start the gateway binary");
        let gw = Self { child, port };
        // Async waits: the auth API serving the JWKS runs on this test's runtime.
        for _ in 0..400 {
            let ready = reqwest::get(gw.http("/readyz"))
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return gw;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway on port {} did not come up", gw.port);
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/ws?token={token}", self.port)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The text of its `/metrics` page.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.http("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// SIGKILL: the gateway dies without a word, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the gateway drains.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits for the process to exit; returns its exit code.
    pub async fn wait(&mut self) -> Option<i32> {
        for _ in 0..400 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        self.kill();
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client speaking the Natter protocol.
pub struct Client {
    pub ws: Ws,
    /// Frames read while waiting for another kind, in arrival order.
    pending: std::collections::VecDeque<Value>,
}

impl Client {
    /// Connects and reads the `hello` frame.
    pub async fn connect(gw: &GatewayProc, token: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(gw.ws_url(token))
            .await
            .expect("WebSocket connects");
        Self::greeted(ws).await
    }

    /// Connects over a socket whose receive buffer is fixed at `bytes` (the kernel doubles it), so a client that
    /// stops reading backs the gateway up after little data; reads the `hello` frame.
    pub async fn connect_with_receive_buffer(gw: &GatewayProc, token: &str, bytes: u32) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("receive buffer");
        let addr = format!("127.0.0.1:{}", gw.port).parse().expect("address");
        let tcp = socket.connect(addr).await.expect("TCP connects");
        let (ws, _) = tokio_tungstenite::client_async(gw.ws_url(token), tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .expect("WebSocket connects");
        Self::greeted(ws).await
    }

    /// A client over an upgraded connection, once the gateway's `hello` frame is read.
    async fn greeted(ws: Ws) -> Self {
        let mut client = Self {
            ws,
            pending: Default::default(),
        };
        let hello = client.recv_type("hello").await;
        assert!(hello["user"]["id"].is_string(), "{hello}");
        client
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.ws.send(Message::text(frame.to_string())).await.expect("send");
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.expect("send");
    }

    /// The next JSON frame.
    pub async fn recv(&mut self) -> Value {
        if let Some(frame) = self.pending.pop_front() {
            return frame;
        }
        self.read().await
    }

    async fn read(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")
                .expect("the connection is open")
                .expect("a readable frame");
            match msg {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Close(close) => panic!("closed unexpectedly: {close:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame of `kind`; frames of other kinds stay queued for later `recv`s.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        if let Some(at) = self.pending.iter().position(|f| f["type"] == kind) {
            return self.pending.remove(at).expect("position is in range");
        }
        loop {
            let frame = self.read().await;
            if frame["type"] == kind {
                return frame;
            }
            assert!(
                kind == "error" || frame["type"] != "error",
                "error while waiting for {kind}: {frame}"
            );
            self.pending.push_back(frame);
        }
    }

    /// Frames of `kind` read and queued while waiting for other kinds.
    pub fn queued(&self, kind: &str) -> Vec<Value> {
        self.pending.iter().filter(|f| f["type"] == kind).cloned().collect()
    }

    /// Joins a room and returns the `joined` frame.
    pub async fn join(&mut self, room: &str, since: Option<u64>) -> Value {
        let mut frame = json!({"type": "join", "room": room});
        if let Some(since) = since {
            frame["since"] = json!(since);
        }
        self.send(frame).await;
        self.recv_type("joined").await
    }

    /// Sends a chat message and returns the stored sequence from its ack.
    pub async fn say(&mut self, room: &str, id: &str, body: &str) -> u64 {
        self.send(json!({"type": "send", "room": room, "id": id, "body": body}))
            .await;
        let ack = self.recv_type("ack").await;
        assert_eq!(ack["id"], id, "{ack}");
        ack["seq"].as_u64().expect("ack seq")
    }

    /// Waits for the server to close the connection; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("closed within the wait")
            {
                Some(Ok(Message::Close(Some(frame)))) => return Some(u16::from(frame.code)),
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }
}

/// An upgrade request to `url` with extra headers.
pub fn request(url: &str, headers: &[(&str, &str)]) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = url.into_client_request().expect("valid URL");
    for (name, value) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            value.parse().expect("header value"),
        );
    }
    req
}

/// The HTTP status a refused upgrade answered with.
pub async fn refused_status(req: tokio_tungstenite::tungstenite::handshake::client::Request) -> u16 {
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected the upgrade to be refused"),
    }
}
