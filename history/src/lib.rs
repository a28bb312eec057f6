//! The chat history schema in PostgreSQL: the `messages` and `dead_letters` tables, keyed by stream epoch and sequence.
//!
//! The persister writes them; the auth API reads them (the history routes, and its own schema's references to
//! them). Both apply these migrations at start-up through [`migrate`]: sqlx holds an advisory lock while it
//! migrates, so of two services starting together one applies each migration and the other waits for it, then
//! finds it applied. The history and the accounts schema (`auth-api/migrations`) share the database's migration
//! table, so their versions are numbered in one sequence (a test keeps them apart), and each service ignores the
//! versions of the set it does not hold.

pub mod partitions;

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

/// The history schema's migrations.
pub fn migrations() -> Migrator {
    sqlx::migrate!("./migrations")
}

/// Applies the history schema's migrations not yet applied, waiting for another service applying them.
pub async fn migrate(db: &PgPool) -> Result<(), MigrateError> {
    run(migrations(), db).await
}

/// Runs `migrations`, one of the database's two sets, under sqlx's advisory lock, ignoring the versions of the
/// other set.
pub async fn run(mut migrations: Migrator, db: &PgPool) -> Result<(), MigrateError> {
    migrations.set_ignore_missing(true);
    migrations.run(db).await
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
