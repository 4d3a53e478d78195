//! Issue 8, point 5: mamori on PostgreSQL against plain PostgreSQL and against the
//! do-it-yourself baseline many teams use today (`pgcrypto`'s `pgp_sym_encrypt` per field),
//! all in one run on one database.
//!
//! Import (rows/s, parsing the same CSV file in every path):
//! - mamori: `Vault::import_csv` on a `PostgresStore` (validate, encrypt every field, blind
//!   index, binary COPY, commit);
//! - plain INSERT: the same rows as 9 TEXT columns, multi-row `INSERT … SELECT FROM unnest`
//!   of 1,000 rows per statement, one transaction;
//! - plain COPY: the same rows through binary `COPY FROM STDIN`, one transaction;
//! - layout floor: the same rows through the store's own import session (`subject_keys`,
//!   `records`, four `blind_index` rows each; binary COPYs in batches of 2,000, one
//!   transaction), but no validation, encryption or hashing (`mamori_bench::layout_floor_import`):
//!   the best any import into mamori's layout can do;
//! - pgcrypto: the batched INSERT with `pgp_sym_encrypt(value, key, options)` on each of the
//!   8 non-key columns, with the default options (iterated and salted S2K, AES-128) and
//!   tuned (`s2k-mode=1, cipher-algo=aes256`), on a smaller number of rows (it is slow).
//!
//! Point read (sequential, one client, random existing rows): mamori `Vault::get_record` full
//! view (authorised and durably audited), plain `SELECT … WHERE subject_id = $1`,
//! `pgp_sym_decrypt` of the 8 columns with the tuned options, and — the floor under any read
//! that must be audited durably before it answers — one committed single-row INSERT.
//!
//! Usage: `pg_import [ROWS] [READS] [PGCRYPTO_ROWS]` (defaults 100000, 2000, 2000), database
//! from `MAMORI_BENCH_DATABASE_URL` or `MAMORI_TEST_DATABASE_URL`. Works in fresh schemas
//! `mamori_bench_*`, dropped at the end.

use anyhow::Context;
use mamori_bench::{Latency, layout_floor_import, ms, write_csv};
use mamori_core::clock::SystemClock;
use mamori_crypto::MasterKey;
use mamori_store_postgres::PostgresStore;
use mamori_vault::{ImportProgress, ProgressFn, Vault, VaultConfig, View};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

const SEED: u64 = 2026;
const BATCH: usize = 1000;
const COLUMNS: &str = "subject_id, name, name_kana, birth_date, postal_code, address, phone, email, medical_history";
/// The symmetric key of the pgcrypto baseline: a fixed benchmark value, never a real secret.
const PGCRYPTO_KEY: &str = "mamori-benchmark-key-0123456789abcdef";
const TUNED: &str = "s2k-mode=1, cipher-algo=aes256";
const DEFAULT_OPTIONS: &str = "";

fn count(arg: Option<&String>, default: usize) -> anyhow::Result<usize> {
    arg.map_or(Ok(default), |s| s.replace(['_', ','], "").parse().with_context(|| format!("not a count: {s}")))
}

/// The CSV's rows, as the baselines insert them (parsing is part of every timed path).
fn read_rows(csv_path: &Path, limit: usize) -> anyhow::Result<Vec<[String; 9]>> {
    let mut reader = csv::Reader::from_path(csv_path)?;
    let mut rows = Vec::new();
    for record in reader.records().take(limit) {
        let record = record?;
        anyhow::ensure!(record.len() == 9, "expected 9 columns");
        rows.push(std::array::from_fn(|i| record[i].to_owned()));
    }
    Ok(rows)
}

async fn connect(url: &str, schema: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path = {schema}")).await?;
    Ok(client)
}

fn table_sql(table: &str, column_type: &str) -> String {
    let columns: Vec<String> = COLUMNS.split(", ").skip(1).map(|c| format!("{c} {column_type}")).collect();
    format!("CREATE TABLE {table} (subject_id TEXT PRIMARY KEY, {})", columns.join(", "))
}

