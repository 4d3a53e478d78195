//! The conformance suite: one set of tests that every backend must pass, so that SQLite and
//! PostgreSQL behave the same. A backend's test file calls [`conformance_tests!`] with an
//! async expression that yields a fresh, empty `Arc<dyn Store>` for each test.

use crate::*;
use mamori_core::audit::{AuditEvent, CheckpointKind, GENESIS_HASH, Outcome, chain_hash};
use mamori_core::ids::{RecordId, UserId};
use std::sync::Arc;
use time::OffsetDateTime;

/// Expands to one `#[tokio::test]` per conformance case.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            meta_round_trip, collections, keys_and_rotation, subject_keys_are_shared,
            records_and_index, unique_values, import_is_all_or_nothing, erase_subject,
            users_and_sessions, account_security_state, audit_chain, concurrent_audit_appends, master_rewrap,
            record_needs_its_subject_key, subject_key_needs_its_kek, master_rewrap_must_cover_every_key,
            master_rewrap_reseals_every_sealed_value,
            audit_query_filters, audit_checkpoints, audit_prune_keeps_the_chain,
            policy_versions_four_eyes, break_glass_grants, exports_and_ledger, held_export_shares,
            record_ids_page_through_a_collection, audited_changes_commit_with_their_events,
            audited_account_changes_are_all_or_nothing, audited_governance_changes_are_all_or_nothing,
            audited_erasure_counts_what_it_erases);
        $crate::conformance_tests!(@pairs $make; copy_store_copies_everything);
    };
    // Cases that need two fresh stores of the backend: a source and a target.
    (@pairs $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (Some(from), Some(to)) = ($make.await, $make.await) else { return };
                $crate::conformance::$case(from, to).await;
            }
        )*
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(store) = $make.await else { return };
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

fn t(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
}

async fn collection(store: &dyn Store, name: &str) -> CollectionRow {
    store
        .create_collection(&NewCollection {
            name: name.into(),
            schema_json: format!("{{\"name\":\"{name}\"}}"),
            kek: WrappedKek { version: 1, wrapped: vec![1; 60] },
            wrapped_index_key: vec![2; 60],
            created_at: t(0),
        })
        .await
        .unwrap()
}

fn key(subject: &str, version: u32, byte: u8) -> SubjectKeyRow {
    SubjectKeyRow { subject: subject.into(), kek_version: version, wrapped_dek: vec![byte; 61] }
}

fn token(n: u8) -> Vec<u8> {
    vec![n; 16]
}

fn record(c: &CollectionRow, subject: &str, tokens: &[(u8, bool)]) -> RecordRow {
    RecordRow {
        id: RecordId::generate(),
        collection_id: c.id,
        subject: subject.into(),
        schema_version: 1,
        fields: vec![9; 40],
        tokens: tokens.iter().map(|(n, unique)| IndexToken { token: token(*n), unique: *unique }).collect(),
        created_at: t(1),
        updated_at: t(1),
        department: Some("sales".into()),
    }
}

pub async fn meta_round_trip(store: Arc<dyn Store>) {
    assert_eq!(store.get_meta("k").await.unwrap(), None);
    store.put_meta("k", b"v1").await.unwrap();
    store.put_meta("k", b"v2").await.unwrap();
    assert_eq!(store.get_meta("k").await.unwrap().as_deref(), Some(&b"v2"[..]));
    store.ping().await.unwrap();
}

pub async fn collections(store: Arc<dyn Store>) {
    let c = collection(&*store, "customers").await;
    assert_eq!((c.schema_version, c.kek_version), (1, 1));
    let dup = store
        .create_collection(&NewCollection {
            name: "customers".into(),
            schema_json: "{}".into(),
            kek: WrappedKek { version: 1, wrapped: vec![] },
            wrapped_index_key: vec![],
            created_at: t(0),
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    collection(&*store, "employees").await;
    let names: Vec<String> = store.list_collections().await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["customers", "employees"]);
    assert_eq!(store.get_collection("customers").await.unwrap().unwrap(), c);
    assert_eq!(store.get_collection("nope").await.unwrap(), None);

    assert_eq!(store.add_schema_version(c.id, 1, "{\"v\":2}").await.unwrap(), 2);
    let stale = store.add_schema_version(c.id, 1, "{\"v\":2}").await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(store.get_schema(c.id, 1).await.unwrap().as_deref(), Some("{\"name\":\"customers\"}"));
    assert_eq!(store.get_schema(c.id, 2).await.unwrap().as_deref(), Some("{\"v\":2}"));
    assert_eq!(store.get_schema(c.id, 3).await.unwrap(), None);
    assert_eq!(store.get_collection("customers").await.unwrap().unwrap().schema_version, 2);
}

pub async fn keys_and_rotation(store: Arc<dyn Store>) {
    let c = collection(&*store, "customers").await;
    store.ensure_subject_key(c.id, &key("S1", 1, 1)).await.unwrap();
    store.ensure_subject_key(c.id, &key("S2", 1, 2)).await.unwrap();
    store.add_kek(c.id, &WrappedKek { version: 2, wrapped: vec![3; 60] }).await.unwrap();
    assert_eq!(store.get_collection("customers").await.unwrap().unwrap().kek_version, 2);
    let versions: Vec<u32> = store.get_keks(c.id).await.unwrap().iter().map(|k| k.version).collect();
    assert_eq!(versions, [1, 2]);
    assert!(matches!(store.drop_keks_below(c.id, 2).await, Err(StoreError::Conflict(_))));

    let old = store.subject_keys_below(c.id, 2, 1).await.unwrap();
    assert_eq!(old.len(), 1);
    let all_old = store.subject_keys_below(c.id, 2, 100).await.unwrap();
    assert_eq!(all_old.len(), 2);
    // Any u32 bound works: `u32::MAX` asks for every key (is the collection keyless?).
    assert_eq!(store.subject_keys_below(c.id, u32::MAX, 100).await.unwrap().len(), 2);
    let rewrapped: Vec<(SubjectKeyRow, u32)> = all_old.iter().map(|k| (key(&k.subject, 2, 7), k.kek_version)).collect();
    assert_eq!(store.rewrap_subject_keys(c.id, &rewrapped).await.unwrap(), 2);
    // Compare-and-set: replaying the same rewrap changes nothing.
    assert_eq!(store.rewrap_subject_keys(c.id, &rewrapped).await.unwrap(), 0);
    assert!(store.subject_keys_below(c.id, 2, 100).await.unwrap().is_empty());
    assert_eq!(store.drop_keks_below(c.id, 2).await.unwrap(), 1);
    let keys = store.get_subject_keys(c.id, &["S1", "S2", "S3"]).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.kek_version == 2 && k.wrapped_dek == vec![7; 61]));
}

pub async fn subject_keys_are_shared(store: Arc<dyn Store>) {
    let c = collection(&*store, "customers").await;
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.ensure_subject_key(c.id, &key("S1", 1, i)).await.unwrap() }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        winners.push(task.await.unwrap());
    }
    assert!(winners.windows(2).all(|w| w[0] == w[1]), "all writers must get the same key");
}

/// Gives each subject a data key in the collection, as the vault does before writing.
async fn keys_for(store: &dyn Store, c: &CollectionRow, subjects: &[&str]) {
    for s in subjects {
        store.ensure_subject_key(c.id, &key(s, 1, 1)).await.unwrap();
    }
}

pub async fn records_and_index(store: Arc<dyn Store>) {
    let c = collection(&*store, "customers").await;
    let other = collection(&*store, "employees").await;
    keys_for(&*store, &c, &["S1", "S2"]).await;
    let r = record(&c, "S1", &[(1, false), (2, false)]);
    store.insert_record(&r).await.unwrap();
    store.insert_record(&record(&c, "S2", &[(1, false)])).await.unwrap();
    assert_eq!(store.get_record(c.id, &r.id).await.unwrap().unwrap(), r);
    assert_eq!(store.get_record(other.id, &r.id).await.unwrap(), None, "records are per collection");
    assert_eq!(store.find_by_token(c.id, &token(1), 10).await.unwrap().len(), 2);
    assert_eq!(store.find_by_token(c.id, &token(1), 1).await.unwrap().len(), 1);
    assert_eq!(store.find_by_token(c.id, &token(2), 10).await.unwrap(), [r.id]);
    assert!(store.find_by_token(other.id, &token(1), 10).await.unwrap().is_empty());
    assert_eq!(store.find_by_subject(c.id, "S1", 10).await.unwrap(), [r.id]);
    assert!(store.find_by_subject(c.id, "S1", 0).await.unwrap().is_empty());
    assert!(store.find_by_subject(other.id, "S1", 10).await.unwrap().is_empty(), "subjects are per collection");
    assert!(store.find_by_subject(c.id, "S9", 10).await.unwrap().is_empty());
    assert_eq!(store.count_records(c.id).await.unwrap(), 2);

    let mut changed = r.clone();
    changed.fields = vec![8; 41];
    changed.tokens = vec![IndexToken { token: token(3), unique: false }];
    changed.updated_at = t(5);
    changed.department = None;
    store.update_record(&changed).await.unwrap();
    assert_eq!(store.get_record(c.id, &r.id).await.unwrap().unwrap(), changed);
    assert!(store.find_by_token(c.id, &token(2), 10).await.unwrap().is_empty(), "old tokens removed");
    assert_eq!(store.find_by_token(c.id, &token(3), 10).await.unwrap(), [r.id]);

    assert!(store.delete_record(c.id, &r.id).await.unwrap());
    assert!(!store.delete_record(c.id, &r.id).await.unwrap());
    assert!(store.find_by_token(c.id, &token(3), 10).await.unwrap().is_empty());
    assert_eq!(store.update_record(&changed).await, Err(StoreError::NotFound));
}

