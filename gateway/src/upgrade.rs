//! `GET /ws`: the HTTP side of a new connection. Checks the gateway's state, the `Origin` and the access token,
//! takes a place in the connection limits, answers the WebSocket handshake, and hands the bare TCP stream to
//! [`crate::connection::serve`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper_util::rt::TokioIo;

use crate::metrics;
use crate::state::Gateway;

/// The subprotocol a browser offers next to its token.
pub const SUBPROTOCOL: &str = "natter.v1";

fn refuse(status: StatusCode, reason: &'static str, message: &str) -> Response {
    ::metrics::counter!(metrics::AUTH_FAILURES, "reason" => reason).increment(1);
    let body = serde_json::json!({"error": {"code": reason, "message": message}}).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The token: `?token=…`, or an offered subprotocol other than [`SUBPROTOCOL`].
fn token_of(req: &Request) -> (Option<String>, bool) {
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("token=").map(|t| t.to_owned()))
    });
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .collect();
    let wants_subprotocol = offered.iter().any(|p| p == SUBPROTOCOL);
    let from_protocol = offered.into_iter().find(|p| p != SUBPROTOCOL && !p.is_empty());
    (from_query.or(from_protocol), wants_subprotocol)
}

/// `GET /ws`: checks origin and token, then upgrades.
pub async fn upgrade(
    State(gw): State<Gateway>,
    ConnectInfo(peer_addr): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    if gw.draining.load(Ordering::Relaxed) {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this gateway is shutting down; use another",
        );
    }
    if let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && !gw.origin_allowed(origin)
    {
        return refuse(StatusCode::FORBIDDEN, "origin", "this origin may not connect");
    }
    let (token, wants_subprotocol) = token_of(&req);
    let Some(token) = token else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "pass the access token as ?token= or a subprotocol",
        );
    };
    let claims = match gw.verify(&token).await {
        Ok(claims) => claims,
        Err(err) => return refuse(StatusCode::UNAUTHORIZED, err.code(), &err.to_string()),
    };
    let Some(slot) = gw.admit(&claims.sub) else {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "connection limit reached",
        );
    };
    let accept = match handshake(&req) {
        Ok(accept) => accept,
        Err(why) => return (StatusCode::BAD_REQUEST, format!("not a WebSocket upgrade: {why}")).into_response(),
    };
    let upgraded = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgraded.await {
            Ok(upgraded) => {
                // Back to the bare TCP stream (with whatever hyper read past the handshake): the connection's own
                // reader and writer take it from here, and hyper's buffers go.
                match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
                    Ok(parts) => {
                        let prefix: Bytes = parts.read_buf;
                        crate::connection::serve(gw, parts.io.into_inner(), prefix, claims, slot).await;
                    }
                    Err(_) => tracing::warn!(%peer_addr, "upgraded connection is not a TCP stream; dropped"),
                }
            }
            Err(err) => tracing::debug!(%peer_addr, error = %err, "upgrade did not complete"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if wants_subprotocol {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    }
    response
}

/// Checks the WebSocket handshake (RFC 6455 §4.2.1) and computes the `Sec-WebSocket-Accept` that answers it.
fn handshake(req: &Request) -> Result<HeaderValue, &'static str> {
    let headers = req.headers();
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return Err("Connection: upgrade and Upgrade: websocket are required");
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err("Sec-WebSocket-Version must be 13");
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("Sec-WebSocket-Key is missing")?;
    Ok(accept_key(key.as_bytes()))
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64 of the SHA-1 of the key and the RFC's GUID.
fn accept_key(key: &[u8]) -> HeaderValue {
    use base64::Engine;
    use sha1::Digest;
    let mut sha = sha1::Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let encoded = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    // Base64 is always a valid header value.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_request_that_is_not_a_websocket_handshake_is_refused() {
        let request = |headers: &[(&str, &str)]| {
            let mut builder = Request::get("/ws");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(Body::empty()).unwrap_or_default()
        };
        let good = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert!(handshake(&request(&good)).is_ok());
        for missing in 0..good.len() {
            let partial: Vec<_> = good
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, h)| *h)
                .collect();
            assert!(handshake(&request(&partial)).is_err(), "without {}", good[missing].0);
        }
        let mut old = good;
        old[2] = ("sec-websocket-version", "8");
        assert!(handshake(&request(&old)).is_err());
    }
}
