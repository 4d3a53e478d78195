//! Record operations: create, read (full or masked), update, delete, blind-index search.
//!
//! Measures: 000-8-access-1 and 001-20-rule-3-1 (need-to-know: masked view by default),
//! 001-20-tech-4-1 and 000-8-access-7 (every access recorded, with who), 001-20-rule-4-2
//! (stored personal data encrypted), 002-S-12 (entered values checked).

use crate::authz::GrantMemo;
use crate::codec;
use crate::error::{Result, VaultError};
use crate::keys::CollectionState;
use crate::{Principal, Vault};
use indexmap::IndexMap;
use mamori_core::access::Action;
use mamori_core::audit::{AuditEvent, Outcome};
use mamori_core::ids::{RecordId, SubjectId};
use mamori_core::normalize::blind_index_form;
use mamori_core::schema::CollectionSchema;
use mamori_core::value;
use mamori_crypto::{DataKey, FieldAad, FieldCipher};
use mamori_store::{AuditedChange, IndexToken, RecordRow, StoreError, SubjectKeyRow};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use time::OffsetDateTime;

/// How a record leaves the screen besides the view itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeOut {
    Print,
    /// To the clipboard.
    Copy,
}

/// How much of a record the caller asks to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// Values as the schema's masking rules show them. The default: least exposure.
    #[default]
    Masked,
    /// Plaintext values; needs the full-view right (and a purpose where the collection asks).
    Full,
}

impl View {
    fn action(self) -> Action {
        match self {
            View::Masked => Action::ViewMasked,
            View::Full => Action::ViewFull,
        }
    }
}

/// A decrypted record on its way to an authorised caller. Its `Debug` lists field names
/// only, so a stray `{:?}` cannot leak a value into a log.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct RecordView {
    #[schema(value_type = String, format = Uuid)]
    pub id: RecordId,
    pub collection: String,
    pub subject_id: String,
    /// Owning department (policies decide on it); `None` where departments are not used.
    pub department: Option<String>,
    pub schema_version: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub view: View,
    /// Values in the order of the record's schema.
    #[schema(value_type = Object)]
    pub fields: IndexMap<String, String>,
}

impl std::fmt::Debug for RecordView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordView")
            .field("id", &self.id)
            .field("collection", &self.collection)
            .field("view", &self.view)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Validated, canonical values of one record, keyed by field name.
pub(crate) type Values = BTreeMap<String, String>;

/// A department code as records and accounts carry it: organisational metadata, not a
/// person, so it stays short and printable.
pub(crate) fn valid_department(d: &str) -> Result<String> {
    let d = d.trim();
    if d.is_empty() || d.chars().count() > 64 || d.chars().any(char::is_control) {
        return Err(VaultError::Invalid("department must be 1–64 printable characters".into()));
    }
    Ok(d.to_owned())
}

/// Validates caller-supplied values against the schema: unknown fields and missing required
/// fields are errors; empty optional values are dropped.
pub(crate) fn validate_values(schema: &CollectionSchema, input: &BTreeMap<String, String>) -> Result<Values> {
    if let Some(unknown) = input.keys().find(|k| schema.field(k).is_none()) {
        return Err(mamori_core::CoreError::UnknownField(unknown.clone()).into());
    }
    let mut out = Values::new();
    for f in &schema.fields {
        let raw = input.get(&f.name).map(String::as_str).unwrap_or("");
        if let Some(v) = value::validate(f, raw)? {
            out.insert(f.name.clone(), v);
        }
    }
    Ok(out)
}

/// Whose a record is: its id, data subject and owning department.
pub(crate) struct Owner<'a> {
    pub id: RecordId,
    pub subject: &'a str,
    pub department: Option<String>,
}

