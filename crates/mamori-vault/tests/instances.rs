//! Several processes on one database behave as one (issue 8): a policy approved on one
//! instance and a master key rotated by one reach the other — pushed by PostgreSQL
//! LISTEN/NOTIFY (with polling set to an hour, so that nothing else could explain it), and
//! polled on SQLite (a server and a CLI on one file). Measures 002-T-6-d (key management),
//! 004-V-1-23 (administrator operations take effect as recorded).
//!
//! The PostgreSQL run needs `MAMORI_TEST_DATABASE_URL`; without it the test says so loudly.

mod common;

use common::Fixture;
use mamori_core::access::Role;
use mamori_core::clock::SystemClock;
use mamori_crypto::MasterKey;
use mamori_store::Store;
use mamori_vault::{AuthzSettings, NewUser, Vault, VaultConfig, View};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Two handles on one fresh database, and how often the second polls for changes.
async fn two_stores(postgres: bool) -> Option<(tempfile::TempDir, Arc<dyn Store>, Arc<dyn Store>, Duration)> {
    let dir = tempfile::tempdir().unwrap();
    if !postgres {
        let path = dir.path().join("mamori.db");
        let a = mamori_store_sqlite::SqliteStore::open(&path).await.unwrap();
        let b = mamori_store_sqlite::SqliteStore::open(&path).await.unwrap();
        return Some((dir, Arc::new(a), Arc::new(b), Duration::from_millis(200)));
    }
    let Some(url) = std::env::var("MAMORI_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty()) else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: instances on PostgreSQL — set MAMORI_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test to run it"
        );
        return None;
    };
    let schema = format!("mamori_vault_{}", uuid::Uuid::new_v4().simple());
    let connect = || mamori_store_postgres::PostgresStore::connect_with_schema(&url, &schema);
    let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
    Some((dir, Arc::new(a), Arc::new(b), Duration::from_secs(3600)))
}

/// Polls `check` (which may poke the instance) for up to ten seconds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within ten seconds");
}

async fn a_change_on_one_instance_reaches_the_other(postgres: bool) {
    let Some((dir, store_a, store_b, refresh)) = two_stores(postgres).await else { return };
    let config = VaultConfig {
        authz: AuthzSettings { policy_refresh: refresh, ..AuthzSettings::default() },
        ..VaultConfig::default()
    };
    let f = Fixture::build_on(dir, store_a, config.clone(), Arc::new(SystemClock)).await;
    let b = Vault::open(store_b, &f.master, Arc::new(SystemClock), config).await.unwrap();
    // Instance B reads its key file again after a rotation; here the "file" is a string.
    let key_file = Arc::new(Mutex::new(f.master.to_file_text().to_string()));
    let source = key_file.clone();
    b.set_master_key_source(Box::new(move || MasterKey::parse(&source.lock().unwrap()).into_iter().collect()));

    let manager =
        f.user_with(NewUser { department: Some("sales".into()), ..NewUser::new("mgr", "m", Role::Manager) }).await.0;
    let staff =
        f.user_with(NewUser { department: Some("sales".into()), ..NewUser::new("clerk", "c", Role::Staff) }).await.0;
    let (ops1, ops2) = (f.user("ops1", Role::SystemAdmin).await.0, f.user("ops2", Role::SystemAdmin).await.0);
    let record: BTreeMap<String, String> =
        [("name", "試験 太郎"), ("birth_date", "1985-06-15"), ("phone", "090-1111-2222"), ("email", "t@example.jp")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let id = f.vault.create_record(&manager, "customers", None, &record).await.unwrap();
    let search = |v: &Arc<Vault>| {
        let (v, staff) = (v.clone(), staff.clone());
        async move { v.search(&staff, "customers", "phone", "09011112222", View::Masked, None).await }
    };
    assert_eq!(search(&b).await.unwrap().len(), 1, "staff search on B under the built-in policies");

    // A policy change approved on A: staff may no longer search.
    let (_, text) = f.vault.policy_version(&ops1, None).await.unwrap();
    let start = text.find("@id(\"staff.search\")").unwrap();
    let end = start + text[start..].find(";\n").unwrap() + 2;
    let proposed = f
        .vault
        .propose_policy(&ops1, &format!("{}{}", &text[..start], &text[end..]), "staff search off")
        .await
        .unwrap();
    f.vault.decide_policy(&ops2, proposed.version, true).await.unwrap();
    eventually("the approved policy in force on B", async || {
        // On SQLite the next decision polls; on PostgreSQL the notification alone must do it.
        if !postgres {
            let _ = search(&b).await;
        }
        b.policy_version_in_force() == proposed.version
    })
    .await;
    assert!(search(&b).await.is_err(), "B decides with the new policies");

    // The master key rotated on A (and its file replaced): B follows and still reads.
    let new_master = MasterKey::generate();
    *key_file.lock().unwrap() = new_master.to_file_text().to_string();
    f.vault.rotate_master(&f.admin, &new_master).await.unwrap();
    // Past B's collection-cache window, so that B must unwrap the collection keys again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let read = b.get_record(&manager, "customers", &id, View::Full, None).await.unwrap();
    assert_eq!(read.fields["name"], "試験 太郎");
    let written = b.create_record(&manager, "customers", None, &record).await;
    assert!(written.is_err(), "the phone number is unique: {written:?}");
    let mut other = record.clone();
    other.insert("phone".into(), "090-3333-4444".into());
    other.insert("email".into(), "u@example.jp".into());
    let second = b.create_record(&manager, "customers", None, &other).await.unwrap();
    assert_eq!(
        f.vault.get_record(&manager, "customers", &second, View::Full, None).await.unwrap().fields["phone"],
        "090-3333-4444"
    );
    assert!(f.vault.verify_audit().await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_on_one_instance_reaches_the_other_on_sqlite() {
    a_change_on_one_instance_reaches_the_other(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_on_one_instance_reaches_the_other_on_postgres() {
    a_change_on_one_instance_reaches_the_other(true).await;
}

/// An instance whose master key was rotated elsewhere, and which cannot find the new key,
/// refuses to work rather than serve with keys that no longer match the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_new_master_key_an_instance_fails_closed() {
    let Some((dir, store_a, store_b, _)) = two_stores(false).await else { return };
    let config = VaultConfig {
        authz: AuthzSettings { policy_refresh: Duration::from_millis(50), ..AuthzSettings::default() },
        ..VaultConfig::default()
    };
    let f = Fixture::build_on(dir, store_a, config.clone(), Arc::new(SystemClock)).await;
    let b = Vault::open(store_b, &f.master, Arc::new(SystemClock), config).await.unwrap();
    let manager =
        f.user_with(NewUser { department: Some("sales".into()), ..NewUser::new("mgr", "m", Role::Manager) }).await.0;
    f.vault.rotate_master(&f.admin, &MasterKey::generate()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Every request, not only the one that noticed (the poll interval here is 50 ms).
    for _ in 0..3 {
        let err = b.list_collections(&manager).await.unwrap_err();
        assert!(matches!(err, mamori_vault::VaultError::WrongMasterKey), "{err:?}");
    }
}
