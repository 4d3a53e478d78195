//! Issue 9's benchmark, in one process and one run: exporting N records (default 100,000)
//! of six fields to a password-protected XLSX, against writing the same plaintext XLSX.
//!
//! - **plain XLSX**: the same values (generated, never read from the vault) written with
//!   `mamori_export::write_xlsx` — the baseline;
//! - **encrypted XLSX**: the same, plus ECMA-376 agile encryption (`encrypt_ooxml`) — the
//!   file format's own cost, which the goal (≥ 0.5× the baseline) is about;
//! - **mamori download**: `Vault::download_export` of an approved request for the same
//!   records: every record read from SQLite, re-authorised, decrypted, audited as a read
//!   (N audit events, group-committed), written and encrypted — what a user waits for.
//!
//! Usage: `export_xlsx [ROWS]`. Work files go to a temporary directory under
//! `$MAMORI_BENCH_TMP` (default: the system temp dir), removed at the end.

use anyhow::Context;
use mamori_bench::write_csv;
use mamori_core::clock::SystemClock;
use mamori_crypto::MasterKey;
use mamori_store_sqlite::SqliteStore;
use mamori_vault::{
    ExportFilter, ExportFormat, ExportRequest, ImportProgress, ProgressFn, Protection, Vault, VaultConfig,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

const SEED: u64 = 2026;
const FIELDS: [&str; 6] = ["name", "name_kana", "birth_date", "postal_code", "address", "phone"];
/// Best of this many runs for the in-memory baselines (they take about a second each).
const RUNS: usize = 3;

fn best_of(runs: usize, mut f: impl FnMut() -> anyhow::Result<usize>) -> anyhow::Result<(f64, usize)> {
    let mut best = f64::MAX;
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        bytes = f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((best, bytes))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows: usize = match std::env::args().nth(1) {
        Some(s) => s.replace(['_', ','], "").parse().with_context(|| format!("not a count: {s}"))?,
        None => 100_000,
    };
    let parent = std::env::var_os("MAMORI_BENCH_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let root = tempfile::Builder::new().prefix("mamori-bench-export-").tempdir_in(&parent)?;

    // The baselines: the same six values per person, straight from the generator.
    let mut table = mamori_export::Table::with_capacity(FIELDS.iter().map(|f| (*f).to_owned()).collect(), rows)?;
    for p in mamori_synth::Generator::new(SEED).take(rows) {
        table.push_row(vec![p.name, p.name_kana, p.birth_date, p.postal_code, p.address, p.phone])?;
    }
    let password = mamori_export::generate_password();
    let (plain_s, plain_bytes) = best_of(RUNS, || Ok(mamori_export::write_xlsx(&table, "customers")?.len()))?;
    let (enc_s, enc_bytes) = best_of(RUNS, || {
        let package = mamori_export::write_xlsx(&table, "customers")?;
        Ok(mamori_export::encrypt_ooxml(&package, &password)?.len())
    })?;
    drop(table);

    // mamori: import the people, ask, approve (a second manager), download.
    let csv = root.path().join("customers.csv");
    write_csv(&csv, rows, SEED)?;
    let store = SqliteStore::open(root.path().join("mamori.db")).await?;
    let mut config = VaultConfig::default();
    config.takeout.warn_rows_per_day = u64::MAX / 2;
    config.takeout.hard_rows_per_day = u64::MAX / 2;
    let vault = Vault::open(Arc::new(store), &MasterKey::generate(), Arc::new(SystemClock), config).await?;
    let requester = mamori_bench::customers_and_manager(&vault).await?;
    let managers = [requester, mamori_bench::trained_manager(&vault, "bench-approver").await?];
    let progress: ProgressFn = Arc::new(|_: ImportProgress| {});
    let t = Instant::now();
    vault.import_csv(&managers[0], "customers", Arc::new(csv), progress).await?;
    eprintln!("imported {rows} rows in {:.1}s", t.elapsed().as_secs_f64());
    let request = ExportRequest {
        collection: "customers".into(),
        fields: FIELDS.iter().map(|f| (*f).to_owned()).collect(),
        filter: ExportFilter::All {},
        purpose: "契約内容の確認".into(),
        recipient: "ベンチマーク".into(),
        due_date: None,
        format: ExportFormat::Xlsx,
        protection: Protection::Password {},
    };
    let t = Instant::now();
    let x = vault.request_export(&managers[0], &request).await?;
    let request_s = t.elapsed().as_secs_f64();
    vault.decide_export(&managers[1], &x.id, true, true).await?;
    let t = Instant::now();
    let file = vault.download_export(&managers[0], &x.id).await?;
    let download_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(file.rows == rows as u64, "exported {} rows", file.rows);
    let vault_bytes = file.files[0].bytes.len();

    let rate = |s: f64| rows as f64 / s;
    println!("rows                     {rows}");
    println!("plain XLSX (baseline)    {plain_s:.3} s  {:>9.0} rows/s  {plain_bytes} bytes", rate(plain_s));
    println!(
        "encrypted XLSX           {enc_s:.3} s  {:>9.0} rows/s  {enc_bytes} bytes  ratio {:.2}",
        rate(enc_s),
        plain_s / enc_s
    );
    println!(
        "mamori download          {download_s:.3} s  {:>9.0} rows/s  {vault_bytes} bytes  ratio {:.2}",
        rate(download_s),
        plain_s / download_s
    );
    println!("mamori request (count)   {request_s:.3} s");
    Ok(())
}
