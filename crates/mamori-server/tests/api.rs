//! The HTTP API against a real server on 127.0.0.1:0 (SQLite underneath), driven by a plain
//! HTTP client: what a script integrating with mamori sees.

use serde_json::{Value, json};

mod common;
use common::{PASSWORD, TestServer};

fn problem_type(body: &Value) -> &str {
    body["type"].as_str().unwrap_or("")
}

#[test]
fn login_search_and_read_by_role() {
    let s = TestServer::start();
    let person = mamori_synth::Generator::new(11).nth(7).unwrap();
    let staff = s.login("staff");
    let search = json!({"field": "email", "value": person.email.to_uppercase()}).to_string();
    let (status, _, body) = s.call("POST", "/api/v1/collections/customers/search", Some(&staff), Some(&search));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 1);
    let record = &body["records"][0];
    assert_eq!(record["view"], "masked");
    assert_ne!(record["fields"]["name"], person.name.as_str());
    let id = record["id"].as_str().unwrap();

    let manager = s.login("manager");
    let (status, _, body) = s.call(
        "GET",
        &format!("/api/v1/collections/customers/records/{id}?view=full&purpose=問い合わせ対応"),
        Some(&manager),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fields"]["name"], person.name.as_str());
    assert_eq!(body["fields"]["medical_history"], person.medical_history.as_str());

    for (token, view) in [(&staff, "full"), (&s.login("admin"), "masked"), (&s.login("auditor"), "masked")] {
        let (status, ct, body) =
            s.call("GET", &format!("/api/v1/collections/customers/records/{id}?view={view}"), Some(token), None);
        assert_eq!((status, problem_type(&body)), (403, "urn:mamori:problem:forbidden"), "{body}");
        assert_eq!(ct, "application/problem+json");
    }
}

#[test]
fn create_update_delete_over_http() {
    let s = TestServer::start();
    let manager = s.login("manager");
    let create = json!({"subject_id": "C-1", "fields": {"name": "試験 一郎", "email": "ichiro@example.jp", "phone": "03-1234-5678"}});
    let (status, _, body) =
        s.call("POST", "/api/v1/collections/customers/records", Some(&manager), Some(&create.to_string()));
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, _, body) =
        s.call("POST", "/api/v1/collections/customers/records", Some(&manager), Some(&create.to_string()));
    assert_eq!((status, problem_type(&body)), (409, "urn:mamori:problem:conflict"), "{body}");
    assert!(!body.to_string().contains("ichiro"), "conflict must not echo the value");
    let patch = json!({"fields": {"phone": "03-9999-0000"}}).to_string();
    let (status, _, _) =
        s.call("PATCH", &format!("/api/v1/collections/customers/records/{id}"), Some(&manager), Some(&patch));
    assert_eq!(status, 204);
    let (_, _, body) =
        s.call("GET", &format!("/api/v1/collections/customers/records/{id}?view=full"), Some(&manager), None);
    assert_eq!(body["fields"]["phone"], "03-9999-0000");
    let (status, _, _) = s.call("DELETE", &format!("/api/v1/collections/customers/records/{id}"), Some(&manager), None);
    assert_eq!(status, 204);
    let (status, _, body) = s.call("GET", &format!("/api/v1/collections/customers/records/{id}"), Some(&manager), None);
    assert_eq!((status, problem_type(&body)), (404, "urn:mamori:problem:not-found"));
    let (status, _, body) = s.call("GET", "/api/v1/collections/customers/records/not-a-uuid", Some(&manager), None);
    assert_eq!((status, problem_type(&body)), (400, "urn:mamori:problem:invalid-id"));
}

#[test]
fn bad_bodies_get_problem_json_and_change_nothing() {
    let s = TestServer::start();
    let manager = s.login("manager");
    let path = "/api/v1/collections/customers/records";
    let oversize = format!("{{\"fields\":{{\"name\":\"{}\"}}}}", "あ".repeat(23_000));
    let cases: Vec<(String, u16, &str)> = vec![
        ("{\"fields\":{\"name\":\"x\"},\"surprise\":1}".into(), 400, "invalid-body"),
        ("{\"fields\":".into(), 400, "malformed-json"),
        ("{\"fields\":{\"name\":12345}}".into(), 400, "invalid-body"),
        (oversize, 413, "body-too-large"),
        ("{\"fields\":{\"shoe_size\":\"27\"}}".into(), 422, "invalid-input"),
        ("{\"fields\":{\"name\":\"甲\",\"birth_date\":\"2001-02-30\"}}".into(), 422, "invalid-input"),
        ("{\"subject_id\":\"山田\",\"fields\":{\"name\":\"甲\"}}".into(), 422, "invalid-input"),
    ];
    for (body, status, slug) in cases {
        let (got, ct, problem) = s.call("POST", path, Some(&manager), Some(&body));
        assert_eq!((got, problem_type(&problem)), (status, format!("urn:mamori:problem:{slug}").as_str()), "{problem}");
        assert_eq!(ct, "application/problem+json");
        assert!(!problem.to_string().contains("12345"), "no value echoed: {problem}");
    }
    let (_, _, info) = s.call("GET", "/api/v1/collections/customers", Some(&manager), None);
    assert_eq!(info["records"], 50, "nothing was written");
}

