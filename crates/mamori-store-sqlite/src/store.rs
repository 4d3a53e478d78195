use crate::{SqliteStore, map_err};
use async_trait::async_trait;
use mamori_core::audit::AuditEvent;
use mamori_core::ids::{RecordId, UserId};
use mamori_store::*;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

fn collection_from_row(r: &Row<'_>) -> rusqlite::Result<CollectionRow> {
    Ok(CollectionRow {
        id: r.get(0)?,
        name: r.get(1)?,
        schema_version: r.get(2)?,
        kek_version: r.get(3)?,
        wrapped_index_key: r.get(4)?,
        created_at: from_micros(r.get(5)?),
    })
}
const COLLECTION_COLUMNS: &str = "id, name, schema_version, kek_version, wrapped_index_key, created_at";

/// See [`Store::erase_subject`]: records, index entries and keys of the subject in every
/// collection, and the certificate with the counts of this transaction.
pub(crate) fn erase_subject_tx(tx: &Connection, subject: &str, cert: &ErasureCertificateRow) -> Result<ErasureCounts> {
    let ids: Vec<(i64, Vec<u8>)> = {
        let mut stmt = tx.prepare("SELECT collection_id, id FROM records WHERE subject = ?1").map_err(map_err)?;
        stmt.query_map([subject], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)?
    };
    let mut counts = ErasureCounts::default();
    for (collection_id, id) in ids {
        if delete_record_tx(tx, collection_id, &record_id(id)?)? {
            counts.records_deleted += 1;
        }
    }
    counts.keys_destroyed =
        tx.execute("DELETE FROM subject_keys WHERE subject = ?1", [subject]).map_err(map_err)? as u64;
    tx.execute(
        "INSERT INTO erasure_certificates (id, subject, erased_at, body_json, keys_destroyed, records_deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            cert.id,
            cert.subject,
            to_micros(cert.erased_at),
            cert.body_json,
            counts.keys_destroyed as i64,
            counts.records_deleted as i64
        ],
    )
    .map_err(map_err)?;
    Ok(counts)
}

/// See [`Store::add_kek`].
pub(crate) fn add_kek_tx(tx: &Connection, collection_id: i64, kek: &WrappedKek) -> Result<()> {
    tx.execute(
        "INSERT INTO collection_keks (collection_id, version, wrapped) VALUES (?1, ?2, ?3)",
        params![collection_id, kek.version, kek.wrapped],
    )
    .map_err(map_err)?;
    tx.execute("UPDATE collections SET kek_version = ?1 WHERE id = ?2", params![kek.version, collection_id])
        .map_err(map_err)?;
    Ok(())
}

pub(crate) fn create_collection_tx(tx: &Connection, new: &NewCollection) -> Result<CollectionRow> {
    tx.execute(
        "INSERT INTO collections (name, schema_version, kek_version, wrapped_index_key, created_at)
         VALUES (?1, 1, ?2, ?3, ?4)",
        params![new.name, new.kek.version, new.wrapped_index_key, to_micros(new.created_at)],
    )
    .map_err(|e| match map_err(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("collection `{}` already exists", new.name)),
        other => other,
    })?;
    let id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO collection_schemas (collection_id, version, schema_json) VALUES (?1, 1, ?2)",
        params![id, new.schema_json],
    )
    .map_err(map_err)?;
    tx.execute(
        "INSERT INTO collection_keks (collection_id, version, wrapped) VALUES (?1, ?2, ?3)",
        params![id, new.kek.version, new.kek.wrapped],
    )
    .map_err(map_err)?;
    tx.query_row(&format!("SELECT {COLLECTION_COLUMNS} FROM collections WHERE id = ?1"), [id], collection_from_row)
        .map_err(map_err)
}

/// See [`Store::add_schema_version`].
pub(crate) fn add_schema_version_tx(
    tx: &Connection,
    collection_id: i64,
    expected_current: u32,
    schema_json: &str,
) -> Result<u32> {
    let next = expected_current + 1;
    let changed = tx
        .execute(
            "UPDATE collections SET schema_version = ?1 WHERE id = ?2 AND schema_version = ?3",
            params![next, collection_id, expected_current],
        )
        .map_err(map_err)?;
    if changed == 0 {
        return Err(StoreError::Conflict("the schema was changed concurrently; reload and retry".into()));
    }
    tx.execute(
        "INSERT INTO collection_schemas (collection_id, version, schema_json) VALUES (?1, ?2, ?3)",
        params![collection_id, next, schema_json],
    )
    .map_err(map_err)?;
    Ok(next)
}

fn record_id(bytes: Vec<u8>) -> Result<RecordId> {
    RecordId::from_slice(&bytes).map_err(|_| StoreError::Corrupt("record id".into()))
}

