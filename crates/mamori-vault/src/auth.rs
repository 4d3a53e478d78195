//! Accounts, login and sessions — the part of identity the vault core needs so that no
//! endpoint is ever open without a token. The identity issue completes it (lockout, MFA,
//! password policy presets).
//!
//! Measures: 001-20-tech-1-1 and 002-S-9 (identification and authentication), 004-V-2-4 and
//! 002-T-4-b (unique IDs), 004-V-2-3 and 002-T-3-c (hard-to-guess one-time passwords that
//! must be changed), 000-8-access-2 (disabling takes effect at once), 004-V-1-42 (idle
//! sessions end).

use crate::error::{Result, VaultError};
use crate::{Principal, Vault};
use mamori_core::access::{Action, Role};
use mamori_core::audit::Outcome;
use mamori_core::ids::UserId;
use mamori_crypto::{SecretString, SessionToken};
use mamori_store::{SessionRow, UserRow};
use rand::Rng as _;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

/// Sessions are touched at most this often, so that a busy client does not turn every read
/// into a write; idle timeouts are therefore exact to within this.
const TOUCH_EVERY: Duration = Duration::seconds(30);
/// Characters of generated one-time passwords: no look-alikes (0/O, 1/l/I).
const OTP_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
const MIN_PASSWORD_CHARS: usize = 10;

pub struct LoginOutcome {
    pub token: SessionToken,
    pub expires_at: OffsetDateTime,
    pub password_change_required: bool,
}

impl std::fmt::Debug for LoginOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginOutcome").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct NewUser {
    pub login: String,
    pub display_name: String,
    pub role: Role,
    /// `None`: a one-time password is generated and returned.
    pub password: Option<SecretString>,
    /// Whether the first login must change the password. Always true for accounts created
    /// through the API; the demo turns it off for its throwaway users.
    pub must_change_password: bool,
}

/// An account as administrators see it (no hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserSummary {
    #[schema(value_type = String, format = Uuid)]
    pub id: UserId,
    pub login: String,
    pub display_name: String,
    #[schema(value_type = String, example = "staff")]
    pub role: Role,
    pub disabled: bool,
    pub must_change_password: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

fn summary(u: UserRow) -> Result<UserSummary> {
    Ok(UserSummary {
        role: u.role.parse().map_err(VaultError::Integrity)?,
        id: u.id,
        login: u.login,
        display_name: u.display_name,
        disabled: u.disabled,
        must_change_password: u.must_change_password,
        created_at: u.created_at,
    })
}

