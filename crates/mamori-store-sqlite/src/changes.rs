//! The steps of an [`AuditedChange`], each inside the caller's transaction: what
//! [`mamori_store::Store::apply_audited`] runs before it appends the events, and what the
//! plain methods of the same names run on their own.

use crate::store::{
    USER_COLUMNS, add_kek_tx, add_schema_version_tx, create_collection_tx, delete_record_tx, erase_subject_tx,
    insert_record_tx, update_record_tx,
};
use crate::{authz, exports, map_err};
use mamori_store::{AuditedChange, Result, StoreError, UserRow, to_micros};
use rusqlite::{Connection, OptionalExtension, params};

pub(crate) fn apply(tx: &Connection, change: &AuditedChange) -> Result<()> {
    use AuditedChange::*;
    match change {
        InsertRecord(r) => insert_record_tx(tx, r),
        UpdateRecord(r) => update_record_tx(tx, r),
        DeleteRecord { collection_id, id } => match delete_record_tx(tx, *collection_id, id)? {
            true => Ok(()),
            false => Err(StoreError::NotFound),
        },
        CreateUser(u) => insert_user(tx, u),
        UpdateUserProfile { id, profile: p } => account(
            tx,
            "UPDATE users SET display_name = ?2, department = ?3, title = ?4, role = ?5, valid_until = ?6,
                    vendor = ?7, clearance = ?8, training_valid_until = ?9, pledge_signed_at = ?10,
                    access_window = ?11
             WHERE id = ?1",
            params![
                id.as_bytes(),
                p.display_name,
                p.department,
                p.title,
                p.role,
                p.valid_until.map(to_micros),
                p.vendor,
                p.clearance,
                p.training_valid_until.map(to_micros),
                p.pledge_signed_at.map(to_micros),
                p.access_window,
            ],
        ),
        SetUserDisabled { id, disabled } => {
            account(tx, "UPDATE users SET disabled = ?2 WHERE id = ?1", params![id.as_bytes(), disabled])
        }
        EnableUser { id, at } => account(
            tx,
            "UPDATE users SET enabled_at = CASE WHEN disabled THEN ?2 ELSE enabled_at END, disabled = 0 WHERE id = ?1",
            params![id.as_bytes(), to_micros(*at)],
        ),
        MarkUserReviewed { id, by, at } => account(
            tx,
            "UPDATE users SET reviewed_at = ?2, reviewed_by = ?3 WHERE id = ?1",
            params![id.as_bytes(), to_micros(*at), by],
        ),
        UnlockUser { id } => {
            account(tx, "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?1", params![id.as_bytes()])
        }
        SetPassword { id, password_hash, must_change, at } => {
            // One writer at a time (SQLite), so the history gets the hash actually replaced.
            account(
                tx,
                "INSERT INTO password_history (user_id, seq, password_hash, replaced_at)
                 SELECT id, (SELECT coalesce(max(seq), 0) + 1 FROM password_history WHERE user_id = ?1),
                        password_hash, ?2
                 FROM users WHERE id = ?1",
                params![id.as_bytes(), to_micros(*at)],
            )?;
            account(
                tx,
                "UPDATE users SET password_hash = ?2, must_change_password = ?3, password_changed_at = ?4 WHERE id = ?1",
                params![id.as_bytes(), password_hash, must_change, to_micros(*at)],
            )
        }
        SetTotp { id, wrapped_secret, recovery_hashes, accepted_step } => {
            let step = accepted_step.map(stored_step).transpose()?;
            account(
                tx,
                "UPDATE users SET totp_secret = ?2, totp_last_step = ?3 WHERE id = ?1",
                params![id.as_bytes(), wrapped_secret, step],
            )?;
            tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [id.as_bytes()]).map_err(map_err)?;
            let mut insert = tx
                .prepare_cached("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2)")
                .map_err(map_err)?;
            for h in recovery_hashes {
                insert.execute(params![id.as_bytes(), h]).map_err(map_err)?;
            }
            Ok(())
        }
        DeleteUserSessions { id } => {
            tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id.as_bytes()]).map_err(map_err)?;
            Ok(())
        }
        AddPolicyVersion(row) => authz::insert_policy_version_tx(tx, row, row.version),
        DecidePolicyVersion { version, approve, by, at } => {
            changed(authz::decide_policy_tx(tx, *version, *approve, by, *at)?, change)
        }
        CreateGrant(g) => authz::insert_grant_tx(tx, g),
        DecideGrant { id, change: c } => changed(authz::update_grant_tx(tx, id, c)?, change),
        CreateCollection(new) => create_collection_tx(tx, new).map(drop),
        AddKek { collection_id, kek } => add_kek_tx(tx, *collection_id, kek),
        AddSchemaVersion { collection_id, expected_current, schema_json } => {
            add_schema_version_tx(tx, *collection_id, *expected_current, schema_json).map(drop)
        }
        CreateExport { export, entry } => exports::insert_export_tx(tx, export, entry),
        ChangeExport { id, change: c, entry } => changed(exports::update_export_tx(tx, id, c, entry)?, change),
        AddLedger(entry) => exports::insert_ledger(tx, entry),
        HoldExportShares { shares, entries } => exports::insert_shares_tx(tx, shares, entries),
        MetaIs { key, value } => {
            let stored: Option<Vec<u8>> = tx
                .prepare_cached("SELECT value FROM meta WHERE key = ?1")
                .map_err(map_err)?
                .query_row([key], |r| r.get(0))
                .optional()
                .map_err(map_err)?;
            changed(stored.as_ref() == Some(value), change)
        }
        EraseSubject { subject, certificate, expected } => {
            let counts = erase_subject_tx(tx, subject, certificate)?;
            changed(counts == *expected, change)
        }
        TakeExportDownload { id, entry, used_before } => {
            changed(exports::take_download_tx(tx, id, entry, Some(*used_before))?.is_some(), change)
        }
    }
}

