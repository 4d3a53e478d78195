//! The master-key rotation: everything wrapped or sealed under the master key is rewritten
//! in one transaction, or nothing is.

use crate::map_err;
use mamori_core::ids::UserId;
use mamori_store::{MasterRewrap, Result, SealedKind, SealedValue, StoreError};
use rusqlite::types::Value;
use rusqlite::{Connection, Transaction, params};

/// The row key of a sealed value as the table stores it: user ids are 16-byte blobs.
fn row_key(kind: SealedKind, id: &str) -> Result<Value> {
    match kind {
        SealedKind::TotpSecret => {
            let user: UserId = id.parse().map_err(|_| StoreError::Backend("sealed value: bad user id".into()))?;
            Ok(Value::Blob(user.as_bytes().to_vec()))
        }
        SealedKind::GrantReason | SealedKind::ExportSpec | SealedKind::ExportSecret | SealedKind::HeldShare => {
            Ok(Value::Text(id.to_owned()))
        }
    }
}

fn row_key_text(kind: SealedKind, key: Value) -> Result<String> {
    match (kind, key) {
        (SealedKind::TotpSecret, Value::Blob(b)) => {
            Ok(UserId::from_slice(&b).map_err(|_| StoreError::Corrupt("user id".into()))?.to_string())
        }
        (_, Value::Text(t)) => Ok(t),
        _ => Err(StoreError::Corrupt(format!("{kind:?} row id"))),
    }
}

pub(crate) fn list_sealed(c: &Connection) -> Result<Vec<SealedValue>> {
    let mut out = Vec::new();
    for kind in SealedKind::ALL {
        let (table, column) = kind.table_column();
        let mut stmt =
            c.prepare(&format!("SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL")).map_err(map_err)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, Value>(0)?, r.get::<_, Vec<u8>>(1)?))).map_err(map_err)?;
        for row in rows {
            let (key, sealed) = row.map_err(map_err)?;
            out.push(SealedValue { kind, id: row_key_text(kind, key)?, sealed });
        }
    }
    Ok(out)
}

fn conflict(what: &str) -> StoreError {
    StoreError::Conflict(format!("{what} during master-key rotation; run it again"))
}

pub(crate) fn rewrap(tx: &Transaction<'_>, rewrap: &MasterRewrap) -> Result<()> {
    for (id, kek) in &rewrap.keks {
        let n = tx
            .execute(
                "UPDATE collection_keks SET wrapped = ?1 WHERE collection_id = ?2 AND version = ?3",
                params![kek.wrapped, id, kek.version],
            )
            .map_err(map_err)?;
        if n != 1 {
            return Err(conflict("a KEK changed"));
        }
    }
    for (id, wrapped) in &rewrap.index_keys {
        tx.execute("UPDATE collections SET wrapped_index_key = ?1 WHERE id = ?2", params![wrapped, id])
            .map_err(map_err)?;
    }
    for (old, new) in &rewrap.sealed {
        let (table, column) = old.kind.table_column();
        // Compare-and-set: a value re-sealed by someone else since it was read would
        // otherwise be overwritten with our copy of its old content.
        let n = tx
            .execute(
                &format!("UPDATE {table} SET {column} = ?1 WHERE id = ?2 AND {column} = ?3"),
                params![new, row_key(old.kind, &old.id)?, old.sealed],
            )
            .map_err(map_err)?;
        if n != 1 {
            return Err(conflict("a sealed value changed"));
        }
    }
    let count = |sql: &str| tx.query_row(sql, [], |r| r.get::<_, i64>(0)).map_err(map_err);
    if count("SELECT count(*) FROM collection_keks")? != rewrap.keks.len() as i64
        || count("SELECT count(*) FROM collections")? != rewrap.index_keys.len() as i64
    {
        return Err(conflict("keys were added"));
    }
    for kind in SealedKind::ALL {
        let (table, column) = kind.table_column();
        let given = rewrap.sealed.iter().filter(|(v, _)| v.kind == kind).count() as i64;
        if count(&format!("SELECT count(*) FROM {table} WHERE {column} IS NOT NULL"))? != given {
            return Err(conflict("sealed values were added"));
        }
    }
    let switched = tx
        .execute(
            "UPDATE meta SET value = ?1 WHERE key = 'key_check' AND value = ?2",
            [&rewrap.key_check, &rewrap.previous_key_check],
        )
        .map_err(map_err)?;
    if switched != 1 {
        return Err(conflict("another master-key rotation finished"));
    }
    Ok(())
}
