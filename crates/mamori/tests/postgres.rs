//! The binary on PostgreSQL: `mamori migrate` from a SQLite data directory, and several
//! `mamori serve` processes on one database behaving as one.
//!
//! Needs `MAMORI_TEST_DATABASE_URL`; without it every test says so loudly and passes. Each
//! test works in a schema of its own.

mod common;

use common::*;
use serde_json::Value;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const URL_VAR: &str = "MAMORI_TEST_DATABASE_URL";

/// The URL of a fresh, migrated schema of the test database, or `None` (after saying so on
/// the real stderr, which libtest does not capture) when no database is configured.
fn fresh_database(test: &str) -> Option<String> {
    let Some(url) = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty()) else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test} — set {URL_VAR}=postgres://postgres@127.0.0.1:5432/test to run it"
        );
        return None;
    };
    let schema = format!("mamori_cli_{}", uuid::Uuid::new_v4().simple());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(mamori_store_postgres::PostgresStore::connect_with_schema(&url, &schema)).unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{separator}options=-c%20search_path%3D{schema}"))
}

/// Rows per mamori table, read straight from the database.
fn table_counts(url: &str) -> Vec<u64> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = mamori_store_postgres::PostgresStore::connect(url).await.unwrap();
        let mut counts = Vec::new();
        for table in mamori_store::TABLES {
            counts.push(mamori_store::Store::count_rows(&store, table).await.unwrap());
        }
        counts
    })
}

