//! Writing batches to PostgreSQL, one transaction each, idempotent on the stream epoch and sequence.
//!
//! A batch goes in by one binary `COPY` straight into `messages`, encoded here. `COPY` cannot skip a row that is
//! stored already, so a batch that collides with stored rows (a redelivery: a persister died between commit and
//! ack) is copied into a temporary table instead and moved over with `INSERT … SELECT … ON CONFLICT DO NOTHING`.
//! A batch PostgreSQL refuses on its data is written row by row, and the refused rows dead-lettered.
//!
//! Each writer has a connection of its own, opened with tokio-postgres (which sets `TCP_NODELAY`): the `COPY`'s
//! last message is a few bytes sent right after its data, and on a socket that batches small writes (Nagle's
//! algorithm, which sqlx leaves on) it waited for the server's delayed acknowledgement, about 40 ms a batch.

use std::collections::HashMap;
use std::pin::pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::SinkExt;
use natter_proto::bus::{Change, StoredMessage};
use tokio_postgres::{Client, NoTls, Transaction};

/// What writing can fail with.
pub type Error = tokio_postgres::Error;

/// One chat message as stored: where it is, what its author sent, and when it was accepted (the partition key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Stream sequence.
    pub seq: i64,
    /// The room.
    pub room: natter_proto::RoomId,
    /// The message as the gateway accepted it.
    pub message: StoredMessage,
    /// Its `ts`, parsed.
    pub sent_at: DateTime<Utc>,
}

/// A batch of rows of one stream epoch. Each row's fields are moved in once; every attempt at writing the batch
/// encodes them afresh into the `COPY` data (no per-field copies).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rows {
    /// The epoch of the stream the rows were read from (natter-stream's `epoch`).
    epoch: i64,
    rows: Vec<Row>,
}

impl Rows {
    /// Room for `n` rows of epoch `epoch`.
    pub fn with_capacity(epoch: i64, n: usize) -> Self {
        Self {
            epoch,
            rows: Vec::with_capacity(n),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The newest acceptance time.
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.rows.iter().map(|row| row.sent_at).max()
    }

    /// When the oldest message of the rows was accepted.
    pub fn oldest(&self) -> Option<DateTime<Utc>> {
        self.rows.iter().map(|row| row.sent_at).min()
    }

    /// The epoch of the stream the rows were read from.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// The rows, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter()
    }

    /// A row's position: the epoch plus its sequence, the `seq` clients see.
    fn position(&self, row: &Row) -> i64 {
        self.epoch.saturating_add(row.seq)
    }
}

/// What applying a batch's changes found to do outside the transaction: the stream sequences (of the batch's
/// epoch) of deleted messages and of their edits, whose text must go from the stream too.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Erase {
    /// Stream sequences to erase.
    pub seqs: Vec<u64>,
}

/// The changes of a batch, as the arrays their statements take: for each message the newest edit, the first
/// deletion, and for each user's emoji the newest reaction.
#[derive(Default)]
struct Changes {
    edits: HashMap<(String, i64), (String, String, String, i64)>,
    deletes: HashMap<(String, i64), (String, String, i64)>,
    reactions: HashMap<(String, i64, String, String), (bool, i64)>,
}

impl Changes {
    fn of(rows: &Rows) -> Option<Self> {
        let mut changes = Self::default();
        for row in &rows.rows {
            let Some(change) = &row.message.change else { continue };
            let position = rows.position(row);
            let target = i64::try_from(change.target()).unwrap_or(i64::MAX);
            let room = row.room.as_str().to_owned();
            let m = &row.message;
            match change {
                Change::Edit { .. } => {
                    let newest = changes
                        .edits
                        .get(&(room.clone(), target))
                        .is_none_or(|e| e.3 < position);
                    if newest {
                        changes.edits.insert(
                            (room, target),
                            (m.user.id.clone(), m.body.clone(), m.ts.clone(), position),
                        );
                    }
                }
                Change::Delete { .. } => {
                    let first = changes
                        .deletes
                        .get(&(room.clone(), target))
                        .is_none_or(|d| d.2 > position);
                    if first {
                        changes
                            .deletes
                            .insert((room, target), (m.user.id.clone(), m.ts.clone(), position));
                    }
                }
                Change::React { emoji, on, .. } => {
                    let key = (room, target, emoji.clone(), m.user.id.clone());
                    if changes.reactions.get(&key).is_none_or(|r| r.1 < position) {
                        changes.reactions.insert(key, (*on, position));
                    }
                }
            }
        }
        // A message deleted in this batch takes none of its edits.
        let deletes = &changes.deletes;
        changes.edits.retain(|target, _| !deletes.contains_key(target));
        let any = !(changes.edits.is_empty() && changes.deletes.is_empty() && changes.reactions.is_empty());
        any.then_some(changes)
    }
}

