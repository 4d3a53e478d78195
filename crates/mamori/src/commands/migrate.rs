//! `mamori migrate --from DIR --to postgres://…`: moves a SQLite installation to PostgreSQL.
//! The store layer copies (one transaction on the target, counted on both sides before it
//! commits); this command checks the master key first, shows a progress bar per table,
//! records the move in the target's audit trail and verifies that trail.

use crate::login::operator;
use crate::open::{load_master_key, load_signing_key, open_store, open_vault};
use crate::output;
use crate::settings::Settings;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mamori_store::{CopyProgress, copy_store};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

/// One progress bar per table, each left on screen when its table is done.
struct TableBars {
    visible: bool,
    current: Mutex<Option<(&'static str, ProgressBar)>>,
}

impl TableBars {
    fn show(&self, p: CopyProgress) {
        if !self.visible {
            return;
        }
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_none_or(|(table, _)| *table != p.table) {
            if let Some((_, done)) = current.take() {
                done.finish();
            }
            let bar = ProgressBar::new(p.total);
            bar.set_style(
                ProgressStyle::with_template("{msg:20} [{bar:30}] {pos}/{len} rows ({per_sec}) {elapsed}")
                    .expect("valid template"),
            );
            bar.set_message(p.table);
            *current = Some((p.table, bar));
        }
        if let Some((_, bar)) = current.as_ref() {
            bar.set_position(p.rows);
        }
    }

    fn finish(&self) {
        if let Some((_, bar)) = self.current.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish();
        }
    }
}

pub async fn run(settings: &Settings, from: PathBuf, to: String, json: bool) -> anyhow::Result<ExitCode> {
    let source_settings = Settings { data_dir: from.clone(), database_url: None, ..settings.clone() };
    let target_settings = Settings { database_url: Some(to), ..source_settings.clone() };
    // Everything that could stop the audit of the move is checked before anything is copied.
    let master = load_master_key(&source_settings)?;
    let trusted = load_signing_key(&source_settings)?.map(|k| k.verifying_key());
    let source = open_store(&source_settings, false).await?;
    mamori_vault::check_master_key(&*source, &master).await.context("the master key does not open the source")?;
    let target = open_store(&target_settings, true).await?;

    let bars = TableBars { visible: !json, current: Mutex::new(None) };
    let copied = copy_store(&*source, &*target, &|p| bars.show(p)).await;
    bars.finish();
    let tables = copied.context("copying into PostgreSQL (nothing was committed)")?;

    let vault = open_vault(&target_settings).await?;
    let seq = vault.record_store_migration(&operator(), &from.display().to_string(), &tables).await?;
    vault.flush_audit_checkpoint().await?;
    let configured = settings.audit.checkpoint_file.as_deref();
    let report = mamori_vault::verify_store(&target, trusted.as_ref(), configured, None, &Default::default()).await?;

    let total: u64 = tables.iter().map(|t| t.rows).sum();
    if json {
        let tables: Vec<_> = tables.iter().map(|t| serde_json::json!({"table": t.table, "rows": t.rows})).collect();
        output::json(&serde_json::json!({
            "tables": tables,
            "rows": total,
            "audit_event": seq,
            "audit_ok": report.ok,
            "audit_head_seq": report.head_seq,
        }))?;
    } else {
        println!("copied {total} rows in {} tables; recorded as audit event {seq}", tables.len());
        println!(
            "audit log on the target: {}",
            if report.ok { "OK" } else { report.problem.as_deref().unwrap_or("NOT OK") }
        );
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(super::audit::TAMPERED) })
}
