//! Reading the audit trail for people: queries, review marks, retention.
//!
//! Measures: access logs checked periodically and for work outside a worker's authority
//! (002-S-11, 001-20-rule-0-5, 004-V-1-4-b, 004-V-1-33-b); administrators' work logs
//! reviewed by someone else, with the review itself on record (004-V-1-23, 004-V-1-24,
//! 004-II-1-5); use of audit tools kept to the entitled roles and itself audited
//! (004-V-1-34); logs kept long enough — never less than three months — and pruned only
//! under a signed anchor (000-8-access-9, 004-V-1-4-a, 004-V-1-33-a).

use super::checkpoint::{row_checkpoint, sign, signature_valid};
use crate::error::{Result, VaultError};
use crate::{Principal, Vault};
use mamori_core::access::Action;
use mamori_core::audit::{ADMIN_ACTION_PREFIXES, AuditEvent, CheckpointKind, Outcome};
use mamori_core::ids::{CollectionName, RecordId, SubjectId};
use mamori_store::{ActionMatch, AuditQuery, AuditRow};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use time::OffsetDateTime;

/// Most events one query returns.
pub const MAX_QUERY_LIMIT: usize = 1000;
const DEFAULT_QUERY_LIMIT: usize = 100;
/// Retention may not be set shorter than this (seed 004: at least three months).
pub const MIN_RETENTION_DAYS: u32 = 90;
const MAX_NOTE_CHARS: usize = 500;

/// What to look for. Every filter given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// From this time on (RFC 3339, inclusive).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<OffsetDateTime>,
    /// Before this time (RFC 3339, exclusive).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
    /// The actor as recorded: `user:<uuid>`, `cli:<name>` or `anonymous`.
    #[serde(default)]
    pub actor: Option<String>,
    /// The actor by login (resolved to `user:<uuid>`).
    #[serde(default)]
    pub login: Option<String>,
    /// Who accessed this data subject's records.
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub collection: Option<String>,
    #[serde(default)]
    pub record: Option<String>,
    /// Actions starting with this, e.g. `record.` or `auth.login`.
    #[serde(default)]
    pub action: Option<String>,
    /// `success`, `denied` or `failure`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub outcome: Option<Outcome>,
    /// Only failed logins.
    #[serde(default)]
    pub failed_logins: bool,
    /// Only administrator operations (accounts, collections and schemas, keys, pruning).
    #[serde(default)]
    pub admin_ops: bool,
    /// Paging: events after this sequence number.
    #[serde(default)]
    pub after_seq: u64,
    /// At most this many events (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// One event as a query returns it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: u64,
    /// Hex of the event's chain hash.
    pub hash: String,
    /// The actor's login, when the actor is an account that still exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[schema(value_type = Object)]
    pub event: AuditEvent,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEntry>,
    /// Pass as `after_seq` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after_seq: Option<u64>,
    /// For administrator operations: the latest review mark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_review: Option<ReviewMark>,
}

/// "Administrator operations up to `reviewed_to` were reviewed by … on …". The mark is itself
/// the audit event `audit.review`, so it is chained and signed like every other event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReviewMark {
    /// Sequence number of the `audit.review` event.
    pub seq: u64,
    pub reviewed_to: u64,
    pub reviewer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviewer_login: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Events older than this were eligible.
    #[serde(with = "time::serde::rfc3339")]
    pub cutoff: OffsetDateTime,
    /// The checkpoint the prune stops at (the new anchor); `None`: nothing to prune.
    pub anchor_seq: Option<u64>,
    pub events_deleted: u64,
    pub dry_run: bool,
    /// With SIEM sinks configured: the last event every one of them acknowledged. Nothing
    /// after it is pruned, so a sink that is behind (or down) loses nothing.
    pub siem_forwarded_to: Option<u64>,
}

fn invalid(m: impl Into<String>) -> VaultError {
    VaultError::Invalid(m.into())
}

/// An actor as recorded: `user:<uuid>`, `cli:<name>`, `anonymous`.
fn valid_actor(actor: &str) -> bool {
    actor.len() <= 100 && !actor.is_empty() && actor.chars().all(|c| c.is_ascii_graphic())
}

