//! Authorization state on PostgreSQL: policy versions and break-glass grants. Logical twin
//! of the SQLite backend's module of the same name.

use crate::PostgresStore;
use crate::db::{execute, get, get_time, get_u32, get_u64, query, query_opt};
use crate::error::pg;
use deadpool_postgres::GenericClient;
use mamori_core::ids::UserId;
use mamori_store::{Decision, GrantChange, GrantRow, PolicyVersionRow, Result, StoreError, from_micros, to_micros};
use time::OffsetDateTime;
use tokio_postgres::Row;

const POLICY_COLUMNS: &str =
    "version, base_version, policies, summary, proposed_by, proposed_at, status, decided_by, decided_at";
const GRANT_COLUMNS: &str = "id, user_id, collection, reason, minutes, requested_by, requested_at, status, \
     decided_by, decided_at, expires_at";

fn optional_time(r: &Row, i: usize) -> Result<Option<OffsetDateTime>> {
    Ok(get::<Option<i64>>(r, i)?.map(from_micros))
}

fn policy_row(r: &Row) -> Result<PolicyVersionRow> {
    Ok(PolicyVersionRow {
        version: get_u64(r, 0, "policy version")?,
        base_version: get::<Option<i64>>(r, 1)?.map(|v| v as u64),
        policies: get(r, 2)?,
        summary: get(r, 3)?,
        proposed_by: get(r, 4)?,
        proposed_at: get_time(r, 5)?,
        status: Decision::parse(get(r, 6)?)?,
        decided_by: get(r, 7)?,
        decided_at: optional_time(r, 8)?,
    })
}

fn grant_row(r: &Row) -> Result<GrantRow> {
    Ok(GrantRow {
        id: get(r, 0)?,
        user_id: UserId::from_uuid(get(r, 1)?),
        collection: get(r, 2)?,
        reason: get(r, 3)?,
        minutes: get_u32(r, 4, "grant minutes")?,
        requested_by: get(r, 5)?,
        requested_at: get_time(r, 6)?,
        status: Decision::parse(get(r, 7)?)?,
        decided_by: get(r, 8)?,
        decided_at: optional_time(r, 9)?,
        expires_at: optional_time(r, 10)?,
    })
}

