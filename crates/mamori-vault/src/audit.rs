//! The audit trail: group commit on write, signed checkpoints, verification, queries.
//!
//! Every operation awaits [`AuditLog::record`] before it returns data; the call resolves only
//! when the event is committed (durable: `synchronous = FULL` on SQLite, a committed
//! transaction on PostgreSQL). Events that arrive while a batch is being written wait and go
//! together in the next transaction, so many concurrent requests share one fsync
//! (001-20-tech-4-1, 004-V-1-3; fail closed when logging fails: 002-S-11-d).
//!
//! After a batch commits, the same writer task takes a signed checkpoint when one is due
//! (every N events or T seconds): it re-verifies the chain since the previous checkpoint,
//! signs (seq, head hash, time, key id) with the ECDSA P-256 audit key, stores the checkpoint
//! and appends it to the external checkpoint file (002-S-11-b, 004-V-1-4-c, 004-V-1-33-c).
//! Checkpointing never holds up or fails a request: the events it covers are already durable,
//! and a failure is logged at error level and shown in [`AuditHealth`] (002-S-11-d: the
//! logging process itself is monitored).
//!
//! The writer counts its commits and the events in them ([`AuditHealth::commits`],
//! [`AuditHealth::events`], `/metrics`): their ratio is the group-commit batch size.

mod checkpoint;
mod parallel_walk;
mod query;
mod siem;
mod verify;

pub use checkpoint::{AuditHealth, AuditSettings};
pub use query::{AuditEntry, AuditFilter, AuditPage, MAX_QUERY_LIMIT, MIN_RETENTION_DAYS, PruneReport, ReviewMark};
pub use siem::{
    JsonlSinkSettings, SiemCursor, SiemHealth, SiemSettings, SyslogSinkSettings, audit_head_seq, siem_cursor,
};
pub use verify::{
    ProblemKind, VerifyProblem, VerifyProgress, VerifyReport, parse_checkpoint_file, stored_audit_key, verify_chain,
    verify_store,
};

use crate::error::{Result, VaultError};
use checkpoint::Checkpointer;
use mamori_core::audit::{AuditEvent, SignedCheckpoint};
use mamori_core::clock::{Clock, SystemClock};
use mamori_store::{AuditedChange, ImportSession, Store, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};

/// Whether this binary was built with the `unaudited-benchmark` feature of `mamori-vault`,
/// which only an explicit `--features mamori-vault/unaudited-benchmark` turns on (no crate of
/// the workspace enables it, so feature unification cannot reach a normal build). Such a
/// binary acknowledges audit events without writing them, to measure what auditing costs
/// (BENCHMARKS.md, session 7); it says so on every start, in `mamori status`, `/healthz`
/// and `/healthz/audit`. This constant is the feature's only `cfg`.
pub const UNAUDITED_BENCHMARK: bool = cfg!(feature = "unaudited-benchmark");

const MAX_BATCH_EVENTS: usize = 1024;
const QUEUE: usize = 4096;

struct Pending {
    events: Vec<AuditEvent>,
    done: oneshot::Sender<std::result::Result<u64, String>>,
}

type CheckpointReply = oneshot::Sender<std::result::Result<Option<SignedCheckpoint>, String>>;

/// A change to be committed in one transaction with its events.
struct Change {
    change: Vec<AuditedChange>,
    events: Vec<AuditEvent>,
    done: oneshot::Sender<mamori_store::Result<u64>>,
}

enum Msg {
    Append(Pending),
    /// A change and its events, in one transaction of their own.
    Apply(Change),
    /// Events appended (up to this seq, this many) outside the writer, by a transaction of
    /// their own: an import's.
    Appended {
        seq: u64,
        events: usize,
    },
    /// Sign what this process has appended and is not yet covered by a checkpoint.
    Checkpoint(CheckpointReply),
    /// Append a line (a pruning anchor) to the external checkpoint file.
    Publish(SignedCheckpoint, oneshot::Sender<()>),
    /// The chain was pruned: forget the verified position and find it again.
    Rebase,
}

