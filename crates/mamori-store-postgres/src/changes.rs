//! The steps of an [`AuditedChange`], each inside the caller's transaction: what
//! [`mamori_store::Store::apply_audited`] runs before it appends the events, and what the
//! plain methods of the same names run on their own.

use crate::accounts::{USER_COLUMNS, stored_step};
use crate::db::{execute, query_opt};
use crate::error::pg;
use crate::records::{delete_record_in, insert_record_in, update_record_in};
use crate::{PostgresStore, authz, collections, exports};
use deadpool_postgres::GenericClient;
use mamori_store::{AuditedChange, Result, StoreError, UserRow, to_micros};
use tokio_postgres::types::ToSql;

pub(crate) async fn apply_in<C: GenericClient>(tx: &C, change: &AuditedChange) -> Result<()> {
    use AuditedChange::*;
    match change {
        InsertRecord(r) => insert_record_in(tx, r).await,
        UpdateRecord(r) => update_record_in(tx, r).await,
        DeleteRecord { collection_id, id } => match delete_record_in(tx, *collection_id, id).await? {
            true => Ok(()),
            false => Err(StoreError::NotFound),
        },
        CreateUser(u) => insert_user(tx, u).await,
        UpdateUserProfile { id, profile: p } => {
            account(
                tx,
                "UPDATE users SET display_name = $2, department = $3, title = $4, role = $5, valid_until = $6,
                                  vendor = $7, clearance = $8, training_valid_until = $9, pledge_signed_at = $10,
                                  access_window = $11
                 WHERE id = $1",
                &[
                    id.as_uuid(),
                    &p.display_name,
                    &p.department,
                    &p.title,
                    &p.role,
                    &p.valid_until.map(to_micros),
                    &p.vendor,
                    &p.clearance,
                    &p.training_valid_until.map(to_micros),
                    &p.pledge_signed_at.map(to_micros),
                    &p.access_window,
                ],
            )
            .await
        }
        SetUserDisabled { id, disabled } => {
            account(tx, "UPDATE users SET disabled = $2 WHERE id = $1", &[id.as_uuid(), disabled]).await
        }
        EnableUser { id, at } => {
            let sql = "UPDATE users SET enabled_at = CASE WHEN disabled THEN $2 ELSE enabled_at END, \
                       disabled = false WHERE id = $1";
            account(tx, sql, &[id.as_uuid(), &to_micros(*at)]).await
        }
        MarkUserReviewed { id, by, at } => {
            let sql = "UPDATE users SET reviewed_at = $2, reviewed_by = $3 WHERE id = $1";
            account(tx, sql, &[id.as_uuid(), &to_micros(*at), by]).await
        }
        UnlockUser { id } => {
            account(tx, "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1", &[id.as_uuid()]).await
        }
        SetPassword { id, password_hash, must_change, at } => {
            // The row lock serialises password changes of one account, so that the history
            // gets the hash that is actually replaced and two changes never pick the same
            // `seq`. Each statement below runs after the lock is held and so sees the other
            // change's commit (READ COMMITTED takes a snapshot per statement). NO KEY:
            // sessions being created for the account (whose foreign key takes KEY SHARE) need
            // not wait.
            let locked = query_opt(tx, "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", &[id.as_uuid()]).await?;
            if locked.is_none() {
                return Err(StoreError::NotFound);
            }
            let at = to_micros(*at);
            execute(
                tx,
                "INSERT INTO password_history (user_id, seq, password_hash, replaced_at)
                 SELECT id, (SELECT coalesce(max(seq), 0) + 1 FROM password_history WHERE user_id = $1),
                        password_hash, $2
                 FROM users WHERE id = $1",
                &[id.as_uuid(), &at],
            )
            .await?;
            let sql = "UPDATE users SET password_hash = $2, must_change_password = $3, password_changed_at = $4 WHERE id = $1";
            account(tx, sql, &[id.as_uuid(), password_hash, must_change, &at]).await
        }
        SetTotp { id, wrapped_secret, recovery_hashes, accepted_step } => {
            let step = accepted_step.map(stored_step).transpose()?;
            let sql = "UPDATE users SET totp_secret = $2, totp_last_step = $3 WHERE id = $1";
            account(tx, sql, &[id.as_uuid(), wrapped_secret, &step]).await?;
            execute(tx, "DELETE FROM recovery_codes WHERE user_id = $1", &[id.as_uuid()]).await?;
            if !recovery_hashes.is_empty() {
                let hashes: Vec<&[u8]> = recovery_hashes.iter().map(<[u8; 32]>::as_slice).collect();
                execute(
                    tx,
                    "INSERT INTO recovery_codes (user_id, code_hash) SELECT $1, h FROM unnest($2::bytea[]) AS h",
                    &[id.as_uuid(), &hashes],
                )
                .await?;
            }
            Ok(())
        }
        DeleteUserSessions { id } => {
            execute(tx, "DELETE FROM sessions WHERE user_id = $1", &[id.as_uuid()]).await?;
            Ok(())
        }
        AddPolicyVersion(row) => authz::insert_policy_version_in(tx, row, row.version).await,
        DecidePolicyVersion { version, approve, by, at } => {
            changed(authz::decide_policy_in(tx, *version, *approve, by, *at).await?, change)
        }
        CreateGrant(g) => authz::insert_grant_in(tx, g).await,
        DecideGrant { id, change: c } => changed(authz::update_grant_in(tx, id, c).await?, change),
        CreateCollection(new) => collections::create_collection_in(tx, new).await.map(drop),
        AddKek { collection_id, kek } => collections::add_kek_in(tx, *collection_id, kek).await,
        AddSchemaVersion { collection_id, expected_current, schema_json } => {
            collections::add_schema_in(tx, *collection_id, *expected_current, schema_json).await.map(drop)
        }
        CreateExport { export, entry } => exports::insert_export_in(tx, export, entry).await,
        ChangeExport { id, change: c, entry } => changed(exports::update_export_in(tx, id, c, entry).await?, change),
        AddLedger(entry) => exports::insert_ledger(tx, entry).await,
        HoldExportShares { shares, entries } => exports::insert_shares_in(tx, shares, entries).await,
        MetaIs { key, value } => {
            let stored = query_opt(tx, "SELECT value FROM meta WHERE key = $1 FOR SHARE", &[key]).await?;
            let stored: Option<Vec<u8>> = stored.map(|row| crate::db::get(&row, 0)).transpose()?;
            changed(stored.as_ref() == Some(value), change)
        }
        EraseSubject { subject, certificate, expected } => {
            let counts = crate::records::erase_in(tx, subject, certificate).await?;
            changed(counts == *expected, change)
        }
        TakeExportDownload { id, entry, used_before } => {
            changed(exports::take_download_in(tx, id, entry, Some(*used_before)).await?.is_some(), change)
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

/// One statement about an existing account: `NotFound` when it touched no row.
async fn account<C: GenericClient>(tx: &C, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<()> {
    match execute(tx, sql, params).await? {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

async fn insert_user<C: GenericClient>(tx: &C, u: &UserRow) -> Result<()> {
    let failed_logins =
        i32::try_from(u.failed_logins).map_err(|_| StoreError::Backend("failed login count too large".into()))?;
    execute(
        tx,
        &format!(
            "INSERT INTO users ({USER_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                     $19, $20, $21, $22, $23, $24, $25)"
        ),
        &[
            u.id.as_uuid(),
            &u.login,
            &u.display_name,
            &u.role,
            &u.password_hash,
            &u.must_change_password,
            &u.disabled,
            &to_micros(u.created_at),
            &u.department,
            &u.title,
            &u.valid_until.map(to_micros),
            &u.vendor,
            &failed_logins,
            &u.locked_until.map(to_micros),
            &u.last_login_at.map(to_micros),
            &to_micros(u.password_changed_at),
            &u.totp_secret,
            &u.totp_last_step.map(stored_step).transpose()?,
            &u.clearance,
            &u.training_valid_until.map(to_micros),
            &u.pledge_signed_at.map(to_micros),
            &u.reviewed_at.map(to_micros),
            &u.reviewed_by,
            &u.access_window,
            &u.enabled_at.map(to_micros),
        ],
    )
    .await?;
    Ok(())
}

impl PostgresStore {
    /// One step of a change, in a transaction of its own.
    pub(crate) async fn change(&self, change: AuditedChange) -> Result<()> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg)?;
        apply_in(&tx, &change).await?;
        tx.commit().await.map_err(pg)
    }
}