/// Applies the changes among `rows` (stored as rows already, in this transaction) to the messages they target:
/// an edit replaces the text unless a newer edit is applied or the message is deleted; a deletion empties the
/// text (and its edits'), forgets the edit and keeps who and when; a reaction is set present or taken back unless a newer one of the
/// same user and emoji is applied. Each is idempotent, so a redelivered batch changes nothing more. Returns what
/// is to be erased from the stream.
async fn apply_changes(tx: &Transaction<'_>, rows: &Rows) -> Result<Erase, Error> {
    let Some(changes) = Changes::of(rows) else {
        return Ok(Erase::default());
    };
    if !changes.edits.is_empty() {
        let (mut rooms, mut targets, mut users, mut bodies, mut times, mut positions) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for ((room, target), (user, body, ts, position)) in &changes.edits {
            rooms.push(room);
            targets.push(*target);
            users.push(user);
            bodies.push(body);
            times.push(ts);
            positions.push(*position);
        }
        tx.execute(
            "UPDATE messages m SET body = e.body, edited_at = e.ts::timestamptz, edit_position = e.position \
             FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::int8[]) \
               AS e(room_id, target, user_id, body, ts, position) \
             WHERE m.room_id = e.room_id AND m.position = e.target AND m.kind = 'message' AND m.user_id = e.user_id \
               AND m.deleted_at IS NULL AND (m.edit_position IS NULL OR m.edit_position < e.position)",
            &[&rooms, &targets, &users, &bodies, &times, &positions],
        )
        .await?;
    }
    if !changes.deletes.is_empty() {
        let (mut rooms, mut targets, mut users, mut times) = (vec![], vec![], vec![], vec![]);
        for ((room, target), (user, ts, _)) in &changes.deletes {
            rooms.push(room);
            targets.push(*target);
            users.push(user);
            times.push(ts);
        }
        tx.execute(
            "UPDATE messages m SET body = '', deleted_at = d.ts::timestamptz, deleted_by = d.user_id, \
               edited_at = NULL, edit_position = NULL \
             FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[]) AS d(room_id, target, user_id, ts) \
             WHERE m.room_id = d.room_id AND m.position = d.target AND m.kind = 'message' AND m.deleted_at IS NULL",
            &[&rooms, &targets, &users, &times],
        )
        .await?;
    }
    if !changes.reactions.is_empty() {
        let (mut rooms, mut targets, mut emoji, mut users, mut present, mut positions) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for ((room, target, e, user), (on, position)) in &changes.reactions {
            rooms.push(room);
            targets.push(*target);
            emoji.push(e);
            users.push(user);
            present.push(*on);
            positions.push(*position);
        }
        tx.execute(
            "INSERT INTO reactions (room_id, target, emoji, user_id, present, position) \
             SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::bool[], $6::int8[]) \
             ON CONFLICT (room_id, target, emoji, user_id) DO UPDATE \
               SET present = EXCLUDED.present, position = EXCLUDED.position \
               WHERE reactions.position < EXCLUDED.position",
            &[&rooms, &targets, &emoji, &users, &present, &positions],
        )
        .await?;
    }
    // Every message this batch touched that is deleted (now, or before an edit or a reaction to it came): its
    // edits' text and its reactions go too, and it and its edits are erased from the stream.
    let (mut rooms, mut targets) = (vec![], vec![]);
    let touched = changes.edits.keys().chain(changes.deletes.keys()).cloned();
    let reacted = changes
        .reactions
        .keys()
        .map(|(room, target, _, _)| (room.clone(), *target));
    for (room, target) in touched.chain(reacted).collect::<std::collections::HashSet<_>>() {
        rooms.push(room);
        targets.push(target);
    }
    let gone = "SELECT m.room_id, m.position FROM messages m \
                JOIN unnest($1::text[], $2::int8[]) AS t(room_id, target) \
                  ON m.room_id = t.room_id AND m.position = t.target \
                WHERE m.kind = 'message' AND m.deleted_at IS NOT NULL";
    tx.execute(
        &format!(
            "UPDATE messages e SET body = '' FROM ({gone}) g \
             WHERE e.room_id = g.room_id AND e.target = g.position AND e.kind = 'edit' AND e.body <> ''"
        ),
        &[&rooms, &targets],
    )
    .await?;
    tx.execute(
        &format!("DELETE FROM reactions r USING ({gone}) g WHERE r.room_id = g.room_id AND r.target = g.position"),
        &[&rooms, &targets],
    )
    .await?;
    let erase = tx
        .query(
            &format!(
                "SELECT m.seq FROM messages m JOIN ({gone}) g ON m.room_id = g.room_id \
                   AND (m.position = g.position OR (m.kind = 'edit' AND m.target = g.position)) \
                 WHERE m.epoch = $3"
            ),
            &[&rooms, &targets, &rows.epoch],
        )
        .await?;
    Ok(Erase {
        seqs: erase
            .iter()
            .filter_map(|row| u64::try_from(row.get::<_, i64>(0)).ok())
            .collect(),
    })
}

