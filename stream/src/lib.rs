//! The chat stream: its one definition, created if missing and checked if present, by every process that
//! relies on it (gateways publish and read it, persisters consume it), and the reads and writes of messages in
//! it ([`journal`]).

pub mod epoch;
pub mod journal;
pub mod sessions;

use async_nats::jetstream::{self, stream};
use natter_proto::bus::{CHAT_STREAM, DUPLICATE_WINDOW};
use natter_proto::subject;

/// What the chat stream keeps and in how many copies: the settings an operator chooses (`--stream-max-age`,
/// `--stream-max-bytes`, `--stream-replicas` of the gateways and persisters, which should agree).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a message stays for recovery.
    pub max_age: std::time::Duration,
    /// The most bytes the stream may hold: a full stream refuses new messages (they are not acked, and the
    /// senders are told) rather than dropping old ones a persister may not have stored yet.
    pub max_bytes: u64,
    /// Copies JetStream keeps.
    pub replicas: usize,
}

/// The chat stream's settings on the command line of every process that may create it (gateways and persisters,
/// flattened into their configurations).
#[derive(clap::Args, Clone, Debug)]
pub struct StreamArgs {
    /// How long the chat stream keeps messages for recovery, when this process creates it.
    #[arg(long = "stream-max-age", value_name = "STREAM_MAX_AGE", env = "NATTER_STREAM_MAX_AGE", default_value = "7d", value_parser = natter_proto::duration::parse)]
    pub max_age: std::time::Duration,

    /// The most the chat stream may hold (`512MiB`, `8GiB`, `1TiB`), set when this process creates it or finds it
    /// without one: full, it refuses new messages (senders are told; nothing acknowledged is dropped). Keep it under
    /// the JetStream volume, and the same on every gateway and persister.
    #[arg(long = "stream-max-bytes", value_name = "STREAM_MAX_BYTES", env = "NATTER_STREAM_MAX_BYTES", default_value = "8GiB", value_parser = natter_proto::size::parse)]
    pub max_bytes: u64,

    /// Copies of the chat stream JetStream keeps, when this process creates it: 1 on a single NATS server, 3 on a
    /// cluster of three (the stream then survives the loss of a server).
    #[arg(long = "stream-replicas", value_name = "STREAM_REPLICAS", env = "NATTER_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
}

impl StreamArgs {
    /// The limits these settings give.
    pub fn limits(&self) -> Limits {
        Limits {
            max_age: self.max_age,
            max_bytes: self.max_bytes,
            replicas: self.replicas.into(),
        }
    }
}

/// The byte cap when none is given: 8 GiB, which a 20 GiB JetStream volume holds with room for the sessions stream
/// and the KV buckets.
pub const DEFAULT_MAX_BYTES: u64 = 8 << 30;

impl Limits {
    /// `max_age` and `replicas`, with the default byte cap.
    pub fn new(max_age: std::time::Duration, replicas: usize) -> Self {
        Self {
            max_age,
            max_bytes: DEFAULT_MAX_BYTES,
            replicas,
        }
    }
}

