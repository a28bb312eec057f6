//! Where the persister reads from: the chat stream and, for each partition it holds, that partition's durable
//! consumer, opened when the partition is taken and again (both created if missing) whenever reading it breaks, so
//! a stream deleted and recreated under a running persister is picked up with its new epoch instead of being waited
//! on forever.

use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, PullConsumer};
use async_nats::jetstream::{self, stream};
use natter_proto::bus::CHAT_STREAM;

use crate::config::Config;
use crate::metrics;

/// How to open the chat stream and the partitions' durable consumers.
#[derive(Clone)]
pub struct Source {
    js: jetstream::Context,
    stream_max_age: Duration,
    stream_replicas: usize,
    /// The consumers' name prefix (`--consumer`): partition NN is read through `{prefix}-pNN`.
    prefix: String,
    /// Every partition's consumer settings, but for its name and filter.
    consumer_config: consumer::pull::Config,
}

/// The chat stream and one partition's consumer as opened, with the stream's epoch.
#[derive(Clone)]
pub struct Opened {
    /// The chat stream.
    pub stream: stream::Stream,
    /// The partition's durable consumer on it.
    pub consumer: PullConsumer,
    /// The epoch (natter-stream's `epoch`) of the stream the consumer belongs to, stored with every row read
    /// through it.
    pub epoch: u64,
}

impl Source {
    /// The source `config` describes, over `js`.
    pub fn new(js: jetstream::Context, config: &Config) -> Self {
        Self {
            js,
            stream_max_age: config.stream_max_age,
            stream_replicas: config.stream_replicas.into(),
            prefix: config.consumer.clone(),
            consumer_config: consumer::pull::Config {
                description: Some("writes a partition of chat history to PostgreSQL".into()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                // Room for every batch of a partition in flight at once: the one gathering, what its pull stream
                // holds, the one waiting for a writer and one per writer.
                max_ack_pending: i64::try_from(config.batch_size * (config.writers + 3)).unwrap_or(i64::MAX),
                ..Default::default()
            },
        }
    }

    /// The name of partition `partition`'s durable consumer.
    pub fn consumer_name(&self, partition: u8) -> String {
        format!("{}-p{partition:02}", self.prefix)
    }

    /// Opens the chat stream, creating it if it is missing.
    pub async fn stream(&self) -> anyhow::Result<stream::Stream> {
        natter_stream::ensure(&self.js, self.stream_max_age, self.stream_replicas).await
    }

    /// Opens the stream and partition `partition`'s consumer, creating either if it is missing (a stream found
    /// missing is made again only after natter-stream's `RECREATE_AFTER`, so that a deletion in progress cannot take
    /// the new stream's files along). The epoch is read before the consumer is opened and again after: the stream
    /// recreated in between would leave a consumer of the new stream read under the old epoch, so it is opened
    /// again.
    pub async fn open(&self, partition: u8) -> anyhow::Result<Opened> {
        let name = self.consumer_name(partition);
        let config = consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: natter_proto::subject::partition_messages(partition),
            ..self.consumer_config.clone()
        };
        for _ in 0..3 {
            let stream = natter_stream::recreate(&self.js, self.stream_max_age, self.stream_replicas).await?;
            let epoch = natter_stream::epoch::of(stream.cached_info());
            let consumer = stream
                .get_or_create_consumer(&name, config.clone())
                .await
                .map_err(|e| anyhow::anyhow!("failed to create the durable consumer {name}: {e}"))?;
            if self.epoch().await? == Some(epoch) {
                return Ok(Opened {
                    stream,
                    consumer,
                    epoch,
                });
            }
        }
        anyhow::bail!("the {CHAT_STREAM} stream was recreated three times while {name} was being opened")
    }

    /// The chat stream's epoch now (`None`: there is no stream), without creating anything.
    pub async fn epoch(&self) -> anyhow::Result<Option<u64>> {
        match self.js.get_stream(CHAT_STREAM).await {
            Ok(stream) => Ok(Some(natter_stream::epoch::of(stream.cached_info()))),
            Err(err)
                if matches!(err.kind(), jetstream::context::GetStreamErrorKind::JetStream(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                Ok(None)
            }
            Err(err) => Err(anyhow::anyhow!("failed to read the {CHAT_STREAM} stream's info: {err}")),
        }
    }
}

/// Publishes the chat stream's size and epoch every [`crate::reader::INFO_EVERY`] (asking JetStream is a round
/// trip), whichever partitions this persister reads.
pub async fn report(source: Source) {
    let mut tick = tokio::time::interval(crate::reader::INFO_EVERY);
    loop {
        tick.tick().await;
        // Opening the stream reads its info: one round trip.
        if let Ok(stream) = source.js.get_stream(CHAT_STREAM).await {
            let info = stream.cached_info();
            let state = &info.state;
            ::metrics::gauge!(metrics::STREAM_EPOCH).set(natter_stream::epoch::of(info) as f64);
            ::metrics::gauge!(metrics::STREAM_MESSAGES).set(state.messages as f64);
            ::metrics::gauge!(metrics::STREAM_BYTES).set(state.bytes as f64);
            ::metrics::gauge!(metrics::STREAM_FIRST_SEQ).set(state.first_sequence as f64);
            ::metrics::gauge!(metrics::STREAM_LAST_SEQ).set(state.last_sequence as f64);
        }
    }
}
