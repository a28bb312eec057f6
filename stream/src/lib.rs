//! The chat stream: its one definition, created if missing and checked if present, by every process that
//! relies on it (gateways publish and read it, persisters consume it), and the reads and writes of messages in
//! it ([`journal`]).

pub mod epoch;
pub mod journal;
pub mod sessions;

use async_nats::jetstream::{self, stream};
use natter_proto::bus::{CHAT_STREAM, DUPLICATE_WINDOW};
use natter_proto::subject;

/// The chat stream's configuration. Every setting that the guarantees depend on is here.
pub fn config(max_age: std::time::Duration, replicas: usize) -> stream::Config {
    stream::Config {
        // 1 on a single server; 3 on a JetStream cluster, so the stream survives a server.
        num_replicas: replicas.max(1),
        name: CHAT_STREAM.to_owned(),
        subjects: vec![subject::all_room_messages()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age,
        duplicate_window: DUPLICATE_WINDOW,
        // Direct gets serve replays and gap fills without a consumer.
        allow_direct: true,
        // Every stored message is re-emitted, in stream order, on its room's live subject with its sequence
        // (Nats-Sequence) and its room's previous sequence (Nats-Last-Sequence).
        republish: Some(stream::Republish {
            source: subject::all_room_messages(),
            destination: subject::live_republish_template(),
            headers_only: false,
        }),
        ..Default::default()
    }
}

/// Creates the stream (with `replicas` copies) if it is missing; if it exists, checks the settings the gateway
/// relies on.
pub async fn ensure(
    js: &jetstream::Context,
    max_age: std::time::Duration,
    replicas: usize,
) -> anyhow::Result<stream::Stream> {
    let wanted = config(max_age, replicas);
    let mut stream = js
        .get_or_create_stream(wanted.clone())
        .await
        .map_err(|e| anyhow::anyhow!("failed to create or open the {CHAT_STREAM} stream: {e}"))?;
    let info = stream
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("failed to read the stream's info: {e}"))?;
    let have = &info.config;
    let republish_ok = have
        .republish
        .as_ref()
        .is_some_and(|r| r.source == wanted.subjects[0] && r.destination == subject::live_republish_template());
    if have.subjects != wanted.subjects || !republish_ok || !have.allow_direct {
        anyhow::bail!(
            "the existing {CHAT_STREAM} stream does not match what the gateway needs (subjects {:?}, republish {:?}, \
             allow_direct {}); expected subjects {:?}, republish to {}, allow_direct true",
            have.subjects,
            have.republish.as_ref().map(|r| (&r.source, &r.destination)),
            have.allow_direct,
            wanted.subjects,
            subject::live_republish_template()
        );
    }
    Ok(stream)
}
