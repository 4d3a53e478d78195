//! Small helpers shared by the query modules: cached statements, typed column access,
//! conversions between Rust and column types.

use crate::error::{corrupt, pg};
use deadpool_postgres::GenericClient;
use mamori_store::{Result, StoreError, from_micros};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Statements are prepared once per connection (the pool keeps the cache), which saves a
/// round trip on every later call.
pub(crate) async fn query<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(pg)?;
    c.query(&stmt, params).await.map_err(pg)
}

pub(crate) async fn query_opt<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(pg)?;
    c.query_opt(&stmt, params).await.map_err(pg)
}

pub(crate) async fn execute<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<u64> {
    let stmt = c.prepare_cached(sql).await.map_err(pg)?;
    c.execute(&stmt, params).await.map_err(pg)
}

pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T> {
    row.try_get(idx).map_err(pg)
}

pub(crate) fn get_u32(row: &Row, idx: usize, what: &str) -> Result<u32> {
    u32::try_from(get::<i32>(row, idx)?).map_err(|_| corrupt(what))
}

pub(crate) fn get_u64(row: &Row, idx: usize, what: &str) -> Result<u64> {
    u64::try_from(get::<i64>(row, idx)?).map_err(|_| corrupt(what))
}

pub(crate) fn get_time(row: &Row, idx: usize) -> Result<OffsetDateTime> {
    Ok(from_micros(get(row, idx)?))
}

pub(crate) fn get_hash(row: &Row, idx: usize, what: &str) -> Result<[u8; 32]> {
    get::<&[u8]>(row, idx)?.try_into().map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

/// Versions are `u32` in the interface and `INTEGER` in the schema.
pub(crate) fn version(v: u32) -> Result<i32> {
    i32::try_from(v).map_err(|_| StoreError::Backend("version number too large".into()))
}

/// `LIMIT` and `OFFSET` take `BIGINT`; anything beyond it means "no limit" anyway.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn count(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| corrupt("count"))
}

pub(crate) fn stored_count(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::Backend("count too large".into()))
}
