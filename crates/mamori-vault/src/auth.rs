//! Accounts, login and sessions: identification and strong authentication of every person who
//! touches personal data, and loss of access the moment they should lose it.
//!
//! Measures: 001-20-tech-1-1 and 002-S-9 (identification and authentication), 004-V-2-4 and
//! 002-T-4-b (unique IDs), 004-V-2-3 and 002-T-3-c (hard-to-guess one-time passwords that
//! must be changed), 000-8-access-2 (disabling takes effect at once), 004-V-1-42 (idle
//! sessions end), 001-20-tech-1-5 (lockout after repeated failures), 004-V-2-5, 002-T-5-b and 002-T-3-b (multi-factor
//! for privileged and remote access), 000-8-3-5 and 001-20-tech-1-6 (roles that may log in
//! only from a registered device, proven by a client certificate the server verified).
//!
//! Choices where the issue is silent, written down here:
//! - A login beyond the concurrent-session limit ends the user's *oldest* session (and audits
//!   it) rather than refusing: someone who closed a browser is not locked out for hours, and
//!   a shared account still cannot stay logged in twice.
//! - An account that must use MFA but has not enrolled gets, from a trusted network only, a
//!   setup session that can do nothing but change the password and enrol; from elsewhere it
//!   is refused.
//! - Sources that are not IP addresses (`cli`, `demo`: the local process) count as trusted.
//! - A failure while locked is not counted again and does not extend the lock; the first
//!   failure after a lock expired starts a new count.
//! - A role that needs a registered device, logging in without one, gets the wrong-password
//!   answer (after the right password: nothing is counted towards the lock). The local
//!   process (a source that is not an IP address) runs on the server itself and needs none.

use crate::access_windows::source_ip;
use crate::error::{Result, VaultError};
use crate::{Principal, Vault};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ipnet::IpNet;
use mamori_core::access::{Action, Role};
use mamori_core::access_window::AccessWindow;
use mamori_core::audit::{AuditEvent, Outcome};
use mamori_core::ids::UserId;
use mamori_core::password_policy::{PasswordContext, PasswordPolicy, PasswordRejection, PasswordViolation};
use mamori_core::schema::Tier;
use mamori_crypto::{RecoveryCodes, SecretString, SessionToken, TotpSecret};
use mamori_store::{AuditedChange, SessionRow, StoreError, UserProfile, UserRow};
use rand::Rng as _;
use serde::Serialize;
use time::{Date, Duration, OffsetDateTime};

/// Sessions are touched at most this often, so that a busy client does not turn every read
/// into a write; idle timeouts are therefore exact to within this.
const TOUCH_EVERY: Duration = Duration::seconds(30);
/// Characters of generated one-time passwords: no look-alikes (0/O, 1/l/I).
const OTP_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
/// How long a started TOTP enrolment may wait for its confirming code.
const ENROLMENT_WINDOW: Duration = Duration::minutes(10);
/// "Locked until an administrator unlocks it".
const LOCKED_FOR_GOOD: OffsetDateTime = time::macros::datetime!(9999-12-31 0:00 UTC);

/// The authentication rules of a deployment (configured in `mamori.toml` `[auth]`).
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    pub password: PasswordPolicy,
    /// Consecutive failures that lock an account.
    pub lock_after: u32,
    /// How long a lock lasts; `None`: until an administrator unlocks the account.
    pub lock_for: Option<Duration>,
    /// Roles that must always log in with a second factor.
    pub mfa_roles: Vec<Role>,
    /// Logins from outside these networks must use a second factor.
    pub trusted_networks: Vec<IpNet>,
    /// Concurrent sessions per user; staff accounts have their own (lower) limit.
    pub max_sessions: u32,
    pub max_sessions_staff: u32,
    /// A vendor account must end within this many days of its creation or update.
    pub vendor_max_days: u32,
    /// Accounts without a login for this long are disabled at their next attempt.
    pub dormant_after: Option<Duration>,
    /// Roles that must log in over a connection that presented a verified device certificate.
    pub device_required_roles: Vec<Role>,
    /// When and from where each role may work (`[auth.access.<role>]`); an account's own
    /// window replaces its role's. Local time is `authz.utc_offset`.
    pub access_windows: Vec<(Role, AccessWindow)>,
    /// Local dates on which windows with `closed_on_holidays` are closed.
    pub holidays: Vec<Date>,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            password: PasswordPolicy::guideline(),
            lock_after: 5,
            lock_for: Some(Duration::minutes(30)),
            mfa_roles: vec![Role::SystemAdmin],
            trusted_networks: vec!["127.0.0.0/8".parse().expect("valid"), "::1/128".parse().expect("valid")],
            max_sessions: 3,
            max_sessions_staff: 1,
            vendor_max_days: 30,
            dormant_after: Some(Duration::days(90)),
            device_required_roles: Vec::new(),
            access_windows: Vec::new(),
            holidays: Vec::new(),
        }
    }
}

impl AuthPolicy {
    fn is_trusted(&self, source: Option<&str>) -> bool {
        source_ip(source).is_none_or(|ip| self.trusted_networks.iter().any(|n| n.contains(&ip)))
    }

    /// Whether a login of `role` from `source` lacks the registered device it needs.
    fn lacks_device(&self, role: Role, source: Option<&str>, device: Option<&str>) -> bool {
        self.device_required_roles.contains(&role) && source_ip(source).is_some() && device.is_none()
    }

    fn session_limit(&self, role: Role) -> usize {
        (if role == Role::Staff { self.max_sessions_staff } else { self.max_sessions }).max(1) as usize
    }
}

pub struct LoginOutcome {
    pub token: SessionToken,
    pub expires_at: OffsetDateTime,
    /// The session may only change the password (first login, reset, expiry) …
    pub password_change_required: bool,
    /// … or enrol a second factor, which this account must use.
    pub mfa_enrolment_required: bool,
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
    pub department: Option<String>,
    pub title: Option<String>,
    pub valid_until: Option<OffsetDateTime>,
    /// A temporary vendor (委託先) account: needs `valid_until`, at most
    /// [`AuthPolicy::vendor_max_days`] ahead.
    pub vendor: bool,
    /// `None`: the configured default clearance.
    pub clearance: Option<Tier>,
    /// Security training valid until (004-I-5-5: training before access).
    pub training_valid_until: Option<OffsetDateTime>,
    /// The confidentiality pledge is signed (004-II-3-1).
    pub pledge_signed: bool,
}

