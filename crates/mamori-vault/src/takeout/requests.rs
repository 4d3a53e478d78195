//! Export requests: asked for, decided by a second person, cancelled, listed.

use crate::error::{Result, VaultError};
use crate::{Principal, Vault};
use mamori_core::access::Action;
use mamori_core::audit::Outcome;
use mamori_core::ids::SubjectId;
use mamori_store::{AuditedChange, ExportChange, ExportRow, ExportStatus};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// Most subject ids one request may name.
const MAX_SUBJECTS: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Xlsx,
    Csv,
}

/// How the file is protected on its way out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
// Variants without fields are written `V {}`: serde lets an internally tagged *unit* variant
// take any extra keys, even with `deny_unknown_fields`.
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Protection {
    /// XLSX with ECMA-376 agile encryption (AES-256) under a password mamori generates on
    /// approval and shows to the requester only. Opens in office software without add-ons.
    Password {},
    /// Encrypted to an `age` X25519 recipient (`age1…`), for technical recipients.
    Age { recipient: String },
    /// 秘密分散: AES-256-GCM under a random key split into `shares` Shamir shares, any
    /// `threshold` of which restore the file (`mamori shares combine`). Share *i* is made
    /// for `custodians[i-1]` (logins of distinct active accounts, one per share; the
    /// requester may be one of them) and held, sealed, until that custodian fetches it, so
    /// that no one person is ever handed enough shares to restore the file. Requests stored
    /// before custodians existed have none: their download hands every share to the
    /// requester, and the ledger marks it as not protected until the shares are apart.
    Split {
        threshold: u8,
        shares: u8,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        custodians: Vec<String>,
    },
    /// Not encrypted: needs the separately granted `export.plain` right; flagged in the ledger.
    None {},
}

impl Protection {
    pub fn kind(&self) -> &'static str {
        match self {
            Protection::Password {} => "password",
            Protection::Age { .. } => "age",
            Protection::Split { .. } => "split",
            Protection::None {} => "none",
        }
    }

    pub fn encrypted(&self) -> bool {
        !matches!(self, Protection::None {})
    }
}

/// Which records of the collection. Values here may be personal (a searched name), so the
/// filter is sealed at rest and its `Debug` prints no value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExportFilter {
    /// Every record of the collection the requester may read in full.
    All {},
    /// Records whose searchable `field` equals `value` (through the blind index).
    Field { field: String, value: String },
    /// The records of these data subjects.
    Subjects { ids: Vec<String> },
}

impl std::fmt::Debug for ExportFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportFilter::All {} => f.write_str("All"),
            ExportFilter::Field { field, .. } => write!(f, "Field({field} = [REDACTED])"),
            ExportFilter::Subjects { ids } => write!(f, "Subjects({} ids)", ids.len()),
        }
    }
}

/// What a requester asks to take out. Unknown fields are refused: a misspelt `due_date`
/// must not silently become the default return date.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    pub collection: String,
    /// The fields to include, in this order: only what the task needs (000-8-takeout-8).
    pub fields: Vec<String>,
    pub filter: ExportFilter,
    /// Why (利用目的); one of the collection's `access_purposes` where it declares them.
    pub purpose: String,
    /// To whom the data goes (a person or organisation).
    pub recipient: String,
    /// When the data must be returned or disposed of (`YYYY-MM-DD`, organisation-local);
    /// the `[takeout]` default when absent.
    #[serde(default)]
    pub due_date: Option<String>,
    pub format: ExportFormat,
    pub protection: Protection,
}

impl std::fmt::Debug for ExportRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportRequest")
            .field("collection", &self.collection)
            .field("fields", &self.fields)
            .field("filter", &self.filter)
            .field("format", &self.format)
            .field("protection", &self.protection.kind())
            .finish_non_exhaustive()
    }
}