fn valid_action_prefix(action: &str) -> bool {
    (1..=64).contains(&action.len()) && action.bytes().all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_')
}

fn describe(q: &AuditQuery, f: &AuditFilter) -> String {
    let mut parts = Vec::new();
    let time = |t: OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    if let Some(t) = q.from {
        parts.push(format!("from={}", time(t)));
    }
    if let Some(t) = q.until {
        parts.push(format!("until={}", time(t)));
    }
    for (name, value) in [
        ("actor", &q.actor),
        ("subject", &q.subject),
        ("collection", &q.collection),
        ("record", &q.record),
        ("outcome", &q.outcome),
    ] {
        if let Some(v) = value {
            parts.push(format!("{name}={v}"));
        }
    }
    if f.failed_logins {
        parts.push("failed_logins".into());
    } else if f.admin_ops {
        parts.push("admin_ops".into());
    } else if let Some(a) = &f.action {
        parts.push(format!("action={a}*"));
    }
    if q.after_seq > 0 {
        parts.push(format!("after_seq={}", q.after_seq));
    }
    if parts.is_empty() { "all events".into() } else { parts.join(" ") }
}

impl Vault {
    /// Turns a filter into a store query, checking every value: only ids reach the store and
    /// the audit log.
    async fn audit_query(&self, f: &AuditFilter) -> Result<AuditQuery> {
        let limit = f.limit.unwrap_or(DEFAULT_QUERY_LIMIT);
        if !(1..=MAX_QUERY_LIMIT).contains(&limit) {
            return Err(invalid(format!("limit must be 1..={MAX_QUERY_LIMIT}")));
        }
        if let (Some(from), Some(until)) = (f.from, f.until)
            && from >= until
        {
            return Err(invalid("`from` must be before `until`"));
        }
        let actor = match (&f.actor, &f.login) {
            (Some(_), Some(_)) => return Err(invalid("give `actor` or `login`, not both")),
            (Some(a), None) if !valid_actor(a) => return Err(invalid("actor must be like user:<uuid> or cli:<name>")),
            (Some(a), None) => Some(a.clone()),
            (None, Some(login)) => {
                let user = self.store.get_user_by_login(login).await?.ok_or(VaultError::NotFound("user"))?;
                Some(format!("user:{}", user.id))
            }
            (None, None) => None,
        };
        let subject = f.subject.as_deref().map(SubjectId::new).transpose()?.map(|s| s.to_string());
        let collection = f.collection.as_deref().map(CollectionName::new).transpose()?.map(|c| c.to_string());
        let record = f.record.as_deref().map(str::parse::<RecordId>).transpose()?.map(|r| r.to_string());
        let mut outcome = f.outcome;
        let shortcuts = usize::from(f.failed_logins) + usize::from(f.admin_ops) + usize::from(f.action.is_some());
        if shortcuts > 1 {
            return Err(invalid("give at most one of `action`, `failed_logins` and `admin_ops`"));
        }
        let actions = if f.failed_logins {
            if outcome.is_some_and(|o| o != Outcome::Failure) {
                return Err(invalid("failed logins have the outcome `failure`"));
            }
            outcome = Some(Outcome::Failure);
            vec![ActionMatch::Exact("auth.login".into())]
        } else if f.admin_ops {
            ADMIN_ACTION_PREFIXES.iter().map(|p| ActionMatch::Prefix((*p).into())).collect()
        } else if let Some(a) = &f.action {
            if !valid_action_prefix(a) {
                return Err(invalid("action must match [a-z._]{1,64}"));
            }
            vec![ActionMatch::Prefix(a.clone())]
        } else {
            Vec::new()
        };
        Ok(AuditQuery {
            after_seq: f.after_seq,
            limit,
            from: f.from,
            until: f.until,
            actor,
            subject,
            collection,
            record,
            actions,
            outcome: outcome.map(|o| o.as_str().to_owned()),
        })
    }

