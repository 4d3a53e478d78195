//! Records, their blind-index entries, and erasure.

use crate::PostgresStore;
use crate::db::{self, execute, get, get_time, get_u32, get_u64, query, query_opt, version};
use crate::error::pg;
use deadpool_postgres::GenericClient;
use mamori_core::ids::RecordId;
use mamori_store::{
    ErasureCertificateRow, ErasureCounts, IndexToken, RecordRow, Result, StoreError, decode_tokens, encode_tokens,
    to_micros,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

pub(crate) const RECORD_COLUMNS: &str =
    "id, collection_id, subject, schema_version, fields, tokens, created_at, updated_at, department";

fn record_row(r: &Row) -> Result<RecordRow> {
    Ok(RecordRow {
        id: RecordId::from_uuid(get(r, 0)?),
        collection_id: get(r, 1)?,
        subject: get(r, 2)?,
        schema_version: get_u32(r, 3, "schema version")?,
        fields: get(r, 4)?,
        tokens: decode_tokens(get(r, 5)?)?,
        created_at: get_time(r, 6)?,
        updated_at: get_time(r, 7)?,
        department: get(r, 8)?,
    })
}

/// One index row per distinct token of a record: the primary key is (collection, token,
/// record), so a token that two fields of one record share would otherwise collide with
/// itself. A token that is unique for either field stays unique.
pub(crate) fn index_entries(tokens: &[IndexToken]) -> Vec<(&[u8], bool)> {
    let mut out: Vec<(&[u8], bool)> = Vec::with_capacity(tokens.len());
    for t in tokens {
        match out.iter_mut().find(|(token, _)| *token == t.token.as_slice()) {
            Some((_, unique)) => *unique |= t.unique,
            None => out.push((&t.token, t.unique)),
        }
    }
    out
}

async fn insert_index<C: GenericClient>(c: &C, collection_id: i64, id: &Uuid, tokens: &[IndexToken]) -> Result<()> {
    if tokens.is_empty() {
        return Ok(());
    }
    let (tokens, uniques): (Vec<&[u8]>, Vec<bool>) = index_entries(tokens).into_iter().unzip();
    execute(
        c,
        "INSERT INTO blind_index (collection_id, token, record_id, is_unique)
         SELECT $1, t.token, $2, t.is_unique FROM unnest($3::bytea[], $4::bool[]) AS t(token, is_unique)",
        &[&collection_id, id, &tokens, &uniques],
    )
    .await?;
    Ok(())
}

/// Deletes the index entries listed in a record's token blob, through the primary key.
async fn delete_index<C: GenericClient>(c: &C, collection_id: i64, id: &Uuid, token_blob: &[u8]) -> Result<()> {
    let tokens = decode_tokens(token_blob)?;
    if tokens.is_empty() {
        return Ok(());
    }
    let tokens: Vec<&[u8]> = tokens.iter().map(|t| t.token.as_slice()).collect();
    execute(
        c,
        "DELETE FROM blind_index WHERE collection_id = $1 AND token = ANY($2) AND record_id = $3",
        &[&collection_id, &tokens, id],
    )
    .await?;
    Ok(())
}

/// A record's values in `RECORD_COLUMNS` order, for an `INSERT` or a binary `COPY`.
pub(crate) struct RecordValues<'a> {
    record: &'a RecordRow,
    version: i32,
    tokens: Vec<u8>,
    created_at: i64,
    updated_at: i64,
}

impl<'a> RecordValues<'a> {
    pub(crate) fn of(record: &'a RecordRow) -> Result<Self> {
        Ok(Self {
            record,
            version: version(record.schema_version)?,
            tokens: encode_tokens(&record.tokens),
            created_at: to_micros(record.created_at),
            updated_at: to_micros(record.updated_at),
        })
    }

    /// The values, in the collection `collection_id` (an import's, or the record's own).
    pub(crate) fn params<'s>(&'s self, collection_id: &'s i64) -> [&'s (dyn ToSql + Sync); 9] {
        let r = self.record;
        [
            r.id.as_uuid(),
            collection_id,
            &r.subject,
            &self.version,
            &r.fields,
            &self.tokens,
            &self.created_at,
            &self.updated_at,
            &r.department,
        ]
    }
}

