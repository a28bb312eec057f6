//! The chat stream is created with the settings the guarantees depend on, one made before messages were
//! partitioned is refused with the way out, and any other mismatching one is reported; the revoked-sessions
//! bucket is created in the configured number of copies; a broker that cannot answer yet is waited for.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use natter_test_support::NatsServer;

#[tokio::test]
async fn creates_the_stream_and_accepts_it_again() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("nats"));
    let mut created = natter_stream::ensure(&js, natter_stream::Limits::new(Duration::from_secs(3600), 1))
        .await
        .expect("created");
    let info = created.info().await.expect("info");
    assert_eq!(info.config.subjects, vec!["chat.v1.room.*.msg.*".to_owned()]);
    assert!(info.config.allow_direct);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    assert_eq!(
        info.config.republish.as_ref().map(|r| r.destination.as_str()),
        Some("chat.v1.live.room.{{wildcard(1)}}.{{wildcard(2)}}")
    );
    natter_stream::ensure(&js, natter_stream::Limits::new(Duration::from_secs(3600), 1))
        .await
        .expect("an existing, matching stream is fine");
}

#[tokio::test]
async fn a_broker_that_does_not_answer_for_a_while_is_waited_for() {
    let mut nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("nats"));
    // Frozen past one request's 5 s timeout, as a cluster electing the stream's leader after a restart is.
    nats.pause();
    let ensure = tokio::spawn(async move {
        natter_stream::ensure(&js, natter_stream::Limits::new(Duration::from_secs(3600), 1)).await
    });
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        !ensure.is_finished(),
        "ensure gave up on a broker that was only slow: {:?}",
        ensure.await
    );
    nats.resume();
    let mut made = tokio::time::timeout(Duration::from_secs(30), ensure)
        .await
        .expect("ensure answers once the broker does")
        .expect("task")
        .expect("the stream is made once the broker answers");
    assert_eq!(made.info().await.expect("info").config.name, "CHAT");
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
    let err = natter_stream::ensure(&js, natter_stream::Limits::new(Duration::from_secs(3600), 1))
        .await
        .expect_err("mismatch");
    let text = format!("{err:#}");
    assert!(text.contains("does not match"), "{text}");
    assert!(text.contains("republish"), "{text}");
}

#[tokio::test]
async fn the_revoked_sessions_bucket_is_made_in_the_configured_copies() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("nats"));
    // A single server cannot keep three copies: asking for them fails, which shows the setting reaches the server.
    let err = natter_stream::sessions::bucket(&js, 3)
        .await
        .expect_err("three copies on one server");
    assert!(err.to_string().contains("failed to create"), "{err}");
    natter_stream::sessions::bucket(&js, 1).await.expect("one copy");
    let mut stream = js
        .get_stream(format!("KV_{}", natter_proto::bus::REVOKED_SESSIONS_BUCKET))
        .await
        .expect("the bucket's stream");
    assert_eq!(stream.info().await.expect("info").config.num_replicas, 1);
    // An existing bucket is used as it is, whatever is asked.
    natter_stream::sessions::bucket(&js, 3).await.expect("opened as it is");
}

#[tokio::test]
async fn a_stream_made_before_partitions_is_refused_with_the_way_out_and_kept() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("nats"));
    // The stream as the unpartitioned release made it, holding one message under the old subject.
    let mut old = natter_stream::config(natter_stream::Limits::new(Duration::from_secs(3600), 1));
    old.subjects = vec!["chat.v1.room.*.msg".into()];
    old.republish = Some(stream::Republish {
        source: "chat.v1.room.*.msg".into(),
        destination: "chat.v1.live.room.{{wildcard(1)}}".into(),
        headers_only: false,
    });
    js.create_stream(old).await.expect("the old stream");
    js.publish("chat.v1.room.lobby.msg", "before".into())
        .await
        .expect("publish")
        .await
        .expect("stored");

    let err = natter_stream::ensure(&js, natter_stream::Limits::new(Duration::from_secs(3600), 1))
        .await
        .expect_err("refused");
    let text = format!("{err:#}");
    assert!(text.contains("before messages were partitioned"), "{text}");
    assert!(text.contains("nats stream rm CHAT"), "{text}");
    let mut kept = js.get_stream("CHAT").await.expect("still there");
    let info = kept.info().await.expect("info");
    assert_eq!(
        (info.config.subjects.clone(), info.state.messages),
        (vec!["chat.v1.room.*.msg".to_owned()], 1),
        "nothing changed, nothing lost"
    );

    // Deleted (once its messages are stored), it is made again with the partitioned subject.
    js.delete_stream("CHAT").await.expect("deleted");
    let mut made = natter_stream::ensure(&js, natter_stream::Limits::new(Duration::from_secs(3600), 1))
        .await
        .expect("made again");
    let info = made.info().await.expect("info");
    assert_eq!(info.config.subjects, vec!["chat.v1.room.*.msg.*".to_owned()]);
}