/// Encrypts and indexes validated values into a storable row.
pub(crate) fn seal_record(
    state: &CollectionState,
    cipher: &FieldCipher,
    owner: Owner<'_>,
    values: &Values,
    now: OffsetDateTime,
    created_at: OffsetDateTime,
) -> Result<RecordRow> {
    let Owner { id, subject, department } = owner;
    let schema = state.current();
    let version = state.row.schema_version;
    let mut sealed = Vec::with_capacity(values.len());
    let mut tokens = Vec::new();
    for f in &schema.fields {
        let Some(v) = values.get(&f.name) else { continue };
        let aad =
            FieldAad { collection: &state.row.name, record_id: id.as_bytes(), field: &f.name, schema_version: version };
        sealed.push((f.name.as_str(), cipher.encrypt(&aad, v.as_bytes())));
        if f.is_indexed() {
            let token = state.indexer(&f.name)?.token(&blind_index_form(f.field_type, v));
            tokens.push(IndexToken { token: token.to_vec(), unique: f.unique });
        }
    }
    Ok(RecordRow {
        id,
        collection_id: state.row.id,
        subject: subject.to_owned(),
        department,
        schema_version: version,
        fields: codec::encode(&sealed),
        tokens,
        created_at,
        updated_at: now,
    })
}

impl Vault {
    /// The subject's data key in this collection, created on first use. Concurrent first uses
    /// agree on one key (the store keeps the first one written).
    async fn subject_key(&self, state: &Arc<CollectionState>, subject: &str) -> Result<DataKey> {
        if let Some(existing) = self.store.get_subject_keys(state.row.id, &[subject]).await?.pop() {
            return Ok(self.unwrap_dek_fresh(state.clone(), &existing).await?.1);
        }
        let (_, row) = state.wrap_new_dek(subject)?;
        let stored: SubjectKeyRow = match self.store.ensure_subject_key(state.row.id, &row).await {
            Ok(stored) => stored,
            // The KEK was rotated away between our read and our write: wrap under the new one.
            Err(_) => {
                let fresh = self.reload_collection(&state.row.name).await?;
                let (_, row) = fresh.wrap_new_dek(subject)?;
                let stored = self.store.ensure_subject_key(fresh.row.id, &row).await?;
                return fresh.unwrap_dek(&stored);
            }
        };
        state.unwrap_dek(&stored)
    }

    /// Names the unique field whose value is taken, for a useful conflict message, and records
    /// the refused write: a run of such conflicts is someone probing which values exist.
    async fn unique_conflict(
        &self,
        p: &Principal,
        action: &str,
        state: &CollectionState,
        subject: &str,
        values: &Values,
    ) -> VaultError {
        // The store also refuses a record whose subject lost its key meanwhile (erasure).
        if matches!(self.store.get_subject_keys(state.row.id, &[subject]).await, Ok(k) if k.is_empty()) {
            return VaultError::Conflict("the data subject was erased while the record was being written".into());
        }
        let err = self.which_unique_conflict(state, values).await;
        let mut e = self.event(p, action, Outcome::Failure);
        e.collection = Some(state.row.name.clone());
        e.reason = Some(err.to_string());
        if let Err(audit) = self.audit.record(vec![e]).await {
            return audit;
        }
        err
    }

    async fn which_unique_conflict(&self, state: &CollectionState, values: &Values) -> VaultError {
        for f in state.current().fields.iter().filter(|f| f.unique) {
            let Some(v) = values.get(&f.name) else { continue };
            let Ok(indexer) = state.indexer(&f.name) else { continue };
            let token = indexer.token(&blind_index_form(f.field_type, v)).to_vec();
            if matches!(self.store.unique_tokens_taken(state.row.id, &[token]).await, Ok(t) if !t.is_empty()) {
                return VaultError::Conflict(format!("field `{}`: this value is already registered", f.name));
            }
        }
        VaultError::Conflict("a unique value is already registered".into())
    }

    pub(crate) fn record_event(
        &self,
        p: &Principal,
        action: &str,
        state: &CollectionState,
        id: &RecordId,
        subject: &str,
    ) -> AuditEvent {
        let mut e = self.event(p, action, Outcome::Success);
        e.collection = Some(state.row.name.clone());
        e.record = Some(id.to_string());
        e.subject = Some(subject.to_owned());
        e
    }

