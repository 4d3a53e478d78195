//! Taking signed checkpoints and writing them to the external checkpoint file.
//!
//! The external file is append-only JSON lines, opened with `O_APPEND` and synced after each
//! line. Its path comes from the server's configuration file only — never from the API —
//! so that nobody can point it at a file of their choosing. Keep it on another volume or
//! host (a log shipper, a WORM mount): a copy beyond the reach of whoever can write the
//! database is what makes truncation of the database detectable.
//!
//! A failing file does not stop the vault: the events are durable in the database and the
//! checkpoint is stored there too, so refusing requests would trade availability for nothing
//! the file could add at that moment. The failure is logged at error level on every attempt,
//! counted, and shown in [`AuditHealth`] (and so in `/metrics`), until a later write succeeds.

use mamori_core::audit::{Checkpoint, CheckpointKind, GENESIS_HASH, SignedCheckpoint, chain_hash, truncate_to_micros};
use mamori_core::clock::Clock;
use mamori_crypto::{AuditSigningKey, AuditVerifyingKey};
use mamori_store::{CheckpointRow, Store};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// How the audit trail is checkpointed. Without a signing key there are no checkpoints
/// (tests, benchmarks); `mamori init` always creates one.
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// The ECDSA P-256 checkpoint key, from its own file (never derived from the master key).
    pub signing_key: Option<Arc<AuditSigningKey>>,
    /// A checkpoint is due after this many events…
    pub checkpoint_every_events: u64,
    /// …or when this much time has passed since the last one and there are new events.
    pub checkpoint_every: std::time::Duration,
    /// The external append-only checkpoint file (JSON lines), if configured.
    pub checkpoint_file: Option<PathBuf>,
    /// Where the trail is forwarded (only `mamori serve` sets it).
    pub siem: super::SiemSettings,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            signing_key: None,
            checkpoint_every_events: 1000,
            checkpoint_every: std::time::Duration::from_secs(60),
            checkpoint_file: None,
            siem: super::SiemSettings::default(),
        }
    }
}

/// The state of the logging pipeline itself, for `/metrics` and operators (002-S-11-d).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AuditHealth {
    /// Whether checkpoints are signed at all (a signing key is configured).
    pub checkpoints_enabled: bool,
    pub last_checkpoint_seq: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_checkpoint_at: Option<OffsetDateTime>,
    /// Checkpoints that could not be taken (chain did not verify, store error).
    pub checkpoint_failures: u64,
    pub checkpoint_file_configured: bool,
    /// False from a failed write to the external file until the next successful one.
    pub checkpoint_file_ok: bool,
    pub checkpoint_file_failures: u64,
    /// Batches of events that could not be appended (their requests failed closed).
    pub append_failures: u64,
    /// Batches appended since start: one transaction, so one durable commit (fsync), each.
    pub commits: u64,
    /// Events in those batches; `events / commits` is how many events share a commit.
    pub events: u64,
    /// Only in a binary built with the `unaudited-benchmark` feature (never a normal build):
    /// events are acknowledged without being written. Such a process is never healthy.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unaudited_benchmark: bool,
    /// The most recent failure, without values.
    pub last_error: Option<String>,
    /// One entry per configured SIEM sink.
    pub siem: Vec<super::SiemHealth>,
}

impl AuditHealth {
    pub(crate) fn new(settings: &AuditSettings) -> Self {
        Self {
            checkpoints_enabled: settings.signing_key.is_some(),
            checkpoint_file_configured: settings.checkpoint_file.is_some(),
            checkpoint_file_ok: true,
            unaudited_benchmark: super::UNAUDITED_BENCHMARK,
            siem: settings.siem.sink_names().into_iter().map(super::SiemHealth::new).collect(),
            ..Self::default()
        }
    }

    /// Whether every part of the pipeline that can fail without failing requests works:
    /// the external checkpoint file and the SIEM sinks (and never in an unaudited build).
    pub fn healthy(&self) -> bool {
        self.checkpoint_file_ok && self.siem.iter().all(super::SiemHealth::ok) && !self.unaudited_benchmark
    }
}

/// Whether a stored or external checkpoint carries a valid signature of `key`.
pub(crate) fn signature_valid(key: &AuditVerifyingKey, c: &Checkpoint, signature: &[u8]) -> bool {
    c.key_id == key.key_id() && key.verify(&c.signing_bytes(), signature)
}

pub(crate) fn row_checkpoint(row: &CheckpointRow) -> Checkpoint {
    Checkpoint { kind: row.kind, seq: row.seq, head_hash: row.head_hash, at: row.at, key_id: row.key_id.clone() }
}

