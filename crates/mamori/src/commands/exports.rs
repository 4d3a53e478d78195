//! `mamori export …` and `mamori shares combine`: the take-out workflow from the command
//! line (issue 9). The request itself comes as JSON from a file or stdin, never from argv,
//! where `ps` would show a searched value or a recipient's name.

use crate::cli::{ExportCommand, SharesCommand};
use crate::input;
use crate::login::Session;
use crate::open::open_vault;
use crate::output;
use crate::settings::Settings;
use anyhow::Context;
use mamori_vault::{ExportInfo, ExportRequest, Principal, Settlement, Vault};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Logs in as `login`, runs `f`, logs out; a refusal becomes an error naming `what`.
async fn as_user<T>(
    vault: &Vault,
    login: &str,
    what: &str,
    f: impl AsyncFnOnce(&Principal) -> mamori_vault::Result<T>,
) -> anyhow::Result<T> {
    let session = Session::user(vault, login).await?;
    session.act(vault, f).await?.map_err(|e| anyhow::Error::new(e).context(format!("cannot {what}")))
}

pub async fn run(settings: &Settings, command: ExportCommand, json: bool) -> anyhow::Result<ExitCode> {
    // Read the request before anything else: a typo in it should not cost a login.
    let request: Option<ExportRequest> = match &command {
        ExportCommand::Request { spec, .. } => {
            let text = input::text(spec.as_deref(), "export request (JSON)")?;
            Some(
                serde_json::from_str(&text)
                    .context("the export request is not valid JSON of the ExportRequest shape")?,
            )
        }
        _ => None,
    };
    let vault = open_vault(settings).await?;
    match command {
        ExportCommand::Request { user, .. } => {
            let request = request.context("no request")?;
            let info =
                as_user(&vault, &user.login, "request the export", async |p| vault.request_export(p, &request).await)
                    .await?;
            show(&info, json)?;
            if !json {
                for w in &info.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "\nanother account with the approve right decides with\n  mamori export approve {} --login <login>",
                    info.id
                );
            }
        }
        ExportCommand::Approve { id, confirm_bulk, user } => {
            let info = as_user(&vault, &user.login, &format!("approve export {id}"), async |p| {
                vault.decide_export(p, &id, true, confirm_bulk).await
            })
            .await?;
            show(&info, json)?;
        }
        ExportCommand::Reject { id, user } => {
            let info = as_user(&vault, &user.login, &format!("reject export {id}"), async |p| {
                vault.decide_export(p, &id, false, false).await
            })
            .await?;
            show(&info, json)?;
        }
        ExportCommand::Cancel { id, user } => {
            let info = as_user(&vault, &user.login, &format!("cancel export {id}"), async |p| {
                vault.cancel_export(p, &id).await
            })
            .await?;
            show(&info, json)?;
        }
        ExportCommand::List { user } => {
            let list = as_user(&vault, &user.login, "list exports", async |p| vault.list_exports(p).await).await?;
            if json {
                output::json(&list)?;
            } else {
                print_list(&list);
            }
        }
        ExportCommand::Show { id, user } => {
            let info =
                as_user(&vault, &user.login, &format!("show export {id}"), async |p| vault.get_export(p, &id).await)
                    .await?;
            show(&info, json)?;
        }
        ExportCommand::Password { id, user } => {
            let password = as_user(&vault, &user.login, &format!("show the password of export {id}"), async |p| {
                vault.export_password(p, &id).await
            })
            .await?;
            if json {
                output::json(&serde_json::json!({ "password": password.as_str() }))?;
            } else {
                println!("{}", password.as_str());
                eprintln!("send this password over a different channel than the file (e.g. by phone)");
            }
        }
        ExportCommand::Download { id, out, user } => {
            anyhow::ensure!(out.is_dir(), "{} is not a directory", out.display());
            let export = as_user(&vault, &user.login, &format!("download export {id}"), async |p| {
                vault.download_export(p, &id).await
            })
            .await?;
            if !export.held.is_empty() {
                if json {
                    output::json(&serde_json::json!({
                        "export_id": export.export_id, "rows": export.rows, "withheld": export.withheld,
                        "shares": export.held, "warnings": export.warnings,
                    }))?;
                } else {
                    println!(
                        "{} records ({} withheld by policy) split into shares, held for:",
                        export.rows, export.withheld
                    );
                    for s in &export.held {
                        println!("  share {}: {}", s.share, s.custodian);
                    }
                    println!("each custodian fetches their own with\n  mamori export fetch-share {id} --login <login>");
                    for w in &export.warnings {
                        eprintln!("warning: {w}");
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut written = Vec::new();
            for f in &export.files {
                let path = out.join(&f.name);
                write_new(&path, &f.bytes)?;
                written.push(path.display().to_string());
            }
            if json {
                output::json(&serde_json::json!({
                    "export_id": export.export_id, "files": written, "rows": export.rows, "withheld": export.withheld,
                    "encrypted": export.encrypted, "download": export.download,
                    "downloads_allowed": export.downloads_allowed, "warnings": export.warnings,
                }))?;
            } else {
                for path in &written {
                    println!("wrote {path}");
                }
                let care = match (export.encrypted, export.files.len()) {
                    (true, _) => String::new(),
                    (false, 1) => " — UNENCRYPTED, handle with care".into(),
                    (false, n) => {
                        format!(" — {n} shares: together they restore the file, so give each to its own custodian now")
                    }
                };
                println!(
                    "{} records ({} withheld by policy), download {} of {}{care}",
                    export.rows, export.withheld, export.download, export.downloads_allowed
                );
                for w in &export.warnings {
                    eprintln!("warning: {w}");
                }
            }
        }
        ExportCommand::FetchShare { id: None, user, .. } => {
            let waiting =
                as_user(&vault, &user.login, "list the shares held for you", async |p| vault.shares_for_me(p).await)
                    .await?;
            if json {
                output::json(&waiting)?;
            } else {
                let rows: Vec<Vec<String>> = waiting
                    .iter()
                    .map(|s| {
                        vec![
                            s.export_id.clone(),
                            s.collection.clone(),
                            s.requested_by.clone(),
                            format!("{} of {} (any {} restore)", s.share, s.of, s.threshold),
                            output::maybe_timestamp(s.fetch_until),
                        ]
                    })
                    .collect();
                output::table(&["export", "collection", "requested by", "share", "fetch until"], &rows);
            }
        }
        ExportCommand::FetchShare { id: Some(id), out, user } => {
            anyhow::ensure!(out.is_dir(), "{} is not a directory", out.display());
            let file = as_user(&vault, &user.login, &format!("fetch your share of export {id}"), async |p| {
                vault.fetch_export_share(p, &id).await
            })
            .await?;
            let path = out.join(&file.name);
            write_new(&path, &file.bytes)?;
            if json {
                output::json(&serde_json::json!({ "export_id": id, "file": path.display().to_string() }))?;
            } else {
                println!("wrote {} — keep it apart from the other shares", path.display());
            }
        }
        ExportCommand::Return { id, user } => {
            let how = Settlement::Return { note: None };
            let info = as_user(&vault, &user.login, &format!("record the return of export {id}"), async |p| {
                vault.settle_export(p, &id, &how).await
            })
            .await?;
            show(&info, json)?;
        }
        ExportCommand::Dispose { id, method, user } => {
            let how = Settlement::Dispose { method };
            let info = as_user(&vault, &user.login, &format!("record the disposal of export {id}"), async |p| {
                vault.settle_export(p, &id, &how).await
            })
            .await?;
            show(&info, json)?;
        }
        ExportCommand::Ledger { id, user } => {
            let lines = as_user(&vault, &user.login, "read the take-out ledger", async |p| {
                vault.takeout_ledger(p, id.as_deref()).await
            })
            .await?;
            if json {
                output::json(&lines)?;
            } else {
                let rows: Vec<Vec<String>> = lines
                    .iter()
                    .map(|l| {
                        vec![
                            l.seq.to_string(),
                            output::timestamp(l.at),
                            l.kind.clone(),
                            l.export_id.clone().unwrap_or_default(),
                            l.actor.clone(),
                            l.rows.to_string(),
                            l.detail.to_string(),
                        ]
                    })
                    .collect();
                output::table(&["seq", "at", "kind", "export", "by", "rows", "detail"], &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a new file readable by its owner only; never overwrites.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {} (it must not exist)", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub fn shares(command: SharesCommand, json: bool) -> anyhow::Result<ExitCode> {
    let SharesCommand::Combine { shares, out } = command;
    let mut files = Vec::with_capacity(shares.len());
    for path in &shares {
        files.push(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    }
    let refs: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
    let restored = mamori_export::combine(&refs).context("cannot restore the file from these shares")?;
    write_new(&out, &restored.plain)?;
    if json {
        output::json(
            &serde_json::json!({ "file": out.display().to_string(), "label": restored.label, "bytes": restored.plain.len() }),
        )?;
    } else {
        println!("restored {} ({} bytes; exported as {})", out.display(), restored.plain.len(), restored.label);
    }
    Ok(ExitCode::SUCCESS)
}

fn show(info: &ExportInfo, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(info);
    }
    let protection = match &info.protection {
        mamori_vault::Protection::Split { threshold, shares, custodians } if custodians.is_empty() => {
            format!("split ({threshold} of {shares})")
        }
        mamori_vault::Protection::Split { threshold, shares, custodians } => {
            format!("split ({threshold} of {shares}; custodians {})", custodians.join(", "))
        }
        other => other.kind().to_owned(),
    };
    let rows = [
        ("id", info.id.clone()),
        ("collection", info.collection.clone()),
        ("requested by", info.requested_by.clone()),
        ("requested at", output::timestamp(info.requested_at)),
        ("fields", info.fields.join(", ")),
        (
            "records",
            format!(
                "{}{}",
                info.rows,
                if info.over_limit {
                    " (above the hard limit)"
                } else if info.bulk {
                    " (bulk)"
                } else {
                    ""
                }
            ),
        ),
        ("purpose", info.purpose.clone()),
        ("format", format!("{:?}", info.format).to_lowercase()),
        ("protection", protection),
        ("status", if info.overdue { format!("{} (OVERDUE)", info.status) } else { info.status.clone() }),
        ("decided by", info.decided_by.clone().unwrap_or_default()),
        ("download until", output::maybe_timestamp(info.download_until)),
        ("downloads", format!("{} of {}", info.downloads_used, info.downloads_allowed)),
        ("due", output::timestamp(info.due_at)),
    ];
    output::table(&["field", "value"], &rows.iter().map(|(k, v)| vec![(*k).to_owned(), v.clone()]).collect::<Vec<_>>());
    if !info.shares.is_empty() {
        println!();
        let shares: Vec<Vec<String>> = info
            .shares
            .iter()
            .map(|s| {
                vec![s.share.to_string(), s.custodian.clone(), s.state.clone(), output::maybe_timestamp(s.ended_at)]
            })
            .collect();
        output::table(&["share", "custodian", "state", "since"], &shares);
    }
    Ok(())
}

fn print_list(list: &[ExportInfo]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|x| {
            vec![
                x.id.clone(),
                x.collection.clone(),
                x.requested_by.clone(),
                x.rows.to_string(),
                x.protection.kind().to_owned(),
                if x.overdue { format!("{} (OVERDUE)", x.status) } else { x.status.clone() },
                format!("{}/{}", x.downloads_used, x.downloads_allowed),
                output::timestamp(x.due_at),
            ]
        })
        .collect();
    output::table(&["id", "collection", "requested by", "records", "protection", "status", "downloads", "due"], &rows);
}