/// Runs `cmd` with `input` on stdin (where searched values go, never argv).
fn with_stdin(cmd: &mut Command, input: &str) -> String {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn migrate_moves_a_data_directory_to_postgres() {
    let Some(url) = fresh_database("migrate_moves_a_data_directory_to_postgres") else { return };
    let (dir, _) = installation();
    let csv = dir.path().join("people.csv");
    write_people(&csv, 120, 31);
    ok(mamori(dir.path())
        .args(["import", "--collection", "customers", "--login", "mgr"])
        .arg(&csv)
        .env("MAMORI_PASSWORD", PASSWORD));
    let person = mamori_synth::Generator::new(31).nth(7).unwrap();
    let search = |cmd: &mut Command| {
        let out = with_stdin(
            cmd.args(["--json", "search", "--collection", "customers", "--field", "email", "--full", "--login", "mgr"])
                .env("MAMORI_PASSWORD", PASSWORD),
            &format!("{}\n", person.email),
        );
        json(out.lines().next().expect("one hit").to_owned())
    };
    let before = search(&mut mamori(dir.path()));
    ok(mamori(dir.path()).args(["audit", "checkpoint"]));

    let report = json(ok(mamori(dir.path()).args(["--json", "migrate", "--from", "data", "--to", &url])));
    let rows = |table: &str| {
        report["tables"].as_array().unwrap().iter().find(|t| t["table"] == table).unwrap()["rows"].as_u64().unwrap()
    };
    assert_eq!(rows("records"), 120);
    assert_eq!(rows("collections"), 1);
    assert!(rows("users") >= 2 && rows("audit_checkpoints") >= 1 && rows("blind_index") >= 120);
    assert_eq!(report["audit_ok"], true);
    assert_eq!(report["audit_event"], report["audit_head_seq"], "the migration is the last event");
    assert_eq!(report["audit_event"].as_u64().unwrap(), rows("audit_events") + 1);

    // The same master key reads the same record on PostgreSQL.
    let after = search(&mut mamori_on(dir.path(), Some(&url)));
    assert_eq!(after, before);
    assert_eq!(after["fields"]["email"], person.email.as_str());
    let id = after["id"].as_str().unwrap();
    let got = json(ok(mamori_on(dir.path(), Some(&url))
        .args(["--json", "record", "get", "--collection", "customers", "--login", "mgr", id])
        .env("MAMORI_PASSWORD", PASSWORD)));
    assert_eq!(got["id"], id);
    // Writes go on: a new collection gets an id the copy did not use.
    let schema = dir.path().join("customers.toml");
    std::fs::write(&schema, mamori_synth_schema().replacen("name = \"customers\"", "name = \"members\"", 1)).unwrap();
    ok(mamori_on(dir.path(), Some(&url)).args(["collection", "create", "--schema"]).arg(&schema));

    let verify = json(ok(mamori_on(dir.path(), Some(&url)).args(["--json", "audit", "verify"])));
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(verify["checkpoints"].as_u64().unwrap() >= 2, "the copied checkpoint and the migration's: {verify}");

    // A second migration into the now non-empty database is refused and changes nothing.
    let counts = table_counts(&url);
    let refused = failure(mamori(dir.path()).args(["migrate", "--from", "data", "--to", &url]));
    assert!(refused.contains("not empty"), "{refused}");
    assert_eq!(table_counts(&url), counts);
}

/// A `mamori serve` process on the test database, stopped like an operator would (SIGTERM,
/// so that it signs what it appended) or killed if the test fails first.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &Path, database_url: &str) -> Self {
        let mut cmd = mamori_on(dir, Some(database_url));
        // Every client comes from 127.0.0.1: the per-address throttle would stop the test,
        // not an attacker. Workers log in once each, beside the staff limit of one session.
        cmd.env("MAMORI_AUTH__LOGIN_ATTEMPTS_PER_MINUTE", "0");
        let (child, url) = serve(cmd);
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Self { child, url }
    }

    fn stop(mut self) {
        ok(Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
        assert!(self.child.wait().unwrap().success(), "a clean shutdown");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One API call: the status and the JSON body (`Null` when there is none).
fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut request = ureq::request(method, url).timeout(Duration::from_secs(30));
    if let Some(token) = token {
        request = request.set("authorization", &format!("Bearer {token}"));
    }
    let result = match body {
        Some(body) => request.send_json(body),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn login(server: &str, login: &str, password: &str) -> Result<String, u16> {
    let body = serde_json::json!({"login": login, "password": password});
    match call("POST", &format!("{server}/api/v1/auth/login"), None, Some(body)) {
        (200, v) => Ok(v["token"].as_str().unwrap().to_owned()),
        (status, _) => Err(status),
    }
}

/// What a worker was told was written: record id, e-mail, and whether the name was updated.
type Acknowledged = Vec<(String, String, bool)>;

/// Logs in on one instance, then creates, updates and reads through both in turn.
fn worker(servers: [String; 2], user: String, writes: usize) -> Acknowledged {
    let token = login(&servers[0], &user, PASSWORD).unwrap();
    let mut acknowledged = Vec::new();
    for n in 0..writes {
        let (here, there) = (&servers[n % 2], &servers[(n + 1) % 2]);
        let records = |server: &str| format!("{server}/api/v1/collections/customers/records");
        let email = format!("{user}-{n}@example.jp");
        let body = serde_json::json!({"fields": {"name": "試験 太郎", "email": email}});
        let (status, created) = call("POST", &records(here), Some(&token), Some(body));
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        let updated = n % 3 == 0;
        if updated {
            let body = serde_json::json!({"fields": {"name": "試験 花子"}});
            let (status, problem) = call("PATCH", &format!("{}/{id}", records(there)), Some(&token), Some(body));
            assert_eq!(status, 204, "{problem}");
        }
        let (status, read) = call("GET", &format!("{}/{id}", records(there)), Some(&token), None);
        assert_eq!(status, 200, "{read}");
        acknowledged.push((id, email, updated));
    }
    acknowledged
}

/// Issue 8: two `mamori serve` processes on one database share sessions, lockouts, account
/// state and one gap-free audit chain, follow a master-key rotation made by the CLI, and
/// lose no acknowledged write.
#[test]
fn two_servers_on_one_database_behave_as_one() {
    let Some(db) = fresh_database("two_servers_on_one_database_behave_as_one") else { return };
    let (dir, _) = installation_on(Some(&db));
    let workers: Vec<String> = (0..4).map(|i| format!("worker{i}")).collect();
    for user in workers.iter().chain(&["victim".to_owned(), "late".to_owned()]) {
        create_user(dir.path(), Some(&db), user, "staff");
    }
    let (a, b) = (Server::start(dir.path(), &db), Server::start(dir.path(), &db));
    let servers = [a.url.clone(), b.url.clone()];

    // Concurrent clients, each starting on a different instance.
    const WRITES: usize = 12;
    let threads: Vec<_> = workers
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let mut servers = servers.clone();
            servers.rotate_left(i % 2);
            let user = user.clone();
            std::thread::spawn(move || worker(servers, user, WRITES))
        })
        .collect();
    let acknowledged: Acknowledged = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert_eq!(acknowledged.len(), workers.len() * WRITES);

    // Every acknowledged write is there, as written, seen from either instance.
    let mgr = login(&a.url, "mgr", PASSWORD).unwrap();
    for (i, (id, email, updated)) in acknowledged.iter().enumerate() {
        let server = &servers[i % 2];
        let (status, record) =
            call("GET", &format!("{server}/api/v1/collections/customers/records/{id}?view=full"), Some(&mgr), None);
        assert_eq!(status, 200, "{record}");
        assert_eq!(record["fields"]["email"], email.as_str());
        assert_eq!(record["fields"]["name"], if *updated { "試験 花子" } else { "試験 太郎" });
    }

    // A session made on A works on B.
    let token = login(&a.url, "worker0", PASSWORD).unwrap();
    let (status, _) = call("GET", &format!("{}/api/v1/collections", b.url), Some(&token), None);
    assert_eq!(status, 200);

    // Failed logins counted on A lock the account on B (five by default).
    assert!(login(&b.url, "victim", PASSWORD).is_ok());
    for _ in 0..5 {
        assert_eq!(login(&a.url, "victim", "Wrong-Password-1"), Err(401));
    }
    assert_eq!(login(&b.url, "victim", PASSWORD), Err(401), "locked on the other instance too");

    // Revoking an account through A (access review) refuses its token on B at once.
    let token = login(&b.url, "worker1", PASSWORD).unwrap();
    let collections = format!("{}/api/v1/collections", b.url);
    assert_eq!(call("GET", &collections, Some(&token), None).0, 200);
    let revoke = serde_json::json!({"decision": "revoke"});
    let (status, body) = call("POST", &format!("{}/api/v1/access-review/worker1", a.url), Some(&mgr), Some(revoke));
    assert!(status < 300, "{status} {body}");
    assert_eq!(call("GET", &collections, Some(&token), None).0, 401);

    // The master key rotated by the CLI while both run: each follows at once (the
    // notification, then the key file read again: the staged `.new` one or the installed
    // one) and keeps reading and writing; nothing sealed under the old key is lost.
    let rotated = json(ok(mamori_on(dir.path(), Some(&db)).args(["--json", "keys", "rotate", "--master"])));
    assert_eq!(rotated["master_key_rotated"], true, "{rotated}");
    std::thread::sleep(Duration::from_millis(1100)); // past the collection-key cache window
    let (id, email, _) = &acknowledged[0];
    for server in &servers {
        let url = format!("{server}/api/v1/collections/customers/records/{id}?view=full");
        let (status, record) = call("GET", &url, Some(&mgr), None);
        assert_eq!(status, 200, "{record}");
        assert_eq!(record["fields"]["email"], email.as_str());
    }
    let mut acknowledged = acknowledged;
    acknowledged.extend(worker(servers.clone(), "late".into(), 2));

    a.stop();
    b.stop();
    let verify = json(ok(mamori_on(dir.path(), Some(&db)).args(["--json", "audit", "verify"])));
    assert_eq!(verify["ok"], true, "one gap-free chain: {verify}");
    let records = mamori_store::TABLES.iter().position(|t| t.name == "records").unwrap();
    assert_eq!(table_counts(&db)[records], acknowledged.len() as u64, "no lost and no extra record");
    assert_eq!(count_events(&db, "record.create"), acknowledged.len(), "every acknowledged create is audited once");
}

/// Successful audit events of `action`, read straight from the database.
fn count_events(url: &str, action: &str) -> usize {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = mamori_store_postgres::PostgresStore::connect(url).await.unwrap();
        let query = mamori_store::AuditQuery {
            limit: 100_000,
            actions: vec![mamori_store::ActionMatch::Exact(action.into())],
            outcome: Some("success".into()),
            ..Default::default()
        };
        mamori_store::Store::query_audit(&store, &query).await.unwrap().len()
    })
}