/// Signs a checkpoint or anchor at `seq` with hash `head_hash`.
pub(crate) fn sign(
    key: &AuditSigningKey,
    kind: CheckpointKind,
    seq: u64,
    head_hash: [u8; 32],
    now: OffsetDateTime,
) -> (CheckpointRow, SignedCheckpoint) {
    let c = Checkpoint { kind, seq, head_hash, at: truncate_to_micros(now), key_id: key.verifying_key().key_id() };
    let signature = key.sign(&c.signing_bytes());
    let line = SignedCheckpoint::new(&c, &signature);
    let row = CheckpointRow { kind, seq, head_hash, at: c.at, key_id: c.key_id, signature };
    (row, line)
}

/// The external file. It is opened for each line (`O_APPEND`), so that a rotated or replaced
/// file is picked up and a failing one is retried on the next checkpoint.
struct Sink {
    path: PathBuf,
    /// After a failed write the file may end in a partial line: start the next on a new one.
    broken_line: bool,
}

impl Sink {
    fn append(&mut self, line: &str) -> std::io::Result<()> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let text = if self.broken_line { format!("\n{line}\n") } else { format!("{line}\n") };
        let result = options.open(&self.path).and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_data()
        });
        self.broken_line = result.is_err();
        result
    }
}

pub(crate) struct Checkpointer {
    key: Arc<AuditSigningKey>,
    public: AuditVerifyingKey,
    every_events: u64,
    every: time::Duration,
    period: std::time::Duration,
    clock: Arc<dyn Clock>,
    sink: Option<Sink>,
    /// The newest sequence number this process appended.
    head: u64,
    /// The newest checkpoint known, for the triggers.
    last: Option<(u64, OffsetDateTime)>,
    /// The same, signed (when its signature holds), for a forced checkpoint that finds the
    /// head already covered.
    latest: Option<SignedCheckpoint>,
    /// A position of the chain already verified (or signed): the next checkpoint verifies
    /// only the events after it.
    base: Option<(u64, [u8; 32])>,
    loaded: bool,
    /// When the last attempt failed: the next one waits a full period (a broken chain must
    /// not be re-read after every batch), unless forced.
    failed_at: Option<OffsetDateTime>,
    health: Arc<Mutex<AuditHealth>>,
}

