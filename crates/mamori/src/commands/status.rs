//! `mamori status [--json]`: is the logging pipeline working (002-S-11-d)? It opens the store
//! only — no master key, no vault, no audit event — so monitoring can run it as often as it
//! likes, and reads what the server leaves in the database: the audit head, the last signed
//! checkpoint, each SIEM sink's cursor and its latest failure.
//!
//! Exit status: 0 healthy; 4 something needs attention (a checkpoint is overdue, a sink is
//! failing or lags); 1 the status could not be read (e.g. no database).

use crate::open::{DB_FILE, open_store};
use crate::output;
use crate::settings::Settings;
use mamori_core::clock::{Clock, SystemClock};
use mamori_store::Store;
use serde::Serialize;
use std::process::ExitCode;
use time::OffsetDateTime;

/// Exit status when something needs attention.
pub(crate) const UNHEALTHY: u8 = 4;

#[derive(Serialize)]
struct Status {
    healthy: bool,
    /// What needs attention, in words (ids and counts only).
    problems: Vec<String>,
    database: Database,
    audit: AuditStatus,
    siem: Vec<SinkStatus>,
}

#[derive(Serialize)]
struct Database {
    backend: &'static str,
    /// Bytes on disk (SQLite: database and WAL); not reported for PostgreSQL.
    size_bytes: Option<u64>,
}

#[derive(Serialize)]
struct AuditStatus {
    head_seq: u64,
    last_checkpoint_seq: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    last_checkpoint_at: Option<OffsetDateTime>,
    last_checkpoint_age_seconds: Option<i64>,
    /// Events after the last checkpoint.
    unsigned_events: u64,
    /// An event has waited more than twice `checkpoint_every_seconds` for a checkpoint.
    checkpoint_overdue: bool,
}

#[derive(Serialize)]
struct SinkStatus {
    sink: &'static str,
    forwarded_seq: u64,
    lag: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    forwarded_at: Option<OffsetDateTime>,
    consecutive_failures: u64,
    last_error: Option<String>,
    healthy: bool,
}

pub async fn run(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(settings, false).await?;
    let now = SystemClock.now();
    let mut problems = Vec::new();
    if mamori_vault::UNAUDITED_BENCHMARK {
        problems.push("this binary is an UNAUDITED BENCHMARK BUILD: audit events are not written".to_owned());
    }
    let audit = audit_status(&*store, settings, now, &mut problems).await?;
    let mut siem = Vec::new();
    for sink in settings.audit.siem.sink_names() {
        siem.push(sink_status(&*store, settings, sink, audit.head_seq, now, &mut problems).await?);
    }
    let database = Database { backend: store.backend(), size_bytes: sqlite_size(settings, &*store) };
    let status = Status { healthy: problems.is_empty(), problems, database, audit, siem };
    if json {
        output::json(&status)?;
    } else {
        print(&status);
    }
    Ok(if status.healthy { ExitCode::SUCCESS } else { ExitCode::from(UNHEALTHY) })
}

/// When the event after `seq` was recorded, if there is one.
async fn time_after(store: &dyn Store, seq: u64) -> anyhow::Result<Option<OffsetDateTime>> {
    let rows = store.read_audit(seq + 1, 1).await?;
    Ok(rows.first().and_then(|r| OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.columns.at) * 1_000).ok()))
}

