//! Identity: password policy, lockout, second factor, session limits, vendor accounts.
//! Measures: 001-20-tech-1-5 (lockout), 004-V-2-5 (MFA for privileged administrators),
//! 004-V-2-3 (password rules).

mod common;

use common::*;
use mamori_core::access::Role;
use mamori_core::clock::{Clock as _, SystemClock};
use mamori_crypto::{SecretString, TotpSecret};
use mamori_vault::{NewUser, VaultError};

fn pw(s: &str) -> SecretString {
    SecretString::new(s.into())
}

#[tokio::test]
async fn lockout_after_five_failures_gives_the_same_answer() {
    let f = Fixture::new().await;
    f.user("staff1", Role::Staff).await;
    for _ in 0..5 {
        assert!(matches!(f.vault.login("staff1", &pw("Wrong-Pass-123"), None).await, Err(VaultError::Unauthenticated)));
    }
    // Locked: even the right password is refused, with the same error as a wrong one.
    let locked = f.vault.login("staff1", &pw(PASSWORD), None).await.unwrap_err();
    assert!(matches!(locked, VaultError::Unauthenticated), "{locked:?}");
    let user = f.store().get_user_by_login("staff1").await.unwrap().unwrap();
    assert!(user.locked_until.is_some());
    f.vault.unlock_user(&f.admin, "staff1").await.unwrap();
    f.vault.login("staff1", &pw(PASSWORD), None).await.unwrap();
}

/// The lockout ends the account's sessions even when its `auth.password_change` event cannot
/// be written: the answer is 503, but the sessions are gone (a log that is down never keeps
/// open an account that is being closed).
#[tokio::test]
async fn a_lockout_ends_the_sessions_even_when_its_event_cannot_be_written() {
    let f = Fixture::new().await;
    let (staff, token) = f.user("staff1", Role::Staff).await;
    for _ in 0..4 {
        let wrong = f.vault.change_password(&staff, &pw("Wrong-Pass-123"), &pw("Another-Pass-77")).await;
        assert!(matches!(wrong, Err(VaultError::Unauthenticated)), "{wrong:?}");
    }
    let refusal = f.refuse_audit_events("auth.password_change", "failure");
    let fifth = f.vault.change_password(&staff, &pw("Wrong-Pass-123"), &pw("Another-Pass-77")).await;
    assert!(matches!(fifth, Err(VaultError::AuditUnavailable(_))), "{fifth:?}");
    drop(refusal);
    let user = f.store().get_user_by_login("staff1").await.unwrap().unwrap();
    assert!(user.locked_until.is_some(), "locked");
    assert!(f.store().list_user_sessions(&user.id).await.unwrap().is_empty(), "sessions ended");
    assert!(matches!(f.vault.authenticate(&token, None).await, Err(VaultError::Unauthenticated)));
}

/// Whoever holds a session left open must not get unlimited guesses at the password behind
/// it: a wrong current password counts like a failed login, and the failure that locks the
/// account ends its sessions (001-20-tech-1-5).
#[tokio::test]
async fn wrong_current_passwords_lock_the_account_and_end_its_sessions() {
    let f = Fixture::new().await;
    let (staff, token) = f.user("staff1", Role::Staff).await;
    for _ in 0..4 {
        let wrong = f.vault.change_password(&staff, &pw("Wrong-Pass-123"), &pw("Another-Pass-77")).await;
        assert!(matches!(wrong, Err(VaultError::Unauthenticated)), "{wrong:?}");
    }
    f.vault.authenticate(&token, None).await.expect("four failures: the session lives on");
    let fifth = f.vault.change_password(&staff, &pw("Wrong-Pass-123"), &pw("Another-Pass-77")).await;
    assert!(matches!(fifth, Err(VaultError::Unauthenticated)), "{fifth:?}");
    assert!(matches!(f.vault.authenticate(&token, None).await, Err(VaultError::Unauthenticated)), "sessions ended");
    let user = f.store().get_user_by_login("staff1").await.unwrap().unwrap();
    assert_eq!(user.failed_logins, 5);
    assert!(user.locked_until.is_some());
    // Locked: the right current password is refused too, and nothing changes.
    let right = f.vault.change_password(&staff, &pw(PASSWORD), &pw("Another-Pass-77")).await;
    assert!(matches!(right, Err(VaultError::Unauthenticated)), "{right:?}");
    assert!(matches!(f.vault.login("staff1", &pw(PASSWORD), None).await, Err(VaultError::Unauthenticated)));
    f.vault.unlock_user(&f.admin, "staff1").await.unwrap();
    f.vault.login("staff1", &pw(PASSWORD), None).await.expect("the old password still holds");
    let reasons: Vec<String> = f
        .store()
        .read_audit(1, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event_json.contains("auth.password_change") || r.event_json.contains("auth.lockout"))
        .map(|r| r.event_json)
        .collect();
    assert_eq!(reasons.len(), 7, "{reasons:#?}");
    assert!(reasons.iter().any(|e| e.contains("account locked, its sessions ended")), "{reasons:#?}");
    assert!(reasons.last().unwrap().contains("\"reason\":\"account locked\""), "{reasons:#?}");
}

