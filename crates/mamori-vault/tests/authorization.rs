//! Authorization through the vault: need-to-know by department, clearance, training and
//! pledge, the system administrator's lack of any content path, break-glass, and four-eyes
//! policy changes (issue 5; measures 004-II-1-2-1, 001-20-tech-2-8, 004-V-1-22-a,
//! 004-I-5-5, 004-II-3-1).

mod common;

use common::Fixture;
use mamori_core::access::Role;
use mamori_core::audit::AuditEvent;
use mamori_core::schema::Tier;
use mamori_vault::{NewUser, Principal, ReviewDecision, VaultError, View};
use std::collections::BTreeMap;

fn person(name: &str, phone: &str, email: &str) -> BTreeMap<String, String> {
    [("name", name), ("birth_date", "1985-06-15"), ("phone", phone), ("email", email), ("medical_history", "花粉症")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn member(f: &Fixture, login: &str, role: Role, department: &str) -> Principal {
    let new = NewUser { department: Some(department.into()), ..NewUser::new(login, login, role) };
    f.user_with(new).await.0
}

/// A manager of `sales` and one record they created.
async fn sales_record(f: &Fixture) -> (Principal, mamori_core::ids::RecordId) {
    let manager = member(f, "mgr1", Role::Manager, "sales").await;
    let record = person("試験 花子", "090-1111-2222", "h@example.jp");
    let id = f.vault.create_record(&manager, "customers", None, &record).await.unwrap();
    (manager, id)
}

/// The audit events of `action`, in order.
async fn events(f: &Fixture, action: &str) -> Vec<AuditEvent> {
    let rows = f.store().read_audit(1, 100_000).await.unwrap();
    rows.iter()
        .map(|r| serde_json::from_str::<AuditEvent>(&r.event_json).unwrap())
        .filter(|e| e.action == action)
        .collect()
}

async fn last_event(f: &Fixture, action: &str) -> AuditEvent {
    events(f, action).await.pop().expect("an event")
}

#[tokio::test]
async fn staff_see_their_own_department_only_and_learn_nothing_else() {
    let f = Fixture::new().await;
    let sales = member(&f, "sales1", Role::Staff, "sales").await;
    let hr = member(&f, "hr1", Role::Staff, "hr").await;
    // Staff enter no 要配慮 value they could not read back: refused whole, and audited.
    let sensitive = person("試験 花子", "090-1111-2222", "h@example.jp");
    let refused = f.vault.create_record(&sales, "customers", None, &sensitive).await.unwrap_err();
    assert!(matches!(refused, VaultError::Forbidden), "{refused:?}");
    assert_eq!(last_event(&f, "record.create").await.fields, ["medical_history"]);
    let mut ordinary = sensitive.clone();
    ordinary.remove("medical_history");
    let id = f.vault.create_record(&sales, "customers", None, &ordinary).await.unwrap();
    assert_eq!(last_event(&f, "record.create").await.policy.as_deref(), Some("staff.own-department"));
    // A manager of the department records it.
    let manager = member(&f, "mgr-sales", Role::Manager, "sales").await;
    let history = BTreeMap::from([("medical_history".to_owned(), "花粉症".to_owned())]);
    f.vault.update_record(&manager, "customers", &id, &history).await.unwrap();

    let own = f.vault.get_record(&sales, "customers", &id, View::Masked, None).await.unwrap();
    assert_eq!(own.department.as_deref(), Some("sales"));
    assert_eq!(own.fields["phone"], "090-****-2222");
    // 要配慮個人情報 is not shown to staff at all, not even masked.
    assert!(!own.fields.contains_key("medical_history"), "{own:?}");
    assert!(!last_event(&f, "record.read").await.fields.contains(&"medical_history".to_owned()));
    assert_eq!(last_event(&f, "record.read").await.policy.as_deref(), Some("staff.own-department"));

    // Another department: the same answer as for a record that does not exist.
    let other = f.vault.get_record(&hr, "customers", &id, View::Masked, None).await.unwrap_err();
    let missing = f
        .vault
        .get_record(&hr, "customers", &mamori_core::ids::RecordId::generate(), View::Masked, None)
        .await
        .unwrap_err();
    assert_eq!(other.to_string(), missing.to_string());
    let denied = last_event(&f, "record.read").await;
    assert_eq!((denied.outcome.as_str(), denied.policy.as_deref()), ("failure", None), "the lookup of the missing one");
    let reads = events(&f, "record.read").await;
    let denial = &reads[reads.len() - 2];
    assert_eq!((denial.outcome.as_str(), denial.policy.as_deref()), ("denied", Some("default-deny")));

    // Search: hits of other departments are left out, and only the audit log counts them.
    let found = f.vault.search(&hr, "customers", "phone", "09011112222", View::Masked, None).await.unwrap();
    assert!(found.is_empty());
    assert_eq!(last_event(&f, "record.search").await.reason.as_deref(), Some("1 hits withheld by policy"));
    let found = f.vault.search(&sales, "customers", "phone", "09011112222", View::Masked, None).await.unwrap();
    assert_eq!(found.len(), 1);

    // Staff never get the full view, and cannot create records for another department.
    let full = f.vault.get_record(&sales, "customers", &id, View::Full, None).await.unwrap_err();
    assert!(matches!(full, VaultError::Forbidden), "{full:?}");
    let elsewhere = f
        .vault
        .create_record_in(&sales, "customers", None, Some("hr"), &person("試験 次郎", "090-3333-4444", "j@example.jp"))
        .await
        .unwrap_err();
    assert!(matches!(elsewhere, VaultError::Forbidden), "{elsewhere:?}");
}

#[tokio::test]
async fn full_view_needs_training_pledge_and_clearance() {
    let f = Fixture::new().await;
    let (manager, id) = sales_record(&f).await;
    let full = f.vault.get_record(&manager, "customers", &id, View::Full, None).await.unwrap();
    assert_eq!((full.fields["phone"].as_str(), full.fields["medical_history"].as_str()), ("090-1111-2222", "花粉症"));
    let lapsed = NewUser {
        department: Some("sales".into()),
        training_valid_until: Some(f.vault.now() - time::Duration::days(1)),
        ..NewUser::new("mgr2", "mgr2", Role::Manager)
    };
    let (lapsed, _) = f.user_with(lapsed).await;
    let err = f.vault.get_record(&lapsed, "customers", &id, View::Full, None).await.unwrap_err();
    assert!(matches!(err, VaultError::Forbidden), "{err:?}");
    assert_eq!(last_event(&f, "record.read").await.policy.as_deref(), Some("full-view-needs-training-and-pledge"));
    assert!(f.vault.get_record(&lapsed, "customers", &id, View::Masked, None).await.is_ok(), "masked stays open");

    // The collection is 秘; someone cleared for 社外秘 only sees none of it.
    let low = NewUser {
        department: Some("sales".into()),
        clearance: Some(Tier::Confidential),
        ..NewUser::new("mgr3", "mgr3", Role::Manager)
    };
    let (low, _) = f.user_with(low).await;
    let err = f.vault.get_record(&low, "customers", &id, View::Masked, None).await.unwrap_err();
    assert!(matches!(err, VaultError::Forbidden), "{err:?}");
}

#[tokio::test]
async fn system_admin_reads_nothing_until_a_second_admin_approves_break_glass() {
    let f = Fixture::new().await;
    let (_, id) = sales_record(&f).await;
    let ops = member(&f, "ops1", Role::SystemAdmin, "it").await;
    let ops2 = member(&f, "ops2", Role::SystemAdmin, "it").await;

    for view in [View::Masked, View::Full] {
        let err = f.vault.get_record(&ops, "customers", &id, view, None).await.unwrap_err();
        assert!(matches!(err, VaultError::Forbidden), "{err:?}");
    }
    assert_eq!(last_event(&f, "record.read").await.policy.as_deref(), Some("guardrail.system-admin-no-content"));
    assert!(matches!(
        f.vault.search(&ops, "customers", "phone", "09011112222", View::Masked, None).await,
        Err(VaultError::Forbidden)
    ));
    assert!(matches!(
        f.vault.get_record(&f.admin, "customers", &id, View::Masked, None).await,
        Err(VaultError::Forbidden)
    ));

    // Bad requests change nothing.
    assert!(f.vault.request_break_glass(&ops, "customers", 241, "障害調査のため顧客記録を確認").await.is_err());
    assert!(f.vault.request_break_glass(&ops, "customers", 60, "short").await.is_err());
    assert!(f.vault.request_break_glass(&f.admin, "customers", 60, "障害調査のため顧客記録を確認").await.is_err());

    let grant = f.vault.request_break_glass(&ops, "customers", 60, "障害調査のため顧客記録を確認").await.unwrap();
    assert!(!grant.active);
    assert!(f.vault.get_record(&ops, "customers", &id, View::Masked, None).await.is_err(), "pending opens nothing");
    // Not by the requester, not by the key-holding operator.
    assert!(matches!(f.vault.decide_break_glass(&ops, &grant.id, true).await, Err(VaultError::Forbidden)));
    assert!(matches!(f.vault.decide_break_glass(&f.admin, &grant.id, true).await, Err(VaultError::Forbidden)));
    let approved = f.vault.decide_break_glass(&ops2, &grant.id, true).await.unwrap();
    assert!(approved.active);
    assert_eq!(approved.reason, "障害調査のため顧客記録を確認");
    assert!(!format!("{approved:?}").contains("障害調査"), "Debug never shows the reason");

    let seen = f.vault.get_record(&ops, "customers", &id, View::Full, None).await.unwrap();
    assert_eq!(seen.fields["phone"], "090-1111-2222");
    let read = last_event(&f, "record.read").await;
    assert_eq!(read.grant.as_deref(), Some(grant.id.as_str()));
    assert_eq!(read.policy.as_deref(), Some("guardrail.break-glass-read"));
    // Reads only: no writes through break-glass.
    let mut change = BTreeMap::new();
    change.insert("phone".to_owned(), "090-0000-0000".to_owned());
    assert!(f.vault.update_record(&ops, "customers", &id, &change).await.is_err());

    // The reason is sealed at rest.
    let raw = std::fs::read(f.db_path()).unwrap();
    assert!(!raw.windows("障害調査".len()).any(|w| w == "障害調査".as_bytes()));

    f.vault.revoke_break_glass(&ops, &grant.id).await.unwrap();
    assert!(f.vault.get_record(&ops, "customers", &id, View::Masked, None).await.is_err(), "closed again");
    let listed = f.vault.list_break_glass(&ops2).await.unwrap();
    assert_eq!((listed.len(), listed[0].status.as_str()), (1, "revoked"));
}

#[tokio::test]
async fn policy_changes_need_a_second_administrator_and_a_dry_run_shows_them() {
    let f = Fixture::new().await;
    let staff = member(&f, "staff1", Role::Staff, "sales").await;
    let ops1 = member(&f, "ops1", Role::SystemAdmin, "it").await;
    let ops2 = member(&f, "ops2", Role::SystemAdmin, "it").await;
    assert!(f.vault.search(&staff, "customers", "phone", "09011112222", View::Masked, None).await.is_ok());

    let (active, text) = f.vault.policy_version(&ops1, None).await.unwrap();
    assert_eq!((active.version, active.active, active.proposed_by.as_str()), (1, true, mamori_vault::BUILTIN_PROPOSER));
    let start = text.find("@id(\"staff.search\")").unwrap();
    let end = start + text[start..].find(";\n").unwrap() + 2;
    let proposed_text = format!("{}{}", &text[..start], &text[end..]);

    // Refused proposals change nothing.
    for bad in ["permit (principal, action, resource);", "@id(\"guardrail.x\") permit (principal, action, resource);"] {
        assert!(matches!(f.vault.propose_policy(&ops1, bad, "test").await, Err(VaultError::Invalid(_))));
    }
    assert!(matches!(f.vault.propose_policy(&staff, &proposed_text, "x").await, Err(VaultError::Forbidden)));

    let v2 = f.vault.propose_policy(&ops1, &proposed_text, "staff search only through managers").await.unwrap();
    let v3 = f.vault.propose_policy(&ops1, &text, "no change").await.unwrap();
    assert_eq!((v2.version, v2.status.as_str(), v2.base_version), (2, "pending", Some(1)));
    let changes = f.vault.policy_dry_run(&ops2, 2, "customers").await.unwrap();
    assert!(changes.iter().any(|c| c.login == "staff1" && c.action == "search" && c.before && !c.after), "{changes:?}");
    assert!(changes.iter().all(|c| c.action == "search"), "{changes:?}");
    assert!(f.vault.search(&staff, "customers", "phone", "09011112222", View::Masked, None).await.is_ok(), "pending");

    assert!(matches!(f.vault.decide_policy(&ops1, 2, true).await, Err(VaultError::Forbidden)), "own proposal");
    assert!(matches!(f.vault.decide_policy(&f.admin, 2, true).await, Err(VaultError::Forbidden)), "operator");
    let approved = f.vault.decide_policy(&ops2, 2, true).await.unwrap();
    assert!(approved.active);
    assert_eq!(last_event(&f, "policy.approve").await.actor, ops2.actor());
    let err = f.vault.search(&staff, "customers", "phone", "09011112222", View::Masked, None).await.unwrap_err();
    assert!(matches!(err, VaultError::Forbidden), "{err:?}");

    // Version 3 was proposed against 1: approving it would silently undo version 2.
    assert!(matches!(f.vault.decide_policy(&ops2, v3.version, true).await, Err(VaultError::Conflict(_))));
    assert!(matches!(f.vault.decide_policy(&ops2, 2, false).await, Err(VaultError::Conflict(_))), "decided once");
    let versions = f.vault.list_policy_versions(&ops1).await.unwrap();
    let states: Vec<(u64, &str, bool)> = versions.iter().map(|v| (v.version, v.status.as_str(), v.active)).collect();
    assert_eq!(states, [(1, "approved", false), (2, "approved", true), (3, "pending", false)]);
}

#[tokio::test]
async fn access_review_lists_effective_rights_and_revoking_disables_at_once() {
    let f = Fixture::new().await;
    let (staff, staff_token) =
        f.user_with(NewUser { department: Some("sales".into()), ..NewUser::new("staff1", "s", Role::Staff) }).await;
    let manager = member(&f, "mgr1", Role::Manager, "sales").await;
    member(&f, "ops1", Role::SystemAdmin, "it").await;

    assert!(matches!(f.vault.access_review(&staff).await, Err(VaultError::Forbidden)));
    let review = f.vault.access_review(&manager).await.unwrap();
    let entry = |login: &str| review.iter().find(|e| e.login == login).unwrap().clone();
    let s = entry("staff1");
    assert_eq!((s.department.as_deref(), s.clearance.as_str(), s.pledge_signed), (Some("sales"), "secret", true));
    assert_eq!(s.system, ["collection.read"]);
    let c = &s.collections[0];
    assert_eq!((c.collection.as_str(), c.tier.as_str()), ("customers", "secret"));
    assert_eq!(c.collection_wide, ["search"]);
    assert_eq!(c.own_department, ["view_masked", "create", "update"]);
    assert!(c.other_departments.is_empty());
    let ops = entry("ops1");
    assert!(ops.system.contains(&"user.manage".to_owned()) && ops.system.contains(&"policy.manage".to_owned()));
    assert!(ops.collections.iter().all(|c| c.collection_wide.is_empty() && c.own_department.is_empty()));

    assert!(matches!(
        f.vault.review_access(&manager, "mgr1", ReviewDecision::Confirm).await,
        Err(VaultError::Forbidden)
    ));
    assert!(matches!(
        f.vault.review_access(&f.admin, "staff1", ReviewDecision::Confirm).await,
        Err(VaultError::Forbidden)
    ));
    let confirmed = f.vault.review_access(&manager, "staff1", ReviewDecision::Confirm).await.unwrap();
    assert!(!confirmed.disabled);
    let s = f.vault.access_review(&manager).await.unwrap().into_iter().find(|e| e.login == "staff1").unwrap();
    assert_eq!(s.reviewed_by, Some(manager.actor()));
    assert!(s.reviewed_at.is_some());

    let revoked = f.vault.review_access(&manager, "staff1", ReviewDecision::Revoke).await.unwrap();
    assert!(revoked.disabled);
    assert!(matches!(f.vault.authenticate(&staff_token, None).await, Err(VaultError::Unauthenticated)));
    assert!(last_event(&f, "access.review").await.reason.unwrap().contains("revoked"));
}

/// Allowed hours and source networks (issue 4 item 5) are policies like any other: here an
/// approved version forbids content outside 08:00–20:00 JST and from outside 10.0.0.0/8.
#[tokio::test]
async fn office_hours_and_networks_are_policies() {
    use mamori_core::clock::ManualClock;
    // 2026-12-07 10:00 JST (a Monday), as UTC.
    let start = time::macros::datetime!(2026-12-07 01:00 UTC);
    let clock = std::sync::Arc::new(ManualClock::new(start));
    let f = Fixture::build(mamori_vault::VaultConfig::default(), clock.clone()).await;
    let (manager, id) = sales_record(&f).await;
    let ops1 = member(&f, "ops1", Role::SystemAdmin, "it").await;
    let ops2 = member(&f, "ops2", Role::SystemAdmin, "it").await;

    let (_, text) = f.vault.policy_version(&ops1, None).await.unwrap();
    let rule = r#"
@id("office-hours-and-network")
forbid (principal, action in [Mamori::Action::"read_content", Mamori::Action::"write_content"], resource)
unless { context.hour >= 8 && context.hour < 20 && context.source.isInRange(ip("10.0.0.0/8")) };
"#;
    let v = f.vault.propose_policy(&ops1, &format!("{text}{rule}"), "office hours, office network").await.unwrap();
    f.vault.decide_policy(&ops2, v.version, true).await.unwrap();

    let from = |source: &str| Principal { source: Some(source.into()), ..manager.clone() };
    assert!(f.vault.get_record(&from("10.1.2.3"), "customers", &id, View::Masked, None).await.is_ok());
    let err = f.vault.get_record(&from("203.0.113.9"), "customers", &id, View::Masked, None).await.unwrap_err();
    assert!(matches!(err, VaultError::Forbidden), "{err:?}");
    assert_eq!(last_event(&f, "record.read").await.policy.as_deref(), Some("office-hours-and-network"));
    clock.advance(time::Duration::hours(11)); // 21:00 JST
    let err = f.vault.get_record(&from("10.1.2.3"), "customers", &id, View::Masked, None).await.unwrap_err();
    assert!(matches!(err, VaultError::Forbidden), "{err:?}");
}

#[tokio::test]
async fn bad_input_to_the_new_paths_is_refused_and_changes_nothing() {
    let f = Fixture::new().await;
    let (manager, _) = sales_record(&f).await;
    let ops = member(&f, "ops1", Role::SystemAdmin, "it").await;
    let records = |f: &Fixture| {
        let store = f.store().clone();
        async move {
            let c = store.get_collection("customers").await.unwrap().unwrap();
            store.count_records(c.id).await.unwrap()
        }
    };
    let before = records(&f).await;
    for department in ["", "\u{7}bell", &"部".repeat(65)] {
        let err = f
            .vault
            .create_record_in(
                &manager,
                "customers",
                None,
                Some(department),
                &person("試験 次郎", "090-5555-6666", "x@example.jp"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, VaultError::Invalid(_)), "{department:?}: {err:?}");
    }
    assert_eq!(records(&f).await, before);

    let (_, text) = f.vault.policy_version(&ops, None).await.unwrap();
    for summary in ["", "   ", &"x".repeat(501)] {
        assert!(matches!(f.vault.propose_policy(&ops, &text, summary).await, Err(VaultError::Invalid(_))));
    }
    assert_eq!(f.vault.list_policy_versions(&ops).await.unwrap().len(), 1);
    assert!(matches!(f.vault.decide_policy(&ops, 99, true).await, Err(VaultError::NotFound(_))));
    assert!(matches!(f.vault.decide_break_glass(&ops, "no-such-grant", true).await, Err(VaultError::NotFound(_))));

    // An auditor reads policies through its second right: no false denial in the log.
    let auditor = member(&f, "aud1", Role::Auditor, "audit").await;
    assert_eq!(f.vault.list_policy_versions(&auditor).await.unwrap().len(), 1);
    assert!(events(&f, "policy.list").await.iter().all(|e| e.outcome.as_str() != "denied"));
    assert!(matches!(f.vault.list_policy_versions(&manager).await, Err(VaultError::Forbidden)));
    assert_eq!(last_event(&f, "policy.list").await.outcome.as_str(), "denied");
}

/// Staff may update records of their department, but only the fields they can see: a
/// 要配慮 field hidden from them is neither read nor overwritten (004-II-1-2-1). The refusal
/// is audited and changes nothing.
#[tokio::test]
async fn staff_cannot_overwrite_a_field_hidden_from_them() {
    let f = Fixture::new().await;
    let (manager, id) = sales_record(&f).await;
    let clerk = member(&f, "sales1", Role::Staff, "sales").await;
    let change = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    let hidden = f
        .vault
        .update_record(&clerk, "customers", &id, &change(&[("phone", "090-3333-4444"), ("medical_history", "なし")]))
        .await
        .unwrap_err();
    assert!(matches!(hidden, VaultError::Forbidden), "{hidden:?}");
    let denied = last_event(&f, "record.update").await;
    assert_eq!(
        (denied.outcome, denied.fields.clone()),
        (mamori_core::audit::Outcome::Denied, vec!["medical_history".to_owned()])
    );
    let full = f.vault.get_record(&manager, "customers", &id, View::Full, None).await.unwrap();
    assert_eq!(
        (full.fields["medical_history"].as_str(), full.fields["phone"].as_str()),
        ("花粉症", "090-1111-2222"),
        "nothing changed"
    );

    // What the clerk can see, the clerk can change; the manager can change the rest.
    f.vault.update_record(&clerk, "customers", &id, &change(&[("phone", "090-3333-4444")])).await.unwrap();
    f.vault.update_record(&manager, "customers", &id, &change(&[("medical_history", "なし")])).await.unwrap();
    let full = f.vault.get_record(&manager, "customers", &id, View::Full, None).await.unwrap();
    assert_eq!((full.fields["medical_history"].as_str(), full.fields["phone"].as_str()), ("なし", "090-3333-4444"));
}

/// Dual control over what an account reads (seed 004: no one administrator sets all rights):
/// a signed-in administrator who raises the clearance of an account that reads content, or
/// moves it to another content role, disables it, its sessions end, and only a privacy
/// officer activates it again; lowering needs nobody else.
#[tokio::test]
async fn a_raised_clearance_waits_for_a_privacy_officer() {
    let f = Fixture::new().await;
    let (admin, _) = f.user("ops-admin", Role::SystemAdmin).await;
    let (officer, _) = f.user("officer", Role::PrivacyOfficer).await;
    let (_, clerk_token) = f.user("clerk", Role::Staff).await;
    let (_, other_token) = f.user("clerk2", Role::Staff).await;
    let (_, third_token) = f.user("clerk3", Role::Staff).await;
    let to = |tier| mamori_vault::ProfileChange { clearance: Some(tier), ..Default::default() };

    let lowered = f.vault.update_user(&admin, "clerk2", to(Tier::Public)).await.unwrap();
    assert!(!lowered.disabled, "lowering takes effect at once");
    assert!(f.vault.authenticate(&other_token, None).await.is_ok());

    let raised = f.vault.update_user(&admin, "clerk", to(Tier::TopSecret)).await.unwrap();
    assert!(raised.disabled, "raised: disabled until activated");
    assert!(f.vault.authenticate(&clerk_token, None).await.is_err(), "sessions ended");
    assert!(last_event(&f, "user.update").await.reason.unwrap().contains("privacy officer"));
    // The administrator cannot simply enable it again; the privacy officer activates it.
    assert!(matches!(f.vault.set_user_disabled(&admin, "clerk", false).await, Err(VaultError::Forbidden)));
    f.vault.activate_user(&officer, "clerk").await.unwrap();
    let users = f.vault.list_users(&admin).await.unwrap();
    let clerk = users.iter().find(|u| u.login == "clerk").unwrap();
    assert_eq!((clerk.disabled, clerk.clearance.as_deref()), (false, Some("top_secret")));

    // A move between content roles (staff → privacy officer, who reads every department)
    // waits the same way.
    let promoted = mamori_vault::ProfileChange { role: Some(Role::PrivacyOfficer), ..Default::default() };
    assert!(f.vault.update_user(&admin, "clerk3", promoted).await.unwrap().disabled);
    assert!(f.vault.authenticate(&third_token, None).await.is_err());
}
