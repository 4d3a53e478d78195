//! The take-out ledger (持ち出し管理台帳): returns and witnessed disposals, the ledger itself,
//! and the alerts approvers see (overdue returns, thresholds crossed).

use crate::error::{Result, VaultError};
use crate::{Principal, Vault};
use mamori_core::access::Action;
use mamori_core::audit::Outcome;
use mamori_store::{ExportChange, ExportStatus, LedgerRow};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// How data taken out came to an end.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Settlement {
    /// The media or files came back (and were erased from wherever they travelled).
    /// Confirmed by the approver who received them, from their own session — never by the
    /// requester alone. `note` is free text kept in the ledger, which auditors read: ids
    /// and media names, never personal data.
    Return { note: Option<String> },
    /// Destroyed: how (e.g. "shredded", "secure erase"). Recorded by its witness from the
    /// witness's own session — an approver of the collection, never the requester — so the
    /// confirmation is the witness's, not a name the requester typed (000-8-takeout-12).
    Dispose { method: String },
}

/// One ledger line as shown to people: ids, counts and logins, never a personal value.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    pub seq: u64,
    pub export_id: Option<String>,
    /// request, approve, reject, cancel, download, share, return, dispose, print or alert.
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// Login of who acted.
    pub actor: String,
    pub rows: u64,
    /// Details of the line (format, protection, `encrypted`, file digests, share numbers,
    /// disposal method and witness, warnings).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Something an approver should act on.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TakeoutAlert {
    /// `overdue` (not returned or disposed of by its due date), `pending` (awaiting a
    /// decision) or `threshold` (a take-out crossed a warning threshold).
    pub kind: String,
    pub export_id: Option<String>,
    pub login: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    pub rows: u64,
}

/// How far back threshold alerts are shown.
const ALERT_DAYS: i64 = 7;

impl Vault {
    /// Closes an approved export: returned (confirmed by an approver of the collection other
    /// than the requester, who received the data back), or disposed of (recorded by the
    /// witness: an approver of the collection other than the requester, who watched the
    /// destruction). Either way the requester's word alone closes nothing.
    pub async fn settle_export(&self, p: &Principal, id: &str, how: &Settlement) -> Result<crate::ExportInfo> {
        let row = self.store.get_export(id).await?.ok_or(VaultError::NotFound("export request"))?;
        if Some(row.user_id) == p.user_id {
            return Err(VaultError::Invalid(
                "a return or disposal is confirmed by an approver (who received the data back or witnessed its \
                 destruction), not by the requester"
                    .into(),
            ));
        }
        self.authorize(p, Action::Approve, "export.settle", None).await?;
        self.authorize_collection(p, Action::Search, "export.settle", &row.collection).await?;
        if p.user_id.is_none() {
            return Err(VaultError::Invalid("returns and disposals are recorded by a logged-in account".into()));
        }
        let requester = self.login_of(&row.user_id).await?;
        let (kind, detail) = match how {
            Settlement::Return { note } => {
                let note = note.as_deref().map(str::trim).filter(|n| !n.is_empty());
                if note.is_some_and(|n| n.chars().count() > 500 || n.chars().any(char::is_control)) {
                    return Err(VaultError::Invalid("note: at most 500 printable characters".into()));
                }
                ("return", serde_json::json!({ "note": note, "received_by": p.login, "returned_by": requester }))
            }
            Settlement::Dispose { method } => {
                let method = method.trim();
                if method.is_empty() || method.chars().count() > 200 || method.chars().any(char::is_control) {
                    return Err(VaultError::Invalid("method: how the data was destroyed, 1–200 characters".into()));
                }
                ("dispose", serde_json::json!({ "method": method, "witness": p.login, "disposed_by": requester }))
            }
        };
        let change = ExportChange {
            from: ExportStatus::Approved,
            to: ExportStatus::Closed,
            by: p.actor(),
            at: self.clock.now(),
            download_until: None,
            secret: None,
        };
        let mut e = self.event(p, &format!("export.{kind}"), Outcome::Success);
        e.collection = Some(row.collection.clone());
        e.note = Some(format!("export {id}"));
        self.change_export(id, change, self.ledger_line(p, Some(id), kind, 0, detail), e, None).await?;
        self.discard_held_shares(p, id, &format!("the export was closed ({kind}) before every share was fetched"))
            .await?;
        let row = self.store.get_export(id).await?.ok_or(VaultError::NotFound("export request"))?;
        self.export_info(&row, true).await
    }