/// The writer tasks of this process, so that a short-lived process can let them finish.
static WRITERS: Mutex<Vec<tokio::task::JoinHandle<()>>> = Mutex::new(Vec::new());

/// Waits, at most `limit`, for the audit writers of vaults already dropped to finish what is
/// queued — the appends and the checkpoint due after them. A CLI command calls this before
/// its runtime stops, which would otherwise cut a checkpoint off half-way (and log it as a
/// failure). A writer whose vault is still alive is simply waited for until `limit`.
pub async fn finish_audit_writers(limit: std::time::Duration) {
    let writers = std::mem::take(&mut *WRITERS.lock().unwrap_or_else(|e| e.into_inner()));
    let deadline = tokio::time::Instant::now() + limit;
    for writer in writers {
        let _ = tokio::time::timeout_at(deadline, writer).await;
    }
}

#[derive(Clone, Debug)]
pub struct AuditLog {
    queue: mpsc::Sender<Msg>,
    health: Arc<Mutex<AuditHealth>>,
    /// The newest appended seq, so that a sink's lag is current even while its forwarder
    /// is stuck in a write.
    head: watch::Receiver<u64>,
    counters: Arc<Counters>,
}

/// Commits (one transaction each) and the events in them, since start.
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    events: AtomicU64,
}

impl AuditLog {
    /// A log without checkpoints (no signing key).
    pub fn start(store: Arc<dyn Store>) -> Self {
        Self::start_with(store, Arc::new(SystemClock), &AuditSettings::default())
    }

    pub fn start_with(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: &AuditSettings) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let health = Arc::new(Mutex::new(AuditHealth::new(settings)));
        let checkpointer = Checkpointer::new(settings, clock.clone(), health.clone());
        // The forwarders learn of new events from here; `send_replace` never waits for them.
        let (head, _) = watch::channel(0);
        siem::start(&settings.siem, &store, &clock, &head, &health);
        let head_seen = head.subscribe();
        let counters = Arc::new(Counters::default());
        let parts = Writer { store, checkpointer, health: health.clone(), head, counters: counters.clone() };
        let task = tokio::spawn(writer(rx, parts));
        let mut writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
        writers.retain(|w| !w.is_finished());
        writers.push(task);
        Self { queue, health, head: head_seen, counters }
    }

    /// Appends events and waits until they are durable. An error means the events are not
    /// recorded and the caller must not perform (or reveal) the operation.
    pub async fn record(&self, events: Vec<AuditEvent>) -> Result<u64> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send(Msg::Append(Pending { events, done }))
            .await
            .map_err(|_| VaultError::AuditUnavailable("audit writer stopped".into()))?;
        match wait.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(VaultError::AuditUnavailable(e)),
            Err(_) => Err(VaultError::AuditUnavailable("audit writer stopped".into())),
        }
    }

    /// Commits a change to personal data together with its audit events, in one transaction
    /// (a change never without its events, nor events without the change). It goes through
    /// the writer so that the checkpoints, the SIEM forwarders and the metrics see its events
    /// as they see every other append. Errors as [`Store::apply_audited`].
    pub async fn apply(&self, change: Vec<AuditedChange>, events: Vec<AuditEvent>) -> mamori_store::Result<u64> {
        let stopped = || StoreError::AuditUnavailable("audit writer stopped".into());
        let (done, wait) = oneshot::channel();
        self.queue.send(Msg::Apply(Change { change, events, done })).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }

    /// Commits a bulk import with its audit events in the import's own transaction (as
    /// [`ImportSession::commit_audited`]), then lets the writer know of them as of any other
    /// append. Not through the writer's queue: a SQLite import holds the write lock until it
    /// commits, so appends queued before it would wait for it while it waited for them.
    pub async fn commit_import(
        &self,
        session: Box<dyn ImportSession>,
        events: Vec<AuditEvent>,
    ) -> mamori_store::Result<u64> {
        let events: &[AuditEvent] = if UNAUDITED_BENCHMARK { &[] } else { &events };
        let result = session.commit_audited(events).await;
        match &result {
            Ok(seq) => {
                let _ = self.queue.send(Msg::Appended { seq: *seq, events: events.len() }).await;
            }
            Err(e @ StoreError::AuditUnavailable(_)) => {
                tracing::error!(error = %e, "import failed closed: its audit events cannot be written");
                self.health.lock().unwrap_or_else(|e| e.into_inner()).append_failures += 1;
            }
            Err(_) => {}
        }
        result
    }

    /// Takes a checkpoint now of what this process appended, if any of it is unsigned.
    /// `Ok(None)`: nothing to sign (no signing key, or everything is covered already).
    pub async fn checkpoint(&self) -> Result<Option<SignedCheckpoint>> {
        let (reply, wait) = oneshot::channel();
        let stopped = || VaultError::Internal("audit writer stopped".into());
        self.queue.send(Msg::Checkpoint(reply)).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?.map_err(VaultError::Internal)
    }

    pub(crate) async fn publish(&self, line: SignedCheckpoint) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Msg::Publish(line, done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    pub(crate) async fn rebase(&self) {
        let _ = self.queue.send(Msg::Rebase).await;
    }

    pub fn health(&self) -> AuditHealth {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner()).clone();
        health.commits = self.counters.commits.load(Ordering::Relaxed);
        health.events = self.counters.events.load(Ordering::Relaxed);
        let head = *self.head.borrow();
        for sink in &mut health.siem {
            sink.head_seq = sink.head_seq.max(head);
            sink.lag = sink.head_seq.saturating_sub(sink.forwarded_seq);
        }
        health
    }
}

