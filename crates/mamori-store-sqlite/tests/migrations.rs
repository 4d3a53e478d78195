//! Upgrading a data directory: events written before the audit columns existed are
//! back-filled from their JSON, so queries find them and verification agrees.

use mamori_core::audit::{AuditEvent, GENESIS_HASH, Outcome, chain_hash};
use mamori_store::{AuditColumns, AuditQuery, Store};
use mamori_store_sqlite::SqliteStore;
use time::OffsetDateTime;

fn events() -> Vec<AuditEvent> {
    let at = OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_123_456_789).unwrap();
    let mut read = AuditEvent::new(at, "user:a", "record.read", Outcome::Success);
    read.collection = Some("customers".into());
    read.record = Some("r1".into());
    read.subject = Some("S1".into());
    let jst = at.to_offset(time::macros::offset!(+9));
    vec![AuditEvent::new(at, "cli:root", "collection.create", Outcome::Success), read, {
        AuditEvent::new(jst, "anonymous", "auth.login", Outcome::Failure)
    }]
}

#[tokio::test]
async fn audit_columns_are_back_filled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mamori.db");
    {
        // A database as the first release left it, with four events, the last one garbage.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../migrations/20261123000000_init.sql")).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (20261123000000, 'init', 0);",
        )
        .unwrap();
        let mut prev = GENESIS_HASH;
        for (i, e) in events().iter().enumerate() {
            let seq = i as u64 + 1;
            prev = chain_hash(&prev, seq, &e.canonical_json());
            conn.execute(
                "INSERT INTO audit_events (seq, event_json, hash) VALUES (?1, ?2, ?3)",
                rusqlite::params![seq as i64, e.canonical_json(), prev],
            )
            .unwrap();
        }
        conn.execute("INSERT INTO audit_events (seq, event_json, hash) VALUES (4, 'not json', zeroblob(32))", [])
            .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let rows = store.read_audit(1, 10).await.unwrap();
    assert_eq!(rows.len(), 4);
    for (row, e) in rows.iter().zip(events()) {
        assert!(row.columns.agree_with(&e), "{:?} vs {:?}", row.columns, AuditColumns::of(&e));
        assert_eq!(row.event_json, e.canonical_json(), "the hashed bytes are untouched");
    }
    assert_eq!(rows[3].columns, AuditColumns { outcome: String::new(), ..AuditColumns::default() });
    let q = AuditQuery { subject: Some("S1".into()), limit: 10, ..Default::default() };
    assert_eq!(store.query_audit(&q).await.unwrap().iter().map(|r| r.seq).collect::<Vec<_>>(), [2]);
    // The chain goes on from the old head.
    assert_eq!(store.append_audit(&events()[..1]).await.unwrap(), 5);
}

/// `mamori migrate` copies the tables of `mamori_store::TABLES`; a table or column that a
/// migration adds without listing it there would be left behind silently.
#[tokio::test]
async fn copied_tables_cover_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mamori.db");
    SqliteStore::open(&path).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut schema: Vec<(String, Vec<String>)> = conn
        .prepare(
            "SELECT m.name, group_concat(c.name, ' ') FROM sqlite_master m, pragma_table_info(m.name) c
             WHERE m.type = 'table' AND m.name NOT IN ('schema_migrations') AND m.name NOT LIKE 'sqlite_%'
             GROUP BY m.name",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|row| {
            let (table, columns) = row.unwrap();
            let mut columns: Vec<String> = columns.split(' ').map(str::to_owned).collect();
            columns.sort();
            (table, columns)
        })
        .collect();
    schema.sort();
    assert_eq!(schema, mamori_store::conformance::listed_tables());
}
