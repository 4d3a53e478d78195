//! Key rotation, crypto-shredding, the audit chain, and what lands on disk.

mod common;

use common::*;
use mamori_core::access::Role;
use mamori_core::clock::{Clock as _, SystemClock};
use mamori_core::ids::SubjectId;
use mamori_crypto::{SecretString, TotpSecret};
use mamori_vault::{ExportFilter, ExportFormat, ExportRequest, NewUser, Protection, VaultError, View};

#[tokio::test]
async fn kek_rotation_keeps_data_readable_and_destroys_old_kek() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    f.import(&manager, &people_csv(300, 3)).await.unwrap();
    let before = f.vault.store().get_collection("customers").await.unwrap().unwrap();
    let report = f.vault.rotate_keks(&f.admin, &|_| {}).await.unwrap();
    assert_eq!(report.subject_keys_rewrapped, 300);
    let after = f.vault.store().get_collection("customers").await.unwrap().unwrap();
    assert_eq!(after.kek_version, before.kek_version + 1);
    assert_eq!(f.vault.store().get_keks(after.id).await.unwrap().len(), 1, "old KEK destroyed");
    let p = mamori_synth::Generator::new(3).nth(42).unwrap();
    let hits = f.vault.search(&manager, "customers", "phone", &p.phone, View::Full, None).await.unwrap();
    assert!(hits.iter().any(|h| h.fields["email"] == p.email));
    // A fresh process (no cache) reads it too.
    let reopened = open(&f.dir, &f.master).await.unwrap();
    let hits = reopened.search(&manager, "customers", "email", &p.email, View::Full, None).await.unwrap();
    assert_eq!(hits.len(), 1);
    // Only administrators rotate.
    assert!(matches!(f.vault.rotate_keks(&manager, &|_| {}).await, Err(VaultError::Forbidden)));
}

#[tokio::test]
async fn master_rotation_switches_keys() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    f.import(&manager, &people_csv(20, 4)).await.unwrap();
    let new_master = mamori_crypto::MasterKey::generate();
    f.vault.rotate_master(&f.admin, &new_master).await.unwrap();
    assert!(matches!(open(&f.dir, &f.master).await, Err(VaultError::WrongMasterKey)));
    let vault = open(&f.dir, &new_master).await.unwrap();
    let p = mamori_synth::Generator::new(4).nth(5).unwrap();
    let hits = vault.search(&manager, "customers", "email", &p.email, View::Full, None).await.unwrap();
    assert_eq!(hits[0].fields["name"], p.name);
}

/// A process that has not yet noticed another process's master-key rotation cannot store a
/// value sealed under the old key: the store checks the key check in the same transaction,
/// so nothing is left under a key that is gone (002-T-6-d).
#[tokio::test]
async fn nothing_is_sealed_under_a_master_key_rotated_meanwhile() {
    // Polls for changes rarely: only the store's check stands between it and the old key.
    let mut config = mamori_vault::VaultConfig::default();
    config.authz.policy_refresh = std::time::Duration::from_secs(3600);
    let f = Fixture::build(config, std::sync::Arc::new(SystemClock)).await;
    let other = open(&f.dir, &f.master).await.unwrap();
    other.rotate_master(&f.admin, &mamori_crypto::MasterKey::generate()).await.unwrap();

    // A new collection's keys would be wrapped under the old master key.
    let mut schema = mamori_core::schema::CollectionSchema::from_toml(mamori_synth::CUSTOMERS_SCHEMA_TOML).unwrap();
    schema.name = mamori_core::ids::CollectionName::new("patients").unwrap();
    let err = f.vault.create_collection(&f.admin, &schema).await.unwrap_err();
    assert!(matches!(err, VaultError::Unavailable(ref m) if m.contains("rotated")), "{err:?}");
    assert_eq!(f.store().get_collection("patients").await.unwrap(), None, "nothing wrapped under the old key");
    // This process has followed the rotation meanwhile: without the new key it refuses
    // everything until it is restarted with it.
    let again = f.vault.create_collection(&f.admin, &schema).await;
    assert!(matches!(again, Err(VaultError::WrongMasterKey)), "{again:?}");
}

