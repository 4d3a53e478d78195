//! Who a command acts as: the local operator (who holds the master key file), or a user who
//! logs in for this one command and logs out after it.
//!
//! A user's password comes from `MAMORI_PASSWORD` or a prompt. Accounts with a second factor
//! (system administrators by default, `[auth] mfa_roles`) also need a one-time code: the
//! authenticator's six digits or a recovery code, from `MAMORI_TOTP` or a prompt. The CLI logs
//! in with the source `cli`, which counts as a trusted network: an account that must use a
//! second factor but has none gets a setup session, good only for `mamori passwd` and
//! `mamori mfa enrol`.

use crate::input;
use anyhow::{Context, bail};
use mamori_crypto::{SecretString, SessionToken};
use mamori_vault::{Principal, Vault, VaultError};

/// The login source the vault records for the command line (not an IP address: the local
/// process on the server itself).
const SOURCE: &str = "cli";
pub const PASSWORD_VAR: &str = "MAMORI_PASSWORD";
pub const TOTP_VAR: &str = "MAMORI_TOTP";

/// The operator named by the OS account that runs the command.
pub fn operator() -> Principal {
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into());
    Principal::operator(&user)
}

/// The acting principal of one command, and the session to end when the command is done.
pub struct Session {
    principal: Principal,
    token: Option<SessionToken>,
    /// A setup session must change the password first …
    password_change: bool,
    /// … or enrol a second factor.
    mfa_enrolment: bool,
}

impl Session {
    pub fn operator() -> Self {
        Self { principal: operator(), token: None, password_change: false, mfa_enrolment: false }
    }

    /// A full session of `login`; an account that must first change its password or enrol a
    /// second factor is told how, and nothing else happens.
    pub async fn user(vault: &Vault, login: &str) -> anyhow::Result<Self> {
        let password = input::secret(PASSWORD_VAR, &format!("password for {login}: "))?;
        let session = Self::setup(vault, login, &password).await?;
        let problem = match (session.password_change, session.mfa_enrolment) {
            (true, _) => {
                Some(format!("the password of `{login}` must be changed first: `mamori passwd --login {login}`"))
            }
            (false, true) => Some(format!(
                "`{login}` must enrol a second factor first (its role requires one): `mamori mfa enrol --login {login}`"
            )),
            (false, false) => None,
        };
        if let Some(problem) = problem {
            session.end(vault).await?;
            bail!(problem);
        }
        Ok(session)
    }

    /// `login` as a user when given, else the local operator.
    pub async fn user_or_operator(vault: &Vault, login: Option<&str>) -> anyhow::Result<Self> {
        match login {
            Some(login) => Self::user(vault, login).await,
            None => Ok(Self::operator()),
        }
    }

    /// Any session of `login`, a setup session included (for changing the password and
    /// enrolling a second factor), with a password the caller already has.
    pub async fn setup(vault: &Vault, login: &str, password: &SecretString) -> anyhow::Result<Self> {
        let failed = || format!("login as `{login}` failed");
        let code = input::env_secret(TOTP_VAR);
        let out = match vault.login_with_code(login, password, code.as_ref(), Some(SOURCE.into())).await {
            Err(VaultError::MfaRequired) if code.is_none() => {
                let code = input::secret(TOTP_VAR, &format!("one-time code for {login}: "))
                    .with_context(|| format!("`{login}` needs a one-time code (authenticator or recovery code)"))?;
                vault.login_with_code(login, password, Some(&code), Some(SOURCE.into())).await
            }
            other => other,
        }
        .with_context(failed)?;
        let principal = vault.authenticate(&out.token, Some(SOURCE.into())).await.with_context(failed)?;
        Ok(Self {
            principal,
            token: Some(out.token),
            password_change: out.password_change_required,
            mfa_enrolment: out.mfa_enrolment_required,
        })
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn is_operator(&self) -> bool {
        self.token.is_none()
    }

    /// Runs `f` as this session's principal, then ends the session whatever `f` returned. The
    /// vault's own error is handed back as it is, for the caller to explain.
    pub async fn act<T>(
        self,
        vault: &Vault,
        f: impl AsyncFnOnce(&Principal) -> mamori_vault::Result<T>,
    ) -> anyhow::Result<mamori_vault::Result<T>> {
        let result = f(&self.principal).await;
        self.end(vault).await?;
        Ok(result)
    }

    /// Logs a user out (and records it); nothing to do for the operator.
    pub async fn end(self, vault: &Vault) -> anyhow::Result<()> {
        if let Some(token) = &self.token {
            vault.logout(&self.principal, token).await.context("logging out")?;
        }
        Ok(())
    }
}
