//! The storage interface of mamori.
//!
//! **Architecture invariant:** nothing that crosses this interface is a plaintext personal
//! value. Field values arrive already encrypted, searchable values arrive as blind-index
//! tokens, keys arrive wrapped. A backend is a dumb, transactional keeper of bytes; all
//! meaning (and all keys) stay above it.
//!
//! Two backends implement [`Store`]: `mamori-store-sqlite` (embedded default) and
//! `mamori-store-postgres`; both run the same [`conformance`] suite.

mod copy;
mod error;
mod rows;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use copy::{CopyProgress, CopySession, TABLES, Table, TableCount, Value, copy_store};
pub use error::{Result, StoreError};
pub use rows::*;

/// One step of a change that [`Store::apply_audited`] commits together with its audit events.
/// Each step does what the [`Store`] method of the same name does.
#[derive(Clone, PartialEq, Eq)]
pub enum AuditedChange {
    InsertRecord(RecordRow),
    UpdateRecord(RecordRow),
    /// `NotFound` when the record is not there.
    DeleteRecord {
        collection_id: i64,
        id: RecordId,
    },
    CreateUser(Box<UserRow>),
    UpdateUserProfile {
        id: UserId,
        profile: UserProfile,
    },
    SetUserDisabled {
        id: UserId,
        disabled: bool,
    },
    EnableUser {
        id: UserId,
        at: OffsetDateTime,
    },
    MarkUserReviewed {
        id: UserId,
        by: String,
        at: OffsetDateTime,
    },
    UnlockUser {
        id: UserId,
    },
    SetPassword {
        id: UserId,
        password_hash: String,
        must_change: bool,
        at: OffsetDateTime,
    },
    /// [`Store::set_totp`], then the last accepted step set to `accepted_step` (the code that
    /// confirmed an enrolment is not accepted again).
    SetTotp {
        id: UserId,
        wrapped_secret: Option<Vec<u8>>,
        recovery_hashes: Vec<[u8; 32]>,
        accepted_step: Option<u64>,
    },
    /// Every session of the account; none is not an error.
    DeleteUserSessions {
        id: UserId,
    },
    /// A policy version under the number `row.version` (chosen by the caller, so that its
    /// event can name it); `Conflict` when that number is taken.
    AddPolicyVersion(Box<PolicyVersionRow>),
    /// [`Store::decide_policy_version`]; `Conflict` where that method answers false.
    DecidePolicyVersion {
        version: u64,
        approve: bool,
        by: String,
        at: OffsetDateTime,
    },
    CreateGrant(Box<GrantRow>),
    /// [`Store::decide_grant`]; `Conflict` where that method answers false.
    DecideGrant {
        id: String,
        change: GrantChange,
    },
    /// `Conflict` when the name is taken.
    CreateCollection(Box<NewCollection>),
    /// [`Store::add_kek`].
    AddKek {
        collection_id: i64,
        kek: WrappedKek,
    },
    /// Schema version `expected_current + 1`, as [`Store::add_schema_version`].
    AddSchemaVersion {
        collection_id: i64,
        expected_current: u32,
        schema_json: String,
    },
    /// [`Store::create_export`]: the request and its ledger line.
    CreateExport {
        export: Box<ExportRow>,
        entry: Box<LedgerRow>,
    },
    /// [`Store::change_export`]; `Conflict` where that method answers false.
    ChangeExport {
        id: String,
        change: Box<ExportChange>,
        entry: Box<LedgerRow>,
    },
    AddLedger(Box<LedgerRow>),
    /// [`Store::hold_export_shares`].
    HoldExportShares {
        shares: Vec<HeldShare>,
        entries: Vec<LedgerRow>,
    },
    /// [`Store::take_export_download`], only while exactly `used_before` downloads were
    /// used; `Conflict` when no download was taken.
    TakeExportDownload {
        id: String,
        entry: Box<LedgerRow>,
        used_before: u32,
    },
    /// A precondition, no change: `Conflict` unless the installation fact `key` holds
    /// `value`. Placed after steps that store values sealed under a key whose check is kept
    /// there, it refuses them once the key was rotated meanwhile (PostgreSQL: the fact is
    /// read `FOR SHARE` after the steps, which wait for a rotation's table locks).
    MetaIs {
        key: String,
        value: Vec<u8>,
    },
    /// [`Store::erase_subject`]; `Conflict`, and nothing is erased, unless exactly the
    /// `expected` keys and records are deleted (so that the event can count them).
    EraseSubject {
        subject: String,
        certificate: Box<ErasureCertificateRow>,
        expected: ErasureCounts,
    },
}

