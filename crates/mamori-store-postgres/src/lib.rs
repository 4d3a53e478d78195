//! PostgreSQL backend of the mamori storage interface ([`mamori_store::Store`]).
//!
//! One pool of connections (deadpool), schema managed by the embedded SQL migrations in
//! `migrations/`. Concurrency rules live in the database: unique values through a partial
//! unique index, the audit chain through a table lock, migrations through an advisory lock,
//! so that several server processes may share one database.

mod accounts;
mod audit;
mod authz;
mod changes;
mod collections;
mod copy;
mod db;
mod error;
mod exports;
mod import;
mod master;
mod migrate;
mod notify;
mod records;
mod store;

use crate::error::pg;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use mamori_store::{Result, StoreError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How [`PostgresStore::connect_with`] sets up the pool.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Every connection uses `search_path = <schema>`; the schema is created if missing.
    pub schema: Option<String>,
    /// Maximum number of pooled connections.
    pub pool_size: usize,
    /// How long an operation waits for a free connection (or for a new one to be opened)
    /// before failing with `StoreError::Unavailable`.
    pub acquire_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self { schema: None, pool_size: 16, acquire_timeout: Duration::from_secs(30) }
    }
}

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// For the change listener's own connection.
    config: tokio_postgres::Config,
    /// The schema the tables live in (`current_schema()`), which change notifications name.
    schema: String,
    listener: Arc<OnceLock<notify::Listener>>,
}

impl std::fmt::Debug for PostgresStore {
    // Not the connection settings: they may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("schema", &self.schema).finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects (URL like `postgres://postgres@127.0.0.1:5432/test`), runs pending
    /// migrations, returns the store.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, &ConnectOptions::default()).await
    }

    /// Same, but every connection uses `search_path = <schema>` (created if missing), so that
    /// each test can have a schema of its own.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self> {
        Self::connect_with(url, &ConnectOptions { schema: Some(schema.to_owned()), ..ConnectOptions::default() }).await
    }

    pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Self> {
        // The parser's messages name the offending option, never its value, so the password
        // in the URL cannot leak through them.
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Backend(format!("invalid database URL: {e}")))?;
        if let Some(schema) = &options.schema {
            check_schema_name(schema)?;
            let search_path = format!("-c search_path={schema}");
            let combined = match config.get_options() {
                Some(existing) if !existing.is_empty() => format!("{existing} {search_path}"),
                _ => search_path,
            };
            config.options(combined);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.acquire_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("mamori");
        }
        let manager = Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            // A connection that died shows up as closed; a full check query on every checkout
            // would add a round trip to every operation.
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(options.acquire_timeout))
            .build()
            .map_err(|e| StoreError::Backend(format!("connection pool: {e}")))?;
        let mut store = Self { pool, config, schema: String::new(), listener: Arc::new(OnceLock::new()) };
        let mut conn = store.conn().await?;
        migrate::run(&mut conn, options.schema.as_deref()).await?;
        let row = conn.query_one("SELECT current_schema()::text", &[]).await.map_err(pg)?;
        store.schema = row.try_get(0).map_err(pg)?;
        drop(conn);
        Ok(store)
    }

    pub(crate) async fn conn(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(error::pool)
    }

    pub(crate) fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<mamori_store::Change> {
        self.listener.get_or_init(|| notify::Listener::start(self.config.clone(), self.schema.clone())).subscribe()
    }

    pub(crate) async fn ping_db(&self) -> Result<()> {
        self.conn().await?.simple_query("SELECT 1").await.map_err(pg)?;
        Ok(())
    }
}

/// The schema name ends up in a connection option and in DDL, where it cannot be a bind
/// parameter; restricting it to a plain identifier keeps both unambiguous.
fn check_schema_name(schema: &str) -> Result<()> {
    let mut chars = schema.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63;
    if ok { Ok(()) } else { Err(StoreError::Backend("schema name must match [a-z_][a-z0-9_]{0,62}".into())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        assert!(check_schema_name("mamori_test_0123abcd").is_ok());
        for bad in ["", "1abc", "Mamori", "a b", "a\"b", "a;b", &"a".repeat(64)] {
            assert!(check_schema_name(bad).is_err(), "{bad}");
        }
    }
}