/// An export request as its requester, approvers and auditors see it. Auditors get no
/// filter and no recipient (`null`): they may name people.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct ExportInfo {
    pub id: String,
    pub collection: String,
    pub requested_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub requested_at: OffsetDateTime,
    pub fields: Vec<String>,
    pub filter: Option<ExportFilter>,
    pub purpose: String,
    pub recipient: Option<String>,
    pub format: ExportFormat,
    pub protection: Protection,
    /// Whether the file is encrypted (the incident risk note: a lost encrypted file may fall
    /// under the high-standard-encryption exemption from breach reporting).
    pub encrypted: bool,
    /// Records the filter matched when the request was made.
    pub rows: u64,
    /// pending, approved, rejected, cancelled or closed.
    pub status: String,
    pub decided_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub download_until: Option<OffsetDateTime>,
    pub downloads_allowed: u32,
    pub downloads_used: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub due_at: OffsetDateTime,
    /// Approved, past its due date, and not yet returned or disposed of.
    pub overdue: bool,
    /// More rows than the per-request warning threshold.
    pub bulk: bool,
    /// More rows than the per-request hard limit: approval needs an explicit confirmation.
    pub over_limit: bool,
    /// For a split with custodians, once downloaded: each share and where it stands.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<super::ShareInfo>,
    /// Warnings for the requester (thresholds crossed), on the response to the request only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for ExportInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportInfo")
            .field("id", &self.id)
            .field("collection", &self.collection)
            .field("status", &self.status)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

pub(crate) fn spec_aad(id: &str) -> Vec<u8> {
    format!("mamori/v1/export-spec\0{id}").into_bytes()
}

pub(crate) fn secret_aad(id: &str) -> Vec<u8> {
    format!("mamori/v1/export-password\0{id}").into_bytes()
}

fn text(what: &str, value: &str, max: usize) -> Result<String> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(|c| c.is_control()) {
        return Err(VaultError::Invalid(format!("{what}: 1–{max} printable characters")));
    }
    Ok(v.to_owned())
}

/// Only a well-formed id reaches the store and the (permanent) audit log; any other is
/// "not found" (`what`).
pub(super) fn well_formed_export_id(id: &str, what: &'static str) -> Result<()> {
    match uuid::Uuid::parse_str(id) {
        Ok(_) => Ok(()),
        Err(_) => Err(VaultError::NotFound(what)),
    }
}

impl Vault {
    pub(super) fn open_spec(&self, row: &ExportRow) -> Result<ExportRequest> {
        let json = self.master().open_secret(&row.spec, &spec_aad(&row.id))?;
        serde_json::from_slice(&json).map_err(|_| VaultError::Integrity("export request".into()))
    }

    pub(super) async fn export_info(&self, row: &ExportRow, full: bool) -> Result<ExportInfo> {
        let spec = self.open_spec(row)?;
        let shares = match &spec.protection {
            Protection::Split { custodians, .. } if !custodians.is_empty() && row.downloads_used > 0 => {
                self.share_states(&row.id).await?
            }
            _ => Vec::new(),
        };
        let limits = &self.config.takeout;
        let status = row.status;
        Ok(ExportInfo {
            id: row.id.clone(),
            collection: row.collection.clone(),
            requested_by: self.login_of(&row.user_id).await?,
            requested_at: row.requested_at,
            fields: spec.fields,
            filter: full.then_some(spec.filter),
            purpose: spec.purpose,
            recipient: full.then_some(spec.recipient),
            format: spec.format,
            encrypted: spec.protection.encrypted(),
            protection: spec.protection,
            rows: row.rows,
            status: status.as_str().into(),
            decided_by: match &row.decided_by {
                Some(actor) => Some(self.actor_login(actor).await?),
                None => None,
            },
            decided_at: row.decided_at,
            download_until: row.download_until,
            downloads_allowed: row.downloads_allowed,
            downloads_used: row.downloads_used,
            due_at: row.due_at,
            overdue: status == ExportStatus::Approved && row.due_at < self.clock.now(),
            bulk: row.rows > limits.warn_rows_per_request,
            over_limit: row.rows > limits.hard_rows_per_request,
            shares,
            warnings: Vec::new(),
        })
    }

