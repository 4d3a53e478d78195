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