/// Everything sealed directly under the master key moves with it: a TOTP secret (the
/// administrator still logs in with their authenticator), a break-glass reason, an export
/// request and its file password (002-T-6-d, 001-20-rule-2-5).
#[tokio::test]
async fn master_rotation_carries_every_sealed_secret() {
    let f = Fixture::new().await;
    let department =
        |login: &str, role| NewUser { department: Some("sales".into()), ..NewUser::new(login, login, role) };
    let requester = f.user_with(department("mgr-a", Role::Manager)).await.0;
    let approver = f.user_with(department("mgr-b", Role::Manager)).await.0;
    let (ops, ops2) = (f.user("ops1", Role::SystemAdmin).await.0, f.user("ops2", Role::SystemAdmin).await.0);
    let record =
        [("name", "試験 太郎"), ("birth_date", "1985-06-15"), ("phone", "090-1111-2222"), ("email", "t@example.jp")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    f.vault.create_record(&requester, "customers", None, &record).await.unwrap();

    // A TOTP secret, enrolled through the real path.
    let password = f.vault.generate_password();
    let admin = NewUser {
        password: Some(password.clone()),
        must_change_password: false,
        ..NewUser::new("admin1", "管理者", Role::SystemAdmin)
    };
    f.vault.create_user(&f.admin, admin).await.unwrap();
    let setup = f.vault.login("admin1", &password, None).await.unwrap();
    let me = f.vault.authenticate(&setup.token, None).await.unwrap();
    let enrolment = f.vault.begin_totp_enrolment(&me).await.unwrap();
    let secret = TotpSecret::from_base32(enrolment.secret_base32.expose()).unwrap();
    let now = SystemClock.now().unix_timestamp() as u64;
    let code = SecretString::new(secret.current_code(now));
    f.vault.confirm_totp_enrolment(&me, &enrolment.enrolment, &code).await.unwrap();

    // A break-glass reason and an approved export with its password.
    let reason = "障害調査のため顧客記録を確認";
    let grant = f.vault.request_break_glass(&ops, "customers", 60, reason).await.unwrap();
    let request = ExportRequest {
        collection: "customers".into(),
        fields: vec!["name".into()],
        filter: ExportFilter::All {},
        purpose: "契約内容の確認".into(),
        recipient: "委託先 印刷会社".into(),
        due_date: None,
        format: ExportFormat::Xlsx,
        protection: Protection::Password {},
    };
    let export = f.vault.request_export(&requester, &request).await.unwrap();
    f.vault.decide_export(&approver, &export.id, true, false).await.unwrap();
    let file_password = f.vault.export_password(&requester, &export.id).await.unwrap();

    let new_master = mamori_crypto::MasterKey::generate();
    let report = f.vault.rotate_master(&f.admin, &new_master).await.unwrap();
    // Three TOTP secrets (admin1, and ops1 and ops2 enrolled by the fixture), the grant's
    // reason, the export's request and its password.
    assert_eq!(report.secrets_resealed, 6);
    let vault = open(&f.dir, &new_master).await.unwrap();
    assert_eq!(vault.verify_keys().await.unwrap(), 1);
    // Under the new key: the authenticator still works, and every secret reads back.
    let next = SecretString::new(secret.current_code(now + 30));
    vault.login_with_code("admin1", &password, Some(&next), None).await.unwrap();
    let approved = vault.decide_break_glass(&ops2, &grant.id, true).await.unwrap();
    assert_eq!(approved.reason, reason);
    let shown = vault.get_export(&requester, &export.id).await.unwrap();
    assert_eq!((shown.purpose.as_str(), shown.recipient.as_deref()), ("契約内容の確認", Some("委託先 印刷会社")));
    assert_eq!(vault.export_password(&requester, &export.id).await.unwrap(), file_password);
}

#[tokio::test]
async fn erasure_shreds_keys_and_leaves_a_certificate_without_personal_data() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let (officer, _) = f.user("officer1", Role::PrivacyOfficer).await;
    f.import(&manager, &people_csv(10, 5)).await.unwrap();
    let p = mamori_synth::Generator::new(5).nth(2).unwrap();
    let subject = SubjectId::new(&p.subject_id).unwrap();

    assert_eq!(f.vault.search(&manager, "customers", "email", &p.email, View::Full, None).await.unwrap().len(), 1);
    assert!(matches!(f.vault.erase_subject(&manager, &subject).await, Err(VaultError::Forbidden)));
    let cert = f.vault.erase_subject(&officer, &subject).await.unwrap();
    assert_eq!((cert.data_keys_destroyed, cert.records_deleted), (1, 1));
    assert!(f.vault.search(&manager, "customers", "email", &p.email, View::Full, None).await.unwrap().is_empty());
    let listed = f.vault.erasure_certificates(&officer).await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&cert));
    let json = serde_json::to_string(&cert).unwrap();
    for personal in [&p.name, &p.email, &p.phone, &p.address] {
        assert!(!json.contains(personal.as_str()), "certificate contains personal data");
    }
    // Others are untouched; the audit trail of the erased subject survives.
    assert_eq!(f.vault.collection_info(&manager, "customers").await.unwrap().records, 9);
    let mut subject_events = 0;
    for row in f.vault.store().read_audit(1, 10_000).await.unwrap() {
        if row.event_json.contains(&format!("\"subject\":\"{}\"", p.subject_id)) {
            subject_events += 1;
        }
    }
    assert!(subject_events >= 2, "read and erase events of the subject remain");
    assert!(f.vault.verify_audit().await.unwrap().ok);
}

