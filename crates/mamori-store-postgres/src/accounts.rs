//! User accounts and sessions.

use crate::PostgresStore;
use crate::db::{self, execute, get, get_hash, get_time, get_u32, query, query_opt};
use crate::error::corrupt;
use mamori_core::ids::UserId;
use mamori_store::{Result, SessionRow, StoreError, UserRow, from_micros, to_micros};
use time::OffsetDateTime;
use tokio_postgres::Row;

pub(crate) const USER_COLUMNS: &str = "id, login, display_name, role, password_hash, must_change_password, disabled, created_at, \
     department, title, valid_until, vendor, failed_logins, locked_until, last_login_at, password_changed_at, \
     totp_secret, totp_last_step, clearance, training_valid_until, pledge_signed_at, reviewed_at, reviewed_by, \
     access_window, enabled_at";
const SESSION_COLUMNS: &str = "token_hash, user_id, created_at, expires_at, last_seen_at, password_change_only, mfa";

fn user_row(r: &Row) -> Result<UserRow> {
    Ok(UserRow {
        id: UserId::from_uuid(get(r, 0)?),
        login: get(r, 1)?,
        display_name: get(r, 2)?,
        role: get(r, 3)?,
        password_hash: get(r, 4)?,
        must_change_password: get(r, 5)?,
        disabled: get(r, 6)?,
        created_at: get_time(r, 7)?,
        department: get(r, 8)?,
        title: get(r, 9)?,
        valid_until: get_optional_time(r, 10)?,
        vendor: get(r, 11)?,
        failed_logins: get_u32(r, 12, "failed login count")?,
        locked_until: get_optional_time(r, 13)?,
        last_login_at: get_optional_time(r, 14)?,
        password_changed_at: get_time(r, 15)?,
        totp_secret: get(r, 16)?,
        totp_last_step: get_totp_step(r, 17)?,
        clearance: get(r, 18)?,
        training_valid_until: get_optional_time(r, 19)?,
        pledge_signed_at: get_optional_time(r, 20)?,
        reviewed_at: get_optional_time(r, 21)?,
        reviewed_by: get(r, 22)?,
        access_window: get(r, 23)?,
        enabled_at: get_optional_time(r, 24)?,
    })
}

fn get_optional_time(r: &Row, idx: usize) -> Result<Option<OffsetDateTime>> {
    Ok(get::<Option<i64>>(r, idx)?.map(from_micros))
}

fn get_totp_step(r: &Row, idx: usize) -> Result<Option<u64>> {
    get::<Option<i64>>(r, idx)?.map(|s| u64::try_from(s).map_err(|_| corrupt("TOTP step"))).transpose()
}

/// TOTP steps are `u64` in the interface and `BIGINT` in the schema (a step is 30 seconds,
/// so `i64` lasts far beyond any real clock).
pub(crate) fn stored_step(step: u64) -> Result<i64> {
    i64::try_from(step).map_err(|_| StoreError::Backend("TOTP step out of range".into()))
}

fn session_row(r: &Row) -> Result<SessionRow> {
    Ok(SessionRow {
        token_hash: get_hash(r, 0, "session token hash")?,
        user_id: UserId::from_uuid(get(r, 1)?),
        created_at: get_time(r, 2)?,
        expires_at: get_time(r, 3)?,
        last_seen_at: get_time(r, 4)?,
        password_change_only: get(r, 5)?,
        mfa: get(r, 6)?,
    })
}

impl PostgresStore {
    pub(crate) async fn user_by_id(&self, id: &UserId) -> Result<Option<UserRow>> {
        let conn = self.conn().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        query_opt(&conn, &sql, &[id.as_uuid()]).await?.as_ref().map(user_row).transpose()
    }

    pub(crate) async fn user_by_login(&self, login: &str) -> Result<Option<UserRow>> {
        let conn = self.conn().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE login = $1");
        query_opt(&conn, &sql, &[&login]).await?.as_ref().map(user_row).transpose()
    }

    pub(crate) async fn all_users(&self) -> Result<Vec<UserRow>> {
        let conn = self.conn().await?;
        query(&conn, &format!("SELECT {USER_COLUMNS} FROM users ORDER BY login"), &[])
            .await?
            .iter()
            .map(user_row)
            .collect()
    }

    pub(crate) async fn password_hashes_before(&self, id: &UserId, limit: usize) -> Result<Vec<String>> {
        let conn = self.conn().await?;
        query(
            &conn,
            "SELECT password_hash FROM password_history WHERE user_id = $1 ORDER BY seq DESC LIMIT $2",
            &[id.as_uuid(), &db::limit(limit)],
        )
        .await?
        .iter()
        .map(|r| get(r, 0))
        .collect()
    }

