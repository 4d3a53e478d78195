//! The audit trail on SQLite: appends, reads, filtered queries, checkpoints and pruning.

use crate::{SqliteStore, map_err};
use mamori_core::audit::{AuditEvent, CheckpointKind, GENESIS_HASH, chain_hash};
use mamori_store::*;
use rusqlite::types::{Type, Value};
use rusqlite::{OptionalExtension, Row, params, params_from_iter};

const AUDIT_COLUMNS: &str = "seq, event_json, hash, at, actor, action, outcome, collection, record, subject";
const CHECKPOINT_COLUMNS: &str = "seq, kind, head_hash, at, key_id, signature";

fn corrupt(column: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Blob,
        Box::new(StoreError::Corrupt(format!("{what} is not 32 bytes"))),
    )
}

fn audit_row(r: &Row<'_>) -> rusqlite::Result<AuditRow> {
    audit_row_ref(r).map(|row| row.to_row())
}

/// A row, borrowed from SQLite's own buffers: verification reads every event of the log,
/// and an allocation per column was most of its reading time.
fn audit_row_ref<'r>(r: &'r Row<'_>) -> rusqlite::Result<AuditRowRef<'r>> {
    audit_row_ref_with(r, true)
}

/// A row, with its indexed columns or without (then only its first three are read).
fn audit_row_ref_with<'r>(r: &'r Row<'_>, columns: bool) -> rusqlite::Result<AuditRowRef<'r>> {
    let text = |i: usize| -> rusqlite::Result<Option<&'r str>> {
        r.get_ref(i)?
            .as_str_or_null()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
    };
    let required = |i: usize| text(i)?.ok_or(rusqlite::Error::InvalidColumnType(i, "NULL".into(), Type::Null));
    let hash =
        r.get_ref(2)?.as_blob().map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, Type::Blob, Box::new(e)))?;
    Ok(AuditRowRef {
        seq: r.get::<_, i64>(0)? as u64,
        event_json: required(1)?,
        hash: hash.try_into().map_err(|_| corrupt(2, "audit hash"))?,
        columns: if columns {
            Some(AuditColumnsRef {
                at: r.get(3)?,
                actor: required(4)?,
                action: required(5)?,
                outcome: required(6)?,
                collection: text(7)?,
                record: text(8)?,
                subject: text(9)?,
            })
        } else {
            None
        },
    })
}

fn checkpoint_row(r: &Row<'_>) -> rusqlite::Result<CheckpointRow> {
    let kind: String = r.get(1)?;
    let hash: Vec<u8> = r.get(2)?;
    Ok(CheckpointRow {
        seq: r.get::<_, i64>(0)? as u64,
        kind: kind.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(StoreError::Corrupt(e)))
        })?,
        head_hash: hash.try_into().map_err(|_| corrupt(2, "checkpoint hash"))?,
        at: from_micros(r.get(3)?),
        key_id: r.get(4)?,
        signature: r.get(5)?,
    })
}

/// Events from a sequence number on, in order, up to a limit.
fn read_from_sql() -> String {
    format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE seq >= ?1 ORDER BY seq LIMIT ?2")
}

/// The same, without the indexed columns: SQLite generates them from the event (migration
/// `audit_generated_columns`), and computing them is most of the cost of reading a row.
const READ_CHAIN_SQL: &str = "SELECT seq, event_json, hash FROM audit_events WHERE seq >= ?1 ORDER BY seq LIMIT ?2";

/// Calls `f` with each event from `from` on, borrowed from SQLite's buffers.
fn each_row(
    c: &rusqlite::Connection,
    from: u64,
    limit: usize,
    columns: bool,
    mut f: impl FnMut(AuditRowRef<'_>) -> Result<()>,
) -> Result<()> {
    let from = seq_param(from).unwrap_or(i64::MAX);
    let mut stmt =
        if columns { c.prepare_cached(&read_from_sql()) } else { c.prepare_cached(READ_CHAIN_SQL) }.map_err(map_err)?;
    let mut rows = stmt.query(params![from, limit as i64]).map_err(map_err)?;
    while let Some(row) = rows.next().map_err(map_err)? {
        f(audit_row_ref_with(row, columns).map_err(map_err)?)?;
    }
    Ok(())
}

fn seq_param(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| StoreError::Backend("sequence number too large".into()))
}

