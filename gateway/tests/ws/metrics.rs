//! The metrics page: every series from start-up, and the ones a send and a rejoin move.

use natter_gateway::metrics;
use natter_test_support::metrics_page::{has, value};

use crate::helpers::{Client, Stack};

#[tokio::test]
async fn an_idle_gateway_exports_every_series_from_start_up() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let text = gw.metrics().await;
    for name in metrics::ALL {
        assert!(
            has(&text, name),
            "{name} is missing from an idle gateway's page:\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {name}")) || text.contains(&format!("# TYPE {name}")),
            "{name}"
        );
    }
    assert_eq!(value(&text, "natter_gateway_connections"), Some(0.0));
    assert_eq!(
        value(&text, "natter_gateway_connections_closed_total{code=\"4008\"}"),
        Some(0.0),
        "a close code never seen is a zero, not a missing series"
    );
    assert_eq!(value(&text, "natter_gateway_draining"), Some(0.0));
    assert_eq!(value(&text, "natter_nats_connected"), Some(1.0));
    assert_eq!(value(&text, "natter_nats_reconnects_total"), Some(0.0));
    assert!(value(&text, "process_max_fds").is_some_and(|max| max > 0.0), "{text}");
}

#[tokio::test]
async fn a_send_records_its_ack_latency_and_a_rejoin_past_the_stream_counts_unrecovered() {
    let stack = Stack::start().await;
    let gw = stack.gateway(&[]).await;
    let (token, _) = stack.user("mira").await;
    let room = stack.room(&token, false).await;
    let mut client = Client::connect(&gw, &token).await;
    client.join(&room, None).await;
    client.say(&room, "m1", "hello").await;
    client.recv_type("message").await;
    // The delivery is timed once its frame is written, which may be just after the client read it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let text = loop {
        let text = gw.metrics().await;
        let delivered = value(&text, "natter_gateway_delivery_latency_seconds_count").is_some_and(|n| n >= 1.0);
        if delivered || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        value(&text, "natter_gateway_ack_latency_seconds_count"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "natter_gateway_sends_total{outcome=\"acked\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(&text, "natter_gateway_delivery_latency_seconds_count").is_some_and(|n| n >= 1.0),
        "{text}"
    );

    // A position beyond anything the stream holds cannot be recovered.
    let mut again = Client::connect(&gw, &token).await;
    let joined = again.join(&room, Some(1_000_000)).await;
    assert_eq!(joined["recovered"], false, "{joined}");
    let text = gw.metrics().await;
    assert_eq!(
        value(&text, "natter_gateway_joins_unrecovered_total"),
        Some(1.0),
        "{text}"
    );
}
