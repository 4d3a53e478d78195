//! A person's own sessions: which are open, and ending one (for example a session left
//! open on another terminal). 004-V-1-42 asks that unattended terminals not stay usable;
//! 000-8-takeout-6 that nothing stays behind on a terminal.

use crate::auth::session_ref;
use crate::error::{Result, VaultError};
use crate::{Principal, Vault};
use mamori_core::audit::Outcome;
use serde::Serialize;
use time::OffsetDateTime;

/// One open session of the caller. `reference` is the short id that audit events carry
/// (a prefix of the token's hash), never the token.
#[derive(Clone, Debug, Serialize)]
pub struct SessionInfo {
    pub reference: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The login presented a second factor.
    pub mfa: bool,
    /// The session making this call.
    pub current: bool,
}

impl Vault {
    /// The caller's open sessions, newest first.
    pub async fn my_sessions(&self, p: &Principal) -> Result<Vec<SessionInfo>> {
        let id = p.user_id.ok_or(VaultError::Forbidden)?;
        let now = self.clock.now();
        let mut sessions: Vec<SessionInfo> = self
            .store
            .list_user_sessions(&id)
            .await?
            .into_iter()
            // Sessions past their time are deleted on their next use; they are not open.
            .filter(|s| now < s.expires_at && now - s.last_seen_at < self.config.session_idle)
            .map(|s| {
                let reference = session_ref(&s.token_hash);
                SessionInfo {
                    current: p.session_ref.as_deref() == Some(reference.as_str()),
                    reference,
                    created_at: s.created_at,
                    last_seen_at: s.last_seen_at,
                    expires_at: s.expires_at,
                    mfa: s.mfa,
                }
            })
            .collect();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(sessions)
    }

    /// Ends one of the caller's own sessions, found by its reference. Ending the current
    /// one is logging out, which has its own call.
    pub async fn end_my_session(&self, p: &Principal, reference: &str) -> Result<()> {
        let id = p.user_id.ok_or(VaultError::Forbidden)?;
        if p.session_ref.as_deref() == Some(reference) {
            return Err(VaultError::Invalid("this is the current session: log out instead".into()));
        }
        let session = self
            .store
            .list_user_sessions(&id)
            .await?
            .into_iter()
            .find(|s| session_ref(&s.token_hash) == reference)
            .ok_or(VaultError::NotFound("session"))?;
        self.store.delete_session(&session.token_hash).await?;
        let mut e = self.event(p, "auth.session_ended", Outcome::Success);
        // The event's own session is the one that asked; the reason names the one ended.
        e.reason = Some(format!("session {reference} ended by its owner"));
        self.audit.record(vec![e]).await?;
        Ok(())
    }
}
