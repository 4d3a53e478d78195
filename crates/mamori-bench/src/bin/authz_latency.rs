//! Authorization decision latency with the policy set cached (issue 5 goal: p99 < 50 µs).
//!
//! Times single decisions of the built-in policies, one by one, and prints percentiles next
//! to a baseline measured in the same run: a SHA-256 of 64 bytes (the cheapest thing every
//! request already does). Run with `cargo run --release -p mamori-bench --bin authz_latency`.

use mamori_core::access::{Action, Role};
use mamori_policy::{PolicyEngine, Principal, Resource, Situation};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const SAMPLES: usize = 200_000;

fn time_each(f: impl FnMut()) -> [Duration; 4] {
    mamori_bench::time_each(10_000, SAMPLES, f)
}

fn main() {
    let engine = PolicyEngine::builtin(1);
    let situation = Situation {
        hour: 10,
        weekday: 2,
        source: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        mfa: true,
        auth_age: 300,
        break_glass: false,
    };
    let principal = |role: Role| Principal {
        id: "user:0190c1d2-0000-7000-8000-000000000001".into(),
        role,
        department: "sales".into(),
        clearance: 2,
        training_valid: true,
        pledge_signed: true,
        vendor: false,
    };
    let record = |department: &str| Resource::Record {
        collection: "customers".into(),
        id: "0190c1d2-0000-7000-8000-0000000000aa".into(),
        tier: 2,
        department: department.into(),
        subject: "C-000123".into(),
    };
    let cases: [(&str, Principal, Action, Resource); 4] = [
        ("manager full view, own department (allow)", principal(Role::Manager), Action::ViewFull, record("sales")),
        ("staff masked view, other department (deny)", principal(Role::Staff), Action::ViewMasked, record("hr")),
        (
            "system admin masked view (guardrail deny)",
            principal(Role::SystemAdmin),
            Action::ViewMasked,
            record("sales"),
        ),
        ("auditor audit.read on system (allow)", principal(Role::Auditor), Action::AuditRead, Resource::System),
    ];
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let baseline = time_each(|| {
        black_box(<sha2::Sha256 as sha2::Digest>::digest(black_box([7u8; 64])));
    });
    println!("{:<52} {:>9} {:>9} {:>9} {:>9}", "case (µs)", "p50", "p99", "p99.9", "max");
    println!(
        "{:<52} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        "baseline: SHA-256 of 64 bytes",
        micros(baseline[0]),
        micros(baseline[1]),
        micros(baseline[2]),
        micros(baseline[3])
    );
    let row = |name: &str, [p50, p99, p999, max]: [Duration; 4]| {
        println!("{name:<52} {:>9.2} {:>9.2} {:>9.2} {:>9.2}", micros(p50), micros(p99), micros(p999), micros(max));
    };
    for (name, p, action, resource) in &cases {
        let expect = engine.decide(p, *action, resource, &situation).allowed;
        row(
            name,
            time_each(|| {
                let d = engine.decide(black_box(p), *action, black_box(resource), &situation);
                assert_eq!(d.allowed, expect);
            }),
        );
    }
    // The next request of the same session: a later authentication age, which the built-in
    // policies do not read, so the remembered decision answers.
    let (name, p, action, resource) = &cases[0];
    let mut age = 0;
    row(
        &format!("{name}, later auth_age (remembered)"),
        time_each(|| {
            age += 1;
            let later = Situation { auth_age: age, ..situation.clone() };
            assert!(engine.decide(black_box(p), *action, black_box(resource), &later).allowed);
        }),
    );
    // A question never asked before: a new record each time, so Cedar evaluates it (the
    // cost of every first decision, and of every decision before the cache was added).
    let mut n = 0u64;
    row(
        &format!("{name}, a new record each time (evaluated)"),
        time_each(|| {
            n += 1;
            let Resource::Record { collection, tier, department, subject, .. } = resource.clone() else {
                unreachable!("case 0 is a record")
            };
            let fresh = Resource::Record { collection, id: format!("r{n}"), tier, department, subject };
            assert!(engine.decide(black_box(p), *action, black_box(&fresh), &situation).allowed);
        }),
    );
}