/// Least privilege by default: a staff account that must change its password.
impl Default for NewUser {
    fn default() -> Self {
        Self::new("", "", Role::Staff)
    }
}

impl NewUser {
    pub fn new(login: impl Into<String>, display_name: impl Into<String>, role: Role) -> Self {
        Self {
            login: login.into(),
            display_name: display_name.into(),
            role,
            password: None,
            must_change_password: true,
            department: None,
            title: None,
            valid_until: None,
            vendor: false,
            clearance: None,
            training_valid_until: None,
            pledge_signed: false,
        }
    }
}

/// What an administrator changes about an account (`None`: leave as it is).
#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    pub display_name: Option<String>,
    pub department: Option<String>,
    pub title: Option<String>,
    #[schema(value_type = Option<String>, example = "staff")]
    pub role: Option<Role>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<OffsetDateTime>,
    pub vendor: Option<bool>,
    /// Highest tier cleared for: `public`, `confidential`, `secret`, `top_secret` (or 公開 …).
    #[schema(value_type = Option<String>, example = "secret")]
    pub clearance: Option<Tier>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub training_valid_until: Option<OffsetDateTime>,
    /// `true` records the pledge as signed now (if it was not); `false` withdraws it.
    pub pledge_signed: Option<bool>,
    /// The account's own access window, replacing its role's: e.g. `{"hours": "08:00-20:00",
    /// "days": ["mon-fri"], "closed_on_holidays": true, "networks": ["10.0.0.0/8"]}`; `{}`
    /// lets the account work at any time from anywhere; `null` returns it to its role's window.
    #[serde(default, deserialize_with = "present_or_null")]
    #[schema(value_type = Option<Object>)]
    pub access_window: Option<Option<AccessWindow>>,
}

/// Tells a JSON `null` (`Some(None)`: clear) from an absent key (`None`: leave as it is).
fn present_or_null<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// A TOTP enrolment waiting for its first code. The secret travels to the user once, here;
/// `enrolment` is the secret sealed under the master key, to be sent back with the code, so
/// nothing half-enrolled is stored.
pub struct TotpEnrolment {
    pub secret_base32: SecretString,
    pub otpauth_uri: SecretString,
    pub qr_svg: SecretString,
    pub enrolment: String,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment([REDACTED])")
    }
}

/// An account as administrators see it (no hash, no secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserSummary {
    #[schema(value_type = String, format = Uuid)]
    pub id: UserId,
    pub login: String,
    pub display_name: String,
    #[schema(value_type = String, example = "staff")]
    pub role: Role,
    pub department: Option<String>,
    pub title: Option<String>,
    pub disabled: bool,
    pub locked: bool,
    pub vendor: bool,
    pub mfa_enrolled: bool,
    pub must_change_password: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub valid_until: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_login_at: Option<OffsetDateTime>,
    /// Tier slug; `None`: the configured default.
    pub clearance: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub training_valid_until: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub pledge_signed_at: Option<OffsetDateTime>,
    /// The last access review that confirmed (or revoked) the account, and its reviewer.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub reviewed_at: Option<OffsetDateTime>,
    pub reviewed_by: Option<String>,
    /// The account's own access window; `None`: its role's window (`[auth.access]`) applies.
    #[schema(value_type = Option<Object>)]
    pub access_window: Option<AccessWindow>,
}

pub(crate) fn summary(u: UserRow, now: OffsetDateTime) -> Result<UserSummary> {
    Ok(UserSummary {
        access_window: crate::access_windows::own_window(&u)?,
        role: u.role.parse().map_err(VaultError::Integrity)?,
        id: u.id,
        login: u.login,
        display_name: u.display_name,
        department: u.department,
        title: u.title,
        disabled: u.disabled,
        locked: u.locked_until.is_some_and(|t| t > now),
        vendor: u.vendor,
        mfa_enrolled: u.totp_secret.is_some(),
        must_change_password: u.must_change_password,
        created_at: u.created_at,
        valid_until: u.valid_until,
        last_login_at: u.last_login_at,
        clearance: u.clearance,
        training_valid_until: u.training_valid_until,
        pledge_signed_at: u.pledge_signed_at,
        reviewed_at: u.reviewed_at,
        reviewed_by: u.reviewed_by,
    })
}

