//! User accounts and sessions.

use crate::PostgresStore;
use crate::db::{execute, get, get_hash, get_time, query, query_opt};
use mamori_core::ids::UserId;
use mamori_store::{Result, SessionRow, StoreError, UserRow, to_micros};
use time::OffsetDateTime;
use tokio_postgres::Row;

const USER_COLUMNS: &str = "id, login, display_name, role, password_hash, must_change_password, disabled, created_at";
const SESSION_COLUMNS: &str = "token_hash, user_id, created_at, expires_at, last_seen_at, password_change_only";

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
    })
}

fn session_row(r: &Row) -> Result<SessionRow> {
    Ok(SessionRow {
        token_hash: get_hash(r, 0, "session token hash")?,
        user_id: UserId::from_uuid(get(r, 1)?),
        created_at: get_time(r, 2)?,
        expires_at: get_time(r, 3)?,
        last_seen_at: get_time(r, 4)?,
        password_change_only: get(r, 5)?,
    })
}

impl PostgresStore {
    pub(crate) async fn insert_user(&self, u: &UserRow) -> Result<()> {
        let conn = self.conn().await?;
        execute(
            &conn,
            &format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
            &[
                u.id.as_uuid(),
                &u.login,
                &u.display_name,
                &u.role,
                &u.password_hash,
                &u.must_change_password,
                &u.disabled,
                &to_micros(u.created_at),
            ],
        )
        .await?;
        Ok(())
    }

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

    pub(crate) async fn update_password(&self, id: &UserId, password_hash: &str, must_change: bool) -> Result<()> {
        let conn = self.conn().await?;
        let sql = "UPDATE users SET password_hash = $2, must_change_password = $3 WHERE id = $1";
        match execute(&conn, sql, &[id.as_uuid(), &password_hash, &must_change]).await? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    pub(crate) async fn update_disabled(&self, id: &UserId, disabled: bool) -> Result<()> {
        let conn = self.conn().await?;
        match execute(&conn, "UPDATE users SET disabled = $2 WHERE id = $1", &[id.as_uuid(), &disabled]).await? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    pub(crate) async fn insert_session(&self, s: &SessionRow) -> Result<()> {
        let conn = self.conn().await?;
        execute(
            &conn,
            &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[
                &s.token_hash.as_slice(),
                s.user_id.as_uuid(),
                &to_micros(s.created_at),
                &to_micros(s.expires_at),
                &to_micros(s.last_seen_at),
                &s.password_change_only,
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