    pub(crate) async fn count_login_failure(
        &self,
        id: &UserId,
        at: OffsetDateTime,
        lock_after: u32,
        lock_until: OffsetDateTime,
    ) -> Result<(u32, Option<OffsetDateTime>)> {
        let conn = self.conn().await?;
        // One statement, so that concurrent failures (from any instance) are all counted: the
        // row lock makes a second UPDATE wait and then re-evaluate on the committed row. All SET
        // expressions see the row as it was before this update, hence the repeated CASE.
        // `locked_until <= $2` is NULL, not true, for an account that is not locked.
        let row = query_opt(
            &conn,
            "UPDATE users SET
                failed_logins = CASE WHEN locked_until <= $2 THEN 1 ELSE failed_logins + 1 END,
                locked_until = CASE
                    WHEN locked_until > $2 THEN locked_until
                    WHEN (CASE WHEN locked_until <= $2 THEN 1 ELSE failed_logins + 1 END) >= $3 THEN $4
                    ELSE NULL END
             WHERE id = $1
             RETURNING failed_logins, locked_until",
            // A threshold beyond INTEGER is one that is never reached.
            &[id.as_uuid(), &to_micros(at), &i32::try_from(lock_after).unwrap_or(i32::MAX), &to_micros(lock_until)],
        )
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok((get_u32(&row, 0, "failed login count")?, get_optional_time(&row, 1)?))
    }

    pub(crate) async fn count_login_success(&self, id: &UserId, at: OffsetDateTime) -> Result<bool> {
        let conn = self.conn().await?;
        let sql = "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = $2 \
                   WHERE id = $1 AND NOT disabled AND (locked_until IS NULL OR locked_until <= $2)";
        Ok(execute(&conn, sql, &[id.as_uuid(), &to_micros(at)]).await? == 1)
    }

    pub(crate) async fn advance_totp(&self, id: &UserId, step: u64) -> Result<bool> {
        let conn = self.conn().await?;
        // Compare-and-set: of two instances accepting the same code at once, one wins.
        let n = execute(
            &conn,
            "UPDATE users SET totp_last_step = $2
             WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
            &[id.as_uuid(), &stored_step(step)?],
        )
        .await?;
        Ok(n == 1)
    }

    pub(crate) async fn unused_recovery_codes(&self, id: &UserId) -> Result<Vec<[u8; 32]>> {
        let conn = self.conn().await?;
        query(&conn, "SELECT code_hash FROM recovery_codes WHERE user_id = $1", &[id.as_uuid()])
            .await?
            .iter()
            .map(|r| get_hash(r, 0, "recovery code hash"))
            .collect()
    }

    pub(crate) async fn consume_recovery_code(&self, id: &UserId, hash: &[u8; 32]) -> Result<bool> {
        let conn = self.conn().await?;
        let sql = "DELETE FROM recovery_codes WHERE user_id = $1 AND code_hash = $2";
        Ok(execute(&conn, sql, &[id.as_uuid(), &hash.as_slice()]).await? == 1)
    }

    pub(crate) async fn sessions_of(&self, id: &UserId) -> Result<Vec<SessionRow>> {
        let conn = self.conn().await?;
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 ORDER BY created_at, token_hash");
        query(&conn, &sql, &[id.as_uuid()]).await?.iter().map(session_row).collect()
    }

    pub(crate) async fn insert_session(&self, s: &SessionRow) -> Result<()> {
        let conn = self.conn().await?;
        execute(
            &conn,
            &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            &[
                &s.token_hash.as_slice(),
                s.user_id.as_uuid(),
                &to_micros(s.created_at),
                &to_micros(s.expires_at),
                &to_micros(s.last_seen_at),
                &s.password_change_only,
                &s.mfa,
            ],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn session_by_hash(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRow>> {
        let conn = self.conn().await?;
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1");
        query_opt(&conn, &sql, &[&token_hash.as_slice()]).await?.as_ref().map(session_row).transpose()
    }

    pub(crate) async fn touch(&self, token_hash: &[u8; 32], at: OffsetDateTime) -> Result<()> {
        let conn = self.conn().await?;
        let sql = "UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1";
        execute(&conn, sql, &[&token_hash.as_slice(), &to_micros(at)]).await?;
        Ok(())
    }

    pub(crate) async fn remove_session(&self, token_hash: &[u8; 32]) -> Result<()> {
        let conn = self.conn().await?;
        execute(&conn, "DELETE FROM sessions WHERE token_hash = $1", &[&token_hash.as_slice()]).await?;
        Ok(())
    }

    pub(crate) async fn remove_user_sessions(&self, user: &UserId) -> Result<u64> {
        let conn = self.conn().await?;
        execute(&conn, "DELETE FROM sessions WHERE user_id = $1", &[user.as_uuid()]).await
    }
}
