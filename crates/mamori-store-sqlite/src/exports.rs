//! Take-out state on SQLite: export requests and the take-out ledger.

use crate::{SqliteStore, map_err};
use mamori_core::ids::UserId;
use mamori_store::*;
use rusqlite::{Row, Transaction, params};
use time::OffsetDateTime;

const EXPORT_COLUMNS: &str = "id, user_id, requested_by, requested_at, collection, spec, rows, protection, status, \
     decided_by, decided_at, download_until, downloads_allowed, downloads_used, due_at, secret";
const LEDGER_COLUMNS: &str = "seq, export_id, kind, at, actor, user_id, rows, detail";

fn corrupt(column: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Blob,
        Box::new(StoreError::Corrupt(what.to_owned())),
    )
}

fn user_id(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<UserId>> {
    r.get::<_, Option<Vec<u8>>>(i)?.map(|b| UserId::from_slice(&b).map_err(|_| corrupt(i, "user id"))).transpose()
}

fn time_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<OffsetDateTime>> {
    Ok(r.get::<_, Option<i64>>(i)?.map(from_micros))
}

fn export_row(r: &Row<'_>) -> rusqlite::Result<ExportRow> {
    let status: String = r.get(8)?;
    Ok(ExportRow {
        id: r.get(0)?,
        user_id: user_id(r, 1)?.ok_or_else(|| corrupt(1, "user id"))?,
        requested_by: r.get(2)?,
        requested_at: from_micros(r.get(3)?),
        collection: r.get(4)?,
        spec: r.get(5)?,
        rows: r.get::<_, i64>(6)? as u64,
        protection: r.get(7)?,
        status: ExportStatus::parse(&status).map_err(|_| corrupt(8, "export status"))?,
        decided_by: r.get(9)?,
        decided_at: time_at(r, 10)?,
        download_until: time_at(r, 11)?,
        downloads_allowed: r.get(12)?,
        downloads_used: r.get(13)?,
        due_at: from_micros(r.get(14)?),
        secret: r.get(15)?,
    })
}

fn ledger_row(r: &Row<'_>) -> rusqlite::Result<LedgerRow> {
    Ok(LedgerRow {
        seq: r.get::<_, i64>(0)? as u64,
        export_id: r.get(1)?,
        kind: r.get(2)?,
        at: from_micros(r.get(3)?),
        actor: r.get(4)?,
        user_id: user_id(r, 5)?,
        rows: r.get::<_, i64>(6)? as u64,
        detail: r.get(7)?,
    })
}

fn insert_ledger(tx: &Transaction<'_>, e: &LedgerRow) -> Result<()> {
    tx.execute(
        "INSERT INTO takeout_ledger (export_id, kind, at, actor, user_id, rows, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            e.export_id,
            e.kind,
            to_micros(e.at),
            e.actor,
            e.user_id.as_ref().map(|u| u.as_bytes().to_vec()),
            e.rows as i64,
            e.detail
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn insert_export(&self, x: &ExportRow, entry: &LedgerRow) -> Result<()> {
        let (x, entry) = (x.clone(), entry.clone());
        self.write(move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO export_requests ({EXPORT_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
                ),
                params![
                    x.id,
                    x.user_id.as_bytes(),
                    x.requested_by,
                    to_micros(x.requested_at),
                    x.collection,
                    x.spec,
                    x.rows as i64,
                    x.protection,
                    x.status.as_str(),
                    x.decided_by,
                    x.decided_at.map(to_micros),
                    x.download_until.map(to_micros),
                    x.downloads_allowed,
                    x.downloads_used,
                    to_micros(x.due_at),
                    x.secret,
                ],
            )
            .map_err(map_err)?;
            insert_ledger(tx, &entry)
        })
        .await
    }

    pub(crate) async fn exports(&self, id: Option<String>) -> Result<Vec<ExportRow>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {EXPORT_COLUMNS} FROM export_requests WHERE ?1 IS NULL OR id = ?1
                 ORDER BY requested_at DESC, id DESC"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(map_err)?;
            stmt.query_map([id], export_row).map_err(map_err)?.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    pub(crate) async fn update_export(&self, id: &str, change: &ExportChange, entry: &LedgerRow) -> Result<bool> {
        let (id, c, entry) = (id.to_owned(), change.clone(), entry.clone());
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE export_requests
                     SET status = ?3,
                         decided_by = CASE WHEN ?2 = 'pending' THEN ?4 ELSE decided_by END,
                         decided_at = CASE WHEN ?2 = 'pending' THEN ?5 ELSE decided_at END,
                         download_until = coalesce(?6, download_until),
                         secret = coalesce(?7, secret)
                     WHERE id = ?1 AND status = ?2",
                    params![
                        id,
                        c.from.as_str(),
                        c.to.as_str(),
                        c.by,
                        to_micros(c.at),
                        c.download_until.map(to_micros),
                        c.secret
                    ],
                )
                .map_err(map_err)?;
            if n == 1 {
                insert_ledger(tx, &entry)?;
            }
            Ok(n == 1)
        })
        .await
    }

    pub(crate) async fn use_export_download(&self, id: &str, entry: &LedgerRow) -> Result<Option<u32>> {
        let (id, entry) = (id.to_owned(), entry.clone());
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE export_requests SET downloads_used = downloads_used + 1
                     WHERE id = ?1 AND status = 'approved' AND downloads_used < downloads_allowed
                       AND download_until > ?2",
                    params![id, to_micros(entry.at)],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Ok(None);
            }
            insert_ledger(tx, &entry)?;
            let used: u32 = tx
                .query_row("SELECT downloads_used FROM export_requests WHERE id = ?1", [&id], |r| r.get(0))
                .map_err(map_err)?;
            Ok(Some(used))
        })
        .await
    }

    pub(crate) async fn append_ledger(&self, entry: &LedgerRow) -> Result<()> {
        let entry = entry.clone();
        self.write(move |tx| insert_ledger(tx, &entry)).await
    }

    pub(crate) async fn ledger(
        &self,
        export_id: Option<String>,
        since: Option<OffsetDateTime>,
    ) -> Result<Vec<LedgerRow>> {
        let since = since.map_or(i64::MIN, to_micros);
        self.read(move |c| {
            let sql = format!(
                "SELECT {LEDGER_COLUMNS} FROM takeout_ledger WHERE (?1 IS NULL OR export_id = ?1) AND at >= ?2 ORDER BY seq"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(map_err)?;
            stmt.query_map(params![export_id, since], ledger_row).map_err(map_err)?.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    pub(crate) async fn rows_taken_out(&self, user: &UserId, since: OffsetDateTime) -> Result<u64> {
        let user = *user;
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT coalesce(sum(rows), 0) FROM takeout_ledger
                     WHERE user_id = ?1 AND at >= ?2 AND kind IN ('download', 'print', 'copy')",
                )
                .map_err(map_err)?;
            let n: i64 = stmt.query_row(params![user.as_bytes(), to_micros(since)], |r| r.get(0)).map_err(map_err)?;
            Ok(n as u64)
        })
        .await
    }
}
