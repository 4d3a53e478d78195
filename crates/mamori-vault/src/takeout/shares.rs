//! Shares of a secret-split export held for their custodians (秘密分散, 000-8-takeout-5: no
//! single piece restores anything; 004-I-4-1-1: each share in the ledger).
//!
//! The requester's download makes the shares; each is sealed under the master key and held
//! for the custodian named for it, who fetches it once, within the export's download
//! window. The requester is handed nothing (unless named as a custodian, then one share
//! like everyone else), so no one person is ever given enough shares to restore the file.
//! A share still held when the window closes, or when the export is returned or disposed
//! of, is destroyed.

use super::download::OutFile;
use super::requests::{ExportRequest, Protection};
use crate::error::{Result, VaultError};
use crate::{Principal, Vault};
use mamori_core::access::Action;
use mamori_core::audit::Outcome;
use mamori_store::{ExportRow, ExportStatus, HeldShare, ShareState, UserRow};
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// One share of a split export and where it stands.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ShareInfo {
    /// 1-based index of the share in its set.
    pub share: u8,
    /// Login of the custodian it is made for.
    pub custodian: String,
    /// held, fetched or discarded.
    pub state: String,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<OffsetDateTime>,
}

impl From<&HeldShare> for ShareInfo {
    fn from(s: &HeldShare) -> Self {
        Self { share: s.index, custodian: s.custodian.clone(), state: s.state.as_str().into(), ended_at: s.ended_at }
    }
}

/// A share waiting for the caller.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ShareForMe {
    pub export_id: String,
    pub collection: String,
    pub requested_by: String,
    pub share: u8,
    /// How many shares the set has, and how many restore the file.
    pub of: u8,
    pub threshold: u8,
    /// The end of the export's download window: fetch before then.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub fetch_until: Option<OffsetDateTime>,
}

/// `id` is the row key `<export>/<index>/<custodian>`: the share opens only in its own row.
pub(crate) fn held_share_aad(id: &str) -> Vec<u8> {
    format!("mamori/v1/held-share\0{id}").into_bytes()
}

/// Why shares still held when the download window closes are destroyed (ledger detail).
const WINDOW_CLOSED: &str = "the download window closed before every share was fetched";
const ERASED: &str = "a data subject the export may contain was erased";

fn split_of(spec: &ExportRequest) -> (u8, u8) {
    match spec.protection {
        Protection::Split { threshold, shares, .. } => (threshold, shares),
        _ => (0, 0),
    }
}

fn window_open(row: &ExportRow, now: OffsetDateTime) -> bool {
    row.status == ExportStatus::Approved && row.download_until.is_some_and(|until| until > now)
}

impl Vault {
    /// The custodians' accounts, in share order; refuses (and audits) the download when one
    /// of them is no longer an active account.
    pub(super) async fn active_custodians(
        &self,
        p: &Principal,
        row: &ExportRow,
        logins: &[String],
    ) -> Result<Vec<UserRow>> {
        let mut accounts = Vec::with_capacity(logins.len());
        for login in logins {
            match self.store.get_user_by_login(login).await? {
                Some(u) if !u.disabled => accounts.push(u),
                _ => {
                    let why = format!("custodian `{login}` is no longer an active account; ask again");
                    return Err(self.refuse_download(p, row, why).await);
                }
            }
        }
        Ok(accounts)
    }

    /// Seals the shares of a download for their custodians (from [`Self::active_custodians`])
    /// and stores them with one ledger line each.
    pub(super) async fn hold_shares(
        &self,
        p: &Principal,
        row: &ExportRow,
        spec: &ExportRequest,
        custodians: &[UserRow],
        files: Vec<OutFile>,
    ) -> Result<Vec<ShareInfo>> {
        let (threshold, of) = split_of(spec);
        let now = self.clock.now();
        let master = self.master();
        let mut shares = Vec::with_capacity(files.len());
        let mut lines = Vec::with_capacity(files.len());
        for (i, (file, custodian)) in files.iter().zip(custodians).enumerate() {
            let index = u8::try_from(i + 1).map_err(|_| VaultError::Internal("too many shares".into()))?;
            let mut share = HeldShare {
                export_id: row.id.clone(),
                index,
                custodian_id: custodian.id,
                custodian: custodian.login.clone(),
                held_at: now,
                state: ShareState::Held,
                ended_at: None,
                sealed: None,
            };
            share.sealed = Some(master.seal_secret(&file.bytes, &held_share_aad(&share.id())));
            let detail = serde_json::json!({
                "share": index, "of": of, "threshold": threshold, "custodian": share.custodian, "name": file.name,
                "sha256": format!("{:x}", Sha256::digest(&file.bytes)), "encrypted": true, "restores_alone": false,
                "state": "held",
            });
            lines.push(self.ledger_line(p, Some(&row.id), "share", 0, detail));
            shares.push(share);
        }
        if shares.len() != usize::from(of) {
            return Err(VaultError::Integrity(format!("export {}: shares and custodians differ", row.id)));
        }
        // Sealed under the master key: refused once another process rotated it.
        let step = mamori_store::AuditedChange::HoldExportShares { shares: shares.clone(), entries: lines };
        self.apply_sealed(&master, vec![step], Vec::new()).await.map_err(|e| match e {
            mamori_store::StoreError::Conflict(_) => {
                VaultError::Conflict(format!("the shares of export {} were made already", row.id))
            }
            other => other.into(),
        })?;
        Ok(shares.iter().map(ShareInfo::from).collect())
    }

