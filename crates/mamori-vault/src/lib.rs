//! The vault: every operation of mamori, composed in one fixed order —
//! authenticate → authorize → (validate) → store/crypto → audit — so that no entry point
//! (CLI, HTTP API, web UI) can skip a step.
//!
//! **Architecture invariants**
//! - Plaintext field values exist only in memory, between [`mamori_crypto`] and the caller;
//!   the store receives ciphertexts, wrapped keys and blind-index tokens only.
//! - Every read of record content is recorded in the audit log, and the record is returned
//!   only after its audit event is durable; if the audit log cannot be written, the read
//!   fails (fail closed).
//! - Authorization is checked before existence, so a denied caller learns nothing — not even
//!   whether a record exists.

mod access_review;
mod access_windows;
mod approvals;
mod audit;
mod auth;
mod authz;
mod changes;
mod codec;
mod erase;
mod error;
mod import;
mod keys;
mod login_ticket;
mod menu;
mod migrate;
mod records;
mod roster;
mod sessions;
mod takeout;

pub use access_review::{AccessEntry, CollectionRights, ReviewDecision};
pub use approvals::{GrantInfo, MAX_BREAK_GLASS_MINUTES, PolicyChange, PolicyVersionInfo};
pub use audit::{
    AuditEntry, AuditFilter, AuditHealth, AuditLog, AuditPage, AuditSettings, JsonlSinkSettings, MAX_QUERY_LIMIT,
    MIN_RETENTION_DAYS, ProblemKind, PruneReport, ReviewMark, SiemCursor, SiemHealth, SiemSettings, SyslogSinkSettings,
    UNAUDITED_BENCHMARK, VerifyProblem, VerifyProgress, VerifyReport, audit_head_seq, finish_audit_writers,
    parse_checkpoint_file, siem_cursor, stored_audit_key, verify_chain, verify_store,
};
pub use auth::{AuthPolicy, LoginOutcome, NewUser, ProfileChange, TotpEnrolment, UserSummary};
pub use authz::{AuthzSettings, BUILTIN_PROPOSER};
pub use changes::MasterKeySource;
pub use erase::ErasureCertificate;
pub use error::{Result, RowError, VaultError};
pub use import::{CsvSource, ImportProgress, ImportReport, MemorySource, ProgressFn};
pub use keys::CollectionInfo;
pub use keys::RotationReport;
pub use login_ticket::{LoginStep, LoginTicket, TICKET_LIFETIME};
pub use menu::Capabilities;
pub use migrate::check_master_key;
pub use records::{RecordView, TakeOut, View};
pub use roster::{
    Employment, FieldChange, HrRecord, MAX_ROSTER_ROWS, SyncChange, SyncPlan, SyncReport, parse_hr_roster,
};
pub use sessions::SessionInfo;
pub use takeout::{
    ExportFile, ExportFilter, ExportFormat, ExportInfo, ExportRequest, LedgerEntry, OutFile, Protection, Settlement,
    ShareForMe, ShareInfo, TakeoutAlert, TakeoutSettings,
};

use mamori_core::access::{Action, Role};
use mamori_core::audit::{AuditEvent, Outcome};
use mamori_core::clock::Clock;
use mamori_core::ids::UserId;
use mamori_core::schema::Tier;
use mamori_crypto::{MasterKey, PasswordHasher};
use mamori_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use time::Duration;

/// Meta key of the value that proves the master key matches the data.
const KEY_CHECK: &str = "key_check";
/// Meta key of the audit checkpoint public key (SubjectPublicKeyInfo DER), so that the log
/// can be verified with nothing but the database.
pub const AUDIT_PUBLIC_KEY: &str = "audit_public_key";