/// The erasure, its certificate and its `subject.erase` event are one transaction: when the
/// event cannot be written nothing is erased and no certificate claims otherwise.
#[tokio::test]
async fn an_erasure_whose_event_cannot_be_written_erases_nothing() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let (officer, _) = f.user("officer1", Role::PrivacyOfficer).await;
    f.import(&manager, &people_csv(3, 8)).await.unwrap();
    let p = mamori_synth::Generator::new(8).nth(1).unwrap();
    let subject = SubjectId::new(&p.subject_id).unwrap();
    let refusal = f.refuse_audit_events("subject.erase", "success");
    let failures = f.vault.audit_health().append_failures;
    let err = f.vault.erase_subject(&officer, &subject).await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    assert_eq!(f.vault.audit_health().append_failures, failures + 1, "the erasure's own transaction failed");
    drop(refusal);
    assert_eq!(f.vault.search(&manager, "customers", "email", &p.email, View::Full, None).await.unwrap().len(), 1);
    assert!(f.vault.erasure_certificates(&officer).await.unwrap().is_empty());

    let cert = f.vault.erase_subject(&officer, &subject).await.unwrap();
    assert_eq!((cert.data_keys_destroyed, cert.records_deleted), (1, 1));
    let rows = f.vault.store().read_audit(1, 10_000).await.unwrap();
    let erased = rows.iter().rev().find(|r| r.event_json.contains("\"subject.erase\"")).unwrap();
    assert!(erased.event_json.contains("\"rows\":1"), "{}", erased.event_json);
    assert!(erased.event_json.contains(&cert.certificate_id), "{}", erased.event_json);
}

/// Imports values carrying unique markers, then scans every byte of the data directory —
/// database, WAL, shared memory, anything else — for them, raw and in common encodings.
#[tokio::test]
async fn no_plaintext_marker_on_disk() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    let marker_name = "漏洩検知 マーカー";
    let marker_mail = "zq9marker7x@example.jp";
    let marker_phone = "070-9876-5432";
    let marker_text = "ZQ9-SENSITIVE-MARKER";
    let csv = format!(
        "subject_id,name,email,phone,medical_history\nS1,{marker_name},{marker_mail},{marker_phone},{marker_text}\n"
    );
    f.import(&manager, &csv).await.unwrap();
    let hits = f.vault.search(&manager, "customers", "email", marker_mail, View::Full, None).await.unwrap();
    assert_eq!(hits[0].fields["medical_history"], marker_text);

    let needles: Vec<Vec<u8>> =
        [marker_name, "漏洩検知", marker_mail, "zq9marker7x", marker_phone, "09876", marker_text]
            .iter()
            .flat_map(|m| {
                let utf16: Vec<u8> = m.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
                [m.as_bytes().to_vec(), utf16, m.to_uppercase().into_bytes()]
            })
            .collect();
    let mut scanned = 0;
    for entry in std::fs::read_dir(f.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        for n in &needles {
            assert!(!bytes.windows(n.len()).any(|w| w == &n[..]), "plaintext found in {}", path.display());
        }
    }
    assert!(scanned > 10_000, "the scan must have read the database files");
}

