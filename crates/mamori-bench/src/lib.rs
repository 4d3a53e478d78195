//! Benchmark and load-test helpers for mamori (not part of the product).
//!
//! Every figure the benchmarks report is a ratio against a baseline measured in the same run
//! on the same machine; this crate holds the baselines and the small tools the scripts under
//! `scripts/` drive:
//!
//! - `hello`: an axum hello-world server, the HTTP baseline for `scripts/bench-http.sh`;
//! - `gen_csv`: writes the synthetic customers CSV (`mamori_synth`);
//! - `plain_import`: the plain-SQLite import baseline (same parsed rows, no encryption);
//! - `import_search`: `Vault::import_csv` vs plain SQLite, then blind-index search latency vs
//!   a plaintext primary-key lookup, printed as markdown tables (see `BENCHMARKS.md`);
//! - `pg_import`: the same on PostgreSQL, against plain PostgreSQL and per-field `pgcrypto`;
//! - `authz_latency`, `token_latency`: authorization decisions, token validation and login,
//!   call by call, against raw baselines.
//!
//! All data is synthetic (`mamori_synth`): no real person is described anywhere.

use anyhow::Context;
use rusqlite::{Connection, TransactionBehavior, params};
use std::path::Path;
use std::time::{Duration, Instant};

/// The pragmas `mamori-store-sqlite` applies to its connections, so the baseline pays the
/// same durability (WAL, `synchronous = FULL`) and has the same page cache.
pub const MAMORI_PRAGMAS: &str = "PRAGMA foreign_keys = ON;
     PRAGMA synchronous = FULL;
     PRAGMA secure_delete = ON;
     PRAGMA cache_size = -65536;";

/// Opens (creating if needed) a plain SQLite database with mamori's pragmas and WAL.
pub fn open_plain(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("open {}", path.display()))?;
    conn.execute_batch(MAMORI_PRAGMAS)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "could not enable WAL (journal_mode={mode})");
    Ok(conn)
}

/// The plaintext baseline table: the nine CSV columns as TEXT, keyed by subject id.
pub const PLAIN_TABLE: &str = "CREATE TABLE IF NOT EXISTS customers (
    subject_id TEXT PRIMARY KEY, name TEXT, name_kana TEXT, birth_date TEXT, postal_code TEXT,
    address TEXT, phone TEXT, email TEXT, medical_history TEXT)";

/// Outcome of a timed bulk load.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub rows: u64,
    pub seconds: f64,
}

impl Load {
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.seconds.max(1e-9)
    }
}

/// The import baseline: parse the CSV (UTF-8 checked, as mamori does) and insert every row
/// into the plain table in one `BEGIN IMMEDIATE` transaction with one prepared statement.
/// The time covers parsing, inserting and the durable commit.
pub fn plain_import(csv_path: &Path, db_path: &Path) -> anyhow::Result<Load> {
    let mut conn = open_plain(db_path)?;
    conn.execute_batch(PLAIN_TABLE)?;
    let started = Instant::now();
    let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(csv_path)?);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(input);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut rows = 0u64;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO customers (subject_id, name, name_kana, birth_date, postal_code, address, phone, email,
             medical_history) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut record = csv::ByteRecord::new();
        while reader.read_byte_record(&mut record)? {
            anyhow::ensure!(record.len() == 9, "line {}: expected 9 columns", rows + 2);
            let mut f = [""; 9];
            for (slot, raw) in f.iter_mut().zip(record.iter()) {
                *slot = std::str::from_utf8(raw).context("CSV is not UTF-8")?;
            }
            stmt.execute(params![f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]])?;
            rows += 1;
        }
    }
    tx.commit()?;
    Ok(Load { rows, seconds: started.elapsed().as_secs_f64() })
}

/// The synthetic customers CSV as mamori's store rows, made without mamori's work (see
/// [`layout_floor_import`]): read as [`plain_import`] reads it (UTF-8 checked), with
/// "ciphertexts" that are the values padded to a sealed value's size, a constant wrapped
/// data key, and tokens of a fast non-cryptographic hash (as random as HMACs, for a B-tree)
/// on the four fields the customers schema indexes (`email` unique).
pub struct FloorRows {
    reader: csv::Reader<std::io::BufReader<std::fs::File>>,
    names: Vec<String>,
    hashers: (std::hash::RandomState, std::hash::RandomState),
    line: csv::ByteRecord,
    collection: mamori_store::CollectionRow,
    at: time::OffsetDateTime,
}

impl std::fmt::Debug for FloorRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloorRows").field("collection", &self.collection.name).finish_non_exhaustive()
    }
}