#[tokio::test]
async fn a_stream_without_a_byte_cap_is_given_one_and_full_it_refuses_new_messages_and_keeps_the_old() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("nats"));
    make_uncapped(&js).await;

    let limits = natter_stream::Limits {
        max_bytes: 1 << 20,
        ..natter_stream::Limits::new(Duration::from_secs(3600), 1)
    };
    let mut capped = natter_stream::ensure(&js, limits).await.expect("capped");
    let info = capped.info().await.expect("info");
    assert_eq!(
        (info.config.max_bytes, info.config.discard),
        (1 << 20, stream::DiscardPolicy::New)
    );

    // 64 KiB messages until one is refused: the first is still there, and every acked one.
    let mut acked = 0u64;
    let refused = loop {
        let ack = js
            .publish("chat.v1.room.lobby.msg.0", vec![b'x'; 64 << 10].into())
            .await
            .expect("published")
            .await;
        match ack {
            Ok(_) => acked += 1,
            Err(err) => break err,
        }
        assert!(acked < 64, "a 1 MiB stream took {acked} messages of 64 KiB");
    };
    assert!(
        refused.to_string().contains("maximum bytes"),
        "refused for being full: {refused}"
    );
    let info = capped.info().await.expect("info");
    assert_eq!(
        (info.state.first_sequence, info.state.messages),
        (1, acked),
        "nothing acked was dropped to make room"
    );
}

#[tokio::test]
async fn a_stream_holding_more_than_the_cap_keeps_everything_and_another_processs_cap_is_kept() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("nats"));
    make_uncapped(&js).await;
    for _ in 0..4 {
        js.publish("chat.v1.room.lobby.msg.0", vec![b'x'; 64 << 10].into())
            .await
            .expect("published")
            .await
            .expect("stored");
    }
    // A cap under what it holds: nothing is trimmed, the cap is what it holds plus a quarter.
    let small = natter_stream::Limits {
        max_bytes: 128 << 10,
        ..natter_stream::Limits::new(Duration::from_secs(3600), 1)
    };
    let mut capped = natter_stream::ensure(&js, small).await.expect("capped");
    let info = capped.info().await.expect("info");
    assert_eq!(info.state.messages, 4, "nothing trimmed");
    let held = i64::try_from(info.state.bytes).expect("bytes");
    assert_eq!(info.config.max_bytes, held + held / 4);

    // Another process with another cap keeps the stream's.
    let other = natter_stream::Limits {
        max_bytes: 64 << 20,
        ..natter_stream::Limits::new(Duration::from_secs(3600), 1)
    };
    let mut kept = natter_stream::ensure(&js, other).await.expect("opened");
    assert_eq!(kept.info().await.expect("info").config.max_bytes, held + held / 4);
}

/// The chat stream as a release before the byte cap made it: no byte limit, the oldest dropped when a limit is
/// reached.
async fn make_uncapped(js: &jetstream::Context) {
    let mut old = natter_stream::config(natter_stream::Limits::new(Duration::from_secs(3600), 1));
    old.max_bytes = -1;
    old.discard = stream::DiscardPolicy::Old;
    js.create_stream(old).await.expect("the old stream");
}
