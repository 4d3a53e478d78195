//! `mamori break-glass …`: time-boxed read access beyond one's policies, only with a second
//! person's approval (001-20-tech-2-8: privileged access to personal data only exceptionally,
//! and recorded). The written reason may name people, so it never travels in argv: it comes
//! from stdin or a file, and it is shown only by `show` and in `--json`.

use super::policy::refused;
use crate::cli::BreakGlassCommand;
use crate::input;
use crate::login::Session;
use crate::open::open_vault;
use crate::output;
use crate::settings::Settings;
use anyhow::Context;
use mamori_vault::{GrantInfo, Vault};
use std::process::ExitCode;

pub async fn run(settings: &Settings, command: BreakGlassCommand, json: bool) -> anyhow::Result<ExitCode> {
    // Read the reason before anything else: a typo in it should not cost a login.
    let reason = match &command {
        BreakGlassCommand::Request { reason_file, .. } => Some(input::text(reason_file.as_deref(), "reason")?),
        _ => None,
    };
    let vault = open_vault(settings).await?;
    match command {
        BreakGlassCommand::Request { collection, minutes, user, .. } => {
            let reason = reason.unwrap_or_default();
            let session = Session::user(&vault, &user.login).await?;
            let grant = session
                .act(&vault, async |p| vault.request_break_glass(p, &collection, minutes, &reason).await)
                .await?
                .context("break-glass request refused")?;
            if json {
                output::json(&grant)?;
            } else {
                println!(
                    "break-glass request {} for `{}` ({} min) is pending; another account approves it with\n  \
                     mamori break-glass approve {0} --login <login>",
                    grant.id, grant.collection, grant.minutes
                );
            }
        }
        BreakGlassCommand::Approve { id, actor } => decide(&vault, &id, actor.login.as_deref(), true, json).await?,
        BreakGlassCommand::Reject { id, actor } => decide(&vault, &id, actor.login.as_deref(), false, json).await?,
        BreakGlassCommand::Revoke { id, user } => {
            let session = Session::user(&vault, &user.login).await?;
            let grant =
                session.act(&vault, async |p| vault.revoke_break_glass(p, &id).await).await?.with_context(|| {
                    format!("cannot revoke grant {id} (its requester may, and accounts with the approve right)")
                })?;
            if json {
                output::json(&grant)?;
            } else {
                println!(
                    "grant {} revoked; `{}` no longer reads `{}` through it",
                    grant.id, grant.login, grant.collection
                );
            }
        }
        BreakGlassCommand::List { user } => {
            let grants = list(&vault, &user.login).await?;
            if json {
                output::json(&grants)?;
            } else {
                print_grants(&grants);
            }
        }
        BreakGlassCommand::Show { id, user } => {
            let grants = list(&vault, &user.login).await?;
            let grant = grants
                .into_iter()
                .find(|g| g.id == id)
                .with_context(|| format!("no grant {id} that `{}` may see", user.login))?;
            if json {
                output::json(&grant)?;
            } else {
                print_grant(&grant);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(vault: &Vault, login: &str) -> anyhow::Result<Vec<GrantInfo>> {
    let session = Session::user(vault, login).await?;
    session.act(vault, async |p| vault.list_break_glass(p).await).await?.context("cannot list the break-glass grants")
}

async fn decide(vault: &Vault, id: &str, login: Option<&str>, approve: bool, json: bool) -> anyhow::Result<()> {
    let session = Session::user_or_operator(vault, login).await?;
    let operator = session.is_operator();
    let verb = if approve { "approve" } else { "reject" };
    let grant = session
        .act(vault, async |p| vault.decide_break_glass(p, id, approve).await)
        .await?
        .map_err(|e| refused(e, operator, &format!("{verb} grant {id}"), "approve"))?;
    if json {
        output::json(&grant)?;
    } else if approve {
        println!(
            "grant {} approved: `{}` may read `{}` until {} (every read is audited with the grant)",
            grant.id,
            grant.login,
            grant.collection,
            output::maybe_timestamp(grant.expires_at)
        );
    } else {
        println!("grant {} rejected", grant.id);
    }
    Ok(())
}

/// The table leaves the reasons out: they may name people, and a list is easily shared.
fn print_grants(grants: &[GrantInfo]) {
    let rows = grants
        .iter()
        .map(|g| {
            vec![
                g.id.clone(),
                g.login.clone(),
                g.collection.clone(),
                g.minutes.to_string(),
                g.status.clone(),
                if g.active { "*".into() } else { String::new() },
                output::timestamp(g.requested_at),
                g.decided_by.clone().unwrap_or_default(),
                output::maybe_timestamp(g.expires_at),
            ]
        })
        .collect::<Vec<_>>();
    output::table(
        &["id", "login", "collection", "minutes", "status", "active", "requested at", "decided by", "expires at"],
        &rows,
    );
}

fn print_grant(g: &GrantInfo) {
    let rows = [
        ("id", g.id.clone()),
        ("login", g.login.clone()),
        ("collection", g.collection.clone()),
        ("minutes", g.minutes.to_string()),
        ("status", if g.active { format!("{} (active)", g.status) } else { g.status.clone() }),
        ("requested by", g.requested_by.clone()),
        ("requested at", output::timestamp(g.requested_at)),
        ("decided by", g.decided_by.clone().unwrap_or_default()),
        ("expires at", output::maybe_timestamp(g.expires_at)),
    ];
    output::table(&["field", "value"], &rows.iter().map(|(k, v)| vec![(*k).to_owned(), v.clone()]).collect::<Vec<_>>());
    println!("\nreason:\n{}", g.reason);
}
