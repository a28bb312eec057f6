//! Writing batches to PostgreSQL: one transaction, one bulk `INSERT … SELECT FROM UNNEST` of the batch's columns,
//! idempotent on the stream epoch and sequence.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// One chat message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Stream sequence.
    pub seq: i64,
    /// Room id.
    pub room_id: String,
    /// The client-chosen id.
    pub client_id: String,
    /// The author's id.
    pub user_id: String,
    /// The author's name.
    pub user_name: String,
    /// The text.
    pub body: String,
    /// When the gateway accepted it.
    pub sent_at: DateTime<Utc>,
}

/// A batch of rows of one stream epoch, as the columns they are bound as: each row's fields are moved in once,
/// and every attempt at writing the batch binds the columns by reference (no per-field copies).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rows {
    /// The epoch of the stream the rows were read from (natter-stream's `epoch`).
    epoch: i64,
    seq: Vec<i64>,
    room_id: Vec<String>,
    client_id: Vec<String>,
    user_id: Vec<String>,
    user_name: Vec<String>,
    body: Vec<String>,
    sent_at: Vec<DateTime<Utc>>,
}

impl Rows {
    /// Room for `n` rows of epoch `epoch`.
    pub fn with_capacity(epoch: i64, n: usize) -> Self {
        Self {
            epoch,
            seq: Vec::with_capacity(n),
            room_id: Vec::with_capacity(n),
            client_id: Vec::with_capacity(n),
            user_id: Vec::with_capacity(n),
            user_name: Vec::with_capacity(n),
            body: Vec::with_capacity(n),
            sent_at: Vec::with_capacity(n),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: Row) {
        self.seq.push(row.seq);
        self.room_id.push(row.room_id);
        self.client_id.push(row.client_id);
        self.user_id.push(row.user_id);
        self.user_name.push(row.user_name);
        self.body.push(row.body);
        self.sent_at.push(row.sent_at);
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.seq.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    /// The newest acceptance time.
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.sent_at.iter().max().copied()
    }

    /// Row `i` alone (for writing row by row).
    fn one(&self, i: usize) -> Rows {
        Rows {
            epoch: self.epoch,
            seq: vec![self.seq[i]],
            room_id: vec![self.room_id[i].clone()],
            client_id: vec![self.client_id[i].clone()],
            user_id: vec![self.user_id[i].clone()],
            user_name: vec![self.user_name[i].clone()],
            body: vec![self.body[i].clone()],
            sent_at: vec![self.sent_at[i]],
        }
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
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// New rows.
    pub inserted: u64,
    /// Rows that were already there (redeliveries).
    pub duplicates: u64,
}

/// Writes rows and dead letters in one transaction.
pub async fn write(db: &PgPool, rows: &Rows, dead: &[DeadLetter]) -> Result<Written, sqlx::Error> {
    let mut tx = db.begin().await?;
    let inserted = insert_rows(&mut tx, rows).await?;
    insert_dead(&mut tx, dead).await?;
    tx.commit().await?;
    Ok(Written {
        inserted,
        duplicates: rows.len() as u64 - inserted,
    })
}

async fn insert_rows(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, rows: &Rows) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let result = sqlx::query(
        "INSERT INTO messages (epoch, seq, room_id, client_id, user_id, user_name, body, sent_at) \
         SELECT $1, u.* FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                                    $8::timestamptz[]) AS u \
         ON CONFLICT (epoch, seq, sent_at) DO NOTHING",
    )
    .bind(rows.epoch)
    .bind(&rows.seq[..])
    .bind(&rows.room_id[..])
    .bind(&rows.client_id[..])
    .bind(&rows.user_id[..])
    .bind(&rows.user_name[..])
    .bind(&rows.body[..])
    .bind(&rows.sent_at[..])
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected())
}

async fn insert_dead(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, dead: &[DeadLetter]) -> Result<(), sqlx::Error> {
    for letter in dead {
        sqlx::query(
            "INSERT INTO dead_letters (epoch, seq, subject, payload, reason) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (epoch, seq) DO NOTHING",
        )
        .bind(letter.epoch)
        .bind(letter.seq)
        .bind(&letter.subject)
        .bind(&letter.payload)
        .bind(&letter.reason)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Whether an error is about the data (a row PostgreSQL refuses), not about reaching the database: retrying the
/// same batch will never succeed, so its rows are written one by one and the bad ones dead-lettered.
pub fn is_data_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}

/// Writes rows one at a time (each in a savepoint) so that a row PostgreSQL refuses is dead-lettered instead of
/// blocking the others. Used only after a bulk write failed on its data.
pub async fn write_one_by_one(
    db: &PgPool,
    rows: &Rows,
    dead: &[DeadLetter],
) -> Result<(Written, Vec<DeadLetter>), sqlx::Error> {
    let mut tx = db.begin().await?;
    let mut written = Written::default();
    let mut refused = Vec::new();
    for i in 0..rows.len() {
        let row = rows.one(i);
        sqlx::query("SAVEPOINT one_row").execute(&mut *tx).await?;
        match insert_rows(&mut tx, &row).await {
            Ok(n) => {
                written.inserted += n;
                written.duplicates += 1 - n;
            }
            Err(err) if is_data_error(&err) => {
                sqlx::query("ROLLBACK TO SAVEPOINT one_row").execute(&mut *tx).await?;
                refused.push(DeadLetter {
                    epoch: rows.epoch,
                    seq: row.seq[0],
                    subject: natter_proto::subject::room_messages(
                        &natter_proto::RoomId::parse(&row.room_id[0])
                            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?,
                    ),
                    payload: row.body[0].clone().into_bytes(),
                    reason: format!("refused by PostgreSQL: {err}"),
                });
            }
            Err(err) => return Err(err),
        }
    }
    let all_dead: Vec<DeadLetter> = dead.iter().cloned().chain(refused.iter().cloned()).collect();
    insert_dead(&mut tx, &all_dead).await?;
    tx.commit().await?;
    Ok((written, refused))
}