    /// Checks a request and works out how many records it matches.
    async fn check_request(&self, p: &Principal, req: &ExportRequest) -> Result<(ExportRequest, u64)> {
        let (state, _) = self.authorize_collection(p, Action::Export, "export.request", &req.collection).await?;
        if !req.protection.encrypted() {
            self.authorize_collection(p, Action::ExportPlain, "export.request", &req.collection).await?;
        }
        let schema = state.current();
        if req.fields.is_empty() || req.fields.len() > schema.fields.len() {
            return Err(VaultError::Invalid("fields: name the fields the task needs (at least one)".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for f in &req.fields {
            if schema.field(f).is_none() {
                return Err(mamori_core::CoreError::UnknownField(f.clone()).into());
            }
            if !seen.insert(f) {
                return Err(VaultError::Invalid(format!("field `{f}` is named twice")));
            }
        }
        let own = p.department.clone().unwrap_or_default();
        let visible = self.visible_fields(p, Action::ViewFull, &state, &own, &mut Default::default()).await?;
        if let Some(hidden) = req.fields.iter().find(|f| !visible.contains(*f)) {
            return Err(VaultError::Invalid(format!(
                "you may not read field `{hidden}` in full, so you cannot export it"
            )));
        }
        let purpose = Self::check_purpose(schema, crate::View::Full, Some(&req.purpose))?
            .ok_or_else(|| VaultError::Invalid("purpose: say why the data is taken out (利用目的)".into()))?;
        let recipient = text("recipient", &req.recipient, 200)?;
        match (&req.protection, req.format) {
            (Protection::Password {}, ExportFormat::Csv) => {
                return Err(VaultError::Invalid(
                    "password protection is for XLSX; protect a CSV with age or secret splitting".into(),
                ));
            }
            (Protection::Age { recipient }, _) => {
                mamori_export::parse_age_recipient(recipient)
                    .map_err(|_| VaultError::Invalid("protection.recipient is not an age public key (age1…)".into()))?;
            }
            (Protection::Split { threshold, shares, .. }, _)
                if !(2..=mamori_export::MAX_SHARES).contains(shares) || !(2..=*shares).contains(threshold) =>
            {
                return Err(VaultError::Invalid(format!(
                    "secret splitting needs 2 <= threshold <= shares <= {}",
                    mamori_export::MAX_SHARES
                )));
            }
            _ => {}
        }
        let protection = match &req.protection {
            Protection::Split { threshold, shares, custodians } => Protection::Split {
                threshold: *threshold,
                shares: *shares,
                custodians: self.check_custodians(p, &state, custodians, *shares).await?,
            },
            other => other.clone(),
        };
        let filter = match &req.filter {
            ExportFilter::All {} => ExportFilter::All {},
            ExportFilter::Field { field, value } => {
                schema
                    .field(field)
                    .filter(|f| f.is_indexed())
                    .ok_or_else(|| VaultError::Invalid(format!("field `{field}` is not searchable")))?;
                let value = text("filter.value", value, 500)?;
                ExportFilter::Field { field: field.clone(), value }
            }
            ExportFilter::Subjects { ids } => {
                if ids.is_empty() || ids.len() > MAX_SUBJECTS {
                    return Err(VaultError::Invalid(format!("filter.ids: 1–{MAX_SUBJECTS} subject ids")));
                }
                let mut checked = Vec::with_capacity(ids.len());
                for id in ids {
                    checked.push(SubjectId::new(id.trim())?.as_str().to_owned());
                }
                checked.sort();
                checked.dedup();
                ExportFilter::Subjects { ids: checked }
            }
        };
        let checked = ExportRequest {
            collection: state.row.name.clone(),
            fields: req.fields.clone(),
            filter,
            purpose,
            recipient,
            due_date: req.due_date.clone(),
            format: req.format,
            protection,
        };
        let rows = self.exportable_count(p, &state, &checked.filter).await?;
        Ok((checked, rows))
    }

    /// One custodian per share: logins of distinct accounts that exist, are enabled, and may
    /// themselves read the collection in full (role, clearance, training, pledge: shares
    /// brought together must not hand anyone data the policies keep from them).
    async fn check_custodians(
        &self,
        p: &Principal,
        state: &crate::keys::CollectionState,
        custodians: &[String],
        shares: u8,
    ) -> Result<Vec<String>> {
        if custodians.len() != usize::from(shares) {
            return Err(VaultError::Invalid(format!(
                "protection.custodians: name one custodian per share ({shares}), each a different person"
            )));
        }
        let engine = self.policy_engine().await?;
        let situation = self.situation(p, false);
        let mut checked: Vec<String> = Vec::with_capacity(custodians.len());
        for login in custodians {
            let login = login.trim();
            let user = match self.store.get_user_by_login(login).await? {
                Some(u) if !u.disabled => u,
                _ => return Err(VaultError::Invalid(format!("custodian `{login}` is not an active account"))),
            };
            if checked.contains(&user.login) {
                return Err(VaultError::Invalid(format!("custodian `{login}` is named twice: one share each")));
            }
            let subject = self.policy_subject(&user)?;
            let record = mamori_policy::Resource::Record {
                collection: state.row.name.clone(),
                id: "*".into(),
                tier: state.current().tier.rank(),
                department: subject.department.clone(),
                subject: String::new(),
            };
            if !engine.decide(&subject, Action::ViewFull, &record, &situation).allowed {
                return Err(VaultError::Invalid(format!(
                    "custodian `{login}` may not read this collection in full, so may not hold a share of it"
                )));
            }
            checked.push(user.login);
        }
        Ok(checked)
    }

    fn due_at(&self, due_date: Option<&str>) -> Result<OffsetDateTime> {
        let limits = &self.config.takeout;
        let offset = self.config.authz.utc_offset;
        let today = self.clock.now().to_offset(offset).date();
        let date = match due_date.map(str::trim).filter(|s| !s.is_empty()) {
            None => today + time::Duration::days(limits.default_due_days.into()),
            Some(s) => {
                let format = time::macros::format_description!("[year]-[month]-[day]");
                time::Date::parse(s, format).map_err(|_| VaultError::Invalid("due_date must be YYYY-MM-DD".into()))?
            }
        };
        if date <= today || date > today + time::Duration::days(limits.max_due_days.into()) {
            return Err(VaultError::Invalid(format!(
                "due_date must be after today and at most {} days ahead",
                limits.max_due_days
            )));
        }
        // Due at the end of that local day.
        let end = time::Time::from_hms(23, 59, 59).map_err(|e| VaultError::Internal(e.to_string()))?;
        Ok(date.with_time(end).assume_offset(offset).to_offset(time::UtcOffset::UTC))
    }

    /// Asks to take records out. Nothing leaves until a second person approves.
    pub async fn request_export(&self, p: &Principal, req: &ExportRequest) -> Result<ExportInfo> {
        if p.password_change_only {
            return Err(VaultError::PasswordChangeRequired);
        }
        let user = p.user_id.ok_or(VaultError::Invalid("exports are requested by a logged-in account".into()))?;
        // The cheap check first: counting the records reads the whole selection.
        let due_at = self.due_at(req.due_date.as_deref())?;
        let (spec, rows) = self.check_request(p, req).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let json = Zeroizing::new(serde_json::to_vec(&spec).map_err(|e| VaultError::Internal(e.to_string()))?);
        let master = self.master();
        let row = ExportRow {
            spec: master.seal_secret(&json, &spec_aad(&id)),
            id,
            user_id: user,
            requested_by: p.actor(),
            requested_at: self.clock.now(),
            collection: spec.collection.clone(),
            rows,
            protection: spec.protection.kind().into(),
            status: ExportStatus::Pending,
            decided_by: None,
            decided_at: None,
            download_until: None,
            downloads_allowed: self.config.takeout.max_downloads,
            downloads_used: 0,
            due_at,
            secret: None,
        };
        let detail = serde_json::json!({
            "collection": row.collection, "fields": spec.fields, "format": spec.format,
            "protection": row.protection, "encrypted": spec.protection.encrypted(), "due_at": due_at.unix_timestamp(),
        });
        let mut e = self.event(p, "export.request", Outcome::Success);
        e.collection = Some(row.collection.clone());
        e.fields = spec.fields.clone();
        e.rows = Some(rows);
        e.purpose = Some(spec.purpose.clone());
        e.note = Some(format!(
            "export {} ({}, {})",
            row.id,
            row.protection,
            if spec.protection.encrypted() { "encrypted" } else { "UNENCRYPTED" }
        ));
        let entry = Box::new(self.ledger_line(p, Some(&row.id), "request", rows, detail));
        let step = AuditedChange::CreateExport { export: Box::new(row.clone()), entry };
        self.apply_sealed(&master, vec![step], vec![e]).await?;
        let mut info = self.export_info(&row, true).await?;
        let limits = &self.config.takeout;
        if rows > limits.warn_rows_per_request {
            let what = format!("{rows} records requested (warning above {})", limits.warn_rows_per_request);
            info.warnings.push(self.bulk_warning(p, Some(&row.id), rows, what).await?);
        }
        let today = self.rows_taken_out_today(p).await?;
        if today + rows > limits.warn_rows_per_day {
            let what =
                format!("{} rows today with this export (warning above {})", today + rows, limits.warn_rows_per_day);
            info.warnings.push(self.bulk_warning(p, Some(&row.id), today + rows, what).await?);
        }
        Ok(info)
    }

    /// Approves or rejects a pending request: someone with the approve right, never the
    /// requester. A request above the hard per-request limit is approved only with
    /// `confirm_bulk`. Approval opens the download window and, for password protection,
    /// generates the file password.
    pub async fn decide_export(
        &self,
        p: &Principal,
        id: &str,
        approve: bool,
        confirm_bulk: bool,
    ) -> Result<ExportInfo> {
        let action = if approve { "export.approve" } else { "export.reject" };
        self.authorize(p, Action::Approve, action, None).await?;
        let row = self.store.get_export(id).await?.ok_or(VaultError::NotFound("export request"))?;
        self.check_second_person(p, action, &row.requested_by, &format!("export {id}")).await?;
        // Deciding needs a right on the collection itself: someone who may not even search it
        // (a system administrator) cannot judge, or learn, what is taken out of it.
        self.authorize_collection(p, Action::Search, action, &row.collection).await?;
        if row.status != ExportStatus::Pending {
            return Err(VaultError::Conflict(format!("export {id} is already {}", row.status.as_str())));
        }
        let limits = &self.config.takeout;
        if approve && row.rows > limits.hard_rows_per_request && !confirm_bulk {
            return Err(VaultError::Conflict(format!(
                "export {id} asks for {} records, above the limit of {}: approve with the bulk confirmation",
                row.rows, limits.hard_rows_per_request
            )));
        }
        let now = self.clock.now();
        let spec = self.open_spec(&row)?;
        let master = self.master();
        let (to, until, secret) = if approve {
            let secret = (spec.protection == Protection::Password {}).then(|| {
                let password = mamori_export::generate_password();
                master.seal_secret(password.expose().as_bytes(), &secret_aad(id))
            });
            (ExportStatus::Approved, Some(now + time::Duration::hours(limits.download_window_hours.into())), secret)
        } else {
            (ExportStatus::Rejected, None, None)
        };
        let change =
            ExportChange { from: ExportStatus::Pending, to, by: p.actor(), at: now, download_until: until, secret };
        let kind = if approve { "approve" } else { "reject" };
        let detail = serde_json::json!({ "bulk_confirmed": approve && row.rows > limits.hard_rows_per_request });
        let mut e = self.event(p, action, Outcome::Success);
        e.collection = Some(row.collection.clone());
        e.rows = Some(row.rows);
        e.note = Some(format!("export {id} of {}", row.requested_by));
        // The file's password, when there is one, is sealed under the master key.
        let sealer = change.secret.is_some().then_some(&*master);
        self.change_export(id, change, self.ledger_line(p, Some(id), kind, 0, detail), e, sealer).await?;
        let decided = self.store.get_export(id).await?.ok_or(VaultError::NotFound("export request"))?;
        self.export_info(&decided, true).await
    }

    /// Withdraws one's own pending request.
    pub async fn cancel_export(&self, p: &Principal, id: &str) -> Result<ExportInfo> {
        let row = self.own_export(p, id, "export.cancel").await?;
        let change = ExportChange {
            from: ExportStatus::Pending,
            to: ExportStatus::Cancelled,
            by: p.actor(),
            at: self.clock.now(),
            download_until: None,
            secret: None,
        };
        let mut e = self.event(p, "export.cancel", Outcome::Success);
        e.collection = Some(row.collection.clone());
        e.note = Some(format!("export {id}"));
        let line = self.ledger_line(p, Some(id), "cancel", 0, serde_json::json!({}));
        self.change_export(id, change, line, e, None).await?;
        let row = self.store.get_export(id).await?.ok_or(VaultError::NotFound("export request"))?;
        self.export_info(&row, true).await
    }

    /// A request of the caller's own; anyone else's is "not found" (and the attempt audited).
    pub(super) async fn own_export(&self, p: &Principal, id: &str, action: &str) -> Result<ExportRow> {
        well_formed_export_id(id, "export request")?;
        let row = self.store.get_export(id).await?;
        match row {
            Some(row) if Some(row.user_id) == p.user_id => Ok(row),
            _ => {
                let mut e = self.event(p, action, Outcome::Denied);
                e.reason = Some(format!("export {id}: not the requester's"));
                self.audit.record(vec![e]).await?;
                Err(VaultError::NotFound("export request"))
            }
        }
    }

    /// Requests, newest first: approvers see those of collections where they may search,
    /// with their details; auditors all, without filter and recipient; everyone else their own.
    pub async fn list_exports(&self, p: &Principal) -> Result<Vec<ExportInfo>> {
        let viewer = self.export_viewer(p).await?;
        let mut out = Vec::new();
        for row in self.store.list_exports().await? {
            if let Some(full) = viewer.sees(p, &row) {
                out.push(self.export_info(&row, full).await?);
            }
        }
        let mut e = self.event(p, "export.list", Outcome::Success);
        e.rows = Some(out.len() as u64);
        self.audit.record(vec![e]).await?;
        Ok(out)
    }

    /// One request, with the same visibility as [`Vault::list_exports`]. Audited like the
    /// list (`export.view`): the filter and recipient it shows may name people.
    pub async fn get_export(&self, p: &Principal, id: &str) -> Result<ExportInfo> {
        well_formed_export_id(id, "export request")?;
        let viewer = self.export_viewer(p).await?;
        let row = self.store.get_export(id).await?;
        let mut e = self.event(p, "export.view", Outcome::Success);
        let shown = match row.as_ref().and_then(|r| viewer.sees(p, r).map(|full| (r, full))) {
            Some((row, full)) => {
                e.collection = Some(row.collection.clone());
                e.reason = Some(format!("export {id}{}", if full { "" } else { " (without filter and recipient)" }));
                Some(self.export_info(row, full).await?)
            }
            None => {
                e.outcome = Outcome::Denied;
                e.reason = Some(format!("export {id}: not visible to the caller"));
                None
            }
        };
        self.audit.record(vec![e]).await?;
        shown.ok_or(VaultError::NotFound("export request"))
    }

    /// What the caller may see of requests (decided silently, once per call).
    pub(super) async fn export_viewer(&self, p: &Principal) -> Result<ExportViewer> {
        let caps = self.capabilities(p).await?;
        let approver = caps.can(Action::Approve);
        Ok(ExportViewer {
            auditor: caps.can(Action::AuditRead),
            approves_in: caps
                .collections
                .iter()
                .filter(|c| approver && c.allows(Action::Search))
                .map(|c| c.collection.clone())
                .collect(),
        })
    }

    /// The file password of an approved, password-protected export: for the requester only,
    /// to hand to the recipient over a different channel than the file. Each showing is audited.
    pub async fn export_password(&self, p: &Principal, id: &str) -> Result<Zeroizing<String>> {
        let row = self.own_export(p, id, "export.password").await?;
        if row.secret.is_none() || row.status != ExportStatus::Approved {
            return Err(VaultError::Conflict(format!(
                "export {id} has no password (not approved, or not password-protected)"
            )));
        }
        // Once nothing more can be downloaded, the password has nothing left to open.
        let open = row.download_until.is_some_and(|t| t > self.clock.now());
        if !open || row.downloads_used >= row.downloads_allowed {
            return Err(VaultError::Conflict(format!("export {id} can no longer be downloaded")));
        }
        let password = self.unseal_password(&row)?;
        let mut e = self.event(p, "export.password", Outcome::Success);
        e.collection = Some(row.collection.clone());
        e.note = Some(format!("export {id}"));
        self.audit.record(vec![e]).await?;
        Ok(password)
    }

    /// The file password sealed on approval.
    pub(super) fn unseal_password(&self, row: &ExportRow) -> Result<Zeroizing<String>> {
        let sealed = row.secret.as_ref().ok_or_else(|| VaultError::Integrity("export password missing".into()))?;
        let plain = self.master().open_secret(sealed, &secret_aad(&row.id))?;
        Ok(Zeroizing::new(
            String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Integrity("export password".into()))?,
        ))
    }
}

/// Who sees which export requests: the requester their own, approvers those of collections
/// where they may search (an approver without any right on a collection — a system
/// administrator — decides nothing there and sees no searched value or recipient), auditors
/// all without filter and recipient.
pub(super) struct ExportViewer {
    auditor: bool,
    approves_in: std::collections::HashSet<String>,
}

impl ExportViewer {
    /// `None`: not at all; `Some(full)`: with (or without) filter and recipient.
    pub(super) fn sees(&self, p: &Principal, row: &ExportRow) -> Option<bool> {
        let full = Some(row.user_id) == p.user_id || self.approves(&row.collection);
        (full || self.auditor).then_some(full)
    }

    pub(super) fn approves(&self, collection: &str) -> bool {
        self.approves_in.contains(collection)
    }

    pub(super) fn approves_any(&self) -> bool {
        !self.approves_in.is_empty()
    }
}