#[derive(Clone, Debug)]
pub struct VaultConfig {
    /// A session unused for this long ends (004-V-1-42, 001-20-phys-2-2: idle lock).
    pub session_idle: Duration,
    /// A session ends this long after login, used or not.
    pub session_lifetime: Duration,
    /// Most records a single search returns.
    pub search_limit: usize,
    pub auth: auth::AuthPolicy,
    /// Signed checkpoints of the audit trail.
    pub audit: AuditSettings,
    pub authz: AuthzSettings,
    /// Exports: download limits and bulk thresholds.
    pub takeout: TakeoutSettings,
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            session_idle: Duration::minutes(15),
            session_lifetime: Duration::hours(8),
            search_limit: 100,
            auth: auth::AuthPolicy::default(),
            audit: AuditSettings::default(),
            authz: AuthzSettings::default(),
            takeout: TakeoutSettings::default(),
        }
    }
}

/// Who is acting, as established by authentication.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: Option<UserId>,
    pub login: String,
    pub role: Role,
    /// Non-secret reference to the session (prefix of its token hash), for the audit log.
    pub session_ref: Option<String>,
    pub source: Option<String>,
    /// A first-login or reset session that may do nothing but change its password.
    pub password_change_only: bool,
    /// Attributes that policies decide on (see `mamori-policy`).
    pub department: Option<String>,
    pub clearance: Tier,
    pub training_valid: bool,
    pub pledge_signed: bool,
    pub vendor: bool,
    /// The session was authenticated with a second factor.
    pub mfa: bool,
    /// When the session authenticated; `None` for the local operator (authenticated by
    /// the key file for this one command).
    pub authenticated_at: Option<time::OffsetDateTime>,
}

impl Principal {
    /// The local operator running an administrative CLI command with access to the master key
    /// file. Acts as a system administrator: it manages collections and keys but has no read
    /// path to record content (that needs a user login).
    pub fn operator(os_user: &str) -> Self {
        Self {
            user_id: None,
            login: format!("cli:{os_user}"),
            role: Role::SystemAdmin,
            session_ref: None,
            source: Some("local".into()),
            password_change_only: false,
            department: None,
            clearance: Tier::Public,
            training_valid: false,
            pledge_signed: false,
            vendor: false,
            // Holding the master key file is the operator's strong factor, proven now.
            mfa: true,
            authenticated_at: None,
        }
    }

    pub fn actor(&self) -> String {
        match &self.user_id {
            Some(id) => format!("user:{id}"),
            None => self.login.clone(),
        }
    }
}

pub struct Vault {
    store: Arc<dyn Store>,
    master: changes::MasterKeys,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    hasher: Arc<PasswordHasher>,
    /// Argon2id runs on the blocking pool, a few at a time, so a burst of logins can neither
    /// stall the async workers nor exhaust memory (19 MiB per hash).
    hash_permits: tokio::sync::Semaphore,
    config: VaultConfig,
    collections: RwLock<HashMap<String, Arc<keys::CollectionState>>>,
    policies: authz::PolicyCache,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("store", &self.store).finish_non_exhaustive()
    }
}

impl Vault {
    /// Opens the vault on a store. A store that has never seen a master key adopts this one;
    /// otherwise the key must match, or [`VaultError::WrongMasterKey`] is returned before
    /// anything else happens.
    pub async fn open(
        store: Arc<dyn Store>,
        master: &MasterKey,
        clock: Arc<dyn Clock>,
        config: VaultConfig,
    ) -> Result<Arc<Self>> {
        let wrapper = master.wrapper();
        let key_check = match store.get_meta(KEY_CHECK).await? {
            Some(check) if wrapper.verify_key_check(&check) => check,
            Some(_) => return Err(VaultError::WrongMasterKey),
            None => {
                if !store.list_collections().await?.is_empty() {
                    return Err(VaultError::Integrity("the data has collections but no key check".into()));
                }
                let check = wrapper.key_check();
                store.put_meta(KEY_CHECK, &check).await?;
                check
            }
        };
        if let Some(key) = &config.audit.signing_key {
            let public = key.verifying_key().to_der();
            match store.get_meta(AUDIT_PUBLIC_KEY).await? {
                Some(stored) if stored == public => {}
                Some(_) => {
                    return Err(VaultError::Integrity(
                        "the audit signing key does not match the public key stored with the data".into(),
                    ));
                }
                None => store.put_meta(AUDIT_PUBLIC_KEY, &public).await?,
            }
        }
        let policies = authz::PolicyCache::new(authz::load_active(&*store, clock.now()).await?);
        let audit = AuditLog::start_with(store.clone(), clock.clone(), &config.audit);
        let vault = Arc::new(Self {
            store,
            master: changes::MasterKeys::new(master, key_check),
            clock,
            audit,
            hasher: Arc::new(PasswordHasher::new()),
            hash_permits: tokio::sync::Semaphore::new(4),
            config,
            collections: RwLock::new(HashMap::new()),
            policies,
        });
        changes::watch(&vault);
        Ok(vault)
    }