pub async fn unique_values(store: Arc<dyn Store>) {
    let c = collection(&*store, "customers").await;
    let other = collection(&*store, "employees").await;
    keys_for(&*store, &c, &["S1", "S2", "S3", "R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7"]).await;
    keys_for(&*store, &other, &["S2"]).await;
    let first = record(&c, "S1", &[(5, true)]);
    store.insert_record(&first).await.unwrap();
    let dup = store.insert_record(&record(&c, "S2", &[(5, true)])).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(store.count_records(c.id).await.unwrap(), 1, "a rejected insert leaves nothing behind");
    // Uniqueness is per collection, and only for unique entries.
    store.insert_record(&record(&other, "S2", &[(5, true)])).await.unwrap();
    store.insert_record(&record(&c, "S3", &[(5, false)])).await.unwrap();
    assert_eq!(store.unique_tokens_taken(c.id, &[token(5), token(6)]).await.unwrap(), [token(5)]);
    store.delete_record(c.id, &first.id).await.unwrap();
    assert!(store.unique_tokens_taken(c.id, &[token(5)]).await.unwrap().is_empty());

    // Concurrent writers racing for one unique value: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let r = record(&c, &format!("R{i}"), &[(7, true)]);
        tasks.push(tokio::spawn(async move { store.insert_record(&r).await }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1);
}

/// One import: `keys`, then each batch of records, then commit; the first error.
async fn write_then_commit(
    store: &dyn Store,
    collection_id: i64,
    keys: Vec<SubjectKeyRow>,
    batches: Vec<Vec<RecordRow>>,
) -> Result<()> {
    let mut import = store.begin_import(collection_id).await?;
    import.insert_subject_keys(keys).await?;
    for batch in batches {
        import.insert_records(batch).await?;
    }
    import.commit().await
}

pub async fn import_is_all_or_nothing(store: Arc<dyn Store>) {
    let c = collection(&*store, "customers").await;
    let mut import = store.begin_import(c.id).await.unwrap();
    import.insert_subject_keys(vec![key("S1", 1, 1), key("S2", 1, 2)]).await.unwrap();
    import.insert_records(vec![record(&c, "S1", &[(1, true)]), record(&c, "S2", &[(2, false)])]).await.unwrap();
    drop(import);
    assert_eq!(store.count_records(c.id).await.unwrap(), 0, "dropped import rolls back");
    assert!(store.get_subject_keys(c.id, &["S1"]).await.unwrap().is_empty());

    // A unique value twice in one import: refused when written or, where the backend writes
    // the blind index last, at commit; either way nothing is kept.
    let dup = write_then_commit(
        &*store,
        c.id,
        vec![key("S1", 1, 1)],
        vec![vec![record(&c, "S1", &[(1, true)])], vec![record(&c, "S1", &[(1, true)])]],
    )
    .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(store.count_records(c.id).await.unwrap(), 0);
    assert!(store.get_subject_keys(c.id, &["S1"]).await.unwrap().is_empty());

    // A unique value already committed in the collection, imported again: the same.
    store.ensure_subject_key(c.id, &key("S7", 1, 7)).await.unwrap();
    store.insert_record(&record(&c, "S7", &[(7, true)])).await.unwrap();
    let taken =
        write_then_commit(&*store, c.id, vec![key("S8", 1, 8)], vec![vec![record(&c, "S8", &[(8, false), (7, true)])]])
            .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    assert_eq!(store.count_records(c.id).await.unwrap(), 1);
    assert!(store.get_subject_keys(c.id, &["S8"]).await.unwrap().is_empty());
    assert!(store.find_by_token(c.id, &token(8), 10).await.unwrap().is_empty());
    let erased = ErasureCertificateRow { id: "cert-import".into(), subject: "S7".into(), ..Default::default() };
    store.erase_subject("S7", &erased).await.unwrap();

    let mut import = store.begin_import(c.id).await.unwrap();
    import.insert_subject_keys(vec![key("S1", 1, 1)]).await.unwrap();
    // The import reads its own uncommitted keys; nobody else sees them yet.
    assert_eq!(import.get_subject_key("S1").await.unwrap(), Some(key("S1", 1, 1)));
    assert_eq!(import.get_subject_key("S9").await.unwrap(), None);
    assert!(store.get_subject_keys(c.id, &["S1"]).await.unwrap().is_empty());
    let batch: Vec<RecordRow> = (0..500).map(|i| record(&c, "S1", &[((i % 200) as u8, false)])).collect();
    import.insert_records(batch).await.unwrap();
    import.commit().await.unwrap();
    assert_eq!(store.count_records(c.id).await.unwrap(), 500);
    assert_eq!(store.find_by_token(c.id, &token(3), 10).await.unwrap().len(), 3);

    // Committed with its audit events, in the same transaction; a refused import appends none.
    let mut import = store.begin_import(c.id).await.unwrap();
    import.insert_subject_keys(vec![key("S2", 1, 2)]).await.unwrap();
    import.insert_records(vec![record(&c, "S2", &[(201, true)]), record(&c, "S2", &[(201, true)])]).await.ok();
    assert!(matches!(import.commit_audited(&[event(1)]).await, Err(StoreError::Conflict(_) | StoreError::Backend(_))));
    assert!(store.read_audit(1, 10).await.unwrap().is_empty());
    let mut import = store.begin_import(c.id).await.unwrap();
    import.insert_subject_keys(vec![key("S2", 1, 2)]).await.unwrap();
    import.insert_records(vec![record(&c, "S2", &[(202, true)])]).await.unwrap();
    assert_eq!(import.commit_audited(&[event(1), event(2)]).await.unwrap(), 2);
    assert_eq!(store.count_records(c.id).await.unwrap(), 501);
    assert_eq!(verify_chain(&*store).await, 2);
}

pub async fn erase_subject(store: Arc<dyn Store>) {
    let a = collection(&*store, "customers").await;
    let b = collection(&*store, "employees").await;
    for c in [&a, &b] {
        store.ensure_subject_key(c.id, &key("S1", 1, 1)).await.unwrap();
        store.ensure_subject_key(c.id, &key("S2", 1, 2)).await.unwrap();
        store.insert_record(&record(c, "S1", &[(1, true)])).await.unwrap();
        store.insert_record(&record(c, "S1", &[(2, false)])).await.unwrap();
        store.insert_record(&record(c, "S2", &[(3, false)])).await.unwrap();
    }
    let cert = ErasureCertificateRow {
        id: "cert-1".into(),
        subject: "S1".into(),
        erased_at: t(9),
        body_json: "{\"method\":\"crypto-shredding\"}".into(),
        keys_destroyed: 0,
        records_deleted: 0,
    };
    let counts = store.erase_subject("S1", &cert).await.unwrap();
    assert_eq!(counts, ErasureCounts { keys_destroyed: 2, records_deleted: 4 });
    for c in [&a, &b] {
        assert!(store.get_subject_keys(c.id, &["S1"]).await.unwrap().is_empty());
        assert_eq!(store.get_subject_keys(c.id, &["S2"]).await.unwrap().len(), 1);
        assert_eq!(store.count_records(c.id).await.unwrap(), 1);
        assert!(store.find_by_token(c.id, &token(1), 10).await.unwrap().is_empty());
        assert!(store.unique_tokens_taken(c.id, &[token(1)]).await.unwrap().is_empty());
    }
    let stored = ErasureCertificateRow { keys_destroyed: 2, records_deleted: 4, ..cert };
    assert_eq!(store.list_erasure_certificates().await.unwrap(), [stored]);
    let again = store.erase_subject("S9", &ErasureCertificateRow { id: "cert-2".into(), ..Default::default() }).await;
    assert_eq!(again.unwrap(), ErasureCounts::default());
}

impl Default for ErasureCertificateRow {
    fn default() -> Self {
        Self {
            id: String::new(),
            subject: "S9".into(),
            erased_at: t(10),
            body_json: "{}".into(),
            keys_destroyed: 0,
            records_deleted: 0,
        }
    }
}

pub async fn users_and_sessions(store: Arc<dyn Store>) {
    let mut user =
        UserRow::new(UserId::generate(), "yamada".into(), "山田".into(), "staff".into(), "$argon2id$x".into(), t(0));
    user.department = Some("営業部".into());
    user.valid_until = Some(t(86_400));
    user.clearance = Some("top_secret".into());
    user.training_valid_until = Some(t(7_200));
    user.pledge_signed_at = Some(t(-60));
    user.access_window = Some(r#"{"hours":"08:00-20:00"}"#.into());
    store.create_user(&user).await.unwrap();
    let dup = store.create_user(&UserRow { id: UserId::generate(), ..user.clone() }).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(store.get_user(&user.id).await.unwrap().unwrap(), user);
    assert_eq!(store.get_user_by_login("yamada").await.unwrap().unwrap(), user);
    assert_eq!(store.get_user_by_login("Yamada").await.unwrap(), None);
    store.set_password(&user.id, "$argon2id$y", false, t(5)).await.unwrap();
    store.set_user_disabled(&user.id, true).await.unwrap();
    let changed = store.get_user(&user.id).await.unwrap().unwrap();
    assert_eq!(
        (changed.password_hash.as_str(), changed.must_change_password, changed.disabled, changed.password_changed_at),
        ("$argon2id$y", false, true, t(5))
    );
    assert_eq!(store.list_users().await.unwrap().len(), 1);
    assert_eq!(store.set_password(&UserId::generate(), "x", false, t(5)).await, Err(StoreError::NotFound));

    let s = |n: u8| SessionRow {
        token_hash: [n; 32],
        user_id: user.id,
        created_at: t(0),
        expires_at: t(3600),
        last_seen_at: t(0),
        password_change_only: n == 2,
        mfa: n == 1,
    };
    store.create_session(&s(1)).await.unwrap();
    store.create_session(&s(2)).await.unwrap();
    assert_eq!(store.get_session(&[1; 32]).await.unwrap().unwrap(), s(1));
    store.touch_session(&[1; 32], t(60)).await.unwrap();
    assert_eq!(store.get_session(&[1; 32]).await.unwrap().unwrap().last_seen_at, t(60));
    store.delete_session(&[1; 32]).await.unwrap();
    assert_eq!(store.get_session(&[1; 32]).await.unwrap(), None);
    assert_eq!(store.delete_user_sessions(&user.id).await.unwrap(), 1);
    assert_eq!(store.get_session(&[2; 32]).await.unwrap(), None);

    // Sessions are listed oldest first.
    for (n, at) in [(3u8, 30), (4, 10), (5, 20)] {
        store.create_session(&SessionRow { created_at: t(at), ..s(n) }).await.unwrap();
    }
    let listed: Vec<u8> = store.list_user_sessions(&user.id).await.unwrap().iter().map(|s| s.token_hash[0]).collect();
    assert_eq!(listed, [4, 5, 3]);
}

pub async fn account_security_state(store: Arc<dyn Store>) {
    let user = UserRow::new(UserId::generate(), "sato".into(), "佐藤".into(), "staff".into(), "h0".into(), t(0));
    store.create_user(&user).await.unwrap();
    let missing = UserId::generate();

    // Password history: newest first, the current hash not included.
    for (i, h) in ["h1", "h2", "h3"].iter().enumerate() {
        store.set_password(&user.id, h, false, t(i as i64 + 1)).await.unwrap();
    }
    assert_eq!(store.password_history(&user.id, 5).await.unwrap(), ["h2", "h1", "h0"]);
    assert_eq!(store.password_history(&user.id, 2).await.unwrap(), ["h2", "h1"]);

    // Profile.
    let profile = UserProfile {
        display_name: "佐藤 一郎".into(),
        department: Some("総務部".into()),
        title: Some("課長".into()),
        role: "manager".into(),
        valid_until: Some(t(1000)),
        vendor: true,
        clearance: Some("confidential".into()),
        training_valid_until: Some(t(2000)),
        pledge_signed_at: Some(t(3)),
        access_window: Some(r#"{"networks":["10.0.0.0/8"]}"#.into()),
    };
    store.update_user_profile(&user.id, &profile).await.unwrap();
    let u = store.get_user(&user.id).await.unwrap().unwrap();
    assert_eq!(u.access_window.as_deref(), Some(r#"{"networks":["10.0.0.0/8"]}"#));
    assert_eq!(
        (u.clearance.as_deref(), u.training_valid_until, u.pledge_signed_at),
        (Some("confidential"), Some(t(2000)), Some(t(3)))
    );
    assert_eq!(
        (u.display_name, u.department, u.title, u.role, u.valid_until, u.vendor),
        ("佐藤 一郎".into(), Some("総務部".into()), Some("課長".into()), "manager".into(), Some(t(1000)), true)
    );
    assert_eq!(store.update_user_profile(&missing, &profile).await, Err(StoreError::NotFound));
    store.mark_user_reviewed(&user.id, "user:reviewer", t(9)).await.unwrap();
    let u = store.get_user(&user.id).await.unwrap().unwrap();
    assert_eq!((u.reviewed_at, u.reviewed_by.as_deref()), (Some(t(9)), Some("user:reviewer")));
    assert_eq!(store.mark_user_reviewed(&missing, "user:reviewer", t(9)).await, Err(StoreError::NotFound));

    // Lockout: the third consecutive failure locks; success resets.
    assert_eq!(store.record_login_failure(&user.id, t(1), 3, t(900)).await.unwrap(), (1, None));
    assert_eq!(store.record_login_failure(&user.id, t(2), 3, t(900)).await.unwrap(), (2, None));
    assert_eq!(store.record_login_failure(&user.id, t(3), 3, t(900)).await.unwrap(), (3, Some(t(900))));
    // A failure during the lock does not move it.
    assert_eq!(store.record_login_failure(&user.id, t(4), 3, t(5000)).await.unwrap(), (4, Some(t(900))));
    // After the lock expired, counting starts again.
    assert_eq!(store.record_login_failure(&user.id, t(901), 3, t(2000)).await.unwrap(), (1, None));
    store.record_login_failure(&user.id, t(902), 3, t(2000)).await.unwrap();
    assert_eq!(store.record_login_failure(&user.id, t(903), 3, t(2000)).await.unwrap(), (3, Some(t(2000))));
    store.unlock_user(&user.id).await.unwrap();
    let u = store.get_user(&user.id).await.unwrap().unwrap();
    assert_eq!((u.failed_logins, u.locked_until), (0, None));
    store.record_login_failure(&user.id, t(1), 3, t(900)).await.unwrap();
    assert!(store.record_login_success(&user.id, t(77)).await.unwrap());
    let u = store.get_user(&user.id).await.unwrap().unwrap();
    assert_eq!((u.failed_logins, u.locked_until, u.last_login_at), (0, None, Some(t(77))));
    // A success never lifts a lock that holds at its time, nor records a login of a disabled
    // or unknown account: concurrent guesses cannot undo the lockout their failures set.
    for i in 1..=3 {
        store.record_login_failure(&user.id, t(100 + i), 3, t(900)).await.unwrap();
    }
    assert!(!store.record_login_success(&user.id, t(200)).await.unwrap());
    let u = store.get_user(&user.id).await.unwrap().unwrap();
    assert_eq!((u.failed_logins, u.locked_until, u.last_login_at), (3, Some(t(900)), Some(t(77))));
    assert!(store.record_login_success(&user.id, t(900)).await.unwrap(), "the lock ended at 900");
    store.set_user_disabled(&user.id, true).await.unwrap();
    assert!(!store.record_login_success(&user.id, t(950)).await.unwrap());
    store.enable_user(&user.id, t(960)).await.unwrap();
    let u = store.get_user(&user.id).await.unwrap().unwrap();
    assert_eq!((u.disabled, u.last_login_at, u.enabled_at), (false, Some(t(900)), Some(t(960))));
    assert_eq!(u.idle_since(), t(960));
    store.enable_user(&user.id, t(990)).await.unwrap();
    assert_eq!(store.get_user(&user.id).await.unwrap().unwrap().enabled_at, Some(t(960)), "already enabled");
    assert_eq!(store.enable_user(&missing, t(1)).await, Err(StoreError::NotFound));
    assert!(!store.record_login_success(&missing, t(1)).await.unwrap());
    assert_eq!(store.record_login_failure(&missing, t(1), 3, t(900)).await, Err(StoreError::NotFound));

    // Concurrent failures from several connections are all counted.
    store.unlock_user(&user.id).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, id) = (store.clone(), user.id);
            tokio::spawn(async move { store.record_login_failure(&id, t(1), 100, t(900)).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.get_user(&user.id).await.unwrap().unwrap().failed_logins, 8);

    // TOTP: steps only move forward; recovery codes are single use.
    store.set_totp(&user.id, Some(&[7; 48]), &[[1; 32], [2; 32]]).await.unwrap();
    let u = store.get_user(&user.id).await.unwrap().unwrap();
    assert_eq!((u.totp_secret, u.totp_last_step), (Some(vec![7; 48]), None));
    assert!(store.advance_totp_step(&user.id, 100).await.unwrap());
    assert!(!store.advance_totp_step(&user.id, 100).await.unwrap(), "same step twice");
    assert!(!store.advance_totp_step(&user.id, 99).await.unwrap());
    assert!(store.advance_totp_step(&user.id, 101).await.unwrap());
    assert_eq!(store.get_user(&user.id).await.unwrap().unwrap().totp_last_step, Some(101));
    let mut hashes = store.recovery_code_hashes(&user.id).await.unwrap();
    hashes.sort();
    assert_eq!(hashes, [[1; 32], [2; 32]]);
    assert!(store.use_recovery_code(&user.id, &[1; 32]).await.unwrap());
    assert!(!store.use_recovery_code(&user.id, &[1; 32]).await.unwrap(), "used up");
    assert_eq!(store.recovery_code_hashes(&user.id).await.unwrap(), [[2; 32]]);
    // Re-enrolling replaces everything; removing clears the secret.
    store.set_totp(&user.id, None, &[]).await.unwrap();
    let u = store.get_user(&user.id).await.unwrap().unwrap();
    assert_eq!((u.totp_secret, u.totp_last_step), (None, None));
    assert!(store.recovery_code_hashes(&user.id).await.unwrap().is_empty());
}

fn event(i: usize) -> AuditEvent {
    let mut e = AuditEvent::new(t(i as i64), format!("user:{i}"), "record.read", Outcome::Success);
    e.record = Some(format!("r{i}"));
    e
}

/// Walks the whole chain and returns its length, panicking on any gap or bad hash.
async fn verify_chain(store: &dyn Store) -> u64 {
    let mut prev = GENESIS_HASH;
    let mut expected = 1;
    loop {
        let rows = store.read_audit(expected, 100).await.unwrap();
        if rows.is_empty() {
            return expected - 1;
        }
        for row in rows {
            assert_eq!(row.seq, expected, "gap-free sequence");
            assert_eq!(row.hash, chain_hash(&prev, row.seq, &row.event_json), "chain at {}", row.seq);
            prev = row.hash;
            expected += 1;
        }
    }
}

pub async fn audit_chain(store: Arc<dyn Store>) {
    assert_eq!(store.append_audit(&[event(1)]).await.unwrap(), 1);
    assert_eq!(store.append_audit(&[event(2), event(3), event(4)]).await.unwrap(), 4);
    let rows = store.read_audit(2, 2).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(rows[0].event_json, event(2).canonical_json());
    assert_eq!(rows[0].columns, AuditColumns::of(&event(2)));
    assert!(rows[0].columns.agree_with(&event(2)));
    assert_eq!(verify_chain(&*store).await, 4);
    // The packed page verification reads holds the same rows, NULL columns included.
    let mut other_event = event(5);
    (other_event.record, other_event.subject, other_event.collection) = (None, Some("S5".into()), Some("顧客".into()));
    store.append_audit(std::slice::from_ref(&other_event)).await.unwrap();
    let all = store.read_audit(1, 10).await.unwrap();
    let page = store.read_audit_page(1, 10, true).await.unwrap();
    assert_eq!(page.iter().map(|r| r.to_row()).collect::<Vec<_>>(), all);
    assert_eq!(page.len(), 5);
    let fifth = page.get(4).unwrap().columns.unwrap();
    assert_eq!((fifth.record, fifth.subject, fifth.collection), (None, Some("S5"), Some("顧客")));
    assert!(fifth.agree_with(&AuditColumnsRef::of(&other_event)));
    let page = store.read_audit_page(3, 2, true).await.unwrap();
    assert_eq!(page.iter().map(|r| r.to_row()).collect::<Vec<_>>(), all[2..4]);
    assert!(store.read_audit_page(6, 10, true).await.unwrap().is_empty());
    // Without the columns: the chain's part of each row the same; columns, if any, right.
    let bare = store.read_audit_page(1, 10, false).await.unwrap();
    assert_eq!(bare.len(), 5);
    for (row, full) in bare.iter().zip(&all) {
        assert_eq!((row.seq, row.event_json, row.hash), (full.seq, full.event_json.as_str(), &full.hash));
        assert!(row.columns.is_none_or(|c| c == full.columns.as_ref()));
    }
}

pub async fn concurrent_audit_appends(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                store.append_audit(&[event(w * 100 + i), event(w * 100 + i + 50)]).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(verify_chain(&*store).await, 160);
}

pub async fn master_rewrap(store: Arc<dyn Store>) {
    let c = collection(&*store, "customers").await;
    store.put_meta("key_check", b"old").await.unwrap();
    store.rewrap_master(&keys_only(c.id)).await.unwrap();
    assert_eq!(store.get_keks(c.id).await.unwrap(), [WrappedKek { version: 1, wrapped: vec![5; 60] }]);
    assert_eq!(store.get_collection("customers").await.unwrap().unwrap().wrapped_index_key, vec![6; 60]);
    assert_eq!(store.get_meta("key_check").await.unwrap().as_deref(), Some(&b"new"[..]));
    // A second rotation that read the key check before the first one switched it: refused,
    // and the first one's keys stay.
    let late = store.rewrap_master(&MasterRewrap { key_check: b"other".to_vec(), ..keys_only(c.id) }).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    assert_eq!(store.get_meta("key_check").await.unwrap().as_deref(), Some(&b"new"[..]));
}

pub async fn record_needs_its_subject_key(store: Arc<dyn Store>) {
    let c = collection(&*store, "customers").await;
    let orphan = store.insert_record(&record(&c, "NOKEY", &[(1, true)])).await;
    assert!(matches!(orphan, Err(StoreError::Conflict(_))), "{orphan:?}");
    assert_eq!(store.count_records(c.id).await.unwrap(), 0);
    assert!(store.unique_tokens_taken(c.id, &[token(1)]).await.unwrap().is_empty());
}

pub async fn subject_key_needs_its_kek(store: Arc<dyn Store>) {
    let c = collection(&*store, "customers").await;
    // KEK version 7 does not exist: a key wrapped under it must not be stored.
    let stale = store.ensure_subject_key(c.id, &key("S1", 7, 1)).await;
    assert!(stale.is_err(), "{stale:?}");
    assert!(store.get_subject_keys(c.id, &["S1"]).await.unwrap().is_empty());
}

pub async fn master_rewrap_must_cover_every_key(store: Arc<dyn Store>) {
    let a = collection(&*store, "customers").await;
    collection(&*store, "employees").await;
    store.put_meta("key_check", b"old").await.unwrap();
    // Only one of the two collections: refused, and nothing changed.
    let partial = store.rewrap_master(&keys_only(a.id)).await;
    assert!(matches!(partial, Err(StoreError::Conflict(_))), "{partial:?}");
    assert_eq!(store.get_meta("key_check").await.unwrap().as_deref(), Some(&b"old"[..]));
    assert_eq!(store.get_keks(a.id).await.unwrap(), [WrappedKek { version: 1, wrapped: vec![1; 60] }]);
}

/// A rotation of one collection's keys (KEK version 1, index key) to recognisable bytes.
fn keys_only(collection_id: i64) -> MasterRewrap {
    MasterRewrap {
        keks: vec![(collection_id, WrappedKek { version: 1, wrapped: vec![5; 60] })],
        index_keys: vec![(collection_id, vec![6; 60])],
        sealed: Vec::new(),
        previous_key_check: b"old".to_vec(),
        key_check: b"new".to_vec(),
    }
}

pub async fn master_rewrap_reseals_every_sealed_value(store: Arc<dyn Store>) {
    // Grants, exports (one with a password), a held share and a TOTP secret, from the other
    // cases.
    break_glass_grants(store.clone()).await;
    exports_and_ledger(store.clone()).await;
    let requester = store.list_users().await.unwrap().into_iter().find(|u| u.login == "clerk").unwrap();
    let held = HeldShare {
        export_id: "x2".into(),
        index: 1,
        custodian_id: requester.id,
        custodian: requester.login.clone(),
        held_at: t(100),
        state: ShareState::Held,
        ended_at: None,
        sealed: Some(vec![1; 70]),
    };
    store.hold_export_shares(&[held], &[]).await.unwrap();
    let c = collection(&*store, "customers").await;
    let user = store.list_users().await.unwrap().remove(0);
    store.set_totp(&user.id, Some(&[7; 48]), &[]).await.unwrap();
    store.put_meta("key_check", b"old").await.unwrap();
    let sealed = store.list_master_sealed().await.unwrap();
    for kind in SealedKind::ALL {
        assert!(sealed.iter().any(|v| v.kind == kind), "{kind:?} listed");
    }
    let reseal = |v: &SealedValue| (v.clone(), [v.sealed.as_slice(), b"+new"].concat());
    let all: Vec<_> = sealed.iter().map(reseal).collect();
    let unchanged =
        || async { (store.list_master_sealed().await.unwrap(), store.get_meta("key_check").await.unwrap()) };
    let before = unchanged().await;

    // One value left out: refused, nothing changed.
    let partial = store.rewrap_master(&MasterRewrap { sealed: all[1..].to_vec(), ..keys_only(c.id) }).await;
    assert!(matches!(partial, Err(StoreError::Conflict(_))), "{partial:?}");
    assert_eq!(unchanged().await, before);
    // One value changed since it was read: refused, nothing changed.
    let mut stale = all.clone();
    stale[0].0.sealed.push(0);
    let stale = store.rewrap_master(&MasterRewrap { sealed: stale, ..keys_only(c.id) }).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(unchanged().await, before);

    store.rewrap_master(&MasterRewrap { sealed: all.clone(), ..keys_only(c.id) }).await.unwrap();
    let mut after = store.list_master_sealed().await.unwrap();
    let mut expected: Vec<SealedValue> =
        all.iter().map(|(old, new)| SealedValue { sealed: new.clone(), ..old.clone() }).collect();
    let order = |v: &SealedValue| (format!("{:?}", v.kind), v.id.clone());
    after.sort_by_key(order);
    expected.sort_by_key(order);
    assert_eq!(after, expected);
    assert_eq!(store.get_meta("key_check").await.unwrap().as_deref(), Some(&b"new"[..]));
    let u = store.get_user(&user.id).await.unwrap().unwrap();
    assert_eq!(u.totp_secret, Some([&[7u8; 48][..], b"+new"].concat()));
}

/// Ten events with varied fields; returns them in sequence order (seq = index + 1).
async fn varied_events(store: &dyn Store) -> Vec<AuditEvent> {
    // actor, action, outcome, collection, record, subject
    type Spec<'a> = (&'a str, &'a str, Outcome, Option<&'a str>, Option<&'a str>, Option<&'a str>);
    let spec: &[Spec] = &[
        ("user:a", "auth.login", Outcome::Success, None, None, None),
        ("anonymous", "auth.login", Outcome::Failure, None, None, None),
        ("user:a", "record.read", Outcome::Success, Some("customers"), Some("r1"), Some("S1")),
        ("user:b", "record.read", Outcome::Success, Some("customers"), Some("r2"), Some("S2")),
        ("user:b", "record.update", Outcome::Success, Some("customers"), Some("r1"), Some("S1")),
        ("cli:root", "user.create", Outcome::Success, None, None, None),
        ("user:a", "auth.password_change", Outcome::Failure, None, None, None),
        ("user:c", "record.read", Outcome::Denied, Some("staff"), None, None),
        ("user:a", "auth.passwordXchange", Outcome::Success, None, None, None),
        ("cli:root", "collection.create", Outcome::Success, Some("staff"), None, None),
    ];
    let events: Vec<AuditEvent> = spec
        .iter()
        .enumerate()
        .map(|(i, (actor, action, outcome, collection, record, subject))| {
            let mut e = AuditEvent::new(t(i as i64 * 10), *actor, *action, *outcome);
            e.collection = collection.map(str::to_owned);
            e.record = record.map(str::to_owned);
            e.subject = subject.map(str::to_owned);
            e
        })
        .collect();
    assert_eq!(store.append_audit(&events[..4]).await.unwrap(), 4);
    assert_eq!(store.append_audit(&events[4..]).await.unwrap(), 10);
    events
}

pub async fn audit_query_filters(store: Arc<dyn Store>) {
    varied_events(&*store).await;
    let seqs = |q: AuditQuery| {
        let store = store.clone();
        async move {
            let q = AuditQuery { limit: if q.limit == 0 { 100 } else { q.limit }, ..q };
            store.query_audit(&q).await.unwrap().iter().map(|r| r.seq).collect::<Vec<_>>()
        }
    };
    let prefix = |p: &str| vec![ActionMatch::Prefix(p.into())];
    assert_eq!(seqs(AuditQuery::default()).await, (1..=10).collect::<Vec<_>>());
    assert_eq!(seqs(AuditQuery { actor: Some("user:a".into()), ..Default::default() }).await, [1, 3, 7, 9]);
    assert_eq!(seqs(AuditQuery { subject: Some("S1".into()), ..Default::default() }).await, [3, 5]);
    assert_eq!(seqs(AuditQuery { record: Some("r2".into()), ..Default::default() }).await, [4]);
    assert_eq!(seqs(AuditQuery { collection: Some("staff".into()), ..Default::default() }).await, [8, 10]);
    assert_eq!(seqs(AuditQuery { outcome: Some("denied".into()), ..Default::default() }).await, [8]);
    // Times: `from` inclusive, `until` exclusive.
    assert_eq!(seqs(AuditQuery { from: Some(t(20)), until: Some(t(50)), ..Default::default() }).await, [3, 4, 5]);
    assert_eq!(
        seqs(AuditQuery { actions: vec![ActionMatch::Exact("auth.login".into())], ..Default::default() }).await,
        [1, 2]
    );
    assert_eq!(seqs(AuditQuery { actions: prefix("record."), ..Default::default() }).await, [3, 4, 5, 8]);
    // A prefix is literal: `_` is no wildcard, and case matters.
    assert_eq!(seqs(AuditQuery { actions: prefix("auth.password_"), ..Default::default() }).await, [7]);
    assert_eq!(seqs(AuditQuery { actions: prefix("AUTH."), ..Default::default() }).await, Vec::<u64>::new());
    let admin = vec![ActionMatch::Prefix("user.".into()), ActionMatch::Prefix("collection.create".into())];
    assert_eq!(seqs(AuditQuery { actions: admin, ..Default::default() }).await, [6, 10]);
    let failed_logins = AuditQuery {
        actions: vec![ActionMatch::Exact("auth.login".into())],
        outcome: Some("failure".into()),
        ..Default::default()
    };
    assert_eq!(seqs(failed_logins).await, [2]);
    // Paging.
    let page = AuditQuery { actor: Some("user:a".into()), limit: 2, ..Default::default() };
    assert_eq!(seqs(page.clone()).await, [1, 3]);
    assert_eq!(seqs(AuditQuery { after_seq: 3, ..page }).await, [7, 9]);
    let rows = store.query_audit(&AuditQuery { record: Some("r1".into()), limit: 10, ..Default::default() }).await;
    let rows = rows.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].hash, store.read_audit(3, 1).await.unwrap()[0].hash);
}

fn checkpoint(kind: CheckpointKind, seq: u64, hash: [u8; 32], byte: u8) -> CheckpointRow {
    CheckpointRow { kind, seq, head_hash: hash, at: t(seq as i64), key_id: "k1".into(), signature: vec![byte; 64] }
}

pub async fn audit_checkpoints(store: Arc<dyn Store>) {
    assert_eq!(store.last_audit_checkpoint().await.unwrap(), None);
    for i in 1..=6 {
        store.append_audit(&[event(i)]).await.unwrap();
    }
    let hash = |seq: u64| {
        let store = store.clone();
        async move { store.read_audit(seq, 1).await.unwrap()[0].hash }
    };
    let c2 = checkpoint(CheckpointKind::Checkpoint, 2, hash(2).await, 1);
    let c5 = checkpoint(CheckpointKind::Checkpoint, 5, hash(5).await, 2);
    store.add_audit_checkpoint(&c5).await.unwrap();
    store.add_audit_checkpoint(&c2).await.unwrap();
    // Another instance checkpointing the same event: ignored, the first one stays.
    store.add_audit_checkpoint(&CheckpointRow { signature: vec![9; 64], ..c5.clone() }).await.unwrap();
    assert_eq!(store.last_audit_checkpoint().await.unwrap(), Some(c5.clone()));
    assert_eq!(store.read_audit_checkpoints(0, 10).await.unwrap(), [c2.clone(), c5.clone()]);
    assert_eq!(store.read_audit_checkpoints(3, 10).await.unwrap(), std::slice::from_ref(&c5));
    assert_eq!(store.read_audit_checkpoints(0, 1).await.unwrap(), [c2]);
}

pub async fn audit_prune_keeps_the_chain(store: Arc<dyn Store>) {
    for i in 1..=10 {
        store.append_audit(&[event(i)]).await.unwrap();
    }
    let rows = store.read_audit(1, 100).await.unwrap();
    let c4 = checkpoint(CheckpointKind::Checkpoint, 4, rows[3].hash, 1);
    let c8 = checkpoint(CheckpointKind::Checkpoint, 8, rows[7].hash, 2);
    store.add_audit_checkpoint(&c4).await.unwrap();
    store.add_audit_checkpoint(&c8).await.unwrap();

    // Refused: a hash that is not the chain's, a sequence number that does not exist, the head.
    for bad in [
        checkpoint(CheckpointKind::Anchor, 6, rows[4].hash, 3),
        checkpoint(CheckpointKind::Anchor, 60, rows[4].hash, 3),
        checkpoint(CheckpointKind::Anchor, 10, rows[9].hash, 3),
    ] {
        let r = store.prune_audit(&bad).await;
        assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
        assert_eq!(store.read_audit(1, 100).await.unwrap().len(), 10, "nothing deleted");
    }

    let anchor = checkpoint(CheckpointKind::Anchor, 6, rows[5].hash, 4);
    assert_eq!(store.prune_audit(&anchor).await.unwrap(), 6);
    let left = store.read_audit(1, 100).await.unwrap();
    assert_eq!(left.iter().map(|r| r.seq).collect::<Vec<_>>(), [7, 8, 9, 10]);
    assert_eq!(store.read_audit_checkpoints(0, 10).await.unwrap(), [anchor.clone(), c8.clone()]);
    assert_eq!(store.last_audit_checkpoint().await.unwrap(), Some(c8));
    // The chain goes on from its head, unchanged by the prune.
    assert_eq!(store.append_audit(&[event(11)]).await.unwrap(), 11);
    let mut prev = anchor.head_hash;
    for row in store.read_audit(1, 100).await.unwrap() {
        assert_eq!(row.hash, chain_hash(&prev, row.seq, &row.event_json), "chain at {}", row.seq);
        prev = row.hash;
    }
    let q = AuditQuery { limit: 100, ..Default::default() };
    assert_eq!(store.query_audit(&q).await.unwrap().first().map(|r| r.seq), Some(7));
}

/// A policy version proposed by `user:a`, undecided unless `status` says otherwise.
fn policy_row(version: u64, base_version: Option<u64>, policies: &str, status: Decision) -> PolicyVersionRow {
    PolicyVersionRow {
        version,
        base_version,
        policies: policies.into(),
        summary: "why".into(),
        proposed_by: "user:a".into(),
        proposed_at: t(0),
        status,
        decided_by: None,
        decided_at: None,
    }
}

pub async fn policy_versions_four_eyes(store: Arc<dyn Store>) {
    assert_eq!(store.active_policy_version().await.unwrap(), None);
    let v = |base: Option<u64>, text: &str, status: Decision| policy_row(0, base, text, status);
    assert_eq!(store.add_policy_version(&v(None, "one", Decision::Approved)).await.unwrap(), 1);
    assert_eq!(store.add_policy_version(&v(Some(1), "two", Decision::Pending)).await.unwrap(), 2);
    assert_eq!(store.add_policy_version(&v(Some(1), "three", Decision::Pending)).await.unwrap(), 3);
    assert_eq!(store.active_policy_version().await.unwrap().unwrap().policies, "one");
    assert!(store.decide_policy_version(2, true, "user:b", t(5)).await.unwrap());
    let active = store.active_policy_version().await.unwrap().unwrap();
    assert_eq!((active.version, active.decided_by.as_deref(), active.decided_at), (2, Some("user:b"), Some(t(5))));
    // Version 3 was proposed against 1, which is no longer active: it cannot be approved.
    assert!(!store.decide_policy_version(3, true, "user:b", t(6)).await.unwrap());
    assert!(!store.decide_policy_version(2, false, "user:b", t(6)).await.unwrap(), "decided only once");
    assert!(store.decide_policy_version(3, false, "user:b", t(7)).await.unwrap());
    let all = store.list_policy_versions().await.unwrap();
    let states: Vec<(u64, Decision)> = all.iter().map(|r| (r.version, r.status)).collect();
    assert_eq!(states, [(1, Decision::Approved), (2, Decision::Approved), (3, Decision::Rejected)]);
    assert_eq!(store.get_policy_version(3).await.unwrap().unwrap().policies, "three");
    assert_eq!(store.get_policy_version(9).await.unwrap(), None);
    assert!(!store.decide_policy_version(9, true, "user:b", t(8)).await.unwrap());
}

/// A pending one-hour break-glass request of `user`.
fn pending_grant(id: &str, user: &UserRow, collection: &str) -> GrantRow {
    GrantRow {
        id: id.into(),
        user_id: user.id,
        collection: collection.into(),
        reason: vec![7; 40],
        minutes: 60,
        requested_by: format!("user:{}", user.id),
        requested_at: t(0),
        status: Decision::Pending,
        decided_by: None,
        decided_at: None,
        expires_at: None,
    }
}

pub async fn break_glass_grants(store: Arc<dyn Store>) {
    let user = UserRow::new(UserId::generate(), "ops".into(), "運用".into(), "system_admin".into(), "$x".into(), t(0));
    store.create_user(&user).await.unwrap();
    let grant = |id: &str, collection: &str| pending_grant(id, &user, collection);
    store.create_grant(&grant("g1", "customers")).await.unwrap();
    store.create_grant(&grant("g2", "employees")).await.unwrap();
    assert!(store.active_grants(&user.id, "customers", t(10)).await.unwrap().is_empty(), "pending is not active");
    let change = |from, to, by: &str, at, expires_at| GrantChange { from, to, by: by.into(), at, expires_at };
    let approve = change(Decision::Pending, Decision::Approved, "user:b", t(10), Some(t(3610)));
    assert!(store.decide_grant("g1", &approve).await.unwrap());
    let reject = change(Decision::Pending, Decision::Rejected, "user:b", t(11), None);
    assert!(!store.decide_grant("g1", &reject).await.unwrap());
    let active = store.active_grants(&user.id, "customers", t(20)).await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!((active[0].expires_at, active[0].decided_by.as_deref()), (Some(t(3610)), Some("user:b")));
    assert!(store.active_grants(&user.id, "customers", t(3610)).await.unwrap().is_empty(), "expired");
    assert!(store.active_grants(&user.id, "employees", t(20)).await.unwrap().is_empty());
    let revoke = change(Decision::Approved, Decision::Revoked, "user:c", t(30), None);
    assert!(store.decide_grant("g1", &revoke).await.unwrap());
    assert!(store.active_grants(&user.id, "customers", t(40)).await.unwrap().is_empty(), "revoked");
    let g1 = store.get_grant("g1").await.unwrap().unwrap();
    assert_eq!((g1.status, g1.expires_at, g1.reason.len()), (Decision::Revoked, Some(t(3610)), 40));
    assert_eq!(store.list_grants().await.unwrap().len(), 2);
    assert_eq!(store.get_grant("nope").await.unwrap(), None);
}

/// A pending password-protected request of `user` for 120 records, two downloads.
fn export_request(id: &str, user: &UserRow) -> ExportRow {
    ExportRow {
        id: id.into(),
        user_id: user.id,
        requested_by: format!("user:{}", user.id),
        requested_at: t(0),
        collection: "customers".into(),
        spec: vec![5; 50],
        rows: 120,
        protection: "password".into(),
        status: ExportStatus::Pending,
        decided_by: None,
        decided_at: None,
        download_until: None,
        downloads_allowed: 2,
        downloads_used: 0,
        due_at: t(86_400),
        secret: None,
    }
}

pub async fn exports_and_ledger(store: Arc<dyn Store>) {
    let user = UserRow::new(UserId::generate(), "clerk".into(), "事務".into(), "staff".into(), "$x".into(), t(0));
    store.create_user(&user).await.unwrap();
    let export = |id: &str| export_request(id, &user);
    let line = |id: &str, kind: &str, at, rows| LedgerRow {
        seq: 0,
        export_id: Some(id.into()),
        kind: kind.into(),
        at,
        actor: "user:x".into(),
        user_id: Some(user.id),
        rows,
        detail: "{}".into(),
    };
    store.create_export(&export("x1"), &line("x1", "request", t(0), 0)).await.unwrap();
    store.create_export(&export("x2"), &line("x2", "request", t(1), 0)).await.unwrap();
    assert!(store.create_export(&export("x1"), &line("x1", "request", t(2), 0)).await.is_err(), "ids are unique");
    assert_eq!(store.list_ledger(None, None).await.unwrap().len(), 2, "a failed create adds no ledger line");
    assert_eq!(store.take_export_download("x1", &line("x1", "download", t(5), 120)).await.unwrap(), None, "pending");

    let change = |from, to, at, until: Option<OffsetDateTime>| ExportChange {
        from,
        to,
        by: "user:boss".into(),
        at,
        download_until: until,
        secret: until.map(|_| vec![6; 40]),
    };
    let approve = change(ExportStatus::Pending, ExportStatus::Approved, t(10), Some(t(1000)));
    assert!(store.change_export("x1", &approve, &line("x1", "approve", t(10), 0)).await.unwrap());
    assert!(!store.change_export("x1", &approve, &line("x1", "approve", t(11), 0)).await.unwrap(), "only once");
    let x1 = store.get_export("x1").await.unwrap().unwrap();
    assert_eq!(
        (x1.status, x1.decided_by.as_deref(), x1.decided_at),
        (ExportStatus::Approved, Some("user:boss"), Some(t(10)))
    );
    assert_eq!((x1.download_until, x1.secret.as_deref()), (Some(t(1000)), Some(&[6u8; 40][..])));

    // Downloads: counted atomically, refused once used up or after the window.
    assert_eq!(store.take_export_download("x1", &line("x1", "download", t(20), 120)).await.unwrap(), Some(1));
    assert_eq!(store.take_export_download("x1", &line("x1", "download", t(1000), 120)).await.unwrap(), None, "window");
    assert_eq!(store.take_export_download("x1", &line("x1", "download", t(30), 120)).await.unwrap(), Some(2));
    assert_eq!(store.take_export_download("x1", &line("x1", "download", t(40), 120)).await.unwrap(), None, "used up");
    assert_eq!(store.get_export("x1").await.unwrap().unwrap().downloads_used, 2);

    // Closing keeps the decider; other requests are untouched.
    let close = change(ExportStatus::Approved, ExportStatus::Closed, t(50), None);
    assert!(store.change_export("x1", &close, &line("x1", "dispose", t(50), 0)).await.unwrap());
    let x1 = store.get_export("x1").await.unwrap().unwrap();
    assert_eq!(
        (x1.status, x1.decided_by.as_deref(), x1.decided_at),
        (ExportStatus::Closed, Some("user:boss"), Some(t(10)))
    );
    let cancel = change(ExportStatus::Pending, ExportStatus::Cancelled, t(60), None);
    assert!(store.change_export("x2", &cancel, &line("x2", "cancel", t(60), 0)).await.unwrap());
    let ids: Vec<String> = store.list_exports().await.unwrap().into_iter().map(|x| x.id).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(store.get_export("nope").await.unwrap(), None);

    // The ledger: in order, per request, and the per-user count of rows taken out.
    for kind in ["print", "copy", "alert"] {
        let entry = LedgerRow { export_id: None, kind: kind.into(), rows: 1, ..line("", "", t(70), 0) };
        store.add_ledger(&entry).await.unwrap();
    }
    let kinds: Vec<String> = store.list_ledger(Some("x1"), None).await.unwrap().into_iter().map(|l| l.kind).collect();
    assert_eq!(kinds, ["request", "approve", "download", "download", "dispose"]);
    assert_eq!(store.list_ledger(Some("x1"), Some(t(30))).await.unwrap().len(), 2, "since");
    let all = store.list_ledger(None, None).await.unwrap();
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "in sequence");
    assert_eq!(all.last().unwrap().export_id, None);
    assert_eq!(store.takeout_rows_since(&user.id, t(0)).await.unwrap(), 242, "two downloads, a print, a copy");
    assert_eq!(store.takeout_rows_since(&user.id, t(25)).await.unwrap(), 122);
    assert_eq!(store.takeout_rows_since(&UserId::generate(), t(0)).await.unwrap(), 0);
}

/// Shares of a split export held for their custodians: each handed over once, to its own
/// custodian only, and destroyed when the export's window closes.
pub async fn held_export_shares(store: Arc<dyn Store>) {
    exports_and_ledger(store.clone()).await;
    let users = store.list_users().await.unwrap();
    let requester = &users[0];
    // An approved split export whose window is open until t(1000).
    let x3 = ExportRow {
        protection: "split".into(),
        status: ExportStatus::Approved,
        decided_by: Some("user:boss".into()),
        decided_at: Some(t(10)),
        download_until: Some(t(1000)),
        ..export_request("x3", requester)
    };
    let request = LedgerRow {
        seq: 0,
        export_id: Some("x3".into()),
        kind: "request".into(),
        at: t(0),
        actor: "user:x".into(),
        user_id: None,
        rows: 0,
        detail: "{}".into(),
    };
    store.create_export(&x3, &request).await.unwrap();
    let custodians: Vec<UserRow> = ["keeper-a", "keeper-b", "keeper-c"]
        .iter()
        .map(|login| {
            UserRow::new(UserId::generate(), (*login).into(), "保管者".into(), "manager".into(), "$x".into(), t(0))
        })
        .collect();
    for c in &custodians {
        store.create_user(c).await.unwrap();
    }
    let line = |kind: &str, at| LedgerRow {
        seq: 0,
        export_id: Some("x3".into()),
        kind: kind.into(),
        at,
        actor: format!("user:{}", requester.id),
        user_id: Some(requester.id),
        rows: 0,
        detail: "{}".into(),
    };
    let share = |i: u8, c: &UserRow| HeldShare {
        export_id: "x3".into(),
        index: i,
        custodian_id: c.id,
        custodian: c.login.clone(),
        held_at: t(100),
        state: ShareState::Held,
        ended_at: None,
        sealed: Some(vec![i; 70]),
    };
    let set: Vec<HeldShare> = custodians.iter().enumerate().map(|(i, c)| share(i as u8 + 1, c)).collect();
    let lines = [line("share", t(100)), line("share", t(100)), line("share", t(100))];
    store.hold_export_shares(&set, &lines).await.unwrap();
    let again = store.hold_export_shares(&set[..1], &lines[..1]).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "one set per export: {again:?}");
    let ledger = || async { store.list_ledger(Some("x3"), Some(t(100))).await.unwrap().len() };
    assert_eq!(ledger().await, 3, "a refused set adds no ledger line");

    let listed = store.list_export_shares(Some("x3"), None).await.unwrap();
    assert_eq!(listed.iter().map(|s| s.index).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(listed.iter().all(|s| s.sealed.is_none() && s.state == ShareState::Held), "listings carry no bytes");
    let mine = store.list_export_shares(None, Some(&custodians[1].id)).await.unwrap();
    assert_eq!((mine.len(), mine[0].index, mine[0].custodian.as_str()), (1, 2, "keeper-b"));

    // Each custodian gets their own share, once; nobody else gets one.
    assert_eq!(store.take_export_share("x3", &requester.id, &line("share_fetch", t(110))).await.unwrap(), None);
    let got = store.take_export_share("x3", &custodians[1].id, &line("share_fetch", t(110))).await.unwrap().unwrap();
    assert_eq!((got.index, got.sealed.as_deref()), (2, Some(&[2u8; 70][..])));
    assert_eq!(store.take_export_share("x3", &custodians[1].id, &line("share_fetch", t(111))).await.unwrap(), None);
    assert_eq!(ledger().await, 4, "one line per share handed over");
    // Two instances taking the same share at once: one gets it.
    let fetch = line("share_fetch", t(112));
    let (a, b) = tokio::join!(
        store.take_export_share("x3", &custodians[0].id, &fetch),
        store.take_export_share("x3", &custodians[0].id, &fetch),
    );
    assert_eq!([a.unwrap(), b.unwrap()].iter().filter(|s| s.is_some()).count(), 1);

    // Past the window, nothing is handed over even before the sweep.
    assert_eq!(store.take_export_share("x3", &custodians[2].id, &line("share_fetch", t(1000))).await.unwrap(), None);
    // The window closes: what is still held is destroyed, once.
    assert_eq!(store.discard_export_shares("x3", &line("share_discard", t(120))).await.unwrap(), 1);
    assert_eq!(store.discard_export_shares("x3", &line("share_discard", t(121))).await.unwrap(), 0);
    assert_eq!(store.take_export_share("x3", &custodians[2].id, &line("share_fetch", t(122))).await.unwrap(), None);
    let states: Vec<(u8, ShareState, Option<OffsetDateTime>)> = store
        .list_export_shares(Some("x3"), None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.index, s.state, s.ended_at))
        .collect();
    assert_eq!(
        states,
        [
            (1, ShareState::Fetched, Some(t(112))),
            (2, ShareState::Fetched, Some(t(110))),
            (3, ShareState::Discarded, Some(t(120)))
        ]
    );
    assert_eq!(ledger().await, 6);
    assert!(store.list_master_sealed().await.unwrap().iter().all(|v| v.kind != SealedKind::HeldShare), "no bytes kept");
}

