//! Where the persister reads from: the chat stream and its durable consumer, opened at start and opened again
//! (both created if missing) whenever reading breaks, so a stream deleted and recreated under a running persister
//! is picked up with its new epoch instead of being waited on forever.

use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, PullConsumer};
use async_nats::jetstream::{self, stream};

use crate::config::Config;

/// How to open the chat stream and the durable consumer.
#[derive(Clone)]
pub struct Source {
    js: jetstream::Context,
    stream_max_age: Duration,
    stream_replicas: usize,
    consumer: String,
    consumer_config: consumer::pull::Config,
}

/// The chat stream and the consumer as opened, with the stream's epoch.
#[derive(Clone)]
pub struct Opened {
    /// The chat stream.
    pub stream: stream::Stream,
    /// The durable consumer on it.
    pub consumer: PullConsumer,
    /// The stream's epoch (natter-stream's `epoch`), stored with every row read through this consumer.
    pub epoch: u64,
}

impl Source {
    /// The source `config` describes, over `js`.
    pub fn new(js: jetstream::Context, config: &Config) -> Self {
        Self {
            js,
            stream_max_age: config.stream_max_age,
            stream_replicas: config.stream_replicas.into(),
            consumer: config.consumer.clone(),
            consumer_config: consumer::pull::Config {
                durable_name: Some(config.consumer.clone()),
                description: Some("writes chat history to PostgreSQL".into()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                // Room for every batch in flight per persister (one per writer, one waiting, one gathering),
                // several persisters sharing it.
                max_ack_pending: i64::try_from(config.batch_size * (config.writers + 2) * 4).unwrap_or(i64::MAX),
                filter_subject: natter_proto::subject::all_room_messages(),
                ..Default::default()
            },
        }
    }

    /// Opens the stream and the consumer, creating either if it is missing.
    pub async fn open(&self) -> anyhow::Result<Opened> {
        let stream = natter_stream::ensure(&self.js, self.stream_max_age, self.stream_replicas).await?;
        let epoch = natter_stream::epoch::of(stream.cached_info());
        let consumer = stream
            .get_or_create_consumer(&self.consumer, self.consumer_config.clone())
            .await
            .map_err(|e| anyhow::anyhow!("failed to create the durable consumer {}: {e}", self.consumer))?;
        Ok(Opened {
            stream,
            consumer,
            epoch,
        })
    }
}
