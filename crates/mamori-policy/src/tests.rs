//! The authorization matrix of the built-in roles, the guardrail property, and the policy
//! compiler's refusals.

use super::*;
use mamori_core::access::{ALL_ACTIONS, ALL_ROLES, Role, Target};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};

const OWN: &str = "sales";
const OTHER: &str = "hr";

fn principal(role: Role, clearance: i64, trained: bool) -> Principal {
    Principal {
        id: format!("u-{role}"),
        role,
        department: OWN.into(),
        clearance,
        training_valid: trained,
        pledge_signed: trained,
        vendor: false,
    }
}

fn situation(break_glass: bool) -> Situation {
    Situation {
        hour: 10,
        weekday: 2,
        source: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
        mfa: true,
        auth_age: 60,
        break_glass,
    }
}

fn resource(action: Action, tier: i64, department: &str) -> Resource {
    match action.target() {
        Target::System => Resource::System,
        Target::Collection => Resource::Collection { name: "customers".into(), tier },
        Target::Record => Resource::Record {
            collection: "customers".into(),
            id: "r1".into(),
            tier,
            department: department.into(),
            subject: "s1".into(),
        },
    }
}

/// The intended rights of the built-in roles, written independently of the policy text.
fn expected(role: Role, action: Action, clearance: i64, tier: i64, own_department: bool, trained: bool) -> bool {
    use Action::*;
    let plaintext = matches!(action, ViewFull | Print | Copy | Export | ExportPlain);
    // Unencrypted export is a right no built-in role holds (issue 9).
    if (plaintext && !trained) || action == ExportPlain {
        return false;
    }
    match action.target() {
        Target::System => match role {
            Role::Staff => matches!(action, CollectionRead),
            Role::Manager => matches!(action, CollectionRead | Approve | AccessReview),
            Role::PrivacyOfficer => {
                matches!(action, SubjectErase | CollectionRead | AuditRead | Approve | UserActivate | AccessReview)
            }
            Role::Auditor => matches!(action, AuditRead | CollectionRead),
            Role::SystemAdmin => {
                matches!(action, CollectionRead | CollectionManage | UserManage | PolicyManage | KeysRotate | Approve)
            }
        },
        Target::Collection | Target::Record => {
            let cleared = clearance >= tier;
            let own = own_department || action.target() == Target::Collection;
            cleared
                && match role {
                    Role::Staff => matches!(action, Search) || (own && matches!(action, ViewMasked | Create | Update)),
                    Role::Manager => matches!(action, Search | Export) || (own && !matches!(action, Search | Export)),
                    Role::PrivacyOfficer => matches!(action, Search | ViewMasked | ViewFull),
                    Role::Auditor | Role::SystemAdmin => false,
                }
        }
    }
}