pub async fn record_ids_page_through_a_collection(store: Arc<dyn Store>) {
    let c = collection(&*store, "customers").await;
    let other = collection(&*store, "employees").await;
    store.ensure_subject_key(c.id, &key("s1", 1, 1)).await.unwrap();
    store.ensure_subject_key(other.id, &key("s1", 1, 1)).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..7 {
        let r = record(&c, "s1", &[]);
        store.insert_record(&r).await.unwrap();
        ids.push(r.id);
    }
    store.insert_record(&record(&other, "s1", &[])).await.unwrap();
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.page_record_ids(c.id, after.as_ref(), 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().copied();
        seen.extend(page);
    }
    assert_eq!(seen, ids, "every record once, in id order, none of the other collection");
    let mut asked = vec![ids[3], RecordId::generate(), ids[0]];
    let got = store.get_records_with_keys(c.id, &asked).await.unwrap();
    let got_ids: Vec<RecordId> = got.iter().map(|(r, _)| r.id).collect();
    asked.remove(1);
    assert_eq!(got_ids, asked, "in the order asked, the missing one left out");
    assert!(got.iter().all(|(_, k)| k.as_ref().is_some_and(|k| k.subject == "s1")));
}

/// Every table, read in pages of three (so that paging after composite keys is exercised).
async fn dump(store: &dyn Store) -> Vec<Vec<Vec<Value>>> {
    let mut tables = Vec::new();
    for table in TABLES {
        let key = table.key_positions();
        let mut rows: Vec<Vec<Value>> = Vec::new();
        loop {
            let after: Option<Vec<Value>> = rows.last().map(|last| key.iter().map(|&i| last[i].clone()).collect());
            let page = store.read_table(table, after.as_deref(), 3).await.unwrap();
            if page.is_empty() {
                break;
            }
            rows.extend(page);
        }
        assert_eq!(store.count_rows(table).await.unwrap(), rows.len() as u64, "{}", table.name);
        tables.push(rows);
    }
    tables
}

