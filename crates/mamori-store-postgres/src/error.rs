//! Mapping of driver and pool errors onto [`StoreError`].
//!
//! PostgreSQL puts row values into some error texts (the `detail` of a unique violation is
//! `Key (collection_id, token)=(…) already exists.`, data exceptions quote the offending
//! input). Those texts must not reach logs or API responses, so only the SQLSTATE, the
//! constraint name and — for classes that do not quote values — the primary message are kept.

use mamori_store::StoreError;
use tokio_postgres::error::{DbError, SqlState};

pub(crate) fn pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        return db_error(db);
    }
    if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) {
        return StoreError::Unavailable(format!("postgres connection: {e}"));
    }
    // What remains are protocol and type-conversion errors, whose texts name Rust and SQL
    // types and column indexes but carry no values.
    StoreError::Backend(format!("postgres: {e}"))
}

fn db_error(db: &DbError) -> StoreError {
    let code = db.code();
    let constraint = db.constraint().unwrap_or("?");
    if *code == SqlState::UNIQUE_VIOLATION {
        return StoreError::Conflict(format!("unique constraint {constraint}"));
    }
    if *code == SqlState::FOREIGN_KEY_VIOLATION {
        // E.g. a subject key under a KEK version that does not (or no longer) exist.
        return StoreError::Conflict(format!("foreign key {constraint}"));
    }
    let class = &code.code()[..2];
    let transient = matches!(class, "08" | "53" | "57" | "40")
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::CANNOT_CONNECT_NOW;
    if transient {
        return StoreError::Unavailable(format!("postgres {}: {}", code.code(), db.message()));
    }
    if matches!(class, "22" | "23") {
        // Data exceptions and constraint violations quote the offending value in the message.
        return StoreError::Backend(format!("postgres {} (constraint {constraint})", code.code()));
    }
    StoreError::Backend(format!("postgres {}: {}", code.code(), db.message()))
}

pub(crate) fn pool(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => match pg(e) {
            // Whatever failed while opening a connection, the operation did not happen.
            StoreError::Backend(m) => StoreError::Unavailable(m),
            other => other,
        },
        other => StoreError::Unavailable(format!("connection pool: {other}")),
    }
}

/// A stored integer that does not fit the Rust type: the row is not what this version wrote.
pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} out of range"))
}
