//! Erasure of a data subject by crypto-shredding, with a certificate as evidence
//! (capability G; 004-I-4-5-1-b irrecoverable disposal of electronic information; 002-S-7
//! erasure that cannot be restored; 001-20-rule-5-1 limited to the people entitled to it).

use crate::error::{Result, VaultError};
use crate::{Principal, Vault};
use mamori_core::access::Action;
use mamori_core::audit::Outcome;
use mamori_core::ids::SubjectId;
use mamori_store::{AuditedChange, ErasureCertificateRow, ErasureCounts, StoreError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub const ERASURE_METHOD: &str = "crypto-shredding: the subject's AES-256-GCM data keys were destroyed in every \
     collection; its encrypted records and blind-index entries were deleted; shares still held of exports that may \
     contain it were destroyed";

/// Evidence of an erasure: what, when, by whom, how. Contains ids and counts only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ErasureCertificate {
    pub certificate_id: String,
    pub subject_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub erased_at: OffsetDateTime,
    pub erased_by: String,
    pub method: String,
    pub data_keys_destroyed: u64,
    pub records_deleted: u64,
    /// Shares of secret-split exports that may contain the subject, still held by mamori
    /// for their custodians and destroyed first (absent from certificates issued before).
    /// Shares a download made while the erasure ran are destroyed right after it, each
    /// export's with an `export.share_discard` audit event of its own.
    #[serde(default)]
    pub held_shares_destroyed: u64,
}

impl Vault {
    /// On PostgreSQL the erasure waits at most 5 s for the subject's keys, which a running
    /// import or write holds until it commits; it then fails as unavailable (HTTP 503),
    /// erasing nothing, and is simply asked again.
    pub async fn erase_subject(&self, p: &Principal, subject: &SubjectId) -> Result<ErasureCertificate> {
        self.authorize(p, Action::SubjectErase, "subject.erase", None).await?;
        // First, so that a failure here leaves the subject in place rather than erased with a
        // held copy of its data left behind.
        let holding = self.collections_holding(subject.as_str()).await?;
        let held_shares_destroyed = self.discard_shares_for_erasure(p, subject.as_str(), &holding).await?;
        let mut cert = ErasureCertificate {
            certificate_id: uuid::Uuid::now_v7().to_string(),
            subject_id: subject.to_string(),
            erased_at: self.clock.now(),
            erased_by: p.actor(),
            method: ERASURE_METHOD.into(),
            data_keys_destroyed: 0,
            records_deleted: 0,
            held_shares_destroyed,
        };
        // The counts are only known inside the erasure transaction: the store records them in
        // columns of their own beside this body, and they are merged back on reading.
        let row = ErasureCertificateRow {
            id: cert.certificate_id.clone(),
            subject: cert.subject_id.clone(),
            erased_at: cert.erased_at,
            body_json: serde_json::to_string(&cert).map_err(|e| VaultError::Internal(e.to_string()))?,
            keys_destroyed: 0,
            records_deleted: 0,
        };
        // The erasure, its certificate and its event are one transaction (000-8-access-7): the
        // event counts the records it deletes, so they are counted first, and counted again
        // if a record of the subject was written or deleted meanwhile.
        let mut erased = None;
        for _ in 0..5 {
            let mut expected = ErasureCounts::default();
            for collection in self.store.list_collections().await? {
                let (id, s) = (collection.id, subject.as_str());
                expected.keys_destroyed += self.store.get_subject_keys(id, &[s]).await?.len() as u64;
                expected.records_deleted += self.store.find_by_subject(id, s, usize::MAX).await?.len() as u64;
            }
            let mut e = self.event(p, "subject.erase", Outcome::Success);
            e.subject = Some(subject.to_string());
            e.rows = Some(expected.records_deleted);
            e.reason = Some(format!("certificate {}", cert.certificate_id));
            let certificate = Box::new(row.clone());
            let step =
                AuditedChange::EraseSubject { subject: subject.to_string(), certificate, expected: expected.clone() };
            match self.audit.apply(vec![step], vec![e]).await {
                Err(StoreError::Conflict(_)) => continue,
                other => {
                    other?;
                    erased = Some(expected);
                    break;
                }
            }
        }
        let counts = erased.ok_or_else(|| {
            VaultError::Conflict(
                "the data subject's records keep changing; erase again once writes to them stop".into(),
            )
        })?;
        // A download that read the subject's records before the erasure may have made its
        // shares since the first pass: now nothing new can contain the subject. Each export
        // whose shares are destroyed has its own audit event and ledger line.
        self.discard_shares_for_erasure(p, subject.as_str(), &holding).await?;
        cert.data_keys_destroyed = counts.keys_destroyed;
        cert.records_deleted = counts.records_deleted;
        Ok(cert)
    }

    pub async fn erasure_certificates(&self, p: &Principal) -> Result<Vec<ErasureCertificate>> {
        self.authorize(p, Action::AuditRead, "erasure.list", None).await?;
        let rows = self.store.list_erasure_certificates().await?;
        let mut e = self.event(p, "erasure.list", Outcome::Success);
        e.rows = Some(rows.len() as u64);
        self.audit.record(vec![e]).await?;
        rows.into_iter()
            .map(|r| {
                let mut cert: ErasureCertificate =
                    serde_json::from_str(&r.body_json).map_err(|e| VaultError::Integrity(e.to_string()))?;
                cert.data_keys_destroyed = r.keys_destroyed;
                cert.records_deleted = r.records_deleted;
                Ok(cert)
            })
            .collect()
    }
}
