//! Forwarding the audit trail to a SIEM: a JSON-lines file with rotation, and syslog
//! (RFC 5424) over TCP, so that access logs are monitored and analysed outside mamori
//! (000-8-access-8, 001-20-tech-8-2, 002-S-11, 002-T-5-a).
//!
//! The database is the queue. Each sink has a forwarder task that reads events from the
//! store after the last sequence number the sink acknowledged, writes them, and then stores
//! the new position as a meta entry (`audit_siem_cursor_<sink>`), so a restart, a sink that
//! is down or slow, or a full disk never loses an event: the forwarder retries with
//! exponential backoff from the acknowledged position. Delivery is at least once; the
//! sequence number in every line or message lets a receiver drop duplicates.
//!
//! The forwarder never holds up a request: appends only publish the new head on a `watch`
//! channel (which never blocks) and the forwarder, woken by it or by a timer, catches up at
//! its own pace. Its failures show in [`AuditHealth`] (002-S-11-d), and its cursor in
//! `mamori status`.
//!
//! Sinks come from the server's configuration file only, never from the API or the
//! environment: whoever could point a sink elsewhere could read the whole trail, or fill a
//! disk of their choosing. Only `mamori serve` forwards; with several instances on one
//! PostgreSQL database, configure each sink on one instance only (two forwarders on one
//! cursor would only send duplicates, but twice the traffic).

mod jsonl;
mod syslog;

use super::AuditHealth;
use mamori_core::clock::Clock;
use mamori_store::{AuditRow, Store};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::watch;

pub use jsonl::JsonlSinkSettings;
pub use syslog::SyslogSinkSettings;

/// Events per read and per write: large enough to catch up fast, small enough that a write
/// to a slow receiver finishes within the timeout.
const BATCH: usize = 256;
/// How often an idle forwarder looks for events appended by other instances.
const POLL: Duration = Duration::from_secs(1);
const FIRST_RETRY: Duration = Duration::from_millis(200);

/// `[audit.siem]`: where the audit trail is forwarded. Read from the configuration file
/// only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SiemSettings {
    /// The longest wait between two attempts of a failing sink (seconds).
    pub retry_max_seconds: u64,
    /// `mamori status` reports a sink unhealthy when its oldest unforwarded event is older
    /// than this (seconds).
    pub alert_after_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<JsonlSinkSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogSinkSettings>,
}

impl Default for SiemSettings {
    fn default() -> Self {
        Self { retry_max_seconds: 60, alert_after_seconds: 300, file: None, syslog: None }
    }
}

impl SiemSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=3600).contains(&self.retry_max_seconds) {
            return Err("audit.siem.retry_max_seconds must be 1..=3600".into());
        }
        if !(1..=86_400).contains(&self.alert_after_seconds) {
            return Err("audit.siem.alert_after_seconds must be 1..=86400".into());
        }
        if let Some(file) = &self.file {
            file.validate()?;
        }
        if let Some(syslog) = &self.syslog {
            syslog.validate()?;
        }
        Ok(())
    }

    /// The names of the configured sinks, as used in cursors, health and metrics.
    pub fn sink_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.file.is_some() {
            names.push(jsonl::NAME);
        }
        if self.syslog.is_some() {
            names.push(syslog::NAME);
        }
        names
    }
}

/// One sink's state, for `/metrics`, the health endpoint and operators. Ids and counts only.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SiemHealth {
    /// `file` or `syslog`.
    pub sink: String,
    /// The last sequence number the sink acknowledged.
    pub forwarded_seq: u64,
    /// The newest sequence number the forwarder knows of.
    pub head_seq: u64,
    /// Events not yet acknowledged by the sink.
    pub lag: u64,
    /// Failed attempts since the last success (0: working).
    pub consecutive_failures: u64,
    /// Failed attempts since start.
    pub failures: u64,
    /// The most recent failure, without values.
    pub last_error: Option<String>,
}

impl SiemHealth {
    pub(crate) fn new(sink: &str) -> Self {
        Self { sink: sink.to_owned(), ..Self::default() }
    }

    pub fn ok(&self) -> bool {
        self.consecutive_failures == 0
    }
}