#[test]
fn no_endpoint_is_open_without_a_token() {
    let s = TestServer::start();
    let doc: Value = serde_json::from_str(&mamori_server::openapi_json()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if path == "/api/v1/auth/login" {
                continue;
            }
            let concrete = path
                .replace("{name}", "customers")
                .replace("{id}", &uuid::Uuid::nil().to_string())
                .replace("{subject}", "S1")
                .replace("{login}", "staff");
            for token in [None, Some("forged-token")] {
                let (status, _, body) = s.call(&method.to_uppercase(), &concrete, token, Some("{}"));
                assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked}");
}

#[test]
fn first_login_must_change_password_and_disable_takes_effect_at_once() {
    let s = TestServer::start();
    let (status, _, body) =
        s.call("POST", "/api/v1/auth/login", None, Some(&json!({"login": "newbie", "password": PASSWORD}).to_string()));
    assert_eq!(status, 200);
    assert_eq!(body["password_change_required"], true);
    let limited = body["token"].as_str().unwrap().to_owned();
    let (status, _, body) = s.call("GET", "/api/v1/collections", Some(&limited), None);
    assert_eq!((status, problem_type(&body)), (403, "urn:mamori:problem:password-change-required"));
    let change = json!({"current_password": PASSWORD, "new_password": "Brand-New-Secret-9"}).to_string();
    let (status, _, body) = s.call("POST", "/api/v1/auth/password", Some(&limited), Some(&change));
    assert_eq!(status, 204, "{body}");
    let (status, _, _) = s.call("GET", "/api/v1/collections", Some(&limited), None);
    assert_eq!(status, 401, "the old session ended with the password change");
    let (status, _, body) = s.call(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({"login": "newbie", "password": "Brand-New-Secret-9"}).to_string()),
    );
    assert_eq!((status, body["password_change_required"].as_bool()), (200, Some(false)));
    let newbie = body["token"].as_str().unwrap().to_owned();
    assert_eq!(s.call("GET", "/api/v1/collections", Some(&newbie), None).0, 200);

    let admin = s.login("admin");
    assert_eq!(s.call("POST", "/api/v1/users/newbie/disable", Some(&admin), Some("{}")).0, 204);
    assert_eq!(s.call("GET", "/api/v1/collections", Some(&newbie), None).0, 401, "disabled on the very next request");

    // Wrong password, unknown login and disabled account: one answer.
    let answers: Vec<(u16, Value)> =
        [("staff", "wrong-password-x"), ("nobody", PASSWORD), ("newbie", "Brand-New-Secret-9")]
            .iter()
            .map(|(l, p)| {
                let (st, _, b) =
                    s.call("POST", "/api/v1/auth/login", None, Some(&json!({"login": l, "password": p}).to_string()));
                (st, b)
            })
            .collect();
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(answers[0].0, 401);
}

#[test]
fn health_metrics_and_headers() {
    let s = TestServer::start();
    assert_eq!(s.call("GET", "/healthz", None, None).0, 200);
    assert_eq!(s.call("GET", "/readyz", None, None).0, 200);
    let (status, _, health) = s.call("GET", "/healthz/audit", None, None);
    assert_eq!((status, &health["healthy"]), (200, &json!(true)), "{health}");
    assert_eq!(health["audit"]["siem"], json!([]), "no sink configured");
    let person = mamori_synth::Generator::new(11).nth(3).unwrap();
    let staff = s.login("staff");
    let search = json!({"field": "email", "value": person.email}).to_string();
    s.call("POST", "/api/v1/collections/customers/search", Some(&staff), Some(&search));
    let (_, _, metrics) = s.call("GET", "/metrics", None, None);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(metrics.contains("route=\"/api/v1/collections/{name}/search\""), "{metrics}");
    assert!(!metrics.contains(&person.email) && !metrics.contains("customers\""), "no ids or values in labels");
    // The group-commit counters: the login and the search were committed, in at most as many
    // commits as events.
    let counter = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{metrics}"));
        line[name.len() + 1..].parse().unwrap()
    };
    let (commits, events) = (counter("mamori_audit_commits_total"), counter("mamori_audit_events_total"));
    assert!(commits >= 1 && events >= 2 && commits <= events, "{commits} commits, {events} events");
    let res = ureq::get(&format!("{}/api/v1/openapi.json", s.url)).call().unwrap();
    assert_eq!(res.header("cache-control"), Some("no-store"));
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
}