    /// Creates a record owned by the caller's own department.
    pub async fn create_record(
        &self,
        p: &Principal,
        collection: &str,
        subject: Option<SubjectId>,
        input: &BTreeMap<String, String>,
    ) -> Result<RecordId> {
        self.create_record_in(p, collection, subject, None, input).await
    }

    /// Creates a record owned by `department` (`None`: the caller's own), if policies let
    /// the caller create records there.
    pub async fn create_record_in(
        &self,
        p: &Principal,
        collection: &str,
        subject: Option<SubjectId>,
        department: Option<&str>,
        input: &BTreeMap<String, String>,
    ) -> Result<RecordId> {
        let department = match department {
            Some(d) => Some(valid_department(d)?),
            None => p.department.clone(),
        };
        let (state, _) = self.authorize_collection(p, Action::Create, "record.create", collection).await?;
        let access = self.authorize_new_record(p, "record.create", &state, department.as_deref()).await?;
        let mut event = self.event(p, "record.create", Outcome::Denied);
        event.collection = Some(state.row.name.clone());
        self.check_fields_writable(p, &state, department.as_deref(), event, input.keys()).await?;
        let values = validate_values(state.current(), input)?;
        let subject = subject.unwrap_or_else(SubjectId::generate);
        let dek = self.subject_key(&state, subject.as_str()).await?;
        let id = RecordId::generate();
        let now = self.clock.now();
        let owner = Owner { id, subject: subject.as_str(), department };
        let row = seal_record(&state, &FieldCipher::new(&dek), owner, &values, now, now)?;
        let mut e = self.record_event(p, "record.create", &state, &id, subject.as_str());
        e.fields = values.keys().cloned().collect();
        access.stamp(&mut e);
        match self.audit.apply(vec![AuditedChange::InsertRecord(row)], vec![e]).await {
            Err(StoreError::Conflict(_)) => {
                Err(self.unique_conflict(p, "record.create", &state, subject.as_str(), &values).await)
            }
            other => Ok(other.map(|_| id)?),
        }
    }

    /// Decrypts a stored row. Fails with `Integrity` if any ciphertext is not authentic.
    /// Unwraps a subject key, first reloading the collection if the key names a KEK this
    /// process has not loaded yet (rewrapped by a rotation in another process).
    async fn unwrap_dek_fresh(
        &self,
        state: Arc<CollectionState>,
        key: &SubjectKeyRow,
    ) -> Result<(Arc<CollectionState>, DataKey)> {
        let state = match state.keks.contains_key(&key.kek_version) {
            true => state,
            false => self.reload_collection(&state.row.name).await?,
        };
        let dek = state.unwrap_dek(key)?;
        Ok((state, dek))
    }