/// Inserts a record whose subject still has a key (`Conflict` otherwise: it was erased),
/// inside the caller's transaction.
pub(crate) async fn insert_record_in<C: GenericClient>(tx: &C, r: &RecordRow) -> Result<()> {
    let id = r.id.as_uuid();
    // FOR SHARE holds off a concurrent erasure of the subject until this record is
    // committed; erasure deletes the key first, so it then sees and deletes this record.
    let key = query_opt(
        tx,
        "SELECT 1 FROM subject_keys WHERE collection_id = $1 AND subject = $2 FOR SHARE",
        &[&r.collection_id, &r.subject],
    )
    .await?;
    if key.is_none() {
        return Err(StoreError::Conflict("the data subject has no key (erased?)".into()));
    }
    let values = RecordValues::of(r)?;
    execute(
        tx,
        &format!("INSERT INTO records ({RECORD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
        &values.params(&r.collection_id),
    )
    .await?;
    // A unique value taken by another record (even one committed a moment ago by a
    // concurrent writer) fails here with a unique violation, i.e. Conflict.
    insert_index(tx, r.collection_id, id, &r.tokens).await
}

/// Replaces an existing record (`NotFound` if it is gone), inside the caller's transaction.
pub(crate) async fn update_record_in<C: GenericClient>(tx: &C, r: &RecordRow) -> Result<()> {
    let id = r.id.as_uuid();
    // FOR UPDATE so that a concurrent update of the same record cannot interleave its
    // index changes with ours.
    let old = query_opt(
        tx,
        "SELECT tokens FROM records WHERE collection_id = $1 AND id = $2 FOR UPDATE",
        &[&r.collection_id, id],
    )
    .await?
    .ok_or(StoreError::NotFound)?;
    delete_index(tx, r.collection_id, id, get(&old, 0)?).await?;
    execute(
        tx,
        "UPDATE records SET schema_version = $3, fields = $4, tokens = $5, updated_at = $6, department = $7
         WHERE collection_id = $1 AND id = $2",
        &[
            &r.collection_id,
            id,
            &version(r.schema_version)?,
            &r.fields,
            &encode_tokens(&r.tokens),
            &to_micros(r.updated_at),
            &r.department,
        ],
    )
    .await?;
    insert_index(tx, r.collection_id, id, &r.tokens).await
}

/// Deletes a record and its index entries inside the caller's transaction; `false` if it
/// was not there.
pub(crate) async fn delete_record_in<C: GenericClient>(tx: &C, collection_id: i64, id: &RecordId) -> Result<bool> {
    let id = id.as_uuid();
    let deleted = query_opt(
        tx,
        "DELETE FROM records WHERE collection_id = $1 AND id = $2 RETURNING tokens",
        &[&collection_id, id],
    )
    .await?;
    let Some(deleted) = deleted else { return Ok(false) };
    delete_index(tx, collection_id, id, get(&deleted, 0)?).await?;
    Ok(true)
}

/// See [`mamori_store::Store::erase_subject`], inside the caller's transaction.
pub(crate) async fn erase_in<C: GenericClient>(
    tx: &C,
    subject: &str,
    cert: &ErasureCertificateRow,
) -> Result<ErasureCounts> {
    // Keys first: this waits for writers holding a subject key FOR SHARE, so the records
    // they commit are visible to the DELETE below (a new snapshot per statement).
    let keys_destroyed = execute(tx, "DELETE FROM subject_keys WHERE subject = $1", &[&subject]).await?;
    let deleted =
        query(tx, "DELETE FROM records WHERE subject = $1 RETURNING collection_id, id, tokens", &[&subject]).await?;
    // The index entries of every deleted record, flattened into parallel arrays so that one
    // statement removes them all through the primary key of blind_index.
    let (mut collections, mut tokens, mut ids) = (Vec::<i64>::new(), Vec::<Vec<u8>>::new(), Vec::<Uuid>::new());
    for row in &deleted {
        let (collection_id, id): (i64, Uuid) = (get(row, 0)?, get(row, 1)?);
        for t in decode_tokens(get(row, 2)?)? {
            collections.push(collection_id);
            tokens.push(t.token);
            ids.push(id);
        }
    }
    if !tokens.is_empty() {
        execute(
            tx,
            "DELETE FROM blind_index b USING unnest($1::int8[], $2::bytea[], $3::uuid[]) AS d(collection_id, token, record_id)
             WHERE b.collection_id = d.collection_id AND b.token = d.token AND b.record_id = d.record_id",
            &[&collections, &tokens, &ids],
        )
        .await?;
    }
    let records_deleted = deleted.len() as u64;
    // The counts come from this transaction, whatever the caller put in the certificate.
    execute(
        tx,
        "INSERT INTO erasure_certificates (id, subject, erased_at, body_json, keys_destroyed, records_deleted)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &cert.id,
            &cert.subject,
            &to_micros(cert.erased_at),
            &cert.body_json,
            &db::stored_count(keys_destroyed)?,
            &db::stored_count(records_deleted)?,
        ],
    )
    .await?;
    Ok(ErasureCounts { keys_destroyed, records_deleted })
}