    /// Destroys the shares of `export_id` still held, with a ledger line saying why.
    pub(super) async fn discard_held_shares(&self, p: &Principal, export_id: &str, why: &str) -> Result<u64> {
        let line = self.ledger_line(p, Some(export_id), "share_discard", 0, serde_json::json!({ "reason": why }));
        Ok(self.store.discard_export_shares(export_id, &line).await?)
    }

    /// The shares of one export and where they stand.
    pub(super) async fn share_states(&self, export_id: &str) -> Result<Vec<ShareInfo>> {
        Ok(self.store.list_export_shares(Some(export_id), None).await?.iter().map(ShareInfo::from).collect())
    }

    /// Destroys the shares still held for exports whose download window has closed or that
    /// are no longer approved, with a ledger line and an audit event each: the server runs
    /// this every minute, so an export nobody settles keeps no share (and no backup does).
    /// The number destroyed.
    pub async fn sweep_expired_shares(&self) -> Result<u64> {
        let now = self.clock.now();
        let exports = self.exports_holding_shares().await?;
        let mut destroyed = 0;
        for id in exports {
            let Some(row) = self.store.get_export(&id).await? else { continue };
            if window_open(&row, now) {
                continue;
            }
            let mut line = self.ledger_line(
                &Principal::operator("system"),
                Some(&id),
                "share_discard",
                0,
                serde_json::json!({ "reason": WINDOW_CLOSED }),
            );
            line.actor = "system".into();
            let n = self.store.discard_export_shares(&id, &line).await?;
            if n > 0 {
                let mut e =
                    mamori_core::audit::AuditEvent::new(now, "system", "export.share_discard", Outcome::Success);
                e.collection = Some(row.collection.clone());
                e.note = Some(format!("export {id}: {n} unfetched shares destroyed, the window closed"));
                self.audit.record(vec![e]).await?;
            }
            destroyed += n;
        }
        Ok(destroyed)
    }

    /// The exports that still hold shares for their custodians, each once.
    async fn exports_holding_shares(&self) -> Result<Vec<String>> {
        let mut exports: Vec<String> = self
            .store
            .list_export_shares(None, None)
            .await?
            .into_iter()
            .filter(|s| s.state == ShareState::Held)
            .map(|s| s.export_id)
            .collect();
        exports.sort();
        exports.dedup();
        Ok(exports)
    }

    /// The collections that hold data of `subject` (it has a data key there).
    pub(crate) async fn collections_holding(&self, subject: &str) -> Result<std::collections::BTreeSet<String>> {
        let mut out = std::collections::BTreeSet::new();
        for collection in self.store.list_collections().await? {
            if !self.store.get_subject_keys(collection.id, &[subject]).await?.is_empty() {
                out.insert(collection.name);
            }
        }
        Ok(out)
    }

    /// Around a data subject's erasure: destroys the shares still held for every export that
    /// may contain the subject — its collection is one of `holding` and its filter does not
    /// name other subjects only — with a ledger line and an audit event each. A held
    /// share is the export file itself (sealed under the master key): left in place, it would
    /// let its custodians restore the erased subject's data until the window closes. Files
    /// already handed out are beyond mamori's reach. The number destroyed.
    pub(crate) async fn discard_shares_for_erasure(
        &self,
        p: &Principal,
        subject: &str,
        holding: &std::collections::BTreeSet<String>,
    ) -> Result<u64> {
        let exports = self.exports_holding_shares().await?;
        let mut destroyed = 0;
        for id in exports {
            let Some(row) = self.store.get_export(&id).await? else { continue };
            let names_others_only = match &self.open_spec(&row)?.filter {
                super::ExportFilter::Subjects { ids } => !ids.iter().any(|s| s == subject),
                _ => false,
            };
            if names_others_only || !holding.contains(&row.collection) {
                continue;
            }
            let n = self.discard_held_shares(p, &id, ERASED).await?;
            if n > 0 {
                let mut e = self.event(p, "export.share_discard", Outcome::Success);
                e.collection = Some(row.collection.clone());
                e.note = Some(format!("export {id}: {n} unfetched shares destroyed, {ERASED}"));
                self.audit.record(vec![e]).await?;
            }
            destroyed += n;
        }
        Ok(destroyed)
    }

