//! Targets 1 and 3 of the benchmark issue, in one process and one run:
//!
//! 1. bulk import: `Vault::import_csv` of a synthetic CSV file into a fresh SQLite store vs
//!    the same parsed rows inserted into a plain SQLite table (one transaction, one prepared
//!    statement, the same pragmas: WAL, `synchronous = FULL`);
//! 3. blind-index search latency once the collection holds all rows: `Vault::search` on the
//!    `email` field (masked view, one hit) for random existing people vs a primary-key lookup
//!    of the same people in the plaintext table.
//!
//! Usage: `import_search [ROWS] [SEARCHES]` (defaults 1000000 and 10000). Work files go to a
//! temporary directory under `$MAMORI_BENCH_TMP` (default: the system temp dir), removed at
//! the end: the CSV in `input/`, the vault in `vault/`, the baseline in `plain/`.

use anyhow::Context;
use mamori_bench::{
    Latency, dir_size, durable_commit_latency, layout_floor_import, ms, open_plain, peak_rss_kib, plain_import,
    reset_peak_rss, rss_kib, write_csv,
};
use mamori_core::clock::SystemClock;
use mamori_crypto::MasterKey;
use mamori_store_sqlite::SqliteStore;
use mamori_vault::{ImportProgress, ProgressFn, Vault, VaultConfig, VaultError, View};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Seed of the generated people (the demo's seed).
const SEED: u64 = 2026;
/// Seed of the choice of people to look up.
const PICK_SEED: u64 = 7;
const WARM_UP: usize = 100;

fn parse_count(arg: Option<&String>, default: usize) -> anyhow::Result<usize> {
    match arg {
        None => Ok(default),
        Some(s) => s.replace(['_', ','], "").parse().with_context(|| format!("not a count: {s}")),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / (1024.0 * 1024.0))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rows = parse_count(args.first(), 1_000_000)?;
    let searches = parse_count(args.get(1), 10_000)?.min(rows);
    anyhow::ensure!(rows > 0 && searches > 0, "ROWS and SEARCHES must be positive");
    let parent = std::env::var_os("MAMORI_BENCH_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let root = tempfile::Builder::new().prefix("mamori-bench-").tempdir_in(&parent)?;
    let (input, vault_dir, plain_dir, floor_dir) =
        (root.path().join("input"), root.path().join("vault"), root.path().join("plain"), root.path().join("floor"));
    for d in [&input, &vault_dir, &plain_dir, &floor_dir] {
        std::fs::create_dir(d)?;
    }

    // The input file, outside the data directory (synthetic people only).
    let csv_path = input.join("customers.csv");
    let t = Instant::now();
    write_csv(&csv_path, rows, SEED)?;
    let csv_bytes = std::fs::metadata(&csv_path)?.len();
    eprintln!("wrote {rows} rows ({} MiB) in {:.1}s", mib(csv_bytes), t.elapsed().as_secs_f64());

    // Baseline import.
    let plain_db = plain_dir.join("plain.db");
    let plain = plain_import(&csv_path, &plain_db)?;
    anyhow::ensure!(plain.rows == rows as u64, "baseline loaded {} rows", plain.rows);
    eprintln!("plain SQLite: {:.1}s, {:.0} rows/s", plain.seconds, plain.rows_per_second());

    // The layout floor: the store's own import session, none of mamori's own work (see
    // `layout_floor_import`), in a fresh vault whose collection exists and is empty.
    let floor = {
        let store = SqliteStore::open(floor_dir.join("mamori.db")).await?;
        let vault =
            Vault::open(Arc::new(store), &MasterKey::generate(), Arc::new(SystemClock), VaultConfig::default()).await?;
        mamori_bench::customers_and_manager(&vault).await?;
        let collection = vault.store().get_collection("customers").await?.context("customers")?;
        layout_floor_import(&**vault.store(), &csv_path, &collection).await?
    };
    anyhow::ensure!(floor.rows == rows as u64, "layout floor loaded {} rows", floor.rows);
    eprintln!("layout floor: {:.1}s, {:.0} rows/s", floor.seconds, floor.rows_per_second());

    // mamori import, through the real path: a fresh SQLite store, a manager's session.
    let store = SqliteStore::open(vault_dir.join("mamori.db")).await?;
    let vault =
        Vault::open(Arc::new(store), &MasterKey::generate(), Arc::new(SystemClock), VaultConfig::default()).await?;
    let manager = mamori_bench::customers_and_manager(&vault).await?;

    let progress: ProgressFn = Arc::new(|_: ImportProgress| {});
    let rss_before = rss_kib();
    let peak_reset = reset_peak_rss();
    let t = Instant::now();
    let report = match vault.import_csv(&manager, "customers", Arc::new(csv_path.clone()), progress).await {
        Ok(r) => r,
        Err(VaultError::ImportRejected { errors, .. }) => {
            anyhow::bail!("import rejected: {:?}", &errors[..errors.len().min(5)])
        }
        Err(e) => return Err(e.into()),
    };
    let mamori_seconds = t.elapsed().as_secs_f64();
    let import_peak = peak_rss_kib().filter(|_| peak_reset);
    anyhow::ensure!(report.rows == rows as u64, "mamori imported {} rows", report.rows);
    let mamori_rps = rows as f64 / mamori_seconds;
    eprintln!("mamori: {mamori_seconds:.1}s, {mamori_rps:.0} rows/s");

    // The WAL as the import's single transaction left it (pages spilled from the import
    // connection's page cache are appended to the WAL again each time they are written). The
    // baseline's WAL is gone: its only connection closed, which checkpoints and deletes it.
    let mamori_wal = std::fs::metadata(vault_dir.join("mamori.db-wal")).map(|m| m.len()).unwrap_or(0);

    // Sizes right after the import (before the searches add audit events), after a full
    // checkpoint so that pages are not counted both in the WAL and in the file.
    for db in [vault_dir.join("mamori.db"), plain_db.clone(), floor_dir.join("mamori.db")] {
        open_plain(&db)?.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    let (mamori_size, plain_size) = (dir_size(&vault_dir)?, dir_size(&plain_dir)?);

    // The people to look up: a random sample in random order, and a separate warm-up sample.
    let mut rng = rand::rngs::StdRng::seed_from_u64(PICK_SEED);
    let mut measured_idx: Vec<usize> = rand::seq::index::sample(&mut rng, rows, searches).into_vec();
    measured_idx.shuffle(&mut rng);
    let warm_idx: Vec<usize> = rand::seq::index::sample(&mut rng, rows, WARM_UP.min(rows)).into_vec();
    let mut wanted: HashMap<usize, usize> = HashMap::new();
    for &i in measured_idx.iter().chain(&warm_idx) {
        let slot = wanted.len();
        wanted.entry(i).or_insert(slot);
    }
    let mut people: Vec<(String, String)> = vec![(String::new(), String::new()); wanted.len()];
    for (i, person) in mamori_synth::Generator::new(SEED).take(rows).enumerate() {
        if let Some(&slot) = wanted.get(&i) {
            people[slot] = (person.subject_id, person.email);
        }
    }
    let pick =
        |indices: &[usize]| -> Vec<(String, String)> { indices.iter().map(|i| people[wanted[i]].clone()).collect() };
    let (warm_up, measured) = (pick(&warm_idx), pick(&measured_idx));

    // mamori: blind-index search, masked view, exactly one hit each.
    let search = |email: String| {
        let (vault, manager) = (vault.clone(), manager.clone());
        async move { vault.search(&manager, "customers", "email", &email, View::Masked, None).await }
    };
    for (_, email) in &warm_up {
        search(email.clone()).await?;
    }
    let mut samples = Vec::with_capacity(measured.len());
    for (subject, email) in &measured {
        let t = Instant::now();
        let found = search(email.clone()).await?;
        samples.push(t.elapsed());
        anyhow::ensure!(found.len() == 1 && &found[0].subject_id == subject, "search for {subject} found {found:?}");
    }
    let mamori_search = Latency::of(&mut samples);

    // Baseline: primary-key lookup of the same people in the plaintext table.
    let conn = open_plain(&plain_db)?;
    let lookup = |subject: &str| -> anyhow::Result<Vec<String>> {
        let mut stmt = conn.prepare_cached(
            "SELECT subject_id, name, name_kana, birth_date, postal_code, address, phone, email, medical_history
             FROM customers WHERE subject_id = ?1",
        )?;
        Ok(stmt.query_row([subject], |r| (0..9).map(|i| r.get::<_, String>(i)).collect())?)
    };
    for (subject, _) in &warm_up {
        lookup(subject)?;
    }
    let mut samples = Vec::with_capacity(measured.len());
    for (subject, email) in &measured {
        let t = Instant::now();
        let row = lookup(subject)?;
        samples.push(t.elapsed());
        anyhow::ensure!(&row[7] == email, "plain lookup of {subject} returned another row");
    }
    let plain_search = Latency::of(&mut samples);
    drop(conn);

    // Context for the search figure: the floor of any read that must be durably audited
    // before it answers (one small SQLite commit with the same pragmas, on the same disk).
    let commit = durable_commit_latency(&root.path().join("probe.db"), 1000)?;

    let ratio = mamori_rps / plain.rows_per_second();
    let verdict = |met: bool| if met { "met" } else { "not met" };

    println!("### Import of {rows} rows ({} MiB CSV)", mib(csv_bytes));
    println!();
    println!("| path | seconds | rows/s | on disk (MiB) |");
    println!("|---|---:|---:|---:|");
    println!(
        "| baseline: plain SQLite, 9 TEXT columns, 1 transaction, prepared INSERT | {:.2} | {:.0} | {} |",
        plain.seconds,
        plain.rows_per_second(),
        mib(plain_size)
    );
    println!(
        "| mamori `Vault::import_csv` (validate + encrypt + blind index + commit) | {mamori_seconds:.2} | {mamori_rps:.0} | {} |",
        mib(mamori_size)
    );
    println!(
        "| floor: mamori's tables and statements, no validation, encryption or hashing | {:.2} | {:.0} | {} |",
        floor.seconds,
        floor.rows_per_second(),
        mib(dir_size(&floor_dir)?)
    );
    println!();
    println!(
        "layout floor/baseline rows/s: {:.3}× (the best any import into this layout can do); mamori/floor: {:.3}×",
        floor.rows_per_second() / plain.rows_per_second(),
        mamori_rps / floor.rows_per_second()
    );
    println!(
        "ratio mamori/baseline rows/s: **{ratio:.3}×** (goal ≥ 0.3×: {}); size ratio {:.2}×",
        verdict(ratio >= 0.3),
        mamori_size as f64 / plain_size as f64
    );
    println!(
        "WAL written by mamori's import transaction: {} MiB, {:.1}× the database it produced",
        mib(mamori_wal),
        mamori_wal as f64 / mamori_size as f64
    );
    if let (Some(before), Some(all)) = (rss_before, import_peak) {
        println!("RSS of this process: {} MiB before the import, peak {} MiB during it", before / 1024, all / 1024);
    }
    println!();
    println!(
        "### Search latency at {rows} records ({searches} lookups of random existing people, after {} warm-up lookups)",
        warm_up.len()
    );
    println!();
    println!("| path | p50 ms | p95 ms | p99 ms | max ms | mean ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    let row = |name: &str, l: &Latency| {
        println!("| {name} | {} | {} | {} | {} | {} |", ms(l.p50), ms(l.p95), ms(l.p99), ms(l.max), ms(l.mean));
    };
    row("baseline: plain SQLite primary-key lookup (9 TEXT columns)", &plain_search);
    row("mamori `Vault::search` on `email`, masked view, 1 hit (audited)", &mamori_search);
    row("context: one durable 1-row SQLite commit (WAL, synchronous=FULL)", &commit);
    println!();
    let p99_ratio = mamori_search.p99.as_secs_f64() / plain_search.p99.as_secs_f64();
    println!(
        "mamori p99 / baseline p99: **{p99_ratio:.0}×** slower; mamori p99 {} ms (goal < 5 ms: {})",
        ms(mamori_search.p99),
        verdict(mamori_search.p99 < Duration::from_millis(5))
    );
    if let Some(kib) = peak_rss_kib() {
        println!();
        println!(
            "(peak RSS of this whole benchmark process: {} MiB — the CLI import is measured on its own by scripts/bench-import.sh)",
            kib / 1024
        );
    }
    Ok(())
}