impl SqliteStore {
    pub(crate) async fn append_audit_events(&self, events: &[AuditEvent]) -> Result<u64> {
        let events: Vec<String> = events.iter().map(AuditEvent::canonical_json).collect();
        self.write(move |tx| {
            let head: Option<(i64, Vec<u8>)> = tx
                .query_row("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(map_err)?;
            let (mut seq, mut prev) = match head {
                Some((seq, hash)) => {
                    (seq as u64, <[u8; 32]>::try_from(hash).map_err(|_| StoreError::Corrupt("audit hash".into()))?)
                }
                None => (0, GENESIS_HASH),
            };
            // The indexed columns are generated by SQLite from the event.
            let mut stmt = tx
                .prepare_cached("INSERT INTO audit_events (seq, event_json, hash) VALUES (?1, ?2, ?3)")
                .map_err(map_err)?;
            for json in &events {
                seq += 1;
                prev = chain_hash(&prev, seq, json);
                stmt.execute(params![seq as i64, json, prev]).map_err(map_err)?;
            }
            Ok(seq)
        })
        .await
    }

    pub(crate) async fn audit_page(&self, from: u64, limit: usize, columns: bool) -> Result<AuditRowPage> {
        self.read(move |c| {
            // Events are a few hundred bytes of text each.
            let expected = limit.min(4096);
            let mut page = AuditRowPage::with_capacity(expected, expected * 640);
            each_row(c, from, limit, columns, |row| page.push(&row))?;
            Ok(page)
        })
        .await
    }

    pub(crate) async fn scan(&self, from: u64, limit: usize, columns: bool, mut visit: AuditVisitor) -> Result<()> {
        self.read(move |c| {
            each_row(c, from, limit, columns, |row| {
                visit(row);
                Ok(())
            })
        })
        .await
    }

    /// Compares the live definition of `audit_events` with the one the migration created:
    /// someone who rewrites the schema (`PRAGMA writable_schema`) to make the columns
    /// writable gets `false`, and verification compares every event's columns again.
    pub(crate) async fn generated_audit_columns(&self) -> Result<bool> {
        let Some(expected) = crate::migrate::audit_events_definition() else { return Ok(false) };
        self.read(move |c| {
            let live: Option<String> = c
                .query_row("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'audit_events'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(map_err)?;
            Ok(live.as_deref() == Some(expected))
        })
        .await
    }

    pub(crate) async fn audit_rows(&self, from: u64, limit: usize) -> Result<Vec<AuditRow>> {
        let from = seq_param(from).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&read_from_sql()).map_err(map_err)?;
            stmt.query_map(params![from, limit as i64], audit_row)
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)
        })
        .await
    }

    pub(crate) async fn query_audit_rows(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE seq > ?");
        let mut args: Vec<Value> = vec![Value::Integer(seq_param(q.after_seq)?)];
        let mut push = |sql: &mut String, clause: &str, value: Value| {
            sql.push_str(clause);
            args.push(value);
        };
        if let Some(from) = q.from {
            push(&mut sql, " AND at >= ?", Value::Integer(to_micros(from)));
        }
        if let Some(until) = q.until {
            push(&mut sql, " AND at < ?", Value::Integer(to_micros(until)));
        }
        for (column, value) in [
            ("actor", &q.actor),
            ("subject", &q.subject),
            ("collection", &q.collection),
            ("record", &q.record),
            ("outcome", &q.outcome),
        ] {
            if let Some(v) = value {
                push(&mut sql, &format!(" AND {column} = ?"), Value::Text(v.clone()));
            }
        }
        if !q.actions.is_empty() {
            sql.push_str(" AND (");
            for (i, m) in q.actions.iter().enumerate() {
                if i > 0 {
                    sql.push_str(" OR ");
                }
                match m {
                    ActionMatch::Exact(a) => push(&mut sql, "action = ?", Value::Text(a.clone())),
                    ActionMatch::Prefix(p) => {
                        // A byte range (BINARY collation), so the index serves it and nothing
                        // in the prefix is a wildcard.
                        let upper = prefix_upper_bound(p)
                            .ok_or_else(|| StoreError::Backend("action prefix must be printable ASCII".into()))?;
                        push(&mut sql, "(action >= ?", Value::Text(p.clone()));
                        push(&mut sql, " AND action < ?)", Value::Text(upper));
                    }
                }
            }
            sql.push(')');
        }
        push(&mut sql, " ORDER BY seq LIMIT ?", Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&sql).map_err(map_err)?;
            stmt.query_map(params_from_iter(args), audit_row)
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)
        })
        .await
    }

    pub(crate) async fn insert_checkpoint(&self, cp: &CheckpointRow) -> Result<()> {
        let cp = cp.clone();
        self.write(move |tx| {
            tx.execute(
                &format!(
                    "INSERT OR IGNORE INTO audit_checkpoints ({CHECKPOINT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ),
                params![seq_param(cp.seq)?, cp.kind.as_str(), cp.head_hash, to_micros(cp.at), cp.key_id, cp.signature],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<CheckpointRow>> {
        let from = seq_param(from).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE seq >= ?1
                     ORDER BY seq, kind = 'anchor' LIMIT ?2"
                ))
                .map_err(map_err)?;
            stmt.query_map(params![from, limit as i64], checkpoint_row)
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)
        })
        .await
    }

    pub(crate) async fn last_checkpoint(&self) -> Result<Option<CheckpointRow>> {
        self.read(move |c| {
            c.query_row(
                &format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE kind = 'checkpoint'
                     ORDER BY seq DESC LIMIT 1"
                ),
                [],
                checkpoint_row,
            )
            .optional()
            .map_err(map_err)
        })
        .await
    }

    pub(crate) async fn prune(&self, anchor: &CheckpointRow) -> Result<u64> {
        let anchor = anchor.clone();
        if anchor.kind != CheckpointKind::Anchor {
            return Err(StoreError::Backend("prune needs an anchor".into()));
        }
        self.write(move |tx| {
            let seq = seq_param(anchor.seq)?;
            let hash: Option<Vec<u8>> = tx
                .query_row("SELECT hash FROM audit_events WHERE seq = ?1", [seq], |r| r.get(0))
                .optional()
                .map_err(map_err)?;
            if hash.as_deref() != Some(&anchor.head_hash[..]) {
                return Err(StoreError::Conflict("the anchor does not match the event at its sequence number".into()));
            }
            let later: bool = tx
                .query_row("SELECT EXISTS (SELECT 1 FROM audit_events WHERE seq > ?1)", [seq], |r| r.get(0))
                .map_err(map_err)?;
            if !later {
                return Err(StoreError::Conflict("the head of the audit chain is never pruned".into()));
            }
            let deleted = tx.execute("DELETE FROM audit_events WHERE seq <= ?1", [seq]).map_err(map_err)?;
            tx.execute("DELETE FROM audit_checkpoints WHERE seq < ?1", [seq]).map_err(map_err)?;
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO audit_checkpoints ({CHECKPOINT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ),
                params![
                    seq,
                    anchor.kind.as_str(),
                    anchor.head_hash,
                    to_micros(anchor.at),
                    anchor.key_id,
                    anchor.signature
                ],
            )
            .map_err(map_err)?;
            Ok(deleted as u64)
        })
        .await
    }
}
