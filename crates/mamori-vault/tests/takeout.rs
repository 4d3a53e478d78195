//! Take-out control through the vault (issue 9): approved exports only, never self-approved,
//! a limited window and number of downloads, protected files, the take-out ledger with
//! returns and witnessed disposals, and bulk thresholds (measures 002-S-5-a, 000-8-takeout-2,
//! 000-8-takeout-5, 000-8-takeout-8, 000-8-3-3, 002-S-11-a, 004-I-4-1-1, 000-8-takeout-12).

mod common;

use common::Fixture;
use mamori_core::access::Role;
use mamori_core::audit::AuditEvent;
use mamori_core::clock::ManualClock;
use mamori_core::ids::SubjectId;
use mamori_export::SecretPassword;
use mamori_vault::{
    ExportFilter, ExportFormat, ExportRequest, NewUser, Principal, Protection, Settlement, TakeOut, TakeoutSettings,
    VaultConfig, VaultError, View,
};
use std::collections::BTreeMap;
use std::sync::Arc;

fn person(name: &str, phone: &str, email: &str) -> BTreeMap<String, String> {
    [("name", name), ("birth_date", "1985-06-15"), ("phone", phone), ("email", email)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn member(f: &Fixture, login: &str, role: Role) -> Principal {
    let new = NewUser { department: Some("sales".into()), ..NewUser::new(login, login, role) };
    f.user_with(new).await.0
}

struct Office {
    f: Fixture,
    clock: Arc<ManualClock>,
    requester: Principal,
    approver: Principal,
    staff: Principal,
}

async fn office(takeout: TakeoutSettings, records: usize) -> Office {
    let clock = Arc::new(ManualClock::new(time::macros::datetime!(2026-12-07 01:00 UTC)));
    let config = VaultConfig { takeout, ..VaultConfig::default() };
    let f = Fixture::build(config, clock.clone()).await;
    let requester = member(&f, "mgr-a", Role::Manager).await;
    let approver = member(&f, "mgr-b", Role::Manager).await;
    let staff = member(&f, "clerk", Role::Staff).await;
    for i in 0..records {
        let phone = format!("090-{:04}-{:04}", 1000 + i, 2000 + i);
        let record = person(&format!("試験 {i}郎"), &phone, &format!("t{i}@example.jp"));
        f.vault.create_record(&requester, "customers", None, &record).await.unwrap();
    }
    Office { f, clock, requester, approver, staff }
}

fn request(protection: Protection, format: ExportFormat) -> ExportRequest {
    ExportRequest {
        collection: "customers".into(),
        fields: vec!["name".into(), "phone".into()],
        filter: ExportFilter::All {},
        purpose: "契約内容の確認".into(),
        recipient: "委託先 印刷会社".into(),
        due_date: None,
        format,
        protection,
    }
}

async fn events(f: &Fixture, action: &str) -> Vec<AuditEvent> {
    let rows = f.store().read_audit(1, 1_000_000).await.unwrap();
    rows.iter()
        .map(|r| serde_json::from_str::<AuditEvent>(&r.event_json).unwrap())
        .filter(|e| e.action == action)
        .collect()
}

#[tokio::test]
async fn an_approved_password_export_opens_with_its_password_only() {
    let o = office(TakeoutSettings::default(), 3).await;
    let x =
        o.f.vault.request_export(&o.requester, &request(Protection::Password {}, ExportFormat::Xlsx)).await.unwrap();
    assert_eq!((x.status.as_str(), x.rows, x.encrypted), ("pending", 3, true));

    // Nothing leaves before approval; no password exists yet.
    let early = o.f.vault.download_export(&o.requester, &x.id).await.unwrap_err();
    assert!(matches!(early, VaultError::Conflict(_)), "{early:?}");
    assert!(o.f.vault.export_password(&o.requester, &x.id).await.is_err());

    let approved = o.f.vault.decide_export(&o.approver, &x.id, true, false).await.unwrap();
    assert_eq!((approved.status.as_str(), approved.decided_by.is_some()), ("approved", true));
    // The password is the requester's alone.
    let other = o.f.vault.export_password(&o.approver, &x.id).await.unwrap_err();
    assert!(matches!(other, VaultError::NotFound(_)), "{other:?}");
    let password = o.f.vault.export_password(&o.requester, &x.id).await.unwrap();

    let file = o.f.vault.download_export(&o.requester, &x.id).await.unwrap();
    assert_eq!((file.rows, file.withheld, file.encrypted, file.download), (3, 0, true, 1));
    assert_eq!(file.files.len(), 1);
    assert!(file.files[0].name.ends_with(".xlsx"));
    let bytes = &file.files[0].bytes;
    let wrong = mamori_export::decrypt_ooxml(bytes, &SecretPassword::new("not-the-password"));
    assert!(wrong.is_err(), "a wrong password opens nothing");
    let package = mamori_export::decrypt_ooxml(bytes, &SecretPassword::new(password.as_str())).unwrap();
    assert!(package.starts_with(b"PK"), "an XLSX (zip) package inside");
    // No plaintext value in the encrypted file.
    assert!(!bytes.windows("試験".len()).any(|w| w == "試験".as_bytes()));

    // Every record read is audited with the export, and the download too.
    let reads = events(&o.f, "record.read").await;
    let via: Vec<_> = reads.iter().filter(|e| e.reason.as_deref() == Some(&format!("via export {}", x.id))).collect();
    assert_eq!(via.len(), 3);
    assert!(via.iter().all(|e| e.purpose.as_deref() == Some("契約内容の確認")));
    let download = events(&o.f, "export.download").await.pop().unwrap();
    assert_eq!((download.outcome.as_str(), download.rows), ("success", Some(3)));

    // The ledger: request, approval, download — with the encryption recorded (risk note).
    let ledger = o.f.vault.takeout_ledger(&o.requester, Some(&x.id)).await.unwrap();
    let kinds: Vec<&str> = ledger.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(kinds, ["request", "approve", "download"]);
    assert_eq!(ledger[2].detail["encrypted"], true);
    assert_eq!(ledger[2].detail["files"][0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(ledger[1].actor, "mgr-b");
}

#[tokio::test]
async fn the_requester_can_never_approve_their_own_export() {
    let o = office(TakeoutSettings::default(), 1).await;
    let x =
        o.f.vault.request_export(&o.requester, &request(Protection::Password {}, ExportFormat::Xlsx)).await.unwrap();
    let own = o.f.vault.decide_export(&o.requester, &x.id, true, false).await.unwrap_err();
    assert!(matches!(own, VaultError::Forbidden), "{own:?}");
    // Staff lack the approve right.
    let staff = o.f.vault.decide_export(&o.staff, &x.id, true, false).await.unwrap_err();
    assert!(matches!(staff, VaultError::Forbidden), "{staff:?}");
    assert_eq!(o.f.vault.get_export(&o.requester, &x.id).await.unwrap().status, "pending");
    // Showing one request is audited like the list: it may name people (filter, recipient).
    let hidden = o.f.vault.get_export(&o.staff, &x.id).await.unwrap_err();
    assert!(matches!(hidden, VaultError::NotFound(_)), "{hidden:?}");
    let views = events(&o.f, "export.view").await;
    let outcomes: Vec<_> = views.iter().map(|e| (e.outcome.as_str(), e.collection.as_deref())).collect();
    assert_eq!(outcomes, [("success", Some("customers")), ("denied", None)]);
    assert!(views.iter().all(|e| e.reason.as_deref().is_some_and(|r| r.contains(&x.id))), "{views:?}");
    let denied = events(&o.f, "export.approve").await;
    assert!(denied.iter().all(|e| e.outcome.as_str() == "denied"), "{denied:?}");
    // A decision is made once.
    o.f.vault.decide_export(&o.approver, &x.id, false, false).await.unwrap();
    let again = o.f.vault.decide_export(&o.approver, &x.id, true, false).await.unwrap_err();
    assert!(matches!(again, VaultError::Conflict(_)), "{again:?}");
    let rejected = o.f.vault.download_export(&o.requester, &x.id).await.unwrap_err();
    assert!(matches!(rejected, VaultError::Conflict(_)), "{rejected:?}");
}

#[tokio::test]
async fn downloads_are_limited_in_number_and_time_and_only_for_the_requester() {
    let settings = TakeoutSettings { max_downloads: 2, ..TakeoutSettings::default() };
    let o = office(settings, 2).await;
    let recipient = age::x25519::Identity::generate();
    let age_request = request(Protection::Age { recipient: recipient.to_public().to_string() }, ExportFormat::Csv);
    let x = o.f.vault.request_export(&o.requester, &age_request).await.unwrap();
    o.f.vault.decide_export(&o.approver, &x.id, true, false).await.unwrap();

    // Someone else cannot download it (not even the approver).
    let stranger = o.f.vault.download_export(&o.approver, &x.id).await.unwrap_err();
    assert!(matches!(stranger, VaultError::NotFound(_)), "{stranger:?}");

    let first = o.f.vault.download_export(&o.requester, &x.id).await.unwrap();
    let csv = age::decrypt(&recipient, &first.files[0].bytes).unwrap();
    let text = String::from_utf8(csv).unwrap();
    assert!(text.contains("試験 0郎") && text.contains("090-1000-2000"), "the full values, for the recipient");
    assert!(!text.contains("@example.jp"), "only the requested fields");
    o.f.vault.download_export(&o.requester, &x.id).await.unwrap();
    let overrun = o.f.vault.download_export(&o.requester, &x.id).await.unwrap_err();
    assert!(matches!(overrun, VaultError::Conflict(ref m) if m.contains("2 times")), "{overrun:?}");

    // Another request: the window closes after 72 hours.
    let y = o.f.vault.request_export(&o.requester, &age_request).await.unwrap();
    o.f.vault.decide_export(&o.approver, &y.id, true, false).await.unwrap();
    o.clock.advance(time::Duration::hours(73));
    let late = o.f.vault.download_export(&o.requester, &y.id).await.unwrap_err();
    assert!(matches!(late, VaultError::Conflict(ref m) if m.contains("window")), "{late:?}");
    let refusals = events(&o.f, "export.download").await.into_iter().filter(|e| e.outcome.as_str() == "denied").count();
    assert_eq!(refusals, 3, "each refusal is audited");
}

#[tokio::test]
async fn concurrent_downloads_never_overrun_the_limit() {
    let settings = TakeoutSettings { max_downloads: 3, ..TakeoutSettings::default() };
    let o = office(settings, 2).await;
    let x =
        o.f.vault.request_export(&o.requester, &request(Protection::Password {}, ExportFormat::Xlsx)).await.unwrap();
    o.f.vault.decide_export(&o.approver, &x.id, true, false).await.unwrap();
    let vault = o.f.vault.clone();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (vault, p, id) = (vault.clone(), o.requester.clone(), x.id.clone());
        tasks.push(tokio::spawn(async move { vault.download_export(&p, &id).await.is_ok() }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 3);
    assert_eq!(o.f.vault.get_export(&o.requester, &x.id).await.unwrap().downloads_used, 3);
    let spent = o.f.vault.export_password(&o.requester, &x.id).await.unwrap_err();
    assert!(matches!(spent, VaultError::Conflict(_)), "no password once the downloads are used up: {spent:?}");
}

fn split(threshold: u8, custodians: &[&str]) -> Protection {
    Protection::Split {
        threshold,
        shares: custodians.len() as u8,
        custodians: custodians.iter().map(|c| (*c).to_owned()).collect(),
    }
}

/// 000-8-takeout-5: the shares go to their custodians one by one; nobody, the requester
/// included, is handed the set; fewer than the threshold restore nothing.
#[tokio::test]
async fn secret_split_shares_go_to_their_custodians_one_each() {
    let o = office(TakeoutSettings::default(), 2).await;
    let keeper = member(&o.f, "keeper", Role::PrivacyOfficer).await;
    let custodians = ["mgr-a", "mgr-b", "keeper"];
    let x = o.f.vault.request_export(&o.requester, &request(split(2, &custodians), ExportFormat::Csv)).await.unwrap();
    o.f.vault.decide_export(&o.approver, &x.id, true, false).await.unwrap();

    // The requester's download makes the shares and hands over none of them.
    let file = o.f.vault.download_export(&o.requester, &x.id).await.unwrap();
    assert!(file.files.is_empty(), "the requester gets no file");
    assert!(file.encrypted, "shares held apart protect the data");
    let held: Vec<(u8, &str)> = file.held.iter().map(|s| (s.share, s.custodian.as_str())).collect();
    assert_eq!(held, [(1, "mgr-a"), (2, "mgr-b"), (3, "keeper")]);
    let again = o.f.vault.download_export(&o.requester, &x.id).await.unwrap_err();
    assert!(matches!(again, VaultError::Conflict(_)), "one set of shares per export: {again:?}");
    // Nothing of a held share is in clear in the store.
    for sealed in o.f.store().list_master_sealed().await.unwrap() {
        assert!(!String::from_utf8_lossy(&sealed.sealed).contains("試験"));
    }

    // Someone who is not a custodian gets nothing, and learns nothing.
    let stranger = o.f.vault.fetch_export_share(&o.staff, &x.id).await.unwrap_err();
    assert!(matches!(stranger, VaultError::NotFound(_)), "{stranger:?}");
    assert!(o.f.vault.shares_for_me(&o.staff).await.unwrap().is_empty());
    let waiting = o.f.vault.shares_for_me(&keeper).await.unwrap();
    assert_eq!((waiting.len(), waiting[0].share, waiting[0].of, waiting[0].threshold), (1, 3, 3, 2));

    // Each custodian fetches their own share, once.
    let first = o.f.vault.fetch_export_share(&o.requester, &x.id).await.unwrap();
    let third = o.f.vault.fetch_export_share(&keeper, &x.id).await.unwrap();
    assert!(first.name.ends_with(".share-1-of-3.mamori") && third.name.ends_with(".share-3-of-3.mamori"));
    let twice = o.f.vault.fetch_export_share(&keeper, &x.id).await.unwrap_err();
    assert!(matches!(twice, VaultError::Conflict(_)), "{twice:?}");
    assert!(o.f.vault.shares_for_me(&keeper).await.unwrap().is_empty());
    assert!(mamori_export::combine(&[first.bytes.as_slice()]).is_err(), "one share restores nothing");
    let restored = mamori_export::combine(&[first.bytes.as_slice(), third.bytes.as_slice()]).unwrap();
    assert!(String::from_utf8_lossy(&restored.plain).contains("試験 1郎"));

    // Where each share stands, in the request and in the ledger.
    let info = o.f.vault.get_export(&o.requester, &x.id).await.unwrap();
    let states: Vec<&str> = info.shares.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["fetched", "held", "fetched"]);
    let ledger = o.f.vault.takeout_ledger(&o.approver, Some(&x.id)).await.unwrap();
    let made: Vec<u64> =
        ledger.iter().filter(|l| l.kind == "share").map(|l| l.detail["share"].as_u64().unwrap()).collect();
    assert_eq!(made, [1, 2, 3]);
    let fetched: Vec<&str> =
        ledger.iter().filter(|l| l.kind == "share_fetch").map(|l| l.detail["custodian"].as_str().unwrap()).collect();
    assert_eq!(fetched, ["mgr-a", "keeper"]);
    assert_eq!(events(&o.f, "export.share_fetch").await.len(), 4, "two fetches, two refusals");

    // The window closes with share 2 unfetched: the server's sweep destroys it, and it is
    // not handed over afterwards.
    assert_eq!(o.f.vault.sweep_expired_shares().await.unwrap(), 0, "the window is still open");
    o.clock.advance(time::Duration::days(30));
    assert_eq!(o.f.vault.sweep_expired_shares().await.unwrap(), 1);
    assert_eq!(events(&o.f, "export.share_discard").await.len(), 1);
    let late = o.f.vault.fetch_export_share(&o.approver, &x.id).await.unwrap_err();
    assert!(matches!(late, VaultError::Conflict(_)), "{late:?}");
    let info = o.f.vault.get_export(&o.requester, &x.id).await.unwrap();
    assert_eq!(info.shares[1].state, "discarded");
    assert!(
        o.f.store().list_master_sealed().await.unwrap().iter().all(|v| v.kind != mamori_store::SealedKind::HeldShare)
    );
}

/// Fetching a share destroys the held copy. When the audit log cannot record the fetch, the
/// request fails closed and the share stays held: it can be fetched once the log works.
#[tokio::test]
async fn a_share_is_not_destroyed_when_its_fetch_cannot_be_audited() {
    let o = office(TakeoutSettings::default(), 2).await;
    let keeper = member(&o.f, "keeper", Role::PrivacyOfficer).await;
    let x =
        o.f.vault
            .request_export(&o.requester, &request(split(2, &["mgr-a", "mgr-b", "keeper"]), ExportFormat::Csv))
            .await
            .unwrap();
    o.f.vault.decide_export(&o.approver, &x.id, true, false).await.unwrap();
    o.f.vault.download_export(&o.requester, &x.id).await.unwrap();

    let db = rusqlite::Connection::open(o.f.db_path()).unwrap();
    db.execute_batch("CREATE TRIGGER no_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'full'); END;")
        .unwrap();
    let err = o.f.vault.fetch_export_share(&keeper, &x.id).await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    db.execute_batch("DROP TRIGGER no_audit;").unwrap();

    assert_eq!(o.f.vault.shares_for_me(&keeper).await.unwrap().len(), 1, "still held");
    let share = o.f.vault.fetch_export_share(&keeper, &x.id).await.unwrap();
    assert!(share.name.ends_with(".share-3-of-3.mamori"), "{}", share.name);
    assert_eq!(events(&o.f, "export.share_fetch").await.len(), 1);
}

/// A held share is the export file itself: erasing a data subject the export may contain
/// destroys the shares still held (the subject must not be restorable from them), and says
/// so in the certificate. An export that names other subjects only keeps its shares.
#[tokio::test]
async fn erasing_a_subject_destroys_the_held_shares_of_exports_that_may_contain_it() {
    let o = office(TakeoutSettings::default(), 3).await;
    let keeper = member(&o.f, "keeper", Role::PrivacyOfficer).await;
    let subject_of = async |email: &str| {
        let found = o.f.vault.search(&o.requester, "customers", "email", email, View::Full, None).await.unwrap();
        found[0].subject_id.clone()
    };
    let (erased, other) = (subject_of("t0@example.jp").await, subject_of("t1@example.jp").await);
    let mut everyone = request(split(2, &["mgr-a", "mgr-b", "keeper"]), ExportFormat::Csv);
    let mut others_only = everyone.clone();
    others_only.filter = ExportFilter::Subjects { ids: vec![other] };
    everyone.filter = ExportFilter::All {};
    let mut ids = Vec::new();
    for req in [&everyone, &others_only] {
        let x = o.f.vault.request_export(&o.requester, req).await.unwrap();
        o.f.vault.decide_export(&o.approver, &x.id, true, false).await.unwrap();
        o.f.vault.download_export(&o.requester, &x.id).await.unwrap();
        ids.push(x.id);
    }
    o.f.vault.fetch_export_share(&keeper, &ids[0]).await.unwrap();

    let cert = o.f.vault.erase_subject(&keeper, &SubjectId::new(&erased).unwrap()).await.unwrap();
    assert_eq!((cert.records_deleted, cert.held_shares_destroyed), (1, 2), "{cert:?}");
    let states = async |id: &str| {
        let info = o.f.vault.get_export(&o.requester, id).await.unwrap();
        info.shares.iter().map(|s| s.state.clone()).collect::<Vec<_>>()
    };
    assert_eq!(states(&ids[0]).await, ["discarded", "discarded", "fetched"]);
    assert_eq!(states(&ids[1]).await, ["held", "held", "held"]);
    let gone = o.f.vault.fetch_export_share(&o.approver, &ids[0]).await.unwrap_err();
    assert!(matches!(gone, VaultError::Conflict(_)), "{gone:?}");
    let discards = events(&o.f, "export.share_discard").await;
    assert_eq!(discards.len(), 1);
    assert!(discards[0].note.as_deref().is_some_and(|n| n.contains(&ids[0]) && n.contains("erased")), "{discards:?}");
}

#[tokio::test]
async fn a_split_needs_one_active_custodian_per_share() {
    let o = office(TakeoutSettings::default(), 1).await;
    let admin = o.f.user("ops-admin", Role::SystemAdmin).await.0;
    member(&o.f, "mgr-c", Role::Manager).await;
    for (custodians, why) in [
        (&["mgr-a", "mgr-b"][..], "too few for three shares"),
        (&["mgr-a", "mgr-a", "mgr-b"][..], "named twice"),
        (&["mgr-a", "mgr-b", "nobody"][..], "not an account"),
        // Shares brought together must not give anyone data policies keep from them.
        (&["mgr-a", "mgr-b", "clerk"][..], "staff may not read in full"),
        (&["mgr-a", "mgr-b", "ops-admin"][..], "the system administrator reads no content"),
    ] {
        let mut req = request(split(2, custodians), ExportFormat::Csv);
        if let Protection::Split { shares, .. } = &mut req.protection {
            *shares = 3;
        }
        let refused = o.f.vault.request_export(&o.requester, &req).await.unwrap_err();
        assert!(matches!(refused, VaultError::Invalid(_)), "{why}: {refused:?}");
    }
    // A custodian disabled after approval: the download refuses rather than hold a share
    // for an account nobody can use.
    let x =
        o.f.vault
            .request_export(&o.requester, &request(split(2, &["mgr-b", "mgr-c"]), ExportFormat::Csv))
            .await
            .unwrap();
    o.f.vault.decide_export(&o.approver, &x.id, true, false).await.unwrap();
    o.f.vault.set_user_disabled(&admin, "mgr-c", true).await.unwrap();
    let refused = o.f.vault.download_export(&o.requester, &x.id).await.unwrap_err();
    assert!(matches!(refused, VaultError::Conflict(_)), "{refused:?}");
    assert!(o.f.store().list_export_shares(Some(&x.id), None).await.unwrap().is_empty(), "nothing held");
    assert_eq!(
        o.f.vault.get_export(&o.requester, &x.id).await.unwrap().downloads_used,
        0,
        "nothing read, nothing counted"
    );
}

#[tokio::test]
async fn unencrypted_export_needs_its_own_right_and_csv_cannot_take_a_password() {
    let o = office(TakeoutSettings::default(), 1).await;
    let plain =
        o.f.vault.request_export(&o.requester, &request(Protection::None {}, ExportFormat::Csv)).await.unwrap_err();
    assert!(matches!(plain, VaultError::Forbidden), "no built-in role holds export.plain: {plain:?}");
    let csv =
        o.f.vault.request_export(&o.requester, &request(Protection::Password {}, ExportFormat::Csv)).await.unwrap_err();
    assert!(matches!(csv, VaultError::Invalid(_)), "{csv:?}");
    // Staff may not export at all; an unknown or unreadable field is refused.
    let staff =
        o.f.vault.request_export(&o.staff, &request(Protection::Password {}, ExportFormat::Xlsx)).await.unwrap_err();
    assert!(matches!(staff, VaultError::Forbidden), "{staff:?}");
    let mut bad = request(Protection::Password {}, ExportFormat::Xlsx);
    bad.fields = vec!["no_such_field".into()];
    assert!(matches!(o.f.vault.request_export(&o.requester, &bad).await, Err(VaultError::Invalid(_))));
    let mut bad_age = request(Protection::Age { recipient: "age1notakey".into() }, ExportFormat::Csv);
    assert!(matches!(o.f.vault.request_export(&o.requester, &bad_age).await, Err(VaultError::Invalid(_))));
    bad_age.protection = split(4, &["mgr-a", "mgr-b", "clerk"]);
    assert!(matches!(o.f.vault.request_export(&o.requester, &bad_age).await, Err(VaultError::Invalid(_))));
    let mut late = request(Protection::Password {}, ExportFormat::Xlsx);
    late.due_date = Some("2030-01-01".into());
    assert!(matches!(o.f.vault.request_export(&o.requester, &late).await, Err(VaultError::Invalid(_))));
    assert!(o.f.vault.list_exports(&o.requester).await.unwrap().is_empty(), "nothing was stored");
}

#[tokio::test]
async fn thresholds_warn_alert_and_need_explicit_bulk_confirmation() {
    let settings = TakeoutSettings {
        warn_rows_per_request: 2,
        hard_rows_per_request: 3,
        warn_rows_per_day: 3,
        hard_rows_per_day: 5,
        ..TakeoutSettings::default()
    };
    let o = office(settings, 4).await;
    let x =
        o.f.vault.request_export(&o.requester, &request(Protection::Password {}, ExportFormat::Xlsx)).await.unwrap();
    assert!((x.bulk, x.over_limit) == (true, true), "{x:?}");
    assert_eq!(x.warnings.len(), 2, "per request and per day: {:?}", x.warnings);
    let alerts = o.f.vault.takeout_alerts(&o.approver).await.unwrap();
    assert!(alerts.iter().any(|a| a.kind == "threshold" && a.login == "mgr-a"), "{alerts:?}");
    assert!(alerts.iter().any(|a| a.kind == "pending"));
    assert!(o.f.vault.takeout_alerts(&o.staff).await.unwrap().is_empty());
    let unconfirmed = o.f.vault.decide_export(&o.approver, &x.id, true, false).await.unwrap_err();
    assert!(matches!(unconfirmed, VaultError::Conflict(_)), "{unconfirmed:?}");
    o.f.vault.decide_export(&o.approver, &x.id, true, true).await.unwrap();
    let file = o.f.vault.download_export(&o.requester, &x.id).await.unwrap();
    assert_eq!(file.warnings.len(), 1, "4 rows today, above 3");

    // Prints count too: a fifth row today is allowed, the sixth is refused.
    let record = f_first_record(&o).await;
    let (_, warning) =
        o.f.vault.take_out_record(&o.requester, "customers", &record, View::Full, None, TakeOut::Print).await.unwrap();
    assert!(warning.is_some());
    let blocked =
        o.f.vault
            .take_out_record(&o.requester, "customers", &record, View::Full, None, TakeOut::Print)
            .await
            .unwrap_err();
    assert!(matches!(blocked, VaultError::TakeoutLimit(_)), "{blocked:?}");
    // Another person's day is their own.
    assert!(
        o.f.vault.take_out_record(&o.approver, "customers", &record, View::Full, None, TakeOut::Copy).await.is_ok()
    );
    // The next local day starts afresh (JST midnight is 15:00 UTC).
    o.clock.advance(time::Duration::hours(15));
    assert!(
        o.f.vault.take_out_record(&o.requester, "customers", &record, View::Full, None, TakeOut::Print).await.is_ok()
    );
}

async fn f_first_record(o: &Office) -> mamori_core::ids::RecordId {
    o.f.vault.search(&o.requester, "customers", "phone", "090-1000-2000", View::Masked, None).await.unwrap()[0].id
}

#[tokio::test]
async fn returns_and_witnessed_disposals_close_the_ledger_and_overdue_is_alerted() {
    let o = office(TakeoutSettings::default(), 1).await;
    let x =
        o.f.vault.request_export(&o.requester, &request(Protection::Password {}, ExportFormat::Xlsx)).await.unwrap();
    o.f.vault.decide_export(&o.approver, &x.id, true, false).await.unwrap();
    o.clock.advance(time::Duration::days(16));
    let info = o.f.vault.get_export(&o.requester, &x.id).await.unwrap();
    assert!(info.overdue);
    let alerts = o.f.vault.takeout_alerts(&o.approver).await.unwrap();
    assert!(alerts.iter().any(|a| a.kind == "overdue" && a.export_id.as_deref() == Some(x.id.as_str())));

    // A disposal is recorded by its witness, an approver other than the requester, with a method.
    let dispose = Settlement::Dispose { method: "シュレッダー".into() };
    let own = o.f.vault.settle_export(&o.requester, &x.id, &dispose).await.unwrap_err();
    assert!(matches!(own, VaultError::Invalid(_)), "{own:?}");
    let staff_cannot = o.f.vault.settle_export(&o.staff, &x.id, &dispose).await.unwrap_err();
    assert!(matches!(staff_cannot, VaultError::Forbidden), "{staff_cannot:?}");
    let no_method = Settlement::Dispose { method: " ".into() };
    assert!(matches!(o.f.vault.settle_export(&o.approver, &x.id, &no_method).await, Err(VaultError::Invalid(_))));
    let closed = o.f.vault.settle_export(&o.approver, &x.id, &dispose).await.unwrap();
    assert_eq!((closed.status.as_str(), closed.overdue), ("closed", false));
    assert!(o.f.vault.download_export(&o.requester, &x.id).await.is_err(), "closed: no more downloads");
    let ledger = o.f.vault.takeout_ledger(&o.approver, None).await.unwrap();
    let last = ledger.last().unwrap();
    assert_eq!((last.kind.as_str(), last.detail["witness"].as_str()), ("dispose", Some("mgr-b")));
    assert_eq!(last.detail["disposed_by"].as_str(), Some("mgr-a"));

    // A return is confirmed by the approver who received the data back, never by the
    // requester's word alone.
    let y =
        o.f.vault.request_export(&o.requester, &request(Protection::Password {}, ExportFormat::Xlsx)).await.unwrap();
    o.f.vault.decide_export(&o.approver, &y.id, true, false).await.unwrap();
    let back = Settlement::Return { note: Some("USB メモリ 3 番".into()) };
    let own = o.f.vault.settle_export(&o.requester, &y.id, &back).await.unwrap_err();
    assert!(matches!(own, VaultError::Invalid(_)), "{own:?}");
    assert_eq!(o.f.vault.get_export(&o.requester, &y.id).await.unwrap().status, "approved", "still open");
    let staff_cannot = o.f.vault.settle_export(&o.staff, &y.id, &back).await.unwrap_err();
    assert!(matches!(staff_cannot, VaultError::Forbidden), "{staff_cannot:?}");
    let returned = o.f.vault.settle_export(&o.approver, &y.id, &back).await.unwrap();
    assert_eq!(returned.status, "closed");
    let returns = o.f.vault.takeout_ledger(&o.approver, Some(&y.id)).await.unwrap();
    let last = returns.last().unwrap();
    assert_eq!((last.kind.as_str(), last.detail["received_by"].as_str()), ("return", Some("mgr-b")));
    assert_eq!(last.detail["returned_by"].as_str(), Some("mgr-a"));
    // Auditors read the ledger and the requests, without filter or recipient.
    let auditor = member(&o.f, "audit1", Role::Auditor).await;
    let all = o.f.vault.takeout_ledger(&o.approver, None).await.unwrap();
    assert_eq!(o.f.vault.takeout_ledger(&auditor, None).await.unwrap().len(), all.len());
    let seen = o.f.vault.list_exports(&auditor).await.unwrap();
    assert_eq!((seen.len(), seen[0].recipient.is_none(), seen[0].filter.is_none()), (2, true, true));
    // Staff read neither.
    assert!(o.f.vault.takeout_ledger(&o.staff, None).await.is_err());
    assert!(o.f.vault.list_exports(&o.staff).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_field_filter_exports_only_matching_records_and_values_stay_out_of_debug() {
    let o = office(TakeoutSettings::default(), 3).await;
    let mut req = request(split(2, &["mgr-a", "mgr-b"]), ExportFormat::Csv);
    req.filter = ExportFilter::Field { field: "phone".into(), value: "09010012001".into() };
    assert!(!format!("{req:?}").contains("0901001"), "{req:?}");
    let x = o.f.vault.request_export(&o.requester, &req).await.unwrap();
    assert_eq!(x.rows, 1);
    // The filter value is sealed at rest.
    let stored = o.f.store().get_export(&x.id).await.unwrap().unwrap();
    assert!(!stored.spec.windows(11).any(|w| w == b"09010012001"));
    assert!(!stored.spec.windows("委託先".len()).any(|w| w == "委託先".as_bytes()));
}

#[tokio::test]
async fn what_is_counted_approved_and_downloaded_is_only_what_the_requester_may_read() {
    let o = office(TakeoutSettings::default(), 2).await;
    // A record of another department: not counted for the sales manager, not exported.
    let hr = NewUser { department: Some("hr".into()), ..NewUser::new("mgr-hr", "mgr-hr", Role::Manager) };
    let (hr, _) = o.f.user_with(hr).await;
    o.f.vault
        .create_record(&hr, "customers", None, &person("人事 花子", "090-9999-0000", "hr@example.jp"))
        .await
        .unwrap();
    let x =
        o.f.vault.request_export(&o.requester, &request(Protection::Password {}, ExportFormat::Xlsx)).await.unwrap();
    assert_eq!(x.rows, 2, "the count reveals nothing about records the requester may not read");

    // A system administrator holds `approve` but no right on the collection: no decision,
    // and no sight of the filter or the recipient.
    let admin = o.f.user("ops-admin", Role::SystemAdmin).await.0;
    let refused = o.f.vault.decide_export(&admin, &x.id, true, false).await.unwrap_err();
    assert!(matches!(refused, VaultError::Forbidden), "{refused:?}");
    assert!(o.f.vault.list_exports(&admin).await.unwrap().iter().all(|e| e.recipient.is_none()));
    assert!(o.f.vault.takeout_alerts(&admin).await.unwrap().is_empty());

    // Approved for 2 records; the collection grows; the download refuses rather than hand
    // over more than was approved.
    o.f.vault.decide_export(&o.approver, &x.id, true, false).await.unwrap();
    let extra = person("追加 三郎", "090-8888-0000", "extra@example.jp");
    o.f.vault.create_record(&o.requester, "customers", None, &extra).await.unwrap();
    let more = o.f.vault.download_export(&o.requester, &x.id).await.unwrap_err();
    assert!(matches!(more, VaultError::Conflict(ref m) if m.contains("more than the 2 approved")), "{more:?}");
    assert_eq!(o.f.vault.get_export(&o.requester, &x.id).await.unwrap().downloads_used, 0, "no download used");
    // Malformed ids are simply not found (and not written to the audit log).
    assert!(matches!(o.f.vault.download_export(&o.requester, "../../etc").await, Err(VaultError::NotFound(_))));
}

/// A misspelt field is refused, never silently dropped: `notes` for `note` would lose the
/// ledger's note, `due` for `due_date` would give the default return date.
#[test]
fn request_and_settlement_bodies_refuse_unknown_fields() {
    let request = serde_json::json!({
        "collection": "customers", "fields": ["name"], "filter": {"kind": "all"}, "purpose": "mailing",
        "recipient": "vendor", "format": "csv", "protection": {"kind": "password"}
    });
    serde_json::from_value::<ExportRequest>(request.clone()).expect("the well-formed request");
    let with = |pointer: &str, key: &str| {
        let mut bent = request.clone();
        bent.pointer_mut(pointer).unwrap().as_object_mut().unwrap().insert(key.into(), "x".into());
        serde_json::from_value::<ExportRequest>(bent)
    };
    assert!(with("", "due").is_err());
    assert!(with("/filter", "value").is_err());
    assert!(with("/protection", "recipients").is_err());
    serde_json::from_value::<Settlement>(serde_json::json!({"kind": "return", "note": "USB 3"})).unwrap();
    assert!(serde_json::from_value::<Settlement>(serde_json::json!({"kind": "return", "notes": "USB 3"})).is_err());
    assert!(
        serde_json::from_value::<Settlement>(serde_json::json!({"kind": "dispose", "method": "m", "by": "x"})).is_err()
    );
}

/// A download is counted, entered in the ledger and audited (its reads and itself) in one
/// transaction: when the audit trail cannot be written, no file is handed over, no download
/// is spent and the ledger shows none (000-8-access-7; the ledger and the log never disagree).
#[tokio::test]
async fn a_download_whose_events_cannot_be_written_is_not_counted() {
    let o = office(TakeoutSettings::default(), 3).await;
    let x =
        o.f.vault.request_export(&o.requester, &request(Protection::Password {}, ExportFormat::Xlsx)).await.unwrap();
    o.f.vault.decide_export(&o.approver, &x.id, true, false).await.unwrap();
    let refusal = o.f.refuse_audit_events("export.download", "success");
    let (reads, failures) = (events(&o.f, "record.read").await.len(), o.f.vault.audit_health().append_failures);
    let err = o.f.vault.download_export(&o.requester, &x.id).await.unwrap_err();
    assert!(matches!(err, VaultError::AuditUnavailable(_)), "{err:?}");
    assert_eq!(o.f.vault.audit_health().append_failures, failures + 1, "the download's own transaction failed");
    drop(refusal);
    assert_eq!(o.f.vault.get_export(&o.requester, &x.id).await.unwrap().downloads_used, 0);
    let kinds: Vec<String> =
        o.f.vault.takeout_ledger(&o.requester, Some(&x.id)).await.unwrap().into_iter().map(|l| l.kind).collect();
    assert_eq!(kinds, ["request", "approve"]);
    assert_eq!(events(&o.f, "record.read").await.len(), reads, "the reads went with the download");

    o.f.vault.download_export(&o.requester, &x.id).await.unwrap();
    let done = events(&o.f, "export.download").await.pop().unwrap();
    assert!(done.note.as_deref().unwrap_or_default().contains("download 1 of"), "{done:?}");
    assert_eq!(o.f.vault.get_export(&o.requester, &x.id).await.unwrap().downloads_used, 1);
}
