//! Fixture shared by the vault's integration tests: a real SQLite data directory, a real
//! master key, users of every role logged in through the real login path.

#![allow(dead_code)]

use mamori_core::access::Role;
use mamori_core::clock::{Clock, SystemClock};
use mamori_core::schema::CollectionSchema;
use mamori_crypto::{MasterKey, SecretString, SessionToken, TotpSecret};
use mamori_store::Store;
use mamori_store_sqlite::SqliteStore;
use mamori_vault::{MemorySource, NewUser, Principal, Vault, VaultConfig};
use std::sync::Arc;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub master: MasterKey,
    pub vault: Arc<Vault>,
    pub admin: Principal,
}

pub const PASSWORD: &str = "Correct-Horse-42";

impl Fixture {
    pub async fn new() -> Self {
        Self::build(VaultConfig::default(), Arc::new(SystemClock)).await
    }

    /// A fixture with its own configuration (audit signing key, checkpoint file) and clock.
    pub async fn build(config: VaultConfig, clock: Arc<dyn Clock>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("mamori.db")).await.unwrap());
        Self::build_on(dir, store, config, clock).await
    }

    /// A fixture on a store of the caller's (PostgreSQL, a second handle on a shared file).
    pub async fn build_on(
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        config: VaultConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let master = MasterKey::generate();
        let vault = Vault::open(store, &master, clock, config).await.unwrap();
        let fixture = Self { dir, master, vault, admin: Principal::operator("test") };
        let schema = CollectionSchema::from_toml(mamori_synth::CUSTOMERS_SCHEMA_TOML).unwrap();
        fixture.vault.create_collection(&fixture.admin, &schema).await.unwrap();
        fixture
    }

    pub fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("mamori.db")
    }

    /// Makes the audit trail refuse the events of `action` with `outcome` (a trigger on the
    /// raw table, as a full disk would refuse them) until the returned guard is dropped.
    pub fn refuse_audit_events(&self, action: &str, outcome: &str) -> AuditRefusal {
        let db = rusqlite::Connection::open(self.db_path()).unwrap();
        db.execute_batch(&format!(
            "CREATE TRIGGER refuse_events BEFORE INSERT ON audit_events
             WHEN json_extract(NEW.event_json, '$.action') = '{action}'
              AND json_extract(NEW.event_json, '$.outcome') = '{outcome}'
             BEGIN SELECT RAISE(ABORT, 'full'); END;"
        ))
        .unwrap();
        AuditRefusal(db)
    }

    /// Creates a user of `role` and logs in through the real password path.
    pub async fn user(&self, login: &str, role: Role) -> (Principal, SessionToken) {
        self.user_with(NewUser::new(login, format!("{login} (test)"), role)).await
    }

    /// Creates the account `new` describes (with the fixture's password, trained and
    /// pledged unless it says otherwise) and logs in through the real password path.
    pub async fn user_with(&self, new: NewUser) -> (Principal, SessionToken) {
        let login = new.login.clone();
        let login = login.as_str();
        let new = NewUser {
            password: Some(SecretString::new(PASSWORD.into())),
            must_change_password: false,
            // Trained and pledged, as everyone who handles personal data must be.
            training_valid_until: new.training_valid_until.or(Some(self.vault.now() + time::Duration::days(365))),
            pledge_signed: true,
            ..new
        };
        self.vault.create_user(&self.admin, new).await.unwrap();
        let password = SecretString::new(PASSWORD.into());
        let mut out = self.vault.login(login, &password, None).await.unwrap();
        if out.mfa_enrolment_required {
            // Administrators must use a second factor: enrol as a person would, then log in
            // with the code of the next time step (the enrolment used the current one).
            let setup = self.vault.authenticate(&out.token, None).await.unwrap();
            let enrolment = self.vault.begin_totp_enrolment(&setup).await.unwrap();
            let secret = TotpSecret::from_base32(enrolment.secret_base32.expose()).unwrap();
            let now = self.vault.now().unix_timestamp() as u64;
            let code = SecretString::new(secret.current_code(now));
            self.vault.confirm_totp_enrolment(&setup, &enrolment.enrolment, &code).await.unwrap();
            let next = SecretString::new(secret.current_code(now + 30));
            out = self.vault.login_with_code(login, &password, Some(&next), None).await.unwrap();
        }
        let p = self.vault.authenticate(&out.token, None).await.unwrap();
        (p, out.token)
    }

    pub async fn import(&self, p: &Principal, csv: &str) -> mamori_vault::Result<mamori_vault::ImportReport> {
        let source = Arc::new(MemorySource(csv.as_bytes().into()));
        self.vault.import_csv(p, "customers", source, Arc::new(|_| {})).await
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.vault.store()
    }
}

/// See [`Fixture::refuse_audit_events`].
pub struct AuditRefusal(rusqlite::Connection);

impl Drop for AuditRefusal {
    fn drop(&mut self) {
        self.0.execute_batch("DROP TRIGGER refuse_events").unwrap();
    }
}

pub async fn open(dir: &tempfile::TempDir, master: &MasterKey) -> mamori_vault::Result<Arc<Vault>> {
    open_with(dir, master, Arc::new(SystemClock), VaultConfig::default()).await
}

pub async fn open_with(
    dir: &tempfile::TempDir,
    master: &MasterKey,
    clock: Arc<dyn Clock>,
    config: VaultConfig,
) -> mamori_vault::Result<Arc<Vault>> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("mamori.db")).await.unwrap());
    Vault::open(store, master, clock, config).await
}

pub fn people_csv(count: usize, seed: u64) -> String {
    let mut out = Vec::new();
    mamori_synth::write_customers_csv(&mut out, count, seed).unwrap();
    String::from_utf8(out).unwrap()
}