/// The committed `openapi.json` is what the code generates. Regenerate with
/// `MAMORI_UPDATE_OPENAPI=1 cargo test -p mamori-server --test api openapi`.
#[test]
fn openapi_document_is_committed_and_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let generated = mamori_server::openapi_json();
    if std::env::var_os("MAMORI_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "openapi.json is stale: rerun with MAMORI_UPDATE_OPENAPI=1");
}

/// An online administrator cannot give themselves a way into the content by creating an
/// account: such accounts start disabled, and only a privacy officer activates them.
#[test]
fn admin_created_content_accounts_need_a_privacy_officer() {
    let s = TestServer::start();
    let admin = s.login("admin");
    let create = json!({"login": "mole", "display_name": "Mole", "role": "manager"}).to_string();
    let (status, _, body) = s.call("POST", "/api/v1/users", Some(&admin), Some(&create));
    assert_eq!(status, 201, "{body}");
    assert!(body.get("one_time_password").is_none(), "no password for the creator: {body}");
    assert_eq!(body["user"]["disabled"], true);
    let (status, _, body) = s.call("POST", "/api/v1/users/mole/enable", Some(&admin), Some("{}"));
    assert_eq!((status, problem_type(&body)), (403, "urn:mamori:problem:forbidden"));
    let (status, _, _) = s.call("POST", "/api/v1/users/mole/activate", Some(&admin), Some("{}"));
    assert_eq!(status, 403, "administrators do not activate");

    let officer = s.login("privacy");
    // Activation is for disabled content accounts only: never a way to take over an account.
    for active in ["admin", "staff", "privacy"] {
        let (status, _, _) = s.call("POST", &format!("/api/v1/users/{active}/activate"), Some(&officer), Some("{}"));
        assert_eq!(status, 403, "activating {active}");
    }
    let (status, _, body) = s.call("POST", "/api/v1/users/mole/activate", Some(&officer), Some("{}"));
    assert_eq!(status, 200, "{body}");
    let otp = body["one_time_password"].as_str().unwrap();
    let (status, _, body) =
        s.call("POST", "/api/v1/auth/login", None, Some(&json!({"login": "mole", "password": otp}).to_string()));
    assert_eq!((status, body["password_change_required"].as_bool()), (200, Some(true)));

    // Accounts that read no content are the administrator's own business.
    let create = json!({"login": "audit2", "display_name": "Audit", "role": "auditor"}).to_string();
    let (status, _, body) = s.call("POST", "/api/v1/users", Some(&admin), Some(&create));
    assert_eq!(status, 201);
    assert!(body["one_time_password"].as_str().is_some_and(|p| p.len() == 16));
}

