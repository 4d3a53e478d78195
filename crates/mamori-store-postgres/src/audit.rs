//! The audit chain on PostgreSQL: appends, reads, filtered queries, checkpoints and pruning.
//! Appends and prunes take the same table lock, so several instances share one gap-free
//! chain and a prune never races an append.

use crate::PostgresStore;
use crate::db::{self, execute, get, get_hash, get_u64, query, query_opt};
use crate::error::pg;
use deadpool_postgres::GenericClient;
use mamori_core::audit::{AuditEvent, CheckpointKind, GENESIS_HASH, chain_hash};
use mamori_store::*;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

const AUDIT_COLUMNS: &str = "seq, event_json, hash, at, actor, action, outcome, collection, record, subject";
const CHECKPOINT_COLUMNS: &str = "seq, kind, head_hash, at, key_id, signature";

fn audit_row(r: &Row) -> Result<AuditRow> {
    Ok(AuditRow {
        seq: get_u64(r, 0, "audit sequence number")?,
        event_json: get(r, 1)?,
        hash: get_hash(r, 2, "audit hash")?,
        columns: AuditColumns {
            at: get(r, 3)?,
            actor: get(r, 4)?,
            action: get(r, 5)?,
            outcome: get(r, 6)?,
            collection: get(r, 7)?,
            record: get(r, 8)?,
            subject: get(r, 9)?,
        },
    })
}

fn checkpoint_row(r: &Row) -> Result<CheckpointRow> {
    Ok(CheckpointRow {
        seq: get_u64(r, 0, "checkpoint sequence number")?,
        kind: get::<String>(r, 1)?.parse().map_err(StoreError::Corrupt)?,
        head_hash: get_hash(r, 2, "checkpoint hash")?,
        at: db::get_time(r, 3)?,
        key_id: get(r, 4)?,
        signature: get(r, 5)?,
    })
}

/// How long an audited change waits for a row or table lock (see `apply_audited_change`).
const CHANGE_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '5s'";

fn seq_param(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| StoreError::Backend("sequence number too large".into()))
}

/// Appends events after the chain's head inside the caller's transaction; returns the last
/// sequence number.
pub(crate) async fn append_in<C: GenericClient>(tx: &C, events: &[AuditEvent]) -> Result<u64> {
    // EXCLUSIVE blocks other appenders (in any process) until commit, but not readers;
    // without it two appenders would read the same head and one would fail on the key.
    // Nothing to append (a change in an `unaudited-benchmark` build) needs no lock.
    if !events.is_empty() {
        tx.batch_execute("LOCK TABLE audit_events IN EXCLUSIVE MODE").await.map_err(pg)?;
    }
    let head = query_opt(tx, "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1", &[]).await?;
    let (mut seq, mut prev) = match &head {
        Some(row) => (get_u64(row, 0, "audit sequence number")?, get_hash(row, 1, "audit hash")?),
        None => (0, GENESIS_HASH),
    };
    if events.is_empty() {
        return Ok(seq);
    }
    let n = events.len();
    let (mut seqs, mut jsons, mut hashes) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut ats, mut actors, mut actions, mut outcomes) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut collections, mut records, mut subjects) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for event in events {
        seq += 1;
        let json = event.canonical_json();
        prev = chain_hash(&prev, seq, &json);
        seqs.push(seq_param(seq).map_err(|_| StoreError::Backend("audit sequence exhausted".into()))?);
        jsons.push(json);
        hashes.push(prev.to_vec());
        let c = AuditColumns::of(event);
        ats.push(c.at);
        actors.push(c.actor);
        actions.push(c.action);
        outcomes.push(c.outcome);
        collections.push(c.collection);
        records.push(c.record);
        subjects.push(c.subject);
    }
    let inserted = execute(
        tx,
        &format!(
            "INSERT INTO audit_events ({AUDIT_COLUMNS})
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::bytea[], $4::int8[], $5::text[], $6::text[],
                                      $7::text[], $8::text[], $9::text[], $10::text[])"
        ),
        &[&seqs, &jsons, &hashes, &ats, &actors, &actions, &outcomes, &collections, &records, &subjects],
    )
    .await?;
    // A trigger that swallowed rows must not let a change commit without its events.
    if inserted != n as u64 {
        return Err(StoreError::Unavailable(format!("{inserted} of {n} audit events were stored")));
    }
    Ok(seq)
}

