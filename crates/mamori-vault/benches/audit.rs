//! The audit trail's verification against raw SHA-256 of the same bytes, measured in the same
//! run (issue 6; see BENCHMARKS.md, session 7).
//!
//! A fresh SQLite store receives 100,000 `record.read` events shaped like the vault's (actor,
//! session, source, collection, record, subject, fields, policy, view) through the real
//! group-commit writer, with a signed checkpoint every 1,000 events. Then:
//!
//! - `audit_verify/mamori`: `verify_store`, i.e. what `mamori audit verify` does: read every
//!   row in pages of 1,000 (on every core at once, each page linked to the event before it),
//!   parse the event in place, recompute the chain hash, compare the indexed columns, check
//!   every checkpoint's ECDSA signature. Goal: ≥ 0.5× the baseline.
//! - `audit_verify/raw_sha256`: the baseline, SHA-256 over the same canonical event bytes,
//!   already in memory, as one stream.
//! - diagnostics, to see where the time goes: `chain_hash_in_memory` (the chain's SHA-256
//!   calls, one per event with its prefix), `parse_in_memory` (deserialising the events into
//!   `AuditEvent`), `parse_view_in_memory` (into the borrowed `AuditEventView` verification
//!   uses), `read_rows` (the store's pages of owned rows alone), `read_pages` (the packed
//!   pages verification reads) — all on one thread.
//!
//! `audited_change` (session 14): an account change committed with its audit event in one
//! durable transaction (`Store::apply_audited`, what `Vault::set_user_disabled` does) against
//! the same change and event as two transactions (what it did before), and against one raw
//! durable SQLite `UPDATE` of the same row (the floor: one commit, one fsync).
//!
//! Run: `cargo bench -p mamori-vault --bench audit`; the ratio table follows criterion's output.

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use mamori_core::audit::{AuditEvent, AuditEventView, GENESIS_HASH, Outcome, chain_hash};
use mamori_core::clock::{Clock, SystemClock};
use mamori_crypto::AuditSigningKey;
use mamori_store::Store;
use mamori_store_sqlite::SqliteStore;
use mamori_vault::{AuditLog, AuditSettings, verify_store};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

mod common;

const EVENTS: u64 = 100_000;
const BATCH: u64 = 1_000;
const INPUT: &str = "events_100000";

/// A read as `Vault::get_record` records it (ids made up, no personal values: events never
/// hold any).
fn read_event(clock: &dyn Clock, i: u64) -> AuditEvent {
    let mut e = AuditEvent::new(
        clock.now(),
        format!("user:0190c3a2-7b1e-7c4d-9a55-{:012x}", i % 50),
        "record.read",
        Outcome::Success,
    );
    e.session = Some(format!("{:016x}", i % 97));
    e.source = Some("127.0.0.1".into());
    e.collection = Some("customers".into());
    e.record = Some(format!("0190c3a2-8d4f-7e21-b6a0-{i:012x}"));
    e.subject = Some(format!("S{i:08}"));
    e.fields =
        ["name", "name_kana", "birth_date", "postal_code", "address", "phone", "email"].map(String::from).to_vec();
    e.policy = Some("builtin.manager-reads-department".into());
    e.reason = Some("view=masked".into());
    e
}

