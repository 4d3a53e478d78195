//! Bulk loads: one pooled connection with one open transaction, rows streamed with binary COPY.

use crate::collections::subject_key_row;
use crate::db::version;
use crate::error::pg;
use crate::records::{RECORD_COLUMNS, RecordValues, index_entries};
use async_trait::async_trait;
use deadpool_postgres::Object;
use mamori_core::audit::AuditEvent;
use mamori_store::{ImportSession, RecordRow, Result, StoreError, SubjectKeyRow};
use std::pin::pin;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

pub(crate) struct PgImport {
    tx: PgTransaction,
    collection_id: i64,
}

impl std::fmt::Debug for PgImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgImport").field("collection_id", &self.collection_id).field("failed", &self.tx.failed).finish()
    }
}

impl PgImport {
    pub(crate) async fn begin(conn: Object, collection_id: i64) -> Result<Self> {
        Ok(Self { tx: PgTransaction::begin(conn).await?, collection_id })
    }
}

/// One pooled connection with one open transaction, for the long transactions of imports
/// and copies. Dropped without `commit`, it rolls back.
pub(crate) struct PgTransaction {
    /// `None` once committed or abandoned.
    conn: Option<Object>,
    /// Set while an operation is under way and left set when it fails or is cancelled. After
    /// an error PostgreSQL has aborted the transaction, and a COMMIT of an aborted
    /// transaction *succeeds* as a rollback, so without this flag `commit` would report
    /// success for an import that stored nothing.
    failed: bool,
}

impl PgTransaction {
    pub(crate) async fn begin(conn: Object) -> Result<Self> {
        // The transaction is opened by hand because a `tokio_postgres::Transaction` borrows the
        // connection and could not live in the session alongside it.
        let mut tx = Self { conn: Some(conn), failed: false };
        tx.client()?.batch_execute("BEGIN").await.map_err(pg)?;
        tx.done();
        Ok(tx)
    }

    /// The connection, marking the transaction failed until the caller's operation
    /// completes and calls [`PgTransaction::done`].
    pub(crate) fn client(&mut self) -> Result<&Object> {
        if self.failed {
            return Err(StoreError::Backend("transaction aborted by an earlier error; start a new one".into()));
        }
        self.failed = true;
        self.conn.as_ref().ok_or_else(|| StoreError::Backend("transaction already finished".into()))
    }

    pub(crate) fn done(&mut self) {
        self.failed = false;
    }

    fn abandon(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Detached from the pool and dropped, the connection closes, and the server rolls
            // back whatever the transaction did. Returning it to the pool instead would hand
            // the next user a connection inside our open (or aborted) transaction.
            drop(Object::take(conn));
        }
    }

    pub(crate) async fn commit(mut self) -> Result<()> {
        let result = match self.client() {
            Ok(client) => client.batch_execute("COMMIT").await.map_err(pg),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                // Transaction closed: the connection may go back to the pool.
                self.conn = None;
                Ok(())
            }
            Err(e) => {
                self.abandon();
                Err(e)
            }
        }
    }
}

impl Drop for PgTransaction {
    fn drop(&mut self) {
        self.abandon();
    }
}

#[async_trait]
impl ImportSession for PgImport {
    async fn insert_subject_keys(&mut self, keys: Vec<SubjectKeyRow>) -> Result<()> {
        let collection_id = self.collection_id;
        let client = self.tx.client()?;
        let sink = client
            .copy_in("COPY subject_keys (collection_id, subject, kek_version, wrapped_dek) FROM STDIN (FORMAT binary)")
            .await
            .map_err(pg)?;
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT, Type::INT4, Type::BYTEA]));
        for k in &keys {
            let v = version(k.kek_version)?;
            writer.as_mut().write(&[&collection_id, &k.subject, &v, &k.wrapped_dek]).await.map_err(pg)?;
        }
        // A subject that already has a key is a unique violation (Conflict), deliberately:
        // silently keeping the stored key would leave the records of this import encrypted
        // under a key that is thrown away.
        writer.finish().await.map_err(pg)?;
        self.tx.done();
        Ok(())
    }

    async fn insert_records(&mut self, records: Vec<RecordRow>) -> Result<()> {
        let collection_id = self.collection_id;
        if let Some(r) = records.iter().find(|r| r.collection_id != collection_id) {
            return Err(StoreError::Backend(format!(
                "import into collection {collection_id} got a record of collection {}",
                r.collection_id
            )));
        }
        let client = self.tx.client()?;
        // Every subject must still have its key, locked until this import commits: an erasure
        // that committed after the caller read the key would otherwise get its records back.
        let mut subjects: Vec<&str> = records.iter().map(|r| r.subject.as_str()).collect();
        subjects.sort_unstable();
        subjects.dedup();
        let held = client
            .query(
                "SELECT subject FROM subject_keys WHERE collection_id = $1 AND subject = ANY($2) FOR SHARE",
                &[&collection_id, &subjects],
            )
            .await
            .map_err(pg)?;
        if held.len() != subjects.len() {
            return Err(StoreError::Conflict("a data subject of this import has no key (erased meanwhile?)".into()));
        }
        let sink =
            client.copy_in(&format!("COPY records ({RECORD_COLUMNS}) FROM STDIN (FORMAT binary)")).await.map_err(pg)?;
        // In `RECORD_COLUMNS` order, as `RecordValues` gives them.
        let types = [
            Type::UUID,
            Type::INT8,
            Type::TEXT,
            Type::INT4,
            Type::BYTEA,
            Type::BYTEA,
            Type::INT8,
            Type::INT8,
            Type::TEXT,
        ];
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
        for r in &records {
            writer.as_mut().write(&RecordValues::of(r)?.params(&collection_id)).await.map_err(pg)?;
        }
        writer.finish().await.map_err(pg)?;

        let sink = client
            .copy_in("COPY blind_index (collection_id, token, record_id, is_unique) FROM STDIN (FORMAT binary)")
            .await
            .map_err(pg)?;
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &[Type::INT8, Type::BYTEA, Type::UUID, Type::BOOL]));
        for r in &records {
            for (token, unique) in index_entries(&r.tokens) {
                writer.as_mut().write(&[&collection_id, &token, r.id.as_uuid(), &unique]).await.map_err(pg)?;
            }
        }
        // COPY cannot say which value collided, and the violation aborts the transaction: the
        // caller gets Conflict and the whole import rolls back.
        writer.finish().await.map_err(pg)?;
        self.tx.done();
        Ok(())
    }

    async fn get_subject_key(&mut self, subject: &str) -> Result<Option<SubjectKeyRow>> {
        let collection_id = self.collection_id;
        let client = self.tx.client()?;
        let row = client
            .query_opt(
                "SELECT subject, kek_version, wrapped_dek FROM subject_keys WHERE collection_id = $1 AND subject = $2",
                &[&collection_id, &subject],
            )
            .await
            .map_err(pg)?;
        let key = row.as_ref().map(subject_key_row).transpose()?;
        self.tx.done();
        Ok(key)
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await
    }

    async fn commit_audited(mut self: Box<Self>, events: &[AuditEvent]) -> Result<u64> {
        let client = self.tx.client()?;
        let seq =
            crate::audit::append_in(client, events).await.map_err(|e| StoreError::AuditUnavailable(e.to_string()))?;
        self.tx.done();
        self.tx.commit().await?;
        Ok(seq)
    }
}