#[tokio::test]
async fn weak_and_reused_passwords_are_rejected_with_rule_slugs() {
    let f = Fixture::new().await;
    let (p, _) = f.user("staff1", Role::Staff).await;
    for (bad, rule) in
        [("short1A!", "too-short"), ("staff1-Password!9", "contains-login"), ("Aaaa-bbbb-1111", "identical-run")]
    {
        let Err(VaultError::PasswordRejected(r)) = f.vault.change_password(&p, &pw(PASSWORD), &pw(bad)).await else {
            panic!("{bad} accepted")
        };
        assert!(r.slugs().contains(&rule), "{bad}: {:?}", r.slugs());
    }
    // History: back to the current password is refused.
    let Err(VaultError::PasswordRejected(r)) = f.vault.change_password(&p, &pw(PASSWORD), &pw(PASSWORD)).await else {
        panic!("reuse accepted")
    };
    assert!(r.slugs().contains(&"reused"), "{:?}", r.slugs());
    let fresh = f.vault.generate_password();
    f.vault.change_password(&p, &pw(PASSWORD), &fresh).await.unwrap();
    assert!(f.vault.login("staff1", &pw(PASSWORD), None).await.is_err());
    f.vault.login("staff1", &fresh, None).await.unwrap();
}

#[tokio::test]
async fn administrators_enrol_totp_then_need_a_fresh_code() {
    let f = Fixture::new().await;
    let password = f.vault.generate_password();
    let new = NewUser {
        password: Some(password.clone()),
        must_change_password: false,
        ..NewUser::new("admin1", "管理者", Role::SystemAdmin)
    };
    f.vault.create_user(&f.admin, new).await.unwrap();

    // Without a factor: a setup session that may do nothing but enrol.
    let out = f.vault.login("admin1", &password, None).await.unwrap();
    assert!(out.mfa_enrolment_required);
    let me = f.vault.authenticate(&out.token, None).await.unwrap();
    assert!(matches!(f.vault.list_users(&me).await, Err(VaultError::PasswordChangeRequired)));
    let enrolment = f.vault.begin_totp_enrolment(&me).await.unwrap();
    let secret = TotpSecret::from_base32(enrolment.secret_base32.expose()).unwrap();
    let now = SystemClock.now().unix_timestamp() as u64;
    // Bad input changes nothing: a wrong code, a tampered or foreign enrolment, a non-code.
    let good = pw(&secret.current_code(now));
    let wrong = pw(if secret.current_code(now) == "000000" { "111111" } else { "000000" });
    let mut tampered = enrolment.enrolment.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (other, _) = f.user("staff9", Role::Staff).await;
    for (token, code) in [
        (enrolment.enrolment.as_str(), &wrong),
        (tampered.as_str(), &good),
        ("not-an-enrolment", &good),
        (enrolment.enrolment.as_str(), &pw("abc")),
    ] {
        let err = f.vault.confirm_totp_enrolment(&me, token, code).await.unwrap_err();
        assert!(matches!(err, VaultError::Invalid(_)), "{err:?}");
    }
    let err = f.vault.confirm_totp_enrolment(&other, &enrolment.enrolment, &good).await.unwrap_err();
    assert!(matches!(err, VaultError::Invalid(_)), "another user's enrolment: {err:?}");
    let unchanged = f.store().get_user_by_login("admin1").await.unwrap().unwrap();
    assert_eq!(unchanged.totp_secret, None);
    let codes =
        f.vault.confirm_totp_enrolment(&me, &enrolment.enrolment, &pw(&secret.current_code(now))).await.unwrap();
    assert_eq!(codes.len(), 10);
    assert!(f.vault.authenticate(&out.token, None).await.is_err(), "enrolment ends the setup session");

    // Now the password alone is not enough, a used code is refused, recovery codes work once.
    assert!(matches!(f.vault.login("admin1", &password, None).await, Err(VaultError::MfaRequired)));
    let next = secret.current_code(now + 30);
    let later = pw(&next);
    let step_code = f.vault.login_with_code("admin1", &password, Some(&later), None).await;
    // The code of the next step is inside the ±1 window.
    let out = step_code.unwrap();
    assert!(!out.mfa_enrolment_required);
    let replay = f.vault.login_with_code("admin1", &password, Some(&later), None).await.unwrap_err();
    assert!(matches!(replay, VaultError::Unauthenticated), "{replay:?}");
    let recovery = codes[0].clone();
    f.vault.login_with_code("admin1", &password, Some(&recovery), None).await.unwrap();
    assert!(f.vault.login_with_code("admin1", &password, Some(&recovery), None).await.is_err(), "used up");

    // From an untrusted network an account without a factor is refused outright.
    let (_, _) = f.user("staff1", Role::Staff).await;
    let remote = f.vault.login("staff1", &pw(PASSWORD), Some("203.0.113.7".into())).await.unwrap_err();
    assert!(matches!(remote, VaultError::MfaRequired), "{remote:?}");
}