/// The columns every write names, in the order the `COPY` data holds them.
const COLUMNS: &str = "epoch, seq, room_id, client_id, user_id, user_name, body, sent_at, kind, target, reply_to, \
                       emoji, reaction_on, mentions";

/// Fields of a row in the `COPY` data.
const FIELDS: i16 = 14;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00 UTC), where binary timestamps count from.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// `rows` of epoch `epoch` as the data of a binary `COPY` of [`COLUMNS`]: the signature, no flags, no header
/// extension, a tuple per row (each field its length and its bytes, in network order), and the trailer.
fn copy_data(epoch: i64, rows: &[Row]) -> Vec<u8> {
    fn int8(buf: &mut Vec<u8>, value: i64) {
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&value.to_be_bytes());
    }
    fn text(buf: &mut Vec<u8>, value: &str) {
        // A chat message is bounded far below 2 GiB by the broker's payload limit.
        buf.extend_from_slice(&i32::try_from(value.len()).unwrap_or(i32::MAX).to_be_bytes());
        buf.extend_from_slice(value.as_bytes());
    }
    fn null(buf: &mut Vec<u8>) {
        buf.extend_from_slice(&(-1i32).to_be_bytes());
    }
    fn position(buf: &mut Vec<u8>, value: Option<u64>) {
        match value {
            Some(value) => int8(buf, i64::try_from(value).unwrap_or(i64::MAX)),
            None => null(buf),
        }
    }
    let fields: usize = rows
        .iter()
        .map(|r| {
            let m = &r.message;
            r.room.as_str().len() + m.id.as_str().len() + m.user.id.len() + m.user.name.len() + m.body.len()
        })
        .sum();
    let mut buf = Vec::with_capacity(19 + rows.len() * (2 + 14 * 4 + 3 * 8 + 7) + fields + 2);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes());
    for row in rows {
        buf.extend_from_slice(&FIELDS.to_be_bytes());
        int8(&mut buf, epoch);
        int8(&mut buf, row.seq);
        text(&mut buf, row.room.as_str());
        text(&mut buf, row.message.id.as_str());
        text(&mut buf, &row.message.user.id);
        text(&mut buf, &row.message.user.name);
        text(&mut buf, &row.message.body);
        int8(
            &mut buf,
            row.sent_at.timestamp_micros().saturating_sub(POSTGRES_EPOCH_MICROS),
        );
        let change = row.message.change.as_ref();
        text(&mut buf, change.map_or("message", Change::kind));
        position(&mut buf, change.map(Change::target));
        position(&mut buf, row.message.reply_to);
        match change {
            Some(Change::React { emoji, on, .. }) => {
                text(&mut buf, emoji);
                buf.extend_from_slice(&1i32.to_be_bytes());
                buf.push(u8::from(*on));
            }
            _ => {
                null(&mut buf);
                null(&mut buf);
            }
        }
        if row.message.mentions.is_empty() {
            null(&mut buf);
        } else {
            // jsonb's binary form: its version (1), then the JSON text. A list of user references always serializes.
            let json = serde_json::to_vec(&row.message.mentions).unwrap_or_else(|_| b"[]".to_vec());
            buf.extend_from_slice(&i32::try_from(json.len() + 1).unwrap_or(i32::MAX).to_be_bytes());
            buf.push(1);
            buf.extend_from_slice(&json);
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    buf
}

/// Copies `rows` into `table` (which has [`COLUMNS`]) inside `tx`; returns the rows copied.
async fn copy_into(tx: &Transaction<'_>, table: &str, epoch: i64, rows: &[Row]) -> Result<u64, Error> {
    let sink = tx
        .copy_in::<_, bytes::Bytes>(&format!("COPY {table} ({COLUMNS}) FROM STDIN (FORMAT binary)"))
        .await?;
    let mut sink = pin!(sink);
    sink.send(copy_data(epoch, rows).into()).await?;
    sink.finish().await
}

/// Longest wait for a writer's connection to be set up, when the URL sets none.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A writer's connection to PostgreSQL: opened when first needed, and again after it broke.
pub struct Writer {
    config: tokio_postgres::Config,
    client: Option<Client>,
}

impl Writer {
    /// A writer for the database at `url` (a `postgres://` URL or a key=value string); connects on first use.
    /// Connecting gives up after [`CONNECT_TIMEOUT`] unless the URL says otherwise, so that a database host that
    /// does not answer at all fails the attempt (to be retried) instead of holding it for the system's TCP timeout.
    pub fn new(url: &str) -> Result<Self, Error> {
        let mut config: tokio_postgres::Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        Ok(Self { config, client: None })
    }

    async fn client(&mut self) -> Result<&mut Client, Error> {
        // Taken and put back, so that the borrow returned does not outlive the check.
        if let Some(client) = self.client.take().filter(|client| !client.is_closed()) {
            return Ok(self.client.insert(client));
        }
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "a writer's PostgreSQL connection ended");
            }
        });
        Ok(self.client.insert(client))
    }

    /// Writes rows and dead letters in one transaction: by `COPY` straight into `messages` while none of the
    /// rows is stored yet, else (a redelivery) through a staging table that skips the stored ones.
    pub async fn write(&mut self, rows: &Rows, dead: &[DeadLetter]) -> Result<Written, Error> {
        match self.write_by(rows, dead, Path::Copy).await {
            Err(err) if is_duplicate(&err) => self.write_by(rows, dead, Path::Staged).await,
            other => other,
        }
    }

    async fn write_by(&mut self, rows: &Rows, dead: &[DeadLetter], path: Path) -> Result<Written, Error> {
        let client = self.client().await?;
        let tx = client.transaction().await?;
        let inserted = if rows.is_empty() {
            0
        } else {
            match path {
                Path::Copy => copy_into(&tx, "messages", rows.epoch, &rows.rows).await?,
                Path::Staged => insert_staged(&tx, rows).await?,
            }
        };
        let erase = apply_changes(&tx, rows).await?;
        insert_dead(&tx, dead).await?;
        tx.commit().await?;
        Ok(Written {
            inserted,
            duplicates: rows.len() as u64 - inserted,
            erase,
        })
    }

    /// Writes rows one at a time (each in a savepoint) so that a row PostgreSQL refuses is dead-lettered instead
    /// of blocking the others, and a row stored already is skipped. Used only after a bulk write failed on its
    /// data.
    pub async fn write_one_by_one(
        &mut self,
        rows: &Rows,
        dead: &[DeadLetter],
    ) -> Result<(Written, Vec<DeadLetter>), Error> {
        let client = self.client().await?;
        let mut tx = client.transaction().await?;
        let mut written = Written::default();
        let mut refused = Vec::new();
        for row in &rows.rows {
            let one = tx.savepoint("one_row").await?;
            match copy_into(&one, "messages", rows.epoch, std::slice::from_ref(row)).await {
                Ok(n) => {
                    written.inserted += n;
                    one.commit().await?;
                }
                Err(err) if is_duplicate(&err) => {
                    one.rollback().await?;
                    written.duplicates += 1;
                }
                Err(err) if is_data_error(&err) => {
                    one.rollback().await?;
                    refused.push(DeadLetter {
                        epoch: rows.epoch,
                        seq: row.seq,
                        subject: natter_proto::subject::room_messages(&row.room),
                        payload: serde_json::to_vec(&row.message).unwrap_or_default(),
                        reason: format!("refused by PostgreSQL: {}", describe(&err)),
                    });
                }
                Err(err) => return Err(err),
            }
        }
        // A change PostgreSQL refused is not stored, so it is not applied either.
        let mut stored = Rows::with_capacity(rows.epoch, rows.len() - refused.len());
        for row in rows
            .rows
            .iter()
            .filter(|row| !refused.iter().any(|dead| dead.seq == row.seq))
        {
            stored.push(row.clone());
        }
        written.erase = apply_changes(&tx, &stored).await?;
        let all_dead: Vec<DeadLetter> = dead.iter().cloned().chain(refused.iter().cloned()).collect();
        insert_dead(&tx, &all_dead).await?;
        tx.commit().await?;
        Ok((written, refused))
    }
}

