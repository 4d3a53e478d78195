//! `mamori policy …`: the Cedar policy versions and their four-eyes workflow (004-V-1-22-a:
//! one administrator cannot both propose and put into force a change of who may see what).
//! Listing, showing, proposing and dry runs act as the local operator unless `--login` is
//! given (auditors may read too). Approving and rejecting need a logged-in account other
//! than the proposer: the vault refuses the operator, and audits the attempt.

use crate::cli::PolicyCommand;
use crate::login::Session;
use crate::open::open_vault;
use crate::output;
use crate::settings::Settings;
use anyhow::Context;
use mamori_vault::{PolicyChange, PolicyVersionInfo, VaultError};
use serde::Serialize;
use std::process::ExitCode;

/// Longest summary shown in a table cell (the rest is in `policy show` and `--json`).
const SUMMARY_CELL: usize = 60;

pub async fn run(settings: &Settings, command: PolicyCommand, json: bool) -> anyhow::Result<ExitCode> {
    let vault = open_vault(settings).await?;
    match command {
        PolicyCommand::List { actor } => {
            let session = Session::user_or_operator(&vault, actor.login.as_deref()).await?;
            let versions = session
                .act(&vault, async |p| vault.list_policy_versions(p).await)
                .await?
                .context("cannot list the policy versions")?;
            if json {
                output::json(&versions)?;
            } else {
                print_versions(&versions);
            }
        }
        PolicyCommand::Show { version, actor } => {
            let session = Session::user_or_operator(&vault, actor.login.as_deref()).await?;
            let (info, policies) = session
                .act(&vault, async |p| vault.policy_version(p, version).await)
                .await?
                .with_context(|| match version {
                    Some(v) => format!("cannot show policy version {v}"),
                    None => "cannot show the policy version in force".into(),
                })?;
            if json {
                output::json(&PolicyDocument { info, policies })?;
            } else {
                // The text alone on stdout, so that `policy show > mine.cedar` is ready to edit.
                eprintln!(
                    "# policy version {} ({}{})",
                    info.version,
                    info.status,
                    if info.active { ", in force" } else { "" }
                );
                print!("{policies}");
                if !policies.ends_with('\n') {
                    println!();
                }
            }
        }
        PolicyCommand::Propose { file, summary, actor } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let session = Session::user_or_operator(&vault, actor.login.as_deref()).await?;
            let info = session
                .act(&vault, async |p| vault.propose_policy(p, &text, &summary).await)
                .await?
                .with_context(|| format!("the policies in {} were not proposed", file.display()))?;
            if json {
                output::json(&info)?;
            } else {
                println!(
                    "proposed policy version {} (against version {}); nothing changes until another account \
                     approves it:\n  mamori policy dry-run {0} --collection <name>\n  mamori policy approve {0} --login <login>",
                    info.version,
                    info.base_version.unwrap_or_default()
                );
            }
        }
        PolicyCommand::DryRun { version, collection, actor } => {
            let session = Session::user_or_operator(&vault, actor.login.as_deref()).await?;
            let changes = session
                .act(&vault, async |p| vault.policy_dry_run(p, version, &collection).await)
                .await?
                .with_context(|| format!("cannot dry-run policy version {version} on `{collection}`"))?;
            if json {
                output::json(&changes)?;
            } else {
                print_changes(version, &collection, &changes);
            }
        }
        PolicyCommand::Approve { version, actor } => {
            decide(&vault, version, actor.login.as_deref(), true, json).await?
        }
        PolicyCommand::Reject { version, actor } => {
            decide(&vault, version, actor.login.as_deref(), false, json).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn decide(
    vault: &mamori_vault::Vault,
    version: u64,
    login: Option<&str>,
    approve: bool,
    json: bool,
) -> anyhow::Result<()> {
    let session = Session::user_or_operator(vault, login).await?;
    let operator = session.is_operator();
    let verb = if approve { "approve" } else { "reject" };
    let info = session
        .act(vault, async |p| vault.decide_policy(p, version, approve).await)
        .await?
        .map_err(|e| refused(e, operator, &format!("{verb} policy version {version}"), "policy.manage"))?;
    if json {
        output::json(&info)?;
    } else if approve {
        println!("policy version {} approved; it is now in force", info.version);
    } else {
        println!("policy version {} rejected", info.version);
    }
    Ok(())
}

/// Explains a refused decision. The vault answers only "not permitted" (and records the
/// exact reason in the audit log); the rule behind it is the same for every decision.
pub(super) fn refused(e: VaultError, operator: bool, what: &str, right: &str) -> anyhow::Error {
    let rule = match (&e, operator) {
        (VaultError::Forbidden, true) => format!(
            "the local operator cannot {what}: a decision needs a logged-in account other than the one who asked \
             (four-eyes, 004-V-1-22-a); pass --login"
        ),
        (VaultError::Forbidden, false) => format!(
            "cannot {what}: a decision needs an account with the `{right}` right, other than the one who asked \
             (four-eyes, 004-V-1-22-a)"
        ),
        _ => format!("cannot {what}"),
    };
    anyhow::Error::new(e).context(rule)
}

/// `policy show --json`: the version's details and its text (as the HTTP API returns it).
#[derive(Serialize)]
struct PolicyDocument {
    #[serde(flatten)]
    info: PolicyVersionInfo,
    policies: String,
}

fn print_versions(versions: &[PolicyVersionInfo]) {
    let rows = versions
        .iter()
        .map(|v| {
            vec![
                v.version.to_string(),
                v.status.clone(),
                if v.active { "*".into() } else { String::new() },
                v.proposed_by.clone(),
                output::timestamp(v.proposed_at),
                v.decided_by.clone().unwrap_or_default(),
                output::maybe_timestamp(v.decided_at),
                summary_cell(&v.summary),
            ]
        })
        .collect::<Vec<_>>();
    output::table(
        &["version", "status", "active", "proposed by", "proposed at", "decided by", "decided at", "summary"],
        &rows,
    );
}

/// The first line of a summary, cut to fit a table.
fn summary_cell(summary: &str) -> String {
    let first = summary.lines().next().unwrap_or_default();
    let more = summary.lines().nth(1).is_some() || first.chars().count() > SUMMARY_CELL;
    let cell: String = first.chars().take(SUMMARY_CELL).collect();
    if more { format!("{cell}…") } else { cell }
}

fn print_changes(version: u64, collection: &str, changes: &[PolicyChange]) {
    if changes.is_empty() {
        println!("version {version} changes no account's rights on `{collection}`");
        return;
    }
    // The vault decides both sets for an ordinary situation: a weekday at 10:00, from
    // loopback, with a second factor.
    println!("version {version} compared with the policies in force, on `{collection}` (weekday 10:00, MFA):");
    let rows = changes
        .iter()
        .map(|c| {
            vec![
                c.login.clone(),
                c.role.to_string(),
                c.department.clone().unwrap_or_default(),
                if c.after { "gains".into() } else { "loses".into() },
                c.action.clone(),
                c.on.clone(),
            ]
        })
        .collect::<Vec<_>>();
    output::table(&["login", "role", "department", "change", "action", "on"], &rows);
}
