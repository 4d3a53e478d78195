//! Two-step login for browsers: the password first, the one-time code on a second page.
//!
//! The first step never stores the password anywhere. When the password is right and the
//! account has a second factor, it answers with a *login ticket*: the account id sealed
//! under the master key (AES-256-GCM) with the source address and issue time in the
//! associated data. The ticket only says "this password was verified for this account from
//! this address a moment ago"; it is good for [`TICKET_LIFETIME`] from the same address, and
//! the second step still runs every account check again (lock, disabled, validity) before it
//! accepts a code. A wrong code counts towards the lockout like any failed login. Because
//! the ticket is sealed with the master key, any instance sharing the data directory or
//! database can finish the login (no sticky sessions).
//!
//! Measures: 001-20-tech-1-1 (identification and authentication of users), 002-T-3-b and
//! 004-V-2-5 (multi-step, two-factor authentication).

use crate::error::{Result, VaultError};
use crate::{LoginOutcome, Vault};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mamori_core::audit::{AuditEvent, Outcome};
use mamori_core::ids::UserId;
use mamori_crypto::SecretString;
use time::Duration;

/// How long the second step may take.
pub const TICKET_LIFETIME: Duration = Duration::minutes(5);

/// The outcome of the first step.
#[derive(Debug)]
pub enum LoginStep {
    /// No second factor needed: the session exists.
    Complete(LoginOutcome),
    /// The password was right; send the ticket back with a one-time code.
    SecondFactor(LoginTicket),
}

/// A sealed "password verified" statement. Its `Debug` shows nothing.
pub struct LoginTicket(String);

impl LoginTicket {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for LoginTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginTicket([REDACTED])")
    }
}

fn ticket_aad(issued_unix: i64, source: Option<&str>) -> Vec<u8> {
    format!("mamori/v1/login-ticket\0{issued_unix}\0{}", source.unwrap_or("")).into_bytes()
}

impl Vault {
    /// First step: checks the password. Accounts that must use a second factor but have
    /// none enrolled (outside trusted networks) still get [`VaultError::MfaRequired`].
    pub async fn begin_login(
        &self,
        login: &str,
        password: &SecretString,
        source: Option<String>,
        device: Option<&str>,
    ) -> Result<LoginStep> {
        match self.login_with_device(login, password, None, source.clone(), device).await {
            Ok(outcome) => Ok(LoginStep::Complete(outcome)),
            // `MfaRequired` comes only after the password and every account check passed.
            Err(VaultError::MfaRequired) => {
                let user = self.store.get_user_by_login(login).await?.ok_or(VaultError::Unauthenticated)?;
                if user.totp_secret.is_none() {
                    return Err(VaultError::MfaRequired);
                }
                let issued = self.clock.now().unix_timestamp();
                let sealed =
                    self.master().seal_secret(user.id.as_uuid().as_bytes(), &ticket_aad(issued, source.as_deref()));
                Ok(LoginStep::SecondFactor(LoginTicket(format!("{issued}.{}", URL_SAFE_NO_PAD.encode(sealed)))))
            }
            Err(e) => Err(e),
        }
    }

    /// Second step: the ticket from [`Vault::begin_login`] and a TOTP or recovery code, from
    /// the same source address.
    pub async fn finish_login(
        &self,
        ticket: &str,
        code: &SecretString,
        source: Option<String>,
        device: Option<&str>,
    ) -> Result<LoginOutcome> {
        let Some(user) = self.open_ticket(ticket, source.as_deref()) else {
            let mut e = AuditEvent::new(self.clock.now(), "anonymous", "auth.login", Outcome::Failure);
            e.source = source;
            e.reason = Some("invalid or expired login ticket".into());
            self.audit.record(vec![e]).await?;
            return Err(VaultError::Unauthenticated);
        };
        let user = self.store.get_user(&user).await?;
        self.complete_login(user, true, Some(code), source, device).await
    }

    fn open_ticket(&self, ticket: &str, source: Option<&str>) -> Option<UserId> {
        let (issued, sealed) = ticket.split_once('.')?;
        let issued: i64 = issued.parse().ok()?;
        let age = self.clock.now().unix_timestamp() - issued;
        if !(0..=TICKET_LIFETIME.whole_seconds()).contains(&age) {
            return None;
        }
        let sealed = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let id = self.master().open_secret(&sealed, &ticket_aad(issued, source)).ok()?;
        let id = uuid::Uuid::from_slice(id.as_ref()).ok()?;
        Some(UserId::from_uuid(id))
    }
}
