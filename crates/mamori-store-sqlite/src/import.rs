use crate::store::{insert_record_only, insert_subject_key, subject_key};
use crate::{SqliteStore, map_err};
use async_trait::async_trait;
use mamori_core::audit::AuditEvent;
use mamori_store::{ImportSession, RecordRow, Result, StoreError, SubjectKeyRow};
use rusqlite::Connection;

/// A bulk load on a connection of its own, inside one `BEGIN IMMEDIATE` transaction. If the
/// session is dropped (error, cancellation, process killed) the transaction never commits,
/// and SQLite rolls it back — an import is all or nothing.
///
/// Blind-index entries are staged, not inserted row by row: tokens are HMACs, so inserting
/// them in file order lands every one on a random leaf of `blind_index`, and once the index
/// outgrows the page cache most of an import's time went there (a million rows in the
/// benchmarks' layout floor: 98 s inserted row by row, 35–40 s staged and inserted in key
/// order; BENCHMARKS.md, session 10).
/// They go to a temporary table (appends) and into `blind_index` sorted, at commit. The
/// temporary table and SQLite's sorter spill to temporary files, which hold tokens and
/// record ids only (no personal value), are unlinked when opened and vanish with the
/// connection. Uniqueness is still the database's: a collision fails the commit, and with
/// it the whole import.
pub(crate) struct SqliteImport {
    tx: OwnTransaction,
    collection_id: i64,
}

impl SqliteImport {
    pub(crate) async fn begin(store: SqliteStore, collection_id: i64) -> Result<Self> {
        // Half the usual page cache: the importer's own in-memory sets (unique values and
        // subjects seen in the file) grow with the file, SQLite's sorter takes up to as much
        // again at commit, and the whole import is meant to stay under 200 MB. With the index
        // staged, every B-tree written during the import grows at its right edge, so a larger
        // cache buys nothing (1M rows through the CLI: 48 MiB → 46.7 s and 197 MB peak,
        // 32 MiB → 47.9 s and 162 MB). Temporary tables on disk, whatever the build's
        // default: the staged tokens of a large file would not fit the memory budget.
        let mut tx = OwnTransaction::begin(store, "PRAGMA cache_size = -32768; PRAGMA temp_store = FILE;").await?;
        tx.run(|c| {
            c.execute_batch(
                "CREATE TEMP TABLE import_tokens (token BLOB NOT NULL, record_id BLOB NOT NULL, is_unique INTEGER NOT NULL)",
            )
            .map_err(map_err)
        })
        .await?;
        Ok(Self { tx, collection_id })
    }

    async fn with_conn<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&Connection, i64) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let collection_id = self.collection_id;
        self.tx.run(move |c| f(c, collection_id)).await
    }
}

/// A writable connection of its own with one open `BEGIN IMMEDIATE` transaction, for the
/// long transactions of imports and copies. Dropped without `commit`, it rolls back.
pub(crate) struct OwnTransaction {
    /// `None` once an operation failed: the transaction may then hold part of a statement's
    /// work, so it must never be committed.
    conn: Option<Connection>,
}

impl OwnTransaction {
    /// `pragmas` (each ending in `;`, or empty) run before the transaction begins.
    pub(crate) async fn begin(store: SqliteStore, pragmas: &'static str) -> Result<Self> {
        let conn = tokio::task::spawn_blocking(move || {
            let conn = store.open_writer()?;
            conn.execute_batch(&format!("{pragmas} BEGIN IMMEDIATE")).map_err(map_err)?;
            Ok::<_, StoreError>(conn)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))??;
        Ok(Self { conn: Some(conn) })
    }

    pub(crate) async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn =
            self.conn.take().ok_or_else(|| StoreError::Backend("transaction aborted by an earlier error".into()))?;
        let (conn, out) = tokio::task::spawn_blocking(move || {
            let out = f(&conn);
            (conn, out)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?;
        if out.is_ok() {
            self.conn = Some(conn);
        }
        out
    }

    pub(crate) async fn commit(mut self) -> Result<()> {
        self.run(|c| c.execute_batch("COMMIT").map_err(map_err)).await
    }
}

#[async_trait]
impl ImportSession for SqliteImport {
    async fn insert_subject_keys(&mut self, keys: Vec<SubjectKeyRow>) -> Result<()> {
        self.with_conn(move |c, collection_id| {
            for k in &keys {
                if insert_subject_key(c, collection_id, k)? == 0 {
                    return Err(StoreError::Conflict(format!("subject `{}` already has a key", k.subject)));
                }
            }
            Ok(())
        })
        .await
    }

    async fn insert_records(&mut self, records: Vec<RecordRow>) -> Result<()> {
        self.with_conn(move |c, _| {
            let mut stage = c
                .prepare_cached("INSERT INTO temp.import_tokens (token, record_id, is_unique) VALUES (?1, ?2, ?3)")
                .map_err(map_err)?;
            for r in &records {
                insert_record_only(c, r)?;
                for t in &r.tokens {
                    stage.execute(rusqlite::params![t.token, r.id.as_bytes(), t.unique]).map_err(map_err)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn get_subject_key(&mut self, subject: &str) -> Result<Option<SubjectKeyRow>> {
        let subject = subject.to_owned();
        self.with_conn(move |c, collection_id| subject_key(c, collection_id, &subject)).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.commit_audited(&[]).await.map(drop)
    }

    async fn commit_audited(mut self: Box<Self>, events: &[AuditEvent]) -> Result<u64> {
        let events = crate::audit::canonical(events);
        let seq = self
            .with_conn(move |c, collection_id| {
                c.execute(
                    "INSERT INTO blind_index (collection_id, token, record_id, is_unique)
                     SELECT ?1, token, record_id, is_unique FROM temp.import_tokens ORDER BY token, record_id",
                    [collection_id],
                )
                .map_err(map_err)?;
                crate::audit::append_tx(c, &events).map_err(|e| StoreError::AuditUnavailable(e.to_string()))
            })
            .await?;
        self.tx.commit().await?;
        Ok(seq)
    }
}