    /// Events as stored, each checked: well-formed, and its indexed columns saying what the
    /// event says (a row whose columns were altered to match a filter is refused).
    fn audit_entries(&self, rows: Vec<AuditRow>, logins: &HashMap<String, String>) -> Result<Vec<AuditEntry>> {
        rows.into_iter()
            .map(|row| {
                let event: AuditEvent = serde_json::from_str(&row.event_json).map_err(|_| {
                    VaultError::Integrity(format!(
                        "audit event {} is not well-formed; run `mamori audit verify`",
                        row.seq
                    ))
                })?;
                if !row.columns.agree_with(&event) {
                    return Err(VaultError::Integrity(format!(
                        "audit event {} does not match its indexed columns; run `mamori audit verify`",
                        row.seq
                    )));
                }
                Ok(AuditEntry {
                    seq: row.seq,
                    hash: super::hex(&row.hash),
                    login: logins.get(&event.actor).cloned(),
                    event,
                })
            })
            .collect()
    }

    async fn actor_logins(&self) -> Result<HashMap<String, String>> {
        Ok(self.store.list_users().await?.into_iter().map(|u| (format!("user:{}", u.id), u.login)).collect())
    }

    /// Searches the audit trail (auditors and privacy officers). The query is itself
    /// recorded — who looked, with which filter, how many events — before anything is
    /// returned.
    pub async fn query_audit(&self, p: &Principal, filter: &AuditFilter) -> Result<AuditPage> {
        self.authorize(p, Action::AuditRead, "audit.query", None).await?;
        let query = self.audit_query(filter).await?;
        let rows = self.store.query_audit(&query).await?;
        let logins = self.actor_logins().await?;
        let events = self.audit_entries(rows, &logins)?;
        let last_review = if filter.admin_ops { self.last_review(&logins).await? } else { None };
        let mut e = self.event(p, "audit.query", Outcome::Success);
        e.reason = Some(describe(&query, filter));
        e.rows = Some(events.len() as u64);
        self.audit.record(vec![e]).await?;
        let next_after_seq = (events.len() == query.limit).then(|| events.last().map(|e| e.seq)).flatten();
        Ok(AuditPage { events, next_after_seq, last_review })
    }

    async fn last_review(&self, logins: &HashMap<String, String>) -> Result<Option<ReviewMark>> {
        let mut query = AuditQuery {
            actions: vec![ActionMatch::Exact("audit.review".into())],
            limit: MAX_QUERY_LIMIT,
            ..AuditQuery::default()
        };
        let mut last = None;
        loop {
            let rows = self.store.query_audit(&query).await?;
            let full = rows.len() == query.limit;
            if let Some(row) = rows.last() {
                query.after_seq = row.seq;
                last = Some(row.clone());
            }
            if !full {
                break;
            }
        }
        let Some(row) = last else { return Ok(None) };
        let entry = self.audit_entries(vec![row], logins)?.remove(0);
        Ok(Some(ReviewMark {
            seq: entry.seq,
            reviewed_to: entry.event.reviewed_to.unwrap_or_default(),
            reviewer: entry.event.actor.clone(),
            reviewer_login: entry.login,
            at: entry.event.at,
            note: entry.event.note.clone().unwrap_or_default(),
        }))
    }

    /// Records that the administrator operations up to `reviewed_to` were reviewed, by the
    /// caller, now. The mark is the audit event `audit.review` itself.
    pub async fn review_audit(&self, p: &Principal, reviewed_to: u64, note: &str) -> Result<ReviewMark> {
        self.authorize(p, Action::AuditRead, "audit.review", None).await?;
        let note = note.trim();
        if note.is_empty() || note.chars().count() > MAX_NOTE_CHARS || note.chars().any(char::is_control) {
            return Err(invalid(format!("the note needs 1 to {MAX_NOTE_CHARS} characters on one line")));
        }
        let exists = self.store.read_audit(reviewed_to, 1).await?.first().is_some_and(|r| r.seq == reviewed_to);
        if reviewed_to == 0 || !exists {
            return Err(invalid(format!("there is no audit event {reviewed_to} to review up to")));
        }
        let mut e = self.event(p, "audit.review", Outcome::Success);
        e.reviewed_to = Some(reviewed_to);
        e.note = Some(note.to_owned());
        let at = e.at;
        let seq = self.audit.record(vec![e]).await?;
        Ok(ReviewMark {
            seq,
            reviewed_to,
            reviewer: p.actor(),
            reviewer_login: p.user_id.map(|_| p.login.clone()),
            at,
            note: note.to_owned(),
        })
    }