impl FloorRows {
    /// Nonce, tag and format byte of a sealed field value.
    const SEAL_OVERHEAD: usize = 29;
    /// Format byte, nonce, key and tag of a wrapped data key.
    const WRAPPED_DEK_LEN: usize = 61;
    const INDEXED: [(usize, bool); 4] = [(1, false), (2, false), (6, false), (7, true)];

    pub fn open(csv_path: &Path, collection: &mamori_store::CollectionRow) -> anyhow::Result<Self> {
        let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(csv_path)?);
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(input);
        let names = reader.headers()?.iter().map(str::to_owned).collect();
        Ok(Self {
            reader,
            names,
            hashers: (std::hash::RandomState::new(), std::hash::RandomState::new()),
            line: csv::ByteRecord::new(),
            collection: collection.clone(),
            at: time::OffsetDateTime::from_unix_timestamp(1_780_000_000)?,
        })
    }

    /// The next line's subject key and record; `None` at the end of the file.
    pub fn next_row(&mut self) -> anyhow::Result<Option<(mamori_store::SubjectKeyRow, mamori_store::RecordRow)>> {
        use std::hash::BuildHasher;
        if !self.reader.read_byte_record(&mut self.line)? {
            return Ok(None);
        }
        anyhow::ensure!(self.line.len() == 9, "expected 9 columns, found {}", self.line.len());
        let mut values = [""; 9];
        for (slot, raw) in values.iter_mut().zip(self.line.iter()) {
            *slot = std::str::from_utf8(raw).context("CSV is not UTF-8")?;
        }
        let mut fields = vec![1u8, 0, 8];
        for (name, value) in self.names.iter().zip(values).skip(1) {
            fields.push(name.len() as u8);
            fields.extend_from_slice(name.as_bytes());
            fields.extend_from_slice(&((value.len() + Self::SEAL_OVERHEAD) as u32).to_be_bytes());
            fields.extend_from_slice(value.as_bytes());
            fields.extend_from_slice(&[0; Self::SEAL_OVERHEAD]);
        }
        let tokens = Self::INDEXED
            .iter()
            .map(|&(column, unique)| {
                let mut token = self.hashers.0.hash_one((column, values[column])).to_le_bytes().to_vec();
                token.extend_from_slice(&self.hashers.1.hash_one((column, values[column])).to_le_bytes());
                mamori_store::IndexToken { token, unique }
            })
            .collect();
        let subject = values[0].to_owned();
        let key = mamori_store::SubjectKeyRow {
            subject: subject.clone(),
            kek_version: self.collection.kek_version,
            wrapped_dek: vec![7; Self::WRAPPED_DEK_LEN],
        };
        let record = mamori_store::RecordRow {
            id: mamori_core::ids::RecordId::generate(),
            collection_id: self.collection.id,
            subject,
            schema_version: self.collection.schema_version,
            fields,
            tokens,
            created_at: self.at,
            updated_at: self.at,
            department: None,
        };
        Ok(Some((key, record)))
    }
}

/// The floor of any import into mamori's layout: the same CSV, parsed as [`plain_import`]
/// parses it, written through the store's own import session (`Store::begin_import`) in
/// batches of 2,000 rows like the vault's import — one subject key, one record and four
/// blind-index entries per line, one transaction — but with no validation, no encryption
/// and no hashing ([`FloorRows`]), all on one thread. What mamori costs on top of this is its
/// own work; what this costs on top of [`plain_import`] is the layout (on SQLite, ten B-tree
/// entries per row instead of two).
///
/// `collection` must be empty.
pub async fn layout_floor_import(
    store: &dyn mamori_store::Store,
    csv_path: &Path,
    collection: &mamori_store::CollectionRow,
) -> anyhow::Result<Load> {
    const BATCH: usize = 2000;
    let started = Instant::now();
    let mut source = FloorRows::open(csv_path, collection)?;
    let mut session = store.begin_import(collection.id).await?;
    let mut rows = 0u64;
    loop {
        let (mut keys, mut records) = (Vec::with_capacity(BATCH), Vec::with_capacity(BATCH));
        while records.len() < BATCH {
            let Some((key, record)) = source.next_row()? else { break };
            keys.push(key);
            records.push(record);
        }
        if records.is_empty() {
            break;
        }
        rows += records.len() as u64;
        session.insert_subject_keys(keys).await?;
        session.insert_records(records).await?;
    }
    session.commit().await?;
    Ok(Load { rows, seconds: started.elapsed().as_secs_f64() })
}

