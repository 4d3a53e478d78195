//! Installation facts, collections, their schemas and key-encryption keys, subject keys.

use crate::PostgresStore;
use crate::db::{self, execute, get, get_time, get_u32, query, query_opt, version};
use crate::error::pg;
use deadpool_postgres::GenericClient;
use mamori_store::{CollectionRow, NewCollection, Result, StoreError, SubjectKeyRow, WrappedKek, to_micros};
use tokio_postgres::Row;

const COLLECTION_COLUMNS: &str = "id, name, schema_version, kek_version, wrapped_index_key, created_at";

fn collection_row(r: &Row) -> Result<CollectionRow> {
    Ok(CollectionRow {
        id: get(r, 0)?,
        name: get(r, 1)?,
        schema_version: get_u32(r, 2, "schema version")?,
        kek_version: get_u32(r, 3, "KEK version")?,
        wrapped_index_key: get(r, 4)?,
        created_at: get_time(r, 5)?,
    })
}

pub(crate) fn subject_key_row(r: &Row) -> Result<SubjectKeyRow> {
    Ok(SubjectKeyRow { subject: get(r, 0)?, kek_version: get_u32(r, 1, "KEK version")?, wrapped_dek: get(r, 2)? })
}

pub(crate) async fn create_collection_in<C: GenericClient>(tx: &C, new: &NewCollection) -> Result<CollectionRow> {
    let kek_version = version(new.kek.version)?;
    let created_at = to_micros(new.created_at);
    let row = query_opt(
        tx,
        &format!(
            "INSERT INTO collections (name, schema_version, kek_version, wrapped_index_key, created_at)
             VALUES ($1, 1, $2, $3, $4) RETURNING {COLLECTION_COLUMNS}"
        ),
        &[&new.name, &kek_version, &new.wrapped_index_key, &created_at],
    )
    .await?
    .ok_or_else(|| StoreError::Backend("INSERT … RETURNING returned no row".into()))?;
    let collection = collection_row(&row)?;
    execute(
        tx,
        "INSERT INTO collection_schemas (collection_id, version, schema_json) VALUES ($1, 1, $2)",
        &[&collection.id, &new.schema_json],
    )
    .await?;
    execute(
        tx,
        "INSERT INTO collection_keks (collection_id, version, wrapped) VALUES ($1, $2, $3)",
        &[&collection.id, &kek_version, &new.kek.wrapped],
    )
    .await?;
    Ok(collection)
}

/// See [`mamori_store::Store::add_schema_version`].
pub(crate) async fn add_schema_in<C: GenericClient>(
    tx: &C,
    collection_id: i64,
    expected_current: u32,
    schema_json: &str,
) -> Result<u32> {
    // Compare-and-set in one statement: the row lock it takes makes a concurrent caller
    // with the same expectation wait, then find the version moved and update nothing.
    let updated = query_opt(
        tx,
        "UPDATE collections SET schema_version = schema_version + 1
         WHERE id = $1 AND schema_version = $2 RETURNING schema_version",
        &[&collection_id, &version(expected_current)?],
    )
    .await?;
    let Some(row) = updated else {
        let exists = query_opt(tx, "SELECT 1 FROM collections WHERE id = $1", &[&collection_id]).await?;
        return Err(match exists {
            Some(_) => StoreError::Conflict("schema version changed concurrently".into()),
            None => StoreError::NotFound,
        });
    };
    let new_version: i32 = get(&row, 0)?;
    execute(
        tx,
        "INSERT INTO collection_schemas (collection_id, version, schema_json) VALUES ($1, $2, $3)",
        &[&collection_id, &new_version, &schema_json],
    )
    .await?;
    u32::try_from(new_version).map_err(|_| crate::error::corrupt("schema version"))
}