#[tokio::test]
async fn tampered_audit_log_is_detected() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    f.import(&manager, &people_csv(5, 6)).await.unwrap();
    let report = f.vault.verify_audit().await.unwrap();
    assert!(report.ok && report.events >= 4, "{report:?}");
    let conn = rusqlite::Connection::open(f.db_path()).unwrap();
    // Modification.
    conn.execute("UPDATE audit_events SET event_json = replace(event_json, 'success', 'failure') WHERE seq = 3", [])
        .unwrap();
    let r = f.vault.verify_audit().await.unwrap();
    assert_eq!((r.ok, r.first_bad_seq), (false, Some(3)), "{r:?}");
    // Deletion.
    conn.execute("DELETE FROM audit_events WHERE seq = 3", []).unwrap();
    let r = f.vault.verify_audit().await.unwrap();
    assert_eq!((r.ok, r.first_bad_seq), (false, Some(3)), "{r:?}");
}

#[tokio::test]
async fn reads_fail_closed_when_the_audit_log_cannot_be_written() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    f.import(&manager, &people_csv(3, 8)).await.unwrap();
    let p = mamori_synth::Generator::new(8).next().unwrap();
    // Make every audit append fail, as a full disk or a broken table would.
    let conn = rusqlite::Connection::open(f.db_path()).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();
    let err = f.vault.search(&manager, "customers", "email", &p.email, View::Full, None).await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    conn.execute_batch("DROP TRIGGER no_audit").unwrap();
    assert_eq!(f.vault.search(&manager, "customers", "email", &p.email, View::Full, None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn sessions_end_on_disable_and_logout() {
    let f = Fixture::new().await;
    let (_, token) = f.user("staff1", Role::Staff).await;
    f.vault.set_user_disabled(&f.admin, "staff1", true).await.unwrap();
    assert!(matches!(f.vault.authenticate(&token, None).await, Err(VaultError::Unauthenticated)));
    let wrong = f.vault.login("staff1", &mamori_crypto::SecretString::new(PASSWORD.into()), None).await.unwrap_err();
    let unknown = f.vault.login("nobody", &mamori_crypto::SecretString::new(PASSWORD.into()), None).await.unwrap_err();
    assert_eq!(wrong.to_string(), unknown.to_string(), "disabled and unknown look the same");
}

/// A server keeps running while the CLI (another process, here another vault on the same
/// files) rotates the KEKs: the server must notice, read old records and wrap new data keys
/// under the new KEK — never under the destroyed one.
#[tokio::test]
async fn rotation_by_another_process_is_picked_up() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    f.import(&manager, &people_csv(20, 9)).await.unwrap();
    let p = mamori_synth::Generator::new(9).nth(4).unwrap();
    // Warm the server's cache.
    assert_eq!(f.vault.search(&manager, "customers", "email", &p.email, View::Full, None).await.unwrap().len(), 1);

    let cli = open(&f.dir, &f.master).await.unwrap();
    cli.rotate_keks(&mamori_vault::Principal::operator("cli"), &|_| {}).await.unwrap();

    assert_eq!(f.vault.search(&manager, "customers", "email", &p.email, View::Full, None).await.unwrap().len(), 1);
    let new_subject = Some(SubjectId::new("AFTER-ROTATION").unwrap());
    let fields: std::collections::BTreeMap<String, String> =
        [("name".to_string(), "回転 後".to_string()), ("email".to_string(), "after@example.jp".to_string())].into();
    let id = f.vault.create_record(&manager, "customers", new_subject, &fields).await.unwrap();
    // A fresh process can read it: its data key is wrapped under a KEK that exists.
    let fresh = open(&f.dir, &f.master).await.unwrap();
    let r = fresh.get_record(&manager, "customers", &id, View::Full, None).await.unwrap();
    assert_eq!(r.fields["email"], "after@example.jp");
    assert_eq!(fresh.verify_keys().await.unwrap(), 1);
}