#[tokio::test]
async fn staff_has_one_session_and_vendors_need_an_end_date() {
    let f = Fixture::new().await;
    let (_, first) = f.user("staff1", Role::Staff).await;
    let second = f.vault.login("staff1", &pw(PASSWORD), None).await.unwrap();
    assert!(f.vault.authenticate(&first, None).await.is_err(), "the older session ended");
    f.vault.authenticate(&second.token, None).await.unwrap();

    let vendor = NewUser { vendor: true, ..NewUser::new("vendor1", "委託先 太郎", Role::Staff) };
    assert!(matches!(f.vault.create_user(&f.admin, vendor).await, Err(VaultError::Invalid(_))));
    let far = SystemClock.now() + time::Duration::days(90);
    let vendor =
        NewUser { vendor: true, valid_until: Some(far), ..NewUser::new("vendor1", "委託先 太郎", Role::Staff) };
    assert!(matches!(f.vault.create_user(&f.admin, vendor).await, Err(VaultError::Invalid(_))));
    let soon = SystemClock.now() + time::Duration::days(7);
    let vendor =
        NewUser { vendor: true, valid_until: Some(soon), ..NewUser::new("vendor1", "委託先 太郎", Role::Staff) };
    f.vault.create_user(&f.admin, vendor).await.unwrap();
}

/// An account unused for the dormancy period (90 days) is disabled at its next login; once an
/// administrator enables it again (or a privacy officer activates it), dormancy counts from
/// then, so its next login works instead of disabling it again.
#[tokio::test]
async fn an_account_enabled_after_dormancy_can_log_in() {
    use mamori_core::clock::ManualClock;
    use time::macros::datetime;

    let clock = std::sync::Arc::new(ManualClock::new(datetime!(2026-01-05 00:00 UTC)));
    let f = Fixture::build(mamori_vault::VaultConfig::default(), clock.clone()).await;
    f.user("clerk1", Role::Staff).await;
    f.user("clerk2", Role::Staff).await;
    clock.set(datetime!(2026-04-06 00:00 UTC));
    for login in ["clerk1", "clerk2"] {
        let dormant = f.vault.login(login, &pw(PASSWORD), None).await.unwrap_err();
        assert!(matches!(dormant, VaultError::Unauthenticated), "{dormant:?}");
        assert!(f.store().get_user_by_login(login).await.unwrap().unwrap().disabled);
    }
    f.vault.set_user_disabled(&f.admin, "clerk1", false).await.unwrap();
    f.vault.login("clerk1", &pw(PASSWORD), None).await.expect("enabled today: not dormant");

    let (privacy, _) = f.user("privacy1", Role::PrivacyOfficer).await;
    let one_time = f.vault.activate_user(&privacy, "clerk2").await.unwrap();
    let out = f.vault.login("clerk2", &one_time, None).await.expect("activated today: not dormant");
    assert!(out.password_change_required);
}

