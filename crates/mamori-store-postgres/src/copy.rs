//! Whole-store copies (`mamori migrate`): tables read in pages, rows written with binary
//! COPY. Copied values come in SQLite's shapes (integers, text, bytes); the declared type of
//! each column says how they are stored here (`BOOLEAN`, `UUID`, `INTEGER`, …).

use crate::PostgresStore;
use crate::db::{count, limit, query};
use crate::error::pg;
use crate::import::PgTransaction;
use async_trait::async_trait;
use bytes::BytesMut;
use deadpool_postgres::GenericClient;
use mamori_store::{CopySession, Result, StoreError, TABLES, Table, Value};
use std::pin::pin;
use tokio_postgres::Row;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

fn placeholder(n: usize) -> String {
    format!("${n}")
}

/// A copied value bound to a parameter or COPY column of type `ty`.
#[derive(Debug)]
struct Param<'a>(&'a Value);

fn mismatch(ty: &Type) -> Box<dyn std::error::Error + Sync + Send> {
    // Names the column type only, never the value.
    format!("a copied value does not fit a column of type {ty}").into()
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Integer(i), &Type::INT4) => i32::try_from(*i).map_err(|_| mismatch(ty))?.to_sql(ty, out),
            (Value::Integer(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Text(s), &Type::TEXT) => s.to_sql(ty, out),
            (Value::Blob(b), &Type::BYTEA) => b.to_sql(ty, out),
            (Value::Blob(b), &Type::UUID) => uuid::Uuid::from_slice(b).map_err(|_| mismatch(ty))?.to_sql(ty, out),
            _ => Err(mismatch(ty)),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::BOOL, Type::INT4, Type::INT8, Type::TEXT, Type::BYTEA, Type::UUID].contains(ty)
    }

    to_sql_checked!();
}

fn as_param<'a>(p: &'a Param<'_>) -> &'a (dyn ToSql + Sync) {
    p
}

fn value(row: &Row, i: usize) -> Result<Value> {
    let ty = row.columns()[i].type_();
    let v = match *ty {
        Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(pg)?.map(|b| Value::Integer(i64::from(b))),
        Type::INT4 => row.try_get::<_, Option<i32>>(i).map_err(pg)?.map(|n| Value::Integer(i64::from(n))),
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(pg)?.map(Value::Integer),
        Type::TEXT => row.try_get::<_, Option<String>>(i).map_err(pg)?.map(Value::Text),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i).map_err(pg)?.map(Value::Blob),
        Type::UUID => row.try_get::<_, Option<uuid::Uuid>>(i).map_err(pg)?.map(|u| Value::Blob(u.as_bytes().to_vec())),
        _ => return Err(StoreError::Backend(format!("column type {ty} cannot be copied"))),
    };
    Ok(v.unwrap_or(Value::Null))
}

async fn count_table<C: GenericClient>(c: &C, table: &Table) -> Result<u64> {
    let row = query(c, &format!("SELECT count(*) FROM {}", table.name), &[]).await?;
    count(row.first().map(|r| r.try_get(0)).transpose().map_err(pg)?.unwrap_or(0))
}

impl PostgresStore {
    pub(crate) async fn table_page(
        &self,
        table: &'static Table,
        after: Option<&[Value]>,
        max: usize,
    ) -> Result<Vec<Vec<Value>>> {
        let conn = self.conn().await?;
        let sql = table.select_sql(after.is_some(), placeholder);
        let keys: Vec<Param<'_>> = after.into_iter().flatten().map(Param).collect();
        let max = limit(max);
        let mut params: Vec<&(dyn ToSql + Sync)> = keys.iter().map(as_param).collect();
        params.push(&max);
        let rows = query(&conn, &sql, &params).await?;
        rows.iter().map(|r| (0..table.columns.len()).map(|i| value(r, i)).collect()).collect()
    }

    pub(crate) async fn table_count(&self, table: &'static Table) -> Result<u64> {
        count_table(&self.conn().await?, table).await
    }

    pub(crate) async fn begin_copy_session(&self) -> Result<PgCopy> {
        let mut tx = PgTransaction::begin(self.conn().await?).await?;
        let client = tx.client()?;
        // EXCLUSIVE lets others read but not write until the copy commits: no instance can
        // fill a table between the emptiness check and the copy, or write into the copy.
        let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        client.batch_execute(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", names.join(", "))).await.map_err(pg)?;
        for table in TABLES {
            if count_table(client, table).await? > 0 {
                return Err(StoreError::Conflict(format!("the target is not empty (table {})", table.name)));
            }
        }
        tx.done();
        Ok(PgCopy { tx })
    }
}

pub(crate) struct PgCopy {
    tx: PgTransaction,
}

#[async_trait]
impl CopySession for PgCopy {
    async fn insert_rows(&mut self, table: &'static Table, rows: Vec<Vec<Value>>) -> Result<()> {
        let client = self.tx.client()?;
        // The column types, as declared in this database, tell how to encode each value.
        let columns = table.columns.join(", ");
        let probe = client.prepare(&format!("SELECT {columns} FROM {} LIMIT 0", table.name)).await.map_err(pg)?;
        let types: Vec<Type> = probe.columns().iter().map(|c| c.type_().clone()).collect();
        // COPY writes identity columns as given, like INSERT … OVERRIDING SYSTEM VALUE.
        let sink =
            client.copy_in(&format!("COPY {} ({columns}) FROM STDIN (FORMAT binary)", table.name)).await.map_err(pg)?;
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
        for row in &rows {
            let params: Vec<Param<'_>> = row.iter().map(Param).collect();
            let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(as_param).collect();
            writer.as_mut().write_raw(params).await.map_err(pg)?;
        }
        writer.finish().await.map_err(pg)?;
        self.tx.done();
        Ok(())
    }

    async fn count_rows(&mut self, table: &'static Table) -> Result<u64> {
        let n = count_table(self.tx.client()?, table).await?;
        self.tx.done();
        Ok(n)
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let client = self.tx.client()?;
        for table in TABLES {
            let Some(column) = table.generated else { continue };
            // The next generated value is one above the largest copied one (or 1 when none).
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{0}', '{column}'), coalesce(max({column}), 0) + 1, false) \
                 FROM {0}",
                table.name
            );
            client.batch_execute(&sql).await.map_err(pg)?;
        }
        self.tx.done();
        self.tx.commit().await
    }
}
