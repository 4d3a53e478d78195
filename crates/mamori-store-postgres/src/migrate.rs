//! Schema migrations.
//!
//! **Never edit a migration that has landed.** Databases that already applied it will not run
//! it again, so an edit would silently split installations into two schemas. Change the
//! schema by adding a new file `migrations/<UTC timestamp>_<name>.sql` and listing it in
//! [`MIGRATIONS`] (a test checks that the list and the directory agree).
//!
//! All pending migrations run in one transaction under an advisory lock, so that several
//! instances starting at once neither race nor observe a half-migrated schema.

use crate::error::pg;
use mamori_store::{Result, StoreError};

/// File stem (`<version>_<name>`) and SQL of every migration, oldest first.
pub(crate) const MIGRATIONS: &[(&str, &str)] = &[
    ("20261123000000_init", include_str!("../migrations/20261123000000_init.sql")),
    ("20261123000100_audit_checkpoints", include_str!("../migrations/20261123000100_audit_checkpoints.sql")),
    ("20261123000200_identity", include_str!("../migrations/20261123000200_identity.sql")),
    ("20261206000000_authorization", include_str!("../migrations/20261206000000_authorization.sql")),
    ("20261207000000_takeout", include_str!("../migrations/20261207000000_takeout.sql")),
    ("20261208000000_change_notifications", include_str!("../migrations/20261208000000_change_notifications.sql")),
    ("20261209000000_access_windows", include_str!("../migrations/20261209000000_access_windows.sql")),
    ("20261210000000_export_shares", include_str!("../migrations/20261210000000_export_shares.sql")),
    ("20261211000000_user_enabled_at", include_str!("../migrations/20261211000000_user_enabled_at.sql")),
];

/// Namespace of mamori's advisory locks (the first key of the two-key form); the second key is
/// the hash of the schema, so that installations in different schemas do not wait on each other.
const LOCK_NAMESPACE: i32 = 0x6d61_6d6f; // "mamo"

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) fn migrations() -> Result<Vec<Migration>> {
    let mut out: Vec<Migration> = Vec::with_capacity(MIGRATIONS.len());
    for (stem, sql) in MIGRATIONS {
        let bad = || StoreError::Backend(format!("migration file name {stem} is not <version>_<name>"));
        let (version, name) = stem.split_once('_').ok_or_else(bad)?;
        let version: i64 = version.parse().map_err(|_| bad())?;
        if out.last().is_some_and(|prev| prev.version >= version) {
            return Err(StoreError::Backend(format!("migration {stem} is out of order")));
        }
        out.push(Migration { version, name, sql });
    }
    Ok(out)
}

/// Creates `schema` when given, then applies every pending migration. `schema` is an already
/// validated identifier.
pub(crate) async fn run(client: &mut tokio_postgres::Client, schema: Option<&str>) -> Result<()> {
    let migrations = migrations()?;
    let tx = client.transaction().await.map_err(pg)?;
    // The lock is taken before anything is read, so the second instance sees the first one's
    // committed result instead of racing it; it is released with the transaction.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(coalesce($2::text, current_schema()::text, '')))",
        &[&LOCK_NAMESPACE, &schema],
    )
    .await
    .map_err(pg)?;
    if let Some(schema) = schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")).await.map_err(pg)?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    BIGINT PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at BIGINT NOT NULL
        )",
    )
    .await
    .map_err(pg)?;
    let applied: Vec<i64> = tx
        .query("SELECT version FROM schema_migrations ORDER BY version", &[])
        .await
        .map_err(pg)?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(pg)?;
    if let Some(newest) = applied.last().filter(|v| migrations.last().is_none_or(|m| m.version < **v)) {
        // An older binary on a newer schema: it may work, but nobody tested that pairing.
        tracing::warn!(schema_version = newest, "database schema is newer than this build of mamori");
    }
    for m in migrations.iter().filter(|m| !applied.contains(&m.version)) {
        tracing::info!(version = m.version, name = m.name, "applying database migration");
        tx.batch_execute(m.sql).await.map_err(pg)?;
        tx.execute(
            // The database's clock: this is a fact about the database, not about the application.
            "INSERT INTO schema_migrations (version, name, applied_at)
             VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_list_matches_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter_map(|f| f.strip_suffix(".sql").map(str::to_owned))
            .collect();
        on_disk.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|(stem, _)| *stem).collect();
        assert_eq!(on_disk, listed, "every file in migrations/ must be listed in MIGRATIONS, in order");
        assert_eq!(migrations().unwrap().len(), MIGRATIONS.len());
    }
}