/// Stores a policy version under `version`. Two proposers racing for the same number: the
/// second gets a unique violation, i.e. `Conflict`, and proposes again.
pub(crate) async fn insert_policy_version_in<C: GenericClient>(
    tx: &C,
    row: &PolicyVersionRow,
    version: u64,
) -> Result<()> {
    execute(
        tx,
        &format!("INSERT INTO policy_versions ({POLICY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
        &[
            &(version as i64),
            &row.base_version.map(|v| v as i64),
            &row.policies,
            &row.summary,
            &row.proposed_by,
            &to_micros(row.proposed_at),
            &row.status.as_str(),
            &row.decided_by,
            &row.decided_at.map(to_micros),
        ],
    )
    .await?;
    Ok(())
}

/// See [`mamori_store::Store::decide_policy_version`]. The approval and its "base is still
/// active" check are one statement; two approvals racing serialise on the row lock, and the
/// loser's subquery sees the winner once it re-checks the row.
pub(crate) async fn decide_policy_in<C: GenericClient>(
    c: &C,
    version: u64,
    approve: bool,
    by: &str,
    at: OffsetDateTime,
) -> Result<bool> {
    let sql = if approve {
        "UPDATE policy_versions SET status = 'approved', decided_by = $2, decided_at = $3
         WHERE version = $1 AND status = 'pending'
           AND base_version IS NOT DISTINCT FROM
               (SELECT max(version) FROM policy_versions WHERE status = 'approved')"
    } else {
        "UPDATE policy_versions SET status = 'rejected', decided_by = $2, decided_at = $3
         WHERE version = $1 AND status = 'pending'"
    };
    Ok(execute(c, sql, &[&(version as i64), &by, &to_micros(at)]).await? == 1)
}

pub(crate) async fn insert_grant_in<C: GenericClient>(c: &C, g: &GrantRow) -> Result<()> {
    execute(
        c,
        &format!(
            "INSERT INTO break_glass_grants ({GRANT_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ),
        &[
            &g.id,
            g.user_id.as_uuid(),
            &g.collection,
            &g.reason,
            &(g.minutes as i32),
            &g.requested_by,
            &to_micros(g.requested_at),
            &g.status.as_str(),
            &g.decided_by,
            &g.decided_at.map(to_micros),
            &g.expires_at.map(to_micros),
        ],
    )
    .await?;
    Ok(())
}

/// See [`mamori_store::Store::decide_grant`].
pub(crate) async fn update_grant_in<C: GenericClient>(c: &C, id: &str, g: &GrantChange) -> Result<bool> {
    let n = execute(
        c,
        "UPDATE break_glass_grants
         SET status = $3, decided_by = $4, decided_at = $5, expires_at = coalesce($6, expires_at)
         WHERE id = $1 AND status = $2",
        &[&id, &g.from.as_str(), &g.to.as_str(), &g.by, &to_micros(g.at), &g.expires_at.map(to_micros)],
    )
    .await?;
    Ok(n == 1)
}

impl PostgresStore {
    pub(crate) async fn insert_policy_version(&self, row: &PolicyVersionRow) -> Result<u64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let next: i64 = get(
            &query_opt(&tx, "SELECT coalesce(max(version), 0) + 1 FROM policy_versions", &[])
                .await?
                .ok_or_else(|| StoreError::Backend("no row from max()".into()))?,
            0,
        )?;
        insert_policy_version_in(&tx, row, next as u64).await?;
        tx.commit().await.map_err(pg)?;
        Ok(next as u64)
    }

    pub(crate) async fn policy_versions(&self) -> Result<Vec<PolicyVersionRow>> {
        let conn = self.conn().await?;
        let sql = format!("SELECT {POLICY_COLUMNS} FROM policy_versions ORDER BY version");
        query(&conn, &sql, &[]).await?.iter().map(policy_row).collect()
    }

    /// Version `version`, or the active (highest approved) one for `None`.
    pub(crate) async fn policy_version(&self, version: Option<u64>) -> Result<Option<PolicyVersionRow>> {
        let conn = self.conn().await?;
        let row = match version {
            Some(v) => {
                let sql = format!("SELECT {POLICY_COLUMNS} FROM policy_versions WHERE version = $1");
                query_opt(&conn, &sql, &[&(v as i64)]).await?
            }
            None => {
                let sql = format!(
                    "SELECT {POLICY_COLUMNS} FROM policy_versions WHERE status = 'approved'
                     ORDER BY version DESC LIMIT 1"
                );
                query_opt(&conn, &sql, &[]).await?
            }
        };
        row.as_ref().map(policy_row).transpose()
    }

    pub(crate) async fn decide_policy(
        &self,
        version: u64,
        approve: bool,
        by: &str,
        at: OffsetDateTime,
    ) -> Result<bool> {
        decide_policy_in(&self.conn().await?, version, approve, by, at).await
    }

    pub(crate) async fn insert_grant(&self, g: &GrantRow) -> Result<()> {
        insert_grant_in(&self.conn().await?, g).await
    }

    pub(crate) async fn grants(&self, id: Option<&str>) -> Result<Vec<GrantRow>> {
        let conn = self.conn().await?;
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM break_glass_grants WHERE $1::text IS NULL OR id = $1
             ORDER BY requested_at DESC, id"
        );
        query(&conn, &sql, &[&id]).await?.iter().map(grant_row).collect()
    }

    pub(crate) async fn update_grant(&self, id: &str, c: &GrantChange) -> Result<bool> {
        update_grant_in(&self.conn().await?, id, c).await
    }

    pub(crate) async fn live_grants(
        &self,
        user: &UserId,
        collection: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<GrantRow>> {
        let conn = self.conn().await?;
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM break_glass_grants
             WHERE user_id = $1 AND collection = $2 AND status = 'approved' AND expires_at > $3"
        );
        query(&conn, &sql, &[user.as_uuid(), &collection, &to_micros(now)]).await?.iter().map(grant_row).collect()
    }
}
