//! Collections and their keys: creation, schema versions, the in-memory key cache, and KEK
//! and master-key rotation (capability F; 002-T-6-d and 001-20-rule-2-5 key management;
//! administrator operations are audited, 004-V-1-23).

use crate::error::{Result, VaultError};
use crate::{Principal, Vault};
use mamori_core::access::Action;
use mamori_core::audit::Outcome;
use mamori_core::schema::CollectionSchema;
use mamori_crypto::{BlindIndexer, DataKey, FieldIndexer, IndexKey, Kek, MasterKey};
use mamori_store::{
    AuditedChange, CollectionRow, MasterRewrap, NewCollection, SealedKind, SealedValue, SubjectKeyRow, WrappedKek,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Everything needed to encrypt, decrypt and index one collection, unwrapped once and kept
/// in memory (never on disk, never in `Debug`).
pub(crate) struct CollectionState {
    pub row: CollectionRow,
    pub schemas: BTreeMap<u32, Arc<CollectionSchema>>,
    pub keks: Arc<HashMap<u32, Kek>>,
    pub indexers: Arc<HashMap<String, FieldIndexer>>,
    /// When the cached row was last compared with the stored one.
    pub checked: std::time::Instant,
}

/// How stale the cache may get before it is compared with the stored collection row again.
/// Within this window a KEK rotated by another process is still caught where it matters:
/// unwrapping a key under an unknown KEK version reloads, and storing a key under a
/// destroyed KEK is refused by the database (and retried).
const REVALIDATE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for CollectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectionState").field("name", &self.row.name).finish_non_exhaustive()
    }
}

impl CollectionState {
    /// A copy that shares the (immutable) key material.
    fn shallow_clone(&self) -> Self {
        Self {
            row: self.row.clone(),
            schemas: self.schemas.clone(),
            keks: self.keks.clone(),
            indexers: self.indexers.clone(),
            checked: self.checked,
        }
    }

    pub fn current(&self) -> &Arc<CollectionSchema> {
        self.schemas.get(&self.row.schema_version).expect("the current schema is always loaded")
    }

    pub fn schema(&self, version: u32) -> Result<&Arc<CollectionSchema>> {
        self.schemas.get(&version).ok_or_else(|| VaultError::Integrity(format!("schema version {version} missing")))
    }

    pub fn indexer(&self, field: &str) -> Result<&FieldIndexer> {
        self.indexers.get(field).ok_or_else(|| VaultError::Invalid(format!("field `{field}` is not searchable")))
    }

    pub fn kek(&self, version: u32) -> Result<&Kek> {
        self.keks.get(&version).ok_or_else(|| VaultError::Integrity(format!("KEK version {version} missing")))
    }

    pub fn wrap_new_dek(&self, subject: &str) -> Result<(DataKey, SubjectKeyRow)> {
        let dek = DataKey::generate();
        let version = self.row.kek_version;
        let wrapped = self.kek(version)?.wrapper().wrap(dek.secret(), &dek_aad(&self.row.name, subject));
        Ok((dek, SubjectKeyRow { subject: subject.to_owned(), kek_version: version, wrapped_dek: wrapped }))
    }

    pub fn unwrap_dek(&self, key: &SubjectKeyRow) -> Result<DataKey> {
        let secret = self
            .kek(key.kek_version)?
            .wrapper()
            .unwrap_key(&key.wrapped_dek, &dek_aad(&self.row.name, &key.subject))?;
        Ok(DataKey::from_secret(secret))
    }
}

pub(crate) fn dek_aad(collection: &str, subject: &str) -> Vec<u8> {
    format!("mamori/v1/dek\0{collection}\0{subject}").into_bytes()
}
fn kek_aad(collection: &str, version: u32) -> Vec<u8> {
    format!("mamori/v1/kek\0{collection}\0{version}").into_bytes()
}
fn index_key_aad(collection: &str) -> Vec<u8> {
    format!("mamori/v1/index-key\0{collection}").into_bytes()
}

/// What `mamori collection list` and the API show of a collection.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CollectionInfo {
    pub name: String,
    pub schema_version: u32,
    pub kek_version: u32,
    pub records: u64,
    /// The current schema, as declared (see `mamori collection create --schema`).
    #[schema(value_type = Object)]
    pub schema: CollectionSchema,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct RotationReport {
    pub collections: u64,
    pub subject_keys_rewrapped: u64,
    /// Values sealed directly under the master key (TOTP secrets, …) re-sealed under the new one.
    pub secrets_resealed: u64,
    pub master_key_rotated: bool,
}