pub async fn copy_store_copies_everything(from: Arc<dyn Store>, to: Arc<dyn Store>) {
    // Fill every table through the ordinary methods, reusing the other cases' data.
    meta_round_trip(from.clone()).await;
    erase_subject(from.clone()).await;
    users_and_sessions(from.clone()).await;
    account_security_state(from.clone()).await;
    audit_prune_keeps_the_chain(from.clone()).await;
    policy_versions_four_eyes(from.clone()).await;
    break_glass_grants(from.clone()).await;
    held_export_shares(from.clone()).await;
    let customers = from.get_collection("customers").await.unwrap().unwrap();
    from.add_kek(customers.id, &WrappedKek { version: 2, wrapped: vec![4; 60] }).await.unwrap();
    let sato = from.get_user_by_login("sato").await.unwrap().unwrap();
    from.set_totp(&sato.id, Some(&[8; 48]), &[[3; 32], [4; 32]]).await.unwrap();
    let source = dump(&*from).await;
    for (table, rows) in TABLES.iter().zip(&source) {
        assert!(!rows.is_empty(), "the source has rows in {}", table.name);
    }

    // An abandoned copy leaves nothing behind.
    let mut abandoned = to.begin_copy().await.unwrap();
    abandoned.insert_rows(&TABLES[0], source[0].clone()).await.unwrap();
    assert_eq!(abandoned.count_rows(&TABLES[0]).await.unwrap(), source[0].len() as u64);
    drop(abandoned);
    assert_eq!(to.count_rows(&TABLES[0]).await.unwrap(), 0);

    let seen = std::sync::Mutex::new(Vec::new());
    let counts = copy_store(&*from, &*to, &|p| seen.lock().unwrap().push((p.table, p.rows, p.total))).await.unwrap();
    let copied = dump(&*to).await;
    for ((table, a), b) in TABLES.iter().zip(&source).zip(&copied) {
        assert_eq!(a, b, "table {} copied byte for byte", table.name);
    }
    let expected: Vec<TableCount> =
        TABLES.iter().zip(&source).map(|(t, rows)| TableCount { table: t.name, rows: rows.len() as u64 }).collect();
    assert_eq!(counts, expected);
    let seen = seen.into_inner().unwrap();
    assert!(seen.iter().all(|(_, rows, total)| rows <= total));
    assert!(expected.iter().all(|c| seen.contains(&(c.table, c.rows, c.rows))), "each table reported complete");

    // A non-empty target is refused and keeps what it has.
    let again = copy_store(&*from, &*to, &|_| {}).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(dump(&*to).await, copied);

    // The copy is a working store: generated ids continue above the copied ones, the chain
    // goes on from its head, and the copied records are found by their tokens.
    let max_id = to.list_collections().await.unwrap().iter().map(|c| c.id).max().unwrap();
    assert!(collection(&*to, "later").await.id > max_id);
    let head = to.read_audit(1, 100).await.unwrap().last().unwrap().seq;
    assert_eq!(to.append_audit(&[event(99)]).await.unwrap(), head + 1);
    assert_eq!(to.find_by_token(customers.id, &token(3), 10).await.unwrap().len(), 1);
    assert_eq!(to.get_user(&sato.id).await.unwrap(), from.get_user(&sato.id).await.unwrap());
}