/// Batched multi-row INSERT of `rows` into `table`; `wrap` turns a column expression into
/// what is stored (identity for plain text, `pgp_sym_encrypt(…)` for pgcrypto).
async fn insert_batched(
    client: &mut Client,
    table: &str,
    csv_path: &Path,
    rows: usize,
    wrap: impl Fn(&str) -> String,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let data = read_rows(csv_path, rows)?;
    let select: Vec<String> = COLUMNS.split(", ").skip(1).map(|c| wrap(&format!("u.{c}"))).collect();
    let unnest: Vec<String> = (1..=9).map(|i| format!("${i}::text[]")).collect();
    let sql = format!(
        "INSERT INTO {table} ({COLUMNS}) SELECT u.subject_id, {} FROM unnest({}) AS u({COLUMNS})",
        select.join(", "),
        unnest.join(", ")
    );
    let tx = client.transaction().await?;
    let statement = tx.prepare(&sql).await?;
    for chunk in data.chunks(BATCH) {
        let columns: Vec<Vec<&str>> = (0..9).map(|i| chunk.iter().map(|r| r[i].as_str()).collect()).collect();
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            columns.iter().map(|c| c as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        tx.execute(&statement, &params).await?;
    }
    tx.commit().await?;
    Ok(data.len() as f64 / started.elapsed().as_secs_f64())
}

async fn copy_plain(client: &mut Client, csv_path: &Path, rows: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let data = read_rows(csv_path, rows)?;
    let tx = client.transaction().await?;
    let sink = tx.copy_in(&format!("COPY plain_copy ({COLUMNS}) FROM STDIN (FORMAT binary)")).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &[Type::TEXT; 9]));
    for row in &data {
        let values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            row.iter().map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await?;
    tx.commit().await?;
    Ok(data.len() as f64 / started.elapsed().as_secs_f64())
}