/// Access windows (001-20-tech-2-5: no use outside working hours or on holidays;
/// 001-20-tech-1-6: only from the networks authorised users work from). Staff may work
/// 08:00–20:00 JST on weekdays except holidays, from 10.0.0.0/8; managers are unrestricted.
#[tokio::test]
async fn access_windows_refuse_logins_and_end_sessions_outside_hours_and_networks() {
    use mamori_core::access_window::{AccessWindow, WindowRefusal, parse_days};
    use mamori_core::clock::ManualClock;
    use time::macros::{date, datetime};

    // Monday 2026-12-07, 09:00 JST.
    let clock = std::sync::Arc::new(ManualClock::new(datetime!(2026-12-07 00:00 UTC)));
    let mut config = mamori_vault::VaultConfig::default();
    config.auth.access_windows = vec![(
        Role::Staff,
        AccessWindow {
            hours: Some("08:00-20:00".parse().unwrap()),
            days: parse_days(["mon-fri"]).unwrap(),
            closed_on_holidays: true,
            networks: vec!["10.0.0.0/8".parse().unwrap()],
        },
    )];
    config.auth.holidays = vec![date!(2026 - 12 - 08)];
    config.auth.trusted_networks.push("10.0.0.0/8".parse().unwrap());
    let f = Fixture::build(config, clock.clone()).await;
    f.user("clerk1", Role::Staff).await;
    f.user("boss1", Role::Manager).await;
    let office = || Some("10.1.2.3".to_owned());
    let password = pw(PASSWORD);
    let login = |source: Option<String>| f.vault.login("clerk1", &password, source);

    // Inside the window: logged in, and the token works from the office network.
    let out = login(office()).await.unwrap();
    f.vault.authenticate(&out.token, office()).await.unwrap();
    // The same token from another network ends the session, for the office too.
    assert!(matches!(
        f.vault.authenticate(&out.token, Some("192.0.2.44".into())).await,
        Err(VaultError::Unauthenticated)
    ));
    assert!(matches!(f.vault.authenticate(&out.token, office()).await, Err(VaultError::Unauthenticated)));
    // A login from another network is refused after the password, and counts no failure.
    let err = login(Some("192.0.2.44".into())).await.unwrap_err();
    assert!(matches!(err, VaultError::OutsideAccessWindow(WindowRefusal::Network)), "{err:?}");
    // Without the right password nobody learns about the window.
    let err = f.vault.login("clerk1", &pw("Wrong-Horse-42"), Some("192.0.2.44".into())).await.unwrap_err();
    assert!(matches!(err, VaultError::Unauthenticated), "{err:?}");

    // 19:50 JST: a session started now ends with the working hours at 20:00.
    clock.set(datetime!(2026-12-07 10:50 UTC));
    let out = login(office()).await.unwrap();
    f.vault.authenticate(&out.token, office()).await.unwrap();
    clock.set(datetime!(2026-12-07 11:00 UTC));
    assert!(matches!(f.vault.authenticate(&out.token, office()).await, Err(VaultError::Unauthenticated)));
    let err = login(office()).await.unwrap_err();
    assert!(matches!(err, VaultError::OutsideAccessWindow(WindowRefusal::Hours)), "{err:?}");
    // A manager has no window.
    f.vault.login("boss1", &pw(PASSWORD), office()).await.unwrap();

    // Tuesday 2026-12-08 is a listed holiday; Saturday is not a working day.
    clock.set(datetime!(2026-12-08 01:00 UTC));
    let err = login(office()).await.unwrap_err();
    assert!(matches!(err, VaultError::OutsideAccessWindow(WindowRefusal::Holiday)), "{err:?}");
    clock.set(datetime!(2026-12-12 01:00 UTC));
    let err = login(office()).await.unwrap_err();
    assert!(matches!(err, VaultError::OutsideAccessWindow(WindowRefusal::Day)), "{err:?}");

    // The clerk's own night-shift window replaces the role's: Saturday 23:00 JST works,
    // Monday 09:00 no longer does; `null` returns her to the role's window.
    let night = AccessWindow { hours: Some("22:00-06:00".parse().unwrap()), ..AccessWindow::default() };
    let set = |w: Option<AccessWindow>| mamori_vault::ProfileChange { access_window: Some(w), ..Default::default() };
    let summary = f.vault.update_user(&f.admin, "clerk1", set(Some(night.clone()))).await.unwrap();
    assert_eq!(summary.access_window, Some(night));
    clock.set(datetime!(2026-12-12 14:00 UTC));
    login(office()).await.unwrap();
    clock.set(datetime!(2026-12-14 00:00 UTC));
    let err = login(office()).await.unwrap_err();
    assert!(matches!(err, VaultError::OutsideAccessWindow(WindowRefusal::Hours)), "{err:?}");
    f.vault.update_user(&f.admin, "clerk1", set(None)).await.unwrap();
    login(office()).await.unwrap();

    let user = f.store().get_user_by_login("clerk1").await.unwrap().unwrap();
    assert_eq!(user.failed_logins, 0, "refusals by the window are not password failures");
    let events = f.store().read_audit(1, 10_000).await.unwrap();
    let with = |needle: &str| events.iter().filter(|e| e.event_json.contains(needle)).count();
    assert_eq!(with("source address outside the allowed networks (role staff window: 08:00-20:00"), 2);
    assert_eq!(with("outside the allowed hours (role staff window"), 2);
    assert_eq!(with("outside the allowed hours (account window: 22:00-06:00)"), 1);
    assert_eq!(with("access_window=[22:00-06:00]"), 1);
    assert_eq!(with("access_window=role's"), 1);
}