    /// The vault's clock reading (the time every decision and event uses).
    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    /// The settings this vault was opened with (session timeouts, time zone, …).
    pub fn config(&self) -> &VaultConfig {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn event(&self, p: &Principal, action: &str, outcome: Outcome) -> AuditEvent {
        let mut e = AuditEvent::new(self.clock.now(), p.actor(), action, outcome);
        e.session = p.session_ref.clone();
        e.source = p.source.clone();
        e
    }

    /// Checks that `p` may read the audit trail, recording the attempt.
    pub async fn authorize_audit_read(&self, p: &Principal) -> Result<()> {
        self.authorize(p, Action::AuditRead, "audit.verify", None).await?;
        self.audit.record(vec![self.event(p, "audit.verify", Outcome::Success)]).await?;
        Ok(())
    }

    /// Verifies the whole audit trail: the chain, the stored checkpoints and, when one is
    /// configured, the external checkpoint file. The result holds no personal data, so the
    /// local operator may run it (`mamori audit verify`); API callers pass
    /// [`Vault::authorize_audit_read`] first.
    pub async fn verify_audit(&self) -> Result<VerifyReport> {
        self.verify_audit_with(None).await
    }

    /// Like [`Vault::verify_audit`], with the checkpoint file at `checkpoint_file` instead of
    /// the configured one (a copy fetched from the log host, say). Only the CLI passes a
    /// path: the API never lets a caller name a file.
    pub async fn verify_audit_with(&self, checkpoint_file: Option<&std::path::Path>) -> Result<VerifyReport> {
        let trusted = self.config.audit.signing_key.as_ref().map(|k| k.verifying_key());
        let configured = self.config.audit.checkpoint_file.as_deref();
        verify_store(&self.store, trusted.as_ref(), configured, checkpoint_file, &Arc::default()).await
    }

    /// The audit checkpoint public key stored with the data.
    pub async fn audit_public_key(&self) -> Result<Option<mamori_crypto::AuditVerifyingKey>> {
        stored_audit_key(&*self.store).await
    }

    /// Records `audit.checkpoint` by `p` and signs a checkpoint that covers it at once
    /// (`mamori audit checkpoint`, e.g. before a backup). `None` without a signing key.
    pub async fn checkpoint_audit(&self, p: &Principal) -> Result<Option<mamori_core::audit::SignedCheckpoint>> {
        self.audit.record(vec![self.event(p, "audit.checkpoint", Outcome::Success)]).await?;
        self.audit.checkpoint().await
    }

    /// Signs what this process has appended and is not yet covered (at shutdown).
    pub async fn flush_audit_checkpoint(&self) -> Result<Option<mamori_core::audit::SignedCheckpoint>> {
        self.audit.checkpoint().await
    }

    /// The audit pipeline's own state: checkpoints, the external file, append failures.
    pub fn audit_health(&self) -> AuditHealth {
        self.audit.health()
    }
}