/// The chat stream's configuration. Every setting that the guarantees depend on is here.
pub fn config(limits: Limits) -> stream::Config {
    stream::Config {
        // 1 on a single server; 3 on a JetStream cluster, so the stream survives a server.
        num_replicas: limits.replicas.max(1),
        name: CHAT_STREAM.to_owned(),
        subjects: vec![subject::all_room_messages()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: limits.max_age,
        max_bytes: i64::try_from(limits.max_bytes).unwrap_or(i64::MAX),
        // Full: refuse what comes, never drop what may not be in history yet.
        discard: stream::DiscardPolicy::New,
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

/// Creates the stream (with `limits.replicas` copies) if it is missing; if it exists, checks the settings the
/// gateway relies on, and gives a stream without the byte cap (made before it existed) or with another one the cap
/// of `limits`.
///
/// A stream made before messages were partitioned (subject `chat.v1.room.*.msg`) is refused with what to do about
/// it: nats-server 2.9 does not let an update change a stream's republish ("stream configuration update can not
/// change RePublish"), so it cannot be moved to the partitioned subjects in place. It is deleted once everything in
/// it is stored, and made again here as a new epoch (docs/operations.md, "Upgrading to partitioned persisters").
///
/// A JetStream that cannot answer yet (a cluster electing the stream's leader after a restart, a node not yet
/// routed to its peers, the broker itself restarting) is asked again, with a warning each time, for up to
/// [`ENSURE_PATIENCE`]; a stream that answers with other settings is an error at once.
pub async fn ensure(js: &jetstream::Context, limits: Limits) -> anyhow::Result<stream::Stream> {
    let wanted = config(limits);
    let stream = get_or_create(js, wanted.clone()).await.map_err(|e| {
        // A byte cap is reserved against JetStream's storage limit (max_file_store) when the stream is made.
        let hint = if e.to_string().contains("storage resources") {
            " (the stream's byte cap, --stream-max-bytes, must fit in JetStream's max_file_store: lower one or \
                 raise the other)"
        } else {
            ""
        };
        anyhow::anyhow!("failed to create or open the {CHAT_STREAM} stream: {e:#}{hint}")
    })?;
    let have = &stream.cached_info().config;
    if unpartitioned(have) {
        anyhow::bail!(
            "the {CHAT_STREAM} stream was made before messages were partitioned (subject {}); it cannot be updated \
             in place (nats-server 2.9 cannot change its republish). Stop the gateways, let the old persisters store \
             everything (natter_persister_consumer_pending and _ack_pending 0), stop them, delete the stream \
             (nats stream rm {CHAT_STREAM}) and start this version: it makes the stream again, a new epoch, with \
             history kept (docs/operations.md, \"Upgrading to partitioned persisters\")",
            subject::unpartitioned_room_messages()
        );
    }
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
    if have.max_bytes > 0 && have.max_bytes != wanted.max_bytes {
        // Another process's cap (or an operator's): kept. Changing it here would have processes configured apart
        // fight over it, and a lower cap trims the stream at once.
        tracing::warn!(
            have = have.max_bytes,
            wanted = wanted.max_bytes,
            "the {CHAT_STREAM} stream has another byte cap than --stream-max-bytes; keeping it (set the same on every \
             gateway and persister)"
        );
    }
    if have.max_bytes <= 0 || have.discard != wanted.discard {
        return Ok(give_cap(js, stream, wanted.max_bytes).await);
    }
    Ok(stream)
}

/// Gives a stream made without a byte cap (before there was one) `max_bytes` and the refusal of new messages when
/// full. An update to a cap under what the stream holds would drop its oldest messages at once (nats-server
/// enforces a new limit on update, whatever the discard policy), messages a persister may not have stored yet: the
/// cap is then raised to what it holds plus a quarter, with a warning. A failed update leaves the stream as it was.
async fn give_cap(js: &jetstream::Context, mut stream: stream::Stream, max_bytes: i64) -> stream::Stream {
    let held = i64::try_from(stream.cached_info().state.bytes).unwrap_or(i64::MAX);
    let mut capped = stream.cached_info().config.clone();
    capped.discard = stream::DiscardPolicy::New;
    capped.max_bytes = if capped.max_bytes > 0 {
        capped.max_bytes
    } else if held >= max_bytes {
        let room = held.saturating_add(held / 4);
        tracing::warn!(
            held,
            max_bytes,
            cap = room,
            "the {CHAT_STREAM} stream holds more than --stream-max-bytes; capped at what it holds plus a quarter"
        );
        room
    } else {
        max_bytes
    };
    match js.update_stream(&capped).await {
        Ok(info) => {
            tracing::info!(
                max_bytes = info.config.max_bytes,
                "the {CHAT_STREAM} stream's byte cap set (full, it refuses new messages)"
            );
            // Read again, so what the caller holds shows the cap.
            let _ = stream.info().await;
        }
        // It keeps serving as it was; the alert on its size against its cap reads its real cap.
        Err(err) => tracing::warn!(error = %err, "setting the {CHAT_STREAM} stream's byte cap failed"),
    }
    stream
}

/// How long [`get_or_create`] keeps asking a JetStream that cannot answer yet before it gives up. A 3-node cluster
/// restarted at once needs the stream's own leader elected after the meta leader: seconds on nats-server 2.9.10,
/// more than one request's 5 s timeout under load.
pub const ENSURE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Opens stream `config.name`, creating it with `config` if it is missing, asking again while JetStream cannot
/// answer yet (see [`ensure`]) for up to [`ENSURE_PATIENCE`], with a warning each time. Every JetStream asset a
/// service needs at start (the chat stream, the KV buckets) is opened through here.
pub async fn get_or_create(js: &jetstream::Context, config: stream::Config) -> anyhow::Result<stream::Stream> {
    let deadline = tokio::time::Instant::now() + ENSURE_PATIENCE;
    let mut pause = std::time::Duration::from_millis(250);
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(e) if not_ready(&e) && tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(
                    stream = %config.name,
                    error = %e,
                    retry_in_ms = pause.as_millis() as u64,
                    "JetStream cannot answer yet; asking again"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            Err(e) if not_ready(&e) => {
                anyhow::bail!("{e} (JetStream could not answer for {} s)", ENSURE_PATIENCE.as_secs())
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether `err` is JetStream not able to answer yet rather than an answer: a timeout, no JetStream responding, or
/// a cluster without a leader, quorum or enough peers for the replicas at this moment.
fn not_ready(err: &jetstream::context::CreateStreamError) -> bool {
    use jetstream::ErrorCode;
    use jetstream::context::CreateStreamErrorKind as Kind;
    match err.kind() {
        Kind::TimedOut | Kind::JetStreamUnavailable => true,
        Kind::JetStream(e) => [
            ErrorCode::CLUSTER_NOT_AVAILABLE,
            ErrorCode::CLUSTER_NOT_LEADER,
            ErrorCode::CLUSTER_NOT_ACTIVE,
            ErrorCode::CLUSTER_NO_PEERS,
            ErrorCode::INSUFFICIENT_RESOURCES,
        ]
        .contains(&e.error_code()),
        _ => false,
    }
}

/// How long a process that was using the chat stream and finds it gone waits before making it again. nats-server
/// 2.9 stops listing a deleted stream, and tells its consumers they are gone, before it has removed the stream's
/// files; a stream made again under the same name meanwhile loses its files to that removal, and its consumers read
/// nothing ("error looking up message for consumer: open …/msgs/1.blk: no such file or directory"). Measured on
/// nats-server 2.9.10: a small stream with 16 consumers was unlisted 6 ms after its deletion began, its consumers
/// told after 6 ms, and its directory removed after 92 ms.
pub const RECREATE_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// [`ensure`] for a process that was using the stream and lost it (its consumer deleted, its info unreadable):
/// when the stream is missing, waits [`RECREATE_AFTER`] first, so that a deletion in progress has removed its files
/// before the stream is made again.
pub async fn recreate(js: &jetstream::Context, limits: Limits) -> anyhow::Result<stream::Stream> {
    let missing = matches!(
        js.get_stream(CHAT_STREAM).await,
        Err(err) if matches!(err.kind(), jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
    );
    if missing {
        tokio::time::sleep(RECREATE_AFTER).await;
    }
    ensure(js, limits).await
}

/// Whether `have` is the chat stream as made before messages were partitioned: the old subject, republished from
/// it.
fn unpartitioned(have: &stream::Config) -> bool {
    let old = subject::unpartitioned_room_messages();
    have.subjects == [old.clone()] && have.republish.as_ref().is_some_and(|r| r.source == old)
}