/// [`TABLES`] as (table, sorted columns), sorted by table: what each backend's test
/// compares with its migrated schema.
pub fn listed_tables() -> Vec<(String, Vec<String>)> {
    let mut tables: Vec<(String, Vec<String>)> = TABLES
        .iter()
        .map(|t| {
            let mut columns: Vec<String> = t.columns.iter().map(|c| (*c).to_owned()).collect();
            columns.sort();
            (t.name.to_owned(), columns)
        })
        .collect();
    tables.sort();
    tables
}

/// A change and its audit events are one transaction: both are there, or neither — when the
/// change is refused (a taken unique value, a record that is gone, an erased subject),
/// nothing is appended (000-8-access-7, 002-S-11-b).
pub async fn audited_changes_commit_with_their_events(store: Arc<dyn Store>) {
    let c = collection(&*store, "customers").await;
    keys_for(&*store, &c, &["S1", "S2"]).await;
    let head = || async { store.read_audit(1, 100).await.unwrap().len() as u64 };
    let r = record(&c, "S1", &[(1, true)]);
    let seq = store.apply_audited(&[AuditedChange::InsertRecord(r.clone())], &[event(1), event(2)]).await.unwrap();
    assert_eq!((seq, head().await), (2, 2));
    assert_eq!(store.get_record(c.id, &r.id).await.unwrap().as_ref(), Some(&r));
    assert_eq!(verify_chain(&*store).await, 2);

    let taken = record(&c, "S2", &[(1, true)]);
    let refused = store.apply_audited(&[AuditedChange::InsertRecord(taken.clone())], &[event(3)]).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    assert_eq!(store.get_record(c.id, &taken.id).await.unwrap(), None);
    let erased = record(&c, "S9", &[]);
    let refused = store.apply_audited(&[AuditedChange::InsertRecord(erased)], &[event(3)]).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    assert_eq!(head().await, 2, "a refused change appends nothing");

    let mut changed = r.clone();
    (changed.fields, changed.updated_at) = (vec![7; 40], t(9));
    assert_eq!(store.apply_audited(&[AuditedChange::UpdateRecord(changed.clone())], &[event(3)]).await.unwrap(), 3);
    assert_eq!(store.get_record(c.id, &r.id).await.unwrap().as_ref(), Some(&changed));
    let gone = AuditedChange::UpdateRecord(record(&c, "S1", &[]));
    assert_eq!(store.apply_audited(&[gone], &[event(4)]).await, Err(StoreError::NotFound));

    let delete = [AuditedChange::DeleteRecord { collection_id: c.id, id: r.id }];
    assert_eq!(store.apply_audited(&delete, &[event(4)]).await.unwrap(), 4);
    assert_eq!(store.get_record(c.id, &r.id).await.unwrap(), None);
    assert_eq!(store.apply_audited(&delete, &[event(5)]).await, Err(StoreError::NotFound));
    assert_eq!(head().await, 4);
    assert_eq!(verify_chain(&*store).await, 4);
}

