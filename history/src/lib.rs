//! The chat history schema in PostgreSQL: the `messages` and `dead_letters` tables, keyed by stream epoch and sequence.
//!
//! The persister writes them ([`write`]: the `messages` row, its COPY and the changes folded into it); the auth
//! API reads them (the history routes, and its own schema's references to
//! them). Both apply these migrations at start-up through [`migrate`]: sqlx holds an advisory lock while it
//! migrates, so of two services starting together one applies each migration and the other waits for it, then
//! finds it applied. The history and the accounts schema (`auth-api/migrations`) share the database's migration
//! table, so their versions are numbered in one sequence (a test keeps them apart), and each service ignores the
//! versions of the set it does not hold.

pub mod counts;
pub mod mentions;
pub mod page;
pub mod partitions;
pub mod search;
pub mod write;

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

/// Which of the stream sequences `seqs` of stream epoch `epoch` are stored.
pub async fn stored(db: &PgPool, epoch: i64, seqs: &[i64]) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT seq FROM messages WHERE epoch = $1 AND seq = ANY($2)")
        .bind(epoch)
        .bind(seqs)
        .fetch_all(db)
        .await
}

/// Deletes a room's history, its messages and their reactions, in the caller's transaction (the room's own row
/// goes in the same one).
pub async fn delete_room(tx: &mut sqlx::PgConnection, room: &natter_proto::RoomId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM messages WHERE room_id = $1")
        .bind(room.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM reactions WHERE room_id = $1")
        .bind(room.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The history schema's migrations.
pub fn migrations() -> Migrator {
    sqlx::migrate!("./migrations")
}

/// Applies the history schema's migrations not yet applied, waiting for another service applying them.
pub async fn migrate(db: &PgPool) -> Result<(), MigrateError> {
    run(migrations(), db).await
}

/// Runs `migrations`, one of the database's two sets, under sqlx's advisory lock, ignoring the versions of the
/// other set. When every one of them is applied already, with the same checksum, nothing is run: a service
/// connecting as a role of least privilege (deploy/postgres/roles.sql), which may not change the schema, starts
/// on a current schema; on a schema behind, it fails, and the owner must migrate (`natter-auth-api
/// --migrate-only`).
pub async fn run(mut migrations: Migrator, db: &PgPool) -> Result<(), MigrateError> {
    migrations.set_ignore_missing(true);
    if all_applied(&migrations, db).await {
        return Ok(());
    }
    migrations.run(db).await
}

/// Whether every migration of `migrations` is recorded as applied, with its checksum.
async fn all_applied(migrations: &Migrator, db: &PgPool) -> bool {
    let applied: Vec<(i64, Vec<u8>)> =
        match sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(db)
            .await
        {
            Ok(rows) => rows,
            // No table yet, or not allowed to read it: let the migrator say.
            Err(_) => return false,
        };
    migrations
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .all(|m| {
            applied
                .iter()
                .any(|(v, c)| *v == m.version && c.as_slice() == &*m.checksum)
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn the_two_schemas_number_their_migrations_in_one_sequence() {
        let history: HashSet<i64> = super::migrations().iter().map(|m| m.version).collect();
        let accounts = sqlx::migrate!("../auth-api/migrations");
        for migration in accounts.iter() {
            assert!(
                !history.contains(&migration.version),
                "version {} is in both auth-api/migrations and history/migrations",
                migration.version
            );
        }
        assert!(
            history.contains(&2),
            "the messages table keeps the version it was first applied as"
        );
    }
}
