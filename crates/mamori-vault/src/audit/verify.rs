//! `mamori audit verify`: the hash chain, gap-free sequence numbers, the indexed columns
//! (compared with each event unless the database generates them from it), every stored
//! checkpoint and anchor, and the checkpoints of the external file — with the
//! first bad sequence number and the kind of tampering (002-S-11-b, 004-V-1-4-c,
//! 004-V-1-33-c; the log-collection process is itself checked, 002-S-11-d).
//!
//! What each check catches:
//! - the chain (`SHA-256(prev ‖ seq ‖ event)`): an event modified, deleted, inserted or moved
//!   without recomputing the hashes after it;
//! - stored and external signed checkpoints: a chain rewritten *with* recomputed hashes (the
//!   hash has no secret; the signature does), and — through the external file, which the
//!   database cannot reach — a tail truncated together with its stored checkpoints;
//! - the pruning anchor: events missing before the first one are gone lawfully only if a
//!   validly signed anchor says so.

use super::checkpoint::{row_checkpoint, signature_valid};
use super::parallel_walk::{Columns, Signed, VerifiedPrefix, verified_prefix};
use crate::AUDIT_PUBLIC_KEY;
use crate::error::{Result, VaultError};
use mamori_core::audit::{AuditEvent, CheckpointKind, GENESIS_HASH, SignedCheckpoint, chain_hash};
use mamori_crypto::AuditVerifyingKey;
use mamori_store::{AuditColumnSource, AuditRow, Store};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One parallel verification at a time per process: each keeps every core busy with jobs on
/// the blocking pool, which the store's own reads share, so concurrent verifications (API
/// callers, say) would only slow each other and everything else down.
static PARALLEL_VERIFICATION: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// How far a verification has got, for a progress display: events checked so far (the
/// parallel fast path adds whole pages as they finish; if it gives up, the sequential walk
/// starts the count again from the first event).
#[derive(Debug, Default)]
pub struct VerifyProgress {
    pub events: AtomicU64,
}

/// What kind of tampering a problem shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// An event's content (or its indexed columns) no longer matches its hash.
    Modified,
    /// Events are missing: a gap in the sequence numbers, or rows renumbered after one.
    Deleted,
    /// An event that the chain never contained.
    Inserted,
    /// Events are in the wrong order.
    Reordered,
    /// The log ends before a signed checkpoint that names a later sequence number.
    TruncatedBehindCheckpoint,
    /// A checkpoint or anchor whose signature does not verify with the audit key (or a
    /// stored public key that is not the signing key's).
    BadSignature,
    /// The chain is consistent in itself but not the one a signed checkpoint saw: events up
    /// to that checkpoint were rewritten and their hashes recomputed.
    Rewritten,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VerifyProblem {
    /// The first sequence number concerned, when the problem is tied to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub kind: ProblemKind,
    pub detail: String,
}

/// The result of `mamori audit verify`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    /// Events checked.
    pub events: u64,
    /// The first sequence number in the log (after the pruning anchor, if any).
    pub first_seq: u64,
    /// The last sequence number checked.
    pub head_seq: u64,
    /// Hex of the hash at `head_seq`, to compare with an external copy.
    pub head_hash: String,
    /// Events up to this sequence number were pruned under a signed anchor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor_seq: Option<u64>,
    /// Stored checkpoints and anchors whose signature was checked.
    pub checkpoints: u64,
    /// Checkpoints read from the external file.
    pub external_checkpoints: u64,
    /// The newest sequence number covered by a valid signed checkpoint; events after it are
    /// protected by the chain only until the next checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_up_to: Option<u64>,
    /// The earliest problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<ProblemKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub problems: Vec<VerifyProblem>,
    /// Things worth knowing that are not tampering (e.g. no checkpoint file configured).
    pub warnings: Vec<String>,
}

/// One line of an external checkpoint file: its number and what it holds.
pub type CheckpointLine = (usize, std::result::Result<SignedCheckpoint, String>);