impl Checkpointer {
    pub(crate) fn new(
        settings: &AuditSettings,
        clock: Arc<dyn Clock>,
        health: Arc<Mutex<AuditHealth>>,
    ) -> Option<Self> {
        let key = settings.signing_key.clone()?;
        let every = time::Duration::try_from(settings.checkpoint_every).unwrap_or(time::Duration::MINUTE);
        Some(Self {
            public: key.verifying_key(),
            key,
            every_events: settings.checkpoint_every_events.max(1),
            every,
            period: settings
                .checkpoint_every
                .clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(60)),
            clock,
            sink: settings.checkpoint_file.clone().map(|path| Sink { path, broken_line: false }),
            head: 0,
            last: None,
            latest: None,
            base: None,
            loaded: false,
            failed_at: None,
            health,
        })
    }

    /// How often the writer wakes up to look for an overdue checkpoint while idle.
    pub(crate) fn tick_period(&self) -> std::time::Duration {
        self.period
    }

    pub(crate) fn appended(&mut self, seq: u64) {
        self.head = self.head.max(seq);
    }

    pub(crate) fn rebase(&mut self) {
        self.base = None;
        self.loaded = false;
    }

    fn health(&self) -> std::sync::MutexGuard<'_, AuditHealth> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failed(&mut self, error: String) -> String {
        tracing::error!(error = %error, "audit checkpoint not taken");
        self.failed_at = Some(self.clock.now());
        let mut h = self.health();
        h.checkpoint_failures += 1;
        h.last_error = Some(error.clone());
        error
    }

    /// The newest checkpoint, if its signature holds: the triggers and the verified base.
    async fn load(&mut self, store: &dyn Store) -> Result<(), String> {
        if self.loaded {
            return Ok(());
        }
        let last = store.last_audit_checkpoint().await.map_err(|e| e.to_string())?;
        if let Some(row) = last {
            let checkpoint = row_checkpoint(&row);
            if signature_valid(&self.public, &checkpoint, &row.signature) {
                self.last = Some((row.seq, row.at));
                self.base = Some((row.seq, row.head_hash));
                self.latest = Some(SignedCheckpoint::new(&checkpoint, &row.signature));
            } else {
                // Not trusted as a base; the next checkpoint verifies from further back.
                let error = format!("stored checkpoint at seq {} has a bad signature", row.seq);
                tracing::error!(error = %error, "audit checkpoint not trusted");
                self.health().last_error = Some(error);
                self.last = Some((row.seq, row.at));
            }
        }
        self.loaded = true;
        Ok(())
    }

    /// Takes a checkpoint of this process's newest event if one is due (or `force`).
    pub(crate) async fn maybe(&mut self, store: &dyn Store, force: bool) -> Result<Option<SignedCheckpoint>, String> {
        if let Err(e) = self.load(store).await {
            return Err(self.failed(format!("reading the last checkpoint: {e}")));
        }
        let (last_seq, last_at) = self.last.unwrap_or((0, OffsetDateTime::UNIX_EPOCH));
        if self.head <= last_seq {
            // Covered already (perhaps by the checkpoint the triggering batch just took).
            return Ok(if force { self.latest.clone().filter(|c| c.seq >= self.head) } else { None });
        }
        let now = self.clock.now();
        let due = self.head - last_seq >= self.every_events || now - last_at >= self.every;
        let backing_off = self.failed_at.is_some_and(|t| now - t < self.every);
        if !force && (!due || backing_off) {
            return Ok(None);
        }
        let seq = self.head;
        let head_hash = match self.verified_hash(store, seq).await {
            Ok(hash) => hash,
            Err(e) => return Err(self.failed(e)),
        };
        let (row, line) = sign(&self.key, CheckpointKind::Checkpoint, seq, head_hash, self.clock.now());
        if let Err(e) = store.add_audit_checkpoint(&row).await {
            return Err(self.failed(format!("storing the checkpoint at seq {seq}: {e}")));
        }
        self.last = Some((seq, row.at));
        self.base = Some((seq, head_hash));
        self.latest = Some(line.clone());
        self.failed_at = None;
        {
            let mut h = self.health();
            h.last_checkpoint_seq = Some(seq);
            h.last_checkpoint_at = Some(row.at);
        }
        self.publish(&line).await;
        Ok(Some(line))
    }

    /// The chain's hash at `seq`, recomputed from the verified base: a checkpoint attests
    /// only what this process has checked itself.
    async fn verified_hash(&mut self, store: &dyn Store, seq: u64) -> Result<[u8; 32], String> {
        if let Some(base) = self.base.filter(|b| b.0 <= seq) {
            match walk(store, base, seq).await {
                Ok(hash) => return Ok(hash),
                // Someone may have pruned below the cached base: find it again, once.
                Err(e) => tracing::warn!(error = %e, "re-reading the audit checkpoint base"),
            }
        }
        let base = self.find_base(store, seq).await?;
        walk(store, base, seq).await
    }

    /// The newest trustworthy position at or before `seq`: a validly signed checkpoint, the
    /// pruning anchor, or the genesis.
    async fn find_base(&self, store: &dyn Store, seq: u64) -> Result<(u64, [u8; 32]), String> {
        let mut base = (0, GENESIS_HASH);
        let mut from = 0;
        loop {
            let rows = store.read_audit_checkpoints(from, 1000).await.map_err(|e| e.to_string())?;
            let Some(last) = rows.last() else { break };
            from = last.seq + 1;
            for row in rows.iter().filter(|r| r.seq <= seq) {
                if signature_valid(&self.public, &row_checkpoint(row), &row.signature) {
                    base = (row.seq, row.head_hash);
                }
            }
            if from > seq {
                break;
            }
        }
        Ok(base)
    }

    pub(crate) async fn publish(&mut self, line: &SignedCheckpoint) {
        let Some(mut sink) = self.sink.take() else { return };
        let text = serde_json::to_string(line).expect("a checkpoint always serialises");
        let (sink, result) = match tokio::task::spawn_blocking(move || {
            let result = sink.append(&text);
            (sink, result)
        })
        .await
        {
            Ok(out) => out,
            Err(e) => {
                tracing::error!(error = %e, "checkpoint file writer panicked");
                return;
            }
        };
        let path = sink.path.display().to_string();
        self.sink = Some(sink);
        let mut h = self.health();
        match result {
            Ok(()) => h.checkpoint_file_ok = true,
            Err(e) => {
                tracing::error!(error = %e, file = %path, seq = line.seq, "cannot append to the audit checkpoint file");
                h.checkpoint_file_ok = false;
                h.checkpoint_file_failures += 1;
                h.last_error = Some(format!("checkpoint file {path}: {e}"));
            }
        }
    }
}

/// Recomputes the chain from `base` to `seq`, parsing every event, and returns the hash at
/// `seq`.
async fn walk(store: &dyn Store, base: (u64, [u8; 32]), seq: u64) -> Result<[u8; 32], String> {
    let (mut at, mut prev) = base;
    while at < seq {
        let rows = store.read_audit_page(at + 1, 1000, false).await.map_err(|e| e.to_string())?;
        if rows.is_empty() {
            return Err(format!("audit event {} is missing", at + 1));
        }
        for row in rows.iter() {
            if row.seq != at + 1 {
                return Err(format!("the audit chain has a gap at seq {}", at + 1));
            }
            if chain_hash(&prev, row.seq, row.event_json) != *row.hash {
                return Err(format!("the audit chain does not verify at seq {}", row.seq));
            }
            // Verification trusts signed events to be well-formed (it does not parse them
            // where the database generates the indexed columns): nothing else is signed.
            if serde_json::from_str::<mamori_core::audit::AuditEventView<'_>>(row.event_json).is_err() {
                return Err(format!("audit event {} is not a well-formed event", row.seq));
            }
            prev = *row.hash;
            at = row.seq;
            if at == seq {
                break;
            }
        }
    }
    Ok(prev)
}
