//! SIEM forwarding under stress, with real components: the store (SQLite always,
//! PostgreSQL when `MAMORI_TEST_DATABASE_URL` is set), the audit writer, a real TCP syslog
//! receiver and real files. The receiver is down, hangs up mid-stream, reads slowly; the file
//! rotates; the sink cannot be written. Nothing is lost, and requests never wait for a sink.

use mamori_core::audit::{AuditEvent, Outcome};
use mamori_core::clock::{Clock, SystemClock};
use mamori_crypto::MasterKey;
use mamori_store::Store;
use mamori_store_sqlite::SqliteStore;
use mamori_vault::{
    AuditHealth, AuditLog, AuditSettings, JsonlSinkSettings, SiemHealth, SiemSettings, SyslogSinkSettings, Vault,
    VaultConfig,
};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

const URL_VAR: &str = "MAMORI_TEST_DATABASE_URL";

/// Every backend to run on: SQLite in `dir`, and a fresh PostgreSQL schema when configured
/// (said loudly on the real stderr when not).
async fn stores(test: &str, dir: &Path) -> Vec<(&'static str, Arc<dyn Store>)> {
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.join("mamori.db")).await.unwrap());
    let mut out = vec![("sqlite", sqlite)];
    match std::env::var(URL_VAR).ok().filter(|u| !u.is_empty()) {
        Some(url) => {
            let schema = format!("mamori_siem_{}", uuid::Uuid::new_v4().simple());
            let pg = mamori_store_postgres::PostgresStore::connect_with_schema(&url, &schema).await.unwrap();
            out.push(("postgres", Arc::new(pg)));
        }
        None => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (PostgreSQL part): {test} — set {URL_VAR}=postgres://postgres@127.0.0.1:5432/test to run it"
            );
        }
    }
    out
}

fn syslog_to(address: String) -> SiemSettings {
    syslog_with_timeout(address, 5)
}

fn syslog_with_timeout(address: String, timeout_seconds: u64) -> SiemSettings {
    SiemSettings {
        retry_max_seconds: 1,
        syslog: Some(SyslogSinkSettings { address, hostname: Some("test".into()), facility: 13, timeout_seconds }),
        ..SiemSettings::default()
    }
}

fn start(store: &Arc<dyn Store>, siem: SiemSettings) -> AuditLog {
    let settings = AuditSettings { siem, ..AuditSettings::default() };
    AuditLog::start_with(store.clone(), Arc::new(SystemClock), &settings)
}

fn event(i: usize) -> AuditEvent {
    let mut e = AuditEvent::new(SystemClock.now(), "user:siem-test", "record.read", Outcome::Success);
    e.collection = Some("customers".into());
    e.record = Some(format!("r{i}"));
    e
}

/// Appends `n` events in batches of `per` (one `record` call each, as requests do); returns
/// the head.
async fn append(log: &AuditLog, n: usize, per: usize) -> u64 {
    let mut head = 0;
    for start in (0..n).step_by(per) {
        head = log.record((start..(start + per).min(n)).map(event).collect()).await.unwrap();
    }
    head
}

/// The framed messages of one connection: `<len> <msg>`, length in octets.
struct Frames {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Frames {
    fn new(stream: TcpStream) -> Self {
        Self { stream, buf: Vec::new() }
    }