impl Vault {
    /// The collection's keys and schemas, from the cache or loaded (and unwrapped) once.
    ///
    /// The cache is checked against the stored collection row at most every
    /// [`REVALIDATE_EVERY`] (one indexed read): another process — a CLI `keys rotate`, another instance, a schema change — may
    /// have moved the KEK or schema version, and using a stale KEK would wrap new data keys
    /// under a key that no longer exists.
    pub(crate) async fn collection(&self, name: &str) -> Result<Arc<CollectionState>> {
        let cached = self.collections.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
        if let Some(state) = cached {
            if state.checked.elapsed() < REVALIDATE_EVERY {
                return Ok(state);
            }
            let row = self.store.get_collection(name).await?.ok_or(VaultError::NotFound("collection"))?;
            if row == state.row {
                let fresh = Arc::new(CollectionState { checked: std::time::Instant::now(), ..state.shallow_clone() });
                let mut cache = self.collections.write().unwrap_or_else(|e| e.into_inner());
                // Only refresh the entry we checked: a newer state stored meanwhile wins.
                if cache.get(name).is_some_and(|now| Arc::ptr_eq(now, &state)) {
                    cache.insert(name.to_owned(), fresh.clone());
                }
                return Ok(fresh);
            }
        }
        self.reload_collection(name).await
    }

    /// Unwraps every key of every collection: proof that the current master key opens all of
    /// the data (run after a master-key rotation), and opens every master-sealed secret.
    /// Returns the number of collections.
    pub async fn verify_keys(&self) -> Result<u64> {
        let rows = self.store.list_collections().await?;
        for row in &rows {
            self.reload_collection(&row.name).await?;
        }
        for value in self.store.list_master_sealed().await? {
            self.master().open_secret(&value.sealed, &sealed_aad(&value)?)?;
        }
        Ok(rows.len() as u64)
    }

    /// Reloads after a change made elsewhere (another process rotated keys or evolved the
    /// schema) is detected by a missing version.
    pub(crate) async fn reload_collection(&self, name: &str) -> Result<Arc<CollectionState>> {
        match self.load_collection(name).await {
            // Keys that no longer open may mean another process rotated the master key and
            // this one has not heard yet: follow it (or fail closed) and try once more.
            Err(VaultError::Integrity(_)) if self.follow_master_key().await.is_ok() => self.load_collection(name).await,
            other => other,
        }
    }