/// The audit trail over HTTP: auditors query it (who accessed a subject, failed logins,
/// administrator operations) and mark reviews; other roles are refused; every endpoint says
/// nothing of files. When the log cannot be written, reads fail closed with 503.
#[test]
fn audit_queries_reviews_and_fail_closed_over_http() {
    let s = TestServer::start();
    let manager = s.login("manager");
    let person = mamori_synth::Generator::new(11).nth(4).unwrap();
    let search = json!({"field": "email", "value": person.email}).to_string();
    let (_, _, found) = s.call("POST", "/api/v1/collections/customers/search", Some(&manager), Some(&search));
    let id = found["records"][0]["id"].as_str().unwrap().to_owned();
    let (_, _, record) = s.call("GET", &format!("/api/v1/collections/customers/records/{id}"), Some(&manager), None);
    let subject = record["subject_id"].as_str().unwrap().to_owned();
    let (status, _, _) = s.call(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({"login": "staff", "password": "nope-nope-nope"}).to_string()),
    );
    assert_eq!(status, 401);

    let auditor = s.login("auditor");
    let (status, _, page) = s.call("GET", &format!("/api/v1/audit/events?subject={subject}"), Some(&auditor), None);
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["login"] == "manager" && e["event"]["action"] == "record.read"), "{page}");
    let (_, _, page) = s.call("GET", "/api/v1/audit/events?failed_logins=true", Some(&auditor), None);
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
    let (_, _, page) = s.call("GET", "/api/v1/audit/events?admin_ops=true&limit=2", Some(&auditor), None);
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let next = page["next_after_seq"].as_u64().unwrap();
    let (_, _, more) =
        s.call("GET", &format!("/api/v1/audit/events?admin_ops=true&after_seq={next}"), Some(&auditor), None);
    assert!(more["events"][0]["seq"].as_u64().unwrap() > next);
    let (status, _, body) =
        s.call("GET", "/api/v1/audit/events?from=2026-13-01&checkpoint_file=/etc/passwd", Some(&auditor), None);
    assert_eq!((status, problem_type(&body)), (400, "urn:mamori:problem:invalid-query"), "{body}");
    let (status, _, body) = s.call("GET", "/api/v1/audit/events?limit=100000", Some(&auditor), None);
    assert_eq!((status, problem_type(&body)), (422, "urn:mamori:problem:invalid-input"), "{body}");
    for role in ["staff", "manager", "admin"] {
        let (status, _, _) = s.call("GET", "/api/v1/audit/events", Some(&s.login(role)), None);
        assert_eq!(status, 403, "{role}");
    }

    let review = json!({"reviewed_to": next, "note": "checked"}).to_string();
    let (status, _, mark) = s.call("POST", "/api/v1/audit/reviews", Some(&auditor), Some(&review));
    assert_eq!(status, 201, "{mark}");
    assert_eq!((mark["reviewed_to"].as_u64(), mark["reviewer_login"].as_str()), (Some(next), Some("auditor")));
    let (_, _, page) = s.call("GET", "/api/v1/audit/events?admin_ops=true", Some(&auditor), None);
    assert_eq!(page["last_review"]["seq"], mark["seq"]);
    let (status, _, report) = s.call("GET", "/api/v1/audit/verify", Some(&auditor), None);
    assert_eq!((status, report["ok"].as_bool()), (200, Some(true)), "{report}");
    let (_, _, metrics) = s.call("GET", "/metrics", None, None);
    assert!(metrics.as_str().unwrap().contains("mamori_audit_checkpoint_file_ok 1"), "{metrics}");

    // The audit table stops taking writes (a full disk, a broken volume): reads fail closed.
    let conn = rusqlite::Connection::open(s.dir.path().join("mamori.db")).unwrap();
    conn.execute_batch("CREATE TRIGGER no_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'full'); END;")
        .unwrap();
    let (status, ct, body) =
        s.call("GET", &format!("/api/v1/collections/customers/records/{id}?view=full"), Some(&manager), None);
    assert_eq!((status, problem_type(&body)), (503, "urn:mamori:problem:audit-unavailable"), "{body}");
    assert_eq!(ct, "application/problem+json");
    assert!(!body.to_string().contains(person.email.as_str()), "nothing of the record leaks: {body}");
}