    /// The next message, or `None` when the connection ends.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(space) = self.buf.iter().position(|&b| b == b' ') {
                let len: usize = std::str::from_utf8(&self.buf[..space]).unwrap().parse().expect("octet count");
                if self.buf.len() > space + len {
                    let msg = String::from_utf8(self.buf[space + 1..space + 1 + len].to_vec()).unwrap();
                    self.buf.drain(..space + 1 + len);
                    return Some(msg);
                }
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The `seq` parameter of a message's structured data.
fn seq_of(msg: &str) -> u64 {
    let rest = msg.split_once(" seq=\"").expect("seq in structured data").1;
    rest[..rest.find('"').unwrap()].parse().unwrap()
}

/// Reads messages from connections on `listener` until every seq up to `head` was seen;
/// returns every seq in arrival order (duplicates included).
async fn receive_until(listener: &TcpListener, head: u64) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut distinct = BTreeSet::new();
    while distinct.len() < head as usize {
        let (stream, _) = listener.accept().await.unwrap();
        let mut frames = Frames::new(stream);
        while let Some(msg) = frames.next().await {
            assert!(msg.starts_with("<110>1 "), "PRI of log audit + informational, version 1: {msg}");
            let seq = seq_of(&msg);
            seen.push(seq);
            distinct.insert(seq);
            if distinct.len() == head as usize {
                break;
            }
        }
    }
    seen
}

/// Polls `health` until the first sink passes `check`.
async fn wait_for(what: &str, health: impl Fn() -> AuditHealth, check: impl Fn(&SiemHealth) -> bool) -> SiemHealth {
    for _ in 0..600 {
        let sink = health().siem[0].clone();
        if check(&sink) {
            return sink;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}: {:?}", health());
}

fn full_set(head: u64) -> BTreeSet<u64> {
    (1..=head).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn syslog_receiver_gets_every_event_framed_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("syslog_receiver_gets_every_event_framed_and_in_order", dir.path()).await {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let log = start(&store, syslog_to(listener.local_addr().unwrap().to_string()));
        let head = append(&log, 60, 7).await;
        let seen = receive_until(&listener, head).await;
        assert_eq!(seen, (1..=head).collect::<Vec<_>>(), "{backend}: in order, once each");
        // Acknowledged once the connection stayed up: the stored cursor follows.
        let h = wait_for("the cursor", || log.health(), |h| h.forwarded_seq == head).await;
        assert_eq!((h.lag, h.consecutive_failures), (0, 0), "{backend}");
        let cursor = mamori_vault::siem_cursor(&*store, "syslog").await.unwrap().unwrap();
        assert_eq!(cursor.seq, head, "{backend}");
        assert!(log.health().healthy());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn syslog_receiver_down_at_first_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("syslog_receiver_down_at_first_loses_nothing", dir.path()).await {
        // A port nobody listens on yet.
        let address = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let log = start(&store, syslog_to(address.to_string()));
        let head = append(&log, 40, 3).await;
        let h = wait_for("a failure", || log.health(), |h| h.consecutive_failures >= 2).await;
        assert!(!log.health().healthy(), "{backend}: a sink that is down is unhealthy");
        assert!(h.last_error.as_deref().unwrap_or("").contains("syslog"), "{backend}: {h:?}");
        assert_eq!(h.lag, head, "{backend}: nothing forwarded");

        let listener = TcpListener::bind(address).await.unwrap();
        let seen = receive_until(&listener, head).await;
        assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), full_set(head), "{backend}");
        wait_for("recovery", || log.health(), |h| h.forwarded_seq == head && h.ok()).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn syslog_receiver_hanging_up_mid_stream_gets_the_rest_again() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("syslog_receiver_hanging_up_mid_stream_gets_the_rest_again", dir.path()).await {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let log = start(&store, syslog_to(listener.local_addr().unwrap().to_string()));
        let head = append(&log, 50, 5).await;
        // Read a few, then drop the connection with the rest unread in its buffers.
        let (stream, _) = listener.accept().await.unwrap();
        let mut frames = Frames::new(stream);
        let mut seen = Vec::new();
        for _ in 0..10 {
            seen.push(seq_of(&frames.next().await.unwrap()));
        }
        drop(frames);
        let more = append(&log, 20, 4).await;
        seen.extend(receive_until(&listener, more).await);
        let distinct: BTreeSet<u64> = seen.iter().copied().collect();
        assert_eq!(distinct, full_set(more), "{backend}: de-duplicated by seq, no gap");
        assert!(seen.len() > distinct.len(), "{backend}: the unacknowledged tail was sent again");
        assert!(head < more);
        wait_for("the cursor", || log.health(), |h| h.forwarded_seq == more).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_syslog_receiver_does_not_slow_appends() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("slow_syslog_receiver_does_not_slow_appends", dir.path()).await {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // A stall shorter than the timeout: the forwarder waits rather than reconnects.
        let log = start(&store, syslog_with_timeout(listener.local_addr().unwrap().to_string(), 120));
        // Accepted but not read: the forwarder soon blocks on a full socket buffer.
        let (stream, _) = {
            log.record(vec![event(0)]).await.unwrap();
            listener.accept().await.unwrap()
        };
        let started = std::time::Instant::now();
        let mut head = 0;
        for i in 0..60 {
            let mut batch: Vec<AuditEvent> = (0..50).map(event).collect();
            // Large events: 24 MB in all, more than the socket buffers on both ends hold.
            for e in &mut batch {
                e.note = Some(format!("{i}:{}", "x".repeat(8000)));
            }
            head = log.record(batch).await.unwrap();
        }
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(20), "{backend}: appends took {elapsed:?}");
        // Past the time a write needs to count as received: still behind, so the forwarder
        // is stuck in a write while the appends went through.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let h = log.health().siem[0].clone();
        assert!(h.forwarded_seq < head && h.lag > 0, "{backend}: {h:?}");
        // Now read everything: nothing was lost while it lagged.
        let mut frames = Frames::new(stream);
        let mut distinct = BTreeSet::new();
        while distinct.len() < head as usize {
            let msg = tokio::time::timeout(Duration::from_secs(30), frames.next()).await.unwrap().unwrap();
            distinct.insert(seq_of(&msg));
        }
        assert_eq!(distinct, full_set(head), "{backend}");
    }
}

fn file_sink(path: &Path, max_bytes: u64, max_files: u32) -> SiemSettings {
    SiemSettings {
        retry_max_seconds: 1,
        file: Some(JsonlSinkSettings { path: path.to_owned(), max_bytes, max_files }),
        ..SiemSettings::default()
    }
}

/// The seqs in the sink's files, oldest file first, and how many files there are.
fn file_seqs(path: &Path, max_files: u32) -> (Vec<u64>, usize) {
    let mut files: Vec<std::path::PathBuf> =
        (1..=max_files + 1).rev().map(|n| std::path::PathBuf::from(format!("{}.{n}", path.display()))).collect();
    files.push(path.to_owned());
    let mut seqs = Vec::new();
    let mut count = 0;
    for file in files.iter().filter(|f| f.exists()) {
        count += 1;
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.len() as u64 <= 4096 || text.lines().count() == 1, "{} is over max_bytes", file.display());
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["event"]["action"].is_string(), "{line}");
            seqs.push(v["seq"].as_u64().unwrap());
        }
    }
    (seqs, count)
}