    /// Deletes events older than `retention_days`, only up to a validly signed checkpoint,
    /// and leaves a signed anchor (that checkpoint's sequence number and hash) so that what
    /// remains still verifies. Only the local operator may prune, and only when the whole
    /// log verifies: pruning a tampered log would destroy the evidence. `siem_sinks` are the
    /// configured SIEM sinks ([`crate::SiemSettings::sink_names`]): events one of them has
    /// not acknowledged yet are kept.
    pub async fn prune_audit(
        &self,
        p: &Principal,
        retention_days: u32,
        dry_run: bool,
        siem_sinks: &[&str],
    ) -> Result<PruneReport> {
        if p.user_id.is_some() {
            let mut e = self.event(p, "audit.prune", Outcome::Denied);
            e.reason = Some("only the local operator prunes the audit log".into());
            self.audit.record(vec![e]).await?;
            return Err(VaultError::Forbidden);
        }
        if retention_days < MIN_RETENTION_DAYS {
            return Err(invalid(format!("audit retention must be at least {MIN_RETENTION_DAYS} days")));
        }
        let key =
            self.config.audit.signing_key.clone().ok_or_else(|| invalid("pruning needs the audit signing key"))?;
        let public = key.verifying_key();
        let report = self.verify_audit().await?;
        if !report.ok {
            return Err(VaultError::Integrity(format!(
                "the audit log does not verify ({}); nothing was pruned",
                report.problem.unwrap_or_default()
            )));
        }
        let cutoff = self.clock.now() - time::Duration::days(i64::from(retention_days));
        let mut siem_forwarded_to = None;
        for sink in siem_sinks {
            let acknowledged = super::siem_cursor(&*self.store, sink).await?.map_or(0, |c| c.seq);
            siem_forwarded_to = Some(siem_forwarded_to.map_or(acknowledged, |s: u64| s.min(acknowledged)));
        }
        // The newest valid checkpoint taken before the cutoff: every event up to it is older.
        // With SIEM sinks, also no later than what they all acknowledged.
        let mut target = None;
        let mut from = 0;
        'scan: loop {
            let rows = self.store.read_audit_checkpoints(from, 1000).await?;
            let Some(last) = rows.last() else { break };
            from = last.seq + 1;
            for row in rows.into_iter().filter(|r| r.kind == CheckpointKind::Checkpoint) {
                if row.at >= cutoff {
                    break 'scan;
                }
                let ok = row.seq < report.head_seq
                    && row.seq > report.anchor_seq.unwrap_or(0)
                    && siem_forwarded_to.is_none_or(|forwarded| row.seq <= forwarded)
                    && signature_valid(&public, &row_checkpoint(&row), &row.signature);
                if ok {
                    target = Some(row);
                }
            }
        }
        let mut out = PruneReport { cutoff, anchor_seq: None, events_deleted: 0, dry_run, siem_forwarded_to };
        let Some(target) = target else { return Ok(out) };
        out.anchor_seq = Some(target.seq);
        let count = target.seq + 1 - report.first_seq;
        if dry_run {
            out.events_deleted = count;
            return Ok(out);
        }
        // Announce before deleting: if the audit log is down, nothing is pruned.
        let mut e = self.event(p, "audit.prune", Outcome::Success);
        e.reason = Some(format!("events {}..={} older than {retention_days} days", report.first_seq, target.seq));
        e.rows = Some(count);
        self.audit.record(vec![e]).await?;
        let (anchor, line) = sign(&key, CheckpointKind::Anchor, target.seq, target.head_hash, self.clock.now());
        out.events_deleted = self.store.prune_audit(&anchor).await?;
        self.audit.rebase().await;
        self.audit.publish(line).await;
        Ok(out)
    }
}