/// A sink's position as stored (`audit_siem_cursor_<sink>`): what it acknowledged, and the
/// state of its latest attempts, so that `mamori status` sees a failing sink without asking
/// the server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiemCursor {
    pub seq: u64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub forwarded_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub consecutive_failures: u64,
    #[serde(default)]
    pub last_error: Option<String>,
}

fn cursor_key(sink: &str) -> String {
    format!("audit_siem_cursor_{sink}")
}

/// The stored position of `sink` (`None`: it never forwarded anything).
pub async fn siem_cursor(store: &dyn Store, sink: &str) -> crate::Result<Option<SiemCursor>> {
    let Some(bytes) = store.get_meta(&cursor_key(sink)).await? else { return Ok(None) };
    let cursor = serde_json::from_slice(&bytes)
        .map_err(|e| crate::VaultError::Integrity(format!("SIEM cursor of `{sink}` is unreadable: {e}")))?;
    Ok(Some(cursor))
}

/// The sequence number of the newest event (0 for an empty trail). Sequence numbers are
/// gap-free from the oldest kept event on, so a galloping search over `read_audit` finds it
/// in a few indexed lookups, without reading the trail.
pub async fn audit_head_seq(store: &dyn Store) -> crate::Result<u64> {
    let exists = |seq: u64| async move { Ok::<_, crate::VaultError>(!store.read_audit(seq, 1).await?.is_empty()) };
    let Some(first) = store.read_audit(0, 1).await?.first().map(|r| r.seq) else { return Ok(0) };
    let (mut low, mut step) = (first, 1u64);
    while exists(low.saturating_add(step)).await? {
        low += step;
        step = step.saturating_mul(2);
    }
    // `low` exists, `low + step` does not: bisect between them.
    let mut high = low.saturating_add(step);
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if exists(mid).await? {
            low = mid;
        } else {
            high = mid;
        }
    }
    Ok(low)
}

/// A destination of the trail.
enum Target {
    File(jsonl::JsonlFile),
    Syslog(syslog::SyslogTcp),
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::File(_) => jsonl::NAME,
            Target::Syslog(_) => syslog::NAME,
        }
    }

    async fn send(&mut self, rows: &[AuditRow]) -> std::io::Result<()> {
        match self {
            Target::File(f) => f.send(rows).await,
            Target::Syslog(s) => s.send(rows).await,
        }
    }

    /// The newest sequence number the sink has surely received, of those sent; an error
    /// when the sink lost the connection (what was not acknowledged is sent again).
    async fn acknowledged(&mut self) -> std::io::Result<Option<u64>> {
        match self {
            Target::File(f) => Ok(f.acknowledged()),
            Target::Syslog(s) => s.acknowledged().await,
        }
    }

    /// Forgets connections and unacknowledged writes after a failure.
    fn reset(&mut self) {
        match self {
            Target::File(f) => f.reset(),
            Target::Syslog(s) => s.reset(),
        }
    }
}

/// Starts one forwarder per configured sink. `head` carries the newest appended seq.
pub(crate) fn start(
    settings: &SiemSettings,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    head: &watch::Sender<u64>,
    health: &Arc<Mutex<AuditHealth>>,
) {
    let mut targets = Vec::new();
    if let Some(file) = &settings.file {
        targets.push(Target::File(jsonl::JsonlFile::new(file)));
    }
    if let Some(syslog) = &settings.syslog {
        targets.push(Target::Syslog(syslog::SyslogTcp::new(syslog)));
    }
    for target in targets {
        let forwarder = Forwarder {
            target,
            store: store.clone(),
            clock: clock.clone(),
            head: head.subscribe(),
            health: health.clone(),
            retry_max: Duration::from_secs(settings.retry_max_seconds),
            cursor: SiemCursor::default(),
            sent: 0,
        };
        tokio::spawn(forwarder.run());
    }
}

struct Forwarder {
    target: Target,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    head: watch::Receiver<u64>,
    health: Arc<Mutex<AuditHealth>>,
    retry_max: Duration,
    /// What the sink acknowledged (and is stored).
    cursor: SiemCursor,
    /// What was written to the sink, acknowledged or not.
    sent: u64,
}

