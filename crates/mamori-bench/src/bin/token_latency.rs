//! Token validation and login cost (issue 4 point 10: token validation per request, goal
//! < 20 µs p99 excluding network; login cost), each next to baselines measured in the same
//! run on the same SQLite file.
//!
//! - `Vault::authenticate(&token, source)`, timed call by call: SHA-256 of the token, one
//!   read on the store's reader pool (session by token hash, then its user by id), the
//!   expiry, idle, disabled and validity checks, and the principal built from the rows.
//! - baselines: SHA-256 of the token; the same two `SELECT`s on a plain `rusqlite`
//!   connection to the same database file (mamori's pragmas), on this thread; the same
//!   inside `tokio::task::spawn_blocking` (what a hop to the blocking pool adds); and one
//!   primary-key `SELECT` of a one-row table.
//! - `Vault::login`: Argon2id verification (m = 19 MiB, t = 2, p = 1), the session written,
//!   the login recorded, the audit event made durable; baseline: the raw `argon2` crate
//!   verifying the same password against a hash with the same parameters.
//!
//! Run: `cargo run --release -p mamori-bench --bin token_latency -- [CALLS] [LOGINS]`
//! (defaults 100000 and 50).

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use mamori_core::clock::SystemClock;
use mamori_crypto::{MasterKey, SecretString};
use mamori_store_sqlite::SqliteStore;
use mamori_vault::{Vault, VaultConfig};
use rusqlite::OptionalExtension as _;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PASSWORD: &str = "Correct-Horse-42-Staple";
const LOGIN: &str = "bench-manager";
const SOURCE: &str = "127.0.0.1";

fn time_each(calls: usize, f: impl FnMut()) -> [Duration; 4] {
    mamori_bench::time_each((calls / 10).max(1), calls, f)
}

async fn time_each_async<F: std::future::Future<Output = ()>>(calls: usize, mut f: impl FnMut() -> F) -> [Duration; 4] {
    for _ in 0..(calls / 10).max(1) {
        f().await;
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        f().await;
        samples.push(start.elapsed());
    }
    mamori_bench::tail_percentiles(samples)
}

/// The store's two queries, on a plain connection: the session by token hash, then its user.
fn session_and_user(conn: &rusqlite::Connection, hash: &[u8; 32]) -> anyhow::Result<usize> {
    let session: Option<(Vec<u8>, i64, i64, i64, bool, bool)> = conn
        .prepare_cached(
            "SELECT user_id, created_at, expires_at, last_seen_at, password_change_only, mfa
             FROM sessions WHERE token_hash = ?1",
        )?
        .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .optional()?;
    let (user, ..) = session.context("no session")?;
    // Every column of the user, as the store reads it.
    let columns = conn.prepare_cached("SELECT * FROM users WHERE id = ?1")?.query_row([user], |r| {
        let n = r.as_ref().column_count();
        for i in 0..n {
            black_box(r.get_ref(i)?);
        }
        Ok(n)
    })?;
    Ok(columns)
}

fn row(name: &str, [p50, p99, p999, max]: [Duration; 4]) {
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    println!("| {name} | {:.2} | {:.2} | {:.2} | {:.2} |", micros(p50), micros(p99), micros(p999), micros(max));
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let calls: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let logins: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(50);

    let dir = tempfile::tempdir()?;
    let db = dir.path().join("mamori.db");
    let store = SqliteStore::open(&db).await?;
    let vault =
        Vault::open(Arc::new(store), &MasterKey::generate(), Arc::new(SystemClock), VaultConfig::default()).await?;
    mamori_bench::trained_manager(&vault, LOGIN).await?;
    let password = SecretString::new(PASSWORD.into());
    let session = vault.login(LOGIN, &password, Some(SOURCE.into())).await?;
    let token = session.token;
    let hash = token.hash();

    println!("### Token validation ({calls} calls each, one after another)");
    println!();
    println!("| path | p50 µs | p99 µs | p99.9 µs | max µs |");
    println!("|---|---:|---:|---:|---:|");
    let auth = time_each_async(calls, || async {
        let p = vault.authenticate(black_box(&token), Some(SOURCE.into())).await.expect("valid token");
        black_box(p);
    })
    .await;
    row("mamori `Vault::authenticate` (SQLite store)", auth);
    row(
        "baseline: SHA-256 of the token",
        time_each(calls, || {
            black_box(token.hash());
        }),
    );
    let conn = mamori_bench::open_plain(&db)?;
    row(
        "baseline: the same two `SELECT`s, plain rusqlite, same file, this thread",
        time_each(calls, || {
            black_box(session_and_user(&conn, black_box(&hash)).expect("session"));
        }),
    );
    let shared = Arc::new(Mutex::new(conn));
    let hop = time_each_async(calls, || {
        let shared = shared.clone();
        async move {
            let n = tokio::task::spawn_blocking(move || {
                let conn = shared.lock().unwrap_or_else(|e| e.into_inner());
                session_and_user(&conn, &hash).expect("session")
            })
            .await
            .expect("blocking task");
            black_box(n);
        }
    })
    .await;
    row("diagnostic: the same two `SELECT`s inside `spawn_blocking`", hop);
    let one = mamori_bench::open_plain(&dir.path().join("plain.db"))?;
    one.execute_batch("CREATE TABLE t (k BLOB PRIMARY KEY, v TEXT NOT NULL); INSERT INTO t VALUES (x'01', 'v')")?;
    row(
        "baseline: one primary-key `SELECT` of a one-row table, plain rusqlite",
        time_each(calls, || {
            let v: String = one
                .prepare_cached("SELECT v FROM t WHERE k = ?1")
                .and_then(|mut s| s.query_row([[1u8]], |r| r.get(0)))
                .expect("row");
            black_box(v);
        }),
    );
    println!();

    println!("### Login ({logins} logins each)");
    println!();
    println!("| path | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let login = time_each_async(logins, || async {
        let outcome = vault.login(LOGIN, black_box(&password), Some(SOURCE.into())).await.expect("login");
        black_box(outcome);
    })
    .await;
    println!("| mamori `Vault::login` | {:.2} | {:.2} | {:.2} |", ms(login[0]), ms(login[1]), ms(login[3]));
    let params = argon2::Params::new(19 * 1024, 2, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let phc = argon.hash_password(PASSWORD.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("{e}"))?.to_string();
    let raw = time_each(logins, || {
        let parsed = PasswordHash::new(&phc).expect("PHC string");
        assert!(argon.verify_password(black_box(PASSWORD.as_bytes()), &parsed).is_ok());
    });
    println!(
        "| baseline: raw `argon2` verify, Argon2id m=19456 t=2 p=1 | {:.2} | {:.2} | {:.2} |",
        ms(raw[0]),
        ms(raw[1]),
        ms(raw[3])
    );
    println!();
    let goal = auth[1] < Duration::from_micros(20);
    println!(
        "token validation p99 {:.2} µs: goal < 20 µs {}; login p50 ÷ raw Argon2id p50 = {:.2}×",
        auth[1].as_secs_f64() * 1e6,
        if goal { "met" } else { "not met" },
        login[0].as_secs_f64() / raw[0].as_secs_f64()
    );
    Ok(())
}
