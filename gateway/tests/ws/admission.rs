//! Admission under attack: connections that never finish their HTTP request cannot keep newcomers out, floods of
//! request headers are refused with a status, and the admin port answers whatever the public port suffers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Client, GatewayProc, Stack, WAIT, refused_status, request};

/// Addresses the attack comes from, and sockets it keeps open from each (under the per-address cap of 256).
const ATTACK_ADDRESSES: u8 = 12;
const SOCKETS_PER_ADDRESS: usize = 250;

/// An attacker holding `SOCKETS_PER_ADDRESS` sockets from each of `ATTACK_ADDRESSES` addresses open on the
/// gateway's public port without ever sending a request: each socket the gateway closes is opened again a second
/// later, until stopped. Counts the sockets the gateway closed.
struct Attack {
    stop: tokio::sync::watch::Sender<bool>,
    closed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Attack {
    fn start(port: u16) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let closed = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for host in 0..ATTACK_ADDRESSES {
            let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + host);
            for _ in 0..SOCKETS_PER_ADDRESS {
                let (mut stopped, closed) = (stopped.clone(), closed.clone());
                tasks.push(tokio::spawn(async move {
                    // Bounded: at most this many sockets per place, however often the gateway closes them.
                    for _ in 0..100 {
                        if *stopped.borrow() {
                            return;
                        }
                        let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
                            return;
                        };
                        if socket.bind((source, 0).into()).is_err() {
                            return;
                        }
                        if let Ok(mut tcp) = socket.connect(([127, 0, 0, 1], port).into()).await {
                            let mut buf = [0u8; 256];
                            tokio::select! {
                                _ = tcp.read(&mut buf) => { closed.fetch_add(1, Ordering::Relaxed); }
                                _ = stopped.wait_for(|stop| *stop) => return,
                            }
                        }
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stopped.wait_for(|stop| *stop) => return,
                        }
                    }
                }));
            }
        }
        Self { stop, closed, tasks }
    }

    async fn stop(self) -> usize {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.closed.load(Ordering::Relaxed)
    }
}

/// A gauge or counter from the gateway's admin port; panics when the page does not answer within a second.
async fn admin_value(gw: &GatewayProc, series: &str) -> f64 {
    let page = tokio::time::timeout(Duration::from_secs(1), reqwest::get(gw.admin("/metrics")))
        .await
        .expect("/metrics on the admin port answers within a second")
        .expect("/metrics on the admin port answers");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("page");
    natter_test_support::metrics_page::value(&page, series).unwrap_or(0.0)
}

// Two threads: the attacker's 3,000 sockets do not hold up the newcomers' own client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_unfinished_connections_from_twelve_addresses_keep_no_newcomer_out() {
    let stack = Stack::start().await;
    // The defaults: 2,048 pending in all, 256 per address, 10 s header timeout, 2 s under pressure.
    let gw = stack.gateway(&[]).await;
    let (ann, _) = stack.user("ann").await;
    let room = stack.room(&ann, false).await;
    let mut listener = Client::connect(&gw, &ann).await;
    listener.join(&room, None).await;

    let attack = Attack::start(gw.port);
    // The admin port is watched throughout: every scrape must answer.
    let watching = Arc::new(AtomicBool::new(true));
    let scrapes = {
        let (url, watching) = (gw.admin("/metrics"), watching.clone());
        tokio::spawn(async move {
            let (mut answered, mut failed) = (0, Vec::new());
            while watching.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_secs(1), reqwest::get(&url)).await {
                    Ok(Ok(r)) if r.status() == 200 => answered += 1,
                    other => failed.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (answered, failed)
        })
    };
    // With the pool full (or nearly: it sheds the slow while under pressure, and the attacker reopens what was
    // closed a second later) and the attack going on, newcomers connect, join and chat, each within a second.
    for n in 0..5 {
        let (token, _) = stack.user(&format!("newcomer{n}")).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while admin_value(&gw, "natter_gateway_pending_connections").await < 2000.0 {
            assert!(Instant::now() < deadline, "the attack does not fill the pending pool");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let started = Instant::now();
        let mut client = Client::connect(&gw, &token).await;
        client.join(&room, None).await;
        let id = format!("hello-{n}");
        client.say(&room, &id, "through the flood").await;
        let took = started.elapsed();
        // Let in without waiting for a flood connection to be dropped (they are given 2 s under pressure).
        assert!(took < Duration::from_secs(2), "newcomer {n} took {took:?}");
        loop {
            let message = listener.recv_type("message").await;
            if message["id"] == id.as_str() {
                break;
            }
        }
    }

    let shed = admin_value(&gw, "natter_gateway_pending_shed_total{reason=\"busiest_address\"}").await
        + admin_value(&gw, "natter_gateway_pending_shed_total{reason=\"slow_under_pressure\"}").await;
    let refused_all = admin_value(&gw, "natter_gateway_pending_refused_total{scope=\"gateway\"}").await;
    watching.store(false, Ordering::Relaxed);
    let (answered, failed) = scrapes.await.expect("scraper");
    let closed = attack.stop().await;
    assert!(failed.is_empty(), "admin scrapes failed during the attack: {failed:?}");
    // However short the run: the scrapes before each newcomer (`admin_value`) were made with the pool full.
    assert!(answered >= 1, "scraped {answered} times");
    assert!(shed >= 5.0, "idle sockets were shed to let the newcomers in: {shed}");
    assert!(
        closed as f64 >= shed * 0.5,
        "the attacker saw its sockets closed: {closed} of {shed}"
    );
    assert_eq!(refused_all, 0.0, "no newcomer was refused for a full pool");
    // One warning for the whole attack, not one per socket.
    let log = gw.log();
    let warnings = log.matches("pending connections are piling up").count();
    assert!(
        (1..=3).contains(&warnings),
        "{warnings} warnings for {shed} sockets shed:\n{log}"
    );
}