async fn audit_status(
    store: &dyn Store,
    settings: &Settings,
    now: OffsetDateTime,
    problems: &mut Vec<String>,
) -> anyhow::Result<AuditStatus> {
    let head_seq = mamori_vault::audit_head_seq(store).await?;
    let last = store.last_audit_checkpoint().await?;
    let signed = last.as_ref().map_or(0, |c| c.seq);
    let period = time::Duration::seconds(i64::try_from(settings.audit.checkpoint_every_seconds).unwrap_or(i64::MAX));
    // Measured from the oldest unsigned event rather than from the checkpoint: after a quiet
    // night, one new event does not make a checkpoint overdue, an unsigned one does.
    let waiting = time_after(store, signed).await?;
    let checkpoint_overdue = waiting.is_some_and(|at| now - at > period * 2);
    if checkpoint_overdue {
        problems.push(format!(
            "audit checkpoint overdue: {} events after seq {signed} unsigned for more than {}s",
            head_seq.saturating_sub(signed),
            2 * settings.audit.checkpoint_every_seconds
        ));
    }
    Ok(AuditStatus {
        head_seq,
        last_checkpoint_seq: last.as_ref().map(|c| c.seq),
        last_checkpoint_at: last.as_ref().map(|c| c.at),
        last_checkpoint_age_seconds: last.as_ref().map(|c| (now - c.at).whole_seconds()),
        unsigned_events: head_seq.saturating_sub(signed),
        checkpoint_overdue,
    })
}

async fn sink_status(
    store: &dyn Store,
    settings: &Settings,
    sink: &'static str,
    head: u64,
    now: OffsetDateTime,
    problems: &mut Vec<String>,
) -> anyhow::Result<SinkStatus> {
    let cursor = mamori_vault::siem_cursor(store, sink).await?.unwrap_or_default();
    let lag = head.saturating_sub(cursor.seq);
    let alert_after =
        time::Duration::seconds(i64::try_from(settings.audit.siem.alert_after_seconds).unwrap_or(i64::MAX));
    let late = time_after(store, cursor.seq).await?.is_some_and(|at| now - at > alert_after);
    if cursor.consecutive_failures > 0 {
        problems.push(format!(
            "SIEM sink {sink} failing ({} attempts): {}",
            cursor.consecutive_failures,
            cursor.last_error.as_deref().unwrap_or("unknown error")
        ));
    } else if late {
        problems.push(format!(
            "SIEM sink {sink}: {lag} events not forwarded, the oldest for more than {}s (is `mamori serve` running?)",
            settings.audit.siem.alert_after_seconds
        ));
    }
    Ok(SinkStatus {
        sink,
        forwarded_seq: cursor.seq,
        lag,
        forwarded_at: cursor.forwarded_at,
        consecutive_failures: cursor.consecutive_failures,
        last_error: cursor.last_error,
        healthy: cursor.consecutive_failures == 0 && !late,
    })
}

fn sqlite_size(settings: &Settings, store: &dyn Store) -> Option<u64> {
    if store.backend() != "sqlite" {
        return None;
    }
    let db = settings.data_dir.join(DB_FILE);
    let wal = settings.data_dir.join(format!("{DB_FILE}-wal"));
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    Some(size(&db) + size(&wal))
}

fn print(s: &Status) {
    println!("{}", if s.healthy { "status: OK" } else { "status: NEEDS ATTENTION" });
    for p in &s.problems {
        println!("  ! {p}");
    }
    let size = s.database.size_bytes.map(|b| format!(", {b} bytes")).unwrap_or_default();
    println!("database: {}{size}", s.database.backend);
    let a = &s.audit;
    let checkpoint = match (a.last_checkpoint_seq, a.last_checkpoint_age_seconds) {
        (Some(seq), Some(age)) => format!("last checkpoint at seq {seq}, {age}s ago"),
        _ => "no checkpoint yet".into(),
    };
    println!(
        "audit: head seq {}, {checkpoint}, {} unsigned events{}",
        a.head_seq,
        a.unsigned_events,
        if a.checkpoint_overdue { " (OVERDUE)" } else { "" }
    );
    if s.siem.is_empty() {
        println!("siem: no sink configured");
    }
    for sink in &s.siem {
        println!(
            "siem {}: forwarded to seq {}, lag {} events, {}",
            sink.sink,
            sink.forwarded_seq,
            sink.lag,
            if sink.healthy { "ok" } else { "NOT OK" }
        );
    }
}
