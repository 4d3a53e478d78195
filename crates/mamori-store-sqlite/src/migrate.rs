//! Embedded, ordered SQL migrations. A landed migration is never edited — only new files are
//! added — so that every existing data directory upgrades the same way.

use crate::map_err;
use mamori_store::{Result, StoreError};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (20261123000000, "init", include_str!("../migrations/20261123000000_init.sql")),
    (20261123000100, "audit_checkpoints", include_str!("../migrations/20261123000100_audit_checkpoints.sql")),
    (20261123000200, "identity", include_str!("../migrations/20261123000200_identity.sql")),
    (20261206000000, "authorization", include_str!("../migrations/20261206000000_authorization.sql")),
    (20261207000000, "takeout", include_str!("../migrations/20261207000000_takeout.sql")),
    (20261209000000, "access_windows", include_str!("../migrations/20261209000000_access_windows.sql")),
    (20261210000000, "export_shares", include_str!("../migrations/20261210000000_export_shares.sql")),
    (20261211000000, "user_enabled_at", include_str!("../migrations/20261211000000_user_enabled_at.sql")),
    (20261212000000, "audit_generated_columns", AUDIT_GENERATED_COLUMNS),
];

const AUDIT_GENERATED_COLUMNS: &str = include_str!("../migrations/20261212000000_audit_generated_columns.sql");

/// Every schema object on `audit_events` (the table and its indexes) as the newest migration
/// creates them, which SQLite keeps verbatim (without the `;`), sorted:
/// `generated_audit_columns` holds the live schema to exactly these.
pub(crate) fn audit_events_schema() -> Vec<String> {
    // Comment lines go first: they may hold a `;` or the word CREATE.
    let code: Vec<&str> = AUDIT_GENERATED_COLUMNS.lines().filter(|l| !l.trim_start().starts_with("--")).collect();
    let mut objects: Vec<String> = code
        .join("\n")
        .split(';')
        .map(str::trim)
        .filter(|statement| statement.starts_with("CREATE "))
        .map(str::to_owned)
        .collect();
    objects.sort_unstable();
    objects
}

pub(crate) fn run(conn: &mut Connection) -> Result<()> {
    // IMMEDIATE: two processes opening a new data directory at once must not both migrate.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_err)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .map_err(map_err)?;
    let newest_known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    let applied: Option<i64> = tx
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| r.get(0))
        .optional()
        .map_err(map_err)?
        .flatten();
    if applied.is_some_and(|v| v > newest_known) {
        return Err(StoreError::Corrupt(format!(
            "the database was written by a newer mamori (migration {}); refusing to open it",
            applied.unwrap_or_default()
        )));
    }
    for (version, name, sql) in MIGRATIONS {
        if applied.is_some_and(|v| v >= *version) {
            continue;
        }
        tx.execute_batch(sql).map_err(map_err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, strftime('%s','now'))",
            rusqlite::params![version, name],
        )
        .map_err(map_err)?;
        tracing::info!(version, name, "applied SQLite migration");
    }
    tx.commit().map_err(map_err)
}
