//! The chat stream is created with the settings the guarantees depend on, and a mismatching one is reported.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use natter_test_support::NatsServer;

#[tokio::test]
async fn creates_the_stream_and_accepts_it_again() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("nats"));
    let mut created = natter_stream::ensure(&js, Duration::from_secs(3600), 1)
        .await
        .expect("created");
    let info = created.info().await.expect("info");
    assert_eq!(info.config.subjects, vec!["chat.v1.room.*.msg".to_owned()]);
    assert!(info.config.allow_direct);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    assert_eq!(
        info.config.republish.as_ref().map(|r| r.destination.as_str()),
        Some("chat.v1.live.room.{{wildcard(1)}}")
    );
    natter_stream::ensure(&js, Duration::from_secs(3600), 1)
        .await
        .expect("an existing, matching stream is fine");
}

#[tokio::test]
async fn a_stream_made_otherwise_is_reported_not_used() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("nats"));
    js.create_stream(stream::Config {
        name: "CHAT".into(),
        subjects: vec!["chat.v1.room.*.msg".into()],
        ..Default::default()
    })
    .await
    .expect("a stream without republish");
    let err = natter_stream::ensure(&js, Duration::from_secs(3600), 1)
        .await
        .expect_err("mismatch");
    let text = format!("{err:#}");
    assert!(text.contains("does not match"), "{text}");
    assert!(text.contains("republish"), "{text}");
}
