//! The `mamori` binary as an operator uses it: real processes, a real data directory.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn mamori(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamori"));
    cmd.arg("--data-dir").arg(dir.join("data")).env_remove("MAMORI_MASTER_KEY").env_remove("MAMORI_DATABASE_URL");
    cmd.env("MAMORI_LOG", "warn").current_dir(dir);
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const PASSWORD: &str = "Operator-Test-77";

/// init, a manager with a changed password, and the demo collection.
fn installation() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let init: Value = serde_json::from_str(&ok(mamori(dir.path()).args(["--json", "init"]))).unwrap();
    assert_eq!(init["admin"]["login"], "admin");
    let schema = dir.path().join("customers.toml");
    std::fs::write(&schema, mamori_synth_schema()).unwrap();
    ok(mamori(dir.path()).args(["collection", "create", "--schema"]).arg(&schema));
    let created: Value = serde_json::from_str(&ok(mamori(dir.path()).args([
        "--json",
        "users",
        "create",
        "--login",
        "mgr",
        "--name",
        "責任者",
        "--role",
        "manager",
    ])))
    .unwrap();
    let otp = created["one_time_password"].as_str().unwrap().to_owned();
    // Full views need valid training and a signed pledge (004-I-5-5, 004-II-3-1).
    let updated: Value = serde_json::from_str(&ok(mamori(dir.path()).args([
        "--json",
        "users",
        "update",
        "mgr",
        "--training-until",
        "2099-12-31",
        "--pledge-signed",
        "--clearance",
        "secret",
    ])))
    .unwrap();
    assert_eq!(updated["clearance"], "secret");
    assert_eq!(updated["training_valid_until"], "2099-12-31T15:00:00Z", "the end of that day in JST");
    assert!(updated["pledge_signed_at"].is_string());
    ok(mamori(dir.path())
        .args(["passwd", "--login", "mgr"])
        .env("MAMORI_PASSWORD", &otp)
        .env("MAMORI_NEW_PASSWORD", PASSWORD));
    (dir, otp)
}

fn mamori_synth_schema() -> &'static str {
    include_str!("../../mamori-synth/customers.toml")
}

/// Synthetic people as a CSV file (test input, outside the data directory).
fn write_people(path: &Path, count: usize, seed: u64) {
    let out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    mamori_synth::write_customers_csv(out, count, seed).unwrap();
}