async fn timed_reads<F: Future<Output = anyhow::Result<()>>>(
    ids: &[String],
    mut read: impl FnMut(String) -> F,
) -> anyhow::Result<Latency> {
    for id in ids.iter().take(100) {
        read(id.clone()).await?;
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(ids.len());
    for id in ids {
        let t = Instant::now();
        read(id.clone()).await?;
        samples.push(t.elapsed());
    }
    Ok(Latency::of(&mut samples))
}

/// [`timed_reads`] of a prepared one-row `SELECT` of the 9 columns by subject id.
async fn timed_selects(client: &Client, select: &tokio_postgres::Statement, ids: &[String]) -> anyhow::Result<Latency> {
    timed_reads(ids, |id| async move {
        anyhow::ensure!(client.query_one(select, &[&id]).await?.len() == 9, "a row of 9 columns");
        Ok(())
    })
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rows = count(args.first(), 100_000)?;
    let reads = count(args.get(1), 2_000)?.min(rows);
    let crypto_rows = count(args.get(2), 2_000)?.min(rows);
    let url = std::env::var("MAMORI_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("MAMORI_TEST_DATABASE_URL"))
        .context("set MAMORI_BENCH_DATABASE_URL (or MAMORI_TEST_DATABASE_URL) to a PostgreSQL database")?;
    let run = format!("{:08x}", rand::random::<u32>());
    let (mamori_schema, base_schema, floor_schema) =
        (format!("mamori_bench_{run}"), format!("mamori_bench_{run}_base"), format!("mamori_bench_{run}_floor"));
    let work = tempfile::tempdir()?;
    let csv_path = work.path().join("customers.csv");
    write_csv(&csv_path, rows, SEED)?;

    let mut base = connect(&url, &base_schema).await?;
    base.batch_execute("CREATE EXTENSION IF NOT EXISTS pgcrypto SCHEMA public").await?;
    base.batch_execute(&format!("SET search_path = {base_schema}, public")).await?;
    for (table, column_type) in
        [("plain_insert", "TEXT"), ("plain_copy", "TEXT"), ("crypto_default", "BYTEA"), ("crypto_tuned", "BYTEA")]
    {
        base.batch_execute(&table_sql(table, column_type)).await?;
    }

    eprintln!("plain INSERT of {rows} rows…");
    let plain_insert = insert_batched(&mut base, "plain_insert", &csv_path, rows, |c| c.to_owned()).await?;
    eprintln!("plain COPY of {rows} rows…");
    let plain_copy = copy_plain(&mut base, &csv_path, rows).await?;
    eprintln!("mamori import of {rows} rows…");
    let store = PostgresStore::connect_with_schema(&url, &mamori_schema).await?;
    let vault =
        Vault::open(Arc::new(store), &MasterKey::generate(), Arc::new(SystemClock), VaultConfig::default()).await?;
    let manager = mamori_bench::customers_and_manager(&vault).await?;
    let progress: ProgressFn = Arc::new(|_: ImportProgress| {});
    let started = Instant::now();
    let report = vault.import_csv(&manager, "customers", Arc::new(csv_path.clone()), progress).await?;
    let mamori_import = report.rows as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(report.rows == rows as u64, "mamori imported {} rows", report.rows);
    eprintln!("layout floor of {rows} rows…");
    let floor = {
        let store = PostgresStore::connect_with_schema(&url, &floor_schema).await?;
        let vault =
            Vault::open(Arc::new(store), &MasterKey::generate(), Arc::new(SystemClock), VaultConfig::default()).await?;
        mamori_bench::customers_and_manager(&vault).await?;
        let collection = vault.store().get_collection("customers").await?.context("customers")?;
        layout_floor_import(&**vault.store(), &csv_path, &collection).await?.rows_per_second()
    };
    let pgcrypto =
        |options: &'static str| move |c: &str| format!("pgp_sym_encrypt({c}, '{PGCRYPTO_KEY}', '{options}')");
    eprintln!("pgcrypto (default options) of {crypto_rows} rows…");
    let crypto_default =
        insert_batched(&mut base, "crypto_default", &csv_path, crypto_rows, pgcrypto(DEFAULT_OPTIONS)).await?;
    eprintln!("pgcrypto (tuned) of {crypto_rows} rows…");
    let crypto_tuned = insert_batched(&mut base, "crypto_tuned", &csv_path, crypto_rows, pgcrypto(TUNED)).await?;

    // Point reads of random existing rows.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let collection = vault.store().get_collection("customers").await?.context("customers")?;
    let mut record_ids = Vec::with_capacity(rows);
    let mut after = None;
    loop {
        let page = vault.store().page_record_ids(collection.id, after.as_ref(), 10_000).await?;
        let Some(last) = page.last().copied() else { break };
        record_ids.extend(page);
        after = Some(last);
    }
    let pick: Vec<String> = record_ids.choose_multiple(&mut rng, reads).map(|id| id.to_string()).collect();
    eprintln!("{reads} point reads each…");
    let mamori_read = timed_reads(&pick, |id| {
        let (vault, manager) = (vault.clone(), manager.clone());
        async move {
            let id = id.parse()?;
            vault.get_record(&manager, "customers", &id, View::Full, None).await?;
            Ok(())
        }
    })
    .await?;
    let subjects: Vec<String> =
        read_rows(&csv_path, rows)?.choose_multiple(&mut rng, reads).map(|r| r[0].clone()).collect();
    let plain_select = base.prepare(&format!("SELECT {COLUMNS} FROM plain_insert WHERE subject_id = $1")).await?;
    let plain_read = timed_selects(&base, &plain_select, &subjects).await?;
    let crypto_subjects: Vec<String> = read_rows(&csv_path, crypto_rows)?
        .choose_multiple(&mut rng, reads.min(crypto_rows))
        .map(|r| r[0].clone())
        .collect();
    let decrypt: Vec<String> =
        COLUMNS.split(", ").skip(1).map(|c| format!("pgp_sym_decrypt({c}, '{PGCRYPTO_KEY}', '{TUNED}')")).collect();
    let crypto_select = base
        .prepare(&format!("SELECT subject_id, {} FROM crypto_tuned WHERE subject_id = $1", decrypt.join(", ")))
        .await?;
    let crypto_read = timed_selects(&base, &crypto_select, &crypto_subjects).await?;

    // The floor under any read that is audited durably before it answers: one small
    // committed INSERT (the same server, `synchronous_commit` as configured).
    base.batch_execute("CREATE TABLE commit_probe (n BIGINT)").await?;
    let probe = base.prepare("INSERT INTO commit_probe VALUES ($1)").await?;
    let numbers: Vec<String> = (0..reads).map(|n| n.to_string()).collect();
    let commit_floor = timed_reads(&numbers, |n| {
        let (base, stmt) = (&base, &probe);
        async move {
            base.execute(stmt, &[&n.parse::<i64>()?]).await?;
            Ok(())
        }
    })
    .await?;

    base.batch_execute(&format!(
        "DROP SCHEMA {base_schema} CASCADE; DROP SCHEMA {mamori_schema} CASCADE; DROP SCHEMA {floor_schema} CASCADE"
    ))
    .await?;

    println!("### mamori on PostgreSQL: import of {rows} rows (pgcrypto paths: {crypto_rows} rows)");
    println!();
    println!("| path | rows/s | mamori ÷ path |");
    println!("|---|---:|---:|");
    for (name, rate) in [
        ("mamori `Vault::import_csv` (encrypt + blind index + COPY)", mamori_import),
        ("plain PostgreSQL, batched INSERT of 9 TEXT columns", plain_insert),
        ("plain PostgreSQL, binary COPY", plain_copy),
        ("floor: mamori's tables and COPYs, no validation, encryption or hashing", floor),
        ("pgcrypto `pgp_sym_encrypt` per field, default options", crypto_default),
        ("pgcrypto `pgp_sym_encrypt` per field, `s2k-mode=1, cipher-algo=aes256`", crypto_tuned),
    ] {
        println!("| {name} | {rate:.0} | {:.3}× |", mamori_import / rate);
    }
    println!();
    let verdict = |met: bool| if met { "met" } else { "not met" };
    println!(
        "goals: mamori ≥ 0.5× plain INSERT: **{:.3}×** ({}); mamori ≥ 5× tuned pgcrypto: **{:.1}×** ({})",
        mamori_import / plain_insert,
        verdict(mamori_import / plain_insert >= 0.5),
        mamori_import / crypto_tuned,
        verdict(mamori_import / crypto_tuned >= 5.0)
    );
    println!(
        "layout floor ÷ plain INSERT: {:.3}× (the best any import into this layout can do); mamori ÷ floor: {:.3}×",
        floor / plain_insert,
        mamori_import / floor
    );
    println!();
    println!("### Point reads ({reads} sequential reads of random existing rows, one client)");
    println!();
    println!("| path | p50 ms | p99 ms | mean ms | reads/s | mamori ÷ path (reads/s) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let per_second = |l: &Latency| 1.0 / l.mean.as_secs_f64();
    for (name, l) in [
        ("mamori `Vault::get_record`, full view, audited", &mamori_read),
        ("plain PostgreSQL `SELECT` by primary key", &plain_read),
        ("pgcrypto `pgp_sym_decrypt` of 8 columns (tuned)", &crypto_read),
        ("floor of a durably audited read: one committed single-row INSERT", &commit_floor),
    ] {
        println!(
            "| {name} | {} | {} | {} | {:.0} | {:.3}× |",
            ms(l.p50),
            ms(l.p99),
            ms(l.mean),
            per_second(l),
            per_second(&mamori_read) / per_second(l)
        );
    }
    Ok(())
}
