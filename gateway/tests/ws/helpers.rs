//! A test stack (NATS, PostgreSQL, auth API, gateway processes; natter-test-support's `stack`) and a WebSocket
//! test client.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use natter_test_support::stack::Program;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long a test waits for any one expected frame.
pub const WAIT: Duration = Duration::from_secs(10);

/// NATS, PostgreSQL, the auth API and gateway processes (`natter_test_support::stack::Stack`, which this derefs to:
/// `stack.nats` is the NATS server), with the auth API's routes as helpers.
pub struct Stack {
    inner: natter_test_support::stack::Stack,
    pub api: String,
    pub db_url: String,
    http: reqwest::Client,
}

impl std::ops::Deref for Stack {
    type Target = natter_test_support::stack::Stack;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::ops::DerefMut for Stack {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A stack whose auth API gets extra flags.
    pub async fn start_with(api_args: &[&str]) -> Self {
        Self::start_from(natter_test_support::stack::Stack::builder().api_args(api_args)).await
    }

    /// A stack with a PostgreSQL cluster of its own, which the test may kill and restart (`postgres_mut`).
    pub async fn start_own_postgres() -> Self {
        Self::start_from(natter_test_support::stack::Stack::builder().own_postgres()).await
    }

    /// The stack `builder` makes, with no gateways (tests start their own).
    async fn start_from(builder: natter_test_support::stack::StackBuilder) -> Self {
        let inner = builder.gateways(0).start().await;
        Self {
            api: inner.api_url(),
            db_url: inner.db_url().to_owned(),
            inner,
            http: reqwest::Client::new(),
        }
    }

    /// Starts a gateway process with the test defaults plus `args`.
    pub async fn gateway(&self, args: &[&str]) -> GatewayProc {
        GatewayProc::new(self.inner.add_gateway(&with_drain_jitter(args)).await)
    }

    /// Starts a gateway process on a given port (several may share one: SO_REUSEPORT).
    pub async fn gateway_on(&self, port: u16, args: &[&str]) -> GatewayProc {
        GatewayProc::new(self.inner.add_gateway_on(port, &with_drain_jitter(args)).await)
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

    /// Starts a persister process writing to the stack's database; killed when the handle drops.
    pub async fn persister(&self) -> PersisterProc {
        self.persister_with(&[]).await
    }

    /// Starts a persister process with extra flags; killed when the handle drops.
    pub async fn persister_with(&self, args: &[&str]) -> PersisterProc {
        PersisterProc(self.inner.add_persister(args).await)
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

    /// PUT a JSON body with a bearer token; the status and the JSON answer (`null` when none).
    pub async fn put_with(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .put(format!("{}{path}", self.api))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
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

/// A short drain unless the test sets its own.
fn with_drain_jitter<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    if !args.contains(&"--drain-jitter") {
        all.extend(["--drain-jitter", "200ms"]);
    }
    all
}

/// A persister process, killed on drop.
pub struct PersisterProc(Arc<Program>);

impl Drop for PersisterProc {
    fn drop(&mut self) {
        self.0.kill();
    }
}

/// A gateway process, killed on drop.
pub struct GatewayProc {
    program: Arc<Program>,
    pub port: u16,
}

impl GatewayProc {
    fn new(program: Arc<Program>) -> Self {
        Self {
            port: program.port(),
            program,
        }
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/ws?token={token}", self.port)
    }

    /// A URL on its admin port (`/healthz`, `/readyz`, `/metrics`).
    pub fn admin(&self, path: &str) -> String {
        self.program.admin_url(path)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.program.log()
    }

    /// The text of its `/metrics` page.
    pub async fn metrics(&self) -> String {
        self.program.metrics().await.expect("metrics")
    }

    /// SIGKILL: the gateway dies without a word, as in a crash.
    pub fn kill(&mut self) {
        self.program.kill();
    }

    /// SIGTERM: the gateway drains.
    pub fn terminate(&mut self) {
        self.program.terminate();
    }

    /// Waits for the process to exit; returns its exit code.
    pub async fn wait(&mut self) -> Option<i32> {
        let exit = self.program.wait_exit(Duration::from_secs(20)).await?;
        exit.status.code()
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
