//! Where the persister reads from: the chat stream and, for each partition it holds, that partition's durable
//! consumer, opened when the partition is taken and again (both created if missing) whenever reading it breaks, so
//! a stream deleted and recreated under a running persister is picked up with its new epoch instead of being waited
//! on forever.

use async_nats::jetstream::consumer::{self, AckPolicy, PullConsumer};
use async_nats::jetstream::{self, stream};
use natter_proto::bus::CHAT_STREAM;

use crate::config::Config;
use crate::metrics;

/// How to open the chat stream and the partitions' durable consumers.
#[derive(Clone)]
pub struct Source {
    js: jetstream::Context,
    limits: natter_stream::Limits,
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
            limits: config.stream.limits(),
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
        natter_stream::ensure(&self.js, self.limits).await
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
            let stream = natter_stream::recreate(&self.js, self.limits).await?;
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
        let asked = source.js.get_stream(CHAT_STREAM).await;
        if let Err(err) = &asked {
            // Connected and yet no answer about the stream (other than "no such stream"): a cluster without a
            // meta leader, or the stream's group without one. Nothing can be stored: the leader gauge says so
            // rather than keep its last value. Without a connection, the NATS alerts speak instead.
            let missing = matches!(err.kind(), jetstream::context::GetStreamErrorKind::JetStream(e)
                if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND);
            let connected = source.js.client().connection_state() == async_nats::connection::State::Connected;
            if !missing && connected {
                ::metrics::gauge!(metrics::STREAM_LEADER).set(0.0);
            }
        }
        if let Ok(stream) = asked {
            let info = stream.cached_info();
            let state = &info.state;
            ::metrics::gauge!(metrics::STREAM_EPOCH).set(natter_stream::epoch::of(info) as f64);
            ::metrics::gauge!(metrics::STREAM_MESSAGES).set(state.messages as f64);
            ::metrics::gauge!(metrics::STREAM_BYTES).set(state.bytes as f64);
            ::metrics::gauge!(metrics::STREAM_FIRST_SEQ).set(state.first_sequence as f64);
            ::metrics::gauge!(metrics::STREAM_LAST_SEQ).set(state.last_sequence as f64);
            ::metrics::gauge!(metrics::STREAM_MAX_BYTES).set(info.config.max_bytes.max(0) as f64);
            ::metrics::gauge!(metrics::STREAM_REPLICAS_CONFIGURED).set(info.config.num_replicas as f64);
            let copies = Copies::of(info.cluster.as_ref());
            ::metrics::gauge!(metrics::STREAM_LEADER).set(f64::from(u8::from(copies.leader)));
            for (state, n) in [
                ("current", copies.current),
                ("lagging", copies.lagging),
                ("offline", copies.offline),
            ] {
                ::metrics::gauge!(metrics::STREAM_REPLICAS, "state" => state).set(n as f64);
            }
        }
        let servers = source.js.client().server_info().connect_urls.len();
        ::metrics::gauge!(metrics::NATS_CLUSTER_SERVERS).set(servers as f64);
    }
}

/// The chat stream's copies as its info tells them.
#[derive(Debug, PartialEq, Eq)]
struct Copies {
    /// Whether it has a leader.
    leader: bool,
    /// The leader and the replicas caught up with it.
    current: usize,
    /// Replicas reachable but behind.
    lagging: usize,
    /// Replicas unreachable.
    offline: usize,
}

impl Copies {
    fn of(cluster: Option<&stream::ClusterInfo>) -> Self {
        // A server outside a cluster answers with no cluster part, or one naming only itself as leader.
        let Some(cluster) = cluster else {
            return Self {
                leader: true,
                current: 1,
                lagging: 0,
                offline: 0,
            };
        };
        let leader = cluster.leader.is_some();
        let followers = &cluster.replicas;
        Self {
            leader,
            current: usize::from(leader) + followers.iter().filter(|p| p.current && !p.offline).count(),
            lagging: followers.iter().filter(|p| !p.current && !p.offline).count(),
            offline: followers.iter().filter(|p| p.offline).count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, current: bool, offline: bool) -> stream::PeerInfo {
        stream::PeerInfo {
            name: name.into(),
            current,
            offline,
            ..Default::default()
        }
    }

    #[test]
    fn copies_count_the_leader_and_each_replica_by_its_state() {
        let single = Copies {
            leader: true,
            current: 1,
            lagging: 0,
            offline: 0,
        };
        assert_eq!(Copies::of(None), single, "one server, no cluster part");
        let cluster = stream::ClusterInfo {
            leader: Some("n1".into()),
            replicas: vec![peer("n2", true, false), peer("n3", false, false)],
            ..Default::default()
        };
        let want = Copies {
            leader: true,
            current: 2,
            lagging: 1,
            offline: 0,
        };
        assert_eq!(Copies::of(Some(&cluster)), want);
        let cluster = stream::ClusterInfo {
            leader: None,
            replicas: vec![peer("n2", false, true), peer("n3", false, true)],
            ..Default::default()
        };
        let want = Copies {
            leader: false,
            current: 0,
            lagging: 0,
            offline: 2,
        };
        assert_eq!(Copies::of(Some(&cluster)), want, "no leader: nothing can be stored");
    }
}
