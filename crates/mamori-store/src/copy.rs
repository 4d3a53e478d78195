//! Moving a whole installation from one store to another (`mamori migrate`): every table
//! copied row by row, byte for byte, in key order, into an empty target inside one
//! transaction of the target, then counted on both sides before that transaction commits.
//!
//! The copy knows nothing about what the rows mean. Nothing is decrypted or re-encrypted:
//! ciphertexts stay bound to their collection, record and field, and wrapped keys stay
//! wrapped under the same master key.

use crate::{Result, Store, StoreError};
use async_trait::async_trait;

/// One column value, in the shapes both backends can hold: SQLite's storage classes. A
/// backend with richer types (PostgreSQL's `BOOLEAN`, `UUID`, `INTEGER`) converts by the
/// declared type of the column it reads or writes.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Integer(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// Text columns hold logins and display names, so a row must not print its values.
impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Null => f.write_str("Null"),
            Self::Integer(_) => f.write_str("Integer(..)"),
            Self::Text(s) => write!(f, "Text({} bytes)", s.len()),
            Self::Blob(b) => write!(f, "Blob({} bytes)", b.len()),
        }
    }
}

/// A table as the copy sees it. Only [`TABLES`] holds them (the struct cannot be built
/// elsewhere), so a backend may put the names into SQL text.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    /// The primary key: the order in which rows are read, page after page.
    pub key: &'static [&'static str],
    /// A column whose values the database generates (PostgreSQL identity); after a copy its
    /// generator must continue above the copied values.
    pub generated: Option<&'static str>,
}

impl Table {
    /// Positions of the key columns within [`Table::columns`].
    pub fn key_positions(&self) -> Vec<usize> {
        self.key.iter().filter_map(|k| self.columns.iter().position(|c| c == k)).collect()
    }

    /// The page query of [`Store::read_table`]: with `after`, the key's parameters come
    /// first and the limit last; `placeholder(n)` spells the backend's `n`-th parameter.
    pub fn select_sql(&self, after: bool, placeholder: impl Fn(usize) -> String) -> String {
        let key = self.key.join(", ");
        let condition = if after {
            let params: Vec<String> = (1..=self.key.len()).map(&placeholder).collect();
            format!("WHERE ({key}) > ({})", params.join(", "))
        } else {
            String::new()
        };
        let limit = placeholder(if after { self.key.len() + 1 } else { 1 });
        format!("SELECT {} FROM {} {condition} ORDER BY {key} LIMIT {limit}", self.columns.join(", "), self.name)
    }

    /// One row's `INSERT` of the columns at positions `written` (within [`Table::columns`]),
    /// parameters in that order.
    pub fn insert_sql(&self, written: &[usize], placeholder: impl Fn(usize) -> String) -> String {
        let names: Vec<&str> = written.iter().filter_map(|&i| self.columns.get(i).copied()).collect();
        let params: Vec<String> = (1..=names.len()).map(placeholder).collect();
        format!("INSERT INTO {} ({}) VALUES ({})", self.name, names.join(", "), params.join(", "))
    }
}