/// The steps of an account change and its events commit together, in order, or not at all:
/// a step that fails (an account that is gone, a login that is taken) undoes the steps
/// before it and appends nothing (004-V-1-23).
pub async fn audited_account_changes_are_all_or_nothing(store: Arc<dyn Store>) {
    use AuditedChange::*;
    let head = || async { store.read_audit(1, 100).await.unwrap().len() as u64 };
    let user = UserRow::new(UserId::generate(), "suzuki".into(), "鈴木".into(), "staff".into(), "h0".into(), t(0));
    let id = user.id;
    assert_eq!(store.apply_audited(&[CreateUser(Box::new(user.clone()))], &[event(1)]).await.unwrap(), 1);
    let taken = UserRow { id: UserId::generate(), ..user.clone() };
    let refused = store.apply_audited(&[CreateUser(Box::new(taken.clone()))], &[event(2)]).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    assert_eq!(store.get_user(&taken.id).await.unwrap(), None);

    let session = |n: u8| SessionRow {
        token_hash: [n; 32],
        user_id: id,
        created_at: t(0),
        expires_at: t(3600),
        last_seen_at: t(0),
        password_change_only: false,
        mfa: false,
    };
    store.create_session(&session(1)).await.unwrap();
    store.create_session(&session(2)).await.unwrap();
    let disable = [SetUserDisabled { id, disabled: true }, DeleteUserSessions { id }];
    assert_eq!(store.apply_audited(&disable, &[event(2)]).await.unwrap(), 2);
    assert!(store.get_user(&id).await.unwrap().unwrap().disabled);
    assert!(store.list_user_sessions(&id).await.unwrap().is_empty());

    // Activation: a new password, sessions ended, enabled; all three or none.
    store.create_session(&session(3)).await.unwrap();
    let activate = |id| {
        [
            SetPassword { id, password_hash: "h1".into(), must_change: true, at: t(5) },
            DeleteUserSessions { id },
            EnableUser { id, at: t(5) },
            MarkUserReviewed { id, by: "user:reviewer".into(), at: t(6) },
        ]
    };
    let mut half = activate(id).to_vec();
    half.push(UnlockUser { id: UserId::generate() });
    assert_eq!(store.apply_audited(&half, &[event(3)]).await, Err(StoreError::NotFound));
    let unchanged = store.get_user(&id).await.unwrap().unwrap();
    assert_eq!((unchanged.password_hash.as_str(), unchanged.disabled, unchanged.enabled_at), ("h0", true, None));
    assert_eq!(store.list_user_sessions(&id).await.unwrap().len(), 1, "the sessions were not deleted");
    assert_eq!(store.password_history(&id, 5).await.unwrap(), Vec::<String>::new());
    assert_eq!(head().await, 2, "a refused change appends nothing");

    assert_eq!(store.apply_audited(&activate(id), &[event(3), event(4)]).await.unwrap(), 4);
    let active = store.get_user(&id).await.unwrap().unwrap();
    assert_eq!(
        (active.password_hash.as_str(), active.must_change_password, active.disabled, active.enabled_at),
        ("h1", true, false, Some(t(5)))
    );
    assert_eq!((active.reviewed_by.as_deref(), active.reviewed_at), (Some("user:reviewer"), Some(t(6))));
    assert_eq!(store.password_history(&id, 5).await.unwrap(), ["h0"]);
    assert!(store.list_user_sessions(&id).await.unwrap().is_empty());

    // Enrolment keeps the confirming step: the same code is not accepted again.
    let enrol = SetTotp {
        id,
        wrapped_secret: Some(vec![9; 40]),
        recovery_hashes: vec![[1; 32], [2; 32]],
        accepted_step: Some(77),
    };
    let profile = UserProfile {
        display_name: "鈴木 花子".into(),
        department: Some("経理部".into()),
        title: None,
        role: "manager".into(),
        valid_until: None,
        vendor: false,
        clearance: None,
        training_valid_until: None,
        pledge_signed_at: None,
        access_window: None,
    };
    let steps = [enrol, UpdateUserProfile { id, profile }, UnlockUser { id }];
    assert_eq!(store.apply_audited(&steps, &[event(5)]).await.unwrap(), 5);
    let enrolled = store.get_user(&id).await.unwrap().unwrap();
    assert_eq!((enrolled.totp_secret, enrolled.totp_last_step), (Some(vec![9; 40]), Some(77)));
    assert_eq!((enrolled.display_name.as_str(), enrolled.role.as_str()), ("鈴木 花子", "manager"));
    assert!(!store.advance_totp_step(&id, 77).await.unwrap());
    assert_eq!(store.recovery_code_hashes(&id).await.unwrap().len(), 2);
    let reset = [SetTotp { id, wrapped_secret: None, recovery_hashes: vec![], accepted_step: None }];
    assert_eq!(store.apply_audited(&reset, &[event(6)]).await.unwrap(), 6);
    assert!(store.recovery_code_hashes(&id).await.unwrap().is_empty());
    assert_eq!(store.get_user(&id).await.unwrap().unwrap().totp_secret, None);
    assert_eq!(verify_chain(&*store).await, 6);
}