    /// The login behind an audit-style actor (`user:<id>`); other actors as they are.
    pub(super) async fn actor_login(&self, actor: &str) -> Result<String> {
        match actor.strip_prefix("user:").and_then(|id| id.parse::<mamori_core::ids::UserId>().ok()) {
            Some(user) => self.login_of(&user).await,
            None => Ok(actor.to_owned()),
        }
    }

    /// Who may read the whole ledger: approvers and auditors.
    async fn reads_ledger(&self, p: &Principal) -> Result<bool> {
        Ok(self.first_allowed(p, &[Action::Approve, Action::AuditRead]).await?.is_ok())
    }

    /// The ledger, oldest first: of one request (its requester may read that), or all
    /// (approvers and auditors).
    pub async fn takeout_ledger(&self, p: &Principal, export_id: Option<&str>) -> Result<Vec<LedgerEntry>> {
        let everything = self.reads_ledger(p).await?;
        match export_id {
            Some(id) if !everything => {
                self.own_export(p, id, "export.ledger").await?;
            }
            None if !everything => {
                self.authorize_any(p, &[Action::Approve, Action::AuditRead], "export.ledger", None).await?;
            }
            _ => {}
        }
        let mut logins = std::collections::HashMap::new();
        let mut out = Vec::new();
        for line in self.store.list_ledger(export_id, None).await? {
            out.push(self.ledger_entry(line, &mut logins).await?);
        }
        let mut e = self.event(p, "export.ledger", Outcome::Success);
        e.rows = Some(out.len() as u64);
        e.note = export_id.map(|id| format!("export {id}"));
        self.audit.record(vec![e]).await?;
        Ok(out)
    }

    async fn ledger_entry(
        &self,
        line: LedgerRow,
        logins: &mut std::collections::HashMap<String, String>,
    ) -> Result<LedgerEntry> {
        let actor = match logins.get(&line.actor) {
            Some(login) => login.clone(),
            None => {
                let login = self.actor_login(&line.actor).await?;
                logins.insert(line.actor.clone(), login.clone());
                login
            }
        };
        Ok(LedgerEntry {
            seq: line.seq,
            export_id: line.export_id,
            kind: line.kind,
            at: line.at,
            actor,
            rows: line.rows,
            detail: serde_json::from_str(&line.detail).unwrap_or(serde_json::Value::Null),
        })
    }

    /// What approvers should act on: requests awaiting a decision, take-outs past their due
    /// date, and thresholds crossed in the last week. Empty for everyone else (not an error:
    /// the home page asks on behalf of every user).
    pub async fn takeout_alerts(&self, p: &Principal) -> Result<Vec<TakeoutAlert>> {
        let viewer = self.export_viewer(p).await?;
        if !viewer.approves_any() {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let mut alerts = Vec::new();
        for row in self.store.list_exports().await?.into_iter().filter(|r| viewer.approves(&r.collection)) {
            let kind = match row.status {
                ExportStatus::Pending => "pending",
                ExportStatus::Approved if row.due_at < now => "overdue",
                _ => continue,
            };
            let at = if kind == "overdue" { row.due_at } else { row.requested_at };
            let login = self.login_of(&row.user_id).await?;
            alerts.push(TakeoutAlert { kind: kind.into(), export_id: Some(row.id), login, at, rows: row.rows });
        }
        let since = now - time::Duration::days(ALERT_DAYS);
        let mut logins = std::collections::HashMap::new();
        for line in self.store.list_ledger(None, Some(since)).await?.into_iter().filter(|l| l.kind == "alert") {
            let rows = serde_json::from_str::<serde_json::Value>(&line.detail)
                .ok()
                .and_then(|d| d["rows"].as_u64())
                .unwrap_or(0);
            let entry = self.ledger_entry(line, &mut logins).await?;
            alerts.push(TakeoutAlert {
                kind: "threshold".into(),
                export_id: entry.export_id,
                login: entry.actor,
                at: entry.at,
                rows,
            });
        }
        Ok(alerts)
    }
}