/// An error with the server's own message, when it sent one.
pub fn describe(err: &Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => err.to_string(),
    }
}

/// A stream message that can never be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The stream's epoch.
    pub epoch: i64,
    /// Stream sequence.
    pub seq: i64,
    /// The subject it was published to.
    pub subject: String,
    /// Its payload as it was.
    pub payload: Vec<u8>,
    /// Why it cannot be stored.
    pub reason: String,
}

/// What a write did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    /// New rows.
    pub inserted: u64,
    /// Rows that were already there (redeliveries).
    pub duplicates: u64,
    /// What is to be erased from the stream now that the transaction is committed.
    pub erase: Erase,
}

/// How a batch goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// `COPY` into `messages`: the fastest, and it fails on a row that is stored already.
    Copy,
    /// `COPY` into a temporary table, then `INSERT … SELECT … ON CONFLICT DO NOTHING`.
    Staged,
}

/// Copies `rows` into a table of this transaction's own and moves over those not stored yet.
async fn insert_staged(tx: &Transaction<'_>, rows: &Rows) -> Result<u64, Error> {
    tx.batch_execute(
        "CREATE TEMPORARY TABLE messages_staged (epoch bigint, seq bigint, room_id text, client_id text, \
         user_id text, user_name text, body text, sent_at timestamptz, kind text, target bigint, reply_to bigint, \
         emoji text, reaction_on boolean, mentions jsonb) ON COMMIT DROP",
    )
    .await?;
    copy_into(tx, "messages_staged", rows.epoch, &rows.rows).await?;
    tx.execute(
        "INSERT INTO messages (epoch, seq, room_id, client_id, user_id, user_name, body, sent_at, kind, target, \
         reply_to, emoji, reaction_on, mentions) \
         SELECT epoch, seq, room_id, client_id, user_id, user_name, body, sent_at, kind, target, reply_to, emoji, \
         reaction_on, mentions FROM messages_staged \
         ON CONFLICT (epoch, seq, sent_at) DO NOTHING",
        &[],
    )
    .await
}