impl Forwarder {
    async fn run(mut self) {
        loop {
            match siem_cursor(&*self.store, self.target.name()).await {
                Ok(stored) => {
                    self.cursor = stored.unwrap_or_default();
                    break;
                }
                Err(e) => {
                    if !self.fail(e.to_string()).await {
                        return;
                    }
                }
            }
        }
        self.sent = self.cursor.seq;
        self.update_health(|_| {});
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            match self.step().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    self.target.reset();
                    self.sent = self.cursor.seq;
                    if !self.fail(e).await {
                        return;
                    }
                    continue;
                }
            }
            tokio::select! {
                changed = self.head.changed() => if changed.is_err() {
                    // The audit log is gone (the vault was dropped): nothing more will come.
                    return;
                },
                _ = tick.tick() => {}
            }
        }
    }

    /// Sends the next batch and records what the sink acknowledged. `Ok(true)`: there may
    /// be more to send at once.
    async fn step(&mut self) -> Result<bool, String> {
        let rows = self.store.read_audit(self.sent + 1, BATCH).await.map_err(|e| e.to_string())?;
        if let Some(first) = rows.first()
            && first.seq != self.sent + 1
        {
            // Only pruning removes events, and only those older than the retention period.
            tracing::warn!(
                sink = self.target.name(),
                from = self.sent + 1,
                to = first.seq - 1,
                "audit events were pruned before they were forwarded"
            );
        }
        if !rows.is_empty() {
            self.target.send(&rows).await.map_err(|e| format!("{} sink: {e}", self.target.name()))?;
            self.sent = rows.last().map_or(self.sent, |r| r.seq);
        }
        let acknowledged = self.target.acknowledged().await.map_err(|e| format!("{} sink: {e}", self.target.name()))?;
        let recovered = self.cursor.consecutive_failures > 0;
        self.cursor.consecutive_failures = 0;
        self.cursor.last_error = None;
        let advanced = acknowledged.filter(|&seq| seq > self.cursor.seq);
        if let Some(seq) = advanced {
            self.cursor.seq = seq;
            self.cursor.forwarded_at = Some(self.clock.now());
        }
        if advanced.is_some() || recovered {
            self.save(&self.cursor).await.map_err(|e| format!("storing the {} cursor: {e}", self.target.name()))?;
        }
        self.update_health(|_| {});
        Ok(rows.len() == BATCH)
    }

    async fn save(&self, cursor: &SiemCursor) -> mamori_store::Result<()> {
        let bytes = serde_json::to_vec(cursor).expect("a cursor always serialises");
        self.store.put_meta(&cursor_key(self.target.name()), &bytes).await
    }

    /// Records a failure and waits before the next attempt. False when the audit log is
    /// gone and the forwarder should stop.
    async fn fail(&mut self, error: String) -> bool {
        tracing::error!(sink = self.target.name(), error = %error, acknowledged = self.cursor.seq, "SIEM forwarding failed; retrying");
        self.cursor.consecutive_failures += 1;
        self.cursor.last_error = Some(error.clone());
        // Best effort: the store may be what failed.
        let _ = self.save(&self.cursor.clone()).await;
        let failures = self.cursor.consecutive_failures;
        self.update_health(|h| {
            h.failures += 1;
            h.last_error = Some(error);
        });
        let shift = u32::try_from(failures.saturating_sub(1)).unwrap_or(u32::MAX).min(16);
        let wait = FIRST_RETRY.saturating_mul(1 << shift).min(self.retry_max);
        tokio::time::sleep(wait).await;
        self.head.has_changed().is_ok()
    }

    fn update_health(&self, change: impl FnOnce(&mut SiemHealth)) {
        let head = (*self.head.borrow()).max(self.sent);
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = health.siem.iter_mut().find(|h| h.sink == self.target.name()) {
            h.forwarded_seq = self.cursor.seq;
            h.head_seq = head;
            h.lag = head.saturating_sub(self.cursor.seq);
            h.consecutive_failures = self.cursor.consecutive_failures;
            change(h);
        }
    }
}
