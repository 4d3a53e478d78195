//! The audit trail under attack: someone with write access to the SQLite file changes,
//! deletes, inserts, reorders or truncates events, or bends a checkpoint signature — each is
//! found with the right sequence number and kind (002-S-11-b, 004-V-1-4-c, 004-V-1-33-c).
//! Also: signed checkpoints and the external file, queries, review marks, retention.

mod common;

use common::{Fixture, PASSWORD};
use mamori_core::access::Role;
use mamori_core::audit::{AuditEvent, Outcome, SignedCheckpoint, chain_hash};
use mamori_core::clock::{Clock, ManualClock, SystemClock};
use mamori_crypto::{AuditSigningKey, AuditVerifyingKey};
use mamori_store::Store;
use mamori_store_sqlite::SqliteStore;
use mamori_vault::{
    AuditFilter, AuditLog, AuditSettings, NewUser, ProblemKind, VaultConfig, VaultError, VerifyReport, View,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A fixture that signs checkpoints and writes them to `<dir>/checkpoints.jsonl`. With the
/// triggers this far apart, checkpoints are taken after the first batch and whenever a test
/// asks: their positions are known.
async fn signed(clock: Arc<dyn Clock>) -> (Fixture, PathBuf) {
    let file = tempfile::tempdir().unwrap().keep().join("checkpoints.jsonl");
    let config = VaultConfig {
        audit: AuditSettings {
            signing_key: Some(Arc::new(AuditSigningKey::generate())),
            checkpoint_every_events: 1_000_000,
            checkpoint_every: Duration::from_secs(24 * 3600),
            checkpoint_file: Some(file.clone()),
            ..AuditSettings::default()
        },
        ..VaultConfig::default()
    };
    (Fixture::build(config, clock).await, file)
}

/// A signed installation with some activity: logins, imports, reads (about 30 events), and a
/// checkpoint of everything.
async fn busy() -> (Fixture, PathBuf, u64) {
    let (f, file) = signed(Arc::new(SystemClock)).await;
    let (manager, _) = f.user("mgr", Role::Manager).await;
    f.import(&manager, &common::people_csv(5, 3)).await.unwrap();
    for _ in 0..3 {
        let missing = mamori_core::ids::RecordId::generate();
        assert!(f.vault.get_record(&manager, "customers", &missing, View::Masked, None).await.is_err());
    }
    for i in 0..10 {
        let _ = f.vault.login(&format!("nobody{i}"), &mamori_crypto::SecretString::new("x".repeat(12)), None).await;
    }
    let head = f.vault.flush_audit_checkpoint().await.unwrap().expect("a checkpoint of the head").seq;
    assert!(head > 15, "{head}");
    let report = f.vault.verify_audit().await.unwrap();
    assert!(report.ok, "{report:?}");
    (f, file, head)
}

fn db(f: &Fixture) -> rusqlite::Connection {
    rusqlite::Connection::open(f.db_path()).unwrap()
}

#[track_caller]
fn assert_found(report: &VerifyReport, seq: u64, kind: ProblemKind) {
    assert!(!report.ok, "{report:#?}");
    assert_eq!((report.first_bad_seq, report.kind), (Some(seq), Some(kind)), "{report:#?}");
}

fn row(conn: &rusqlite::Connection, seq: i64) -> (String, Vec<u8>) {
    conn.query_row("SELECT event_json, hash FROM audit_events WHERE seq = ?1", [seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
}

/// Moves the rows from `from` on by `by` (negative: down), without tripping the primary key.
fn shift(conn: &rusqlite::Connection, from: i64, by: i64) {
    conn.execute("UPDATE audit_events SET seq = -(seq + ?2) WHERE seq >= ?1", [from, by]).unwrap();
    conn.execute("UPDATE audit_events SET seq = -seq WHERE seq < 0", []).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_are_signed_stored_and_appended_to_the_external_file() {
    let (f, file, head) = busy().await;
    let key = f.store().get_meta(mamori_vault::AUDIT_PUBLIC_KEY).await.unwrap().unwrap();
    let public = mamori_crypto::AuditVerifyingKey::from_der(&key).unwrap();
    let lines: Vec<SignedCheckpoint> =
        std::fs::read_to_string(&file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= 2, "{lines:?}");
    assert_eq!(lines.last().unwrap().seq, head);
    for line in &lines {
        let (c, sig) = line.decode().unwrap();
        assert!(public.verify(&c.signing_bytes(), &sig), "{line:?}");
    }
    let stored = f.store().read_audit_checkpoints(0, 100).await.unwrap();
    assert_eq!(stored.len(), lines.len());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let report = f.vault.verify_audit().await.unwrap();
    assert_eq!((report.signed_up_to, report.external_checkpoints), (Some(head), lines.len() as u64));
    let health = f.vault.audit_health();
    assert!(health.checkpoint_file_ok && health.checkpoints_enabled, "{health:?}");
    assert_eq!(health.last_checkpoint_seq, Some(head));

    // The same key is required to reopen: another one is refused before anything happens.
    drop(f.vault.clone());
    let other = VaultConfig {
        audit: AuditSettings { signing_key: Some(Arc::new(AuditSigningKey::generate())), ..Default::default() },
        ..VaultConfig::default()
    };
    let err = common::open_with(&f.dir, &f.master, Arc::new(SystemClock), other).await.unwrap_err();
    assert!(matches!(err, VaultError::Integrity(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_are_taken_every_n_events() {
    let file = tempfile::tempdir().unwrap().keep().join("checkpoints.jsonl");
    let config = VaultConfig {
        audit: AuditSettings {
            signing_key: Some(Arc::new(AuditSigningKey::generate())),
            checkpoint_every_events: 5,
            checkpoint_every: Duration::from_secs(24 * 3600),
            checkpoint_file: Some(file.clone()),
            ..AuditSettings::default()
        },
        ..VaultConfig::default()
    };
    let f = Fixture::build(config, Arc::new(SystemClock)).await;
    for i in 0..20 {
        let _ = f.vault.login(&format!("nobody{i}"), &mamori_crypto::SecretString::new("x".repeat(12)), None).await;
    }
    // Checkpoints are signed after their batch commits, in the background: wait until the
    // database and the file agree (each checkpoint is stored, then appended to the file).
    let mut seqs: Vec<u64> = Vec::new();
    let mut lines = usize::MAX;
    for _ in 0..200 {
        seqs = f.store().read_audit_checkpoints(0, 100).await.unwrap().iter().map(|c| c.seq).collect();
        lines = std::fs::read_to_string(&file).unwrap_or_default().lines().count();
        let again = f.store().read_audit_checkpoints(0, 100).await.unwrap().len();
        if lines == seqs.len() && again == seqs.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The first batch (nothing signed yet) and then every 5 events.
    assert!(seqs.len() >= 4, "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1] - w[0] >= 5), "{seqs:?}");
    assert_eq!(lines, seqs.len());
    // A forced checkpoint covers the caller's event, whether or not a trigger took it first.
    for _ in 0..6 {
        let c = f.vault.checkpoint_audit(&f.admin).await.unwrap().expect("a covering checkpoint");
        let head = f.store().query_audit(&mamori_store::AuditQuery { limit: 1000, ..Default::default() }).await;
        assert_eq!(c.seq, head.unwrap().last().unwrap().seq);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn modified_event_is_detected() {
    let (f, _, _) = busy().await;
    let conn = db(&f);
    let (json, _) = row(&conn, 9);
    // One byte: a digit of the timestamp.
    let at = json.find("\"at\":\"").unwrap() + 8;
    let mut bytes = json.into_bytes();
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    conn.execute("UPDATE audit_events SET event_json = ?1 WHERE seq = 9", [String::from_utf8(bytes).unwrap()]).unwrap();
    assert_found(&f.vault.verify_audit().await.unwrap(), 9, ProblemKind::Modified);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_event_is_detected() {
    let (f, _, _) = busy().await;
    let conn = db(&f);
    conn.execute("DELETE FROM audit_events WHERE seq = 9", []).unwrap();
    assert_found(&f.vault.verify_audit().await.unwrap(), 9, ProblemKind::Deleted);
    // Closing the gap by renumbering the rest does not hide it.
    shift(&conn, 10, -1);
    assert_found(&f.vault.verify_audit().await.unwrap(), 9, ProblemKind::Deleted);
}

#[tokio::test(flavor = "multi_thread")]
async fn inserted_event_is_detected() {
    let (f, _, _) = busy().await;
    let conn = db(&f);
    // A forged "nobody read anything" event slipped in at 9, the rest moved up, and its hash
    // made to fit the chain before it (the chain hash has no secret).
    let (_, prev) = row(&conn, 8);
    let forged = AuditEvent::new(SystemClock.now(), "user:forged", "auth.logout", Outcome::Success);
    let json = forged.canonical_json();
    let hash = chain_hash(&prev.try_into().unwrap(), 9, &json);
    shift(&conn, 9, 1);
    conn.execute("INSERT INTO audit_events (seq, event_json, hash) VALUES (9, ?1, ?2)", rusqlite::params![json, hash])
        .unwrap();
    assert_found(&f.vault.verify_audit().await.unwrap(), 9, ProblemKind::Inserted);
    // The same with a careless forger whose hash is garbage.
    conn.execute("UPDATE audit_events SET hash = zeroblob(32) WHERE seq = 9", []).unwrap();
    assert_found(&f.vault.verify_audit().await.unwrap(), 9, ProblemKind::Inserted);
}

#[tokio::test(flavor = "multi_thread")]
async fn swapped_events_are_detected() {
    let (f, _, _) = busy().await;
    let conn = db(&f);
    conn.execute_batch(
        "UPDATE audit_events SET seq = -1 WHERE seq = 9;
         UPDATE audit_events SET seq = 9 WHERE seq = 12;
         UPDATE audit_events SET seq = 12 WHERE seq = -1;",
    )
    .unwrap();
    assert_found(&f.vault.verify_audit().await.unwrap(), 9, ProblemKind::Reordered);
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_tail_behind_an_external_checkpoint_is_detected() {
    let (f, file, head) = busy().await;
    let conn = db(&f);
    // Remove the last events and every stored checkpoint that mentions them.
    let keep = head - 6;
    conn.execute("DELETE FROM audit_events WHERE seq > ?1", [keep]).unwrap();
    conn.execute("DELETE FROM audit_checkpoints WHERE seq > ?1", [keep]).unwrap();
    assert_found(&f.vault.verify_audit().await.unwrap(), keep + 1, ProblemKind::TruncatedBehindCheckpoint);
    // The database alone cannot tell: it is the external file that remembers.
    let elsewhere = f.dir.path().join("empty.jsonl");
    std::fs::write(&elsewhere, "").unwrap();
    assert!(f.vault.verify_audit_with(Some(&elsewhere)).await.unwrap().ok);
    assert!(f.vault.verify_audit_with(Some(&file)).await.unwrap().kind == Some(ProblemKind::TruncatedBehindCheckpoint));
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_checkpoint_signatures_are_detected() {
    let (f, file, head) = busy().await;
    // A stored checkpoint's signature bent by one bit.
    let conn = db(&f);
    let sig: Vec<u8> =
        conn.query_row("SELECT signature FROM audit_checkpoints WHERE seq = ?1", [head], |r| r.get(0)).unwrap();
    let mut bent = sig.clone();
    bent[5] ^= 1;
    conn.execute("UPDATE audit_checkpoints SET signature = ?1 WHERE seq = ?2", rusqlite::params![bent, head]).unwrap();
    assert_found(&f.vault.verify_audit().await.unwrap(), head, ProblemKind::BadSignature);
    conn.execute("UPDATE audit_checkpoints SET signature = ?1 WHERE seq = ?2", rusqlite::params![sig, head]).unwrap();
    assert!(f.vault.verify_audit().await.unwrap().ok);

    // A line of the external file re-signed by someone else's key.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<SignedCheckpoint> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = lines.last_mut().unwrap();
    let (c, _) = last.decode().unwrap();
    *last = SignedCheckpoint::new(&c, &AuditSigningKey::generate().sign(&c.signing_bytes()));
    let forged: String = lines.iter().map(|l| serde_json::to_string(l).unwrap() + "\n").collect();
    std::fs::write(&file, forged).unwrap();
    assert_found(&f.vault.verify_audit().await.unwrap(), head, ProblemKind::BadSignature);
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_rewritten_with_recomputed_hashes_is_caught_by_the_signatures() {
    let (f, _, head) = busy().await;
    let conn = db(&f);
    // The attacker edits event 9 and recomputes every hash after it: the chain is consistent.
    let (json, _) = row(&conn, 9);
    let edited = json.replacen("\"at\":\"2", "\"at\":\"1", 1);
    assert_ne!(edited, json);
    conn.execute("UPDATE audit_events SET event_json = ?1 WHERE seq = 9", [edited]).unwrap();
    let (_, prev) = row(&conn, 8);
    let mut prev: [u8; 32] = prev.try_into().unwrap();
    for seq in 9..=head as i64 {
        let (json, _) = row(&conn, seq);
        prev = chain_hash(&prev, seq as u64, &json);
        conn.execute("UPDATE audit_events SET hash = ?1 WHERE seq = ?2", rusqlite::params![prev, seq]).unwrap();
    }
    let report = f.vault.verify_audit().await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.kind, Some(ProblemKind::Rewritten), "{report:#?}");
    let first_checkpoint = f.store().read_audit_checkpoints(0, 1).await.unwrap()[0].seq;
    assert_eq!(report.first_bad_seq, Some(first_checkpoint + 1), "{report:#?}");
}

/// The writer signs only what it has verified itself: after a change behind its back, no
/// checkpoint covers the doctored events, and the failure is visible.
#[tokio::test(flavor = "multi_thread")]
async fn no_checkpoint_is_signed_over_a_broken_chain() {
    let (f, _, head) = busy().await;
    for _ in 0..2 {
        f.vault.login("nobody", &mamori_crypto::SecretString::new("x".repeat(12)), None).await.unwrap_err();
    }
    let sql = "UPDATE audit_events SET event_json = replace(event_json, 'anonymous', 'someone') WHERE seq = ?1";
    assert_eq!(db(&f).execute(sql, [head as i64 + 1]).unwrap(), 1);
    let err = f.vault.flush_audit_checkpoint().await.unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    assert_eq!(f.store().last_audit_checkpoint().await.unwrap().unwrap().seq, head);
    let health = f.vault.audit_health();
    assert!(health.checkpoint_failures >= 1, "{health:?}");
}

/// What someone holding the database file has to do to change an indexed column, which
/// SQLite generates from the event: rewrite the table's definition into ordinary columns
/// (`PRAGMA writable_schema`), fill them from the events, and rebuild the indexes.
fn make_columns_writable(conn: &rusqlite::Connection) {
    let indexes = ["at", "actor", "action", "subject", "collection", "record"];
    for index in indexes {
        conn.execute_batch(&format!("DROP INDEX audit_events_{index}")).unwrap();
    }
    let version: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0)).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA writable_schema = ON;
         UPDATE sqlite_schema SET sql = 'CREATE TABLE audit_events (seq INTEGER PRIMARY KEY, event_json TEXT NOT NULL,
             hash BLOB NOT NULL, at INTEGER, actor TEXT, action TEXT, outcome TEXT, collection TEXT, record TEXT,
             subject TEXT)' WHERE name = 'audit_events';
         PRAGMA writable_schema = OFF;
         PRAGMA schema_version = {};",
        version + 1
    ))
    .unwrap();
    let reopened = rusqlite::Connection::open(conn.path().unwrap()).unwrap();
    reopened
        .execute_batch(
            "UPDATE audit_events SET at = (unixepoch(substr(event_json ->> '$.at', 1, 19)) * 1000000
                 + CAST(substr(rtrim(substr(event_json ->> '$.at', 21), 'Z') || '000000', 1, 6) AS INTEGER)),
             actor = event_json ->> '$.actor', action = event_json ->> '$.action',
             outcome = event_json ->> '$.outcome', collection = event_json ->> '$.collection',
             record = event_json ->> '$.record', subject = event_json ->> '$.subject';",
        )
        .unwrap();
    for index in indexes {
        let columns = if index == "at" { "at".to_owned() } else { format!("{index}, seq") };
        reopened.execute_batch(&format!("CREATE INDEX audit_events_{index} ON audit_events ({columns})")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn altered_index_columns_are_reported() {
    let (f, _, _) = busy().await;
    let conn = db(&f);
    // The columns are generated from the event: an UPDATE of one is refused.
    let seq: i64 =
        conn.query_row("SELECT seq FROM audit_events WHERE collection IS NOT NULL LIMIT 1", [], |r| r.get(0)).unwrap();
    let sql = "UPDATE audit_events SET collection = 'elsewhere' WHERE seq = ?1";
    assert!(conn.execute(sql, [seq]).unwrap_err().to_string().contains("generated column"));
    assert!(f.vault.verify_audit().await.unwrap().ok);
    // Hiding an access from a query by changing the indexed column only, after rewriting the
    // table's definition: verification sees the definition changed and compares every
    // event's columns with the event again.
    make_columns_writable(&conn);
    assert_eq!(f.store().audit_column_source().await.unwrap(), mamori_store::AuditColumnSource::Altered);
    let report = f.vault.verify_audit().await.unwrap();
    assert!(report.ok, "the columns still say what the events say");
    assert!(report.warnings.iter().any(|w| w.contains("definition is not the one")), "{:?}", report.warnings);
    let conn = db(&f);
    conn.execute(sql, [seq]).unwrap();
    assert_found(&f.vault.verify_audit().await.unwrap(), seq as u64, ProblemKind::Modified);
    // A query that lands on the doctored row refuses to answer instead of misleading.
    let (auditor, _) = f.user("aud", Role::Auditor).await;
    let filter = AuditFilter { collection: Some("elsewhere".into()), ..Default::default() };
    let err = f.vault.query_audit(&auditor, &filter).await.unwrap_err();
    assert!(matches!(err, VaultError::Integrity(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unwritable_audit_store_fails_closed_and_a_failing_checkpoint_file_does_not() {
    let (f, file, _) = busy().await;
    let (manager, _) = f.user("mgr2", Role::Manager).await;
    let (ops, _) = f.user("ops", Role::SystemAdmin).await;
    let (_, clerk_token) = f.user("clerk", Role::Staff).await;
    let (_, policy_text) = f.vault.policy_version(&ops, None).await.unwrap();
    let id =
        f.vault.create_record(&manager, "customers", None, &[("name".to_owned(), "試験 太郎".to_owned())].into()).await;
    let id = id.unwrap();
    // The checkpoint file becomes a directory: writes to it fail, requests go on.
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    f.vault.get_record(&manager, "customers", &id, View::Masked, None).await.unwrap();
    f.vault.flush_audit_checkpoint().await.unwrap();
    let health = f.vault.audit_health();
    assert!(!health.checkpoint_file_ok && health.checkpoint_file_failures >= 1, "{health:?}");
    assert!(health.last_error.as_deref().unwrap_or("").contains("checkpoint file"), "{health:?}");

    // The audit table refuses writes: reads fail closed, nothing is returned.
    db(&f)
        .execute_batch("CREATE TRIGGER no_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'full'); END;")
        .unwrap();
    let err = f.vault.get_record(&manager, "customers", &id, View::Full, None).await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    assert!(f.vault.audit_health().append_failures >= 1);
    // Changes are committed with their events or not at all: none of these happens.
    let collection = f.store().get_collection("customers").await.unwrap().unwrap().id;
    let (records, head) =
        (f.store().count_records(collection).await.unwrap(), mamori_vault::audit_head_seq(&**f.store()).await.unwrap());
    let fields = [("name".to_owned(), "試験 次郎".to_owned())].into();
    let failures = f.vault.audit_health().append_failures;
    let err = f.vault.create_record(&manager, "customers", None, &fields).await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    let err = f.vault.update_record(&manager, "customers", &id, &fields).await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    let err = f.vault.delete_record(&manager, "customers", &id).await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    assert_eq!(f.vault.audit_health().append_failures, failures + 3);
    // So are administrators' changes to accounts (004-V-1-23): a locked account stays locked.
    let clerk = f.store().get_user_by_login("clerk").await.unwrap().unwrap();
    let now = SystemClock.now();
    f.store().record_login_failure(&clerk.id, now, 1, now + time::Duration::hours(1)).await.unwrap();
    let err = f.vault.unlock_user(&f.admin, "clerk").await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    assert!(f.store().get_user(&clerk.id).await.unwrap().unwrap().locked_until.is_some(), "still locked");
    // Except what protects: a disable is made even so (and still answered 503), with the
    // account's sessions ended, rather than leaving open an account someone is closing.
    assert!(!f.store().list_user_sessions(&clerk.id).await.unwrap().is_empty());
    let err = f.vault.set_user_disabled(&f.admin, "clerk", true).await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    assert!(f.store().get_user(&clerk.id).await.unwrap().unwrap().disabled);
    assert!(f.store().list_user_sessions(&clerk.id).await.unwrap().is_empty());
    assert!(f.vault.authenticate(&clerk_token, None).await.is_err());
    let new = NewUser::new("mgr3", "試験 三郎", Role::Manager);
    let err = f.vault.create_user(&f.admin, new).await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    // And policy, break-glass and schema changes.
    let err = f.vault.propose_policy(&ops, &policy_text, "unchanged").await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    let err = f.vault.request_break_glass(&ops, "customers", 60, "障害調査のため顧客記録を確認").await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    let mut schema = mamori_core::schema::CollectionSchema::from_toml(mamori_synth::CUSTOMERS_SCHEMA_TOML).unwrap();
    schema.name = mamori_core::ids::CollectionName::new("patients").unwrap();
    let err = f.vault.create_collection(&f.admin, &schema).await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    db(&f).execute_batch("DROP TRIGGER no_audit").unwrap();
    assert_eq!(f.store().list_policy_versions().await.unwrap().len(), 1);
    assert!(f.store().list_grants().await.unwrap().is_empty());
    assert_eq!(f.store().get_collection("patients").await.unwrap(), None);
    assert_eq!(f.store().get_user_by_login("mgr3").await.unwrap(), None);
    assert_eq!(f.store().count_records(collection).await.unwrap(), records);
    assert_eq!(mamori_vault::audit_head_seq(&**f.store()).await.unwrap(), head);
    let kept = f.vault.get_record(&manager, "customers", &id, View::Full, None).await.unwrap();
    assert_eq!(kept.fields.get("name").map(String::as_str), Some("試験 太郎"), "{kept:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_find_subjects_users_failed_logins_and_admin_operations_and_are_audited() {
    let (f, _) = signed(Arc::new(SystemClock)).await;
    let (manager, _) = f.user("mgr", Role::Manager).await;
    let (staff, _) = f.user("staffer", Role::Staff).await;
    let (auditor, _) = f.user("aud", Role::Auditor).await;
    let subject = mamori_core::ids::SubjectId::new("CUST-1").unwrap();
    let fields = [("name".to_owned(), "試験 花子".to_owned())].into();
    let id = f.vault.create_record(&manager, "customers", Some(subject.clone()), &fields).await.unwrap();
    f.vault.get_record(&staff, "customers", &id, View::Masked, None).await.unwrap();
    f.vault.get_record(&manager, "customers", &id, View::Full, None).await.unwrap();
    let _ = f.vault.login("staffer", &mamori_crypto::SecretString::new("wrong-password".into()), None).await;
    let _ = f.vault.login("staffer", &mamori_crypto::SecretString::new(PASSWORD.into()), None).await.unwrap();

    let who = |filter: AuditFilter| {
        let (f, auditor) = (&f, &auditor);
        async move { f.vault.query_audit(auditor, &filter).await.unwrap() }
    };
    // Who accessed this data subject.
    let page = who(AuditFilter { subject: Some("CUST-1".into()), ..Default::default() }).await;
    let seen: Vec<(Option<String>, String)> =
        page.events.iter().map(|e| (e.login.clone(), e.event.action.clone())).collect();
    assert_eq!(
        seen,
        [
            (Some("mgr".into()), "record.create".into()),
            (Some("staffer".into()), "record.read".into()),
            (Some("mgr".into()), "record.read".into())
        ]
    );
    // What did this user do; failed logins; administrator operations.
    let page = who(AuditFilter { login: Some("staffer".into()), action: Some("record.".into()), ..Default::default() });
    assert_eq!(page.await.events.len(), 1);
    let page = who(AuditFilter { failed_logins: true, ..Default::default() }).await;
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].event.reason.as_deref(), Some("wrong password"));
    let page = who(AuditFilter { admin_ops: true, ..Default::default() }).await;
    let actions: Vec<&str> = page.events.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(actions, ["collection.create", "user.create", "user.create", "user.create"]);
    assert!(page.last_review.is_none());
    // Paging.
    let first = who(AuditFilter { limit: Some(2), ..Default::default() }).await;
    assert_eq!(first.events.len(), 2);
    let next = who(AuditFilter { limit: Some(2), after_seq: first.next_after_seq.unwrap(), ..Default::default() });
    assert!(next.await.events[0].seq > first.events[1].seq);
    // Bad filters are refused; the limit is capped.
    for bad in [
        AuditFilter { limit: Some(5000), ..Default::default() },
        AuditFilter { subject: Some("山田".into()), ..Default::default() },
        AuditFilter { action: Some("record%".into()), ..Default::default() },
        AuditFilter { failed_logins: true, admin_ops: true, ..Default::default() },
    ] {
        let err = f.vault.query_audit(&auditor, &bad).await.unwrap_err();
        assert!(matches!(err, VaultError::Invalid(_)), "{bad:?}: {err:?}");
    }
    // Only audit readers query, and every query is itself on record.
    let denied = f.vault.query_audit(&staff, &AuditFilter::default()).await.unwrap_err();
    assert!(matches!(denied, VaultError::Forbidden));
    let page = who(AuditFilter { action: Some("audit.query".into()), ..Default::default() }).await;
    assert!(page.events.iter().any(|e| e.event.outcome == Outcome::Denied && e.login.as_deref() == Some("staffer")));
    let mine = page.events.iter().find(|e| e.event.reason.as_deref() == Some("subject=CUST-1")).expect("audited");
    assert_eq!((mine.login.as_deref(), mine.event.rows), (Some("aud"), Some(3)));
}

#[tokio::test(flavor = "multi_thread")]
async fn review_marks_are_audit_events() {
    let (f, _) = signed(Arc::new(SystemClock)).await;
    let (auditor, _) = f.user("aud", Role::Auditor).await;
    let (staff, _) = f.user("staffer", Role::Staff).await;
    let page = f.vault.query_audit(&auditor, &AuditFilter { admin_ops: true, ..Default::default() }).await.unwrap();
    let up_to = page.events.last().unwrap().seq;
    let mark =
        f.vault.review_audit(&auditor, up_to, "accounts created for the pilot; matches ticket 42").await.unwrap();
    assert_eq!((mark.reviewed_to, mark.reviewer_login.as_deref()), (up_to, Some("aud")));
    let page = f.vault.query_audit(&auditor, &AuditFilter { admin_ops: true, ..Default::default() }).await.unwrap();
    assert_eq!(page.last_review, Some(mark.clone()));
    let events = f.store().read_audit(mark.seq, 1).await.unwrap();
    let event: AuditEvent = serde_json::from_str(&events[0].event_json).unwrap();
    assert_eq!((event.action.as_str(), event.reviewed_to), ("audit.review", Some(up_to)));

    assert!(matches!(f.vault.review_audit(&staff, up_to, "x").await, Err(VaultError::Forbidden)));
    for (seq, note) in [(up_to, ""), (up_to, "two\nlines"), (999_999, "ok"), (0, "ok")] {
        let err = f.vault.review_audit(&auditor, seq, note).await.unwrap_err();
        assert!(matches!(err, VaultError::Invalid(_)), "{seq} {note:?}: {err:?}");
    }
    assert!(f.vault.verify_audit().await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn pruning_keeps_the_rest_verifiable_through_a_signed_anchor() {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let (f, file) = signed(clock.clone()).await;
    for i in 0..5 {
        let _ = f.vault.login(&format!("old{i}"), &mamori_crypto::SecretString::new("x".repeat(12)), None).await;
    }
    let old = f.vault.flush_audit_checkpoint().await.unwrap().unwrap().seq;
    clock.advance(time::Duration::days(400));
    for i in 0..5 {
        let _ = f.vault.login(&format!("new{i}"), &mamori_crypto::SecretString::new("x".repeat(12)), None).await;
    }
    f.vault.flush_audit_checkpoint().await.unwrap().unwrap();
    let op = f.admin.clone();

    // Never below three months, and only the local operator.
    assert!(matches!(f.vault.prune_audit(&op, 30, false, &[]).await, Err(VaultError::Invalid(_))));
    let (auditor, _) = f.user("aud", Role::Auditor).await;
    assert!(matches!(f.vault.prune_audit(&auditor, 365, false, &[]).await, Err(VaultError::Forbidden)));

    let dry = f.vault.prune_audit(&op, 365, true, &[]).await.unwrap();
    assert_eq!((dry.anchor_seq, dry.events_deleted), (Some(old), old));
    // A SIEM sink that has not acknowledged those events yet (never forwarded, or behind)
    // holds the prune back: they are kept until it has them.
    let dry = f.vault.prune_audit(&op, 365, true, &["file"]).await.unwrap();
    assert_eq!((dry.anchor_seq, dry.siem_forwarded_to), (None, Some(0)));
    let cursor = |seq: u64| serde_json::json!({ "seq": seq }).to_string();
    f.store().put_meta("audit_siem_cursor_file", cursor(old - 1).as_bytes()).await.unwrap();
    f.store().put_meta("audit_siem_cursor_syslog", cursor(old + 3).as_bytes()).await.unwrap();
    let dry = f.vault.prune_audit(&op, 365, true, &["file", "syslog"]).await.unwrap();
    assert_eq!(dry.siem_forwarded_to, Some(old - 1));
    assert!(dry.anchor_seq.is_none_or(|a| a < old), "stops at an earlier checkpoint: {dry:?}");
    f.store().put_meta("audit_siem_cursor_file", cursor(old).as_bytes()).await.unwrap();
    let dry = f.vault.prune_audit(&op, 365, true, &["file", "syslog"]).await.unwrap();
    assert_eq!((dry.anchor_seq, dry.siem_forwarded_to), (Some(old), Some(old)));
    assert_eq!(f.store().read_audit(1, 1).await.unwrap()[0].seq, 1, "a dry run deletes nothing");
    let report = f.vault.prune_audit(&op, 365, false, &[]).await.unwrap();
    assert_eq!((report.anchor_seq, report.events_deleted), (Some(old), old));
    assert_eq!(f.store().read_audit(1, 1).await.unwrap()[0].seq, old + 1);

    let verified = f.vault.verify_audit().await.unwrap();
    assert!(verified.ok, "{verified:#?}");
    assert_eq!((verified.anchor_seq, verified.first_seq), (Some(old), old + 1));
    let anchor_line = std::fs::read_to_string(&file).unwrap().lines().last().unwrap().to_owned();
    assert!(anchor_line.contains("\"kind\":\"anchor\""), "{anchor_line}");
    // Nothing newer than the retention is pruned again; the log goes on being checkpointed.
    assert_eq!(f.vault.prune_audit(&op, 365, false, &[]).await.unwrap().anchor_seq, None);
    f.vault.checkpoint_audit(&op).await.unwrap().unwrap();
    assert!(f.vault.verify_audit().await.unwrap().ok);

    // Deleting more from the start is not covered by the anchor.
    let conn = db(&f);
    conn.execute("DELETE FROM audit_events WHERE seq = ?1", [old as i64 + 1]).unwrap();
    assert_found(&f.vault.verify_audit().await.unwrap(), old + 1, ProblemKind::Deleted);
    // Nor is an anchor moved forward by hand (its signature no longer fits).
    conn.execute("UPDATE audit_checkpoints SET seq = seq + 1 WHERE kind = 'anchor'", []).unwrap();
    assert_found(&f.vault.verify_audit().await.unwrap(), old + 1, ProblemKind::BadSignature);
}

/// A log that spans several of verification's pages (1,000 events each), written by the
/// audit writer as the server writes it, with a signed checkpoint every 700 events and one
/// at the head. Verification checks such a log on every core at once; a tampered one gets
/// the same diagnosis as a short log.
async fn long_log(events: u64) -> (tempfile::TempDir, Arc<dyn Store>, AuditVerifyingKey) {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(AuditSigningKey::generate());
    let public = key.verifying_key();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("mamori.db")).await.unwrap());
    let settings = AuditSettings { signing_key: Some(key), checkpoint_every_events: 700, ..AuditSettings::default() };
    let log = AuditLog::start_with(store.clone(), Arc::new(SystemClock), &settings);
    for batch in 0..events.div_ceil(250) {
        let events = (batch * 250..((batch + 1) * 250).min(events))
            .map(|i| {
                let mut e =
                    AuditEvent::new(SystemClock.now(), format!("user:{}", i % 7), "record.read", Outcome::Success);
                e.collection = Some("customers".into());
                e.record = Some(format!("record-{i}"));
                e.subject = Some(format!("S{i:06}"));
                e
            })
            .collect();
        log.record(events).await.unwrap();
    }
    assert_eq!(log.checkpoint().await.unwrap().expect("signed").seq, events);
    (dir, store, public)
}

async fn verify_long(store: &Arc<dyn Store>, key: &AuditVerifyingKey) -> VerifyReport {
    mamori_vault::verify_store(store, Some(key), None, None, &Arc::default()).await.unwrap()
}

fn long_db(dir: &tempfile::TempDir) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.path().join("mamori.db")).unwrap()
}

/// Turns the `record.read` at `seq` into a `record.list` behind the chain's back; returns the
/// event as it was.
fn relabel(conn: &rusqlite::Connection, seq: i64) -> String {
    let (json, _) = row(conn, seq);
    let edited = json.replace("record.read", "record.list");
    conn.execute("UPDATE audit_events SET event_json = ?1 WHERE seq = ?2", rusqlite::params![edited, seq]).unwrap();
    json
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_log_in_order_verifies_to_its_head() {
    let (dir, store, key) = long_log(3_456).await;
    let report = verify_long(&store, &key).await;
    assert!(report.ok, "{report:#?}");
    assert_eq!((report.first_seq, report.head_seq, report.events), (1, 3_456, 3_456));
    assert_eq!(report.signed_up_to, Some(3_456));
    let (_, head_hash) = row(&long_db(&dir), 3_456);
    assert_eq!(report.head_hash, mamori_core::audit::to_hex(&head_hash));
    // An event appended since (one event past a full page boundary's worth of pages) is
    // verified too: the walk goes on to the end of the log.
    let more = AuditEvent::new(SystemClock.now(), "user:late", "auth.logout", Outcome::Success);
    store.append_audit(&[more]).await.unwrap();
    let report = verify_long(&store, &key).await;
    assert!(report.ok && report.head_seq == 3_457, "{report:#?}");
    // Verifications started together take turns, and both finish.
    let (a, b) = tokio::join!(verify_long(&store, &key), verify_long(&store, &key));
    assert!(a.ok && b.ok && a.head_hash == b.head_hash);
    let keyed = |r: &VerifyReport| r.warnings.iter().filter(|w| w.contains("key id")).count();
    assert_eq!(keyed(&a), 0, "{:?}", a.warnings);
    // Without a key held apart, the database's own copy is used, and the report says what
    // that proves less (whoever rewrites the database can replace that key too).
    store.put_meta(mamori_vault::AUDIT_PUBLIC_KEY, &key.to_der()).await.unwrap();
    let own = mamori_vault::verify_store(&store, None, None, None, &Arc::default()).await.unwrap();
    assert!(own.ok, "{own:#?}");
    assert_eq!(keyed(&own), 1, "{:?}", own.warnings);
    assert!(own.warnings.iter().any(|w| w.contains(&format!("key id {}", key.key_id()))), "{:?}", own.warnings);
}

#[tokio::test(flavor = "multi_thread")]
async fn tampering_deep_in_a_long_log_is_found_where_it_is() {
    let (dir, store, key) = long_log(3_456).await;
    let conn = long_db(&dir);
    // A modified event in the third page.
    let json = relabel(&conn, 2_345);
    assert_found(&verify_long(&store, &key).await, 2_345, ProblemKind::Modified);
    conn.execute("UPDATE audit_events SET event_json = ?1 WHERE seq = 2345", [json]).unwrap();
    assert!(verify_long(&store, &key).await.ok);
    // A forged indexed column in the second (after the table's definition was rewritten:
    // every page is then read with its columns and each event compared with them).
    make_columns_writable(&conn);
    let conn = long_db(&dir);
    let actor: String = conn.query_row("SELECT actor FROM audit_events WHERE seq = 1500", [], |r| r.get(0)).unwrap();
    conn.execute("UPDATE audit_events SET actor = 'user:nobody' WHERE seq = 1500", []).unwrap();
    assert_found(&verify_long(&store, &key).await, 1_500, ProblemKind::Modified);
    conn.execute("UPDATE audit_events SET actor = ?1 WHERE seq = 1500", [actor]).unwrap();
    assert!(verify_long(&store, &key).await.ok);
    // The first event of a page deleted.
    conn.execute("DELETE FROM audit_events WHERE seq = 2001", []).unwrap();
    assert_found(&verify_long(&store, &key).await, 2_001, ProblemKind::Deleted);
    // Everything from there on deleted: the stored checkpoints behind it remember.
    conn.execute("DELETE FROM audit_events WHERE seq > 2001", []).unwrap();
    assert_found(&verify_long(&store, &key).await, 2_001, ProblemKind::TruncatedBehindCheckpoint);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_row_past_the_first_problem_does_not_hide_the_diagnosis() {
    let (dir, store, key) = long_log(3_456).await;
    let conn = long_db(&dir);
    relabel(&conn, 10);
    // Verification reads pages ahead; a row it never needs to reach must not turn the
    // diagnosis into an error.
    conn.execute("UPDATE audit_events SET hash = zeroblob(31) WHERE seq = 1500", []).unwrap();
    assert_found(&verify_long(&store, &key).await, 10, ProblemKind::Modified);
}

/// An event appended behind mamori's back with a hash that fits but JSON that is no event:
/// verification parses what no checkpoint covers, and names it.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_event_appended_with_a_fitting_hash_is_found() {
    let (dir, store, key) = long_log(1_234).await;
    let conn = long_db(&dir);
    let (_, prev) = row(&conn, 1_234);
    let forged =
        r#"{"at":"2026-12-07T00:00:00Z","actor":"user:a","actor":"user:b","action":"record.read","outcome":"success"}"#;
    let hash = chain_hash(&prev.try_into().unwrap(), 1_235, forged);
    conn.execute(
        "INSERT INTO audit_events (seq, event_json, hash) VALUES (1235, ?1, ?2)",
        rusqlite::params![forged, hash],
    )
    .unwrap();
    let report = verify_long(&store, &key).await;
    assert_found(&report, 1_235, ProblemKind::Modified);
    assert!(report.problem.as_deref().unwrap_or_default().contains("not a well-formed event"), "{report:#?}");
}