/// See [`mamori_store::Store::add_kek`].
pub(crate) async fn add_kek_in<C: GenericClient>(tx: &C, collection_id: i64, kek: &WrappedKek) -> Result<()> {
    let v = version(kek.version)?;
    let changed = execute(tx, "UPDATE collections SET kek_version = $2 WHERE id = $1", &[&collection_id, &v]).await?;
    if changed == 0 {
        return Err(StoreError::NotFound);
    }
    execute(
        tx,
        "INSERT INTO collection_keks (collection_id, version, wrapped) VALUES ($1, $2, $3)",
        &[&collection_id, &v, &kek.wrapped],
    )
    .await?;
    Ok(())
}

impl PostgresStore {
    pub(crate) async fn get_meta_value(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let conn = self.conn().await?;
        query_opt(&conn, "SELECT value FROM meta WHERE key = $1", &[&key]).await?.map(|r| get(&r, 0)).transpose()
    }

    pub(crate) async fn put_meta_value(&self, key: &str, value: &[u8]) -> Result<()> {
        let conn = self.conn().await?;
        execute(
            &conn,
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn create_collection_row(&self, new: &NewCollection) -> Result<CollectionRow> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let collection = create_collection_in(&tx, new).await?;
        tx.commit().await.map_err(pg)?;
        Ok(collection)
    }

    pub(crate) async fn list_collection_rows(&self) -> Result<Vec<CollectionRow>> {
        let conn = self.conn().await?;
        let rows = query(&conn, &format!("SELECT {COLLECTION_COLUMNS} FROM collections ORDER BY name"), &[]).await?;
        rows.iter().map(collection_row).collect()
    }

    pub(crate) async fn get_collection_row(&self, name: &str) -> Result<Option<CollectionRow>> {
        let conn = self.conn().await?;
        let sql = format!("SELECT {COLLECTION_COLUMNS} FROM collections WHERE name = $1");
        query_opt(&conn, &sql, &[&name]).await?.as_ref().map(collection_row).transpose()
    }

    pub(crate) async fn add_schema(&self, collection_id: i64, expected_current: u32, schema_json: &str) -> Result<u32> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let new_version = add_schema_in(&tx, collection_id, expected_current, schema_json).await?;
        tx.commit().await.map_err(pg)?;
        Ok(new_version)
    }

    pub(crate) async fn get_schema_json(&self, collection_id: i64, v: u32) -> Result<Option<String>> {
        let conn = self.conn().await?;
        let sql = "SELECT schema_json FROM collection_schemas WHERE collection_id = $1 AND version = $2";
        query_opt(&conn, sql, &[&collection_id, &version(v)?]).await?.map(|r| get(&r, 0)).transpose()
    }

    pub(crate) async fn get_kek_rows(&self, collection_id: i64) -> Result<Vec<WrappedKek>> {
        let conn = self.conn().await?;
        let sql = "SELECT version, wrapped FROM collection_keks WHERE collection_id = $1 ORDER BY version";
        let rows = query(&conn, sql, &[&collection_id]).await?;
        rows.iter().map(|r| Ok(WrappedKek { version: get_u32(r, 0, "KEK version")?, wrapped: get(r, 1)? })).collect()
    }