/// Issue 5 over HTTP: four-eyes policy changes with a dry run, and break-glass for the
/// system administrator, who otherwise reads nothing.
#[test]
fn policy_changes_and_break_glass_need_a_second_person() {
    let s = TestServer::start();
    let (staff, admin, admin2, privacy) = (s.login("staff"), s.login("admin"), s.login("admin2"), s.login("privacy"));
    assert_eq!(s.call("GET", "/api/v1/policies", Some(&staff), None).0, 403);
    let (status, _, active) = s.call("GET", "/api/v1/policies/active", Some(&admin), None);
    assert_eq!((status, active["version"].as_u64(), active["active"].as_bool()), (200, Some(1), Some(true)));
    let text = active["policies"].as_str().unwrap();
    let start = text.find("@id(\"staff.search\")").unwrap();
    let end = start + text[start..].find(";\n").unwrap() + 2;
    let proposed = format!("{}{}", &text[..start], &text[end..]);

    let bad = json!({"policies": "permit (principal, action, resource);", "summary": "no id"}).to_string();
    let (status, _, body) = s.call("POST", "/api/v1/policies", Some(&admin), Some(&bad));
    assert_eq!((status, problem_type(&body)), (422, "urn:mamori:problem:invalid-input"), "{body}");
    let propose = json!({"policies": proposed, "summary": "staff search through managers only"}).to_string();
    let (status, _, v2) = s.call("POST", "/api/v1/policies", Some(&admin), Some(&propose));
    assert_eq!((status, v2["version"].as_u64(), v2["status"].as_str()), (201, Some(2), Some("pending")), "{v2}");
    let (status, _, changes) = s.call("GET", "/api/v1/policies/2/dry-run?collection=customers", Some(&admin2), None);
    assert_eq!(status, 200, "{changes}");
    assert!(changes.as_array().unwrap().iter().any(|c| c["login"] == "staff" && c["action"] == "search"), "{changes}");
    assert_eq!(s.call("POST", "/api/v1/policies/2/approve", Some(&admin), Some("{}")).0, 403, "own proposal");
    let (status, _, approved) = s.call("POST", "/api/v1/policies/2/approve", Some(&admin2), Some("{}"));
    assert_eq!((status, approved["active"].as_bool()), (200, Some(true)), "{approved}");
    let search = json!({"field": "email", "value": "nobody@example.jp"}).to_string();
    assert_eq!(s.call("POST", "/api/v1/collections/customers/search", Some(&staff), Some(&search)).0, 403);

    // Break-glass.
    assert_eq!(s.call("POST", "/api/v1/collections/customers/search", Some(&admin), Some(&search)).0, 403);
    let too_long = json!({"collection": "customers", "minutes": 241, "reason": "障害調査のため確認する"}).to_string();
    assert_eq!(s.call("POST", "/api/v1/break-glass", Some(&admin), Some(&too_long)).0, 422);
    let ask = json!({"collection": "customers", "minutes": 30, "reason": "障害調査のため確認する"}).to_string();
    let (status, _, grant) = s.call("POST", "/api/v1/break-glass", Some(&admin), Some(&ask));
    assert_eq!((status, grant["status"].as_str()), (201, Some("pending")), "{grant}");
    let id = grant["id"].as_str().unwrap();
    assert_eq!(s.call("POST", &format!("/api/v1/break-glass/{id}/approve"), Some(&admin), Some("{}")).0, 403);
    assert_eq!(s.call("POST", &format!("/api/v1/break-glass/{id}/approve"), Some(&staff), Some("{}")).0, 403);
    let (status, _, open) = s.call("POST", &format!("/api/v1/break-glass/{id}/approve"), Some(&privacy), Some("{}"));
    assert_eq!((status, open["active"].as_bool()), (200, Some(true)), "{open}");
    let (status, _, found) = s.call("POST", "/api/v1/collections/customers/search", Some(&admin), Some(&search));
    assert_eq!((status, found["count"].as_u64()), (200, Some(0)), "{found}");
    assert_eq!(s.call("POST", &format!("/api/v1/break-glass/{id}/revoke"), Some(&admin), Some("{}")).0, 200);
    assert_eq!(s.call("POST", "/api/v1/collections/customers/search", Some(&admin), Some(&search)).0, 403);
    assert_eq!(s.call("POST", &format!("/api/v1/break-glass/{id}/bogus"), Some(&admin), Some("{}")).0, 404);

    // Access review: the manager sees everyone's rights and revokes the staff account.
    let manager = s.login("manager");
    assert_eq!(s.call("GET", "/api/v1/access-review", Some(&staff), None).0, 403);
    let (status, _, review) = s.call("GET", "/api/v1/access-review", Some(&manager), None);
    assert_eq!(status, 200, "{review}");
    let entry = review.as_array().unwrap().iter().find(|e| e["login"] == "admin").unwrap();
    assert_eq!(entry["collections"][0]["own_department"], json!([]), "{entry}");
    let bad = json!({"decision": "maybe"}).to_string();
    assert_eq!(s.call("POST", "/api/v1/access-review/staff", Some(&manager), Some(&bad)).0, 400);
    let revoke = json!({"decision": "revoke"}).to_string();
    let (status, _, user) = s.call("POST", "/api/v1/access-review/staff", Some(&manager), Some(&revoke));
    assert_eq!((status, user["disabled"].as_bool()), (200, Some(true)), "{user}");
    assert_eq!(s.call("GET", "/api/v1/collections", Some(&staff), None).0, 401, "revoked at once");
}

/// POST without a JSON body, returning the raw bytes and headers (a file download).
fn download(s: &TestServer, path: &str, token: &str) -> (u16, std::collections::HashMap<String, String>, Vec<u8>) {
    let res = match ureq::post(&format!("{}{path}", s.url)).set("authorization", &format!("Bearer {token}")).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = res.status();
    let headers =
        res.headers_names().into_iter().map(|h| (h.clone(), res.header(&h).unwrap_or("").to_owned())).collect();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut res.into_reader(), &mut bytes).unwrap();
    (status, headers, bytes)
}