/// Sends `head` at once and returns the status line the gateway answers with before closing; panics if the
/// socket is still open after the wait.
async fn answer_to(port: u16, head: &[u8]) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    // The gateway may answer and close before the whole head is written: a failed write is not the point.
    let _ = tcp.write_all(head).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("the gateway answers and closes");
    String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn header_floods_at_the_upgrade_get_a_status_and_the_gateway_serves_on() {
    let stack = Stack::start().await;
    let gw = stack
        .gateway(&["--header-timeout", "2s", "--header-timeout-under-pressure", "1s"])
        .await;
    let (token, _) = stack.user("hedda").await;
    let upgrade = format!(
        "GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    // Many headers: past hyper's 100, a 431.
    let many: String = (0..5_000).map(|i| format!("X-Flood-{i}: {i}\r\n")).collect();
    let status = answer_to(gw.port, format!("{upgrade}{many}\r\n").as_bytes()).await;
    assert!(status.starts_with("HTTP/1.1 431"), "many headers: {status:?}");
    // One huge header: past the request head's buffer, a 431.
    let huge = format!("X-Huge: {}\r\n", "a".repeat(1 << 20));
    let status = answer_to(gw.port, format!("{upgrade}{huge}\r\n").as_bytes()).await;
    assert!(status.starts_with("HTTP/1.1 431"), "a huge header: {status:?}");
    // A huge token in the query: refused as a token, not crashed on.
    let long_url = format!(
        "GET /ws?token={} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        "e".repeat(64 * 1024)
    );
    let status = answer_to(gw.port, long_url.as_bytes()).await;
    assert!(
        status.starts_with("HTTP/1.1 401") || status.starts_with("HTTP/1.1 414") || status.starts_with("HTTP/1.1 431"),
        "a 64 KiB token: {status:?}"
    );
    // Slow headers: a head that never ends, a header line every 500 ms, is cut off at the header timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", gw.port)).await.expect("connect");
    slow.write_all(upgrade.as_bytes()).await.expect("write");
    let started = Instant::now();
    let mut cut = false;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if slow.write_all(format!("X-Slow-{i}: {i}\r\n").as_bytes()).await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "a head sent a header every 500 ms is cut off (after {:?})",
        started.elapsed()
    );
    // Through all of it, a client connects and is served.
    let mut client = Client::connect(&gw, &token).await;
    client.send(serde_json::json!({"type": "ping", "id": "still"})).await;
    assert_eq!(client.recv_type("pong").await["id"], "still");
    // The public port serves only clients; the admin routes answer on the admin port.
    let public = reqwest::get(format!("http://127.0.0.1:{}/metrics", gw.port))
        .await
        .expect("answer");
    assert_eq!(public.status(), 404, "no /metrics on the public port");
    let admin = reqwest::get(gw.admin("/healthz")).await.expect("answer");
    assert_eq!(admin.status(), 200);
}

/// A socket to the gateway from `source` (a loopback address) that sends `bytes` and then nothing.
async fn from(source: [u8; 4], port: u16, bytes: &[u8]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind((std::net::Ipv4Addr::from(source), 0).into())
        .expect("bind the source");
    let mut tcp = socket.connect(([127, 0, 0, 1], port).into()).await.expect("connect");
    tcp.write_all(bytes).await.expect("write");
    tcp
}