#[test]
fn init_creates_private_files_and_refuses_to_run_twice() {
    let (dir, _) = installation();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("data")), 0o700);
        assert_eq!(mode(&dir.path().join("data/master.key")), 0o600);
        assert_eq!(mode(&dir.path().join("data/audit-signing.key")), 0o600);
    }
    let out = run(mamori(dir.path()).arg("init"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a mamori database"));
}

#[test]
fn import_search_get_and_verify() {
    let (dir, _) = installation();
    let csv = dir.path().join("people.csv");
    write_people(&csv, 300, 21);
    let report: Value = serde_json::from_str(&ok(mamori(dir.path())
        .args(["--json", "import", "--collection", "customers", "--login", "mgr"])
        .arg(&csv)
        .env("MAMORI_PASSWORD", PASSWORD)))
    .unwrap();
    assert_eq!(report["rows"], 300);
    let person = mamori_synth::Generator::new(21).nth(9).unwrap();
    // The searched value goes through stdin, not argv (where `ps` would show it).
    let mut search = mamori(dir.path());
    search
        .args(["--json", "search", "--collection", "customers", "--field", "phone", "--full", "--login", "mgr"])
        .env("MAMORI_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = search.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), format!("{}\n", person.phone).as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let found = String::from_utf8(out.stdout).unwrap();
    let record: Value =
        serde_json::from_str(found.lines().find(|l| l.contains(&person.email)).expect("found by phone")).unwrap();
    let id = record["id"].as_str().unwrap();
    let got: Value = serde_json::from_str(&ok(mamori(dir.path())
        .args(["--json", "record", "get", "--collection", "customers", "--login", "mgr", id])
        .env("MAMORI_PASSWORD", PASSWORD)))
    .unwrap();
    assert_eq!(got["fields"]["email"], "****@".to_owned() + person.email.split('@').nth(1).unwrap());

    let verify: Value = serde_json::from_str(&ok(mamori(dir.path()).args(["--json", "audit", "verify"]))).unwrap();
    assert_eq!(verify["ok"], true);
    // Tamper with one event: verify now fails with the first bad sequence number.
    tamper_audit_event(&dir.path().join("data/mamori.db"));
    let out = run(mamori(dir.path()).args(["--json", "audit", "verify"]));
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["first_bad_seq"], 2);
}

/// Changes the second audit event behind mamori's back, as someone with file access could.
fn tamper_audit_event(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let n = conn
        .execute("UPDATE audit_events SET event_json = replace(event_json, 'cli', 'xyz') WHERE seq = 2", [])
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn wrong_master_key_and_loose_key_file_are_refused() {
    let (dir, _) = installation();
    let out = run(mamori(dir.path())
        .args(["collection", "list"])
        .env("MAMORI_MASTER_KEY", "mamori-master-key-v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("master key does not match"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join("data/master.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = run(mamori(dir.path()).args(["collection", "list"]));
        assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    }
}

/// SIGKILL in the middle of writing an import: afterwards there is nothing of it, the audit
/// chain is intact, and the same import then succeeds in full.
#[test]
fn import_killed_mid_write_leaves_nothing() {
    let (dir, _) = installation();
    let csv = dir.path().join("big.csv");
    let rows = 150_000;
    write_people(&csv, rows, 33);
    let wal = dir.path().join("data/mamori.db-wal");
    let base_wal = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let mut child = mamori(dir.path())
        .args(["import", "--collection", "customers", "--login", "mgr"])
        .arg(&csv)
        .env("MAMORI_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the write phase has put a few MB into the WAL, then kill without warning.
    let started = std::time::Instant::now();
    loop {
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if size > base_wal + 4 * 1024 * 1024 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the import finished before it could be killed");
        assert!(started.elapsed().as_secs() < 240, "the import never reached its write phase");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let list: Value = serde_json::from_str(&ok(mamori(dir.path()).args(["--json", "collection", "list"]))).unwrap();
    assert_eq!(list[0]["records"], 0, "a killed import leaves nothing");
    let verify: Value = serde_json::from_str(&ok(mamori(dir.path()).args(["--json", "audit", "verify"]))).unwrap();
    assert_eq!(verify["ok"], true);
    ok(mamori(dir.path())
        .args(["import", "--collection", "customers", "--login", "mgr"])
        .arg(&csv)
        .env("MAMORI_PASSWORD", PASSWORD));
    let list: Value = serde_json::from_str(&ok(mamori(dir.path()).args(["--json", "collection", "list"]))).unwrap();
    assert_eq!(list[0]["records"], rows);
}

#[test]
fn demo_prints_json_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mamori"))
        .args(["demo", "--listen", "127.0.0.1:0", "--people", "300", "--json"])
        .env("MAMORI_LOG", "warn")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    let url = info["url"].as_str().unwrap();
    let users = info["users"].as_array().unwrap();
    assert_eq!(users.len(), 5);
    let staff = users.iter().find(|u| u["role"] == "staff").unwrap();
    let login = serde_json::json!({"login": staff["login"], "password": staff["password"]}).to_string();
    let res = ureq::post(&format!("{url}/api/v1/auth/login"))
        .set("content-type", "application/json")
        .send_string(&login)
        .unwrap();
    let token: Value = res.into_json().unwrap();
    assert!(token["token"].as_str().unwrap().len() > 20);
    assert!(Path::new(info["data_dir"].as_str().unwrap()).exists());
    assert!(info["checkpoint_file"].as_str().unwrap().ends_with("audit-checkpoints.jsonl"));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Signed checkpoints from the command line: the external file set in mamori.toml, verify
/// with it, pubkey, an auditor's query in each format and a review mark; then a truncated
/// tail is caught (exit 3) thanks to the file.
#[test]
fn audit_checkpoints_queries_and_reviews() {
    let (dir, _) = installation();
    let file = dir.path().join("checkpoints.jsonl");
    std::fs::write(
        dir.path().join("mamori.toml"),
        format!("[audit]\ncheckpoint_file = \"{}\"\ncheckpoint_every_events = 3\n", file.display()),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/audit-signing.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let created: Value =
        serde_json::from_str(&ok(mamori(dir.path())
            .args(["--json", "users", "create", "--login", "aud", "--name", "監査", "--role", "auditor"])))
        .unwrap();
    let otp = created["one_time_password"].as_str().unwrap().to_owned();
    ok(mamori(dir.path())
        .args(["passwd", "--login", "aud"])
        .env("MAMORI_PASSWORD", &otp)
        .env("MAMORI_NEW_PASSWORD", PASSWORD));
    let checkpoint: Value =
        serde_json::from_str(&ok(mamori(dir.path()).args(["--json", "audit", "checkpoint"]))).unwrap();
    let head = checkpoint["seq"].as_u64().unwrap();
    assert!(std::fs::read_to_string(&file).unwrap().lines().count() >= 1);

    let pem = ok(mamori(dir.path()).args(["audit", "pubkey"]));
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    // An auditor verifies with the public key alone: no master key, no signing key.
    let public = dir.path().join("audit.pub");
    std::fs::write(&public, &pem).unwrap();
    let data = dir.path().join("data");
    for f in ["master.key", "audit-signing.key"] {
        std::fs::rename(data.join(f), dir.path().join(f)).unwrap();
    }
    let verify: Value =
        serde_json::from_str(&ok(mamori(dir.path()).args(["--json", "audit", "verify", "--public-key"]).arg(&public)))
            .unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
    // A key that is not the installation's: every signature fails.
    let other = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEozU4527RAyGth4PYMctZ+pantbZc\nfNw3zIFJ4DmSokzMNcxDqlLEKpMwW0pIwfKXmaBPzIXzQw5Eowy3NjBejg==\n-----END PUBLIC KEY-----\n";
    std::fs::write(&public, other).unwrap();
    let out = run(mamori(dir.path()).args(["--json", "audit", "verify", "--public-key"]).arg(&public));
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kind"], "bad-signature", "{report}");
    for f in ["master.key", "audit-signing.key"] {
        std::fs::rename(dir.path().join(f), data.join(f)).unwrap();
    }
    let verify: Value = serde_json::from_str(&ok(mamori(dir.path()).args(["--json", "audit", "verify"]))).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(verify["external_checkpoints"].as_u64().unwrap() >= 1, "{verify}");

    let query = |format: &str| {
        ok(mamori(dir.path())
            .args(["audit", "query", "--admin-ops", "--format", format, "--login", "aud"])
            .env("MAMORI_PASSWORD", PASSWORD))
    };
    let csv = query("csv");
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("seq,at,actor,login,"), "{csv}");
    assert!(csv.contains("user.create") && csv.contains("collection.create"), "{csv}");
    let jsonl = query("jsonl");
    let last: Value = serde_json::from_str(jsonl.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"]["action"], "user.create");
    assert!(query("table").contains("user.create"));
    let up_to = last["seq"].as_u64().unwrap();
    let mark: Value = serde_json::from_str(&ok(mamori(dir.path())
        .args(["--json", "audit", "review", "--up-to", &up_to.to_string(), "--note", "checked against tickets"])
        .args(["--login", "aud"])
        .env("MAMORI_PASSWORD", PASSWORD)))
    .unwrap();
    assert_eq!(mark["reviewed_to"], up_to);
    // An operator without an audit role cannot query.
    let out = run(mamori(dir.path()).args(["audit", "query", "--login", "mgr"]).env("MAMORI_PASSWORD", PASSWORD));
    assert!(!out.status.success());

    // Someone with the database file removes the tail and the stored checkpoints after it.
    let conn = rusqlite::Connection::open(dir.path().join("data/mamori.db")).unwrap();
    conn.execute("DELETE FROM audit_events WHERE seq > ?1", [head as i64 - 2]).unwrap();
    conn.execute("DELETE FROM audit_checkpoints WHERE seq > ?1", [head as i64 - 2]).unwrap();
    let out = run(mamori(dir.path()).args(["--json", "audit", "verify"]));
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kind"], "truncated-behind-checkpoint", "{report}");
    assert_eq!(report["first_bad_seq"], head - 1);
    let text = run(mamori(dir.path()).args(["audit", "verify"]));
    assert!(String::from_utf8_lossy(&text.stdout).contains("TAMPERED at seq"));

    // A signing key file that others can read is refused, like the master key.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join("data/audit-signing.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let out = run(mamori(dir.path()).args(["collection", "list"]));
        assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `serve` off loopback: plain HTTP is refused, a loose TLS key is refused, and HTTPS with
/// the files named on the command line serves (and prints an https:// URL); SIGTERM stops it
/// cleanly.
#[test]
fn serve_needs_tls_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    ok(mamori(dir.path()).arg("init"));
    let out = run(mamori(dir.path()).args(["serve", "--listen", "0.0.0.0:0"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing plain HTTP"), "{out:?}");

    // A throwaway CA and server certificate, made here: no key material in the repository.
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&server_key, &ca).unwrap();
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    std::fs::write(&cert, server.pem()).unwrap();
    std::fs::write(&key, server_key.serialize_pem()).unwrap();
    let tls_args = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = run(mamori(dir.path()).args(["serve", "--listen", "0.0.0.0:0"]).args(tls_args));
        assert!(String::from_utf8_lossy(&out.stderr).contains("readable by its owner only"), "{out:?}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    let mut child = mamori(dir.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .args(tls_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let port = line.trim().strip_prefix("mamori listening on https://0.0.0.0:").expect(&line).to_owned();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let agent = ureq::AgentBuilder::new().tls_config(std::sync::Arc::new(tls)).build();
    let res = agent.get(&format!("https://127.0.0.1:{port}/healthz")).call().unwrap();
    assert_eq!(res.status(), 200);
    // Graceful shutdown (and the final audit checkpoint) on SIGTERM.
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    assert!(child.wait().unwrap().success());
}
