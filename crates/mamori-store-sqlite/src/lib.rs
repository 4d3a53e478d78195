//! Embedded SQLite backend: one database file in the data directory, WAL journal,
//! `synchronous = FULL` (an acknowledged transaction survives a crash or power loss),
//! `secure_delete` (deleted keys and ciphertexts are overwritten, not left in free pages).
//!
//! One writer connection behind a mutex serialises writes inside this process; other
//! processes (a CLI import beside a running server) wait on SQLite's lock for up to
//! [`BUSY_TIMEOUT`]. Reads use a small pool of connections and run in parallel with writes.
//! SQLite calls run on tokio's blocking pool, except *point reads* (a row or two by primary
//! key or unique index, microseconds with a warm page cache), which run on the calling
//! worker thread when a pooled connection is idle: the hop to the blocking pool and back
//! (two thread wake-ups) cost more than the read, and every authenticated request makes
//! two of them (the session, then the record). A WAL reader does not wait for the writer.

mod audit;
mod authz;
mod changes;
mod copy;
mod exports;
mod import;
mod master;
mod migrate;
mod store;

use mamori_store::{Result, StoreError};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Readers kept open between requests. Enough for the server's concurrency, so that a busy
/// server does not open and close connections (and re-parse the schema) per request.
const MAX_IDLE_READERS: usize = 64;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish()
    }
}

pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            // SQLite's message names the constraint's columns, never the values.
            ErrorCode::ConstraintViolation => StoreError::Conflict("a unique value is already taken".into()),
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                StoreError::Unavailable("the database is locked by another writer".into())
            }
            ErrorCode::DiskFull | ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::SystemIoFailure => {
                StoreError::Unavailable(f.to_string())
            }
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreError::Corrupt(f.to_string()),
            _ => StoreError::Backend(f.to_string()),
        },
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
        _ => StoreError::Backend(e.to_string()),
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(map_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    conn.execute_batch(
        "PRAGMA foreign_keys = ON;
         PRAGMA synchronous = FULL;
         PRAGMA secure_delete = ON;
         PRAGMA cache_size = -65536;",
    )
    .map_err(map_err)?;
    if !read_only {
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(map_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!("could not enable WAL (journal_mode={mode})")));
        }
    }
    Ok(conn)
}

impl Inner {
    /// Returns a reader to the pool, or closes it when the pool is full.
    fn idle_reader(&self, conn: Connection) {
        let mut idle = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        tokio::task::spawn_blocking(move || {
            let mut writer = open_connection(&path, false)?;
            migrate::run(&mut writer)?;
            Ok(Self { inner: Arc::new(Inner { path, writer: Mutex::new(writer), readers: Mutex::new(Vec::new()) }) })
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction on the writer connection.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_err)?;
            let out = f(&tx)?;
            tx.commit().map_err(map_err)?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    /// Runs `f` on a pooled read-only connection.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&inner.path, true)?,
            };
            let out = f(&conn);
            inner.idle_reader(conn);
            out
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    /// Runs a point read on the calling thread with an idle pooled connection, or on the
    /// blocking pool when none is idle (the first reads, or as many concurrent readers as
    /// the pool holds). Only for `f` that read a few rows by key: anything that scans, sorts
    /// or may read many pages goes through [`Self::read`].
    pub(crate) async fn read_point<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let pooled = self.inner.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let Some(conn) = pooled else { return self.read(f).await };
        let out = f(&conn);
        self.inner.idle_reader(conn);
        out
    }

    /// A fresh writable connection of its own, for a long import transaction.
    pub(crate) fn open_writer(&self) -> Result<Connection> {
        open_connection(&self.inner.path, false)
    }
}