pub(crate) fn valid_login(login: &str) -> bool {
    (3..=64).contains(&login.len())
        && login.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

pub(crate) fn totp_aad(user: &UserId) -> Vec<u8> {
    format!("mamori/v1/totp\0{user}").into_bytes()
}

fn enrolment_aad(user: &UserId, issued_unix: i64) -> Vec<u8> {
    format!("mamori/v1/totp-enrolment\0{user}\0{issued_unix}").into_bytes()
}

/// A second factor as typed: a 6-digit TOTP code, or a recovery code. Full-width digits from
/// an IME and spaces are accepted.
enum SecondFactor {
    Totp(String),
    Recovery(String),
}

fn second_factor(input: &SecretString) -> SecondFactor {
    let normal: String = mamori_core::normalize::nfkc(input.expose()).chars().filter(|c| !c.is_whitespace()).collect();
    if normal.len() == 6 && normal.bytes().all(|b| b.is_ascii_digit()) {
        SecondFactor::Totp(normal)
    } else {
        SecondFactor::Recovery(normal)
    }
}

fn one_time_password() -> SecretString {
    let mut rng = rand::rngs::OsRng;
    SecretString::new((0..16).map(|_| OTP_ALPHABET[rng.gen_range(0..OTP_ALPHABET.len())] as char).collect())
}

pub(crate) fn session_ref(hash: &[u8; 32]) -> String {
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

    /// A random password that the deployment's policy accepts (demo accounts, tests).
    pub fn generate_password(&self) -> SecretString {
        loop {
            let groups: Vec<String> = (0..4).map(|_| one_time_password().expose()[..5].to_owned()).collect();
            let candidate = SecretString::new(groups.join("-"));
            if self.config.auth.password.check(candidate.expose(), &PasswordContext::new("generated")).is_ok() {
                return candidate;
            }
        }
    }

    /// Checks a new password against the deployment's policy and, when `history` is given,
    /// against the account's current and recent passwords.
    async fn check_new_password(
        &self,
        user: Option<&UserRow>,
        login: &str,
        name: &str,
        pw: &SecretString,
    ) -> Result<()> {
        let policy = &self.config.auth.password;
        policy
            .check(pw.expose(), &PasswordContext::new(login).with_name(name))
            .map_err(VaultError::PasswordRejected)?;
        if let Some(user) = user {
            let mut earlier = vec![user.password_hash.clone()];
            earlier.extend(self.store.password_history(&user.id, usize::from(policy.history_depth())).await?);
            for hash in &earlier {
                if self.verify_password(pw, Some(hash)).await? {
                    return Err(VaultError::PasswordRejected(PasswordRejection::from(PasswordViolation::Reused {
                        history: policy.history_depth().max(1),
                    })));
                }
            }
        }
        Ok(())
    }

    fn check_validity(&self, vendor: bool, valid_until: Option<OffsetDateTime>) -> Result<()> {
        let now = self.clock.now();
        if let Some(until) = valid_until
            && until <= now
        {
            return Err(VaultError::Invalid("valid_until must be in the future".into()));
        }
        if vendor {
            let max = Duration::days(i64::from(self.config.auth.vendor_max_days));
            match valid_until {
                None => return Err(VaultError::Invalid("a vendor account needs valid_until".into())),
                Some(until) if until - now > max => {
                    return Err(VaultError::Invalid(format!(
                        "a vendor account may be valid for at most {} days",
                        self.config.auth.vendor_max_days
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
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
        let display_name = valid_display_name(&new.display_name)?;
        self.check_validity(new.vendor, new.valid_until)?;
        let (password, generated) = match new.password {
            _ if needs_activation => (one_time_password(), None),
            Some(pw) => {
                self.check_new_password(None, &new.login, &display_name, &pw).await?;
                (pw, None)
            }
            None => {
                let pw = one_time_password();
                (pw.clone(), Some(pw))
            }
        };
        let now = self.clock.now();
        let mut row = UserRow::new(
            UserId::generate(),
            new.login,
            display_name,
            new.role.to_string(),
            self.hash_password(&password).await?,
            now,
        );
        row.must_change_password = new.must_change_password || generated.is_some() || needs_activation;
        row.disabled = needs_activation;
        row.department = clean_optional(new.department)?;
        row.title = clean_optional(new.title)?;
        row.valid_until = new.valid_until;
        row.vendor = new.vendor;
        row.clearance = new.clearance.map(|t| t.as_str().to_owned());
        row.training_valid_until = new.training_valid_until;
        row.pledge_signed_at = new.pledge_signed.then_some(now);
        let mut e = self.event(p, "user.create", Outcome::Success);
        let pending = if needs_activation { " pending-activation" } else { "" };
        e.reason = Some(format!("user:{} role={}{pending}", row.id, row.role));
        self.change_account(vec![AuditedChange::CreateUser(Box::new(row.clone()))], e).await?;
        Ok((summary(row, now)?, generated))
    }

    pub async fn list_users(&self, p: &Principal) -> Result<Vec<UserSummary>> {
        self.authorize(p, Action::UserManage, "user.list", None).await?;
        let now = self.clock.now();
        let users: Vec<UserSummary> =
            self.store.list_users().await?.into_iter().map(|u| summary(u, now)).collect::<Result<_>>()?;
        let mut e = self.event(p, "user.list", Outcome::Success);
        e.rows = Some(users.len() as u64);
        self.audit.record(vec![e]).await?;
        Ok(users)
    }

    async fn user_by_login(&self, login: &str) -> Result<UserRow> {
        self.store.get_user_by_login(login).await?.ok_or(VaultError::NotFound("user"))
    }

    /// Changes an account's details. A role change ends the account's sessions, and making
    /// an account read personal data is activation's business, not this.
    pub async fn update_user(&self, p: &Principal, login: &str, change: ProfileChange) -> Result<UserSummary> {
        self.authorize(p, Action::UserManage, "user.update", None).await?;
        let user = self.user_by_login(login).await?;
        let old_role: Role = user.role.parse().map_err(VaultError::Integrity)?;
        let role = change.role.unwrap_or(old_role);
        if role != old_role && p.user_id.is_some() && role.reads_content() && !old_role.reads_content() {
            let mut e = self.event(p, "user.update", Outcome::Denied);
            e.reason = Some(format!("user:{} role {old_role}→{role} reads personal data: needs activation", user.id));
            self.audit.record(vec![e]).await?;
            return Err(VaultError::Forbidden);
        }
        let profile = UserProfile {
            display_name: match change.display_name {
                Some(n) => valid_display_name(&n)?,
                None => user.display_name.clone(),
            },
            department: match change.department {
                Some(d) => clean_optional(Some(d))?,
                None => user.department.clone(),
            },
            title: match change.title {
                Some(t) => clean_optional(Some(t))?,
                None => user.title.clone(),
            },
            role: role.to_string(),
            valid_until: change.valid_until.or(user.valid_until),
            vendor: change.vendor.unwrap_or(user.vendor),
            clearance: change.clearance.map(|t| t.as_str().to_owned()).or(user.clearance.clone()),
            training_valid_until: change.training_valid_until.or(user.training_valid_until),
            pledge_signed_at: match change.pledge_signed {
                Some(true) => user.pledge_signed_at.or(Some(self.clock.now())),
                Some(false) => None,
                None => user.pledge_signed_at,
            },
            access_window: match &change.access_window {
                Some(w) => w.as_ref().map(AccessWindow::to_json),
                None => user.access_window.clone(),
            },
        };
        if change.valid_until.is_some() || change.vendor.is_some() {
            self.check_validity(profile.vendor, profile.valid_until)?;
        }
        // Widening what an account may read is not one administrator's decision (004: dual
        // control when one manager would set all rights): a clearance raised by a signed-in
        // administrator on an account that reads content disables it until a privacy officer
        // activates it, exactly as a new content account waits. (The local operator holds the
        // master key and could read everything anyway.)
        let effective = |c: Option<&str>| -> Result<i64> {
            Ok(match c {
                Some(t) => t.parse::<Tier>()?.rank(),
                None => self.config.authz.default_clearance.rank(),
            })
        };
        let raised = change.clearance.is_some()
            && effective(profile.clearance.as_deref())? > effective(user.clearance.as_deref())?;
        // So does a move between content roles (staff → privacy officer reads every
        // department): a second person confirms who reads what.
        let needs_activation =
            (raised || role != old_role) && p.user_id.is_some() && role.reads_content() && !user.disabled;
        let id = user.id;
        let mut steps = vec![AuditedChange::UpdateUserProfile { id, profile: profile.clone() }];
        if needs_activation {
            steps.push(AuditedChange::SetUserDisabled { id, disabled: true });
        }
        let end_sessions = role != old_role || needs_activation;
        if end_sessions {
            steps.push(AuditedChange::DeleteUserSessions { id });
        }
        let mut e = self.event(p, "user.update", Outcome::Success);
        e.reason = Some(format!(
            "user:{} role={role} clearance={}{} training_until={} pledge={} access_window={} sessions_ended={end_sessions}",
            user.id,
            profile.clearance.as_deref().unwrap_or("default"),
            if needs_activation { " (widened: disabled until a privacy officer activates it)" } else { "" },
            profile.training_valid_until.map_or("none".into(), |t| t.date().to_string()),
            profile.pledge_signed_at.is_some(),
            match &change.access_window {
                Some(Some(w)) => format!("[{w}]"),
                Some(None) => "role's".into(),
                None => "unchanged".into(),
            },
        ));
        self.change_account(steps, e).await?;
        let updated = self.store.get_user(&user.id).await?.ok_or(VaultError::NotFound("user"))?;
        summary(updated, self.clock.now())
    }

    /// Disabling takes effect on the very next request: sessions are deleted and
    /// [`Vault::authenticate`] re-reads the account every time.
    pub async fn set_user_disabled(&self, p: &Principal, login: &str, disabled: bool) -> Result<()> {
        self.authorize(p, Action::UserManage, "user.disable", None).await?;
        let user = self.user_by_login(login).await?;
        let role: Role = user.role.parse().map_err(VaultError::Integrity)?;
        if !disabled && p.user_id.is_some() && role.reads_content() {
            let mut e = self.event(p, "user.enable", Outcome::Denied);
            e.reason = Some(format!("user:{} reads personal data: needs activation by a privacy officer", user.id));
            self.audit.record(vec![e]).await?;
            return Err(VaultError::Forbidden);
        }
        let id = user.id;
        let change = match disabled {
            true => vec![AuditedChange::SetUserDisabled { id, disabled }, AuditedChange::DeleteUserSessions { id }],
            // Dormancy counts from now too: an account enabled after a dormancy lock is not
            // locked again by its next login.
            false => vec![AuditedChange::EnableUser { id, at: self.clock.now() }],
        };
        let mut e = self.event(p, if disabled { "user.disable" } else { "user.enable" }, Outcome::Success);
        e.reason = Some(format!("user:{}", user.id));
        self.protect_account(change, e).await
    }

    /// Lifts a lockout.
    pub async fn unlock_user(&self, p: &Principal, login: &str) -> Result<()> {
        self.authorize(p, Action::UserManage, "user.unlock", None).await?;
        let user = self.user_by_login(login).await?;
        let mut e = self.event(p, "user.unlock", Outcome::Success);
        e.reason = Some(format!("user:{}", user.id));
        self.change_account(vec![AuditedChange::UnlockUser { id: user.id }], e).await
    }

    /// Removes an account's second factor (lost authenticator and recovery codes); the
    /// person enrols again at the next login from a trusted network.
    pub async fn reset_mfa(&self, p: &Principal, login: &str) -> Result<()> {
        self.authorize(p, Action::UserManage, "user.mfa_reset", None).await?;
        let user = self.user_by_login(login).await?;
        let id = user.id;
        let removed = AuditedChange::SetTotp { id, wrapped_secret: None, recovery_hashes: vec![], accepted_step: None };
        let mut e = self.event(p, "user.mfa_reset", Outcome::Success);
        e.reason = Some(format!("user:{id}"));
        self.change_account(vec![removed, AuditedChange::DeleteUserSessions { id }], e).await
    }

    /// Activates a disabled account and issues it a fresh one-time password, returned to the
    /// activator only (the creator's knowledge of any earlier password is worthless).
    pub async fn activate_user(&self, p: &Principal, login: &str) -> Result<SecretString> {
        self.authorize(p, Action::UserActivate, "user.activate", None).await?;
        let user = self.user_by_login(login).await?;
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
        let (id, at) = (user.id, self.clock.now());
        let password_hash = self.hash_password(&password).await?;
        let change = vec![
            AuditedChange::SetPassword { id, password_hash, must_change: true, at },
            AuditedChange::DeleteUserSessions { id },
            AuditedChange::EnableUser { id, at },
        ];
        let mut e = self.event(p, "user.activate", Outcome::Success);
        e.reason = Some(format!("user:{id} role={}", user.role));
        self.change_account(change, e).await?;
        Ok(password)
    }

    /// Password login without a second factor (accounts that need one get
    /// [`VaultError::MfaRequired`]).
    pub async fn login(&self, login: &str, password: &SecretString, source: Option<String>) -> Result<LoginOutcome> {
        self.login_with_code(login, password, None, source).await
    }

    /// Login without a device certificate (see [`Vault::login_with_device`]).
    pub async fn login_with_code(
        &self,
        login: &str,
        password: &SecretString,
        code: Option<&SecretString>,
        source: Option<String>,
    ) -> Result<LoginOutcome> {
        self.login_with_device(login, password, code, source, None).await
    }

    /// Login. Unknown login, wrong password, locked and disabled account give the same error
    /// after the same Argon2id work (no account enumeration); only a caller who knows the
    /// password learns that a second factor is missing. `device` is the SHA-256 fingerprint
    /// of the client certificate the connection presented, verified by the server against
    /// its device CA; it is recorded with the login.
    pub async fn login_with_device(
        &self,
        login: &str,
        password: &SecretString,
        code: Option<&SecretString>,
        source: Option<String>,
        device: Option<&str>,
    ) -> Result<LoginOutcome> {
        let user = if valid_login(login) { self.store.get_user_by_login(login).await? } else { None };
        let verified = self.verify_password(password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        self.complete_login(user, verified, code, source, device).await
    }

    /// The part of a login after the password was checked (`verified`): account checks,
    /// second factor, session. Also the second step of a two-step login (see `login_ticket`).
    pub(crate) async fn complete_login(
        &self,
        user: Option<UserRow>,
        verified: bool,
        code: Option<&SecretString>,
        source: Option<String>,
        device: Option<&str>,
    ) -> Result<LoginOutcome> {
        let now = self.clock.now();
        // An unknown login string is not logged: people type passwords into it by mistake.
        let actor = user.as_ref().map_or_else(|| "anonymous".to_owned(), |u| format!("user:{}", u.id));
        let mut e = AuditEvent::new(now, actor, "auth.login", Outcome::Failure);
        e.source = source.clone();
        let Some(user) = user else {
            e.reason = Some("unknown login".into());
            self.audit.record(vec![e]).await?;
            return Err(VaultError::Unauthenticated);
        };
        let with_device = |reason: Option<String>| match (reason, device) {
            (r, None) => r,
            (None, Some(d)) => Some(format!("device sha256:{d}")),
            (Some(r), Some(d)) => Some(format!("{r}; device sha256:{d}")),
        };
        let setup = match self.check_login(&user, verified, code, source.as_deref(), device, now).await {
            Ok(setup) => setup,
            Err((reason, err)) => {
                e.reason = with_device(Some(reason));
                self.audit.record(vec![e]).await?;
                return Err(err);
            }
        };
        // `user` was read before the password check, which waits its turn for Argon2id:
        // concurrent wrong guesses may have locked the account, or an administrator disabled
        // it, since. The store refuses to record the success then, and the lock holds.
        if !self.store.record_login_success(&user.id, now).await? {
            e.reason = with_device(Some("account locked or disabled during the login".into()));
            self.audit.record(vec![e]).await?;
            return Err(VaultError::Unauthenticated);
        }
        let mut events = Vec::new();
        // Make room under the concurrent-session limit: the oldest sessions end.
        let sessions = self.store.list_user_sessions(&user.id).await?;
        let limit = self.config.auth.session_limit(setup.role);
        for old in sessions.iter().take((sessions.len() + 1).saturating_sub(limit)) {
            self.store.delete_session(&old.token_hash).await?;
            let mut ended = AuditEvent::new(now, format!("user:{}", user.id), "auth.session_ended", Outcome::Success);
            ended.session = Some(session_ref(&old.token_hash));
            ended.reason = Some(format!("concurrent-session limit {limit}"));
            events.push(ended);
        }
        let token = SessionToken::generate();
        let hash = token.hash();
        let expires_at = now + self.config.session_lifetime;
        let restricted = setup.password_change || setup.mfa_enrolment;
        self.store
            .create_session(&SessionRow {
                token_hash: hash,
                user_id: user.id,
                created_at: now,
                expires_at,
                last_seen_at: now,
                password_change_only: restricted,
                mfa: setup.mfa,
            })
            .await?;
        e.outcome = Outcome::Success;
        e.session = Some(session_ref(&hash));
        e.reason = with_device(setup.note());
        events.push(e);
        self.audit.record(events).await?;
        Ok(LoginOutcome {
            token,
            expires_at,
            password_change_required: setup.password_change,
            mfa_enrolment_required: setup.mfa_enrolment,
        })
    }

    /// Everything a login must pass after the password was checked. `Err` carries the reason
    /// for the audit log and the error for the caller.
    async fn check_login(
        &self,
        user: &UserRow,
        verified: bool,
        code: Option<&SecretString>,
        source: Option<&str>,
        device: Option<&str>,
        now: OffsetDateTime,
    ) -> std::result::Result<Setup, (String, VaultError)> {
        let fail = |reason: &str| (reason.to_owned(), VaultError::Unauthenticated);
        let internal = |e: VaultError| ("internal error".to_owned(), e);
        let policy = &self.config.auth;
        if user.locked_until.is_some_and(|t| t > now) {
            return Err(fail("account locked"));
        }
        if !verified {
            self.count_failure(user, now).await.map_err(internal)?;
            return Err(fail("wrong password"));
        }
        if user.disabled {
            return Err(fail("account disabled"));
        }
        if user.valid_until.is_some_and(|t| t <= now) {
            self.disable_automatically(user, "user.expired", "validity period ended").await.map_err(internal)?;
            return Err(fail("account expired"));
        }
        if let Some(dormant) = policy.dormant_after
            && user.idle_since() + dormant <= now
        {
            self.disable_automatically(user, "user.dormant", "no login within the dormancy period")
                .await
                .map_err(internal)?;
            return Err(fail("dormant account disabled"));
        }
        let role: Role = user.role.parse().map_err(|e| internal(VaultError::Integrity(e)))?;
        if policy.lacks_device(role, source, device) {
            return Err(fail("registered device required: no verified client certificate"));
        }
        // After the credentials, before the second factor: a refused login spends no code.
        if let Some((refusal, reason)) = self.access_window_refusal(user, role, source, now).map_err(internal)? {
            return Err((reason, VaultError::OutsideAccessWindow(refusal)));
        }
        let trusted = policy.is_trusted(source);
        let mut setup = Setup {
            role,
            password_change: user.must_change_password
                || policy.password.expires_at(user.password_changed_at).is_some_and(|t| t <= now),
            mfa_enrolment: false,
            mfa: false,
        };
        match &user.totp_secret {
            Some(wrapped) => {
                let Some(code) = code else {
                    return Err(("one-time code missing".into(), VaultError::MfaRequired));
                };
                if let Err(reason) = self.check_second_factor(user, wrapped, code, now).await.map_err(internal)? {
                    self.count_failure(user, now).await.map_err(internal)?;
                    return Err(fail(reason));
                }
                setup.mfa = true;
            }
            None if policy.mfa_roles.contains(&role) || !trusted => {
                if !trusted {
                    return Err((
                        "second factor required but not enrolled (untrusted network)".into(),
                        VaultError::MfaRequired,
                    ));
                }
                setup.mfa_enrolment = true;
            }
            None => {}
        }
        Ok(setup)
    }

    /// `Ok(Err(reason))` when the code is wrong or used.
    async fn check_second_factor(
        &self,
        user: &UserRow,
        wrapped: &[u8],
        code: &SecretString,
        now: OffsetDateTime,
    ) -> Result<std::result::Result<(), &'static str>> {
        match second_factor(code) {
            SecondFactor::Totp(digits) => {
                let secret = self.master().open_secret(wrapped, &totp_aad(&user.id))?;
                let secret = TotpSecret::from_bytes(&secret)?;
                let Some(step) = secret.verify(&digits, now.unix_timestamp().max(0) as u64, user.totp_last_step) else {
                    return Ok(Err("wrong or reused one-time code"));
                };
                // Compare-and-set in the store: the same code sent to two instances at once
                // is accepted by one of them only.
                if !self.store.advance_totp_step(&user.id, step).await? {
                    return Ok(Err("one-time code already used"));
                }
                Ok(Ok(()))
            }
            SecondFactor::Recovery(text) => {
                let stored = self.store.recovery_code_hashes(&user.id).await?;
                let Some(i) = mamori_crypto::verify_recovery_code(&text, &stored) else {
                    return Ok(Err("wrong recovery code"));
                };
                if !self.store.use_recovery_code(&user.id, &stored[i]).await? {
                    return Ok(Err("recovery code already used"));
                }
                let mut e =
                    AuditEvent::new(now, format!("user:{}", user.id), "auth.recovery_code_used", Outcome::Success);
                e.reason = Some(format!("{} left", stored.len() - 1));
                self.audit.record(vec![e]).await?;
                Ok(Ok(()))
            }
        }
    }

    /// Counts a wrong password towards the lockout; true if the account is locked now.
    async fn count_failure(&self, user: &UserRow, now: OffsetDateTime) -> Result<bool> {
        let policy = &self.config.auth;
        let lock_until = policy.lock_for.map_or(LOCKED_FOR_GOOD, |d| now + d);
        let (count, locked) = self.store.record_login_failure(&user.id, now, policy.lock_after, lock_until).await?;
        if count == policy.lock_after && locked.is_some() {
            let mut e = AuditEvent::new(now, format!("user:{}", user.id), "auth.lockout", Outcome::Success);
            e.reason = Some(match policy.lock_for {
                Some(d) => format!("{count} consecutive failures; locked for {} min", d.whole_minutes()),
                None => format!("{count} consecutive failures; locked until an administrator unlocks"),
            });
            self.audit.record(vec![e]).await?;
        }
        Ok(locked.is_some_and(|t| t > now))
    }

    async fn disable_automatically(&self, user: &UserRow, action: &str, reason: &str) -> Result<()> {
        let id = user.id;
        let mut e = AuditEvent::new(self.clock.now(), "system", action, Outcome::Success);
        e.reason = Some(format!("user:{id} {reason}"));
        let change =
            vec![AuditedChange::SetUserDisabled { id, disabled: true }, AuditedChange::DeleteUserSessions { id }];
        self.protect_account(change, e).await
    }

    /// Commits a change to accounts with its audit event, in one transaction (004-V-1-23:
    /// administrators' operations are logged; a change the log cannot record is not made).
    pub(crate) async fn change_account(&self, change: Vec<AuditedChange>, event: AuditEvent) -> Result<()> {
        match self.audit.apply(change, vec![event]).await {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound) => Err(VaultError::NotFound("user")),
            Err(e) => Err(e.into()),
        }
    }

    /// As [`Vault::change_account`], for a change that protects: one that disables an account
    /// or ends its sessions. When its event cannot be written, the protective steps are made
    /// anyway, on their own, and the caller still gets `AuditUnavailable`: a log that is down
    /// must not keep open an account someone is closing (a locked-out account's sessions, a
    /// revoked or expired account). The account's state then shows what was done.
    pub(crate) async fn protect_account(&self, change: Vec<AuditedChange>, event: AuditEvent) -> Result<()> {
        let (disable, end_sessions) = change.iter().fold((None, None), |(d, s), step| match step {
            AuditedChange::SetUserDisabled { id, disabled: true } => (Some(*id), s),
            AuditedChange::DeleteUserSessions { id } => (d, Some(*id)),
            _ => (d, s),
        });
        // Who did what, for the operators' log: the event holds ids only.
        let (actor, action, reason) = (event.actor.clone(), event.action.clone(), event.reason.clone());
        match self.change_account(change, event).await {
            Err(VaultError::AuditUnavailable(m)) if disable.is_some() || end_sessions.is_some() => {
                tracing::error!(%actor, %action, reason = reason.as_deref().unwrap_or(""),
                    "audit trail down: protective account change made without its event");
                // The plain store methods: they do not touch the audit table, whose failure
                // this may be.
                if let Some(id) = disable
                    && let Err(e) = self.store.set_user_disabled(&id, true).await
                {
                    tracing::error!(error = %e, %actor, %action, "protective disable failed too");
                }
                if let Some(id) = end_sessions
                    && let Err(e) = self.store.delete_user_sessions(&id).await
                {
                    tracing::error!(error = %e, %actor, %action, "protective end of sessions failed too");
                }
                Err(VaultError::AuditUnavailable(m))
            }
            other => other,
        }
    }

    /// Records an authentication attempt that the server's per-source throttle refused before
    /// looking at it (no account, no password): a failed login of nobody in particular, with
    /// how many attempts from `source` were refused since the previous such record. The
    /// throttle is shared by every form that checks a password or a code (login, password
    /// change, second factor), so the event is an `auth.login` failure, where the failed
    /// login queries look (001-20-tech-1-5), and `attempted` (a method and path, no values)
    /// says which form the refused attempt was sent to.
    pub async fn record_throttled_login(&self, source: Option<String>, refused: u64, attempted: &str) -> Result<()> {
        let mut e = AuditEvent::new(self.clock.now(), "anonymous", "auth.login", Outcome::Failure);
        e.source = source;
        let attempted: String = attempted.chars().filter(|c| !c.is_control()).take(200).collect();
        e.reason = Some(format!(
            "throttled: too many attempts from this source ({refused} refused since the last record; this one to \
             {attempted})"
        ));
        self.audit.record(vec![e]).await?;
        Ok(())
    }

    /// Resolves a bearer token to a principal, enforcing expiry, idle timeout, account state
    /// and validity period on every call.
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
        if user.valid_until.is_some_and(|t| t <= now) {
            self.disable_automatically(&user, "user.expired", "validity period ended").await?;
            return Err(VaultError::Unauthenticated);
        }
        let role: Role = user.role.parse().map_err(VaultError::Integrity)?;
        // The working hours ended, or the token came from another network: the session ends
        // (a token copied elsewhere is as good as stolen).
        if let Some((_, reason)) = self.access_window_refusal(&user, role, source.as_deref(), now)? {
            self.store.delete_session(&hash).await?;
            let mut e = AuditEvent::new(now, format!("user:{}", user.id), "auth.session_ended", Outcome::Success);
            e.session = Some(session_ref(&hash));
            e.source = source;
            e.reason = Some(reason);
            self.audit.record(vec![e]).await?;
            return Err(VaultError::Unauthenticated);
        }
        if now - session.last_seen_at >= TOUCH_EVERY {
            self.store.touch_session(&hash, now).await?;
        }
        let clearance = match &user.clearance {
            Some(tier) => tier.parse().map_err(|e: mamori_core::CoreError| VaultError::Integrity(e.to_string()))?,
            None => self.config.authz.default_clearance,
        };
        Ok(Principal {
            user_id: Some(user.id),
            role,
            login: user.login,
            session_ref: Some(session_ref(&hash)),
            source,
            password_change_only: session.password_change_only,
            department: user.department,
            clearance,
            training_valid: user.training_valid_until.is_some_and(|t| t > now),
            pledge_signed: user.pledge_signed_at.is_some(),
            vendor: user.vendor,
            mfa: session.mfa,
            authenticated_at: Some(session.created_at),
        })
    }

    pub async fn logout(&self, p: &Principal, token: &SessionToken) -> Result<()> {
        self.store.delete_session(&token.hash()).await?;
        self.audit.record(vec![self.event(p, "auth.logout", Outcome::Success)]).await?;
        Ok(())
    }

    /// Changes the caller's own password and ends all of their sessions.
    ///
    /// A wrong current password counts towards the lockout like a failed login: whoever holds
    /// a session left open must not get unlimited guesses at the password behind it. The
    /// failure that locks the account also ends its sessions (001-20-tech-1-5).
    pub async fn change_password(&self, p: &Principal, current: &SecretString, new: &SecretString) -> Result<()> {
        let id = p.user_id.ok_or(VaultError::Forbidden)?;
        let user = self.store.get_user(&id).await?.ok_or(VaultError::Unauthenticated)?;
        let now = self.clock.now();
        let refuse = async |reason: &str| {
            let mut e = self.event(p, "auth.password_change", Outcome::Failure);
            e.reason = Some(reason.into());
            self.audit.record(vec![e]).await?;
            Err(VaultError::Unauthenticated)
        };
        if user.locked_until.is_some_and(|t| t > now) {
            return refuse("account locked").await;
        }
        if !self.verify_password(current, Some(&user.password_hash)).await? {
            if self.count_failure(&user, now).await? {
                let mut e = self.event(p, "auth.password_change", Outcome::Failure);
                e.reason = Some("wrong current password; account locked, its sessions ended".into());
                self.protect_account(vec![AuditedChange::DeleteUserSessions { id }], e).await?;
                return Err(VaultError::Unauthenticated);
            }
            return refuse("wrong current password").await;
        }
        if let Err(err) = self.check_new_password(Some(&user), &user.login, &user.display_name, new).await {
            let mut e = self.event(p, "auth.password_change", Outcome::Failure);
            e.reason = Some(match &err {
                VaultError::PasswordRejected(r) => format!("rejected: {}", r.slugs().join(",")),
                other => other.to_string(),
            });
            self.audit.record(vec![e]).await?;
            return Err(err);
        }
        let password_hash = self.hash_password(new).await?;
        let change = vec![
            AuditedChange::SetPassword { id, password_hash, must_change: false, at: self.clock.now() },
            AuditedChange::DeleteUserSessions { id },
        ];
        self.change_account(change, self.event(p, "auth.password_change", Outcome::Success)).await
    }

    /// Starts TOTP enrolment for the caller (also from a setup session).
    pub async fn begin_totp_enrolment(&self, p: &Principal) -> Result<TotpEnrolment> {
        let id = p.user_id.ok_or(VaultError::Forbidden)?;
        let secret = TotpSecret::generate();
        let issued = self.clock.now().unix_timestamp();
        let sealed = self.master().seal_secret(secret.expose_bytes(), &enrolment_aad(&id, issued));
        self.audit.record(vec![self.event(p, "auth.mfa_enrolment_start", Outcome::Success)]).await?;
        Ok(TotpEnrolment {
            secret_base32: secret.as_base32(),
            otpauth_uri: secret.otpauth_uri(mamori_crypto::TOTP_ISSUER, &p.login)?,
            qr_svg: secret.qr_svg(mamori_crypto::TOTP_ISSUER, &p.login)?,
            enrolment: format!("{issued}.{}", URL_SAFE_NO_PAD.encode(&sealed)),
        })
    }

    /// Completes enrolment with a code from the authenticator; returns the recovery codes,
    /// shown this once. Every session of the caller ends (log in again with the new factor).
    pub async fn confirm_totp_enrolment(
        &self,
        p: &Principal,
        enrolment: &str,
        code: &SecretString,
    ) -> Result<Vec<SecretString>> {
        let id = p.user_id.ok_or(VaultError::Forbidden)?;
        let now = self.clock.now();
        let bad = || VaultError::Invalid("the enrolment is invalid or has expired; start again".into());
        let (issued, sealed) = enrolment.split_once('.').ok_or_else(bad)?;
        let issued: i64 = issued.parse().map_err(|_| bad())?;
        let age = now.unix_timestamp() - issued;
        if !(0..=ENROLMENT_WINDOW.whole_seconds()).contains(&age) {
            return Err(bad());
        }
        let sealed = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| bad())?;
        let secret = self.master().open_secret(&sealed, &enrolment_aad(&id, issued)).map_err(|_| bad())?;
        let secret = TotpSecret::from_bytes(&secret)?;
        let SecondFactor::Totp(digits) = second_factor(code) else {
            return Err(VaultError::Invalid("enter the 6-digit code the authenticator shows".into()));
        };
        let Some(step) = secret.verify(&digits, now.unix_timestamp().max(0) as u64, None) else {
            let mut e = self.event(p, "auth.mfa_enrolment", Outcome::Failure);
            e.reason = Some("wrong code".into());
            self.audit.record(vec![e]).await?;
            return Err(VaultError::Invalid("the code does not match; check the device's clock and try again".into()));
        };
        let codes = RecoveryCodes::generate(mamori_crypto::RECOVERY_CODE_COUNT);
        let master = self.master();
        let wrapped = master.seal_secret(secret.expose_bytes(), &totp_aad(&id));
        let enrolled = AuditedChange::SetTotp {
            id,
            wrapped_secret: Some(wrapped),
            recovery_hashes: codes.hashes().to_vec(),
            accepted_step: Some(step),
        };
        let change = vec![enrolled, AuditedChange::DeleteUserSessions { id }];
        match self.apply_sealed(&master, change, vec![self.event(p, "auth.mfa_enrolment", Outcome::Success)]).await {
            Err(StoreError::NotFound) => return Err(VaultError::NotFound("user")),
            other => other?,
        };
        Ok(codes.codes().to_vec())
    }
}

/// What a successful login still has to do before the session is a full one.
struct Setup {
    /// The account's role, parsed once by the checks.
    role: Role,
    password_change: bool,
    mfa_enrolment: bool,
    /// A second factor was presented and verified.
    mfa: bool,
}

impl Setup {
    fn note(&self) -> Option<String> {
        match (self.password_change, self.mfa_enrolment) {
            (false, false) => None,
            (true, false) => Some("setup session: password change".into()),
            (false, true) => Some("setup session: MFA enrolment".into()),
            (true, true) => Some("setup session: password change, MFA enrolment".into()),
        }
    }
}

pub(crate) fn valid_display_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(VaultError::Invalid("display name must have 1 to 100 characters".into()));
    }
    Ok(name.to_owned())
}

pub(crate) fn clean_optional(value: Option<String>) -> Result<Option<String>> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() > 100 || v.chars().any(char::is_control) => {
            Err(VaultError::Invalid("department and title must have at most 100 characters".into()))
        }
        Some(v) => Ok(Some(v.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VaultConfig;
    use mamori_crypto::MasterKey;
    use mamori_store::Store;
    use std::sync::Arc;

    /// Who needs a registered device: only the listed roles, only from the network.
    #[test]
    fn device_requirement_by_role_and_source() {
        let policy = AuthPolicy { device_required_roles: vec![Role::SystemAdmin], ..AuthPolicy::default() };
        // (role, source, device, lacks a device)
        let cases = [
            (Role::SystemAdmin, Some("192.0.2.7"), None, true),
            (Role::SystemAdmin, Some("127.0.0.1"), None, true),
            (Role::SystemAdmin, Some("192.0.2.7"), Some("ab12"), false),
            (Role::SystemAdmin, Some("cli"), None, false),
            (Role::SystemAdmin, None, None, false),
            (Role::Staff, Some("192.0.2.7"), None, false),
        ];
        for (role, source, device, lacks) in cases {
            assert_eq!(policy.lacks_device(role, source, device), lacks, "{role} from {source:?} with {device:?}");
        }
        assert!(!AuthPolicy::default().lacks_device(Role::SystemAdmin, Some("192.0.2.7"), None), "off by default");
    }

    /// A login reads the account, then waits for its Argon2id check; wrong guesses sent at the
    /// same time may lock the account meanwhile. The right password arriving last must not
    /// lift that lock, or concurrent guessing would bypass the lockout (001-20-tech-1-5).
    #[tokio::test]
    async fn a_lock_set_during_the_password_check_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(mamori_store_sqlite::SqliteStore::open(dir.path().join("mamori.db")).await.unwrap());
        let clock = Arc::new(mamori_core::clock::SystemClock);
        let vault = Vault::open(store.clone(), &MasterKey::generate(), clock, VaultConfig::default()).await.unwrap();
        let new = NewUser {
            password: Some(SecretString::new("Correct-Horse-42".into())),
            must_change_password: false,
            ..NewUser::new("staff1", "Staff (test)", Role::Staff)
        };
        vault.create_user(&Principal::operator("test"), new).await.unwrap();
        let read_before_the_check = store.get_user_by_login("staff1").await.unwrap();
        let id = read_before_the_check.as_ref().unwrap().id;
        let now = vault.now();
        // Whole seconds: the stores keep microseconds.
        let lock = OffsetDateTime::from_unix_timestamp(now.unix_timestamp() + 900).unwrap();
        assert_eq!(store.record_login_failure(&id, now, 1, lock).await.unwrap(), (1, Some(lock)));

        let refused = vault.complete_login(read_before_the_check.clone(), true, None, None, None).await;
        assert!(matches!(refused, Err(VaultError::Unauthenticated)), "{refused:?}");
        let user = store.get_user(&id).await.unwrap().unwrap();
        assert_eq!((user.failed_logins, user.locked_until, user.last_login_at), (1, Some(lock), None));
        assert!(store.list_user_sessions(&id).await.unwrap().is_empty());
        let last = store.read_audit(1, 1000).await.unwrap().pop().unwrap();
        assert!(last.event_json.contains("account locked or disabled during the login"), "{}", last.event_json);

        // Disabled by an administrator during the check: refused the same way.
        store.unlock_user(&id).await.unwrap();
        store.set_user_disabled(&id, true).await.unwrap();
        let refused = vault.complete_login(read_before_the_check, true, None, None, None).await;
        assert!(matches!(refused, Err(VaultError::Unauthenticated)), "{refused:?}");
        assert!(store.list_user_sessions(&id).await.unwrap().is_empty());
    }
}