fn audit_verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Arc::new(AuditSigningKey::generate());
    let public = key.verifying_key();
    let store: Arc<dyn Store> =
        Arc::new(rt.block_on(SqliteStore::open(dir.path().join("mamori.db"))).expect("open store"));
    rt.block_on(async {
        let settings =
            AuditSettings { signing_key: Some(key), checkpoint_every_events: BATCH, ..AuditSettings::default() };
        let log = AuditLog::start_with(store.clone(), Arc::new(SystemClock), &settings);
        for batch in 0..EVENTS / BATCH {
            let events = (batch * BATCH..(batch + 1) * BATCH).map(|i| read_event(&SystemClock, i)).collect();
            log.record(events).await.expect("append");
        }
        log.checkpoint().await.expect("checkpoint");
    });
    // The same bytes, in memory, for the baselines.
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        loop {
            let page = store.read_audit(rows.len() as u64 + 1, 1000).await.expect("read");
            if page.is_empty() {
                break rows;
            }
            rows.extend(page);
        }
    });
    assert_eq!(rows.len() as u64, EVENTS);
    let bytes: u64 = rows.iter().map(|r| r.event_json.len() as u64).sum();
    println!("{EVENTS} events, {bytes} bytes of canonical JSON ({} bytes per event)", bytes / EVENTS);

    let mut group = c.benchmark_group("audit_verify");
    group.sampling_mode(SamplingMode::Flat).sample_size(10).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function(BenchmarkId::new("mamori", INPUT), |b| {
        b.iter(|| {
            let report = rt.block_on(verify_store(&store, Some(&public), None, None, &Arc::default())).expect("verify");
            assert!(report.ok && report.events == EVENTS, "{report:?}");
            report
        })
    });
    group.bench_function(BenchmarkId::new("raw_sha256", INPUT), |b| {
        b.iter(|| {
            let mut h = Sha256::new();
            for r in &rows {
                h.update(black_box(r.event_json.as_bytes()));
            }
            h.finalize()
        })
    });
    group.bench_function(BenchmarkId::new("chain_hash_in_memory", INPUT), |b| {
        b.iter(|| {
            let mut prev = GENESIS_HASH;
            for r in &rows {
                prev = chain_hash(&prev, r.seq, black_box(&r.event_json));
            }
            assert_eq!(prev, rows[rows.len() - 1].hash);
            prev
        })
    });
    group.bench_function(BenchmarkId::new("parse_in_memory", INPUT), |b| {
        b.iter(|| {
            for r in &rows {
                black_box(serde_json::from_str::<AuditEvent>(black_box(&r.event_json)).expect("event"));
            }
        })
    });
    group.bench_function(BenchmarkId::new("parse_view_in_memory", INPUT), |b| {
        b.iter(|| {
            for r in &rows {
                black_box(serde_json::from_str::<AuditEventView<'_>>(black_box(&r.event_json)).expect("event"));
            }
        })
    });
    // Reads every event in pages of 1,000 with `read`, which returns the last seq of a page.
    let read_all = |read: &dyn Fn(u64) -> Option<u64>| {
        let mut next = 1;
        while let Some(last) = read(next) {
            next = last + 1;
        }
        next
    };
    group.bench_function(BenchmarkId::new("read_pages", INPUT), |b| {
        b.iter(|| {
            read_all(&|from| {
                let page = rt.block_on(store.read_audit_page(from, 1000, false)).expect("read");
                page.get(page.len().wrapping_sub(1)).map(|r| r.seq)
            })
        })
    });
    group.bench_function(BenchmarkId::new("read_rows", INPUT), |b| {
        b.iter(|| read_all(&|from| rt.block_on(store.read_audit(from, 1000)).expect("read").last().map(|r| r.seq)))
    });
    // The floor under any reader: SQLite itself stepping through the rows, every byte looked
    // at, nothing copied, one thread.
    let raw = rusqlite::Connection::open_with_flags(
        dir.path().join("mamori.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("raw connection");
    raw.execute_batch("PRAGMA cache_size = -65536").expect("pragma");
    for (name, sql) in [
        (
            "raw_sqlite_all_columns",
            "SELECT seq, event_json, hash, at, actor, action, outcome, collection, record, subject FROM audit_events ORDER BY seq",
        ),
        ("raw_sqlite_event_and_hash", "SELECT seq, event_json, hash FROM audit_events ORDER BY seq"),
    ] {
        group.bench_function(BenchmarkId::new(name, INPUT), |b| {
            b.iter(|| {
                let mut stmt = raw.prepare_cached(sql).expect("prepare");
                let mut rows = stmt.query([]).expect("query");
                let mut touched = 0usize;
                while let Some(row) = rows.next().expect("step") {
                    for i in 0..row.as_ref().column_count() {
                        touched += match row.get_ref(i).expect("column") {
                            rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => t.len(),
                            _ => 1,
                        };
                    }
                }
                touched
            })
        });
    }
    group.finish();
}

/// One account change with its audit event, on a fresh SQLite store.
fn audited_change(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mamori.db");
    let store: Arc<dyn Store> = Arc::new(rt.block_on(SqliteStore::open(&path)).expect("open store"));
    let user = mamori_store::UserRow::new(
        mamori_core::ids::UserId::generate(),
        "bench".into(),
        "試験 利用者".into(),
        "staff".into(),
        "$argon2id$bench".into(),
        SystemClock.now(),
    );
    let id = user.id;
    rt.block_on(store.create_user(&user)).expect("user");
    let event = |i: u64| {
        let mut e = AuditEvent::new(SystemClock.now(), "user:admin", "user.disable", Outcome::Success);
        e.reason = Some(format!("user:{id} #{i}"));
        e
    };
    let step = |i: u64| mamori_store::AuditedChange::SetUserDisabled { id, disabled: i.is_multiple_of(2) };
    let mut group = c.benchmark_group("audited_change");
    let mut i = 0u64;
    group.bench_function(BenchmarkId::new("mamori", "one_step"), |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(store.apply_audited(&[step(i)], &[event(i)])).expect("apply")
        })
    });
    group.bench_function(BenchmarkId::new("change_then_append", "one_step"), |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(async {
                store.set_user_disabled(&id, i.is_multiple_of(2)).await.expect("change");
                store.append_audit(&[event(i)]).await.expect("append")
            })
        })
    });
    // The same durability settings as the store's writer (WAL, synchronous=FULL).
    let raw = rusqlite::Connection::open(&path).expect("raw connection");
    raw.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000")
        .expect("pragma");
    group.bench_function(BenchmarkId::new("raw_sqlite_update", "one_step"), |b| {
        b.iter(|| {
            i += 1;
            raw.execute(
                "UPDATE users SET disabled = ?1 WHERE id = ?2",
                rusqlite::params![i.is_multiple_of(2), id.as_bytes()],
            )
            .expect("update")
        })
    });
    group.finish();
}

fn main() {
    let dir = common::criterion_dir();
    let since = common::run_started(&dir, "audit");
    let mut c = common::criterion(&dir);
    audited_change(&mut c);
    audit_verify(&mut c);
    c.final_summary();
    if let Some(since) = since {
        common::print_ratios(
            &dir,
            since,
            &[
                ("audit_verify", INPUT, "raw_sha256", Some(0.5)),
                ("audit_verify", INPUT, "chain_hash_in_memory", None),
                ("audit_verify", INPUT, "parse_in_memory", None),
                ("audit_verify", INPUT, "parse_view_in_memory", None),
                ("audit_verify", INPUT, "read_rows", None),
                ("audit_verify", INPUT, "read_pages", None),
                ("audit_verify", INPUT, "raw_sqlite_all_columns", None),
                ("audit_verify", INPUT, "raw_sqlite_event_and_hash", None),
                ("audited_change", "one_step", "change_then_append", None),
                ("audited_change", "one_step", "raw_sqlite_update", None),
            ],
        );
    }
}