/// Parses an external checkpoint file. Blank lines are skipped; a last line without its
/// newline (a write cut short by a crash) is skipped too.
pub fn parse_checkpoint_file(text: &str) -> Vec<CheckpointLine> {
    let complete = if text.ends_with('\n') { text } else { text.rsplit_once('\n').map(|(a, _)| a).unwrap_or("") };
    complete
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, serde_json::from_str::<SignedCheckpoint>(l).map_err(|_| "not a checkpoint".to_owned())))
        .collect()
}

/// The audit public key stored in the database, if any.
pub async fn stored_audit_key(store: &dyn Store) -> Result<Option<AuditVerifyingKey>> {
    match store.get_meta(AUDIT_PUBLIC_KEY).await? {
        Some(der) => AuditVerifyingKey::from_der(&der)
            .map(Some)
            .map_err(|_| VaultError::Integrity("the stored audit public key is malformed".into())),
        None => Ok(None),
    }
}

/// Verifies a store without opening a vault: no master key is needed, only the public key.
/// `trusted` is a public key held apart from the database (from the signing key file, or
/// given by an auditor); without it the database's own copy is used. The checkpoint file is
/// `given`, else `configured` (whose absence is only a warning: nothing was written yet).
pub async fn verify_store(
    store: &Arc<dyn Store>,
    trusted: Option<&AuditVerifyingKey>,
    configured: Option<&std::path::Path>,
    given: Option<&std::path::Path>,
    progress: &Arc<VerifyProgress>,
) -> Result<VerifyReport> {
    let stored = stored_audit_key(&**store).await?;
    // The database's own copy proves less: whoever can rewrite the events can replace the key
    // and re-sign. Say so, with the key's id to compare against a copy kept elsewhere.
    let key_warning = match (trusted, &stored) {
        (None, Some(key)) => Some(format!(
            "checkpoint signatures were checked against the public key stored in the database (key id {}): \
             whoever can rewrite the database can replace it as well; for independent proof, verify with the \
             public key kept apart from it (`mamori audit verify --public-key FILE`, or the signing key file)",
            key.key_id()
        )),
        _ => None,
    };
    let trusted = trusted.or(stored.as_ref());
    let mut missing_file = None;
    let lines = match given.or(configured) {
        None => None,
        Some(path) => match tokio::fs::read_to_string(path).await {
            Ok(text) => Some(parse_checkpoint_file(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && given.is_none() => {
                missing_file = Some(format!("the checkpoint file {} does not exist yet", path.display()));
                Some(Vec::new())
            }
            Err(e) => return Err(VaultError::Unavailable(format!("checkpoint file {}: {e}", path.display()))),
        },
    };
    let mut report = verify_chain(store, trusted, stored.as_ref(), lines.as_deref(), progress).await?;
    report.warnings.extend(missing_file);
    report.warnings.extend(key_warning);
    Ok(report)
}

/// Where an expected hash comes from.
#[derive(Clone, Debug)]
enum Source {
    Stored,
    External(usize),
}

impl Source {
    fn describe(&self, seq: u64) -> String {
        match self {
            Source::Stored => format!("the stored checkpoint at seq {seq}"),
            Source::External(line) => format!("the checkpoint file's line {line} (seq {seq})"),
        }
    }
}

struct Walk {
    problems: Vec<VerifyProblem>,
    warnings: Vec<String>,
}

impl Walk {
    fn problem(&mut self, seq: Option<u64>, kind: ProblemKind, detail: String) {
        self.problems.push(VerifyProblem { seq, kind, detail });
    }
}

/// Verifies everything. `key` is the trusted public key (from the signing key file when the
/// caller has it, else the one stored in the database); `stored_key` is the database's copy;
/// `external` the lines of the external checkpoint file, if there is one.
pub async fn verify_chain(
    store: &Arc<dyn Store>,
    key: Option<&AuditVerifyingKey>,
    stored_key: Option<&AuditVerifyingKey>,
    external: Option<&[CheckpointLine]>,
    progress: &Arc<VerifyProgress>,
) -> Result<VerifyReport> {
    let mut w = Walk { problems: Vec::new(), warnings: Vec::new() };
    if let (Some(k), Some(s)) = (key, stored_key)
        && k != s
    {
        w.problem(
            None,
            ProblemKind::BadSignature,
            format!("the public key stored in the database ({}) is not the signing key's ({})", s.key_id(), k.key_id()),
        );
    }

    // Signed positions of the chain: seq → hashes that must be found there.
    let mut expected: BTreeMap<u64, Vec<([u8; 32], Source)>> = BTreeMap::new();
    let mut anchor: Option<(u64, [u8; 32])> = None;
    let mut bad_anchor: Option<(u64, [u8; 32])> = None;
    let mut checkpoints = 0u64;
    let mut from = 0;
    loop {
        let rows = store.read_audit_checkpoints(from, 1000).await?;
        let Some(last) = rows.last() else { break };
        from = last.seq + 1;
        for row in rows {
            checkpoints += 1;
            let valid = key.is_some_and(|k| signature_valid(k, &row_checkpoint(&row), &row.signature));
            if !valid {
                let why = if key.is_none() {
                    "there is no public key to check it with"
                } else {
                    "its signature does not verify"
                };
                w.problem(
                    Some(row.seq),
                    ProblemKind::BadSignature,
                    format!("stored {} at seq {}: {why}", row.kind.as_str(), row.seq),
                );
            }
            match (row.kind, valid) {
                (CheckpointKind::Checkpoint, true) => {
                    expected.entry(row.seq).or_default().push((row.head_hash, Source::Stored));
                }
                (CheckpointKind::Anchor, true) => anchor = anchor.max(Some((row.seq, row.head_hash))),
                (CheckpointKind::Anchor, false) => bad_anchor = bad_anchor.max(Some((row.seq, row.head_hash))),
                (CheckpointKind::Checkpoint, false) => {}
            }
        }
    }

    let mut external_checkpoints = 0u64;
    let mut external_anchors = Vec::new();
    match external {
        None => {
            w.warnings.push("no external checkpoint file was checked; truncation of the tail cannot be detected".into())
        }
        Some(lines) => {
            for (line, parsed) in lines {
                let cp = match parsed.as_ref().ok().and_then(|c| c.decode().map(|d| (c, d))) {
                    Some(cp) => cp,
                    None => {
                        w.warnings.push(format!("checkpoint file line {line} is not a checkpoint; skipped"));
                        continue;
                    }
                };
                let (signed, (checkpoint, signature)) = cp;
                external_checkpoints += 1;
                if !key.is_some_and(|k| signature_valid(k, &checkpoint, &signature)) {
                    w.problem(
                        Some(signed.seq),
                        ProblemKind::BadSignature,
                        format!("checkpoint file line {line} (seq {}): its signature does not verify", signed.seq),
                    );
                    continue;
                }
                match checkpoint.kind {
                    CheckpointKind::Checkpoint => expected
                        .entry(checkpoint.seq)
                        .or_default()
                        .push((checkpoint.head_hash, Source::External(*line))),
                    CheckpointKind::Anchor => external_anchors.push((*line, checkpoint.seq, checkpoint.head_hash)),
                }
            }
        }
    }

    // Where the chain starts: after the pruning anchor, or at the genesis.
    let start = anchor.or(bad_anchor);
    let (prev, first_seq) = match start {
        Some((seq, hash)) => (hash, seq + 1),
        None => (GENESIS_HASH, 1),
    };
    for (line, seq, hash) in external_anchors {
        if Some(seq) == start.map(|a| a.0) && Some(hash) != start.map(|a| a.1) {
            w.problem(
                Some(seq),
                ProblemKind::Rewritten,
                format!("checkpoint file line {line}: the anchor at seq {seq} differs from the stored one"),
            );
        }
    }
    // Checkpoints inside the pruned part cannot be checked any more, except at the anchor.
    let pruned: Vec<u64> = expected.range(..first_seq).map(|(s, _)| *s).collect();
    for seq in pruned {
        for (hash, source) in expected.remove(&seq).unwrap_or_default() {
            if Some(seq) == start.map(|a| a.0) && Some(hash) != start.map(|a| a.1) {
                let what = source.describe(seq);
                w.problem(Some(seq), ProblemKind::Rewritten, format!("{what} differs from the pruning anchor"));
            }
        }
    }

    // Everything up to where the parallel check stopped is in order, and so is every signed
    // checkpoint in that part; the walk below goes on from there (from `first_seq` when the
    // parallel check found anything to look at).
    let signed: Signed =
        expected.iter().map(|(seq, hashes)| (*seq, hashes.iter().map(|(h, _)| *h).collect())).collect();
    // Three pages in flight per core: a worker's page is read and checked on the blocking
    // pool, and between two pages its core would idle while the next job is handed over
    // (measured on 2 cores: 2 workers 0.41×, 3 0.46–0.49×, 4 0.51–0.55×, 6 0.54–0.58× of
    // SHA-256; BENCHMARKS.md, session 13). Pages are streamed, not held, so a worker costs
    // only a pooled connection.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) * 3;
    // The semaphore is never closed, so this cannot fail; the permit is held to the end.
    let _one_at_a_time = PARALLEL_VERIFICATION.acquire().await;
    let source = store.audit_column_source().await?;
    let columns = if source == AuditColumnSource::Generated { Columns::Generated } else { Columns::Compared };
    if source == AuditColumnSource::Altered {
        // Not tampering with events as such (those are still checked, column by column), but
        // nothing mamori does changes the table's definition: someone with write access to
        // the database file did.
        w.warnings.push(
            "the audit table's definition is not the one mamori's migrations made (an index, trigger or \
             column definition was changed outside mamori): every event's indexed columns were compared"
                .into(),
        );
    }
    let VerifiedPrefix { mut next, mut prev, mut prev_prev } =
        verified_prefix(store, first_seq, prev, Arc::new(signed), columns, workers, progress)
            .await
            .unwrap_or(VerifiedPrefix { next: first_seq, prev, prev_prev: None });
    // The definition was read once, before the walk that relied on it.
    if source == AuditColumnSource::Generated && store.audit_column_source().await.ok() != Some(source) {
        w.warnings.push(
            "the audit table's definition changed (or could not be read again) while it was verified: run the \
             verification again"
                .into(),
        );
    }
    let mut last_matched = first_seq - 1;
    let mut signed_up_to = None;
    let in_prefix: Vec<u64> = expected.range(..next).map(|(seq, _)| *seq).collect();
    for seq in in_prefix {
        expected.remove(&seq);
        last_matched = seq;
        signed_up_to = Some(seq);
    }
    let store = &**store;
    let mut stopped = false;
    'walk: loop {
        let rows = store.read_audit(next, 1000).await?;
        if rows.is_empty() {
            break;
        }
        progress.events.store(next - first_seq, Ordering::Relaxed);
        for row in rows {
            if row.seq != next {
                let missing = if row.seq == next + 1 { format!("{next}") } else { format!("{next}..={}", row.seq - 1) };
                w.problem(
                    Some(next),
                    ProblemKind::Deleted,
                    format!("event(s) {missing} missing: the sequence jumps to {}", row.seq),
                );
                stopped = true;
                break 'walk;
            }
            let event = match serde_json::from_str::<AuditEvent>(&row.event_json) {
                Ok(e) => e,
                Err(_) => {
                    w.problem(
                        Some(row.seq),
                        ProblemKind::Modified,
                        format!("event {} is not a well-formed event", row.seq),
                    );
                    stopped = true;
                    break 'walk;
                }
            };
            if chain_hash(&prev, row.seq, &row.event_json) != row.hash {
                let (seq, kind, detail) = classify(store, &row, prev, prev_prev).await?;
                w.problem(Some(seq), kind, detail);
                stopped = true;
                break 'walk;
            }
            if !row.columns.agree_with(&event) {
                w.problem(
                    Some(row.seq),
                    ProblemKind::Modified,
                    format!("event {}: the indexed columns do not match the event (a query could be misled)", row.seq),
                );
            }
            let before = prev;
            prev_prev = Some(prev);
            prev = row.hash;
            next += 1;
            if let Some(signed) = expected.remove(&row.seq) {
                for (hash, source) in signed {
                    if hash != row.hash {
                        // A row slipped in with a hash made to fit: the next one belongs here.
                        let following = store.read_audit(row.seq + 1, 1).await?;
                        if following.first().is_some_and(|n| {
                            n.seq == row.seq + 1 && chain_hash(&before, row.seq, &n.event_json) == n.hash
                        }) {
                            let s = row.seq;
                            w.problem(
                                Some(s),
                                ProblemKind::Inserted,
                                format!("event {s} was inserted: the event after it belongs at {s}"),
                            );
                            stopped = true;
                            break 'walk;
                        }
                        w.problem(
                            Some(last_matched + 1),
                            ProblemKind::Rewritten,
                            format!(
                                "events {}..={} are not those {} signed: rewritten with recomputed hashes",
                                last_matched + 1,
                                row.seq,
                                source.describe(row.seq)
                            ),
                        );
                        stopped = true;
                        break 'walk;
                    }
                }
                last_matched = row.seq;
                signed_up_to = Some(row.seq);
            }
        }
    }
    let head_seq = next - 1;
    if !stopped && let Some((&seq, sources)) = expected.iter().next() {
        let what = sources.first().map(|(_, s)| s.describe(seq)).unwrap_or_default();
        w.problem(
            Some(head_seq + 1),
            ProblemKind::TruncatedBehindCheckpoint,
            format!("the log ends at seq {head_seq}, but {what} names a later event: the tail was removed"),
        );
    }
    if key.is_none() {
        w.warnings.push("no audit public key: checkpoint signatures could not be checked".into());
    }
    if checkpoints == 0 && external_checkpoints == 0 && head_seq >= first_seq {
        w.warnings.push("no signed checkpoint yet: the chain alone cannot show a rewrite".into());
    }

    w.problems.sort_by_key(|p| (p.seq.is_none(), p.seq));
    let first = w.problems.first().cloned();
    Ok(VerifyReport {
        ok: w.problems.is_empty(),
        events: head_seq + 1 - first_seq,
        first_seq,
        head_seq,
        head_hash: super::hex(&prev),
        anchor_seq: start.map(|a| a.0),
        checkpoints,
        external_checkpoints,
        signed_up_to,
        first_bad_seq: first.as_ref().and_then(|p| p.seq),
        kind: first.as_ref().map(|p| p.kind),
        problem: first.map(|p| p.detail),
        problems: w.problems,
        warnings: w.warnings,
    })
}

/// Says what happened at the first event whose hash does not fit: the row there, the hash
/// before it and the one before that.
async fn classify(
    store: &dyn Store,
    row: &AuditRow,
    prev: [u8; 32],
    prev_prev: Option<[u8; 32]>,
) -> Result<(u64, ProblemKind, String)> {
    let s = row.seq;
    let window = store.read_audit(s, 32).await?;
    let later = window.get(1..).unwrap_or_default();
    // Moved here from further on: this event fits right after one of the later rows.
    if later.iter().any(|r| chain_hash(&r.hash, r.seq + 1, &row.event_json) == row.hash)
        || later.iter().any(|r| chain_hash(&prev, s, &r.event_json) == row.hash)
    {
        return Ok((s, ProblemKind::Reordered, format!("event {s} is out of order: it belongs further on")));
    }
    // The next row is the one that belongs here: this row was slipped in before it.
    if later.first().is_some_and(|next| chain_hash(&prev, s, &next.event_json) == next.hash) {
        return Ok((s, ProblemKind::Inserted, format!("event {s} was inserted: the event after it belongs at {s}")));
    }
    // This row belongs one place earlier: the row before it (whose hash was made to fit)
    // was slipped in.
    if let Some(pp) = prev_prev
        && s > 1
        && chain_hash(&pp, s - 1, &row.event_json) == row.hash
    {
        let i = s - 1;
        return Ok((i, ProblemKind::Inserted, format!("event {i} was inserted: the event after it belongs at {i}")));
    }
    // The rows after a deleted one were renumbered: the next row still links to this one's
    // hash, but one sequence number further on.
    if later.first().is_some_and(|next| chain_hash(&row.hash, s + 2, &next.event_json) == next.hash) {
        return Ok((s, ProblemKind::Deleted, format!("an event was deleted at {s} and the later ones renumbered")));
    }
    Ok((s, ProblemKind::Modified, format!("event {s} was modified: its content does not match its hash")))
}