    async fn load_collection(&self, name: &str) -> Result<Arc<CollectionState>> {
        let checked = std::time::Instant::now();
        let row = self.store.get_collection(name).await?.ok_or(VaultError::NotFound("collection"))?;
        let mut schemas = BTreeMap::new();
        for version in 1..=row.schema_version {
            let json = self
                .store
                .get_schema(row.id, version)
                .await?
                .ok_or_else(|| VaultError::Integrity(format!("schema version {version} missing")))?;
            let schema = CollectionSchema::from_json(&json).map_err(|e| VaultError::Integrity(e.to_string()))?;
            schemas.insert(version, Arc::new(schema));
        }
        let mut keks = HashMap::new();
        for k in self.store.get_keks(row.id).await? {
            let secret = self.master().unwrap_key(&k.wrapped, &kek_aad(&row.name, k.version))?;
            keks.insert(k.version, Kek::from_secret(secret));
        }
        let index_key =
            IndexKey::from_secret(self.master().unwrap_key(&row.wrapped_index_key, &index_key_aad(&row.name))?);
        let indexer = BlindIndexer::new(index_key);
        // Every field that was ever indexed keeps its indexer, so old records stay findable.
        let mut indexers = HashMap::new();
        for schema in schemas.values() {
            for f in schema.fields.iter().filter(|f| f.is_indexed()) {
                indexers.entry(f.name.clone()).or_insert_with(|| indexer.field(&f.name));
            }
        }
        let state =
            Arc::new(CollectionState { row, schemas, keks: Arc::new(keks), indexers: Arc::new(indexers), checked });
        self.collections.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), state.clone());
        Ok(state)
    }

    fn forget_collection(&self, name: &str) {
        self.collections.write().unwrap_or_else(|e| e.into_inner()).remove(name);
    }

    pub(crate) fn forget_collections(&self) {
        self.collections.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub async fn create_collection(&self, p: &Principal, schema: &CollectionSchema) -> Result<CollectionInfo> {
        let name = schema.name.as_str();
        self.authorize(p, Action::CollectionManage, "collection.create", Some(name)).await?;
        schema.validate()?;
        let kek = Kek::generate();
        let index_key = IndexKey::generate();
        let master = self.master();
        let new = NewCollection {
            name: name.to_owned(),
            schema_json: schema.to_json(),
            kek: WrappedKek { version: 1, wrapped: master.wrap(kek.secret(), &kek_aad(name, 1)) },
            wrapped_index_key: master.wrap(index_key.secret(), &index_key_aad(name)),
            created_at: self.clock.now(),
        };
        let mut e = self.event(p, "collection.create", Outcome::Success);
        e.collection = Some(name.to_owned());
        self.apply_sealed(&master, vec![AuditedChange::CreateCollection(Box::new(new))], vec![e]).await?;
        Ok(CollectionInfo {
            name: name.to_owned(),
            schema_version: 1,
            kek_version: 1,
            records: 0,
            schema: schema.clone(),
        })
    }

    /// Makes `schema` the collection's next version; records written under older versions
    /// stay readable under theirs.
    pub async fn update_schema(&self, p: &Principal, schema: &CollectionSchema) -> Result<CollectionInfo> {
        let name = schema.name.as_str();
        self.authorize(p, Action::CollectionManage, "collection.update_schema", Some(name)).await?;
        schema.validate()?;
        let state = self.reload_collection(name).await?;
        state.current().check_evolution(schema)?;
        for old in state.schemas.values() {
            old.check_evolution(schema)?;
        }
        let (collection_id, expected_current) = (state.row.id, state.row.schema_version);
        let mut e = self.event(p, "collection.update_schema", Outcome::Success);
        e.collection = Some(name.to_owned());
        e.reason = Some(format!("schema version {}", expected_current + 1));
        let change = AuditedChange::AddSchemaVersion { collection_id, expected_current, schema_json: schema.to_json() };
        let applied = self.audit.apply(vec![change], vec![e]).await;
        self.forget_collection(name);
        applied?;
        self.collection_info(p, name).await
    }

    pub async fn list_collections(&self, p: &Principal) -> Result<Vec<CollectionInfo>> {
        self.authorize(p, Action::CollectionRead, "collection.list", None).await?;
        let mut out = Vec::new();
        for row in self.store.list_collections().await? {
            out.push(self.info_of(row).await?);
        }
        Ok(out)
    }

    pub async fn collection_info(&self, p: &Principal, name: &str) -> Result<CollectionInfo> {
        self.authorize(p, Action::CollectionRead, "collection.read", Some(name)).await?;
        let row = self.store.get_collection(name).await?.ok_or(VaultError::NotFound("collection"))?;
        self.info_of(row).await
    }

    async fn info_of(&self, row: CollectionRow) -> Result<CollectionInfo> {
        let json = self
            .store
            .get_schema(row.id, row.schema_version)
            .await?
            .ok_or_else(|| VaultError::Integrity("current schema missing".into()))?;
        let schema = CollectionSchema::from_json(&json).map_err(|e| VaultError::Integrity(e.to_string()))?;
        Ok(CollectionInfo {
            records: self.store.count_records(row.id).await?,
            name: row.name,
            schema_version: row.schema_version,
            kek_version: row.kek_version,
            schema,
        })
    }

    /// `mamori keys rotate`: a new KEK for every collection; every subject key is re-wrapped
    /// under it in batches (field ciphertexts are untouched), then the old KEK is destroyed.
    /// Safe to interrupt: run it again and it finishes the work.
    pub async fn rotate_keks(&self, p: &Principal, progress: &(dyn Fn(u64) + Sync)) -> Result<RotationReport> {
        self.authorize(p, Action::KeysRotate, "keys.rotate", None).await?;
        let mut report = RotationReport::default();
        for row in self.store.list_collections().await? {
            let name = row.name.clone();
            // Resume an interrupted rotation instead of starting yet another version.
            let pending = !self.store.subject_keys_below(row.id, row.kek_version, 1).await?.is_empty()
                || self.store.get_keks(row.id).await?.len() > 1;
            if !pending {
                let next = row.kek_version + 1;
                let kek = Kek::generate();
                let master = self.master();
                let wrapped = master.wrap(kek.secret(), &kek_aad(&name, next));
                // Wrapped under the master key: refused once another process rotated it.
                let step = AuditedChange::AddKek { collection_id: row.id, kek: WrappedKek { version: next, wrapped } };
                self.apply_sealed(&master, vec![step], Vec::new()).await?;
            }
            let state = self.reload_collection(&name).await?;
            let current = state.row.kek_version;
            loop {
                let batch = self.store.subject_keys_below(row.id, current, 1000).await?;
                if batch.is_empty() {
                    break;
                }
                let mut rewrapped = Vec::with_capacity(batch.len());
                for old in &batch {
                    let dek = state.unwrap_dek(old)?;
                    let wrapped = state.kek(current)?.wrapper().wrap(dek.secret(), &dek_aad(&name, &old.subject));
                    rewrapped.push((
                        SubjectKeyRow { subject: old.subject.clone(), kek_version: current, wrapped_dek: wrapped },
                        old.kek_version,
                    ));
                }
                report.subject_keys_rewrapped += self.store.rewrap_subject_keys(row.id, &rewrapped).await?;
                progress(report.subject_keys_rewrapped);
            }
            self.store.drop_keks_below(row.id, current).await?;
            self.forget_collection(&name);
            report.collections += 1;
        }
        let mut e = self.event(p, "keys.rotate", Outcome::Success);
        e.rows = Some(report.subject_keys_rewrapped);
        self.audit.record(vec![e]).await?;
        Ok(report)
    }

    /// Re-wraps every collection key under `new_master` and switches the key check, in one
    /// transaction. The caller must have stored `new_master` durably *before* calling this.
    pub async fn rotate_master(&self, p: &Principal, new_master: &MasterKey) -> Result<RotationReport> {
        self.authorize(p, Action::KeysRotate, "keys.rotate_master", None).await?;
        // Read first: the store switches the check only if nobody else did meanwhile.
        let previous_key_check = self.store.get_meta(crate::KEY_CHECK).await?.unwrap_or_default();
        if !self.master().verify_key_check(&previous_key_check) {
            return Err(VaultError::WrongMasterKey);
        }
        let new = new_master.wrapper();
        let mut keks = Vec::new();
        let mut index_keys = Vec::new();
        let rows = self.store.list_collections().await?;
        for row in &rows {
            for k in self.store.get_keks(row.id).await? {
                let aad = kek_aad(&row.name, k.version);
                let secret = self.master().unwrap_key(&k.wrapped, &aad)?;
                keks.push((row.id, WrappedKek { version: k.version, wrapped: new.wrap(&secret, &aad) }));
            }
            let aad = index_key_aad(&row.name);
            let secret = self.master().unwrap_key(&row.wrapped_index_key, &aad)?;
            index_keys.push((row.id, new.wrap(&secret, &aad)));
        }
        // Secrets sealed directly under the master key (TOTP secrets, break-glass reasons,
        // export requests and passwords) move with it, or they would be lost with the old key.
        let mut sealed = Vec::new();
        for value in self.store.list_master_sealed().await? {
            let aad = sealed_aad(&value)?;
            let plain = self.master().open_secret(&value.sealed, &aad)?;
            let resealed = new.seal_secret(&plain, &aad);
            sealed.push((value, resealed));
        }
        let secrets = sealed.len() as u64;
        let key_check = new.key_check();
        let rewrap = MasterRewrap { keks, index_keys, sealed, previous_key_check, key_check: key_check.clone() };
        self.store.rewrap_master(&rewrap).await?;
        self.use_master_key(new_master, key_check);
        let mut e = self.event(p, "keys.rotate_master", Outcome::Success);
        e.rows = Some(rows.len() as u64);
        e.reason = Some(format!("{secrets} sealed secrets re-sealed"));
        self.audit.record(vec![e]).await?;
        Ok(RotationReport {
            collections: rows.len() as u64,
            subject_keys_rewrapped: 0,
            secrets_resealed: secrets,
            master_key_rotated: true,
        })
    }
}

/// The associated data each master-sealed value was sealed with, by where it is kept.
fn sealed_aad(value: &SealedValue) -> Result<Vec<u8>> {
    Ok(match value.kind {
        SealedKind::TotpSecret => crate::auth::totp_aad(
            &value.id.parse().map_err(|_| VaultError::Integrity("a TOTP secret of a malformed user id".into()))?,
        ),
        SealedKind::GrantReason => crate::approvals::grant_aad(&value.id),
        SealedKind::ExportSpec => crate::takeout::requests::spec_aad(&value.id),
        SealedKind::ExportSecret => crate::takeout::requests::secret_aad(&value.id),
        SealedKind::HeldShare => crate::takeout::shares::held_share_aad(&value.id),
    })
}
