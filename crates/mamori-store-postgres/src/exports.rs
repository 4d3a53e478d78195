//! Take-out state on PostgreSQL: export requests and the take-out ledger. Logical twin of
//! the SQLite backend's module of the same name.

use crate::PostgresStore;
use crate::db::{execute, get, get_time, get_u32, get_u64, query, query_opt, stored_count};
use crate::error::pg;
use deadpool_postgres::GenericClient;
use mamori_core::ids::UserId;
use mamori_store::{
    ExportChange, ExportRow, ExportStatus, HeldShare, LedgerRow, Result, ShareState, StoreError, from_micros, to_micros,
};
use time::OffsetDateTime;
use tokio_postgres::Row;

const EXPORT_COLUMNS: &str = "id, user_id, requested_by, requested_at, collection, spec, rows, protection, status, \
     decided_by, decided_at, download_until, downloads_allowed, downloads_used, due_at, secret";
const LEDGER_COLUMNS: &str = "seq, export_id, kind, at, actor, user_id, rows, detail";
const SHARE_COLUMNS: &str = "export_id, share_index, custodian_id, custodian, held_at, state, ended_at";

fn time_at(r: &Row, i: usize) -> Result<Option<OffsetDateTime>> {
    Ok(get::<Option<i64>>(r, i)?.map(from_micros))
}

fn export_row(r: &Row) -> Result<ExportRow> {
    Ok(ExportRow {
        id: get(r, 0)?,
        user_id: UserId::from_uuid(get(r, 1)?),
        requested_by: get(r, 2)?,
        requested_at: get_time(r, 3)?,
        collection: get(r, 4)?,
        spec: get(r, 5)?,
        rows: get_u64(r, 6, "export rows")?,
        protection: get(r, 7)?,
        status: ExportStatus::parse(get(r, 8)?)?,
        decided_by: get(r, 9)?,
        decided_at: time_at(r, 10)?,
        download_until: time_at(r, 11)?,
        downloads_allowed: get_u32(r, 12, "downloads allowed")?,
        downloads_used: get_u32(r, 13, "downloads used")?,
        due_at: get_time(r, 14)?,
        secret: get(r, 15)?,
    })
}

fn ledger_row(r: &Row) -> Result<LedgerRow> {
    Ok(LedgerRow {
        seq: get_u64(r, 0, "ledger seq")?,
        export_id: get(r, 1)?,
        kind: get(r, 2)?,
        at: get_time(r, 3)?,
        actor: get(r, 4)?,
        user_id: get::<Option<uuid::Uuid>>(r, 5)?.map(UserId::from_uuid),
        rows: get_u64(r, 6, "ledger rows")?,
        detail: get(r, 7)?,
    })
}

fn share_row(r: &Row) -> Result<HeldShare> {
    Ok(HeldShare {
        export_id: get(r, 0)?,
        index: u8::try_from(get::<i32>(r, 1)?).map_err(|_| StoreError::Corrupt("share index".into()))?,
        custodian_id: UserId::from_uuid(get(r, 2)?),
        custodian: get(r, 3)?,
        held_at: get_time(r, 4)?,
        state: ShareState::parse(get(r, 5)?)?,
        ended_at: time_at(r, 6)?,
        sealed: None,
    })
}