/// Issue 9 over HTTP: request, four-eyes approval, the requester's password and download
/// (an agile-encrypted XLSX that opens with that password only), the ledger, disposal.
#[test]
fn export_workflow_over_http() {
    let s = TestServer::start();
    let manager = s.login("manager");
    let privacy = s.login("privacy");
    let request = json!({
        "collection": "customers", "fields": ["name", "phone"], "filter": {"kind": "all"},
        "purpose": "契約内容の確認", "recipient": "委託先 印刷会社", "format": "xlsx",
        "protection": {"kind": "password"}
    });
    let (status, _, x) = s.call("POST", "/api/v1/exports", Some(&manager), Some(&request.to_string()));
    assert_eq!(status, 201, "{x}");
    assert_eq!(
        (x["status"].as_str(), x["rows"].as_u64(), x["encrypted"].as_bool()),
        (Some("pending"), Some(50), Some(true))
    );
    let id = x["id"].as_str().unwrap().to_owned();

    // Bad requests change nothing.
    for (body, status, slug) in [
        (json!({"collection": "customers"}).to_string(), 400, "invalid-body"),
        (request.to_string().replace("\"password\"", "\"rot13\""), 400, "invalid-body"),
        (
            request.to_string().replace("{\"kind\":\"password\"}", "{\"kind\":\"age\",\"recipient\":\"age1nope\"}"),
            422,
            "invalid-input",
        ),
        (request.to_string().replace("\"password\"}", "\"none\"}"), 403, "forbidden"),
    ] {
        let (got, _, problem) = s.call("POST", "/api/v1/exports", Some(&manager), Some(&body));
        assert_eq!((got, problem_type(&problem)), (status, format!("urn:mamori:problem:{slug}").as_str()), "{problem}");
    }

    let (status, _, problem) = s.call("POST", &format!("/api/v1/exports/{id}/approve"), Some(&manager), None);
    assert_eq!((status, problem_type(&problem)), (403, "urn:mamori:problem:forbidden"), "self-approval");
    let (status, _, _) = download(&s, &format!("/api/v1/exports/{id}/download"), &manager);
    assert_eq!(status, 409, "nothing leaves before approval");
    let (status, _, x) = s.call("POST", &format!("/api/v1/exports/{id}/approve"), Some(&privacy), Some("{}"));
    assert_eq!((status, x["status"].as_str()), (200, Some("approved")), "{x}");

    let (status, _, body) = s.call("GET", &format!("/api/v1/exports/{id}"), Some(&s.login("staff")), None);
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = s.call("GET", &format!("/api/v1/exports/{id}/password"), Some(&privacy), None);
    assert_eq!(status, 404, "the password is the requester's alone: {body}");
    let (status, _, body) = s.call("GET", &format!("/api/v1/exports/{id}/password"), Some(&manager), None);
    assert_eq!(status, 200, "{body}");
    let password = mamori_export::SecretPassword::new(body["password"].as_str().unwrap());

    let (status, headers, bytes) = download(&s, &format!("/api/v1/exports/{id}/download"), &manager);
    assert_eq!(status, 200);
    assert_eq!((headers["mamori-rows"].as_str(), headers["mamori-encrypted"].as_str()), ("50", "true"));
    assert_eq!(headers["mamori-download"], "1/3");
    assert!(headers["content-disposition"].ends_with(".xlsx\""), "{headers:?}");
    assert_eq!(headers["cache-control"], "no-store");
    let package = mamori_export::decrypt_ooxml(&bytes, &password).unwrap();
    assert!(package.starts_with(b"PK"));
    assert!(mamori_export::decrypt_ooxml(&bytes, &mamori_export::SecretPassword::new("guess")).is_err());

    let (status, _, ledger) = s.call("GET", "/api/v1/takeout/ledger", Some(&s.login("auditor")), None);
    assert_eq!(status, 200, "{ledger}");
    let kinds: Vec<&str> = ledger.as_array().unwrap().iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["request", "approve", "download"]);
    assert_eq!(ledger[2]["detail"]["encrypted"], true);
    let (status, _, _) = s.call("GET", "/api/v1/takeout/ledger", Some(&s.login("staff")), None);
    assert_eq!(status, 403);

    let dispose = json!({"kind": "dispose", "method": "シュレッダー"}).to_string();
    let (status, _, problem) = s.call("POST", &format!("/api/v1/exports/{id}/settle"), Some(&manager), Some(&dispose));
    assert_eq!(status, 422, "the requester is not the witness: {problem}");
    let (status, _, x) = s.call("POST", &format!("/api/v1/exports/{id}/settle"), Some(&privacy), Some(&dispose));
    assert_eq!((status, x["status"].as_str()), (200, Some("closed")), "{x}");
    let (status, _, _) = download(&s, &format!("/api/v1/exports/{id}/download"), &manager);
    assert_eq!(status, 409, "closed");
}