fn valid_login(login: &str) -> bool {
    (3..=64).contains(&login.len())
        && login.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_password_rules(login: &str, password: &SecretString) -> Result<()> {
    let pw = password.expose();
    if pw.chars().count() < MIN_PASSWORD_CHARS {
        return Err(VaultError::Invalid(format!("the password needs at least {MIN_PASSWORD_CHARS} characters")));
    }
    if pw.to_lowercase().contains(&login.to_lowercase()) {
        return Err(VaultError::Invalid("the password must not contain the login ID".into()));
    }
    Ok(())
}

fn one_time_password() -> SecretString {
    let mut rng = rand::rngs::OsRng;
    SecretString::new((0..16).map(|_| OTP_ALPHABET[rng.gen_range(0..OTP_ALPHABET.len())] as char).collect())
}

fn session_ref(hash: &[u8; 32]) -> String {
    crate::audit::hex(&hash[..6])
}

impl Vault {
    async fn hash_password(&self, password: &SecretString) -> Result<String> {
        let _permit = self.hash_permits.acquire().await.map_err(|e| VaultError::Internal(e.to_string()))?;
        let (hasher, password) = (self.hasher.clone(), password.clone());
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(|e| VaultError::Internal(e.to_string()))?
            .map_err(VaultError::from)
    }

    async fn verify_password(&self, password: &SecretString, stored: Option<&str>) -> Result<bool> {
        let _permit = self.hash_permits.acquire().await.map_err(|e| VaultError::Internal(e.to_string()))?;
        let (hasher, password, stored) = (self.hasher.clone(), password.clone(), stored.map(str::to_owned));
        tokio::task::spawn_blocking(move || hasher.verify(&password, stored.as_deref()))
            .await
            .map_err(|e| VaultError::Internal(e.to_string()))
    }

    /// Creates an account. When a signed-in administrator creates an account whose role reads
    /// personal data, the account starts disabled and no password is returned: a privacy
    /// officer activates it ([`Vault::activate_user`]) and receives its one-time password, so
    /// the administrator cannot create themselves a way into the content (two-person rule;
    /// 001-20-tech-2-8). The local operator holding the master-key file can read the data
    /// cryptographically anyway and provisions accounts directly (bootstrap, demo).
    pub async fn create_user(&self, p: &Principal, new: NewUser) -> Result<(UserSummary, Option<SecretString>)> {
        self.authorize(p, Action::UserManage, "user.create", None).await?;
        let needs_activation = p.user_id.is_some() && new.role.reads_content();
        if !valid_login(&new.login) {
            return Err(VaultError::Invalid("login must match [a-z0-9._-]{3,64}".into()));
        }
        if new.display_name.trim().is_empty() || new.display_name.chars().count() > 100 {
            return Err(VaultError::Invalid("display name must have 1 to 100 characters".into()));
        }
        let (password, generated) = match new.password {
            _ if needs_activation => (one_time_password(), None),
            Some(pw) => {
                check_password_rules(&new.login, &pw)?;
                (pw, None)
            }
            None => {
                let pw = one_time_password();
                (pw.clone(), Some(pw))
            }
        };
        let row = UserRow {
            id: UserId::generate(),
            login: new.login,
            display_name: new.display_name.trim().to_owned(),
            role: new.role.to_string(),
            password_hash: self.hash_password(&password).await?,
            must_change_password: new.must_change_password || generated.is_some() || needs_activation,
            disabled: needs_activation,
            created_at: self.clock.now(),
        };
        self.store.create_user(&row).await?;
        let mut e = self.event(p, "user.create", Outcome::Success);
        let pending = if needs_activation { " pending-activation" } else { "" };
        e.reason = Some(format!("user:{} role={}{pending}", row.id, row.role));
        self.audit.record(vec![e]).await?;
        Ok((summary(row)?, generated))
    }

    pub async fn list_users(&self, p: &Principal) -> Result<Vec<UserSummary>> {
        self.authorize(p, Action::UserManage, "user.list", None).await?;
        let users: Vec<UserSummary> = self.store.list_users().await?.into_iter().map(summary).collect::<Result<_>>()?;
        let mut e = self.event(p, "user.list", Outcome::Success);
        e.rows = Some(users.len() as u64);
        self.audit.record(vec![e]).await?;
        Ok(users)
    }

    /// Disabling takes effect on the very next request: sessions are deleted and
    /// [`Vault::authenticate`] re-reads the account every time.
    pub async fn set_user_disabled(&self, p: &Principal, login: &str, disabled: bool) -> Result<()> {
        self.authorize(p, Action::UserManage, "user.disable", None).await?;
        let user = self.store.get_user_by_login(login).await?.ok_or(VaultError::NotFound("user"))?;
        let role: Role = user.role.parse().map_err(VaultError::Integrity)?;
        if !disabled && p.user_id.is_some() && role.reads_content() {
            let mut e = self.event(p, "user.enable", Outcome::Denied);
            e.reason = Some(format!("user:{} reads personal data: needs activation by a privacy officer", user.id));
            self.audit.record(vec![e]).await?;
            return Err(VaultError::Forbidden);
        }
        self.store.set_user_disabled(&user.id, disabled).await?;
        if disabled {
            self.store.delete_user_sessions(&user.id).await?;
        }
        let mut e = self.event(p, if disabled { "user.disable" } else { "user.enable" }, Outcome::Success);
        e.reason = Some(format!("user:{}", user.id));
        self.audit.record(vec![e]).await?;
        Ok(())
    }

    /// Activates a disabled account and issues it a fresh one-time password, returned to the
    /// activator only (the creator's knowledge of any earlier password is worthless).
    pub async fn activate_user(&self, p: &Principal, login: &str) -> Result<SecretString> {
        self.authorize(p, Action::UserActivate, "user.activate", None).await?;
        let user = self.store.get_user_by_login(login).await?.ok_or(VaultError::NotFound("user"))?;
        let role: Role = user.role.parse().map_err(VaultError::Integrity)?;
        // Only a disabled account that reads content: activating an active account (or an
        // administrator) would hand the activator someone else's password.
        if Some(user.id) == p.user_id || !user.disabled || !role.reads_content() {
            let mut e = self.event(p, "user.activate", Outcome::Denied);
            e.reason = Some(format!("user:{} is not a disabled account that reads personal data", user.id));
            self.audit.record(vec![e]).await?;
            return Err(VaultError::Forbidden);
        }
        let password = one_time_password();
        self.store.set_password(&user.id, &self.hash_password(&password).await?, true).await?;
        self.store.delete_user_sessions(&user.id).await?;
        self.store.set_user_disabled(&user.id, false).await?;
        let mut e = self.event(p, "user.activate", Outcome::Success);
        e.reason = Some(format!("user:{} role={}", user.id, user.role));
        self.audit.record(vec![e]).await?;
        Ok(password)
    }

    /// Password login. Unknown login, wrong password and disabled account give the same
    /// error after the same Argon2id work (no account enumeration).
    pub async fn login(&self, login: &str, password: &SecretString, source: Option<String>) -> Result<LoginOutcome> {
        let user = if valid_login(login) { self.store.get_user_by_login(login).await? } else { None };
        let verified = self.verify_password(password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        let now = self.clock.now();
        let actor = match &user {
            // An unknown login string is not logged: people type passwords into it by mistake.
            Some(u) => format!("user:{}", u.id),
            None => "anonymous".to_owned(),
        };
        let mut e = mamori_core::audit::AuditEvent::new(now, actor, "auth.login", Outcome::Failure);
        e.source = source.clone();
        let user = match user {
            Some(u) if verified && !u.disabled => u,
            other => {
                e.reason = Some(
                    match other {
                        None => "unknown login",
                        Some(u) if u.disabled => "account disabled",
                        Some(_) => "wrong password",
                    }
                    .into(),
                );
                self.audit.record(vec![e]).await?;
                return Err(VaultError::Unauthenticated);
            }
        };
        let token = SessionToken::generate();
        let hash = token.hash();
        let expires_at = now + self.config.session_lifetime;
        self.store
            .create_session(&SessionRow {
                token_hash: hash,
                user_id: user.id,
                created_at: now,
                expires_at,
                last_seen_at: now,
                password_change_only: user.must_change_password,
            })
            .await?;
        e.outcome = Outcome::Success;
        e.session = Some(session_ref(&hash));
        self.audit.record(vec![e]).await?;
        Ok(LoginOutcome { token, expires_at, password_change_required: user.must_change_password })
    }

    /// Resolves a bearer token to a principal, enforcing expiry, idle timeout and account
    /// state on every call.
    pub async fn authenticate(&self, token: &SessionToken, source: Option<String>) -> Result<Principal> {
        let hash = token.hash();
        let (session, user) = self.store.get_session_with_user(&hash).await?.ok_or(VaultError::Unauthenticated)?;
        let now = self.clock.now();
        if now >= session.expires_at || now - session.last_seen_at >= self.config.session_idle {
            self.store.delete_session(&hash).await?;
            return Err(VaultError::Unauthenticated);
        }
        if user.disabled {
            self.store.delete_user_sessions(&user.id).await?;
            return Err(VaultError::Unauthenticated);
        }
        if now - session.last_seen_at >= TOUCH_EVERY {
            self.store.touch_session(&hash, now).await?;
        }
        Ok(Principal {
            user_id: Some(user.id),
            role: user.role.parse().map_err(VaultError::Integrity)?,
            login: user.login,
            session_ref: Some(session_ref(&hash)),
            source,
            password_change_only: session.password_change_only,
        })
    }

    pub async fn logout(&self, p: &Principal, token: &SessionToken) -> Result<()> {
        self.store.delete_session(&token.hash()).await?;
        self.audit.record(vec![self.event(p, "auth.logout", Outcome::Success)]).await?;
        Ok(())
    }

    /// Changes the caller's own password and ends all of their sessions.
    pub async fn change_password(&self, p: &Principal, current: &SecretString, new: &SecretString) -> Result<()> {
        let id = p.user_id.ok_or(VaultError::Forbidden)?;
        let user = self.store.get_user(&id).await?.ok_or(VaultError::Unauthenticated)?;
        if !self.verify_password(current, Some(&user.password_hash)).await? {
            let mut e = self.event(p, "auth.password_change", Outcome::Failure);
            e.reason = Some("wrong current password".into());
            self.audit.record(vec![e]).await?;
            return Err(VaultError::Unauthenticated);
        }
        check_password_rules(&user.login, new)?;
        if self.verify_password(new, Some(&user.password_hash)).await? {
            return Err(VaultError::Invalid("the new password must differ from the current one".into()));
        }
        self.store.set_password(&id, &self.hash_password(new).await?, false).await?;
        self.store.delete_user_sessions(&id).await?;
        self.audit.record(vec![self.event(p, "auth.password_change", Outcome::Success)]).await?;
        Ok(())
    }
}
