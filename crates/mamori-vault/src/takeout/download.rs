//! Downloading an approved export: the records read in full, shaped into XLSX or CSV,
//! protected, counted, and recorded in the ledger and the audit log before a byte leaves.

use super::requests::{ExportFilter, ExportFormat, ExportRequest, Protection};
use crate::authz::GrantMemo;
use crate::error::{Result, VaultError};
use crate::keys::CollectionState;
use crate::{Principal, Vault};
use mamori_core::access::Action;
use mamori_core::audit::{AuditEvent, Outcome};
use mamori_core::ids::RecordId;
use mamori_core::normalize::blind_index_form;
use mamori_export::{SecretPassword, Table};
use mamori_store::{AuditedChange, ExportRow, ExportStatus, StoreError};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Records read per page when an export walks a whole collection.
const PAGE: usize = 1_000;
/// Most records one export can hold, whatever the filter (a guard against runaway memory).
const MAX_ROWS: usize = 1_000_000;

/// One file handed to the requester.
pub struct OutFile {
    pub name: String,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for OutFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutFile").field("name", &self.name).field("bytes", &self.bytes.len()).finish()
    }
}

/// The result of a download: one file, or the n share files of a secret-split export
/// without custodians, or — for a split with custodians — no file at all: the shares are
/// held for their custodians (`held`).
#[derive(Debug)]
pub struct ExportFile {
    pub export_id: String,
    pub files: Vec<OutFile>,
    /// The shares made and held for their custodians, who fetch them themselves.
    pub held: Vec<super::ShareInfo>,
    /// Records in the file.
    pub rows: u64,
    /// Records the filter matched that the requester may no longer read in full.
    pub withheld: u64,
    /// Whether what was handed over is protected if lost: false for an unencrypted file, and
    /// for the shares of a split handed over together (until they are kept apart).
    pub encrypted: bool,
    /// Which download this was (1-based) and how many are allowed.
    pub download: u32,
    pub downloads_allowed: u32,
    pub warnings: Vec<String>,
}

fn export_error(e: mamori_export::ExportError) -> VaultError {
    VaultError::Internal(format!("export file: {e}"))
}

