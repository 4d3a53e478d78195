//! Authorization state on SQLite: policy versions and break-glass grants.

use crate::{SqliteStore, map_err};
use mamori_core::ids::UserId;
use mamori_store::*;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

const POLICY_COLUMNS: &str =
    "version, base_version, policies, summary, proposed_by, proposed_at, status, decided_by, decided_at";
const GRANT_COLUMNS: &str = "id, user_id, collection, reason, minutes, requested_by, requested_at, status, \
     decided_by, decided_at, expires_at";

fn corrupt(column: usize, e: StoreError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}

fn optional_time(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<OffsetDateTime>> {
    Ok(r.get::<_, Option<i64>>(i)?.map(from_micros))
}

fn policy_row(r: &Row<'_>) -> rusqlite::Result<PolicyVersionRow> {
    let status: String = r.get(6)?;
    Ok(PolicyVersionRow {
        version: r.get::<_, i64>(0)? as u64,
        base_version: r.get::<_, Option<i64>>(1)?.map(|v| v as u64),
        policies: r.get(2)?,
        summary: r.get(3)?,
        proposed_by: r.get(4)?,
        proposed_at: from_micros(r.get(5)?),
        status: Decision::parse(&status).map_err(|e| corrupt(6, e))?,
        decided_by: r.get(7)?,
        decided_at: optional_time(r, 8)?,
    })
}

fn grant_row(r: &Row<'_>) -> rusqlite::Result<GrantRow> {
    let user: Vec<u8> = r.get(1)?;
    let status: String = r.get(7)?;
    Ok(GrantRow {
        id: r.get(0)?,
        user_id: UserId::from_slice(&user).map_err(|_| corrupt(1, StoreError::Corrupt("user id".into())))?,
        collection: r.get(2)?,
        reason: r.get(3)?,
        minutes: r.get(4)?,
        requested_by: r.get(5)?,
        requested_at: from_micros(r.get(6)?),
        status: Decision::parse(&status).map_err(|e| corrupt(7, e))?,
        decided_by: r.get(8)?,
        decided_at: optional_time(r, 9)?,
        expires_at: optional_time(r, 10)?,
    })
}

/// Stores a policy version under `version` (`Conflict` when that number is taken).
pub(crate) fn insert_policy_version_tx(tx: &Connection, row: &PolicyVersionRow, version: u64) -> Result<()> {
    tx.execute(
        &format!("INSERT INTO policy_versions ({POLICY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        params![
            version as i64,
            row.base_version.map(|v| v as i64),
            row.policies,
            row.summary,
            row.proposed_by,
            to_micros(row.proposed_at),
            row.status.as_str(),
            row.decided_by,
            row.decided_at.map(to_micros),
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

/// See [`Store::decide_policy_version`].
pub(crate) fn decide_policy_tx(
    tx: &Connection,
    version: u64,
    approve: bool,
    by: &str,
    at: OffsetDateTime,
) -> Result<bool> {
    let sql = if approve {
        "UPDATE policy_versions SET status = 'approved', decided_by = ?2, decided_at = ?3
         WHERE version = ?1 AND status = 'pending'
           AND base_version IS (SELECT max(version) FROM policy_versions WHERE status = 'approved')"
    } else {
        "UPDATE policy_versions SET status = 'rejected', decided_by = ?2, decided_at = ?3
         WHERE version = ?1 AND status = 'pending'"
    };
    let n = tx.execute(sql, params![version as i64, by, to_micros(at)]).map_err(map_err)?;
    Ok(n == 1)
}

pub(crate) fn insert_grant_tx(tx: &Connection, g: &GrantRow) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO break_glass_grants ({GRANT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ),
        params![
            g.id,
            g.user_id.as_bytes(),
            g.collection,
            g.reason,
            g.minutes,
            g.requested_by,
            to_micros(g.requested_at),
            g.status.as_str(),
            g.decided_by,
            g.decided_at.map(to_micros),
            g.expires_at.map(to_micros),
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

/// See [`Store::decide_grant`].
pub(crate) fn update_grant_tx(tx: &Connection, id: &str, c: &GrantChange) -> Result<bool> {
    let n = tx
        .execute(
            "UPDATE break_glass_grants
             SET status = ?3, decided_by = ?4, decided_at = ?5, expires_at = coalesce(?6, expires_at)
             WHERE id = ?1 AND status = ?2",
            params![id, c.from.as_str(), c.to.as_str(), c.by, to_micros(c.at), c.expires_at.map(to_micros)],
        )
        .map_err(map_err)?;
    Ok(n == 1)
}

impl SqliteStore {
    pub(crate) async fn insert_policy_version(&self, row: &PolicyVersionRow) -> Result<u64> {
        let row = row.clone();
        self.write(move |tx| {
            let next: i64 = tx
                .query_row("SELECT coalesce(max(version), 0) + 1 FROM policy_versions", [], |r| r.get(0))
                .map_err(map_err)?;
            insert_policy_version_tx(tx, &row, next as u64)?;
            Ok(next as u64)
        })
        .await
    }

    pub(crate) async fn policy_versions(&self) -> Result<Vec<PolicyVersionRow>> {
        self.read(|c| {
            let mut stmt = c
                .prepare(&format!("SELECT {POLICY_COLUMNS} FROM policy_versions ORDER BY version"))
                .map_err(map_err)?;
            stmt.query_map([], policy_row).map_err(map_err)?.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    /// Version `version`, or the active (highest approved) one for `None`.
    pub(crate) async fn policy_version(&self, version: Option<u64>) -> Result<Option<PolicyVersionRow>> {
        self.read(move |c| {
            let found = match version {
                Some(v) => c
                    .prepare_cached(&format!("SELECT {POLICY_COLUMNS} FROM policy_versions WHERE version = ?1"))
                    .map_err(map_err)?
                    .query_row([v as i64], policy_row),
                None => c
                    .prepare_cached(&format!(
                        "SELECT {POLICY_COLUMNS} FROM policy_versions WHERE status = 'approved'
                         ORDER BY version DESC LIMIT 1"
                    ))
                    .map_err(map_err)?
                    .query_row([], policy_row),
            };
            found.optional().map_err(map_err)
        })
        .await
    }

    pub(crate) async fn decide_policy(
        &self,
        version: u64,
        approve: bool,
        by: &str,
        at: OffsetDateTime,
    ) -> Result<bool> {
        let by = by.to_owned();
        self.write(move |tx| decide_policy_tx(tx, version, approve, &by, at)).await
    }

    pub(crate) async fn insert_grant(&self, g: &GrantRow) -> Result<()> {
        let g = g.clone();
        self.write(move |tx| insert_grant_tx(tx, &g)).await
    }

    pub(crate) async fn grants(&self, id: Option<String>) -> Result<Vec<GrantRow>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {GRANT_COLUMNS} FROM break_glass_grants WHERE ?1 IS NULL OR id = ?1
                 ORDER BY requested_at DESC, id"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(map_err)?;
            stmt.query_map([id], grant_row).map_err(map_err)?.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    pub(crate) async fn update_grant(&self, id: &str, change: &GrantChange) -> Result<bool> {
        let (id, c) = (id.to_owned(), change.clone());
        self.write(move |tx| update_grant_tx(tx, &id, &c)).await
    }

    pub(crate) async fn live_grants(
        &self,
        user: &UserId,
        collection: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<GrantRow>> {
        let (user, collection) = (*user, collection.to_owned());
        self.read(move |c| {
            let sql = format!(
                "SELECT {GRANT_COLUMNS} FROM break_glass_grants
                 WHERE user_id = ?1 AND collection = ?2 AND status = 'approved' AND expires_at > ?3"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(map_err)?;
            stmt.query_map(params![user.as_bytes(), collection, to_micros(now)], grant_row)
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)
        })
        .await
    }
}
