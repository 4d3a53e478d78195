//! The master-key rotation: everything wrapped or sealed under the master key is rewritten
//! in one transaction, or nothing is.

use crate::PostgresStore;
use crate::db::{execute, get, query, query_opt, version};
use crate::error::pg;
use mamori_store::{MasterRewrap, Result, SealedKind, SealedValue, StoreError};

fn conflict(what: &str) -> StoreError {
    StoreError::Conflict(format!("{what} during master-key rotation; run it again"))
}

impl PostgresStore {
    pub(crate) async fn master_sealed(&self) -> Result<Vec<SealedValue>> {
        let conn = self.conn().await?;
        let mut out = Vec::new();
        for kind in SealedKind::ALL {
            let (table, column) = kind.table_column();
            // `id::text`: user ids are UUID columns, the others text; rotation is rare and the
            // tables small, so the cast costs nothing that matters.
            let sql = format!("SELECT id::text, {column} FROM {table} WHERE {column} IS NOT NULL");
            for row in query(&conn, &sql, &[]).await? {
                out.push(SealedValue { kind, id: get(&row, 0)?, sealed: get(&row, 1)? });
            }
        }
        Ok(out)
    }

    pub(crate) async fn rewrap_master_keys(&self, rewrap: &MasterRewrap) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        // Nothing under the master key may appear or change while it changes, and the
        // caller's lists must cover every one that exists, or a key or secret would stay
        // under the old master and be lost with it.
        execute(
            &tx,
            "LOCK TABLE collections, collection_keks, users, break_glass_grants, export_requests, export_shares \
             IN EXCLUSIVE MODE",
            &[],
        )
        .await?;
        let existing =
            query_opt(&tx, "SELECT (SELECT count(*) FROM collection_keks), (SELECT count(*) FROM collections)", &[])
                .await?
                .ok_or_else(|| StoreError::Backend("count query returned no row".into()))?;
        let (kek_count, collection_count): (i64, i64) = (get(&existing, 0)?, get(&existing, 1)?);
        if kek_count != rewrap.keks.len() as i64 || collection_count != rewrap.index_keys.len() as i64 {
            return Err(conflict("keys were added"));
        }
        let kek_ids: Vec<i64> = rewrap.keks.iter().map(|(id, _)| *id).collect();
        let kek_versions = rewrap.keks.iter().map(|(_, k)| version(k.version)).collect::<Result<Vec<i32>>>()?;
        let kek_wrapped: Vec<&[u8]> = rewrap.keks.iter().map(|(_, k)| k.wrapped.as_slice()).collect();
        let rewrapped = execute(
            &tx,
            "UPDATE collection_keks k SET wrapped = u.wrapped
             FROM unnest($1::int8[], $2::int4[], $3::bytea[]) AS u(collection_id, version, wrapped)
             WHERE k.collection_id = u.collection_id AND k.version = u.version",
            &[&kek_ids, &kek_versions, &kek_wrapped],
        )
        .await?;
        // Equal counts are not enough: every listed KEK must still exist (a concurrent KEK
        // rotation may have replaced one by another).
        if rewrapped != rewrap.keks.len() as u64 {
            return Err(conflict("a KEK changed"));
        }
        let index_ids: Vec<i64> = rewrap.index_keys.iter().map(|(id, _)| *id).collect();
        let index_wrapped: Vec<&[u8]> = rewrap.index_keys.iter().map(|(_, k)| k.as_slice()).collect();
        let reindexed = execute(
            &tx,
            "UPDATE collections c SET wrapped_index_key = u.wrapped
             FROM unnest($1::int8[], $2::bytea[]) AS u(id, wrapped) WHERE c.id = u.id",
            &[&index_ids, &index_wrapped],
        )
        .await?;
        if reindexed != rewrap.index_keys.len() as u64 {
            return Err(conflict("a collection changed"));
        }
        for kind in SealedKind::ALL {
            let (table, column) = kind.table_column();
            let mine: Vec<_> = rewrap.sealed.iter().filter(|(v, _)| v.kind == kind).collect();
            let ids: Vec<&str> = mine.iter().map(|(v, _)| v.id.as_str()).collect();
            let old: Vec<&[u8]> = mine.iter().map(|(v, _)| v.sealed.as_slice()).collect();
            let new: Vec<&[u8]> = mine.iter().map(|(_, n)| n.as_slice()).collect();
            // Compare-and-set on every value: one re-sealed by someone else since it was read
            // must not be overwritten with our copy of its old content.
            let updated = execute(
                &tx,
                &format!(
                    "UPDATE {table} t SET {column} = u.new
                     FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS u(id, old, new)
                     WHERE t.id::text = u.id AND t.{column} = u.old"
                ),
                &[&ids, &old, &new],
            )
            .await?;
            let remaining = query_opt(&tx, &format!("SELECT count(*) FROM {table} WHERE {column} IS NOT NULL"), &[])
                .await?
                .ok_or_else(|| StoreError::Backend("count query returned no row".into()))?;
            if updated != mine.len() as u64 || get::<i64>(&remaining, 0)? != mine.len() as i64 {
                return Err(conflict("a sealed value changed or was added"));
            }
        }
        let switched = execute(
            &tx,
            "UPDATE meta SET value = $1 WHERE key = 'key_check' AND value = $2",
            &[&rewrap.key_check, &rewrap.previous_key_check],
        )
        .await?;
        if switched != 1 {
            return Err(conflict("another master-key rotation finished"));
        }
        tx.commit().await.map_err(pg)
    }
}