#[test]
fn built_in_role_matrix() {
    let engine = PolicyEngine::builtin(1);
    let mut checked = 0;
    for role in ALL_ROLES {
        for action in ALL_ACTIONS {
            for tier in 0..=3 {
                for clearance in [2, 3] {
                    for own in [true, false] {
                        for trained in [true, false] {
                            let p = principal(role, clearance, trained);
                            let r = resource(action, tier, if own { OWN } else { OTHER });
                            let d = engine.decide(&p, action, &r, &situation(false));
                            let want = expected(role, action, clearance, tier, own, trained);
                            assert_eq!(
                                d.allowed, want,
                                "{role} {action} tier {tier} clearance {clearance} own {own} trained {trained}: {d:?}"
                            );
                            assert!(!d.policies.is_empty());
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 5 * ALL_ACTIONS.len() * 4 * 2 * 2 * 2);
}

#[test]
fn decisions_name_the_deciding_policies() {
    let engine = PolicyEngine::builtin(1);
    let staff = principal(Role::Staff, 2, true);
    let allowed = engine.decide(&staff, Action::ViewMasked, &resource(Action::ViewMasked, 1, OWN), &situation(false));
    assert_eq!(allowed, Decision { allowed: true, policies: vec!["staff.own-department".into()] });
    let denied = engine.decide(&staff, Action::ViewMasked, &resource(Action::ViewMasked, 1, OTHER), &situation(false));
    assert_eq!(denied.policies, vec![DEFAULT_DENY.to_owned()]);
    let untrained = principal(Role::Manager, 2, false);
    let forbidden = engine.decide(&untrained, Action::ViewFull, &resource(Action::ViewFull, 1, OWN), &situation(false));
    assert!(!forbidden.allowed);
    assert_eq!(forbidden.policies, vec!["full-view-needs-training-and-pledge".to_owned()]);
    let admin = principal(Role::SystemAdmin, 3, true);
    let guarded = engine.decide(&admin, Action::ViewMasked, &resource(Action::ViewMasked, 0, OWN), &situation(false));
    assert_eq!(guarded.policies, vec!["guardrail.system-admin-no-content".to_owned()]);
}

#[test]
fn staff_see_no_sensitive_field_even_masked() {
    let engine = PolicyEngine::builtin(1);
    let field = |category: &str, department: &str| Resource::Field {
        collection: "customers".into(),
        tier: 2,
        department: department.into(),
        category: category.into(),
        name: "f".into(),
    };
    let staff = principal(Role::Staff, 2, true);
    let d = engine.decide(&staff, Action::ViewMasked, &field("sensitive", OWN), &situation(false));
    assert_eq!(d, Decision { allowed: false, policies: vec!["staff.no-sensitive-fields".into()] });
    assert!(engine.decide(&staff, Action::ViewMasked, &field("identifier", OWN), &situation(false)).allowed);
    assert!(!engine.decide(&staff, Action::ViewMasked, &field("identifier", OTHER), &situation(false)).allowed);
    let manager = principal(Role::Manager, 2, true);
    assert!(engine.decide(&manager, Action::ViewFull, &field("sensitive", OWN), &situation(false)).allowed);
    assert!(!engine.decide(&manager, Action::ViewFull, &field("sensitive", OTHER), &situation(false)).allowed);
}

#[test]
fn break_glass_opens_reads_only() {
    let engine = PolicyEngine::builtin(1);
    let admin = principal(Role::SystemAdmin, 2, true);
    for action in ALL_ACTIONS.into_iter().filter(|a| a.touches_content()) {
        let d = engine.decide(&admin, action, &resource(action, 1, OTHER), &situation(true));
        let read = matches!(action, Action::Search | Action::ViewMasked | Action::ViewFull);
        assert_eq!(d.allowed, read, "{action}: {d:?}");
    }
}

#[test]
fn compile_refuses_bad_policy_sets() {
    let cases: &[(&str, &str)] = &[
        ("permit (principal, action, resource);", "no @id"),
        ("@id(\"a\") permit (principal, action, resource);\n@id(\"a\") forbid (principal, action, resource);", "twice"),
        ("@id(\"guardrail.mine\") permit (principal, action, resource);", "reserved"),
        ("@id(\"Bad Id\") permit (principal, action, resource);", "lowercase"),
        ("@id(\"x\") permit (principal, action, resource) when { principal.salary > 1 };", "schema"),
        ("@id(\"x\") permit (principal, action == Mamori::Action::\"launch\", resource);", "schema"),
        ("@id(\"x\") permit (principal action resource);", "syntax"),
        ("@id(\"x\") permit (principal == ?principal, action, resource);", "template"),
    ];
    for (text, why) in cases {
        assert!(PolicyEngine::compile(text, 2).is_err(), "accepted ({why}): {text}");
    }
    let huge = format!("// {}\n", "x".repeat(MAX_POLICY_TEXT));
    assert!(matches!(PolicyEngine::compile(&huge, 2), Err(PolicyError::TooLarge)));
}

#[test]
fn the_empty_policy_set_denies_everything_but_keeps_break_glass() {
    let engine = PolicyEngine::compile("", 2).unwrap();
    assert!(engine.policy_ids().is_empty());
    let po = principal(Role::PrivacyOfficer, 3, true);
    assert!(!engine.decide(&po, Action::ViewFull, &resource(Action::ViewFull, 0, OWN), &situation(false)).allowed);
    assert!(engine.decide(&po, Action::ViewFull, &resource(Action::ViewFull, 0, OWN), &situation(true)).allowed);
}

#[test]
fn policy_ids_follow_the_text() {
    let engine = PolicyEngine::builtin(1);
    let ids = engine.policy_ids();
    assert_eq!(ids.first().map(String::as_str), Some("staff.search"));
    assert_eq!(ids.last().map(String::as_str), Some("full-view-needs-training-and-pledge"));
}

// ---- Property: whatever an administrator could get approved, the system administrator reads
// no record content without break-glass.

fn arb_principal_scope() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("principal".to_owned()),
        proptest::sample::select(ALL_ROLES.to_vec())
            .prop_map(|r| format!("principal in Mamori::Role::\"{}\"", r.as_str())),
        Just("principal == Mamori::User::\"u-system_admin\"".to_owned()),
        Just("principal is Mamori::User".to_owned()),
    ]
}

fn arb_action_scope() -> impl Strategy<Value = String> {
    let names: Vec<&'static str> =
        ALL_ACTIONS.iter().map(|a| a.as_str()).chain(["read_content", "write_content"]).collect();
    prop_oneof![
        Just("action".to_owned()),
        proptest::sample::select(names.clone()).prop_map(|a| format!("action == Mamori::Action::\"{a}\"")),
        proptest::sample::subsequence(names, 1..4).prop_map(|set| {
            let list: Vec<String> = set.iter().map(|a| format!("Mamori::Action::\"{a}\"")).collect();
            format!("action in [{}]", list.join(", "))
        }),
    ]
}

fn arb_condition() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("when { true }".to_owned()),
        Just("when { context.mfa }".to_owned()),
        Just("unless { context.break_glass }".to_owned()),
        Just("when { principal.clearance >= 0 }".to_owned()),
        Just("when { context.source.isInRange(ip(\"0.0.0.0/0\")) }".to_owned()),
        Just("when { context.hour >= 0 && context.hour < 24 }".to_owned()),
    ]
}

fn arb_policy() -> impl Strategy<Value = String> {
    (any::<bool>(), arb_principal_scope(), arb_action_scope(), arb_condition())
        .prop_map(|(permit, p, a, c)| format!("{} ({p}, {a}, resource) {c};", if permit { "permit" } else { "forbid" }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_policy_set_lets_the_system_admin_read_content(policies in proptest::collection::vec(arb_policy(), 0..8)) {
        let text: String = policies
            .iter()
            .enumerate()
            .map(|(i, p)| format!("@id(\"p{i}\")\n{p}\n"))
            .chain(std::iter::once(BUILTIN_POLICIES.to_owned()))
            .collect();
        // A set that does not validate cannot be approved; that is also a pass.
        let Ok(engine) = PolicyEngine::compile(&text, 2) else { return Ok(()) };
        let admin = principal(Role::SystemAdmin, 3, true);
        for action in ALL_ACTIONS.into_iter().filter(|a| a.touches_content()) {
            for tier in 0..=3 {
                let d = engine.decide(&admin, action, &resource(action, tier, OWN), &situation(false));
                prop_assert!(!d.allowed, "{action} tier {tier} allowed by {:?} under\n{text}", d.policies);
            }
        }
    }
}

// ---- Remembered decisions: the same answer Cedar gives, whatever the cache holds.

fn staff_field(name: &str) -> Resource {
    Resource::Field {
        collection: "customers".into(),
        tier: 1,
        department: OWN.into(),
        category: "identifier".into(),
        name: name.into(),
    }
}

fn aged(auth_age: i64) -> Situation {
    Situation { auth_age, ..situation(false) }
}

/// A set that reads `auth_age` (here through an escaped name, which the text alone would hide)
/// gets a fresh decision for each age, cache or not.
#[test]
fn remembered_decisions_follow_the_context_the_policies_read() {
    for condition in ["context.auth_age < 300", "context[\"\\u{61}uth_age\"] < 300"] {
        let text = format!(
            "@id(\"recent-login\")\npermit (principal, action == Mamori::Action::\"view_masked\", resource) when {{ {condition} }};\n"
        );
        let engine = PolicyEngine::compile(&text, 2).expect("compiles");
        let me = principal(Role::Staff, 2, true);
        for _ in 0..2 {
            assert!(engine.decide(&me, Action::ViewMasked, &staff_field("name"), &aged(60)).allowed, "{condition}");
            assert!(!engine.decide(&me, Action::ViewMasked, &staff_field("name"), &aged(600)).allowed, "{condition}");
        }
        assert_eq!(engine.cached_decisions(), 2, "{condition}: one entry per distinct age");
    }
}

/// The built-in set reads no `auth_age`, hour or source: the same question at another age,
/// hour or address is the same decision, asked of Cedar once.
#[test]
fn built_in_decisions_are_remembered_across_requests() {
    let engine = PolicyEngine::builtin(1);
    let me = principal(Role::Manager, 2, true);
    let first = engine.decide(&me, Action::ViewFull, &staff_field("name"), &aged(1));
    for age in 2..50 {
        let later = Situation { hour: age % 24, source: IpAddr::V4(Ipv4Addr::new(192, 0, 2, age as u8)), ..aged(age) };
        assert_eq!(engine.decide(&me, Action::ViewFull, &staff_field("name"), &later), first);
    }
    assert_eq!(engine.cached_decisions(), 1);
    // break_glass is read by the guardrails: a different question.
    let opened = engine.decide(&me, Action::ViewFull, &staff_field("name"), &situation(true));
    assert_eq!(engine.cached_decisions(), 2);
    assert!(opened.allowed && first.allowed);
    // Another principal, resource or action is never answered from someone else's entry.
    let other = Principal { id: "u-other".into(), department: OTHER.into(), ..me.clone() };
    assert!(!engine.decide(&other, Action::ViewFull, &staff_field("name"), &aged(1)).allowed);
    assert_eq!(engine.cached_decisions(), 3);
}