fn hex_digest(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

impl Vault {
    /// Ids of the records a filter matches, in a stable order, at most `MAX_ROWS`.
    pub(super) async fn matching_ids(&self, state: &CollectionState, filter: &ExportFilter) -> Result<Vec<RecordId>> {
        let id = state.row.id;
        let mut ids = Vec::new();
        match filter {
            ExportFilter::All {} => loop {
                let page = self.store.page_record_ids(id, ids.last(), PAGE).await?;
                let done = page.len() < PAGE;
                ids.extend(page);
                if done || ids.len() > MAX_ROWS {
                    break;
                }
            },
            ExportFilter::Field { field, value } => {
                let def = state
                    .current()
                    .field(field)
                    .ok_or_else(|| VaultError::Invalid(format!("field `{field}` is no longer in the schema")))?;
                let token = state.indexer(field)?.token(&blind_index_form(def.field_type, value));
                ids = self.store.find_by_token(id, &token, MAX_ROWS + 1).await?;
            }
            ExportFilter::Subjects { ids: subjects } => {
                for s in subjects {
                    ids.extend(self.store.find_by_subject(id, s, MAX_ROWS + 1).await?);
                    if ids.len() > MAX_ROWS {
                        break;
                    }
                }
            }
        }
        if ids.len() > MAX_ROWS {
            return Err(VaultError::Invalid(format!("an export holds at most {MAX_ROWS} records; narrow the filter")));
        }
        Ok(ids)
    }

    /// Whether the caller may take this record out: readable in full by their own rights.
    /// Break-glass opens reads, never take-outs, so a record readable only through a grant
    /// stays out (and is counted as withheld).
    async fn exportable(
        &self,
        p: &Principal,
        state: &CollectionState,
        record: &mamori_store::RecordRow,
        memo: &mut GrantMemo,
    ) -> Result<Option<mamori_policy::Decision>> {
        let (decision, opened_by) = self.decide_record(p, Action::ViewFull, state, record, memo).await?;
        Ok((decision.allowed && opened_by.is_none()).then_some(decision))
    }

    /// How many of the records a filter matches the caller may take out: what the approver
    /// is shown, and the most a download of the request may hold. Records the caller may
    /// not read are not counted, so the count reveals nothing about them.
    pub(super) async fn exportable_count(
        &self,
        p: &Principal,
        state: &CollectionState,
        filter: &ExportFilter,
    ) -> Result<u64> {
        let mut memo = GrantMemo::default();
        let mut count = 0;
        for chunk in self.matching_ids(state, filter).await?.chunks(PAGE) {
            for (record, _) in self.store.get_records_with_keys(state.row.id, chunk).await? {
                count += u64::from(self.exportable(p, state, &record, &mut memo).await?.is_some());
            }
        }
        Ok(count)
    }

    /// Refuses (and audits) a download that is not possible now.
    pub(super) async fn refuse_download(&self, p: &Principal, row: &ExportRow, why: String) -> VaultError {
        let mut e = self.event(p, "export.download", Outcome::Denied);
        e.collection = Some(row.collection.clone());
        e.reason = Some(format!("export {}: {why}", row.id));
        if let Err(err) = self.audit.record(vec![e]).await {
            return err;
        }
        VaultError::Conflict(why)
    }

    /// Reads the matched records in full into a table, with one audit event per record.
    async fn export_table(
        &self,
        p: &Principal,
        state: &Arc<CollectionState>,
        row: &ExportRow,
        spec: &ExportRequest,
    ) -> Result<(Table, Vec<AuditEvent>, u64)> {
        let ids = self.matching_ids(state, &spec.filter).await?;
        let mut table = Table::new(spec.fields.clone()).map_err(export_error)?;
        let mut events = Vec::with_capacity(ids.len());
        let mut withheld = 0;
        let mut visible_by_department: HashMap<String, HashSet<String>> = HashMap::new();
        let mut memo = GrantMemo::default();
        let via = format!("via export {}", row.id);
        // A page of records per store round trip.
        for chunk in ids.chunks(PAGE) {
            for (record, key) in self.store.get_records_with_keys(state.row.id, chunk).await? {
                let id = record.id;
                let Some(decision) = self.exportable(p, state, &record, &mut memo).await? else {
                    withheld += 1;
                    continue;
                };
                let (state, values, _) = self.open_row(state, &record, key).await?;
                let department = record.department.clone().unwrap_or_default();
                if !visible_by_department.contains_key(&department) {
                    let visible = self.visible_fields(p, Action::ViewFull, &state, &department, &mut memo).await?;
                    visible_by_department.insert(department.clone(), visible);
                }
                let visible = &visible_by_department[&department];
                let cells: Vec<String> =
                    spec.fields
                        .iter()
                        .map(|f| {
                            if visible.contains(f) { values.get(f).cloned().unwrap_or_default() } else { String::new() }
                        })
                        .collect();
                table.push_row(cells).map_err(export_error)?;
                let mut e = self.record_event(p, "record.read", &state, &id, &record.subject);
                e.fields = spec.fields.iter().filter(|f| visible.contains(*f)).cloned().collect();
                e.purpose = Some(spec.purpose.clone());
                e.reason = Some(via.clone());
                e.policy = Some(decision.policy_list());
                events.push(e);
            }
        }
        Ok((table, events, withheld))
    }

    /// Shapes and protects the table. Returns the files and the protection method's name.
    fn protect(&self, row: &ExportRow, spec: &ExportRequest, table: &Table) -> Result<(Vec<OutFile>, &'static str)> {
        let (plain, extension, content_type) = match spec.format {
            ExportFormat::Xlsx => (
                // Excel allows 31 characters in a sheet name; collection names may be longer.
                mamori_export::write_xlsx(table, &spec.collection.chars().take(31).collect::<String>())
                    .map_err(export_error)?,
                "xlsx",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            ),
            ExportFormat::Csv => {
                (mamori_export::write_csv(table).map_err(export_error)?, "csv", "text/csv; charset=utf-8")
            }
        };
        let stem = format!("mamori-{}-{}", spec.collection, &row.id[row.id.len() - 12..]);
        let name = format!("{stem}.{extension}");
        Ok(match &spec.protection {
            Protection::Password {} => {
                let password = SecretPassword::new(self.unseal_password(row)?.as_str());
                let bytes = mamori_export::encrypt_ooxml(&plain, &password).map_err(export_error)?;
                (vec![OutFile { name, content_type, bytes }], "ECMA-376 agile encryption, AES-256-CBC, SHA-512")
            }
            Protection::Age { recipient } => {
                let bytes = mamori_export::age_encrypt(&plain, recipient).map_err(export_error)?;
                let file = OutFile { name: format!("{name}.age"), content_type: "application/octet-stream", bytes };
                (vec![file], "age X25519, ChaCha20-Poly1305")
            }
            Protection::Split { threshold, shares, .. } => {
                let files = mamori_export::split(&plain, *threshold, *shares, &name)
                    .map_err(export_error)?
                    .into_iter()
                    .map(|mut s| OutFile {
                        name: format!("{stem}.share-{}-of-{shares}.mamori", s.index),
                        content_type: "application/octet-stream",
                        bytes: std::mem::take(&mut *s.bytes),
                    })
                    .collect();
                (files, "AES-256-GCM, key split by Shamir secret sharing")
            }
            Protection::None {} => (vec![OutFile { name, content_type, bytes: plain.to_vec() }], "none (UNENCRYPTED)"),
        })
    }

    /// Downloads an approved export: the requester only, within the window, at most the
    /// allowed number of times (counted atomically, so concurrent downloads cannot overrun).
    /// The requester must still hold the export right, and each record must still be
    /// readable in full; records that are not are left out and counted. Every record is
    /// audited as a read, and the download is in the ledger, before the file is returned.
    pub async fn download_export(&self, p: &Principal, id: &str) -> Result<ExportFile> {
        let row = self.own_export(p, id, "export.download").await?;
        let now = self.clock.now();
        if row.status != ExportStatus::Approved {
            return Err(self
                .refuse_download(p, &row, format!("export {id} is {}, not approved", row.status.as_str()))
                .await);
        }
        if row.download_until.is_none_or(|until| until <= now) {
            return Err(self.refuse_download(p, &row, format!("the download window of export {id} has closed")).await);
        }
        if row.downloads_used >= row.downloads_allowed {
            let why = format!("export {id} was already downloaded {} times, the most allowed", row.downloads_used);
            return Err(self.refuse_download(p, &row, why).await);
        }
        let (state, _) = self.authorize_collection(p, Action::Export, "export.download", &row.collection).await?;
        let spec = self.open_spec(&row)?;
        if !spec.protection.encrypted() {
            self.authorize_collection(p, Action::ExportPlain, "export.download", &row.collection).await?;
        }
        let custodians = match &spec.protection {
            Protection::Split { custodians, .. } if !custodians.is_empty() => Some(custodians.as_slice()),
            _ => None,
        };
        // One set of shares per export: a second set would let a custodian of each hold a
        // share of two different sets, and neither set would ever be complete.
        if custodians.is_some() && !self.store.list_export_shares(Some(id), None).await?.is_empty() {
            let why = format!("the shares of export {id} were made already; each custodian fetches their own");
            return Err(self.refuse_download(p, &row, why).await);
        }
        // Every custodian must still be an active account before anything is read.
        let logins = custodians;
        let custodians = match logins {
            Some(logins) => Some(self.active_custodians(p, &row, logins).await?),
            None => None,
        };
        let (table, mut events, withheld) = self.export_table(p, &state, &row, &spec).await?;
        let rows = table.row_count() as u64;
        // The approver approved a number of records, not a filter to be re-run on whatever
        // the collection holds later.
        if rows > row.rows {
            let why = format!(
                "the request's filter now matches {rows} records, more than the {} approved; ask again",
                row.rows
            );
            return Err(self.refuse_download(p, &row, why).await);
        }
        let (files, method) = self.protect(&row, &spec, &table)?;
        drop(table);

        // The risk note for incidents. A split without custodians hands every share over at
        // once, and the set restores the file: until the shares are kept apart it is not
        // protected against loss. Each share alone is (its own ledger line says so); shares
        // held for their custodians are apart from the start.
        let split = matches!(spec.protection, Protection::Split { .. });
        let encrypted = spec.protection.encrypted() && (!split || custodians.is_some());
        // Shares for custodians are listed in the download line by their holders, not as
        // files handed over.
        let handed: &[OutFile] = if custodians.is_some() { &[] } else { &files };
        let detail = serde_json::json!({
            "format": spec.format, "protection": spec.protection.kind(), "encrypted": encrypted, "method": method,
            "withheld": withheld, "files": handed.iter().map(|f| serde_json::json!({
                "name": f.name, "bytes": f.bytes.len(), "sha256": hex_digest(&f.bytes) })).collect::<Vec<_>>(),
        });
        let line = Box::new(self.ledger_line(p, Some(id), "download", rows, detail));
        // Taken only while as many downloads are used as when the request was read, so that
        // the event can say which download this is; a concurrent download of the same
        // request moves the count on, and this one is numbered again.
        let mut used_before = row.downloads_used;
        let mut steps = vec![AuditedChange::TakeExportDownload { id: id.to_owned(), entry: line, used_before }];
        if let Protection::Split { threshold, shares, .. } = &spec.protection
            && custodians.is_none()
        {
            for (i, f) in files.iter().enumerate() {
                let detail = serde_json::json!({
                    "share": i + 1, "of": shares, "threshold": threshold, "name": f.name, "sha256": hex_digest(&f.bytes),
                    "encrypted": true, "restores_alone": false,
                });
                steps.push(AuditedChange::AddLedger(Box::new(self.ledger_line(p, Some(id), "share", 0, detail))));
            }
        }
        let mut e = self.event(p, "export.download", Outcome::Success);
        e.collection = Some(row.collection.clone());
        e.fields = spec.fields.clone();
        e.rows = Some(rows);
        e.purpose = Some(spec.purpose.clone());
        let custody = match &custodians {
            None => String::new(),
            Some(to) => {
                let to: Vec<String> =
                    to.iter().enumerate().map(|(i, c)| format!("{} (share {})", c.login, i + 1)).collect();
                format!("; shares held for {}", to.join(", "))
            }
        };
        if withheld > 0 {
            e.reason = Some(format!("{withheld} records withheld by policy"));
        }
        // The reads, the download event, the download counted and its ledger lines: one
        // transaction, durable before the file leaves (fail closed). The ledger never shows a
        // download whose file was not handed over, nor the log one the ledger does not count.
        events.push(e);
        loop {
            let Some(AuditEvent { note, .. }) = events.last_mut() else { unreachable!("the download event") };
            *note = Some(format!(
                "export {id}, download {} of {}, {}{}{custody}",
                used_before + 1,
                row.downloads_allowed,
                if encrypted { "encrypted: " } else { "UNENCRYPTED: " },
                method
            ));
            if let Some(AuditedChange::TakeExportDownload { used_before: step, .. }) = steps.first_mut() {
                *step = used_before;
            }
            match self.audit.apply(steps.clone(), events.clone()).await {
                Err(StoreError::Conflict(_)) => {
                    let now = self.store.get_export(id).await?.ok_or(VaultError::NotFound("export request"))?;
                    let why = if now.status != ExportStatus::Approved {
                        format!("export {id} is {}, not approved", now.status.as_str())
                    } else if now.download_until.is_none_or(|until| until <= self.clock.now()) {
                        format!("the download window of export {id} has closed")
                    } else if now.downloads_used >= now.downloads_allowed {
                        format!("export {id} has no download left")
                    } else if custodians.is_some() {
                        // One set of shares per export: the concurrent download made it.
                        format!("the shares of export {id} were made by a concurrent download")
                    } else if now.downloads_used == used_before {
                        format!("export {id} could not be downloaded; try again")
                    } else {
                        used_before = now.downloads_used;
                        continue;
                    };
                    return Err(self.refuse_download(p, &row, why).await);
                }
                other => {
                    other?;
                    break;
                }
            }
        }
        let download = used_before + 1;
        // Only now, with every read and the download durable in the audit log, do the shares
        // become fetchable (fail closed: if this fails, nothing is held and, downloads
        // permitting, the requester may try again).
        let (files, held) = match logins {
            // Checked again: an account disabled while the records were read gets no share.
            Some(logins) => {
                let custodians = self.active_custodians(p, &row, logins).await?;
                (Vec::new(), self.hold_shares(p, &row, &spec, &custodians, files).await?)
            }
            None => (files, Vec::new()),
        };
        let mut warnings = Vec::new();
        let today = self.rows_taken_out_today(p).await?;
        let limits = &self.config.takeout;
        if today > limits.warn_rows_per_day {
            let what = format!("{today} rows taken out today (warning above {})", limits.warn_rows_per_day);
            warnings.push(self.bulk_warning(p, Some(id), today, what).await?);
        }
        Ok(ExportFile {
            export_id: id.to_owned(),
            files,
            held,
            rows,
            withheld,
            encrypted,
            download,
            downloads_allowed: row.downloads_allowed,
            warnings,
        })
    }
}

impl ExportFile {
    /// One file to hand over: the file itself, or for a secret-split export a ZIP of its
    /// share files (stored, not compressed: shares are ciphertext).
    pub fn bundle(mut self) -> Result<OutFile> {
        if self.files.len() == 1 {
            return Ok(self.files.remove(0));
        }
        let entries: Vec<(&str, &[u8])> = self.files.iter().map(|f| (f.name.as_str(), f.bytes.as_slice())).collect();
        let bytes =
            mamori_export::zip_files(&entries).map_err(|e| VaultError::Internal(format!("share bundle: {e}")))?;
        let short = &self.export_id[self.export_id.len().saturating_sub(12)..];
        Ok(OutFile { name: format!("mamori-export-{short}-shares.zip"), content_type: "application/zip", bytes })
    }
}