/// Writes `rows` synthetic customers from `seed` to a new CSV file.
pub fn write_csv(path: &Path, rows: usize, seed: u64) -> anyhow::Result<()> {
    let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    mamori_synth::write_customers_csv(file, rows, seed)?;
    Ok(())
}

/// Latency distribution of a series of timed operations.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub count: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl Latency {
    /// Nearest-rank percentiles. Panics on an empty series.
    pub fn of(samples: &mut [Duration]) -> Self {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let rank = |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
        let total: Duration = samples.iter().sum();
        Self {
            count: samples.len(),
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: samples[samples.len() - 1],
            mean: total / samples.len() as u32,
        }
    }
}

/// p50, p99, p99.9 and max of a series of per-call latencies.
pub fn tail_percentiles(mut samples: Vec<Duration>) -> [Duration; 4] {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    [at(0.5), at(0.99), at(0.999), *samples.last().expect("samples")]
}

/// Calls `f` `warmup` times, then `calls` times each timed on its own: [`tail_percentiles`].
pub fn time_each(warmup: usize, calls: usize, mut f: impl FnMut()) -> [Duration; 4] {
    for _ in 0..warmup {
        f();
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        f();
        samples.push(start.elapsed());
    }
    tail_percentiles(samples)
}

/// Milliseconds with three decimals, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// Latency of one small durable SQLite commit (`INSERT` of one row, WAL,
/// `synchronous = FULL`): the floor under any operation that must be durable before it
/// answers, such as an audited read.
pub fn durable_commit_latency(db_path: &Path, count: usize) -> anyhow::Result<Latency> {
    let conn = open_plain(db_path)?;
    conn.execute_batch("CREATE TABLE IF NOT EXISTS probe (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)")?;
    let body = "x".repeat(300);
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.prepare_cached("INSERT INTO probe (body) VALUES (?1)")?.execute([&body])?;
        conn.execute_batch("COMMIT")?;
        samples.push(t.elapsed());
    }
    Ok(Latency::of(&mut samples))
}

/// Total size of the files in a directory (database, WAL, shared memory), in bytes.
pub fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Peak resident set size of this process so far (`VmHWM`), in KiB; `None` off Linux.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Current resident set size of this process (`VmRSS`), in KiB; `None` off Linux.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak resident set size (`VmHWM`) to the current size (Linux: `clear_refs` 5),
/// so that the peak of one phase can be read on its own. Returns whether it worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// Creates the synthetic `customers` collection in `vault` and a manager who may import
/// into it and read it in full; returns the manager.
pub async fn customers_and_manager(vault: &mamori_vault::Vault) -> anyhow::Result<mamori_vault::Principal> {
    let schema = mamori_core::schema::CollectionSchema::from_toml(mamori_synth::CUSTOMERS_SCHEMA_TOML)?;
    vault.create_collection(&mamori_vault::Principal::operator("bench"), &schema).await?;
    trained_manager(vault, "bench-manager").await
}

/// A manager `login` with valid training and a signed pledge (what full views need), logged
/// in through the real password path.
pub async fn trained_manager(vault: &mamori_vault::Vault, login: &str) -> anyhow::Result<mamori_vault::Principal> {
    use mamori_crypto::SecretString;
    const PASSWORD: &str = "Correct-Horse-42-Staple";
    let new = mamori_vault::NewUser {
        login: login.into(),
        display_name: login.into(),
        role: mamori_core::access::Role::Manager,
        password: Some(SecretString::new(PASSWORD.into())),
        must_change_password: false,
        training_valid_until: Some(vault.now() + time::Duration::days(365)),
        pledge_signed: true,
        ..Default::default()
    };
    vault.create_user(&mamori_vault::Principal::operator("bench"), new).await?;
    let session = vault.login(login, &SecretString::new(PASSWORD.into()), None).await?;
    Ok(vault.authenticate(&session.token, None).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        s.reverse();
        let l = Latency::of(&mut s);
        assert_eq!(l.p50, Duration::from_millis(50));
        assert_eq!(l.p95, Duration::from_millis(95));
        assert_eq!(l.p99, Duration::from_millis(99));
        assert_eq!(l.max, Duration::from_millis(100));
        assert_eq!(Latency::of(&mut [Duration::from_millis(3)]).p99, Duration::from_millis(3));
    }

    #[test]
    fn plain_import_loads_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("c.csv");
        write_csv(&csv, 250, 1).unwrap();
        let load = plain_import(&csv, &dir.path().join("plain.db")).unwrap();
        assert_eq!(load.rows, 250);
        let conn = open_plain(&dir.path().join("plain.db")).unwrap();
        let n: i64 = conn.query_row("SELECT count(*) FROM customers", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 250);
    }
}