/// Policy versions, break-glass grants, collections, schemas and take-out requests change
/// with their events or not at all; a compare-and-set step that finds its row moved on is a
/// `Conflict` that undoes the steps before it (004-V-1-23, 000-8-access-7).
pub async fn audited_governance_changes_are_all_or_nothing(store: Arc<dyn Store>) {
    use AuditedChange::*;
    let head = || async { store.read_audit(1, 100).await.unwrap().len() as u64 };
    let conflict = |r: Result<u64>| assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let user = UserRow::new(UserId::generate(), "kato".into(), "加藤".into(), "system_admin".into(), "$x".into(), t(0));
    store.create_user(&user).await.unwrap();

    let policy = |version: u64, status| policy_row(version, (version > 1).then_some(1), &format!("v{version}"), status);
    assert_eq!(
        store.apply_audited(&[AddPolicyVersion(Box::new(policy(1, Decision::Approved)))], &[event(1)]).await,
        Ok(1)
    );
    assert_eq!(
        store.apply_audited(&[AddPolicyVersion(Box::new(policy(2, Decision::Pending)))], &[event(2)]).await,
        Ok(2)
    );
    conflict(store.apply_audited(&[AddPolicyVersion(Box::new(policy(2, Decision::Pending)))], &[event(3)]).await);
    let decide = |version, approve| DecidePolicyVersion { version, approve, by: "user:b".into(), at: t(5) };
    assert_eq!(store.apply_audited(&[decide(2, true)], &[event(3)]).await, Ok(3));
    conflict(store.apply_audited(&[decide(2, false)], &[event(4)]).await);
    assert_eq!(store.active_policy_version().await.unwrap().unwrap().version, 2);

    let grant = pending_grant("g1", &user, "customers");
    assert_eq!(store.apply_audited(&[CreateGrant(Box::new(grant.clone()))], &[event(4)]).await, Ok(4));
    let change = |from, to| GrantChange { from, to, by: "user:b".into(), at: t(10), expires_at: Some(t(3610)) };
    let revoke = DecideGrant { id: "g1".into(), change: change(Decision::Approved, Decision::Revoked) };
    conflict(store.apply_audited(&[revoke], &[event(5)]).await);
    let approve = DecideGrant { id: "g1".into(), change: change(Decision::Pending, Decision::Approved) };
    assert_eq!(store.apply_audited(&[approve], &[event(5)]).await, Ok(5));
    assert_eq!(store.active_grants(&user.id, "customers", t(20)).await.unwrap().len(), 1);

    let new = |name: &str| NewCollection {
        name: name.into(),
        schema_json: format!("{{\"name\":\"{name}\"}}"),
        kek: WrappedKek { version: 1, wrapped: vec![1; 60] },
        wrapped_index_key: vec![2; 60],
        created_at: t(0),
    };
    assert_eq!(store.apply_audited(&[CreateCollection(Box::new(new("customers")))], &[event(6)]).await, Ok(6));
    conflict(store.apply_audited(&[CreateCollection(Box::new(new("customers")))], &[event(7)]).await);
    let c = store.get_collection("customers").await.unwrap().unwrap();
    let schema =
        |expected_current| AddSchemaVersion { collection_id: c.id, expected_current, schema_json: "{}".into() };
    conflict(store.apply_audited(&[schema(2)], &[event(7)]).await);
    assert_eq!(store.apply_audited(&[schema(1)], &[event(7)]).await, Ok(7));
    assert_eq!(store.get_collection("customers").await.unwrap().unwrap().schema_version, 2);
    let kek = AddKek { collection_id: c.id, kek: WrappedKek { version: 2, wrapped: vec![3; 60] } };
    let (kek_twice, head_now) = ([kek.clone(), kek], head().await);
    assert!(store.apply_audited(&kek_twice, &[event(8)]).await.is_err(), "a version exists once");
    assert_eq!((store.get_keks(c.id).await.unwrap().len(), head().await), (1, head_now));

    let line = |kind: &str| LedgerRow {
        seq: 0,
        export_id: Some("x1".into()),
        kind: kind.into(),
        at: t(20),
        actor: "user:x".into(),
        user_id: Some(user.id),
        rows: 0,
        detail: "{}".into(),
    };
    let request = CreateExport { export: Box::new(export_request("x1", &user)), entry: Box::new(line("request")) };
    assert_eq!(store.apply_audited(&[request], &[event(8)]).await, Ok(8));
    let take = |used_before| TakeExportDownload { id: "x1".into(), entry: Box::new(line("download")), used_before };
    conflict(store.apply_audited(&[take(0)], &[event(9)]).await);
    let export_change = |from| ExportChange {
        from,
        to: ExportStatus::Cancelled,
        by: "user:x".into(),
        at: t(30),
        download_until: None,
        secret: None,
    };
    let close =
        |from| ChangeExport { id: "x1".into(), change: Box::new(export_change(from)), entry: Box::new(line("cancel")) };
    // Several steps: a collection, a ledger line, then a decision that no longer applies.
    let steps = [
        CreateCollection(Box::new(new("patients"))),
        AddLedger(Box::new(line("alert"))),
        close(ExportStatus::Approved),
    ];
    conflict(store.apply_audited(&steps, &[event(9)]).await);
    assert_eq!(store.get_collection("patients").await.unwrap(), None);
    assert_eq!(store.list_ledger(Some("x1"), None).await.unwrap().len(), 1, "only the request's line");
    assert_eq!(head().await, 8, "no refused change appended anything");
    let mut approved = export_request("x2", &user);
    (approved.status, approved.download_until) = (ExportStatus::Approved, Some(t(3600)));
    let entry = Box::new(LedgerRow { export_id: Some("x2".into()), ..line("request") });
    assert_eq!(store.apply_audited(&[CreateExport { export: Box::new(approved), entry }], &[event(9)]).await, Ok(9));
    let take = |used_before| TakeExportDownload {
        id: "x2".into(),
        entry: Box::new(LedgerRow { export_id: Some("x2".into()), ..line("download") }),
        used_before,
    };
    conflict(store.apply_audited(&[take(1)], &[event(10)]).await);
    assert_eq!(store.apply_audited(&[take(0)], &[event(10)]).await, Ok(10));
    conflict(store.apply_audited(&[take(0)], &[event(11)]).await);
    assert_eq!(store.get_export("x2").await.unwrap().unwrap().downloads_used, 1);
    assert_eq!(store.list_ledger(Some("x2"), None).await.unwrap().len(), 2);
    assert_eq!(store.apply_audited(&[close(ExportStatus::Pending)], &[event(11)]).await, Ok(11));
    assert_eq!(store.get_export("x1").await.unwrap().unwrap().status, ExportStatus::Cancelled);
    assert_eq!(store.list_ledger(Some("x1"), None).await.unwrap().len(), 2);

    // A precondition on an installation fact (the master key's check) guards the steps.
    store.put_meta("key_check", b"v1").await.unwrap();
    let guarded = |value: &[u8]| {
        [CreateCollection(Box::new(new("guarded"))), MetaIs { key: "key_check".into(), value: value.to_vec() }]
    };
    conflict(store.apply_audited(&guarded(b"v0"), &[event(12)]).await);
    assert_eq!(store.get_collection("guarded").await.unwrap(), None);
    assert_eq!(store.apply_audited(&guarded(b"v1"), &[event(12)]).await, Ok(12));
    assert_eq!(verify_chain(&*store).await, 12);
}