/// A compare-and-set step that found its row no longer as expected.
fn changed(done: bool, change: &AuditedChange) -> Result<()> {
    match done {
        true => Ok(()),
        false => Err(StoreError::Conflict(format!("{change:?}: the state changed meanwhile"))),
    }
}

pub(crate) fn stored_step(step: u64) -> Result<i64> {
    i64::try_from(step).map_err(|_| StoreError::Backend("TOTP step out of range".into()))
}

/// One statement about an existing account: `NotFound` when it touched no row.
fn account(tx: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<()> {
    match tx.prepare_cached(sql).map_err(map_err)?.execute(params).map_err(map_err)? {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

fn insert_user(tx: &Connection, u: &UserRow) -> Result<()> {
    tx.prepare_cached(&format!(
        "INSERT INTO users ({USER_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                 ?19, ?20, ?21, ?22, ?23, ?24, ?25)"
    ))
    .map_err(map_err)?
    .execute(params![
        u.id.as_bytes(),
        u.login,
        u.display_name,
        u.role,
        u.password_hash,
        u.must_change_password,
        u.disabled,
        to_micros(u.created_at),
        u.department,
        u.title,
        u.valid_until.map(to_micros),
        u.vendor,
        u.failed_logins,
        u.locked_until.map(to_micros),
        u.last_login_at.map(to_micros),
        to_micros(u.password_changed_at),
        u.totp_secret,
        u.totp_last_step.map(stored_step).transpose()?,
        u.clearance,
        u.training_valid_until.map(to_micros),
        u.pledge_signed_at.map(to_micros),
        u.reviewed_at.map(to_micros),
        u.reviewed_by,
        u.access_window,
        u.enabled_at.map(to_micros),
    ])
    .map_err(|e| match map_err(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!("login `{}` is taken", u.login)),
        other => other,
    })?;
    Ok(())
}