    pub(crate) async fn add_kek_row(&self, collection_id: i64, kek: &WrappedKek) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        add_kek_in(&tx, collection_id, kek).await?;
        tx.commit().await.map_err(pg)
    }

    pub(crate) async fn drop_old_keks(&self, collection_id: i64, below: u32) -> Result<u64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let v = version(below)?;
        // This check gives the common case a clear message; the foreign key from subject_keys
        // is what closes the race with a writer storing a key under an old KEK right now.
        let in_use = query_opt(
            &tx,
            "SELECT 1 FROM subject_keys WHERE collection_id = $1 AND kek_version < $2 LIMIT 1",
            &[&collection_id, &v],
        )
        .await?;
        if in_use.is_some() {
            return Err(StoreError::Conflict("subject keys still wrapped under an older KEK".into()));
        }
        let dropped = execute(
            &tx,
            "DELETE FROM collection_keks WHERE collection_id = $1 AND version < $2",
            &[&collection_id, &v],
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        Ok(dropped)
    }

    pub(crate) async fn get_subject_key_rows(
        &self,
        collection_id: i64,
        subjects: &[&str],
    ) -> Result<Vec<SubjectKeyRow>> {
        let conn = self.conn().await?;
        let rows = query(
            &conn,
            "SELECT subject, kek_version, wrapped_dek FROM subject_keys
             WHERE collection_id = $1 AND subject = ANY($2) ORDER BY subject",
            &[&collection_id, &subjects],
        )
        .await?;
        rows.iter().map(subject_key_row).collect()
    }

    pub(crate) async fn ensure_subject_key_row(
        &self,
        collection_id: i64,
        key: &SubjectKeyRow,
    ) -> Result<SubjectKeyRow> {
        let conn = self.conn().await?;
        let v = version(key.kek_version)?;
        // Insert and read back are two statements on purpose: ON CONFLICT waits for a
        // concurrent inserter to commit, but a statement's snapshot predates that commit, so
        // only a new statement can see the winner's row. A subject erased in between has no
        // row at all, hence the retry.
        for _ in 0..3 {
            let inserted = query_opt(
                &conn,
                "INSERT INTO subject_keys (collection_id, subject, kek_version, wrapped_dek) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (collection_id, subject) DO NOTHING RETURNING subject, kek_version, wrapped_dek",
                &[&collection_id, &key.subject, &v, &key.wrapped_dek],
            )
            .await?;
            if let Some(row) = inserted {
                return subject_key_row(&row);
            }
            let stored = query_opt(
                &conn,
                "SELECT subject, kek_version, wrapped_dek FROM subject_keys WHERE collection_id = $1 AND subject = $2",
                &[&collection_id, &key.subject],
            )
            .await?;
            if let Some(row) = stored {
                return subject_key_row(&row);
            }
        }
        Err(StoreError::Conflict("subject key created and erased concurrently".into()))
    }

    pub(crate) async fn subject_key_rows_below(
        &self,
        collection_id: i64,
        below: u32,
        limit: usize,
    ) -> Result<Vec<SubjectKeyRow>> {
        let conn = self.conn().await?;
        let rows = query(
            &conn,
            "SELECT subject, kek_version, wrapped_dek FROM subject_keys
             WHERE collection_id = $1 AND kek_version < $2::int8 ORDER BY subject LIMIT $3",
            // As BIGINT: `below` may be any u32, `u32::MAX` meaning "every key".
            &[&collection_id, &i64::from(below), &db::limit(limit)],
        )
        .await?;
        rows.iter().map(subject_key_row).collect()
    }

    pub(crate) async fn rewrap_subject_key_rows(
        &self,
        collection_id: i64,
        rewrapped: &[(SubjectKeyRow, u32)],
    ) -> Result<u64> {
        let conn = self.conn().await?;
        let subjects: Vec<&str> = rewrapped.iter().map(|(k, _)| k.subject.as_str()).collect();
        let new_versions = rewrapped.iter().map(|(k, _)| version(k.kek_version)).collect::<Result<Vec<i32>>>()?;
        let deks: Vec<&[u8]> = rewrapped.iter().map(|(k, _)| k.wrapped_dek.as_slice()).collect();
        let old_versions = rewrapped.iter().map(|(_, old)| version(*old)).collect::<Result<Vec<i32>>>()?;
        // One statement, so the whole batch is atomic; the old version in the WHERE clause is
        // the compare-and-set that keeps a concurrently erased or rewrapped key as it is.
        execute(
            &conn,
            "UPDATE subject_keys s SET kek_version = u.new_version, wrapped_dek = u.dek
             FROM unnest($2::text[], $3::int4[], $4::bytea[], $5::int4[]) AS u(subject, new_version, dek, old_version)
             WHERE s.collection_id = $1 AND s.subject = u.subject AND s.kek_version = u.old_version",
            &[&collection_id, &subjects, &new_versions, &deks, &old_versions],
        )
        .await
    }
}