/// What the writer task owns.
struct Writer {
    store: Arc<dyn Store>,
    checkpointer: Option<Checkpointer>,
    health: Arc<Mutex<AuditHealth>>,
    head: watch::Sender<u64>,
    counters: Arc<Counters>,
}

impl Writer {
    /// One batch in one transaction. In an `unaudited-benchmark` build the batch is dropped
    /// and acknowledged with the current head, as if it had been written.
    async fn append(&self, events: &[AuditEvent]) -> mamori_store::Result<u64> {
        if UNAUDITED_BENCHMARK {
            return Ok(*self.head.borrow());
        }
        let seq = self.store.append_audit(events).await?;
        self.counted(events.len());
        Ok(seq)
    }

    /// A commit that appended `events`. One without events (a sealed write with nothing to
    /// say, such as shares held after their download's event) is not an audit commit, and
    /// would only dilute the events-per-commit figure.
    fn counted(&self, events: usize) {
        if events == 0 {
            return;
        }
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        self.counters.events.fetch_add(events as u64, Ordering::Relaxed);
    }

    /// A change and its events in one transaction; the new head is announced and offered to
    /// the checkpointer as after a batch. In an `unaudited-benchmark` build the change is
    /// applied without its events.
    async fn apply(&mut self, c: Change) {
        let events: &[AuditEvent] = if UNAUDITED_BENCHMARK { &[] } else { &c.events };
        let result = self.store.apply_audited(&c.change, events).await;
        match &result {
            Ok(seq) => {
                self.counted(events.len());
                self.head.send_replace(*seq);
            }
            // The change's own refusals (a taken unique value, a record gone) are answers.
            Err(StoreError::Conflict(_) | StoreError::NotFound) => {}
            // Only a failure of the audit part is the logging pipeline's own.
            Err(e @ StoreError::AuditUnavailable(_)) => {
                tracing::error!(error = %e, "audited change failed; nothing was committed");
                self.health.lock().unwrap_or_else(|e| e.into_inner()).append_failures += 1;
            }
            Err(e) => tracing::warn!(error = %e, "audited change failed; nothing was committed"),
        }
        let _ = c.done.send(result.clone());
        if let (Ok(seq), Some(cp)) = (&result, self.checkpointer.as_mut()) {
            cp.appended(*seq);
            let _ = cp.maybe(&*self.store, false).await;
        }
    }
}