impl PostgresStore {
    pub(crate) async fn append_audit_events(&self, events: &[AuditEvent]) -> Result<u64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let seq = append_in(&tx, events).await?;
        tx.commit().await.map_err(pg)?;
        Ok(seq)
    }

    /// A change and its audit events in one transaction ([`mamori_store::Store::apply_audited`]).
    /// The audit table is locked last, after the change's own row locks, so that appenders
    /// wait for it only as long as the commit. Changes go through the one audit writer of the
    /// process, so a row lock held elsewhere (an import that has not committed) must not
    /// stall it: a step that waits longer than `CHANGE_LOCK_TIMEOUT` for a lock fails as
    /// `Unavailable` instead, and nothing is committed. The audit table's own lock is then
    /// waited for as every append waits for it (a prune or another instance's commit holds
    /// it briefly): timing out there would fail changes as if the log were down.
    pub(crate) async fn apply_audited_change(&self, change: &[AuditedChange], events: &[AuditEvent]) -> Result<u64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        tx.batch_execute(CHANGE_LOCK_TIMEOUT).await.map_err(pg)?;
        for step in change {
            crate::changes::apply_in(&tx, step).await?;
        }
        tx.batch_execute("SET LOCAL lock_timeout = 0").await.map_err(pg)?;
        let seq = append_in(&tx, events).await.map_err(|e| StoreError::AuditUnavailable(e.to_string()))?;
        tx.commit().await.map_err(pg)?;
        Ok(seq)
    }

    pub(crate) async fn audit_rows(&self, from: u64, limit: usize) -> Result<Vec<AuditRow>> {
        let conn = self.conn().await?;
        let from = seq_param(from).unwrap_or(i64::MAX);
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2");
        query(&conn, &sql, &[&from, &db::limit(limit)]).await?.iter().map(audit_row).collect()
    }

    pub(crate) async fn query_audit_rows(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(seq_param(q.after_seq)?)];
        let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE seq > $1");
        let mut push = |sql: &mut String, clause: &str, value: Box<dyn ToSql + Sync + Send>| {
            args.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(from) = q.from {
            push(&mut sql, " AND at >= ?", Box::new(to_micros(from)));
        }
        if let Some(until) = q.until {
            push(&mut sql, " AND at < ?", Box::new(to_micros(until)));
        }
        for (column, value) in [
            ("actor", &q.actor),
            ("subject", &q.subject),
            ("collection", &q.collection),
            ("record", &q.record),
            ("outcome", &q.outcome),
        ] {
            if let Some(v) = value {
                push(&mut sql, &format!(" AND {column} = ?"), Box::new(v.clone()));
            }
        }
        if !q.actions.is_empty() {
            sql.push_str(" AND (");
            for (i, m) in q.actions.iter().enumerate() {
                if i > 0 {
                    sql.push_str(" OR ");
                }
                match m {
                    ActionMatch::Exact(a) => push(&mut sql, "action COLLATE \"C\" = ?", Box::new(a.clone())),
                    ActionMatch::Prefix(p) => {
                        // A bytewise range, so the index serves it and nothing in the prefix
                        // is a wildcard.
                        let upper = prefix_upper_bound(p)
                            .ok_or_else(|| StoreError::Backend("action prefix must be printable ASCII".into()))?;
                        push(&mut sql, "(action COLLATE \"C\" >= ?", Box::new(p.clone()));
                        push(&mut sql, " AND action COLLATE \"C\" < ?)", Box::new(upper));
                    }
                }
            }
            sql.push(')');
        }
        push(&mut sql, " ORDER BY seq LIMIT ?", Box::new(db::limit(q.limit)));
        let conn = self.conn().await?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
        query(&conn, &sql, &params).await?.iter().map(audit_row).collect()
    }

    pub(crate) async fn insert_checkpoint(&self, cp: &CheckpointRow) -> Result<()> {
        let conn = self.conn().await?;
        execute(
            &conn,
            &format!(
                "INSERT INTO audit_checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (seq, kind) DO NOTHING"
            ),
            &[
                &seq_param(cp.seq)?,
                &cp.kind.as_str(),
                &cp.head_hash.as_slice(),
                &to_micros(cp.at),
                &cp.key_id,
                &cp.signature,
            ],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<CheckpointRow>> {
        let conn = self.conn().await?;
        let from = seq_param(from).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE seq >= $1 ORDER BY seq, kind = 'anchor' LIMIT $2"
        );
        query(&conn, &sql, &[&from, &db::limit(limit)]).await?.iter().map(checkpoint_row).collect()
    }

    pub(crate) async fn last_checkpoint(&self) -> Result<Option<CheckpointRow>> {
        let conn = self.conn().await?;
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE kind = 'checkpoint' ORDER BY seq DESC LIMIT 1"
        );
        query_opt(&conn, &sql, &[]).await?.as_ref().map(checkpoint_row).transpose()
    }

    pub(crate) async fn prune(&self, anchor: &CheckpointRow) -> Result<u64> {
        if anchor.kind != CheckpointKind::Anchor {
            return Err(StoreError::Backend("prune needs an anchor".into()));
        }
        let seq = seq_param(anchor.seq)?;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        tx.batch_execute("LOCK TABLE audit_events IN EXCLUSIVE MODE").await.map_err(pg)?;
        let hash = query_opt(&tx, "SELECT hash FROM audit_events WHERE seq = $1", &[&seq]).await?;
        if hash.as_ref().map(|r| get_hash(r, 0, "audit hash")).transpose()? != Some(anchor.head_hash) {
            return Err(StoreError::Conflict("the anchor does not match the event at its sequence number".into()));
        }
        let later = query_opt(&tx, "SELECT 1 FROM audit_events WHERE seq > $1 LIMIT 1", &[&seq]).await?;
        if later.is_none() {
            return Err(StoreError::Conflict("the head of the audit chain is never pruned".into()));
        }
        let deleted = execute(&tx, "DELETE FROM audit_events WHERE seq <= $1", &[&seq]).await?;
        execute(&tx, "DELETE FROM audit_checkpoints WHERE seq < $1", &[&seq]).await?;
        execute(
            &tx,
            &format!(
                "INSERT INTO audit_checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (seq, kind) DO UPDATE SET head_hash = EXCLUDED.head_hash, at = EXCLUDED.at,
                     key_id = EXCLUDED.key_id, signature = EXCLUDED.signature"
            ),
            &[
                &seq,
                &anchor.kind.as_str(),
                &anchor.head_hash.as_slice(),
                &to_micros(anchor.at),
                &anchor.key_id,
                &anchor.signature,
            ],
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        Ok(deleted)
    }
}