/// Issue 9 secret splitting over HTTP (000-8-takeout-5): the requester's download answers
/// 202 and hands over nothing; each custodian (who must be able to read the data in full)
/// fetches their own share once; anyone else gets 404; both shares restore the file.
#[test]
fn split_export_shares_go_to_their_custodians_over_http() {
    let s = TestServer::start();
    let (manager, privacy) = (s.login("manager"), s.login("privacy"));
    let request = |custodians: serde_json::Value| {
        json!({
            "collection": "customers", "fields": ["name", "phone"], "filter": {"kind": "all"},
            "purpose": "契約内容の確認", "recipient": "委託先 印刷会社", "format": "csv",
            "protection": {"kind": "split", "threshold": 2, "shares": 2, "custodians": custodians}
        })
        .to_string()
    };
    let (status, _, problem) =
        s.call("POST", "/api/v1/exports", Some(&manager), Some(&request(json!(["manager", "staff"]))));
    assert_eq!(status, 422, "staff may not read in full, so may not hold a share: {problem}");
    let (status, _, x) =
        s.call("POST", "/api/v1/exports", Some(&manager), Some(&request(json!(["manager", "privacy"]))));
    assert_eq!(status, 201, "{x}");
    let id = x["id"].as_str().unwrap().to_owned();
    let (status, _, x) = s.call("POST", &format!("/api/v1/exports/{id}/approve"), Some(&privacy), Some("{}"));
    assert_eq!(status, 200, "{x}");

    let (status, _, held) = s.call("POST", &format!("/api/v1/exports/{id}/download"), Some(&manager), None);
    assert_eq!(status, 202, "{held}");
    let custodians: Vec<&str> =
        held["shares"].as_array().unwrap().iter().map(|s| s["custodian"].as_str().unwrap()).collect();
    assert_eq!(custodians, ["manager", "privacy"]);
    let (status, _, waiting) = s.call("GET", "/api/v1/exports/shares", Some(&privacy), None);
    assert_eq!((status, waiting[0]["share"].as_u64(), waiting[0]["threshold"].as_u64()), (200, Some(2), Some(2)));

    let share = |token: &str| download(&s, &format!("/api/v1/exports/{id}/share"), token);
    for stranger in ["auditor", "staff"] {
        let (status, _, _) = share(&s.login(stranger));
        assert_eq!(status, 404, "{stranger} is not a custodian");
    }
    let (status, headers, second) = share(&privacy);
    assert_eq!(status, 200);
    assert!(headers["content-disposition"].ends_with(".share-2-of-2.mamori\""), "{headers:?}");
    assert_eq!(headers["cache-control"], "no-store");
    let (status, _, _) = share(&privacy);
    assert_eq!(status, 409, "once");
    let (status, _, first) = share(&manager);
    assert_eq!(status, 200);
    assert!(mamori_export::combine(&[second.as_slice()]).is_err());
    let restored = mamori_export::combine(&[first.as_slice(), second.as_slice()]).unwrap();
    assert_eq!(String::from_utf8_lossy(&restored.plain).lines().count(), 51);

    let (status, _, x) = s.call("GET", &format!("/api/v1/exports/{id}"), Some(&manager), None);
    let states: Vec<&str> = x["shares"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!((status, states), (200, vec!["fetched", "fetched"]));

    // The list comes a page at a time, with the total in a header.
    let list = ureq::get(&format!("{}/api/v1/exports?limit=1", s.url))
        .set("authorization", &format!("Bearer {manager}"))
        .call()
        .unwrap();
    assert_eq!(list.header("mamori-total"), Some("1"));
    assert_eq!(list.into_json::<serde_json::Value>().unwrap().as_array().unwrap().len(), 1);
    let (status, _, past) = s.call("GET", "/api/v1/exports?offset=5", Some(&manager), None);
    assert_eq!((status, past.as_array().unwrap().len()), (200, 0));
    for bad in ["limit=0", "limit=1001", "limit=x", "page=2"] {
        let (status, _, problem) = s.call("GET", &format!("/api/v1/exports?{bad}"), Some(&manager), None);
        assert_eq!((status, problem_type(&problem)), (400, "urn:mamori:problem:invalid-query"), "{bad}");
    }
}

/// `POST /api/v1/users/sync` (issue 4 lifecycle; 000-8-access-2): a bad roster is refused
/// with line numbers; without `apply=true` nothing changes; with it, a leaver's token is
/// refused at once and a joiner who reads no content gets a one-time password.
#[test]
fn hr_roster_sync_over_http() {
    let s = TestServer::start();
    let admin = s.login("admin");
    let staff = s.login("staff");
    let (status, _, users) = s.call("GET", "/api/v1/users", Some(&admin), None);
    assert_eq!(status, 200);
    let mut csv = String::from("login,name,role,status\n");
    for u in users.as_array().unwrap() {
        let login = u["login"].as_str().unwrap();
        let status = if login == "staff" { "退職" } else { "在職" };
        csv.push_str(&format!("{login},{},,{status}\n", u["display_name"].as_str().unwrap()));
    }
    csv.push_str("auditor2,監査 二郎,auditor,在職\n");

    let (status, _, body) = s.call("POST", "/api/v1/users/sync", Some(&admin), Some("login,name\nBAD LOGIN,x\n"));
    assert_eq!((status, problem_type(&body)), (422, "urn:mamori:problem:import-rejected"), "{body}");
    assert_eq!(body["errors"][0]["line"], 2);
    let (status, _, body) = s.call("POST", "/api/v1/users/sync", Some(&staff), Some(&csv));
    assert_eq!(status, 403, "{body}");
    // Without the right, a broken file gets the same refusal: its problems are not read out.
    let (status, _, body) = s.call("POST", "/api/v1/users/sync", Some(&staff), Some("login,name\nBAD LOGIN,x\n"));
    assert_eq!((status, problem_type(&body)), (403, "urn:mamori:problem:forbidden"), "{body}");

    let (status, _, plan) = s.call("POST", "/api/v1/users/sync", Some(&admin), Some(&csv));
    assert_eq!(status, 200, "{plan}");
    let changes = plan["plan"]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{plan}");
    assert!(changes.iter().any(|c| c["change"] == "disable" && c["login"] == "staff"));
    assert!(changes.iter().any(|c| c["change"] == "create" && c["login"] == "auditor2"));
    assert_eq!(s.call("GET", "/api/v1/collections", Some(&staff), None).0, 200, "the plan changed nothing");

    let (status, _, report) = s.call("POST", "/api/v1/users/sync?apply=true", Some(&admin), Some(&csv));
    assert_eq!(status, 200, "{report}");
    assert!(report["one_time_passwords"]["auditor2"].as_str().is_some_and(|p| p.len() == 16), "{report}");
    assert_eq!(s.call("GET", "/api/v1/collections", Some(&staff), None).0, 401, "the leaver is out at once");
}

/// An account's own access window (001-20-tech-1-6): the test client at 127.0.0.1 is outside
/// 10.0.0.0/8, so the clerk's login is refused with a problem naming the reason (after the
/// password was checked), her open session ends on its next request, and `null` returns her
/// to her role's (here: no) window. A malformed window is refused and changes nothing.
#[test]
fn access_window_set_over_the_api_refuses_logins_and_ends_sessions() {
    let s = TestServer::start();
    let admin = s.login("admin");
    let staff = s.login("staff");
    let set = |window: &str| {
        s.call("PATCH", "/api/v1/users/staff", Some(&admin), Some(&format!(r#"{{"access_window": {window}}}"#)))
    };

    let (status, _, body) = set(r#"{"hours": "25:00-26:00"}"#);
    assert_eq!((status, problem_type(&body)), (400, "urn:mamori:problem:invalid-body"), "{body}");
    let (status, _, body) = s.call("GET", "/api/v1/users", Some(&admin), None);
    assert_eq!(status, 200);
    let clerk = body.as_array().unwrap().iter().find(|u| u["login"] == "staff").unwrap();
    assert!(clerk["access_window"].is_null(), "{clerk}");
    assert_eq!(s.call("GET", "/api/v1/collections", Some(&staff), None).0, 200);

    let (status, _, body) = set(r#"{"networks": ["10.0.0.0/8"], "days": ["mon-sun"]}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["access_window"]["networks"][0], "10.0.0.0/8", "{body}");
    let (status, _, body) = s.call("GET", "/api/v1/collections", Some(&staff), None);
    assert_eq!((status, problem_type(&body)), (401, "urn:mamori:problem:unauthenticated"), "{body}");
    let login = json!({"login": "staff", "password": PASSWORD}).to_string();
    let (status, _, body) = s.call("POST", "/api/v1/auth/login", None, Some(&login));
    assert_eq!((status, problem_type(&body)), (403, "urn:mamori:problem:outside-access-window"), "{body}");
    assert_eq!(body["detail"], "source address outside the allowed networks", "{body}");
    let wrong = json!({"login": "staff", "password": "Not-The-Password-1"}).to_string();
    let (status, _, body) = s.call("POST", "/api/v1/auth/login", None, Some(&wrong));
    assert_eq!((status, problem_type(&body)), (401, "urn:mamori:problem:unauthenticated"), "{body}");

    assert_eq!(set("null").0, 200);
    s.login("staff");
}