async fn insert_dead(tx: &Transaction<'_>, dead: &[DeadLetter]) -> Result<(), Error> {
    for letter in dead {
        tx.execute(
            "INSERT INTO dead_letters (epoch, seq, subject, payload, reason) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (epoch, seq) DO NOTHING",
            &[
                &letter.epoch,
                &letter.seq,
                &letter.subject,
                &letter.payload,
                &letter.reason,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Whether an error says a row is stored already.
fn is_duplicate(err: &Error) -> bool {
    err.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// Whether an error is about the data (a row PostgreSQL refuses), not about reaching the database: retrying the
/// same batch will never succeed, so its rows are written one by one and the bad ones dead-lettered.
pub fn is_data_error(err: &Error) -> bool {
    err.code()
        .is_some_and(|code| code.code().starts_with("22") || code.code().starts_with("23"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_data_is_postgres_binary_copy_format() {
        let row = Row {
            seq: 7,
            room: natter_proto::RoomId::parse("r").expect("room"),
            message: StoredMessage {
                id: natter_proto::ClientMsgId::parse("m1").expect("id"),
                user: natter_proto::frame::UserRef {
                    id: "u".into(),
                    name: "".into(),
                },
                body: "hé".into(),
                ts: "2000-01-01T00:00:01.000002Z".into(),
                reply_to: None,
                mentions: vec![natter_proto::frame::UserRef {
                    id: "u2".into(),
                    name: "bo".into(),
                }],
                change: None,
            },
            sent_at: DateTime::parse_from_rfc3339("2000-01-01T00:00:01.000002Z")
                .expect("time")
                .with_timezone(&Utc),
        };
        let data = copy_data(3, &[row]);
        let mut want = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\0\x0e".to_vec();
        for (len, bytes) in [
            (8, &3i64.to_be_bytes()[..]),
            (8, &7i64.to_be_bytes()[..]),
            (1, b"r"),
            (2, b"m1"),
            (1, b"u"),
            (0, b""),
            (3, "hé".as_bytes()),
            // One second and two microseconds after PostgreSQL's epoch.
            (8, &1_000_002i64.to_be_bytes()[..]),
            (7, b"message"),
            // No target, reply, emoji or reaction: NULLs.
            (-1, b""),
            (-1, b""),
            (-1, b""),
            (-1, b""),
            // The mentions as jsonb: its version byte, then the JSON.
            (26, b"\x01[{\"id\":\"u2\",\"name\":\"bo\"}]"),
        ] {
            want.extend_from_slice(&i32::to_be_bytes(len));
            want.extend_from_slice(bytes);
        }
        want.extend_from_slice(b"\xff\xff");
        assert_eq!(data, want);
    }
}