const fn table(name: &'static str, columns: &'static [&'static str], key: &'static [&'static str]) -> Table {
    Table { name, columns, key, generated: None }
}

/// Every table of a mamori installation, parents before children (foreign keys hold at
/// every insert). Each backend's tests check this list against its migrated schema, so a
/// migration that adds a table or column without adding it here fails CI instead of being
/// left behind by `mamori migrate`.
pub const TABLES: &[Table] = &[
    table("meta", &["key", "value"], &["key"]),
    Table {
        generated: Some("id"),
        ..table(
            "collections",
            &["id", "name", "schema_version", "kek_version", "wrapped_index_key", "created_at"],
            &["id"],
        )
    },
    table("collection_schemas", &["collection_id", "version", "schema_json"], &["collection_id", "version"]),
    table("collection_keks", &["collection_id", "version", "wrapped"], &["collection_id", "version"]),
    table("subject_keys", &["collection_id", "subject", "kek_version", "wrapped_dek"], &["collection_id", "subject"]),
    table(
        "records",
        &[
            "collection_id",
            "id",
            "subject",
            "schema_version",
            "fields",
            "tokens",
            "created_at",
            "updated_at",
            "department",
        ],
        &["collection_id", "id"],
    ),
    table(
        "blind_index",
        &["collection_id", "token", "record_id", "is_unique"],
        &["collection_id", "token", "record_id"],
    ),
    table(
        "erasure_certificates",
        &["id", "subject", "erased_at", "body_json", "keys_destroyed", "records_deleted"],
        &["id"],
    ),
    table(
        "users",
        &[
            "id",
            "login",
            "display_name",
            "role",
            "password_hash",
            "must_change_password",
            "disabled",
            "created_at",
            "department",
            "title",
            "valid_until",
            "vendor",
            "failed_logins",
            "locked_until",
            "last_login_at",
            "password_changed_at",
            "totp_secret",
            "totp_last_step",
            "clearance",
            "training_valid_until",
            "pledge_signed_at",
            "reviewed_at",
            "reviewed_by",
            "access_window",
            "enabled_at",
        ],
        &["id"],
    ),
    table("password_history", &["user_id", "seq", "password_hash", "replaced_at"], &["user_id", "seq"]),
    table("recovery_codes", &["user_id", "code_hash"], &["user_id", "code_hash"]),
    table(
        "sessions",
        &["token_hash", "user_id", "created_at", "expires_at", "last_seen_at", "password_change_only", "mfa"],
        &["token_hash"],
    ),
    table(
        "audit_events",
        &["seq", "event_json", "hash", "at", "actor", "action", "outcome", "collection", "record", "subject"],
        &["seq"],
    ),
    table("audit_checkpoints", &["seq", "kind", "head_hash", "at", "key_id", "signature"], &["seq", "kind"]),
    table(
        "policy_versions",
        &[
            "version",
            "base_version",
            "policies",
            "summary",
            "proposed_by",
            "proposed_at",
            "status",
            "decided_by",
            "decided_at",
        ],
        &["version"],
    ),
    table(
        "break_glass_grants",
        &[
            "id",
            "user_id",
            "collection",
            "reason",
            "minutes",
            "requested_by",
            "requested_at",
            "status",
            "decided_by",
            "decided_at",
            "expires_at",
        ],
        &["id"],
    ),
    table(
        "export_requests",
        &[
            "id",
            "user_id",
            "requested_by",
            "requested_at",
            "collection",
            "spec",
            "rows",
            "protection",
            "status",
            "decided_by",
            "decided_at",
            "download_until",
            "downloads_allowed",
            "downloads_used",
            "due_at",
            "secret",
        ],
        &["id"],
    ),
    Table {
        generated: Some("seq"),
        ..table("takeout_ledger", &["seq", "export_id", "kind", "at", "actor", "user_id", "rows", "detail"], &["seq"])
    },
    table(
        "export_shares",
        &["id", "export_id", "share_index", "custodian_id", "custodian", "held_at", "state", "ended_at", "sealed"],
        &["id"],
    ),
];

/// An open copy into an empty store: one transaction. Dropping it without `commit` rolls
/// everything back, so a failed copy leaves the target as empty as it found it.
#[async_trait]
pub trait CopySession: Send {
    /// Inserts rows of `table`, columns in [`Table::columns`] order, exactly as given.
    async fn insert_rows(&mut self, table: &'static Table, rows: Vec<Vec<Value>>) -> Result<()>;
    /// Rows of `table` as this transaction sees them.
    async fn count_rows(&mut self, table: &'static Table) -> Result<u64>;
    /// Moves generated columns past the copied values, then commits.
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// How many rows one read and one insert carry.
const PAGE: usize = 1000;

/// What [`copy_store`] reports as it goes: `rows` of `total` rows of `table` copied.
#[derive(Debug, Clone, Copy)]
pub struct CopyProgress {
    pub table: &'static str,
    pub rows: u64,
    pub total: u64,
}

/// Rows copied, per table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    pub rows: u64,
}

/// Copies every table of `from` into `to`, which must be empty (`Conflict` otherwise, and
/// nothing changes). Before committing, each table's rows are counted in the target's
/// transaction and again in the source; any difference (a row lost, or a writer still using
/// the source) aborts the copy.
pub async fn copy_store(
    from: &dyn Store,
    to: &dyn Store,
    progress: &(dyn Fn(CopyProgress) + Sync),
) -> Result<Vec<TableCount>> {
    let mut session = to.begin_copy().await?;
    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let total = from.count_rows(table).await?;
        let key = table.key_positions();
        let mut after: Option<Vec<Value>> = None;
        let mut rows = 0;
        progress(CopyProgress { table: table.name, rows, total });
        loop {
            let page = from.read_table(table, after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(key.iter().map(|&i| last[i].clone()).collect());
            rows += page.len() as u64;
            session.insert_rows(table, page).await?;
            progress(CopyProgress { table: table.name, rows, total });
        }
        counts.push(TableCount { table: table.name, rows });
    }
    for (table, count) in TABLES.iter().zip(&counts) {
        let (source, target) = (from.count_rows(table).await?, session.count_rows(table).await?);
        if source != count.rows || target != count.rows {
            return Err(StoreError::Conflict(format!(
                "table {}: {source} rows in the source, {} copied, {target} in the target (is something still \
                 writing to the source?)",
                count.table, count.rows
            )));
        }
    }
    session.commit().await?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_column_is_a_column() {
        for t in TABLES {
            assert_eq!(t.key_positions().len(), t.key.len(), "{}", t.name);
            assert!(t.generated.is_none_or(|g| t.columns.contains(&g)), "{}", t.name);
        }
    }

    #[test]
    fn page_queries() {
        let t = &TABLES[2];
        assert_eq!(
            t.select_sql(true, |n| format!("${n}")),
            "SELECT collection_id, version, schema_json FROM collection_schemas WHERE (collection_id, version) > \
             ($1, $2) ORDER BY collection_id, version LIMIT $3"
        );
        assert_eq!(
            t.select_sql(false, |n| format!("?{n}")),
            "SELECT collection_id, version, schema_json FROM collection_schemas  ORDER BY collection_id, version LIMIT ?1"
        );
    }

    #[test]
    fn values_do_not_print() {
        let debug = format!("{:?}", [Value::Text("山田 太郎".into()), Value::Blob(vec![1, 2]), Value::Integer(42)]);
        assert!(!debug.contains("山田") && !debug.contains("42"), "{debug}");
    }
}
