//! `mamori access …`: the periodic access review (recertification). A reviewer sees every
//! account's effective rights under the policies in force and confirms or revokes each
//! (004-II-2-5 ledger of holders, 004-V-1-22-b periodic review of privileges, 004-I-5-7).

use crate::cli::AccessCommand;
use crate::login::Session;
use crate::open::open_vault;
use crate::output;
use crate::settings::Settings;
use anyhow::Context;
use mamori_vault::{AccessEntry, ReviewDecision};
use std::process::ExitCode;

pub async fn run(settings: &Settings, command: AccessCommand, json: bool) -> anyhow::Result<ExitCode> {
    let vault = open_vault(settings).await?;
    let (account, user, decision) = match command {
        AccessCommand::Review { user } => {
            let session = Session::user(&vault, &user.login).await?;
            let entries = session
                .act(&vault, async |p| vault.access_review(p).await)
                .await?
                .context("the access review is for managers and privacy officers")?;
            if json {
                output::json(&entries)?;
            } else {
                print_review(&entries);
            }
            return Ok(ExitCode::SUCCESS);
        }
        AccessCommand::Confirm { account, user } => (account, user, ReviewDecision::Confirm),
        AccessCommand::Revoke { account, user } => (account, user, ReviewDecision::Revoke),
    };
    let session = Session::user(&vault, &user.login).await?;
    let reviewed =
        session.act(&vault, async |p| vault.review_access(p, &account, decision).await).await?.with_context(|| {
            format!("cannot review `{account}` (reviewers need the access.review right; nobody reviews themselves)")
        })?;
    if json {
        output::json(&reviewed)?;
    } else if decision == ReviewDecision::Revoke {
        println!("revoked `{}`: the account is disabled and its sessions have ended", reviewed.login);
    } else {
        println!("confirmed `{}`", reviewed.login);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_review(entries: &[AccessEntry]) {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let content: Vec<String> = e
                .collections
                .iter()
                .filter(|c| {
                    !(c.collection_wide.is_empty() && c.own_department.is_empty() && c.other_departments.is_empty())
                })
                .map(|c| {
                    format!(
                        "{}: {}{}{}",
                        c.collection,
                        c.collection_wide.join("+"),
                        if c.own_department.is_empty() {
                            String::new()
                        } else {
                            format!(" own[{}]", c.own_department.join("+"))
                        },
                        if c.other_departments.is_empty() {
                            String::new()
                        } else {
                            format!(" others[{}]", c.other_departments.join("+"))
                        },
                    )
                })
                .collect();
            vec![
                e.login.clone(),
                e.role.to_string(),
                e.department.clone().unwrap_or_default(),
                e.clearance.clone(),
                output::maybe_timestamp(e.training_valid_until),
                if e.pledge_signed { "yes" } else { "no" }.into(),
                if e.disabled { "disabled" } else { "active" }.into(),
                output::maybe_timestamp(e.last_login_at),
                output::maybe_timestamp(e.reviewed_at),
                e.system.join(","),
                content.join("; "),
            ]
        })
        .collect();
    output::table(
        &[
            "login",
            "role",
            "department",
            "clearance",
            "training until",
            "pledge",
            "status",
            "last login",
            "reviewed",
            "system rights",
            "content rights",
        ],
        &rows,
    );
}
