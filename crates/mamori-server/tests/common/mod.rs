//! The server fixture shared by the API, web and browser tests: a real `mamori` router
//! served on 127.0.0.1:0 over SQLite in a temporary directory, with users of every role and
//! 50 synthetic people in `customers`.
#![allow(dead_code)]

use mamori_core::access::Role;
use mamori_core::clock::{Clock, ManualClock};
use mamori_core::schema::CollectionSchema;
use mamori_crypto::{MasterKey, SecretString};
use mamori_store::Store;
use mamori_store_sqlite::SqliteStore;
use mamori_vault::{MemorySource, NewUser, Principal, Vault, VaultConfig};
use serde_json::{Value, json};
use std::sync::Arc;

pub const PASSWORD: &str = "Api-Test-Password-1";

/// The synthetic data's seed: `mamori_synth::Generator::new(SEED).nth(i)` is the i-th person.
pub const SEED: u64 = 11;

#[derive(Default)]
pub struct Options {
    /// Roles that must use a second factor (none by default, so that one test can log in
    /// many times; the identity tests cover the rule).
    pub mfa_roles: Vec<Role>,
    /// The idle timeout, when a test needs a short one (the browser's idle warning).
    pub session_idle: Option<time::Duration>,
}

pub struct TestServer {
    pub url: String,
    pub dir: tempfile::TempDir,
    pub vault: Arc<Vault>,
    /// The vault's clock: still unless a test moves it (TOTP steps, timeouts).
    pub clock: Arc<ManualClock>,
    pub runtime: tokio::runtime::Runtime,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let path = dir.path().join("mamori.db");
        let clock = Arc::new(ManualClock::new(mamori_core::clock::SystemClock.now()));
        let vault_clock = clock.clone();
        let (url, vault) = runtime.block_on(async move {
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path).await.unwrap());
            let mut config = VaultConfig::default();
            config.auth.mfa_roles = options.mfa_roles;
            if let Some(idle) = options.session_idle {
                config.session_idle = idle;
            }
            let vault = Vault::open(store, &MasterKey::generate(), vault_clock, config).await.unwrap();
            let op = Principal::operator("test");
            vault
                .create_collection(&op, &CollectionSchema::from_toml(mamori_synth::CUSTOMERS_SCHEMA_TOML).unwrap())
                .await
                .unwrap();
            for (login, role, must_change) in [
                ("staff", Role::Staff, false),
                ("manager", Role::Manager, false),
                ("admin", Role::SystemAdmin, false),
                ("admin2", Role::SystemAdmin, false),
                ("auditor", Role::Auditor, false),
                ("privacy", Role::PrivacyOfficer, false),
                ("newbie", Role::Staff, true),
            ] {
                let new = NewUser {
                    login: login.into(),
                    display_name: login.into(),
                    role,
                    password: Some(SecretString::new(PASSWORD.into())),
                    must_change_password: must_change,
                    training_valid_until: Some(vault.now() + time::Duration::days(365)),
                    pledge_signed: true,
                    ..Default::default()
                };
                vault.create_user(&op, new).await.unwrap();
            }
            let token = vault.login("manager", &SecretString::new(PASSWORD.into()), None).await.unwrap().token;
            let manager = vault.authenticate(&token, None).await.unwrap();
            let mut csv = Vec::new();
            mamori_synth::write_customers_csv(&mut csv, 50, SEED).unwrap();
            vault
                .import_csv(&manager, "customers", Arc::new(MemorySource(csv.into())), Arc::new(|_| {}))
                .await
                .unwrap();
            // Many logins from 127.0.0.1: the throttle has its own tests (transport.rs).
            let login_throttle = mamori_server::throttle::ThrottleConfig { per_minute: 0, ..Default::default() };
            let app = mamori_server::router(
                vault.clone(),
                mamori_server::ServerConfig { max_body_bytes: 64 * 1024, login_throttle, ..Default::default() },
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(mamori_server::serve(listener, app, std::future::pending()));
            (url, vault)
        });
        Self { url, dir, vault, clock, runtime }
    }

    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String, Value) {
        let mut req = ureq::request(method, &format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.set("authorization", &format!("Bearer {t}"));
        }
        let res = match body {
            Some(b) => req.set("content-type", "application/json").send_string(b),
            None => req.call(),
        };
        let res = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        let status = res.status();
        let content_type = res.header("content-type").unwrap_or("").to_owned();
        let text = res.into_string().unwrap();
        (status, content_type, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub fn login(&self, login: &str) -> String {
        let (status, _, body) = self.call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(&json!({"login": login, "password": PASSWORD}).to_string()),
        );
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }
}
