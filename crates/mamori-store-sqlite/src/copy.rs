//! Whole-store copies (`mamori migrate`): tables read in pages, rows written as they are.

use crate::import::OwnTransaction;
use crate::{SqliteStore, map_err};
use async_trait::async_trait;
use mamori_store::{CopySession, Result, StoreError, TABLES, Table, Value};
use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, ValueRef};

fn placeholder(n: usize) -> String {
    format!("?{n}")
}

/// Adapts a copied value to rusqlite: the two have the same shapes.
struct Param<'a>(&'a Value);

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn value(v: ValueRef<'_>) -> Result<Value> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Text(t) => {
            Value::Text(String::from_utf8(t.to_vec()).map_err(|_| StoreError::Corrupt("text is not UTF-8".into()))?)
        }
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        // mamori never stores floating point numbers.
        ValueRef::Real(_) => return Err(StoreError::Corrupt("unexpected REAL value".into())),
    })
}

fn count(conn: &Connection, table: &Table) -> Result<u64> {
    let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {}", table.name), [], |r| r.get(0)).map_err(map_err)?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt("row count".into()))
}

impl SqliteStore {
    pub(crate) async fn table_page(
        &self,
        table: &'static Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>> {
        let after = after.map(<[Value]>::to_vec);
        self.read(move |c| {
            let sql = table.select_sql(after.is_some(), placeholder);
            let mut stmt = c.prepare_cached(&sql).map_err(map_err)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut params: Vec<&dyn rusqlite::ToSql> = Vec::new();
            let keys: Vec<Param<'_>> = after.iter().flatten().map(Param).collect();
            params.extend(keys.iter().map(|k| k as &dyn rusqlite::ToSql));
            params.push(&limit);
            let mut rows = stmt.query(params.as_slice()).map_err(map_err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(map_err)? {
                out.push(
                    (0..table.columns.len())
                        .map(|i| value(row.get_ref(i).map_err(map_err)?))
                        .collect::<Result<Vec<_>>>()?,
                );
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn table_count(&self, table: &'static Table) -> Result<u64> {
        self.read(move |c| count(c, table)).await
    }

    pub(crate) async fn begin_copy_session(&self) -> Result<SqliteCopy> {
        let mut tx = OwnTransaction::begin(self.clone(), "").await?;
        // BEGIN IMMEDIATE holds the write lock from here on, so nobody can fill a table
        // between this check and the copy.
        tx.run(|c| {
            for table in TABLES {
                if count(c, table)? > 0 {
                    return Err(StoreError::Conflict(format!("the target is not empty (table {})", table.name)));
                }
            }
            Ok(())
        })
        .await?;
        Ok(SqliteCopy { tx })
    }
}

pub(crate) struct SqliteCopy {
    tx: OwnTransaction,
}

#[async_trait]
impl CopySession for SqliteCopy {
    async fn insert_rows(&mut self, table: &'static Table, rows: Vec<Vec<Value>>) -> Result<()> {
        self.tx
            .run(move |c| {
                // Columns SQLite generates itself (the audit trail's indexed columns) are
                // left to it: it recomputes them from the copied event.
                let generated: Vec<String> = c
                    .prepare_cached("SELECT name FROM pragma_table_xinfo(?1) WHERE hidden IN (2, 3)")
                    .map_err(map_err)?
                    .query_map([table.name], |r| r.get(0))
                    .map_err(map_err)?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(map_err)?;
                let written: Vec<usize> = (0..table.columns.len())
                    .filter(|&i| !generated.iter().any(|g| Some(&g.as_str()) == table.columns.get(i)))
                    .collect();
                let mut stmt = c.prepare_cached(&table.insert_sql(&written, placeholder)).map_err(map_err)?;
                for row in &rows {
                    stmt.execute(rusqlite::params_from_iter(written.iter().filter_map(|&i| row.get(i)).map(Param)))
                        .map_err(map_err)?;
                }
                Ok(())
            })
            .await
    }

    async fn count_rows(&mut self, table: &'static Table) -> Result<u64> {
        self.tx.run(move |c| count(c, table)).await
    }

    /// SQLite's `INTEGER PRIMARY KEY` continues above the largest value by itself.
    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await
    }
}