/// Whether the gateway closed `tcp` within half a second, and what it said first.
async fn closed_with(tcp: &mut TcpStream) -> Option<String> {
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_millis(500), tcp.read_to_end(&mut answer)).await {
        Ok(_) => Some(String::from_utf8_lossy(&answer).lines().next().unwrap_or("").to_owned()),
        Err(_) => None,
    }
}

/// A PROXY v2 header naming `client` (IPv4, TCP) as the source.
fn proxy_v2(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend([0x21, 0x11, 0, 12]);
    header.extend(client);
    header.extend([127, 0, 0, 1]);
    header.extend(port.to_be_bytes());
    header.extend(9001u16.to_be_bytes());
    header
}

#[tokio::test]
async fn behind_a_load_balancer_the_proxy_header_names_the_client_each_cap_counts() {
    let stack = Stack::start().await;
    // The balancer is 127.0.0.50; two connections still in HTTP per client address.
    let gw = stack
        .gateway(&["--proxy-protocol-from", "127.0.0.50", "--max-pending-per-address", "2"])
        .await;
    let lb = [127, 0, 0, 50];
    // Two clients behind the balancer, each its own cap: the first's third connection is refused, the second's is
    // not, although every socket comes from the balancer's address.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(from(lb, gw.port, b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 9001\r\n").await);
    }
    held.push(from(lb, gw.port, &proxy_v2([203, 0, 113, 8], 6666)).await);
    for tcp in &mut held {
        assert_eq!(closed_with(tcp).await, None, "a client under its cap is kept");
    }
    let mut third = from(lb, gw.port, &proxy_v2([203, 0, 113, 7], 7777)).await;
    assert_eq!(
        closed_with(&mut third).await.as_deref(),
        Some("HTTP/1.1 503 Service Unavailable"),
        "the first client's third connection is over its cap"
    );
    assert_eq!(
        admin_value(&gw, r#"natter_gateway_pending_refused_total{scope="address"}"#).await,
        1.0
    );

    // From the balancer, a connection without a header is closed without an answer, and counted.
    let mut bare = from(lb, gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(closed_with(&mut bare).await.as_deref(), Some(""));
    assert_eq!(
        admin_value(&gw, r#"natter_gateway_proxy_header_refused_total{reason="missing"}"#).await,
        1.0
    );
    // From anyone else, a PROXY header is not believed: it is not HTTP, and answered 400.
    let mut spoof = from(
        [127, 0, 0, 51],
        gw.port,
        b"PROXY TCP4 198.51.100.1 127.0.0.1 1 2\r\n\r\n",
    )
    .await;
    let answer = closed_with(&mut spoof).await.expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");

    // A WebSocket through the balancer works: the header, then the upgrade, on one socket.
    let (token, _) = stack.user("pia").await;
    let mut tcp = from(lb, gw.port, &proxy_v2([203, 0, 113, 9], 8888)).await;
    let upgrade = format!(
        "GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(upgrade.as_bytes()).await.expect("upgrade");
    let mut answer = [0u8; 64];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    let status = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(status.starts_with("HTTP/1.1 101"), "{status:?}");
}

#[tokio::test]
async fn a_token_is_verified_once_then_read_from_the_cache_and_a_doctored_copy_is_still_refused() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (token, _) = stack.user("tess").await;
    let series = |how: &str| format!("natter_gateway_tokens_verified_total{{how=\"{how}\"}}");
    let (signature0, cached0) = (
        admin_value(&gw, &series("signature")).await,
        admin_value(&gw, &series("cached")).await,
    );

    for _ in 0..3 {
        let mut client = Client::connect(&gw, &token).await;
        client.send(serde_json::json!({"type": "ping", "id": "p"})).await;
        assert_eq!(client.recv_type("pong").await["id"], "p");
    }
    assert_eq!(admin_value(&gw, &series("signature")).await - signature0, 1.0);
    assert_eq!(admin_value(&gw, &series("cached")).await - cached0, 2.0);

    // The same claims under another signature are another token: checked, and refused.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let flipped = if parts[2].starts_with('A') { "B" } else { "A" };
    parts[2].replace_range(0..1, flipped);
    let doctored = parts.join(".");
    assert_eq!(refused_status(request(&gw.ws_url(&doctored), &[])).await, 401);
    assert_eq!(admin_value(&gw, &series("signature")).await - signature0, 2.0);
}