fn record_from_row(r: &Row<'_>) -> rusqlite::Result<RecordRow> {
    let corrupt = |column: usize, e: StoreError| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Blob, Box::new(e))
    };
    let id: Vec<u8> = r.get(0)?;
    let tokens: Vec<u8> = r.get(5)?;
    Ok(RecordRow {
        id: record_id(id).map_err(|e| corrupt(0, e))?,
        collection_id: r.get(1)?,
        subject: r.get(2)?,
        schema_version: r.get(3)?,
        fields: r.get(4)?,
        tokens: decode_tokens(&tokens).map_err(|e| corrupt(5, e))?,
        created_at: from_micros(r.get(6)?),
        updated_at: from_micros(r.get(7)?),
        department: r.get(8)?,
    })
}

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<(Vec<u8>, UserRow)> {
    let optional_time =
        |i: usize| -> rusqlite::Result<Option<OffsetDateTime>> { Ok(r.get::<_, Option<i64>>(i)?.map(from_micros)) };
    Ok((
        r.get(0)?,
        UserRow {
            id: UserId::generate(), // replaced by the caller from column 0
            login: r.get(1)?,
            display_name: r.get(2)?,
            role: r.get(3)?,
            password_hash: r.get(4)?,
            must_change_password: r.get(5)?,
            disabled: r.get(6)?,
            created_at: from_micros(r.get(7)?),
            department: r.get(8)?,
            title: r.get(9)?,
            valid_until: optional_time(10)?,
            vendor: r.get(11)?,
            failed_logins: r.get(12)?,
            locked_until: optional_time(13)?,
            last_login_at: optional_time(14)?,
            password_changed_at: from_micros(r.get(15)?),
            totp_secret: r.get(16)?,
            totp_last_step: r.get::<_, Option<i64>>(17)?.map(|s| s as u64),
            clearance: r.get(18)?,
            training_valid_until: optional_time(19)?,
            pledge_signed_at: optional_time(20)?,
            reviewed_at: optional_time(21)?,
            reviewed_by: r.get(22)?,
            access_window: r.get(23)?,
            enabled_at: optional_time(24)?,
        },
    ))
}
pub(crate) const USER_COLUMNS: &str = "id, login, display_name, role, password_hash, must_change_password, disabled, created_at, \
     department, title, valid_until, vendor, failed_logins, locked_until, last_login_at, password_changed_at, \
     totp_secret, totp_last_step, clearance, training_valid_until, pledge_signed_at, reviewed_at, reviewed_by, \
     access_window, enabled_at";

fn finish_user((id, mut user): (Vec<u8>, UserRow)) -> Result<UserRow> {
    user.id = UserId::from_slice(&id).map_err(|_| StoreError::Corrupt("user id".into()))?;
    Ok(user)
}

pub(crate) fn insert_index(tx: &Connection, collection_id: i64, id: &RecordId, tokens: &[IndexToken]) -> Result<()> {
    let mut stmt = tx
        .prepare_cached("INSERT INTO blind_index (collection_id, token, record_id, is_unique) VALUES (?1, ?2, ?3, ?4)")
        .map_err(map_err)?;
    for t in tokens {
        stmt.execute(params![collection_id, t.token, id.as_bytes(), t.unique]).map_err(map_err)?;
    }
    Ok(())
}

pub(crate) fn insert_record_row(tx: &Connection, r: &RecordRow) -> Result<()> {
    insert_record_only(tx, r)?;
    insert_index(tx, r.collection_id, &r.id, &r.tokens)
}

/// The record's row without its blind-index entries (an import stages those, see
/// `crate::import`).
pub(crate) fn insert_record_only(tx: &Connection, r: &RecordRow) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO records (collection_id, id, subject, schema_version, fields, tokens, created_at, updated_at,
                              department)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .map_err(map_err)?
    .execute(params![
        r.collection_id,
        r.id.as_bytes(),
        r.subject,
        r.schema_version,
        r.fields,
        encode_tokens(&r.tokens),
        to_micros(r.created_at),
        to_micros(r.updated_at),
        r.department
    ])
    .map_err(map_err)?;
    Ok(())
}

pub(crate) fn insert_subject_key(tx: &Connection, collection_id: i64, k: &SubjectKeyRow) -> Result<usize> {
    tx.prepare_cached(
        "INSERT INTO subject_keys (collection_id, subject, kek_version, wrapped_dek) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
    )
    .map_err(map_err)?
    .execute(params![collection_id, k.subject, k.kek_version, k.wrapped_dek])
    .map_err(map_err)
}

/// Inserts a record whose subject still has a key (`Conflict` otherwise: it was erased).
pub(crate) fn insert_record_tx(tx: &Connection, record: &RecordRow) -> Result<()> {
    let has_key = tx
        .prepare_cached("SELECT 1 FROM subject_keys WHERE collection_id = ?1 AND subject = ?2")
        .map_err(map_err)?
        .exists(params![record.collection_id, record.subject])
        .map_err(map_err)?;
    if !has_key {
        return Err(StoreError::Conflict("the data subject has no key (erased?)".into()));
    }
    insert_record_row(tx, record)
}