#[tokio::test(flavor = "multi_thread")]
async fn jsonl_file_rotation_keeps_max_files_and_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("jsonl_file_rotation_keeps_max_files_and_loses_no_event", dir.path()).await {
        let path = dir.path().join(format!("{backend}-audit.jsonl"));
        let log = start(&store, file_sink(&path, 4096, 3));
        // About 250 bytes a line, 16 lines a file: 30 events rotate once or twice.
        let head = append(&log, 30, 6).await;
        wait_for("the file", || log.health(), |h| h.forwarded_seq == head).await;
        let (seqs, files) = file_seqs(&path, 3);
        assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "{backend}: every event, in order, across rotations");
        assert!((2..=4).contains(&files), "{backend}: {files} files");

        // Far more than fits: the oldest files go, the newest events are all there.
        let head = append(&log, 300, 9).await;
        wait_for("the file", || log.health(), |h| h.forwarded_seq == head).await;
        let (seqs, files) = file_seqs(&path, 3);
        assert_eq!(files, 4, "{backend}: never more than max_files rotated files");
        assert!(!Path::new(&format!("{}.4", path.display())).exists());
        let first = seqs[0];
        assert_eq!(seqs, (first..=head).collect::<Vec<_>>(), "{backend}: a contiguous tail up to the head");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unwritable_sink_is_unhealthy_while_requests_work() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("unwritable_sink_is_unhealthy_while_requests_work", dir.path()).await {
        let missing = dir.path().join(format!("{backend}-not-yet"));
        let path = missing.join("audit.jsonl");
        let config = VaultConfig {
            audit: AuditSettings { siem: file_sink(&path, 1 << 20, 2), ..AuditSettings::default() },
            ..VaultConfig::default()
        };
        let vault = Vault::open(store.clone(), &MasterKey::generate(), Arc::new(SystemClock), config).await.unwrap();
        let admin = mamori_vault::Principal::operator("test");
        let schema = mamori_core::schema::CollectionSchema::from_toml(mamori_synth::CUSTOMERS_SCHEMA_TOML).unwrap();
        vault.create_collection(&admin, &schema).await.unwrap();
        let h = wait_for("a failure", || vault.audit_health(), |h| h.consecutive_failures >= 1).await;
        assert!(h.last_error.as_deref().unwrap_or("").contains("file sink"), "{backend}: {h:?}");
        assert!(!vault.audit_health().healthy(), "{backend}");
        // Requests go on, audited as ever.
        for _ in 0..5 {
            assert!(vault.list_collections(&admin).await.is_ok(), "{backend}");
        }
        let cursor = mamori_vault::siem_cursor(&**vault.store(), "file").await.unwrap().unwrap();
        assert!(cursor.consecutive_failures >= 1 && cursor.seq == 0, "{backend}: the failure is stored: {cursor:?}");

        // The directory appears: everything arrives, the sink is healthy again.
        std::fs::create_dir(&missing).unwrap();
        let head = mamori_vault::audit_head_seq(&**vault.store()).await.unwrap();
        let h = wait_for("recovery", || vault.audit_health(), |h| h.forwarded_seq >= head && h.ok()).await;
        assert!(vault.audit_health().healthy(), "{backend}: {h:?}");
        let (seqs, _) = file_seqs(&path, 2);
        assert_eq!(seqs[..head as usize], (1..=head).collect::<Vec<_>>()[..], "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn head_seq_is_found_without_reading_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in stores("head_seq_is_found_without_reading_the_trail", dir.path()).await {
        assert_eq!(mamori_vault::audit_head_seq(&*store).await.unwrap(), 0, "{backend}");
        let log = start(&store, SiemSettings::default());
        for n in [1, 2, 5, 64, 100] {
            let head = append(&log, n, 3).await;
            assert_eq!(mamori_vault::audit_head_seq(&*store).await.unwrap(), head, "{backend}");
        }
    }
}