impl PostgresStore {
    pub(crate) async fn insert_record_row(&self, r: &RecordRow) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        insert_record_in(&tx, r).await?;
        tx.commit().await.map_err(pg)
    }

    pub(crate) async fn get_record_row(&self, collection_id: i64, id: &RecordId) -> Result<Option<RecordRow>> {
        let conn = self.conn().await?;
        let sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE collection_id = $1 AND id = $2");
        query_opt(&conn, &sql, &[&collection_id, id.as_uuid()]).await?.as_ref().map(record_row).transpose()
    }

    /// A page of records and their subjects' keys in two queries (records by `= ANY`, then
    /// their keys), returned in the order of `ids`.
    pub(crate) async fn record_rows_with_keys(
        &self,
        collection_id: i64,
        ids: &[RecordId],
    ) -> Result<Vec<(RecordRow, Option<mamori_store::SubjectKeyRow>)>> {
        let conn = self.conn().await?;
        let uuids: Vec<Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        let sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE collection_id = $1 AND id = ANY($2)");
        let mut records: std::collections::HashMap<RecordId, RecordRow> = query(&conn, &sql, &[&collection_id, &uuids])
            .await?
            .iter()
            .map(|r| record_row(r).map(|row| (row.id, row)))
            .collect::<Result<_>>()?;
        let mut subjects: Vec<&str> = records.values().map(|r| r.subject.as_str()).collect();
        subjects.sort_unstable();
        subjects.dedup();
        let keys: std::collections::HashMap<String, mamori_store::SubjectKeyRow> = query(
            &conn,
            "SELECT subject, kek_version, wrapped_dek FROM subject_keys WHERE collection_id = $1 AND subject = ANY($2)",
            &[&collection_id, &subjects],
        )
        .await?
        .iter()
        .map(|r| crate::collections::subject_key_row(r).map(|k| (k.subject.clone(), k)))
        .collect::<Result<_>>()?;
        Ok(ids
            .iter()
            .filter_map(|id| records.remove(id))
            .map(|record| {
                let key = keys.get(&record.subject).cloned();
                (record, key)
            })
            .collect())
    }

    pub(crate) async fn update_record_row(&self, r: &RecordRow) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        update_record_in(&tx, r).await?;
        tx.commit().await.map_err(pg)
    }

    pub(crate) async fn delete_record_row(&self, collection_id: i64, id: &RecordId) -> Result<bool> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let deleted = delete_record_in(&tx, collection_id, id).await?;
        tx.commit().await.map_err(pg)?;
        Ok(deleted)
    }

    /// Record ids selected by `sql`, whose parameters are the collection, one key and a limit.
    pub(crate) async fn find_record_ids(
        &self,
        sql: &str,
        collection_id: i64,
        key: &(dyn tokio_postgres::types::ToSql + Sync),
        limit: usize,
    ) -> Result<Vec<RecordId>> {
        let conn = self.conn().await?;
        let rows = query(&conn, sql, &[&collection_id, key, &db::limit(limit)]).await?;
        rows.iter().map(|r| Ok(RecordId::from_uuid(get(r, 0)?))).collect()
    }

    pub(crate) async fn taken_unique_tokens(&self, collection_id: i64, tokens: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn().await?;
        let rows = query(
            &conn,
            "SELECT token FROM blind_index WHERE collection_id = $1 AND is_unique AND token = ANY($2)",
            &[&collection_id, &tokens],
        )
        .await?;
        let taken = rows.iter().map(|r| get::<&[u8]>(r, 0)).collect::<Result<Vec<_>>>()?;
        // In the caller's order, which the database does not promise.
        Ok(tokens.iter().filter(|t| taken.contains(&t.as_slice())).cloned().collect())
    }

    pub(crate) async fn count_record_rows(&self, collection_id: i64) -> Result<u64> {
        let conn = self.conn().await?;
        let row = query_opt(&conn, "SELECT count(*) FROM records WHERE collection_id = $1", &[&collection_id])
            .await?
            .ok_or_else(|| StoreError::Backend("count returned no row".into()))?;
        db::count(get(&row, 0)?)
    }

    pub(crate) async fn erase(&self, subject: &str, cert: &ErasureCertificateRow) -> Result<ErasureCounts> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let counts = erase_in(&tx, subject, cert).await?;
        tx.commit().await.map_err(pg)?;
        Ok(counts)
    }

    pub(crate) async fn list_certificates(&self) -> Result<Vec<ErasureCertificateRow>> {
        let conn = self.conn().await?;
        let rows = query(
            &conn,
            "SELECT id, subject, erased_at, body_json, keys_destroyed, records_deleted
             FROM erasure_certificates ORDER BY erased_at, id",
            &[],
        )
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ErasureCertificateRow {
                    id: get(r, 0)?,
                    subject: get(r, 1)?,
                    erased_at: get_time(r, 2)?,
                    body_json: get(r, 3)?,
                    keys_destroyed: get_u64(r, 4, "erased key count")?,
                    records_deleted: get_u64(r, 5, "erased record count")?,
                })
            })
            .collect()
    }
}