/// Names the step and its ids only: a user row holds a name and a password hash.
impl std::fmt::Debug for AuditedChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use AuditedChange::*;
        match self {
            InsertRecord(r) | UpdateRecord(r) => {
                let kind = if matches!(self, InsertRecord(_)) { "InsertRecord" } else { "UpdateRecord" };
                f.debug_struct(kind).field("collection_id", &r.collection_id).field("id", &r.id).finish()
            }
            DeleteRecord { collection_id, id } => {
                f.debug_struct("DeleteRecord").field("collection_id", collection_id).field("id", id).finish()
            }
            CreateUser(u) => f.debug_struct("CreateUser").field("id", &u.id).finish(),
            UpdateUserProfile { id, .. } => f.debug_struct("UpdateUserProfile").field("id", id).finish(),
            SetUserDisabled { id, disabled } => {
                f.debug_struct("SetUserDisabled").field("id", id).field("disabled", disabled).finish()
            }
            EnableUser { id, .. } => f.debug_struct("EnableUser").field("id", id).finish(),
            MarkUserReviewed { id, .. } => f.debug_struct("MarkUserReviewed").field("id", id).finish(),
            UnlockUser { id } => f.debug_struct("UnlockUser").field("id", id).finish(),
            SetPassword { id, .. } => f.debug_struct("SetPassword").field("id", id).finish(),
            SetTotp { id, .. } => f.debug_struct("SetTotp").field("id", id).finish(),
            DeleteUserSessions { id } => f.debug_struct("DeleteUserSessions").field("id", id).finish(),
            AddPolicyVersion(row) => f.debug_struct("AddPolicyVersion").field("version", &row.version).finish(),
            DecidePolicyVersion { version, approve, .. } => {
                f.debug_struct("DecidePolicyVersion").field("version", version).field("approve", approve).finish()
            }
            CreateGrant(g) => f.debug_struct("CreateGrant").field("id", &g.id).finish(),
            CreateCollection(new) => f.debug_struct("CreateCollection").field("name", &new.name).finish(),
            AddKek { collection_id, kek } => {
                f.debug_struct("AddKek").field("collection_id", collection_id).field("version", &kek.version).finish()
            }
            AddSchemaVersion { collection_id, expected_current, .. } => f
                .debug_struct("AddSchemaVersion")
                .field("collection_id", collection_id)
                .field("expected_current", expected_current)
                .finish(),
            CreateExport { export, .. } => f.debug_struct("CreateExport").field("id", &export.id).finish(),
            ChangeExport { id, change, .. } => {
                f.debug_struct("ChangeExport").field("id", id).field("to", &change.to.as_str()).finish()
            }
            AddLedger(entry) => f.debug_struct("AddLedger").field("kind", &entry.kind).finish(),
            HoldExportShares { shares, .. } => {
                f.debug_struct("HoldExportShares").field("shares", &shares.len()).finish()
            }
            MetaIs { key, .. } => f.debug_struct("MetaIs").field("key", key).finish(),
            EraseSubject { certificate, .. } => {
                f.debug_struct("EraseSubject").field("certificate", &certificate.id).finish()
            }
            TakeExportDownload { id, used_before, .. } => {
                f.debug_struct("TakeExportDownload").field("id", id).field("used_before", used_before).finish()
            }
            DecideGrant { id, change } => {
                f.debug_struct("DecideGrant").field("id", id).field("to", &change.to.as_str()).finish()
            }
        }
    }
}

/// Answer of [`Store::audit_column_source`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditColumnSource {
    /// The application writes them beside the event (PostgreSQL).
    Application,
    /// The database generates them from the event, as mamori's migration defines them.
    Generated,
    /// The table's definition is not the one mamori's migrations made (an index, a trigger or
    /// a column definition was added or changed outside mamori): verification compares every
    /// event's columns and warns.
    Altered,
}

/// What [`Store::scan_audit`] calls with each event: on the backend's reading thread, so it
/// must not block.
pub type AuditVisitor = Box<dyn for<'a> FnMut(AuditRowRef<'a>) + Send>;