/// Replaces an existing record (`NotFound` if it is gone), keeping its creation time.
pub(crate) fn update_record_tx(tx: &Connection, record: &RecordRow) -> Result<()> {
    let created: Option<i64> = tx
        .query_row(
            "SELECT created_at FROM records WHERE collection_id = ?1 AND id = ?2",
            params![record.collection_id, record.id.as_bytes()],
            |r| r.get(0),
        )
        .optional()
        .map_err(map_err)?;
    if created.is_none() {
        return Err(StoreError::NotFound);
    }
    delete_record_tx(tx, record.collection_id, &record.id)?;
    insert_record_row(tx, record)
}

/// Removes a record and its index entries; false when it did not exist.
pub(crate) fn delete_record_tx(tx: &Connection, collection_id: i64, id: &RecordId) -> Result<bool> {
    let tokens: Option<Vec<u8>> = tx
        .query_row(
            "SELECT tokens FROM records WHERE collection_id = ?1 AND id = ?2",
            params![collection_id, id.as_bytes()],
            |r| r.get(0),
        )
        .optional()
        .map_err(map_err)?;
    let Some(tokens) = tokens else { return Ok(false) };
    let mut stmt = tx
        .prepare_cached("DELETE FROM blind_index WHERE collection_id = ?1 AND token = ?2 AND record_id = ?3")
        .map_err(map_err)?;
    for t in decode_tokens(&tokens)? {
        stmt.execute(params![collection_id, t.token, id.as_bytes()]).map_err(map_err)?;
    }
    tx.execute("DELETE FROM records WHERE collection_id = ?1 AND id = ?2", params![collection_id, id.as_bytes()])
        .map_err(map_err)?;
    Ok(true)
}

fn record_by_id(c: &Connection, collection_id: i64, id: &RecordId) -> Result<Option<RecordRow>> {
    c.prepare_cached(
        "SELECT id, collection_id, subject, schema_version, fields, tokens, created_at, updated_at, department
         FROM records WHERE collection_id = ?1 AND id = ?2",
    )
    .map_err(map_err)?
    .query_row(params![collection_id, id.as_bytes()], record_from_row)
    .optional()
    .map_err(map_err)
}

pub(crate) fn subject_key(c: &Connection, collection_id: i64, subject: &str) -> Result<Option<SubjectKeyRow>> {
    c.prepare_cached(
        "SELECT subject, kek_version, wrapped_dek FROM subject_keys WHERE collection_id = ?1 AND subject = ?2",
    )
    .map_err(map_err)?
    .query_row(params![collection_id, subject], |r| {
        Ok(SubjectKeyRow { subject: r.get(0)?, kek_version: r.get(1)?, wrapped_dek: r.get(2)? })
    })
    .optional()
    .map_err(map_err)
}

fn user_by_id(c: &Connection, id: &UserId) -> Result<Option<UserRow>> {
    c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))
        .map_err(map_err)?
        .query_row([id.as_bytes()], user_from_row)
        .optional()
        .map_err(map_err)?
        .map(finish_user)
        .transpose()
}

fn session_by_hash(c: &Connection, hash: &[u8; 32]) -> Result<Option<SessionRow>> {
    let row: Option<(Vec<u8>, i64, i64, i64, bool, bool)> = c
        .prepare_cached(
            "SELECT user_id, created_at, expires_at, last_seen_at, password_change_only, mfa
             FROM sessions WHERE token_hash = ?1",
        )
        .map_err(map_err)?
        .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .optional()
        .map_err(map_err)?;
    row.map(|(user, created, expires, seen, pco, mfa)| {
        Ok(SessionRow {
            token_hash: *hash,
            user_id: UserId::from_slice(&user).map_err(|_| StoreError::Corrupt("user id".into()))?,
            created_at: from_micros(created),
            expires_at: from_micros(expires),
            last_seen_at: from_micros(seen),
            password_change_only: pco,
            mfa,
        })
    })
    .transpose()
}

