//! What the gateway's benchmark examples share: a WebSocket client of the protocol's frames, and percentiles.

// Each example uses its own part of this.
#![allow(dead_code)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use natter_test_support::stack::Program;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(gw: &Program, token: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}?token={token}", gw.ws_url()))
        .await
        .expect("WebSocket connects");
    until(&mut ws, |f| f["type"] == "hello").await;
    ws
}

/// Reads frames until one matches; returns it.
pub async fn until(ws: &mut Ws, matches: impl Fn(&Value) -> bool) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("readable");
        if let Message::Text(text) = msg {
            let frame: Value = serde_json::from_str(&text).expect("JSON");
            if matches(&frame) {
                return frame;
            }
        }
    }
}

pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.expect("send");
}

pub async fn join(ws: &mut Ws, room: &str) {
    send(ws, json!({"type": "join", "room": room})).await;
    until(ws, |f| f["type"] == "joined").await;
}

/// p50 and p99 in milliseconds.
pub fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64() * 1e3;
    (at(0.50), at(0.99))
}
