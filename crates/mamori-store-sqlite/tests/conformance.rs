//! The shared storage conformance suite, on SQLite (always run).

use mamori_store::Store;
use mamori_store_sqlite::SqliteStore;
use std::sync::Arc;

async fn make() -> Option<Arc<dyn Store>> {
    // Leaked on purpose: the directory must outlive the store, and the test process is short.
    let dir = tempfile::tempdir().unwrap().keep();
    Some(Arc::new(SqliteStore::open(dir.join("mamori.db")).await.unwrap()))
}

mamori_store::conformance_tests!(make());
