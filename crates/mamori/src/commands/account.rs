//! One's own account: `mamori passwd` and `mamori mfa enrol`. Both work from a setup session
//! (first login, reset password, second factor not yet enrolled).

use crate::input;
use crate::login::{PASSWORD_VAR, Session};
use crate::open::open_vault;
use crate::output;
use crate::settings::Settings;
use anyhow::Context;
use std::process::ExitCode;

pub async fn passwd(settings: &Settings, login: &str) -> anyhow::Result<ExitCode> {
    let vault = open_vault(settings).await?;
    let current = input::secret(PASSWORD_VAR, &format!("current password for {login}: "))?;
    let new = input::secret("MAMORI_NEW_PASSWORD", "new password: ")?;
    let session = Session::setup(&vault, login, &current).await?;
    // Changing the password ends every session of the account, this one included.
    vault.change_password(session.principal(), &current, &new).await?;
    println!("password of `{login}` changed; all of its sessions have ended");
    Ok(ExitCode::SUCCESS)
}

/// `mamori mfa enrol`: shows a new TOTP secret, reads the first code from the authenticator
/// (stdin, or a hidden prompt on a terminal) and prints the recovery codes, once.
pub async fn enrol(settings: &Settings, login: &str, json: bool) -> anyhow::Result<ExitCode> {
    let vault = open_vault(settings).await?;
    let password = input::secret(PASSWORD_VAR, &format!("password for {login}: "))?;
    let session = Session::setup(&vault, login, &password).await?;
    let enrolment = vault.begin_totp_enrolment(session.principal()).await?;
    if json {
        output::json(&serde_json::json!({
            "login": login,
            "secret": enrolment.secret_base32.expose(),
            "otpauth_uri": enrolment.otpauth_uri.expose(),
        }))?;
    } else {
        println!("Add this account to an authenticator app (TOTP, 6 digits, 30 s):");
        println!("  secret:      {}", enrolment.secret_base32.expose());
        println!("  otpauth URI: {}", enrolment.otpauth_uri.expose());
        println!("Then enter the code it shows (within 10 minutes).");
    }
    let code = input::line("code from the authenticator: ")?;
    let result = vault.confirm_totp_enrolment(session.principal(), &enrolment.enrolment, &code).await;
    let codes = match result {
        Ok(codes) => codes,
        Err(e) => {
            session.end(&vault).await?;
            return Err(e).context("enrolment not completed; run `mamori mfa enrol` again");
        }
    };
    // Confirming ended every session of the account: log in again with the new factor.
    let codes: Vec<&str> = codes.iter().map(|c| c.expose()).collect();
    if json {
        output::json(&serde_json::json!({"login": login, "recovery_codes": codes}))?;
    } else {
        println!("Second factor enrolled for `{login}`. Recovery codes (each works once; keep them offline):");
        for code in codes {
            println!("  {code}");
        }
        println!("From now on, logins of `{login}` need a code: MAMORI_TOTP or the prompt.");
    }
    Ok(ExitCode::SUCCESS)
}
