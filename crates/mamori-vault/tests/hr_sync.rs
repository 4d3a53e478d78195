//! Accounts reconciled with the HR roster (issue 4, lifecycle): joiners get accounts, movers
//! get their department changed, leavers and people on leave lose access at once — a
//! logged-in leaver's token included — and nothing is re-enabled by the file.
//! Measures 000-8-access-2, 000-8-access-5, 004-V-2-2.

mod common;

use common::Fixture;
use mamori_core::access::Role;
use mamori_vault::{NewUser, SyncChange, VaultError, parse_hr_roster};

#[tokio::test]
async fn the_hr_roster_creates_moves_and_disables() {
    let f = Fixture::new().await;
    let ops = f.user("ops1", Role::SystemAdmin).await.0;
    let member = |login: &str, role| NewUser {
        department: Some("営業部".into()),
        ..NewUser::new(login, "試験 利用者", role)
    };
    let (_, mover_token) = f.user_with(member("mover", Role::Staff)).await;
    let (_, leaver_token) = f.user_with(member("leaver", Role::Staff)).await;
    let (_, absent_token) = f.user_with(member("absent", Role::Staff)).await;
    f.user_with(member("steady", Role::Manager)).await;
    f.user_with(member("resting", Role::Staff)).await;
    let until = f.vault.now() + time::Duration::days(10);
    f.vault
        .create_user(&f.admin, NewUser { vendor: true, valid_until: Some(until), ..member("vendor1", Role::Staff) })
        .await
        .unwrap();
    f.user_with(member("parked", Role::Staff)).await;
    f.vault.set_user_disabled(&f.admin, "parked", true).await.unwrap();

    let csv = "login,name,department,title,role,status
ops1,ops1 (test),,,,在職
mover,試験 利用者,経理部,主任,,在職
leaver,試験 利用者,営業部,,,退職
steady,試験 利用者,営業部,,privacy_officer,active
resting,試験 利用者,営業部,,,休職
parked,試験 利用者,営業部,,,在職
joiner,新人 一郎,営業部,,,在職
newboss,新任 課長,営業部,課長,manager,在職
";
    let roster = parse_hr_roster(csv.as_bytes()).unwrap();
    // Staff cannot sync; the plan changes nothing.
    let staff = f.user_with(member("clerk", Role::Staff)).await.0;
    assert!(matches!(f.vault.plan_user_sync(&staff, &roster).await, Err(VaultError::Forbidden)));
    // A file listing nobody would disable everyone: refused, by plan and by apply.
    let nobody = parse_hr_roster("login,name\n".as_bytes()).unwrap();
    for refused in [
        f.vault.plan_user_sync(&ops, &nobody).await.map(|_| ()),
        f.vault.apply_user_sync(&ops, &nobody).await.map(|_| ()),
    ] {
        assert!(matches!(refused, Err(VaultError::Invalid(_))), "{refused:?}");
    }
    let plan = f.vault.plan_user_sync(&ops, &roster).await.unwrap();
    let state = async || {
        let users = f.vault.list_users(&ops).await.unwrap();
        serde_json::to_string(&users.iter().map(|u| (&u.login, &u.department, u.disabled)).collect::<Vec<_>>()).unwrap()
    };
    let before = state().await;
    let describe = |c: &SyncChange| match c {
        SyncChange::Create { login, role, .. } => format!("create {login} {role}"),
        SyncChange::Update { login, fields } => {
            let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
            format!("update {login} {}", names.join(","))
        }
        SyncChange::Disable { login, .. } => format!("disable {login}"),
        SyncChange::Hold { login, .. } => format!("hold {login}"),
    };
    let mut got: Vec<String> = plan.changes.iter().map(describe).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "create joiner staff",
            "create newboss manager",
            "disable absent",
            "disable clerk",
            "disable leaver",
            "disable resting",
            "hold parked",
            "hold steady",
            "update mover department,title",
        ]
    );
    assert_eq!(plan.unchanged, 3, "ops1, steady, and the vendor (not an employee)");
    assert_eq!(state().await, before, "a plan changes nothing");

    let report = f.vault.apply_user_sync(&ops, &roster).await.unwrap();
    assert_eq!(report.plan, plan);
    // Accounts that read personal data, created by an administrator, wait for a privacy
    // officer's activation (two-person rule); only then is a password issued.
    assert!(report.one_time_passwords.is_empty());
    assert_eq!(report.pending_activation, ["joiner", "newboss"]);
    let users = f.vault.list_users(&ops).await.unwrap();
    let user = |login: &str| users.iter().find(|u| u.login == login).unwrap().clone();
    assert_eq!((user("mover").department.as_deref(), user("mover").title.as_deref()), (Some("経理部"), Some("主任")));
    for gone in ["leaver", "absent", "resting", "clerk"] {
        assert!(user(gone).disabled, "{gone}");
    }
    assert!(user("parked").disabled, "the file never re-enables");
    assert!(!user("vendor1").disabled && !user("steady").disabled);
    assert_eq!(user("steady").role, Role::Manager, "a file never changes a role");
    assert!(user("newboss").disabled && user("newboss").role == Role::Manager);
    // Leavers who were logged in are thrown out at their next request; movers are not.
    for token in [&leaver_token, &absent_token] {
        assert!(f.vault.authenticate(token, None).await.is_err());
    }
    assert!(f.vault.authenticate(&mover_token, None).await.is_ok());

    // Applying the same file again finds nothing left to do but the held accounts: the
    // parked one, and the two waiting for activation (said so).
    let again = f.vault.plan_user_sync(&ops, &roster).await.unwrap();
    assert_eq!(
        again.changes.iter().map(describe).collect::<Vec<_>>(),
        ["hold joiner", "hold newboss", "hold parked", "hold steady"]
    );
    let SyncChange::Hold { reason, .. } = &again.changes[0] else { unreachable!() };
    assert!(reason.contains("activation"), "{reason}");
    let rows = f.store().read_audit(1, 100_000).await.unwrap();
    let sync = rows.iter().rev().find(|r| r.event_json.contains("\"user.sync\"")).expect("the sync is audited");
    assert!(!sync.event_json.contains("新人"), "no names in the audit trail");
}