use async_trait::async_trait;
use mamori_core::audit::AuditEvent;
use mamori_core::ids::{RecordId, UserId};
use time::OffsetDateTime;

/// The storage interface. Every method is one transaction: it happens entirely or not at all.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `postgres`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Cheap liveness check of the database connection, for `/readyz`.
    async fn ping(&self) -> Result<()>;

    /// Changes made through this database by any process (this one included), pushed as
    /// they commit, so that caches above the store follow them at once. `None` when the
    /// backend cannot push (SQLite): callers then poll. A receiver that lags behind gets
    /// `Lagged` and should treat it as [`Change::Everything`].
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }

    // --- installation facts -------------------------------------------------------------
    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Inserts or replaces.
    async fn put_meta(&self, key: &str, value: &[u8]) -> Result<()>;

    // --- collections and keys -----------------------------------------------------------
    /// Creates the collection with schema version 1 and KEK version 1.
    /// `StoreError::Conflict` when the name is taken.
    async fn create_collection(&self, new: &NewCollection) -> Result<CollectionRow>;
    async fn list_collections(&self) -> Result<Vec<CollectionRow>>;
    async fn get_collection(&self, name: &str) -> Result<Option<CollectionRow>>;
    /// Adds schema version `expected_current + 1` and makes it current; `Conflict` when the
    /// current version is no longer `expected_current` (someone else changed it).
    async fn add_schema_version(&self, collection_id: i64, expected_current: u32, schema_json: &str) -> Result<u32>;
    async fn get_schema(&self, collection_id: i64, version: u32) -> Result<Option<String>>;
    /// All KEK versions of a collection, wrapped under the master key, oldest first.
    async fn get_keks(&self, collection_id: i64) -> Result<Vec<WrappedKek>>;
    /// Adds a KEK version and makes it current for new subject keys.
    async fn add_kek(&self, collection_id: i64, kek: &WrappedKek) -> Result<()>;
    /// Deletes KEK versions below `version` once no subject key refers to them.
    /// `Conflict` if one still does.
    async fn drop_keks_below(&self, collection_id: i64, version: u32) -> Result<u64>;
    /// Every value sealed directly under the master key (see [`SealedKind`]).
    async fn list_master_sealed(&self) -> Result<Vec<SealedValue>>;
    /// Replaces everything under the master key (KEKs, index keys, sealed values) and the key
    /// check in one transaction: the master-key rotation. `Conflict`, and nothing changes,
    /// unless the lists cover exactly every KEK, collection and sealed value that exist at
    /// commit time, each sealed value still as it was read.
    async fn rewrap_master(&self, rewrap: &MasterRewrap) -> Result<()>;

    // --- subject keys --------------------------------------------------------------------
    async fn get_subject_keys(&self, collection_id: i64, subjects: &[&str]) -> Result<Vec<SubjectKeyRow>>;
    /// Stores `key` unless the subject already has one; returns the one that is stored, so
    /// that two writers creating the same subject at once end up using the same key.
    async fn ensure_subject_key(&self, collection_id: i64, key: &SubjectKeyRow) -> Result<SubjectKeyRow>;
    /// Subject keys still wrapped under a KEK older than `version`, at most `limit`.
    async fn subject_keys_below(&self, collection_id: i64, version: u32, limit: usize) -> Result<Vec<SubjectKeyRow>>;
    /// Replaces wrapped keys, each only if it is still at the `old_kek_version` given
    /// (compare-and-set, so a concurrent erase is not undone). Returns how many changed.
    async fn rewrap_subject_keys(&self, collection_id: i64, rewrapped: &[(SubjectKeyRow, u32)]) -> Result<u64>;

    // --- records -------------------------------------------------------------------------
    /// `Conflict` when a unique token is already taken, or when the record's subject has no
    /// data key in the collection (it was erased meanwhile): a record must never outlive its
    /// subject's erasure.
    async fn insert_record(&self, record: &RecordRow) -> Result<()>;
    async fn get_record(&self, collection_id: i64, id: &RecordId) -> Result<Option<RecordRow>>;
    /// A record and its subject's data key: the two reads every decryption needs. Backends
    /// may answer both in one round trip; the default makes two calls.
    async fn get_record_with_key(
        &self,
        collection_id: i64,
        id: &RecordId,
    ) -> Result<Option<(RecordRow, Option<SubjectKeyRow>)>> {
        let Some(record) = self.get_record(collection_id, id).await? else { return Ok(None) };
        let key = self.get_subject_keys(collection_id, &[&record.subject]).await?.pop();
        Ok(Some((record, key)))
    }
    /// Several records with their subjects' data keys, in the order of `ids`; ids with no
    /// record are left out. For bulk reads (exports): backends answer a page in one round
    /// trip; the default asks record by record.
    async fn get_records_with_keys(
        &self,
        collection_id: i64,
        ids: &[RecordId],
    ) -> Result<Vec<(RecordRow, Option<SubjectKeyRow>)>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(found) = self.get_record_with_key(collection_id, id).await? {
                out.push(found);
            }
        }
        Ok(out)
    }
    /// Replaces fields and tokens of an existing record. `NotFound` if it is gone.
    async fn update_record(&self, record: &RecordRow) -> Result<()>;
    async fn delete_record(&self, collection_id: i64, id: &RecordId) -> Result<bool>;
    /// Applies the steps of `change` in order and appends `events` to the audit chain, all in
    /// one transaction: a change to personal data or to who may see it is never committed
    /// without its audit events, nor the events without the change (000-8-access-7,
    /// 002-S-11-b, 004-V-1-23). Errors as the steps' own methods (the first failing step
    /// undoes the whole change), except that deleting a record that is not there is
    /// `NotFound`, and a failure to append is [`StoreError::AuditUnavailable`]. Returns the
    /// sequence number of the last event (with no events: the head's).
    async fn apply_audited(&self, change: &[AuditedChange], events: &[AuditEvent]) -> Result<u64>;
    async fn find_by_token(&self, collection_id: i64, token: &[u8], limit: usize) -> Result<Vec<RecordId>>;
    /// Up to `limit` ids of one data subject's records in a collection, in id order.
    async fn find_by_subject(&self, collection_id: i64, subject: &str, limit: usize) -> Result<Vec<RecordId>>;
    /// Which of `tokens` are already taken as unique values in the collection.
    async fn unique_tokens_taken(&self, collection_id: i64, tokens: &[Vec<u8>]) -> Result<Vec<Vec<u8>>>;
    async fn count_records(&self, collection_id: i64) -> Result<u64>;
    /// Starts an all-or-nothing bulk load into one collection.
    async fn begin_import(&self, collection_id: i64) -> Result<Box<dyn ImportSession>>;

    // --- erasure -------------------------------------------------------------------------
    /// Destroys the subject's data keys and deletes its records and index entries in every
    /// collection, and stores the certificate with the counts it computed (overriding the
    /// certificate's `keys_destroyed`/`records_deleted`) — all in one transaction.
    async fn erase_subject(&self, subject: &str, certificate: &ErasureCertificateRow) -> Result<ErasureCounts>;
    async fn list_erasure_certificates(&self) -> Result<Vec<ErasureCertificateRow>>;

    // --- accounts and sessions -------------------------------------------------------------
    /// `Conflict` when the login is taken.
    async fn create_user(&self, user: &UserRow) -> Result<()>;
    async fn get_user(&self, id: &UserId) -> Result<Option<UserRow>>;
    async fn get_user_by_login(&self, login: &str) -> Result<Option<UserRow>>;
    async fn list_users(&self) -> Result<Vec<UserRow>>;
    /// Replaces the password hash, keeps the old one in the password history and stamps
    /// `password_changed_at`. `NotFound` if the account does not exist.
    async fn set_password(&self, id: &UserId, password_hash: &str, must_change: bool, at: OffsetDateTime)
    -> Result<()>;
    /// The most recent earlier password hashes, newest first (the current one excluded).
    async fn password_history(&self, id: &UserId, limit: usize) -> Result<Vec<String>>;
    async fn set_user_disabled(&self, id: &UserId, disabled: bool) -> Result<()>;
    /// Enables the account; if it was disabled, records `at` as when it was enabled
    /// (`enabled_at`). Enabling an enabled account changes nothing: repeating it must not keep
    /// an unused account from going dormant.
    async fn enable_user(&self, id: &UserId, at: OffsetDateTime) -> Result<()>;
    async fn update_user_profile(&self, id: &UserId, profile: &UserProfile) -> Result<()>;
    /// Records an access review of the account (`NotFound` for an unknown account).
    async fn mark_user_reviewed(&self, id: &UserId, by: &str, at: OffsetDateTime) -> Result<()>;
    /// Counts a failed login at `at` atomically (several instances may count at once); from
    /// the `lock_after`-th consecutive failure the account is locked until `lock_until`. A
    /// failure during a lock leaves the lock as it is; the first failure after a lock expired
    /// starts counting again from one. Returns the new count and the lock.
    async fn record_login_failure(
        &self,
        id: &UserId,
        at: OffsetDateTime,
        lock_after: u32,
        lock_until: OffsetDateTime,
    ) -> Result<(u32, Option<OffsetDateTime>)>;
    /// Resets the failure count and lock, and stamps `last_login_at`.
    /// Records a login at `at` and resets the failure counter — only if the account is, as
    /// stored now, enabled and not locked at `at`; false otherwise (also for an unknown id),
    /// and nothing changes. The caller read the account before its slow password check, and
    /// concurrent failures may have locked it since: their lock must hold (001-20-tech-1-5).
    async fn record_login_success(&self, id: &UserId, at: OffsetDateTime) -> Result<bool>;
    async fn unlock_user(&self, id: &UserId) -> Result<()>;
    /// Sets (or with `None` removes) the wrapped TOTP secret and replaces the recovery codes'
    /// hashes; the last accepted step is reset.
    async fn set_totp(&self, id: &UserId, wrapped_secret: Option<&[u8]>, recovery_hashes: &[[u8; 32]]) -> Result<()>;
    /// Records `step` as the last accepted TOTP step if it is later than the stored one;
    /// false if it is not (the code was already used, perhaps on another instance).
    async fn advance_totp_step(&self, id: &UserId, step: u64) -> Result<bool>;
    /// Hashes of the recovery codes not used yet.
    async fn recovery_code_hashes(&self, id: &UserId) -> Result<Vec<[u8; 32]>>;
    /// Uses up a recovery code; false if it was not there (already used).
    async fn use_recovery_code(&self, id: &UserId, hash: &[u8; 32]) -> Result<bool>;
    /// The user's sessions, oldest first.
    async fn list_user_sessions(&self, id: &UserId) -> Result<Vec<SessionRow>>;
    async fn create_session(&self, session: &SessionRow) -> Result<()>;
    async fn get_session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRow>>;
    /// A session and its account: what authenticating every request needs. Backends may
    /// answer both in one round trip; the default makes two calls.
    async fn get_session_with_user(&self, token_hash: &[u8; 32]) -> Result<Option<(SessionRow, UserRow)>> {
        let Some(session) = self.get_session(token_hash).await? else { return Ok(None) };
        Ok(self.get_user(&session.user_id).await?.map(|user| (session, user)))
    }
    async fn touch_session(&self, token_hash: &[u8; 32], at: time::OffsetDateTime) -> Result<()>;
    async fn delete_session(&self, token_hash: &[u8; 32]) -> Result<()>;
    async fn delete_user_sessions(&self, user: &UserId) -> Result<u64>;

    // --- audit ---------------------------------------------------------------------------------
    /// Appends events to the hash chain in one transaction (one fsync for the whole batch)
    /// and returns the sequence number of the last one. Sequence numbers are gap-free.
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<u64>;
    /// Events with `seq >= from`, in order, at most `limit`.
    async fn read_audit(&self, from: u64, limit: usize) -> Result<Vec<AuditRow>>;
    /// The same events as [`Store::read_audit`], packed into one buffer: what verification
    /// reads, every event of the log. Backends may fill it without an allocation per column;
    /// the default packs `read_audit`'s rows. Without `columns`, a backend may leave out the
    /// indexed columns (reading them costs as much as the rest of the row): verification asks
    /// for them only where the database does not derive them from the event itself.
    async fn read_audit_page(&self, from: u64, limit: usize, columns: bool) -> Result<AuditRowPage> {
        let _ = columns;
        let rows = self.read_audit(from, limit).await?;
        let text = rows.iter().map(|r| r.event_json.len() + 64).sum();
        let mut page = AuditRowPage::with_capacity(rows.len(), text);
        for row in &rows {
            page.push(&row.as_ref())?;
        }
        Ok(page)
    }
    /// Hands each event from `from` on (in order, at most `limit`) to `visit`, borrowed from
    /// the backend's own buffers where it can: verification's fast path checks every event of
    /// the log where it is read, instead of copying it into a page first. `columns` as for
    /// [`Store::read_audit_page`], which the default reads.
    async fn scan_audit(&self, from: u64, limit: usize, columns: bool, mut visit: AuditVisitor) -> Result<()> {
        for row in self.read_audit_page(from, limit, columns).await?.iter() {
            visit(row);
        }
        Ok(())
    }
    /// Where the indexed columns of audit events come from, as checked now against the live
    /// table definition. Where the database generates them from the event (and so they
    /// cannot disagree with the hashed bytes), verification hashes events without parsing
    /// them; otherwise every event's columns are compared with the event.
    async fn audit_column_source(&self) -> Result<AuditColumnSource> {
        Ok(AuditColumnSource::Application)
    }
    /// Events matching a query (SQL filtering on the indexed columns), in order.
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRow>>;
    /// Stores a signed checkpoint or anchor. A second one of the same kind at the same `seq`
    /// (another instance got there first) is ignored.
    async fn add_audit_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<()>;
    /// Checkpoints and anchors with `seq >= from`, by `seq` (checkpoint before anchor at the
    /// same `seq`), at most `limit`.
    async fn read_audit_checkpoints(&self, from: u64, limit: usize) -> Result<Vec<CheckpointRow>>;
    /// The checkpoint (not anchor) with the highest `seq`.
    async fn last_audit_checkpoint(&self) -> Result<Option<CheckpointRow>>;
    /// Deletes the events up to `anchor.seq` and every checkpoint or anchor below it, and
    /// stores the anchor, in one transaction. `Conflict`, and nothing changes, unless the
    /// event at `anchor.seq` exists with hash `anchor.head_hash` and a later event exists (the
    /// chain's head is never pruned, so appends always find their predecessor). Returns the
    /// number of events deleted.
    async fn prune_audit(&self, anchor: &CheckpointRow) -> Result<u64>;

    // --- authorization -------------------------------------------------------------------------
    /// Stores a proposed (or, for the very first, approved) policy version under the next
    /// version number, which it returns. `Conflict` when another writer took that number.
    async fn add_policy_version(&self, row: &PolicyVersionRow) -> Result<u64>;
    /// Every version, oldest first.
    async fn list_policy_versions(&self) -> Result<Vec<PolicyVersionRow>>;
    async fn get_policy_version(&self, version: u64) -> Result<Option<PolicyVersionRow>>;
    /// The highest approved version: the policies in force.
    async fn active_policy_version(&self) -> Result<Option<PolicyVersionRow>>;
    /// Approves or rejects a pending version. An approval succeeds only while the version
    /// it was proposed against is still the active one. `false` when nothing changed.
    async fn decide_policy_version(&self, version: u64, approve: bool, by: &str, at: OffsetDateTime) -> Result<bool>;

    async fn create_grant(&self, grant: &GrantRow) -> Result<()>;
    async fn get_grant(&self, id: &str) -> Result<Option<GrantRow>>;
    /// Every grant, newest first.
    async fn list_grants(&self) -> Result<Vec<GrantRow>>;
    /// Moves a grant from `change.from` to `change.to` (approve, reject, revoke), recording
    /// who and when; `expires_at` is set on approval. `false` when the grant was not in
    /// state `from`.
    async fn decide_grant(&self, id: &str, change: &GrantChange) -> Result<bool>;
    /// Approved grants of `user` on `collection` that have not expired at `now`.
    async fn active_grants(&self, user: &UserId, collection: &str, now: OffsetDateTime) -> Result<Vec<GrantRow>>;

    // --- take-out (exports) ----------------------------------------------------------------------
    /// Stores a new request and its ledger line in one transaction.
    async fn create_export(&self, export: &ExportRow, entry: &LedgerRow) -> Result<()>;
    async fn get_export(&self, id: &str) -> Result<Option<ExportRow>>;
    /// Every request, newest first.
    async fn list_exports(&self) -> Result<Vec<ExportRow>>;
    /// Moves a request from `change.from` to `change.to` and adds the ledger line, in one
    /// transaction. Leaving `Pending` records the decider; `download_until` and `secret` are
    /// set when given. `false`, and nothing changes, when the request was not in `from`.
    async fn change_export(&self, id: &str, change: &ExportChange, entry: &LedgerRow) -> Result<bool>;
    /// Uses up one download of an approved request whose window is open at `entry.at`, and
    /// adds the ledger line, atomically (two instances cannot both take the last download).
    /// The number of downloads used, or `None` when none is left or the window is closed.
    async fn take_export_download(&self, id: &str, entry: &LedgerRow) -> Result<Option<u32>>;
    /// Adds a ledger line that changes no request (a print, an alert, a share issued).
    async fn add_ledger(&self, entry: &LedgerRow) -> Result<()>;
    /// Stores the shares of a split export for their custodians, with their ledger lines,
    /// in one transaction. `Conflict` when the export already has shares.
    async fn hold_export_shares(&self, shares: &[HeldShare], entries: &[LedgerRow]) -> Result<()>;
    /// Hands `custodian` their held share of `export_id` and forgets it, with the ledger
    /// line, atomically: the sealed bytes are returned once, and a second call (from any
    /// instance) gets `None` — as does a call once the export is no longer approved or its
    /// download window has closed at `entry.at`.
    async fn take_export_share(
        &self,
        export_id: &str,
        custodian: &UserId,
        entry: &LedgerRow,
    ) -> Result<Option<HeldShare>>;
    /// Destroys the shares of `export_id` still held (state `Discarded`), adding `entry`
    /// when there were any. The number destroyed.
    async fn discard_export_shares(&self, export_id: &str, entry: &LedgerRow) -> Result<u64>;
    /// Shares of one export, or held for one custodian, without their bytes; by export and
    /// index.
    async fn list_export_shares(&self, export_id: Option<&str>, custodian: Option<&UserId>) -> Result<Vec<HeldShare>>;
    /// Ledger lines, oldest first: of one request or all, from `since` on or all.
    async fn list_ledger(&self, export_id: Option<&str>, since: Option<OffsetDateTime>) -> Result<Vec<LedgerRow>>;
    /// Rows taken out (downloads, prints and copies) counted towards `user` since `since`.
    async fn takeout_rows_since(&self, user: &UserId, since: OffsetDateTime) -> Result<u64>;
    /// Up to `limit` record ids of a collection after `after`, in id order: paging through a
    /// whole collection for an export.
    async fn page_record_ids(
        &self,
        collection_id: i64,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<RecordId>>;

    // --- whole-store copy (`mamori migrate`, see [`copy_store`]) ------------------------------
    /// Rows of `table`, columns in [`Table::columns`] order, in key order, starting after
    /// the row whose key columns are `after`; at most `limit`.
    async fn read_table(&self, table: &'static Table, after: Option<&[Value]>, limit: usize)
    -> Result<Vec<Vec<Value>>>;
    async fn count_rows(&self, table: &'static Table) -> Result<u64>;
    /// Starts filling this store from another, in one transaction that keeps other writers
    /// out. `Conflict` unless every table of [`TABLES`] is empty.
    async fn begin_copy(&self) -> Result<Box<dyn CopySession>>;
}

/// An open bulk load. Dropping it without `commit` rolls everything back.
#[async_trait]
pub trait ImportSession: Send {
    async fn insert_subject_keys(&mut self, keys: Vec<SubjectKeyRow>) -> Result<()>;
    /// `Conflict` when a unique token is already taken — here, or at [`Self::commit`] for a
    /// backend that writes the blind index last (SQLite stages it and inserts it in key
    /// order). Either way the whole import rolls back.
    async fn insert_records(&mut self, records: Vec<RecordRow>) -> Result<()>;
    /// A subject's key as this import's own transaction sees it (including keys it inserted).
    async fn get_subject_key(&mut self, subject: &str) -> Result<Option<SubjectKeyRow>>;
    /// `Conflict` when a unique token is taken (see [`Self::insert_records`]); nothing is kept.
    async fn commit(self: Box<Self>) -> Result<()>;
    /// [`Self::commit`] with `events` appended to the audit chain in the same transaction,
    /// as [`Store::apply_audited`]: the import is never committed without its events (a
    /// failure to append is [`StoreError::AuditUnavailable`] and keeps nothing). Returns the
    /// sequence number of the last event.
    async fn commit_audited(self: Box<Self>, events: &[AuditEvent]) -> Result<u64>;
}