pub(crate) async fn insert_ledger<C: GenericClient>(c: &C, e: &LedgerRow) -> Result<()> {
    execute(
        c,
        "INSERT INTO takeout_ledger (export_id, kind, at, actor, user_id, rows, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &e.export_id,
            &e.kind,
            &to_micros(e.at),
            &e.actor,
            &e.user_id.as_ref().map(|u| *u.as_uuid()),
            &stored_count(e.rows)?,
            &e.detail,
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn insert_export_in<C: GenericClient>(tx: &C, x: &ExportRow, entry: &LedgerRow) -> Result<()> {
    execute(
        tx,
        &format!(
            "INSERT INTO export_requests ({EXPORT_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ),
        &[
            &x.id,
            x.user_id.as_uuid(),
            &x.requested_by,
            &to_micros(x.requested_at),
            &x.collection,
            &x.spec,
            &stored_count(x.rows)?,
            &x.protection,
            &x.status.as_str(),
            &x.decided_by,
            &x.decided_at.map(to_micros),
            &x.download_until.map(to_micros),
            &(x.downloads_allowed as i32),
            &(x.downloads_used as i32),
            &to_micros(x.due_at),
            &x.secret,
        ],
    )
    .await?;
    insert_ledger(tx, entry).await
}

/// See [`mamori_store::Store::change_export`].
pub(crate) async fn update_export_in<C: GenericClient>(
    tx: &C,
    id: &str,
    c: &ExportChange,
    entry: &LedgerRow,
) -> Result<bool> {
    let n = execute(
        tx,
        "UPDATE export_requests
         SET status = $3,
             decided_by = CASE WHEN $2 = 'pending' THEN $4 ELSE decided_by END,
             decided_at = CASE WHEN $2 = 'pending' THEN $5 ELSE decided_at END,
             download_until = coalesce($6, download_until),
             secret = coalesce($7, secret)
         WHERE id = $1 AND status = $2",
        &[&id, &c.from.as_str(), &c.to.as_str(), &c.by, &to_micros(c.at), &c.download_until.map(to_micros), &c.secret],
    )
    .await?;
    if n != 1 {
        return Ok(false);
    }
    insert_ledger(tx, entry).await?;
    Ok(true)
}

/// Uses up one download of an approved request whose window is open at `entry.at` (and, with
/// `used_before`, only while exactly that many were used) and adds the ledger line. The
/// number used now, or `None` when nothing changed.
pub(crate) async fn take_download_in<C: GenericClient>(
    tx: &C,
    id: &str,
    entry: &LedgerRow,
    used_before: Option<u32>,
) -> Result<Option<u32>> {
    let used_before = used_before.map(|n| n as i32);
    let Some(row) = query_opt(
        tx,
        "UPDATE export_requests SET downloads_used = downloads_used + 1
         WHERE id = $1 AND status = 'approved' AND downloads_used < downloads_allowed AND download_until > $2
           AND ($3::integer IS NULL OR downloads_used = $3)
         RETURNING downloads_used",
        &[&id, &to_micros(entry.at), &used_before],
    )
    .await?
    else {
        return Ok(None);
    };
    let used = get_u32(&row, 0, "downloads used")?;
    insert_ledger(tx, entry).await?;
    Ok(Some(used))
}

pub(crate) async fn insert_shares_in<C: GenericClient>(
    tx: &C,
    shares: &[HeldShare],
    entries: &[LedgerRow],
) -> Result<()> {
    let sql =
        format!("INSERT INTO export_shares ({SHARE_COLUMNS}, sealed, id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
    for s in shares {
        execute(
            tx,
            &sql,
            &[
                &s.export_id,
                &i32::from(s.index),
                s.custodian_id.as_uuid(),
                &s.custodian,
                &to_micros(s.held_at),
                &s.state.as_str(),
                &s.ended_at.map(to_micros),
                &s.sealed,
                &s.id(),
            ],
        )
        .await?;
    }
    for e in entries {
        insert_ledger(tx, e).await?;
    }
    Ok(())
}

impl PostgresStore {
    pub(crate) async fn insert_export(&self, x: &ExportRow, entry: &LedgerRow) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        insert_export_in(&tx, x, entry).await?;
        tx.commit().await.map_err(pg)
    }

    pub(crate) async fn exports(&self, id: Option<&str>) -> Result<Vec<ExportRow>> {
        let conn = self.conn().await?;
        let sql = format!(
            "SELECT {EXPORT_COLUMNS} FROM export_requests WHERE $1::text IS NULL OR id = $1
             ORDER BY requested_at DESC, id DESC"
        );
        query(&conn, &sql, &[&id]).await?.iter().map(export_row).collect()
    }

    pub(crate) async fn update_export(&self, id: &str, c: &ExportChange, entry: &LedgerRow) -> Result<bool> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        if !update_export_in(&tx, id, c, entry).await? {
            return Ok(false);
        }
        tx.commit().await.map_err(pg)?;
        Ok(true)
    }

    pub(crate) async fn use_export_download(&self, id: &str, entry: &LedgerRow) -> Result<Option<u32>> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let Some(used) = take_download_in(&tx, id, entry, None).await? else { return Ok(None) };
        tx.commit().await.map_err(pg)?;
        Ok(Some(used))
    }

    pub(crate) async fn insert_shares(&self, shares: &[HeldShare], entries: &[LedgerRow]) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        insert_shares_in(&tx, shares, entries).await?;
        tx.commit().await.map_err(pg)
    }

    pub(crate) async fn take_share(
        &self,
        export_id: &str,
        custodian: &UserId,
        entry: &LedgerRow,
    ) -> Result<Option<HeldShare>> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        // The row lock of UPDATE … RETURNING makes a concurrent second take find nothing held.
        let Some(row) = query_opt(
            &tx,
            &format!(
                "UPDATE export_shares AS s SET state = 'fetched', ended_at = $3, sealed = NULL
                 FROM (SELECT id, sealed FROM export_shares
                       WHERE export_id = $1 AND custodian_id = $2 AND state = 'held'
                         AND EXISTS (SELECT 1 FROM export_requests r WHERE r.id = $1
                                     AND r.status = 'approved' AND r.download_until > $3)
                       FOR UPDATE) AS old
                 WHERE s.id = old.id
                 RETURNING {}, old.sealed",
                SHARE_COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ")
            ),
            &[&export_id, custodian.as_uuid(), &to_micros(entry.at)],
        )
        .await?
        else {
            return Ok(None);
        };
        let mut share = share_row(&row)?;
        share.sealed = Some(get(&row, 7)?);
        insert_ledger(&tx, entry).await?;
        tx.commit().await.map_err(pg)?;
        Ok(Some(share))
    }

    pub(crate) async fn discard_shares(&self, export_id: &str, entry: &LedgerRow) -> Result<u64> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        let n = execute(
            &tx,
            "UPDATE export_shares SET state = 'discarded', ended_at = $2, sealed = NULL
             WHERE export_id = $1 AND state = 'held'",
            &[&export_id, &to_micros(entry.at)],
        )
        .await?;
        if n > 0 {
            insert_ledger(&tx, entry).await?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(n)
    }

    pub(crate) async fn shares(&self, export_id: Option<&str>, custodian: Option<&UserId>) -> Result<Vec<HeldShare>> {
        let conn = self.conn().await?;
        let sql = format!(
            "SELECT {SHARE_COLUMNS} FROM export_shares
             WHERE ($1::text IS NULL OR export_id = $1) AND ($2::uuid IS NULL OR custodian_id = $2)
             ORDER BY export_id, share_index"
        );
        query(&conn, &sql, &[&export_id, &custodian.map(|u| *u.as_uuid())]).await?.iter().map(share_row).collect()
    }

    pub(crate) async fn append_ledger(&self, entry: &LedgerRow) -> Result<()> {
        insert_ledger(&self.conn().await?, entry).await
    }

    pub(crate) async fn ledger(
        &self,
        export_id: Option<&str>,
        since: Option<OffsetDateTime>,
    ) -> Result<Vec<LedgerRow>> {
        let conn = self.conn().await?;
        let sql = format!(
            "SELECT {LEDGER_COLUMNS} FROM takeout_ledger WHERE ($1::text IS NULL OR export_id = $1) AND at >= $2 ORDER BY seq"
        );
        query(&conn, &sql, &[&export_id, &since.map_or(i64::MIN, to_micros)]).await?.iter().map(ledger_row).collect()
    }

    pub(crate) async fn rows_taken_out(&self, user: &UserId, since: OffsetDateTime) -> Result<u64> {
        let conn = self.conn().await?;
        let row = query_opt(
            &conn,
            "SELECT coalesce(sum(rows), 0)::bigint FROM takeout_ledger
             WHERE user_id = $1 AND at >= $2 AND kind IN ('download', 'print', 'copy')",
            &[user.as_uuid(), &to_micros(since)],
        )
        .await?;
        match row {
            Some(r) => get_u64(&r, 0, "rows taken out"),
            None => Ok(0),
        }
    }
}
