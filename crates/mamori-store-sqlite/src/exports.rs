//! Take-out state on SQLite: export requests and the take-out ledger.

use crate::{SqliteStore, map_err};
use mamori_core::ids::UserId;
use mamori_store::*;
use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

const EXPORT_COLUMNS: &str = "id, user_id, requested_by, requested_at, collection, spec, rows, protection, status, \
     decided_by, decided_at, download_until, downloads_allowed, downloads_used, due_at, secret";
const LEDGER_COLUMNS: &str = "seq, export_id, kind, at, actor, user_id, rows, detail";
const SHARE_COLUMNS: &str = "export_id, share_index, custodian_id, custodian, held_at, state, ended_at";

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

fn share_row(r: &Row<'_>) -> rusqlite::Result<HeldShare> {
    let state: String = r.get(5)?;
    Ok(HeldShare {
        export_id: r.get(0)?,
        index: r.get(1)?,
        custodian_id: user_id(r, 2)?.ok_or_else(|| corrupt(2, "custodian id"))?,
        custodian: r.get(3)?,
        held_at: from_micros(r.get(4)?),
        state: ShareState::parse(&state).map_err(|_| corrupt(5, "share state"))?,
        ended_at: time_at(r, 6)?,
        sealed: None,
    })
}

pub(crate) fn insert_ledger(tx: &Connection, e: &LedgerRow) -> Result<()> {
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

pub(crate) fn insert_export_tx(tx: &Connection, x: &ExportRow, entry: &LedgerRow) -> Result<()> {
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
    insert_ledger(tx, entry)
}

/// See [`mamori_store::Store::change_export`].
pub(crate) fn update_export_tx(tx: &Connection, id: &str, c: &ExportChange, entry: &LedgerRow) -> Result<bool> {
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
        insert_ledger(tx, entry)?;
    }
    Ok(n == 1)
}

/// Uses up one download of an approved request whose window is open at `entry.at` (and, with
/// `used_before`, only while exactly that many were used) and adds the ledger line. The
/// number used now, or `None` when nothing changed.
pub(crate) fn take_download_tx(
    tx: &Connection,
    id: &str,
    entry: &LedgerRow,
    used_before: Option<u32>,
) -> Result<Option<u32>> {
    let n = tx
        .execute(
            "UPDATE export_requests SET downloads_used = downloads_used + 1
             WHERE id = ?1 AND status = 'approved' AND downloads_used < downloads_allowed
               AND download_until > ?2 AND (?3 IS NULL OR downloads_used = ?3)",
            params![id, to_micros(entry.at), used_before],
        )
        .map_err(map_err)?;
    if n == 0 {
        return Ok(None);
    }
    insert_ledger(tx, entry)?;
    let used: u32 = tx
        .query_row("SELECT downloads_used FROM export_requests WHERE id = ?1", [id], |r| r.get(0))
        .map_err(map_err)?;
    Ok(Some(used))
}

pub(crate) fn insert_shares_tx(tx: &Connection, shares: &[HeldShare], entries: &[LedgerRow]) -> Result<()> {
    for s in shares {
        tx.execute(
            &format!(
                "INSERT INTO export_shares ({SHARE_COLUMNS}, sealed, id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            params![
                s.export_id,
                s.index,
                s.custodian_id.as_bytes(),
                s.custodian,
                to_micros(s.held_at),
                s.state.as_str(),
                s.ended_at.map(to_micros),
                s.sealed,
                s.id(),
            ],
        )
        .map_err(map_err)?;
    }
    entries.iter().try_for_each(|e| insert_ledger(tx, e))
}

impl SqliteStore {
    pub(crate) async fn insert_export(&self, x: &ExportRow, entry: &LedgerRow) -> Result<()> {
        let (x, entry) = (x.clone(), entry.clone());
        self.write(move |tx| insert_export_tx(tx, &x, &entry)).await
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
        self.write(move |tx| update_export_tx(tx, &id, &c, &entry)).await
    }

    pub(crate) async fn use_export_download(&self, id: &str, entry: &LedgerRow) -> Result<Option<u32>> {
        let (id, entry) = (id.to_owned(), entry.clone());
        self.write(move |tx| take_download_tx(tx, &id, &entry, None)).await
    }

    pub(crate) async fn insert_shares(&self, shares: &[HeldShare], entries: &[LedgerRow]) -> Result<()> {
        let (shares, entries) = (shares.to_vec(), entries.to_vec());
        self.write(move |tx| insert_shares_tx(tx, &shares, &entries)).await
    }

    pub(crate) async fn take_share(
        &self,
        export_id: &str,
        custodian: &UserId,
        entry: &LedgerRow,
    ) -> Result<Option<HeldShare>> {
        let (export_id, custodian, entry) = (export_id.to_owned(), *custodian, entry.clone());
        self.write(move |tx| {
            let found = tx
                .query_row(
                    &format!(
                        "SELECT {SHARE_COLUMNS}, sealed FROM export_shares
                         WHERE export_id = ?1 AND custodian_id = ?2 AND state = 'held'
                           AND EXISTS (SELECT 1 FROM export_requests r WHERE r.id = ?1
                                       AND r.status = 'approved' AND r.download_until > ?3)"
                    ),
                    params![export_id, custodian.as_bytes(), to_micros(entry.at)],
                    |r| Ok((share_row(r)?, r.get::<_, Vec<u8>>(7)?)),
                )
                .optional()
                .map_err(map_err)?;
            let Some((mut share, sealed)) = found else { return Ok(None) };
            tx.execute(
                "UPDATE export_shares SET state = 'fetched', ended_at = ?2, sealed = NULL WHERE id = ?1",
                params![share.id(), to_micros(entry.at)],
            )
            .map_err(map_err)?;
            insert_ledger(tx, &entry)?;
            share.sealed = Some(sealed);
            Ok(Some(share))
        })
        .await
    }

    pub(crate) async fn discard_shares(&self, export_id: &str, entry: &LedgerRow) -> Result<u64> {
        let (export_id, entry) = (export_id.to_owned(), entry.clone());
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE export_shares SET state = 'discarded', ended_at = ?2, sealed = NULL
                     WHERE export_id = ?1 AND state = 'held'",
                    params![export_id, to_micros(entry.at)],
                )
                .map_err(map_err)?;
            if n > 0 {
                insert_ledger(tx, &entry)?;
            }
            Ok(n as u64)
        })
        .await
    }

    pub(crate) async fn shares(&self, export_id: Option<String>, custodian: Option<UserId>) -> Result<Vec<HeldShare>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {SHARE_COLUMNS} FROM export_shares
                 WHERE (?1 IS NULL OR export_id = ?1) AND (?2 IS NULL OR custodian_id = ?2)
                 ORDER BY export_id, share_index"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(map_err)?;
            stmt.query_map(params![export_id, custodian.map(|u| u.as_bytes().to_vec())], share_row)
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)
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