impl Writer {
    /// Events this process committed in a transaction of its own (an import): counted,
    /// announced and offered to the checkpointer as after a batch. The head only moves
    /// forward: the writer may have appended after them already.
    async fn appended_elsewhere(&mut self, seq: u64, events: usize) {
        self.counted(events);
        self.head.send_if_modified(|head| {
            let newer = seq > *head;
            *head = (*head).max(seq);
            newer
        });
        if let Some(cp) = self.checkpointer.as_mut() {
            cp.appended(seq);
            let _ = cp.maybe(&*self.store, false).await;
        }
    }
}

async fn writer(mut rx: mpsc::Receiver<Msg>, mut w: Writer) {
    let (store, health) = (w.store.clone(), w.health.clone());
    let period = w.checkpointer.as_ref().map(Checkpointer::tick_period).unwrap_or(std::time::Duration::from_secs(3600));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            msg = rx.recv() => match msg {
                Some(msg) => msg,
                None => break,
            },
            _ = tick.tick(), if w.checkpointer.is_some() => {
                if let Some(c) = w.checkpointer.as_mut() {
                    let _ = c.maybe(&*store, false).await;
                }
                continue;
            }
        };
        let first = match msg {
            Msg::Append(p) => p,
            Msg::Apply(c) => {
                w.apply(c).await;
                continue;
            }
            Msg::Appended { seq, events } => {
                w.appended_elsewhere(seq, events).await;
                continue;
            }
            control => {
                control_message(control, &*store, &mut w.checkpointer).await;
                continue;
            }
        };
        let mut batch = vec![first];
        let mut deferred = Vec::new();
        let mut count = batch[0].events.len();
        while count < MAX_BATCH_EVENTS {
            match rx.try_recv() {
                Ok(Msg::Append(p)) => {
                    count += p.events.len();
                    batch.push(p);
                }
                Ok(control) => deferred.push(control),
                Err(_) => break,
            }
        }
        let events: Vec<AuditEvent> = batch.iter().flat_map(|p| p.events.iter().cloned()).collect();
        let result = w.append(&events).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, events = events.len(), "audit append failed; failing the requests closed");
            health.lock().unwrap_or_else(|e| e.into_inner()).append_failures += 1;
        }
        // Each waiter learns the seq of the batch's last event; enough to order and to prove
        // durability.
        for p in batch {
            let _ = p.done.send(result.clone().map_err(|e| e.to_string()));
        }
        if let Ok(seq) = &result {
            w.head.send_replace(*seq);
        }
        // Only now, with every waiter answered, is a checkpoint considered.
        if let (Ok(seq), Some(c)) = (&result, w.checkpointer.as_mut()) {
            c.appended(*seq);
            let _ = c.maybe(&*store, false).await;
        }
        for control in deferred {
            match control {
                Msg::Apply(c) => w.apply(c).await,
                Msg::Appended { seq, events } => w.appended_elsewhere(seq, events).await,
                control => control_message(control, &*store, &mut w.checkpointer).await,
            }
        }
    }
}

async fn control_message(msg: Msg, store: &dyn Store, checkpointer: &mut Option<Checkpointer>) {
    match msg {
        Msg::Append(_) | Msg::Apply(_) | Msg::Appended { .. } => {
            unreachable!("appends and changes are the writer's own")
        }
        Msg::Checkpoint(reply) => {
            let result = match checkpointer.as_mut() {
                Some(c) => c.maybe(store, true).await,
                None => Ok(None),
            };
            let _ = reply.send(result);
        }
        Msg::Publish(line, done) => {
            if let Some(c) = checkpointer.as_mut() {
                c.publish(&line).await;
            }
            let _ = done.send(());
        }
        Msg::Rebase => {
            if let Some(c) = checkpointer.as_mut() {
                c.rebase();
            }
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    mamori_core::audit::to_hex(bytes)
}