/// An erasure commits with its event only when it deletes exactly what the event counts; a
/// record written meanwhile makes it a `Conflict` that erases nothing (000-8-access-7).
pub async fn audited_erasure_counts_what_it_erases(store: Arc<dyn Store>) {
    use AuditedChange::EraseSubject;
    let (c1, c2) = (collection(&*store, "customers").await, collection(&*store, "patients").await);
    keys_for(&*store, &c1, &["S1", "S2"]).await;
    keys_for(&*store, &c2, &["S1"]).await;
    for r in [record(&c1, "S1", &[(1, true)]), record(&c1, "S1", &[]), record(&c2, "S1", &[(2, false)])] {
        store.insert_record(&r).await.unwrap();
    }
    let other = record(&c1, "S2", &[]);
    store.insert_record(&other).await.unwrap();
    let cert = ErasureCertificateRow { id: "cert-1".into(), subject: "S1".into(), ..Default::default() };
    let erase = |keys_destroyed, records_deleted| EraseSubject {
        subject: "S1".into(),
        certificate: Box::new(cert.clone()),
        expected: ErasureCounts { keys_destroyed, records_deleted },
    };
    for (keys, records) in [(2, 2), (1, 3)] {
        let refused = store.apply_audited(&[erase(keys, records)], &[event(1)]).await;
        assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    }
    assert_eq!(store.find_by_subject(c1.id, "S1", 10).await.unwrap().len(), 2, "nothing erased");
    assert_eq!(store.get_subject_keys(c2.id, &["S1"]).await.unwrap().len(), 1);
    assert!(store.list_erasure_certificates().await.unwrap().is_empty());
    assert!(store.read_audit(1, 10).await.unwrap().is_empty());

    assert_eq!(store.apply_audited(&[erase(2, 3)], &[event(1)]).await, Ok(1));
    assert!(store.find_by_subject(c1.id, "S1", 10).await.unwrap().is_empty());
    assert!(store.find_by_token(c1.id, &token(1), 10).await.unwrap().is_empty());
    assert!(store.get_subject_keys(c2.id, &["S1"]).await.unwrap().is_empty());
    let stored = store.list_erasure_certificates().await.unwrap();
    assert_eq!((stored.len(), stored[0].keys_destroyed, stored[0].records_deleted), (1, 2, 3));
    assert_eq!(store.get_record(c1.id, &other.id).await.unwrap().as_ref(), Some(&other), "another subject's");
    assert_eq!(verify_chain(&*store).await, 1);
}