impl SqliteStore {
    /// The WAL still holds the old pages with the wrapped keys of an erased subject until a
    /// checkpoint; fold it into the (secure-deleted) main file now so the destroyed key is gone
    /// from disk.
    pub(crate) async fn fold_wal_after_erasure(&self) -> Result<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
            // Readers in other processes can hold the checkpoint back; retry briefly, then say so.
            for attempt in 0..50 {
                let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).map_err(map_err)?;
                if busy == 0 {
                    return Ok(());
                }
                if attempt == 49 {
                    tracing::warn!(
                        "WAL checkpoint after erasure stayed busy; old pages leave the WAL at the next checkpoint"
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    /// One step of a change, in a transaction of its own.
    async fn change(&self, change: AuditedChange) -> Result<()> {
        self.write(move |tx| crate::changes::apply(tx, &change)).await
    }

    /// Record ids selected by `sql`, whose parameters are the collection, one key and a limit.
    async fn record_ids(
        &self,
        sql: &'static str,
        collection_id: i64,
        key: rusqlite::types::Value,
        limit: usize,
    ) -> Result<Vec<RecordId>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(sql).map_err(map_err)?;
            let ids: Vec<Vec<u8>> = stmt
                .query_map(params![collection_id, key, limit as i64], |r| r.get(0))
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)?;
            ids.into_iter().map(record_id).collect()
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(map_err)).await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.read(move |c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(map_err)
        })
        .await
    }

    async fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.write(move |tx| {
            tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])
                .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn create_collection(&self, new: &NewCollection) -> Result<CollectionRow> {
        let new = new.clone();
        self.write(move |tx| create_collection_tx(tx, &new)).await
    }

    async fn list_collections(&self) -> Result<Vec<CollectionRow>> {
        self.read(|c| {
            let mut stmt =
                c.prepare(&format!("SELECT {COLLECTION_COLUMNS} FROM collections ORDER BY name")).map_err(map_err)?;
            stmt.query_map([], collection_from_row).map_err(map_err)?.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    async fn get_collection(&self, name: &str) -> Result<Option<CollectionRow>> {
        let name = name.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {COLLECTION_COLUMNS} FROM collections WHERE name = ?1"))
                .map_err(map_err)?
                .query_row([name], collection_from_row)
                .optional()
                .map_err(map_err)
        })
        .await
    }

    async fn add_schema_version(&self, collection_id: i64, expected_current: u32, schema_json: &str) -> Result<u32> {
        let schema_json = schema_json.to_owned();
        self.write(move |tx| add_schema_version_tx(tx, collection_id, expected_current, &schema_json)).await
    }

    async fn get_schema(&self, collection_id: i64, version: u32) -> Result<Option<String>> {
        self.read(move |c| {
            c.prepare_cached("SELECT schema_json FROM collection_schemas WHERE collection_id = ?1 AND version = ?2")
                .map_err(map_err)?
                .query_row(params![collection_id, version], |r| r.get(0))
                .optional()
                .map_err(map_err)
        })
        .await
    }

    async fn get_keks(&self, collection_id: i64) -> Result<Vec<WrappedKek>> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT version, wrapped FROM collection_keks WHERE collection_id = ?1 ORDER BY version",
                )
                .map_err(map_err)?;
            stmt.query_map([collection_id], |r| Ok(WrappedKek { version: r.get(0)?, wrapped: r.get(1)? }))
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)
        })
        .await
    }

    async fn add_kek(&self, collection_id: i64, kek: &WrappedKek) -> Result<()> {
        let kek = kek.clone();
        self.write(move |tx| add_kek_tx(tx, collection_id, &kek)).await
    }

    async fn drop_keks_below(&self, collection_id: i64, version: u32) -> Result<u64> {
        self.write(move |tx| {
            let in_use: i64 = tx
                .query_row(
                    "SELECT count(*) FROM subject_keys WHERE collection_id = ?1 AND kek_version < ?2",
                    params![collection_id, version],
                    |r| r.get(0),
                )
                .map_err(map_err)?;
            if in_use > 0 {
                return Err(StoreError::Conflict(format!(
                    "{in_use} subject keys are still wrapped under an older KEK"
                )));
            }
            let n = tx
                .execute(
                    "DELETE FROM collection_keks WHERE collection_id = ?1 AND version < ?2",
                    params![collection_id, version],
                )
                .map_err(map_err)?;
            Ok(n as u64)
        })
        .await
    }

    async fn list_master_sealed(&self) -> Result<Vec<SealedValue>> {
        self.read(crate::master::list_sealed).await
    }

    async fn rewrap_master(&self, rewrap: &MasterRewrap) -> Result<()> {
        let rewrap = rewrap.clone();
        self.write(move |tx| crate::master::rewrap(tx, &rewrap)).await
    }

    async fn get_subject_keys(&self, collection_id: i64, subjects: &[&str]) -> Result<Vec<SubjectKeyRow>> {
        let subjects: Vec<String> = subjects.iter().map(|s| s.to_string()).collect();
        self.read(move |c| {
            let mut out = Vec::new();
            for s in subjects {
                out.extend(subject_key(c, collection_id, &s)?);
            }
            Ok(out)
        })
        .await
    }

    async fn ensure_subject_key(&self, collection_id: i64, key: &SubjectKeyRow) -> Result<SubjectKeyRow> {
        let key = key.clone();
        self.write(move |tx| {
            insert_subject_key(tx, collection_id, &key)?;
            subject_key(tx, collection_id, &key.subject)?
                .ok_or_else(|| StoreError::Corrupt("subject key vanished inside its transaction".into()))
        })
        .await
    }

    async fn subject_keys_below(&self, collection_id: i64, version: u32, limit: usize) -> Result<Vec<SubjectKeyRow>> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT subject, kek_version, wrapped_dek FROM subject_keys
                     WHERE collection_id = ?1 AND kek_version < ?2 LIMIT ?3",
                )
                .map_err(map_err)?;
            stmt.query_map(params![collection_id, version, limit as i64], |r| {
                Ok(SubjectKeyRow { subject: r.get(0)?, kek_version: r.get(1)?, wrapped_dek: r.get(2)? })
            })
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)
        })
        .await
    }

    async fn rewrap_subject_keys(&self, collection_id: i64, rewrapped: &[(SubjectKeyRow, u32)]) -> Result<u64> {
        let rewrapped = rewrapped.to_vec();
        self.write(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE subject_keys SET kek_version = ?1, wrapped_dek = ?2
                     WHERE collection_id = ?3 AND subject = ?4 AND kek_version = ?5",
                )
                .map_err(map_err)?;
            let mut n = 0;
            for (k, old) in &rewrapped {
                n += stmt
                    .execute(params![k.kek_version, k.wrapped_dek, collection_id, k.subject, old])
                    .map_err(map_err)?;
            }
            Ok(n as u64)
        })
        .await
    }

    async fn insert_record(&self, record: &RecordRow) -> Result<()> {
        let record = record.clone();
        self.write(move |tx| insert_record_tx(tx, &record)).await
    }

    async fn get_record(&self, collection_id: i64, id: &RecordId) -> Result<Option<RecordRow>> {
        let id = *id;
        self.read_point(move |c| record_by_id(c, collection_id, &id)).await
    }

    async fn get_record_with_key(
        &self,
        collection_id: i64,
        id: &RecordId,
    ) -> Result<Option<(RecordRow, Option<SubjectKeyRow>)>> {
        let id = *id;
        self.read_point(move |c| {
            let Some(record) = record_by_id(c, collection_id, &id)? else { return Ok(None) };
            let key = subject_key(c, collection_id, &record.subject)?;
            Ok(Some((record, key)))
        })
        .await
    }

    async fn get_records_with_keys(
        &self,
        collection_id: i64,
        ids: &[RecordId],
    ) -> Result<Vec<(RecordRow, Option<SubjectKeyRow>)>> {
        let ids = ids.to_vec();
        // One trip to the blocking pool and one pooled connection for the whole page.
        self.read(move |c| {
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(record) = record_by_id(c, collection_id, id)? {
                    let key = subject_key(c, collection_id, &record.subject)?;
                    out.push((record, key));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn update_record(&self, record: &RecordRow) -> Result<()> {
        let record = record.clone();
        self.write(move |tx| update_record_tx(tx, &record)).await
    }

    async fn delete_record(&self, collection_id: i64, id: &RecordId) -> Result<bool> {
        let id = *id;
        self.write(move |tx| delete_record_tx(tx, collection_id, &id)).await
    }

    async fn apply_audited(&self, change: &[AuditedChange], events: &[AuditEvent]) -> Result<u64> {
        let erases = change.iter().any(|step| matches!(step, AuditedChange::EraseSubject { .. }));
        let change = change.to_vec();
        let events = crate::audit::canonical(events);
        let seq = self
            .write(move |tx| {
                for step in &change {
                    crate::changes::apply(tx, step)?;
                }
                crate::audit::append_tx(tx, &events).map_err(|e| StoreError::AuditUnavailable(e.to_string()))
            })
            .await?;
        // Committed: a fold that fails now must not turn the erasure into an error (the
        // caller would erase again); the pages leave the WAL at the next checkpoint.
        if erases && let Err(e) = self.fold_wal_after_erasure().await {
            tracing::warn!(error = %e, "WAL checkpoint after an erasure failed; old pages leave at the next one");
        }
        Ok(seq)
    }

    async fn find_by_token(&self, collection_id: i64, token: &[u8], limit: usize) -> Result<Vec<RecordId>> {
        let token = token.to_vec();
        self.record_ids(
            "SELECT record_id FROM blind_index WHERE collection_id = ?1 AND token = ?2 LIMIT ?3",
            collection_id,
            rusqlite::types::Value::Blob(token),
            limit,
        )
        .await
    }

    async fn find_by_subject(&self, collection_id: i64, subject: &str, limit: usize) -> Result<Vec<RecordId>> {
        self.record_ids(
            "SELECT id FROM records WHERE collection_id = ?1 AND subject = ?2 ORDER BY id LIMIT ?3",
            collection_id,
            rusqlite::types::Value::Text(subject.to_owned()),
            limit,
        )
        .await
    }

    async fn unique_tokens_taken(&self, collection_id: i64, tokens: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let tokens = tokens.to_vec();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT 1 FROM blind_index WHERE collection_id = ?1 AND token = ?2 AND is_unique = 1")
                .map_err(map_err)?;
            let mut taken = Vec::new();
            for t in tokens {
                if stmt.exists(params![collection_id, t]).map_err(map_err)? {
                    taken.push(t);
                }
            }
            Ok(taken)
        })
        .await
    }

    async fn count_records(&self, collection_id: i64) -> Result<u64> {
        self.read(move |c| {
            c.query_row("SELECT count(*) FROM records WHERE collection_id = ?1", [collection_id], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(map_err)
        })
        .await
    }

    async fn begin_import(&self, collection_id: i64) -> Result<Box<dyn ImportSession>> {
        Ok(Box::new(crate::import::SqliteImport::begin(self.clone(), collection_id).await?))
    }

    async fn erase_subject(&self, subject: &str, certificate: &ErasureCertificateRow) -> Result<ErasureCounts> {
        let (subject, cert) = (subject.to_owned(), certificate.clone());
        let counts = self.write(move |tx| erase_subject_tx(tx, &subject, &cert)).await?;
        self.fold_wal_after_erasure().await?;
        Ok(counts)
    }

    async fn list_erasure_certificates(&self) -> Result<Vec<ErasureCertificateRow>> {
        self.read(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT id, subject, erased_at, body_json, keys_destroyed, records_deleted
                     FROM erasure_certificates ORDER BY erased_at, id",
                )
                .map_err(map_err)?;
            stmt.query_map([], |r| {
                Ok(ErasureCertificateRow {
                    id: r.get(0)?,
                    subject: r.get(1)?,
                    erased_at: from_micros(r.get(2)?),
                    body_json: r.get(3)?,
                    keys_destroyed: r.get::<_, i64>(4)? as u64,
                    records_deleted: r.get::<_, i64>(5)? as u64,
                })
            })
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)
        })
        .await
    }

    async fn create_user(&self, user: &UserRow) -> Result<()> {
        self.change(AuditedChange::CreateUser(Box::new(user.clone()))).await
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<UserRow>> {
        let id = *id;
        self.read_point(move |c| user_by_id(c, &id)).await
    }

    async fn get_user_by_login(&self, login: &str) -> Result<Option<UserRow>> {
        let login = login.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE login = ?1"))
                .map_err(map_err)?
                .query_row([login], user_from_row)
                .optional()
                .map_err(map_err)?
                .map(finish_user)
                .transpose()
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<UserRow>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY login")).map_err(map_err)?;
            let rows: Vec<(Vec<u8>, UserRow)> = stmt
                .query_map([], user_from_row)
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)?;
            rows.into_iter().map(finish_user).collect()
        })
        .await
    }

    async fn set_password(
        &self,
        id: &UserId,
        password_hash: &str,
        must_change: bool,
        at: OffsetDateTime,
    ) -> Result<()> {
        let password_hash = password_hash.to_owned();
        self.change(AuditedChange::SetPassword { id: *id, password_hash, must_change, at }).await
    }

    async fn password_history(&self, id: &UserId, limit: usize) -> Result<Vec<String>> {
        let id = *id;
        self.read(move |c| {
            c.prepare_cached("SELECT password_hash FROM password_history WHERE user_id = ?1 ORDER BY seq DESC LIMIT ?2")
                .map_err(map_err)?
                .query_map(params![id.as_bytes(), limit as i64], |r| r.get(0))
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)
        })
        .await
    }

    async fn mark_user_reviewed(&self, id: &UserId, by: &str, at: OffsetDateTime) -> Result<()> {
        self.change(AuditedChange::MarkUserReviewed { id: *id, by: by.to_owned(), at }).await
    }

    async fn update_user_profile(&self, id: &UserId, p: &UserProfile) -> Result<()> {
        self.change(AuditedChange::UpdateUserProfile { id: *id, profile: p.clone() }).await
    }

    async fn record_login_failure(
        &self,
        id: &UserId,
        at: OffsetDateTime,
        lock_after: u32,
        lock_until: OffsetDateTime,
    ) -> Result<(u32, Option<OffsetDateTime>)> {
        let id = *id;
        self.write(move |tx| {
            // SET expressions all see the row as it was before the update.
            tx.query_row(
                "UPDATE users SET
                    failed_logins = CASE WHEN locked_until <= ?2 THEN 1 ELSE failed_logins + 1 END,
                    locked_until = CASE
                        WHEN locked_until > ?2 THEN locked_until
                        WHEN (CASE WHEN locked_until <= ?2 THEN 1 ELSE failed_logins + 1 END) >= ?3 THEN ?4
                        ELSE NULL END
                 WHERE id = ?1
                 RETURNING failed_logins, locked_until",
                params![id.as_bytes(), to_micros(at), lock_after, to_micros(lock_until)],
                |r| Ok((r.get::<_, u32>(0)?, r.get::<_, Option<i64>>(1)?.map(from_micros))),
            )
            .optional()
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn record_login_success(&self, id: &UserId, at: OffsetDateTime) -> Result<bool> {
        let id = *id;
        self.write(move |tx| {
            let changed = tx
                .execute(
                    "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = ?2 \
                     WHERE id = ?1 AND disabled = 0 AND (locked_until IS NULL OR locked_until <= ?2)",
                    params![id.as_bytes(), to_micros(at)],
                )
                .map_err(map_err)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn unlock_user(&self, id: &UserId) -> Result<()> {
        self.change(AuditedChange::UnlockUser { id: *id }).await
    }

    async fn set_totp(&self, id: &UserId, wrapped_secret: Option<&[u8]>, recovery_hashes: &[[u8; 32]]) -> Result<()> {
        let (wrapped_secret, recovery_hashes) = (wrapped_secret.map(<[u8]>::to_vec), recovery_hashes.to_vec());
        self.change(AuditedChange::SetTotp { id: *id, wrapped_secret, recovery_hashes, accepted_step: None }).await
    }

    async fn advance_totp_step(&self, id: &UserId, step: u64) -> Result<bool> {
        let id = *id;
        let step = i64::try_from(step).map_err(|_| StoreError::Backend("TOTP step out of range".into()))?;
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE users SET totp_last_step = ?2
                     WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                    params![id.as_bytes(), step],
                )
                .map_err(map_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn recovery_code_hashes(&self, id: &UserId) -> Result<Vec<[u8; 32]>> {
        let id = *id;
        self.read(move |c| {
            let rows: Vec<Vec<u8>> = c
                .prepare_cached("SELECT code_hash FROM recovery_codes WHERE user_id = ?1")
                .map_err(map_err)?
                .query_map([id.as_bytes()], |r| r.get(0))
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)?;
            rows.into_iter()
                .map(|h| {
                    <[u8; 32]>::try_from(h.as_slice()).map_err(|_| StoreError::Corrupt("recovery code hash".into()))
                })
                .collect()
        })
        .await
    }

    async fn use_recovery_code(&self, id: &UserId, hash: &[u8; 32]) -> Result<bool> {
        let (id, hash) = (*id, *hash);
        self.write(move |tx| {
            let n = tx
                .execute(
                    "DELETE FROM recovery_codes WHERE user_id = ?1 AND code_hash = ?2",
                    params![id.as_bytes(), hash],
                )
                .map_err(map_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn list_user_sessions(&self, id: &UserId) -> Result<Vec<SessionRow>> {
        let id = *id;
        self.read(move |c| {
            let hashes: Vec<Vec<u8>> = c
                .prepare_cached("SELECT token_hash FROM sessions WHERE user_id = ?1 ORDER BY created_at, token_hash")
                .map_err(map_err)?
                .query_map([id.as_bytes()], |r| r.get(0))
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)?;
            let mut out = Vec::with_capacity(hashes.len());
            for h in hashes {
                let h = <[u8; 32]>::try_from(h.as_slice()).map_err(|_| StoreError::Corrupt("session hash".into()))?;
                out.extend(session_by_hash(c, &h)?);
            }
            Ok(out)
        })
        .await
    }

    async fn set_user_disabled(&self, id: &UserId, disabled: bool) -> Result<()> {
        self.change(AuditedChange::SetUserDisabled { id: *id, disabled }).await
    }

    async fn enable_user(&self, id: &UserId, at: OffsetDateTime) -> Result<()> {
        self.change(AuditedChange::EnableUser { id: *id, at }).await
    }

    async fn create_session(&self, s: &SessionRow) -> Result<()> {
        let s = s.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, last_seen_at, password_change_only,
                                       mfa)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.token_hash,
                    s.user_id.as_bytes(),
                    to_micros(s.created_at),
                    to_micros(s.expires_at),
                    to_micros(s.last_seen_at),
                    s.password_change_only,
                    s.mfa
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn get_session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRow>> {
        let hash = *token_hash;
        self.read(move |c| session_by_hash(c, &hash)).await
    }

    async fn get_session_with_user(&self, token_hash: &[u8; 32]) -> Result<Option<(SessionRow, UserRow)>> {
        let hash = *token_hash;
        self.read_point(move |c| {
            let Some(session) = session_by_hash(c, &hash)? else { return Ok(None) };
            Ok(user_by_id(c, &session.user_id)?.map(|user| (session, user)))
        })
        .await
    }

    async fn touch_session(&self, token_hash: &[u8; 32], at: OffsetDateTime) -> Result<()> {
        let hash = *token_hash;
        self.write(move |tx| {
            tx.execute("UPDATE sessions SET last_seen_at = ?1 WHERE token_hash = ?2", params![to_micros(at), hash])
                .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, token_hash: &[u8; 32]) -> Result<()> {
        let hash = *token_hash;
        self.write(move |tx| {
            tx.execute("DELETE FROM sessions WHERE token_hash = ?1", [hash]).map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn delete_user_sessions(&self, user: &UserId) -> Result<u64> {
        let user = *user;
        self.write(move |tx| {
            Ok(tx.execute("DELETE FROM sessions WHERE user_id = ?1", [user.as_bytes()]).map_err(map_err)? as u64)
        })
        .await
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<u64> {
        self.append_audit_events(events).await
    }

    async fn read_audit(&self, from: u64, limit: usize) -> Result<Vec<AuditRow>> {
        self.audit_rows(from, limit).await
    }

    async fn read_audit_page(&self, from: u64, limit: usize, columns: bool) -> Result<AuditRowPage> {
        self.audit_page(from, limit, columns).await
    }

    async fn scan_audit(&self, from: u64, limit: usize, columns: bool, visit: AuditVisitor) -> Result<()> {
        self.scan(from, limit, columns, visit).await
    }

    async fn audit_column_source(&self) -> Result<AuditColumnSource> {
        self.generated_audit_columns().await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        self.query_audit_rows(query).await
    }

    async fn add_audit_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<()> {
        self.insert_checkpoint(checkpoint).await
    }

    async fn read_audit_checkpoints(&self, from: u64, limit: usize) -> Result<Vec<CheckpointRow>> {
        self.checkpoints(from, limit).await
    }

    async fn last_audit_checkpoint(&self) -> Result<Option<CheckpointRow>> {
        self.last_checkpoint().await
    }

    async fn prune_audit(&self, anchor: &CheckpointRow) -> Result<u64> {
        self.prune(anchor).await
    }

    async fn add_policy_version(&self, row: &PolicyVersionRow) -> Result<u64> {
        self.insert_policy_version(row).await
    }

    async fn list_policy_versions(&self) -> Result<Vec<PolicyVersionRow>> {
        self.policy_versions().await
    }

    async fn get_policy_version(&self, version: u64) -> Result<Option<PolicyVersionRow>> {
        self.policy_version(Some(version)).await
    }

    async fn active_policy_version(&self) -> Result<Option<PolicyVersionRow>> {
        self.policy_version(None).await
    }

    async fn decide_policy_version(&self, version: u64, approve: bool, by: &str, at: OffsetDateTime) -> Result<bool> {
        self.decide_policy(version, approve, by, at).await
    }

    async fn create_grant(&self, grant: &GrantRow) -> Result<()> {
        self.insert_grant(grant).await
    }

    async fn get_grant(&self, id: &str) -> Result<Option<GrantRow>> {
        Ok(self.grants(Some(id.to_owned())).await?.pop())
    }

    async fn list_grants(&self) -> Result<Vec<GrantRow>> {
        self.grants(None).await
    }

    async fn decide_grant(&self, id: &str, change: &GrantChange) -> Result<bool> {
        self.update_grant(id, change).await
    }

    async fn active_grants(&self, user: &UserId, collection: &str, now: OffsetDateTime) -> Result<Vec<GrantRow>> {
        self.live_grants(user, collection, now).await
    }

    async fn create_export(&self, export: &ExportRow, entry: &LedgerRow) -> Result<()> {
        self.insert_export(export, entry).await
    }

    async fn get_export(&self, id: &str) -> Result<Option<ExportRow>> {
        Ok(self.exports(Some(id.to_owned())).await?.pop())
    }

    async fn list_exports(&self) -> Result<Vec<ExportRow>> {
        self.exports(None).await
    }

    async fn change_export(&self, id: &str, change: &ExportChange, entry: &LedgerRow) -> Result<bool> {
        self.update_export(id, change, entry).await
    }

    async fn take_export_download(&self, id: &str, entry: &LedgerRow) -> Result<Option<u32>> {
        self.use_export_download(id, entry).await
    }

    async fn hold_export_shares(&self, shares: &[HeldShare], entries: &[LedgerRow]) -> Result<()> {
        self.insert_shares(shares, entries).await
    }

    async fn take_export_share(
        &self,
        export_id: &str,
        custodian: &UserId,
        entry: &LedgerRow,
    ) -> Result<Option<HeldShare>> {
        self.take_share(export_id, custodian, entry).await
    }

    async fn discard_export_shares(&self, export_id: &str, entry: &LedgerRow) -> Result<u64> {
        self.discard_shares(export_id, entry).await
    }

    async fn list_export_shares(&self, export_id: Option<&str>, custodian: Option<&UserId>) -> Result<Vec<HeldShare>> {
        self.shares(export_id.map(str::to_owned), custodian.copied()).await
    }

    async fn add_ledger(&self, entry: &LedgerRow) -> Result<()> {
        self.append_ledger(entry).await
    }

    async fn list_ledger(&self, export_id: Option<&str>, since: Option<OffsetDateTime>) -> Result<Vec<LedgerRow>> {
        self.ledger(export_id.map(str::to_owned), since).await
    }

    async fn takeout_rows_since(&self, user: &UserId, since: OffsetDateTime) -> Result<u64> {
        self.rows_taken_out(user, since).await
    }

    async fn page_record_ids(
        &self,
        collection_id: i64,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<RecordId>> {
        self.record_ids(
            "SELECT id FROM records WHERE collection_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            collection_id,
            rusqlite::types::Value::Blob(after.map(|a| a.as_bytes().to_vec()).unwrap_or_default()),
            limit,
        )
        .await
    }

    async fn read_table(
        &self,
        table: &'static Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>> {
        self.table_page(table, after, limit).await
    }

    async fn count_rows(&self, table: &'static Table) -> Result<u64> {
        self.table_count(table).await
    }

    async fn begin_copy(&self) -> Result<Box<dyn CopySession>> {
        Ok(Box::new(self.begin_copy_session().await?))
    }
}