    /// The shares held for the caller, still fetchable.
    pub async fn shares_for_me(&self, p: &Principal) -> Result<Vec<ShareForMe>> {
        Self::gate(p)?;
        let Some(me) = p.user_id else { return Ok(Vec::new()) };
        let now = self.clock.now();
        let mut out = Vec::new();
        for share in self.store.list_export_shares(None, Some(&me)).await? {
            if share.state != ShareState::Held {
                continue;
            }
            let Some(row) = self.store.get_export(&share.export_id).await? else { continue };
            if !window_open(&row, now) {
                continue;
            }
            let (threshold, of) = split_of(&self.open_spec(&row)?);
            out.push(ShareForMe {
                export_id: row.id.clone(),
                collection: row.collection.clone(),
                requested_by: self.login_of(&row.user_id).await?,
                share: share.index,
                of,
                threshold,
                fetch_until: row.download_until,
            });
        }
        Ok(out)
    }

    /// Hands the caller the share held for them, once. Anyone else — the requester
    /// included — is told there is no such export; a share whose window has closed is
    /// destroyed, not handed over.
    pub async fn fetch_export_share(&self, p: &Principal, export_id: &str) -> Result<OutFile> {
        // A session limited to changing its password (or still owing its second factor)
        // fetches nothing.
        Self::gate(p)?;
        let refuse = async |why: String, err: VaultError| {
            let mut e = self.event(p, "export.share_fetch", Outcome::Denied);
            e.reason = Some(format!("export {export_id}: {why}"));
            match self.audit.record(vec![e]).await {
                Ok(_) => err,
                Err(audit) => audit,
            }
        };
        let Some(me) = p.user_id else {
            return Err(refuse("not an account".into(), VaultError::NotFound("export share")).await);
        };
        super::requests::well_formed_export_id(export_id, "export share")?;
        let row = self.store.get_export(export_id).await?;
        let mine = self.store.list_export_shares(Some(export_id), Some(&me)).await?;
        let (Some(row), Some(share)) = (row, mine.first()) else {
            return Err(refuse("no share held for the caller".into(), VaultError::NotFound("export share")).await);
        };
        if share.state != ShareState::Held {
            let why = format!("share {} was {} already", share.index, share.state.as_str());
            return Err(refuse(why.clone(), VaultError::Conflict(why)).await);
        }
        if !window_open(&row, self.clock.now()) {
            self.discard_held_shares(p, export_id, WINDOW_CLOSED).await?;
            let why = format!("the download window of export {export_id} has closed; its held shares are destroyed");
            return Err(refuse(why.clone(), VaultError::Conflict(why)).await);
        }
        // The custodian must still be allowed to read the collection in full (rights change).
        self.authorize_collection(p, Action::ViewFull, "export.share_fetch", &row.collection).await?;
        let spec = self.open_spec(&row)?;
        let (threshold, of) = split_of(&spec);
        let detail = serde_json::json!({
            "share": share.index, "of": of, "threshold": threshold, "custodian": share.custodian, "state": "fetched",
        });
        // The event is durable before the share is taken from the store: taking destroys the
        // held copy, so an audit log that cannot be written must leave the share held (fail
        // closed without losing it) rather than destroy it undelivered.
        let mut e = self.event(p, "export.share_fetch", Outcome::Success);
        e.collection = Some(row.collection.clone());
        e.note = Some(format!("export {export_id}, share {} of {of} (any {threshold} restore the file)", share.index));
        self.audit.record(vec![e]).await?;
        let line = self.ledger_line(p, Some(export_id), "share_fetch", 0, detail);
        let Some(taken) = self.store.take_export_share(export_id, &me, &line).await? else {
            // The custodian's other request took it since the check above, and delivered it.
            let why = format!("share {} was fetched by a concurrent request; this one delivered nothing", share.index);
            return Err(refuse(why.clone(), VaultError::Conflict(why)).await);
        };
        let sealed = taken.sealed.as_deref().ok_or_else(|| VaultError::Integrity("held share without bytes".into()))?;
        let bytes = self.master().open_secret(sealed, &held_share_aad(&taken.id()))?;
        let short = &row.id[row.id.len().saturating_sub(12)..];
        Ok(OutFile {
            name: format!("mamori-{}-{short}.share-{}-of-{of}.mamori", row.collection, taken.index),
            content_type: "application/octet-stream",
            bytes: bytes.to_vec(),
        })
    }
}
