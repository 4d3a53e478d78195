//! `mamori audit …`: verify, pubkey, checkpoint and prune act as the local operator; query and
//! review act as a user (an auditor or privacy officer), whose search is itself audited.

use crate::cli::{AuditCommand, AuditQueryArgs};
use crate::login::{Session, operator};
use crate::open::{load_signing_key, open_store, open_vault};
use crate::output;
use crate::settings::Settings;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use mamori_crypto::AuditVerifyingKey;
use mamori_vault::{AuditEntry, AuditFilter, VerifyProgress, VerifyReport};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Exit status of `audit verify` when anything is wrong.
pub(crate) const TAMPERED: u8 = 3;

pub async fn run(settings: &Settings, command: AuditCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { checkpoint_file, public_key } => {
            verify(settings, checkpoint_file.as_deref(), public_key.as_deref(), json).await
        }
        AuditCommand::Pubkey => pubkey(settings, json).await,
        AuditCommand::Checkpoint => {
            let vault = open_vault(settings).await?;
            match vault.checkpoint_audit(&operator()).await? {
                Some(c) if json => output::json(&c)?,
                Some(c) => println!("signed checkpoint at seq {} (head {}, key {})", c.seq, c.head_hash, c.key_id),
                None => bail!("no checkpoint was signed (is the audit signing key configured?)"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Query(args) => query(settings, *args, json).await,
        AuditCommand::Review { up_to, note, user } => {
            let vault = open_vault(settings).await?;
            let reviewer = Session::user(&vault, &user.login).await?;
            let result = vault.review_audit(reviewer.principal(), up_to, &note).await;
            reviewer.end(&vault).await?;
            let mark = result?;
            if json {
                output::json(&mark)?;
            } else {
                println!(
                    "recorded: administrator operations up to seq {} reviewed by {} (review event {})",
                    mark.reviewed_to, user.login, mark.seq
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Prune { dry_run } => {
            let vault = open_vault(settings).await?;
            let sinks = settings.audit.siem.sink_names();
            let report = vault.prune_audit(&operator(), settings.audit.retention_days, dry_run, &sinks).await?;
            if json {
                output::json(&report)?;
            } else {
                let cutoff = report.cutoff.format(&Rfc3339)?;
                match report.anchor_seq {
                    None => println!("nothing to prune: no signed checkpoint is older than {cutoff}{}", held(&report)),
                    Some(seq) if dry_run => println!(
                        "would delete {} events up to seq {seq} (older than {cutoff}){}",
                        report.events_deleted,
                        held(&report)
                    ),
                    Some(seq) => println!(
                        "deleted {} events up to seq {seq} (older than {cutoff}); a signed anchor keeps the rest verifiable",
                        report.events_deleted
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Why a prune may stop short: the SIEM sinks have not acknowledged later events yet.
fn held(report: &mamori_vault::PruneReport) -> String {
    report
        .siem_forwarded_to
        .map(|seq| format!(" and forwarded to every SIEM sink (acknowledged up to seq {seq})"))
        .unwrap_or_default()
}

/// Opens the store only: verifying needs the public key, not the master key, so an auditor
/// can run it on a copy of the database.
async fn verify(
    settings: &Settings,
    file: Option<&std::path::Path>,
    public_key: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let trusted = match public_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Some(AuditVerifyingKey::from_pem(&pem).with_context(|| format!("public key {}", path.display()))?)
        }
        None => load_signing_key(settings)?.map(|k| k.verifying_key()),
    };
    let store = open_store(settings, false).await?;
    let configured = settings.audit.checkpoint_file.as_deref();
    let progress = Arc::new(VerifyProgress::default());
    let bar = verify_bar(&store, &progress, !json).await;
    let report = mamori_vault::verify_store(&store, trusted.as_ref(), configured, file, &progress).await;
    bar.finish_and_clear();
    let report = report?;
    if json {
        output::json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(TAMPERED) })
}

/// A bar over the events in the log (from the first stored one to the head, known before
/// verifying starts), fed from `progress` by a ticker task; hidden when `visible` is false or
/// stderr is not a terminal. Best effort: a row that the lookups for its length trip over is
/// for verification to report, so a failed lookup only leaves the bar without a length.
async fn verify_bar(
    store: &Arc<dyn mamori_store::Store>,
    progress: &Arc<VerifyProgress>,
    visible: bool,
) -> ProgressBar {
    if !visible || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let first = store.read_audit(0, 1).await.ok().and_then(|rows| rows.first().map(|r| r.seq));
    let head = mamori_vault::audit_head_seq(&**store).await.ok();
    let bar = match (first, head) {
        (Some(first), Some(head)) => ProgressBar::new((head + 1).saturating_sub(first)),
        _ => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template("verifying [{bar:30}] {human_pos}/{human_len} events, {elapsed}")
            .expect("valid template"),
    );
    let (shown, progress) = (bar.clone(), progress.clone());
    tokio::spawn(async move {
        while !shown.is_finished() {
            shown.set_position(progress.events.load(std::sync::atomic::Ordering::Relaxed));
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    bar
}

fn print_report(r: &VerifyReport) {
    if r.ok {
        println!(
            "audit log OK: events {}..={} ({}), head {}, {} stored and {} external checkpoints verified{}",
            r.first_seq,
            r.head_seq,
            r.events,
            r.head_hash,
            r.checkpoints,
            r.external_checkpoints,
            r.signed_up_to.map(|s| format!(", signed up to seq {s}")).unwrap_or_default()
        );
    } else {
        let kind = r.kind.map(|k| serde_json::to_value(k).unwrap_or_default()).unwrap_or_default();
        println!(
            "audit log TAMPERED at seq {}: {} — {}",
            r.first_bad_seq.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
            kind.as_str().unwrap_or("problem"),
            r.problem.as_deref().unwrap_or("unknown problem")
        );
        for p in r.problems.iter().skip(1) {
            let kind = serde_json::to_value(p.kind).unwrap_or_default();
            let seq = p.seq.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
            println!("  also at seq {seq}: {} — {}", kind.as_str().unwrap_or("problem"), p.detail);
        }
    }
    for w in &r.warnings {
        println!("note: {w}");
    }
}

async fn pubkey(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(settings, false).await?;
    let key = match mamori_vault::stored_audit_key(&*store).await? {
        Some(key) => key,
        None => load_signing_key(settings)?.map(|k| k.verifying_key()).context("this installation has no audit key")?,
    };
    if json {
        output::json(&serde_json::json!({"key_id": key.key_id(), "public_key_pem": key.to_pem()}))?;
    } else {
        print!("{}", key.to_pem());
    }
    Ok(ExitCode::SUCCESS)
}

/// RFC 3339, or a bare date meaning midnight UTC.
fn parse_time(text: &str) -> anyhow::Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let date = time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
        .with_context(|| format!("`{text}` is neither RFC 3339 nor YYYY-MM-DD"))?;
    Ok(date.midnight().assume_utc())
}

enum Format {
    Table,
    Csv,
    Jsonl,
}

async fn query(settings: &Settings, args: AuditQueryArgs, json: bool) -> anyhow::Result<ExitCode> {
    let format = match (json, args.format.as_str()) {
        (true, _) | (_, "jsonl") => Format::Jsonl,
        (_, "table") => Format::Table,
        (_, "csv") => Format::Csv,
        (_, other) => bail!("unknown format `{other}` (table, csv or jsonl)"),
    };
    let mut filter = AuditFilter {
        from: args.from.as_deref().map(parse_time).transpose()?,
        until: args.until.as_deref().map(parse_time).transpose()?,
        actor: args.actor,
        login: args.actor_login,
        subject: args.subject,
        collection: args.collection,
        record: args.record,
        action: args.action,
        outcome: args.outcome.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?,
        failed_logins: args.failed_logins,
        admin_ops: args.admin_ops,
        after_seq: args.after_seq,
        limit: Some(args.limit),
    };
    let vault = open_vault(settings).await?;
    let session = Session::user(&vault, &args.user.login).await?;
    let p = session.principal();
    let mut entries = Vec::new();
    let mut last_review = None;
    let result = async {
        loop {
            let page = vault.query_audit(p, &filter).await?;
            entries.extend(page.events);
            last_review = last_review.take().or(page.last_review);
            match page.next_after_seq {
                Some(next) if args.all => filter.after_seq = next,
                _ => break Ok::<_, mamori_vault::VaultError>(()),
            }
        }
    }
    .await;
    session.end(&vault).await?;
    result?;
    match format {
        Format::Jsonl => {
            for e in &entries {
                output::json(e)?;
            }
        }
        Format::Csv => write_csv(&entries)?,
        Format::Table => {
            output::table(
                &["seq", "time (UTC)", "actor", "action", "outcome", "collection", "record", "subject", "detail"],
                &entries.iter().map(table_row).collect::<Vec<_>>(),
            );
            if let Some(r) = last_review {
                println!(
                    "last review: up to seq {} by {} at {}: {}",
                    r.reviewed_to,
                    r.reviewer_login.as_deref().unwrap_or(&r.reviewer),
                    r.at.format(&Rfc3339)?,
                    r.note
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn actor(e: &AuditEntry) -> String {
    e.login.clone().unwrap_or_else(|| e.event.actor.clone())
}

fn detail(e: &AuditEntry) -> String {
    let ev = &e.event;
    let mut parts = Vec::new();
    if let Some(r) = &ev.reason {
        parts.push(r.clone());
    }
    if let Some(p) = &ev.purpose {
        parts.push(format!("purpose={p}"));
    }
    if let Some(n) = ev.rows {
        parts.push(format!("rows={n}"));
    }
    if let Some(to) = ev.reviewed_to {
        parts.push(format!("reviewed_to={to}"));
    }
    if let Some(n) = &ev.note {
        parts.push(format!("note={n}"));
    }
    parts.join("; ")
}

fn table_row(e: &AuditEntry) -> Vec<String> {
    let ev = &e.event;
    vec![
        e.seq.to_string(),
        output::timestamp(ev.at),
        actor(e),
        ev.action.clone(),
        ev.outcome.as_str().to_owned(),
        ev.collection.clone().unwrap_or_default(),
        ev.record.clone().unwrap_or_default(),
        ev.subject.clone().unwrap_or_default(),
        detail(e),
    ]
}

/// A cell that a spreadsheet would take for a formula is prefixed with `'`.
fn csv_cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() }
}

fn write_csv(entries: &[AuditEntry]) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_writer(std::io::stdout().lock());
    out.write_record([
        "seq",
        "at",
        "actor",
        "login",
        "session",
        "source",
        "action",
        "outcome",
        "collection",
        "record",
        "subject",
        "fields",
        "rows",
        "purpose",
        "reason",
        "reviewed_to",
        "note",
        "hash",
    ])?;
    for e in entries {
        let ev = &e.event;
        let text = |v: &Option<String>| csv_cell(v.as_deref().unwrap_or(""));
        out.write_record([
            e.seq.to_string(),
            ev.at.format(&Rfc3339)?,
            csv_cell(&ev.actor),
            text(&e.login),
            text(&ev.session),
            text(&ev.source),
            csv_cell(&ev.action),
            ev.outcome.as_str().to_owned(),
            text(&ev.collection),
            text(&ev.record),
            text(&ev.subject),
            csv_cell(&ev.fields.join(" ")),
            ev.rows.map(|n| n.to_string()).unwrap_or_default(),
            text(&ev.purpose),
            text(&ev.reason),
            ev.reviewed_to.map(|n| n.to_string()).unwrap_or_default(),
            text(&ev.note),
            e.hash.clone(),
        ])?;
    }
    out.flush()?;
    Ok(())
}