    /// Decrypts a stored row, returning the cipher too so that an update re-encrypts with the
    /// same subject key without fetching it again.
    pub(crate) async fn open_row(
        &self,
        state: &Arc<CollectionState>,
        row: &RecordRow,
        key: Option<SubjectKeyRow>,
    ) -> Result<(Arc<CollectionState>, Values, FieldCipher)> {
        let state = match state.schemas.contains_key(&row.schema_version) {
            true => state.clone(),
            false => self.reload_collection(&state.row.name).await?,
        };
        let key = key.ok_or_else(|| VaultError::Integrity("the subject's data key is missing".into()))?;
        let (state, dek) = self.unwrap_dek_fresh(state, &key).await?;
        let cipher = FieldCipher::new(&dek);
        let mut values = Values::new();
        for (field, ct) in codec::decode(&row.fields)? {
            let aad = FieldAad {
                collection: &state.row.name,
                record_id: row.id.as_bytes(),
                field: &field,
                schema_version: row.schema_version,
            };
            let plain = cipher.decrypt(&aad, ct)?;
            let text = String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Integrity("field encoding".into()))?;
            values.insert(field, text);
        }
        Ok((state, values, cipher))
    }

    /// Shapes a decrypted record for the caller. Masking follows the collection's *current*
    /// schema, so tightening a mask protects old records at once; in the masked view, fields
    /// the current schema no longer declares are left out.
    /// Only the fields in `visible` (what policies let the caller see) are shown.
    fn present(
        state: &CollectionState,
        row: &RecordRow,
        mut values: Values,
        view: View,
        visible: &HashSet<String>,
    ) -> Result<RecordView> {
        let schema = state.schema(row.schema_version)?;
        let current = state.current();
        let mut fields = IndexMap::with_capacity(values.len());
        for f in &schema.fields {
            let Some(v) = values.remove(&f.name) else { continue };
            if !visible.contains(&f.name) {
                continue;
            }
            let shown = match view {
                View::Full => v,
                View::Masked => match current.field(&f.name) {
                    Some(now) => now.mask_rule().apply(&v),
                    None => continue,
                },
            };
            fields.insert(f.name.clone(), shown);
        }
        if !values.is_empty() {
            return Err(VaultError::Integrity("the record has fields its schema version does not declare".into()));
        }
        Ok(RecordView {
            id: row.id,
            collection: state.row.name.clone(),
            subject_id: row.subject.clone(),
            department: row.department.clone(),
            schema_version: row.schema_version,
            created_at: row.created_at,
            updated_at: row.updated_at,
            view,
            fields,
        })
    }

    pub(crate) fn check_purpose(
        schema: &CollectionSchema,
        view: View,
        purpose: Option<&str>,
    ) -> Result<Option<String>> {
        let purpose = purpose.map(str::trim).filter(|s| !s.is_empty());
        if let Some(p) = purpose {
            if !schema.access_purposes.is_empty() && !schema.access_purposes.iter().any(|allowed| allowed == p) {
                return Err(VaultError::Invalid("the purpose must be one of the collection's access_purposes".into()));
            }
            if p.chars().count() > 200 {
                return Err(VaultError::Invalid("purpose is longer than 200 characters".into()));
            }
        }
        if view == View::Full && schema.purpose_required_for_full_view && purpose.is_none() {
            return Err(VaultError::Invalid(
                "this collection asks for a purpose (利用目的) to view unmasked data".into(),
            ));
        }
        Ok(purpose.map(str::to_owned))
    }

    pub async fn get_record(
        &self,
        p: &Principal,
        collection: &str,
        id: &RecordId,
        view: View,
        purpose: Option<&str>,
    ) -> Result<RecordView> {
        let (state, _) = self.authorize_collection(p, view.action(), "record.read", collection).await?;
        let purpose = Self::check_purpose(state.current(), view, purpose)?;
        let Some((row, key)) = self.store.get_record_with_key(state.row.id, id).await? else {
            let mut e = self.event(p, "record.read", Outcome::Failure);
            e.collection = Some(collection.to_owned());
            e.record = Some(id.to_string());
            e.reason = Some("not found".into());
            self.audit.record(vec![e]).await?;
            return Err(VaultError::NotFound("record"));
        };
        let access = self.authorize_record(p, view.action(), "record.read", &state, &row).await?;
        let (state, values, _) = self.open_row(&state, &row, key).await?;
        let department = row.department.clone().unwrap_or_default();
        let visible = self.visible_fields(p, view.action(), &state, &department, &mut GrantMemo::default()).await?;
        let record = Self::present(&state, &row, values, view, &visible)?;
        let mut e = self.record_event(p, "record.read", &state, id, &row.subject);
        e.fields = record.fields.keys().cloned().collect();
        e.purpose = purpose;
        access.stamp(&mut e);
        e.reason = Some(format!("view={}", if view == View::Full { "full" } else { "masked" }));
        self.audit.record(vec![e]).await?;
        Ok(record)
    }

    /// A record taken out by printing or copying: the caller needs that right on the record
    /// as well as the view, and it is audited beside the read (`record.print`,
    /// `record.copy`; 000-8-takeout-2: prints and copies monitored; 001-20-tech-2-3: no print
    /// for view-only users). It counts as one row taken out: refused above the daily hard
    /// limit, and a warning (returned beside the record) above the warning threshold
    /// (002-S-11-a).
    pub async fn take_out_record(
        &self,
        p: &Principal,
        collection: &str,
        id: &RecordId,
        view: View,
        purpose: Option<&str>,
        how: TakeOut,
    ) -> Result<(RecordView, Option<String>)> {
        let how = match how {
            TakeOut::Print => Action::Print,
            TakeOut::Copy => Action::Copy,
        };
        let audit_action = format!("record.{}", how.as_str());
        let (state, _) = self.authorize_collection(p, how, &audit_action, collection).await?;
        let row = self.store.get_record(state.row.id, id).await?.ok_or(VaultError::NotFound("record"))?;
        let access = self.authorize_record(p, how, &audit_action, &state, &row).await?;
        let today = self.check_takeout_limit(p, &state.row.name, &audit_action).await?;
        let record = self.get_record(p, collection, id, view, purpose).await?;
        let mut e = self.record_event(p, &audit_action, &state, id, &row.subject);
        e.fields = record.fields.keys().cloned().collect();
        access.stamp(&mut e);
        let warning = self.record_takeout(p, &state.row.name, how.as_str(), today, e).await?;
        Ok((record, warning))
    }

    /// Replaces the given fields (others keep their values); the record is re-encrypted under
    /// the collection's current schema version.
    pub async fn update_record(
        &self,
        p: &Principal,
        collection: &str,
        id: &RecordId,
        changes: &BTreeMap<String, String>,
    ) -> Result<()> {
        let (state, _) = self.authorize_collection(p, Action::Update, "record.update", collection).await?;
        let (row, key) =
            self.store.get_record_with_key(state.row.id, id).await?.ok_or(VaultError::NotFound("record"))?;
        let access = self.authorize_record(p, Action::Update, "record.update", &state, &row).await?;
        let event = self.record_event(p, "record.update", &state, id, &row.subject);
        self.check_fields_writable(p, &state, row.department.as_deref(), event, changes.keys()).await?;
        let (state, old, cipher) = self.open_row(&state, &row, key).await?;
        let current = state.current();
        let mut merged: BTreeMap<String, String> =
            old.into_iter().filter(|(k, _)| current.field(k).is_some()).collect();
        for (k, v) in changes {
            merged.insert(k.clone(), v.clone());
        }
        let values = validate_values(current, &merged)?;
        let now = self.clock.now();
        let new_row = seal_record(
            &state,
            &cipher,
            Owner { id: *id, subject: &row.subject, department: row.department.clone() },
            &values,
            now,
            row.created_at,
        )?;
        let mut e = self.record_event(p, "record.update", &state, id, &row.subject);
        e.fields = changes.keys().cloned().collect();
        access.stamp(&mut e);
        match self.audit.apply(vec![AuditedChange::UpdateRecord(new_row)], vec![e]).await {
            Err(StoreError::Conflict(_)) => {
                Err(self.unique_conflict(p, "record.update", &state, &row.subject, &values).await)
            }
            other => Ok(other.map(drop)?),
        }
    }

    /// Names of the fields `p` may write with `action` (`Create` or `Update`) on records of
    /// `department` (`None`: the caller's own) in `collection`: those the caller can see, at
    /// least masked. What a form offers.
    pub async fn writable_fields(
        &self,
        p: &Principal,
        action: Action,
        collection: &str,
        department: Option<&str>,
    ) -> Result<HashSet<String>> {
        let audit_action = if action == Action::Create { "record.create" } else { "record.update" };
        let (state, _) = self.authorize_collection(p, action, audit_action, collection).await?;
        let department = department.map(str::to_owned).or_else(|| p.department.clone()).unwrap_or_default();
        self.writable_in(p, &state, &department).await
    }

    /// The fields `p` may write on records of `department`: those they can see, at least
    /// masked (the one rule behind forms, single writes and imports).
    pub(crate) async fn writable_in(
        &self,
        p: &Principal,
        state: &CollectionState,
        department: &str,
    ) -> Result<HashSet<String>> {
        self.visible_fields(p, Action::ViewMasked, state, department, &mut GrantMemo::default()).await
    }

    /// Refuses (and audits as `audit_action`) writing a field the caller cannot see, even
    /// masked: a clerk neither overwrites a 要配慮 value hidden from them nor enters one they
    /// could not read back (004-II-1-2-1, need-to-know). Names the schema does not declare
    /// are left to validation, which refuses them.
    async fn check_fields_writable<'a>(
        &self,
        p: &Principal,
        state: &CollectionState,
        department: Option<&str>,
        mut event: AuditEvent,
        fields: impl Iterator<Item = &'a String>,
    ) -> Result<()> {
        let visible = self.writable_in(p, state, department.unwrap_or_default()).await?;
        let current = state.current();
        let hidden: Vec<String> =
            fields.filter(|f| current.field(f).is_some() && !visible.contains(*f)).cloned().collect();
        if hidden.is_empty() {
            return Ok(());
        }
        event.outcome = Outcome::Denied;
        event.fields = hidden;
        event.reason = Some("may not write fields hidden from the caller".into());
        self.audit.record(vec![event]).await?;
        Err(VaultError::Forbidden)
    }

    pub async fn delete_record(&self, p: &Principal, collection: &str, id: &RecordId) -> Result<()> {
        let (state, _) = self.authorize_collection(p, Action::Delete, "record.delete", collection).await?;
        let row = self.store.get_record(state.row.id, id).await?.ok_or(VaultError::NotFound("record"))?;
        let access = self.authorize_record(p, Action::Delete, "record.delete", &state, &row).await?;
        let mut e = self.record_event(p, "record.delete", &state, id, &row.subject);
        access.stamp(&mut e);
        let change = AuditedChange::DeleteRecord { collection_id: state.row.id, id: *id };
        self.audit.apply(vec![change], vec![e]).await?;
        Ok(())
    }

    /// Exact-match search on one searchable field through the blind index.
    pub async fn search(
        &self,
        p: &Principal,
        collection: &str,
        field: &str,
        value: &str,
        view: View,
        purpose: Option<&str>,
    ) -> Result<Vec<RecordView>> {
        let (state, search_access) = self.authorize_collection(p, Action::Search, "record.search", collection).await?;
        self.authorize_collection(p, view.action(), "record.search", collection).await?;
        let purpose = Self::check_purpose(state.current(), view, purpose)?;
        let def = state
            .schemas
            .values()
            .rev()
            .find_map(|s| s.field(field))
            .filter(|f| f.is_indexed())
            .ok_or_else(|| VaultError::Invalid(format!("field `{field}` is not searchable")))?;
        let token = state.indexer(field)?.token(&blind_index_form(def.field_type, value.trim()));
        let ids = self.store.find_by_token(state.row.id, &token, self.config.search_limit).await?;
        let Hits { found, mut events, withheld } = self.open_hits(p, &state, ids, view, &purpose, "via search").await?;
        let mut e = self.event(p, "record.search", Outcome::Success);
        e.collection = Some(collection.to_owned());
        e.fields = vec![field.to_owned()];
        e.rows = Some(found.len() as u64);
        e.purpose = purpose;
        if withheld > 0 {
            e.reason = Some(format!("{withheld} hits withheld by policy"));
        }
        search_access.stamp(&mut e);
        events.insert(0, e);
        self.audit.record(events).await?;
        Ok(found)
    }

    /// Every record of one data subject that the caller may read, in every collection
    /// where the caller may search (the 本人 view used to answer a disclosure request, and to
    /// check what is held about someone before erasure). Collections where the caller has no
    /// such right are skipped without a denial; each record shown is audited as a read, and
    /// one `subject.view` event counts them.
    pub async fn subject_records(
        &self,
        p: &Principal,
        subject: &SubjectId,
        view: View,
        purpose: Option<&str>,
    ) -> Result<Vec<RecordView>> {
        let capabilities = self.capabilities(p).await?;
        let mut found = Vec::new();
        let mut events = Vec::new();
        let mut withheld = 0;
        let mut collections = Vec::new();
        let mut names: Vec<&str> = capabilities.collections.iter().map(|c| c.collection.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            if !(capabilities.can_in(name, Action::Search) && capabilities.can_in(name, view.action())) {
                continue;
            }
            let (state, _) = self.authorize_collection(p, Action::Search, "subject.view", name).await?;
            let purpose = Self::check_purpose(state.current(), view, purpose)?;
            let ids = self.store.find_by_subject(state.row.id, subject.as_str(), self.config.search_limit).await?;
            let hits = self.open_hits(p, &state, ids, view, &purpose, "via subject view").await?;
            if !hits.found.is_empty() {
                collections.push(name.to_owned());
            }
            found.extend(hits.found);
            events.extend(hits.events);
            withheld += hits.withheld;
        }
        let mut e = self.event(p, "subject.view", Outcome::Success);
        e.subject = Some(subject.as_str().to_owned());
        e.rows = Some(found.len() as u64);
        e.purpose = purpose.map(str::to_owned);
        e.fields = collections;
        if withheld > 0 {
            e.reason = Some(format!("{withheld} records withheld by policy"));
        }
        events.insert(0, e);
        self.audit.record(events).await?;
        Ok(found)
    }

    /// Opens the records behind a list of hits for a caller who passed the collection-level
    /// checks, leaving out those the caller may not see, with one audit event per record shown.
    async fn open_hits(
        &self,
        p: &Principal,
        state: &Arc<CollectionState>,
        ids: Vec<RecordId>,
        view: View,
        purpose: &Option<String>,
        via: &str,
    ) -> Result<Hits> {
        let mut found = Vec::with_capacity(ids.len());
        let mut events = Vec::with_capacity(ids.len() + 1);
        let mut withheld = 0;
        // Field decisions depend on the record's department only: made once per department.
        let mut visible_by_department: HashMap<String, HashSet<String>> = HashMap::new();
        let mut grant = GrantMemo::default();
        for id in ids {
            let Some((row, key)) = self.store.get_record_with_key(state.row.id, &id).await? else { continue };
            // Hits the caller may not see are left out silently: not even their number
            // reaches the caller (the audit event keeps it).
            let (decision, opened_by) = self.decide_record(p, view.action(), state, &row, &mut grant).await?;
            if !decision.allowed {
                withheld += 1;
                continue;
            }
            let (state, values, _) = self.open_row(state, &row, key).await?;
            let department = row.department.clone().unwrap_or_default();
            if !visible_by_department.contains_key(&department) {
                let visible = self.visible_fields(p, view.action(), &state, &department, &mut grant).await?;
                visible_by_department.insert(department.clone(), visible);
            }
            let record = Self::present(&state, &row, values, view, &visible_by_department[&department])?;
            let mut e = self.record_event(p, "record.read", &state, &id, &row.subject);
            e.fields = record.fields.keys().cloned().collect();
            e.purpose = purpose.clone();
            e.reason = Some(via.into());
            crate::authz::Access { policy: decision.policy_list(), grant: opened_by }.stamp(&mut e);
            events.push(e);
            found.push(record);
        }
        Ok(Hits { found, events, withheld })
    }
}

/// What [`Vault::open_hits`] returns: the records shown, their audit events, and how many
/// hits policy withheld.
struct Hits {
    found: Vec<RecordView>,
    events: Vec<AuditEvent>,
    withheld: usize,
}
