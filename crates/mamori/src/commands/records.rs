use crate::cli::{RecordCommand, SubjectCommand, ViewArgs};
use crate::login::Session;
use crate::open::open_vault;
use crate::output;
use crate::settings::Settings;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mamori_core::ids::SubjectId;
use mamori_vault::{ImportProgress, ProgressFn, RecordView, VaultError, View};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// A spinner-style progress display for both import passes (the row count is not known in
/// advance without reading the file once more). Hidden when `visible` is false.
pub fn import_progress(visible: bool) -> (ProgressFn, ProgressBar) {
    let bar = if visible { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} rows ({per_sec}) {elapsed}").expect("valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let shown = bar.clone();
    let progress: ProgressFn = Arc::new(move |p: ImportProgress| {
        // After a bad row nothing more is written; the rest of the file is only checked.
        let msg = if p.phase == "validate" { "checking the rest (nothing will be imported)" } else { "importing" };
        if shown.message() != msg {
            shown.reset();
            shown.set_message(msg);
        }
        shown.set_position(p.rows);
    });
    (progress, bar)
}

pub async fn import(
    settings: &Settings,
    collection: &str,
    file: PathBuf,
    login: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(file.is_file(), "{} is not a readable file", file.display());
    let vault = open_vault(settings).await?;
    let session = Session::user(&vault, login).await?;
    let (progress, bar) = import_progress(!json);
    let result = vault.import_csv(session.principal(), collection, Arc::new(file), progress).await;
    bar.finish_and_clear();
    session.end(&vault).await?;
    match result {
        Ok(report) => {
            if json {
                output::json(&report)?;
            } else {
                println!(
                    "imported {} rows into `{}` ({} new subjects) in {:.2}s — {:.0} rows/s",
                    report.rows, report.collection, report.subjects_created, report.seconds, report.rows_per_second
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(VaultError::ImportRejected { errors, truncated }) => output::rejected("import", &errors, truncated, json),
        Err(e) => Err(e.into()),
    }
}

fn print_records(records: &[RecordView], json: bool) -> anyhow::Result<()> {
    if json {
        for r in records {
            output::json(r)?;
        }
        return Ok(());
    }
    for r in records {
        println!("{}  subject={}  schema v{}  ({:?} view)", r.id, r.subject_id, r.schema_version, r.view);
        output::table(
            &["field", "value"],
            &r.fields.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect::<Vec<_>>(),
        );
        println!();
    }
    Ok(())
}

/// Reads the searched value from stdin, or from a hidden prompt on a terminal.
pub fn read_search_value() -> anyhow::Result<mamori_crypto::SecretString> {
    let value = crate::input::line("value to search: ")?;
    anyhow::ensure!(!value.expose().trim().is_empty(), "no value to search for");
    Ok(value)
}

fn view(args: &ViewArgs) -> View {
    if args.full { View::Full } else { View::Masked }
}

pub async fn record(settings: &Settings, command: RecordCommand, json: bool) -> anyhow::Result<ExitCode> {
    let RecordCommand::Get { collection, id, view: shown, user } = command;
    let id = id.parse().context("the record id must be a UUID")?;
    let vault = open_vault(settings).await?;
    let session = Session::user(&vault, &user.login).await?;
    let result = vault.get_record(session.principal(), &collection, &id, view(&shown), shown.purpose.as_deref()).await;
    session.end(&vault).await?;
    print_records(&[result?], json)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn search(
    settings: &Settings,
    collection: &str,
    field: &str,
    value: &str,
    shown: &ViewArgs,
    login: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let vault = open_vault(settings).await?;
    let session = Session::user(&vault, login).await?;
    let result =
        vault.search(session.principal(), collection, field, value, view(shown), shown.purpose.as_deref()).await;
    session.end(&vault).await?;
    let records = result?;
    if !json {
        println!("{} record(s)", records.len());
    }
    print_records(&records, json)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn subject(settings: &Settings, command: SubjectCommand, json: bool) -> anyhow::Result<ExitCode> {
    let SubjectCommand::Erase { subject_id, user } = command;
    let subject = SubjectId::new(&subject_id)?;
    let vault = open_vault(settings).await?;
    let session = Session::user(&vault, &user.login).await?;
    let result = vault.erase_subject(session.principal(), &subject).await;
    session.end(&vault).await?;
    let cert = result?;
    if json {
        output::json(&cert)?;
    } else {
        println!("erasure certificate {}", cert.certificate_id);
        println!("  subject: {}\n  erased at: {}\n  by: {}", cert.subject_id, cert.erased_at, cert.erased_by);
        println!("  data keys destroyed: {}  records deleted: {}", cert.data_keys_destroyed, cert.records_deleted);
        println!("  method: {}", cert.method);
    }
    Ok(ExitCode::SUCCESS)
}
