//! The `mamori` binary as an operator uses it: real processes, a real data directory.

use mamori_core::clock::{Clock as _, SystemClock};
use mamori_crypto::TotpSecret;
use serde_json::Value;
use std::io::{BufRead as _, Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::*;

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
    let line = first_line(&mut child);
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
    let line = first_line(&mut child);
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

/// An authenticator app for a test account. The vault accepts the code of the current
/// 30-second step or one step either side, each step once per account; this hands out the
/// next unused step still accepted, and waits for the clock when none is left.
struct Authenticator {
    secret: TotpSecret,
    last_step: Option<u64>,
}

impl Authenticator {
    fn next_code(&mut self) -> String {
        loop {
            let now = SystemClock.now().unix_timestamp() as u64;
            let current = now / 30;
            // The previous step only early in the current one: it must still be accepted when
            // the command, started after this, checks it.
            let earliest = if now % 30 < 20 { current - 1 } else { current };
            let step = self.last_step.map_or(earliest, |last| (last + 1).max(earliest));
            if step <= current + 1 {
                self.last_step = Some(step);
                return self.secret.current_code(step * 30);
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }

    /// `cmd` as the account's owner: password and the next one-time code.
    fn login<'a>(&mut self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("MAMORI_PASSWORD", PASSWORD).env("MAMORI_TOTP", self.next_code())
    }
}

/// A system administrator created by the operator, with its one-time password changed (its
/// second factor is not enrolled yet).
fn create_system_admin(dir: &Path, login: &str) {
    create_user(dir, None, login, "system_admin");
}

/// `mamori mfa enrol` as a person does it: read the secret, type the first code.
fn enrol(dir: &Path, login: &str) -> Authenticator {
    let mut child = mamori(dir)
        .args(["--json", "mfa", "enrol", "--login", login])
        .env("MAMORI_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let shown: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert!(shown["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/"), "{shown}");
    let mut app =
        Authenticator { secret: TotpSecret::from_base32(shown["secret"].as_str().unwrap()).unwrap(), last_step: None };
    writeln!(child.stdin.take().unwrap(), "{}", app.next_code()).unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "enrol {login}: {}", String::from_utf8_lossy(&out.stderr));
    let done: Value = serde_json::from_str(rest.trim()).unwrap();
    assert_eq!(done["recovery_codes"].as_array().unwrap().len(), 10, "{done}");
    app
}

/// A system administrator ready to act: created, password changed, authenticator enrolled.
fn system_admin(dir: &Path, login: &str) -> Authenticator {
    create_system_admin(dir, login);
    enrol(dir, login)
}

/// Four-eyes on the policies (004-V-1-22-a): the operator reads the policies in force and
/// proposes a change from a file, dry-runs it, and cannot approve it; a logged-in system
/// administrator (with TOTP) approves it, and it is in force. A proposer cannot approve
/// their own proposal.
#[test]
fn policy_change_needs_a_second_administrator() {
    let (dir, _) = installation();
    let d = dir.path();
    let text = ok(mamori(d).args(["policy", "show"]));
    assert!(text.contains(r#"@id("staff.search")"#), "{text}");
    let active = json(ok(mamori(d).args(["--json", "policy", "show"])));
    assert_eq!(active["version"], 1);
    assert_eq!(active["active"], true);
    assert_eq!(active["policies"].as_str().unwrap(), text, "stdout holds the text alone");

    // Managers may no longer export.
    let before = r#"action in [Mamori::Action::"search", Mamori::Action::"export"],"#;
    assert!(text.contains(before));
    let file = d.join("policies-v2.cedar");
    std::fs::write(&file, text.replace(before, r#"action == Mamori::Action::"search","#)).unwrap();
    let proposed = json(ok(mamori(d)
        .args(["--json", "policy", "propose"])
        .arg(&file)
        .args(["--summary", "managers no longer export"])));
    assert_eq!(proposed["version"], 2);
    assert_eq!(proposed["base_version"], 1);
    assert_eq!(proposed["status"], "pending");
    assert_eq!(proposed["active"], false);

    let changes = json(ok(mamori(d).args(["--json", "policy", "dry-run", "2", "--collection", "customers"])));
    let changes = changes.as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["login"], "mgr");
    assert_eq!(changes[0]["action"], "export");
    assert_eq!((changes[0]["before"].clone(), changes[0]["after"].clone()), (true.into(), false.into()));
    let table = ok(mamori(d).args(["policy", "dry-run", "2", "--collection", "customers"]));
    assert!(table.lines().any(|l| l.starts_with("mgr") && l.contains("loses") && l.contains("export")), "{table}");

    let refused = failure(mamori(d).args(["policy", "approve", "2"]));
    assert!(refused.contains("the local operator cannot approve policy version 2"), "{refused}");
    assert!(refused.contains("four-eyes") && refused.contains("--login"), "{refused}");

    create_system_admin(d, "sysadmin1");
    // Before enrolling a second factor, an administrator's login is a setup session only.
    let refused =
        failure(mamori(d).args(["policy", "approve", "2", "--login", "sysadmin1"]).env("MAMORI_PASSWORD", PASSWORD));
    assert!(refused.contains("mamori mfa enrol --login sysadmin1"), "{refused}");
    let mut first = enrol(d, "sysadmin1");
    let mut second = system_admin(d, "sysadmin2");

    let approved = json(ok(first.login(mamori(d).args(["--json", "policy", "approve", "2", "--login", "sysadmin1"]))));
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["active"], true);
    let list = json(ok(mamori(d).args(["--json", "policy", "list"])));
    let versions = list.as_array().unwrap();
    let version = |n: u64| versions.iter().find(|v| v["version"] == n).unwrap();
    assert_eq!(version(2)["active"], true);
    assert_eq!(version(2)["status"], "approved");
    assert_eq!(version(1)["active"], false);
    let table = ok(mamori(d).args(["policy", "list"]));
    assert!(table.lines().any(|l| l.starts_with("2 ") && l.contains('*') && l.contains("managers no longer")));

    // A proposer never decides their own proposal.
    std::fs::write(&file, &text).unwrap();
    let proposed = json(ok(second.login(mamori(d).args(["--json", "policy", "propose"]).arg(&file).args([
        "--summary",
        "managers export again",
        "--login",
        "sysadmin2",
    ]))));
    assert_eq!(proposed["version"], 3);
    let refused = failure(second.login(mamori(d).args(["policy", "approve", "3", "--login", "sysadmin2"])));
    assert!(refused.contains("other than the one who asked"), "{refused}");
    let rejected = json(ok(first.login(mamori(d).args(["--json", "policy", "reject", "3", "--login", "sysadmin1"]))));
    assert_eq!(rejected["status"], "rejected");
    let active = json(ok(mamori(d).args(["--json", "policy", "show"])));
    assert_eq!(active["version"], 2, "a rejected version never comes into force");
}

const REASON: &str = "苦情調査 チケット4711: 山田太郎様の登録内容を確認するため";

/// Break-glass between two system administrators (001-20-tech-2-8): one requests with the
/// reason on stdin, the other approves, the grant shows as active, the requester ends it.
#[test]
fn break_glass_needs_a_second_administrator() {
    let (dir, _) = installation();
    let d = dir.path();
    let mut requester = system_admin(d, "sysadmin1");
    let mut approver = system_admin(d, "sysadmin2");

    let mut request = mamori(d);
    requester
        .login(request.args([
            "--json",
            "break-glass",
            "request",
            "--collection",
            "customers",
            "--minutes",
            "30",
            "--login",
            "sysadmin1",
        ]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = request.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{REASON}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let grant: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(grant["status"], "pending");
    assert_eq!(grant["reason"], REASON, "the requester sees their own reason in --json");
    let id = grant["id"].as_str().unwrap().to_owned();

    let refused = failure(mamori(d).args(["break-glass", "approve", &id]));
    assert!(refused.contains("the local operator cannot approve grant"), "{refused}");
    let approved =
        json(ok(approver.login(mamori(d).args(["--json", "break-glass", "approve", &id, "--login", "sysadmin2"]))));
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["active"], true);
    assert!(approved["expires_at"].is_string());

    let table = ok(approver.login(mamori(d).args(["break-glass", "list", "--login", "sysadmin2"])));
    let row = table.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("sysadmin1") && row.contains("approved") && row.contains('*'), "{row}");
    assert!(!table.contains(REASON), "the table leaves reasons out: {table}");

    let revoked =
        json(ok(requester.login(mamori(d).args(["--json", "break-glass", "revoke", &id, "--login", "sysadmin1"]))));
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["active"], false);
}

/// The break-glass reason may name people: there is no flag for it (argv shows in `ps`), and
/// only `show` and `--json` print it. Over-long grants are refused before anything is asked.
#[test]
fn break_glass_reason_stays_out_of_argv_and_tables() {
    let (dir, _) = installation();
    let d = dir.path();
    let request = ["break-glass", "request", "--collection", "customers", "--login", "mgr"];
    let err = failure(mamori(d).args(request).args(["--minutes", "30", "--reason", REASON]).stdin(Stdio::null()));
    assert!(err.contains("unexpected argument '--reason'"), "{err}");
    assert!(!err.contains(REASON), "{err}");
    let err = failure(mamori(d).args(request).args(["--minutes", "241"]).stdin(Stdio::null()));
    assert!(err.contains("241") && err.contains("1..=240"), "{err}");
    let err = failure(mamori(d).args(request).args(["--minutes", "0"]).stdin(Stdio::null()));
    assert!(err.contains("1..=240"), "{err}");

    let file = d.join("reason.txt");
    std::fs::write(&file, "too short").unwrap();
    let err = failure(
        mamori(d).args(request).args(["--minutes", "30", "--reason-file"]).arg(&file).env("MAMORI_PASSWORD", PASSWORD),
    );
    assert!(err.contains("10–1000 characters"), "{err}");
    std::fs::write(&file, REASON).unwrap();
    let text = ok(mamori(d)
        .args(request)
        .args(["--minutes", "240", "--reason-file"])
        .arg(&file)
        .env("MAMORI_PASSWORD", PASSWORD));
    assert!(!text.contains(REASON), "{text}");
    let id = text.split_whitespace().nth(2).unwrap().to_owned();
    assert!(text.starts_with(&format!("break-glass request {id} for `customers` (240 min) is pending")), "{text}");

    let as_mgr = |args: &[&str]| ok(mamori(d).args(args).args(["--login", "mgr"]).env("MAMORI_PASSWORD", PASSWORD));
    let table = as_mgr(&["break-glass", "list"]);
    assert!(table.lines().any(|l| l.starts_with(&id) && l.contains("pending")), "{table}");
    assert!(!table.contains(REASON), "{table}");
    let listed = json(as_mgr(&["--json", "break-glass", "list"]));
    assert_eq!(listed[0]["reason"], REASON);
    assert!(as_mgr(&["break-glass", "show", &id]).contains(REASON));
    // The requester cannot approve their own request.
    let err =
        failure(mamori(d).args(["break-glass", "approve", &id, "--login", "mgr"]).env("MAMORI_PASSWORD", PASSWORD));
    assert!(err.contains("other than the one who asked"), "{err}");
}

/// Issue 5 item 6: a manager reviews everyone's rights and confirms or revokes each.
#[test]
fn access_review_confirms_and_nobody_reviews_themselves() {
    let (dir, _) = installation();
    let review: Value = serde_json::from_str(&ok(mamori(dir.path())
        .args(["--json", "access", "review", "--login", "mgr"])
        .env("MAMORI_PASSWORD", PASSWORD)))
    .unwrap();
    let admin = review.as_array().unwrap().iter().find(|e| e["login"] == "admin").expect("the admin is listed");
    assert!(admin["system"].as_array().unwrap().iter().any(|r| r == "user.manage"), "{admin}");
    assert_eq!(admin["collections"][0]["own_department"], serde_json::json!([]), "no content for admins");
    let table = ok(mamori(dir.path()).args(["access", "review", "--login", "mgr"]).env("MAMORI_PASSWORD", PASSWORD));
    assert!(table.contains("content rights") && table.contains("mgr"), "{table}");

    let confirmed =
        ok(mamori(dir.path()).args(["access", "confirm", "admin", "--login", "mgr"]).env("MAMORI_PASSWORD", PASSWORD));
    assert!(confirmed.contains("confirmed `admin`"), "{confirmed}");
    // The roster shows the review, as CSV too (issue 4 item 6, 004-II-2-5).
    let roster = ok(mamori(dir.path()).args(["users", "roster", "--format", "csv"]));
    let mut lines = roster.lines();
    assert!(lines.next().unwrap().starts_with("login,name,department,title,role,status,MFA,clearance"));
    let admin_row = lines.find(|l| l.starts_with("admin,")).expect("admin in the roster");
    assert!(admin_row.ends_with(&today()), "reviewed today: {admin_row}");
    let own =
        run(mamori(dir.path()).args(["access", "revoke", "mgr", "--login", "mgr"]).env("MAMORI_PASSWORD", PASSWORD));
    assert!(!own.status.success());
    assert!(String::from_utf8_lossy(&own.stderr).contains("nobody reviews themselves"));
}

fn today() -> String {
    use mamori_core::clock::{Clock as _, SystemClock};
    SystemClock.now().date().to_string()
}

/// Issue 9 from the command line: a secret-split export asked for with its request on a
/// file (never argv), refused to its own requester, approved by a privacy officer, its
/// download making three shares held for three custodians (000-8-takeout-5: nobody is handed
/// the set), each fetched by its custodian only, any two restoring the CSV offline, recorded
/// in the ledger and disposed of as recorded by its witness.
#[test]
fn split_export_from_the_command_line() {
    let (dir, _) = installation();
    let d = dir.path();
    let people = d.join("people.csv");
    write_people(&people, 20, 5);
    ok(mamori(d)
        .args(["import", "--collection", "customers", "--login", "mgr"])
        .arg(&people)
        .env("MAMORI_PASSWORD", PASSWORD));
    create_user(d, None, "officer", "privacy_officer");
    create_user(d, None, "keeper", "manager");
    // Custodians must be able to read the data in full themselves: trained and pledged.
    for login in ["officer", "keeper"] {
        ok(mamori(d).args(["users", "update", login, "--training-until", "2099-12-31", "--pledge-signed"]));
    }
    let spec = d.join("request.json");
    std::fs::write(
        &spec,
        r#"{"collection": "customers", "fields": ["name", "phone"], "filter": {"kind": "all"},
            "purpose": "契約内容の確認", "recipient": "委託先 印刷会社", "format": "csv",
            "protection": {"kind": "split", "threshold": 2, "shares": 3, "custodians": ["mgr", "officer", "keeper"]}}"#,
    )
    .unwrap();
    let requested = json(ok(mamori(d)
        .args(["--json", "export", "request", "--login", "mgr", "--spec"])
        .arg(&spec)
        .env("MAMORI_PASSWORD", PASSWORD)));
    assert_eq!((requested["status"].as_str(), requested["rows"].as_u64()), (Some("pending"), Some(20)));
    let id = requested["id"].as_str().unwrap().to_owned();

    let own = failure(mamori(d).args(["export", "approve", &id, "--login", "mgr"]).env("MAMORI_PASSWORD", PASSWORD));
    assert!(own.contains("cannot approve export"), "{own}");
    let approved = json(ok(mamori(d)
        .args(["--json", "export", "approve", &id, "--login", "officer"])
        .env("MAMORI_PASSWORD", PASSWORD)));
    assert_eq!(approved["status"], "approved");

    let out = d.join("out");
    std::fs::create_dir(&out).unwrap();
    let downloaded = json(ok(mamori(d)
        .args(["--json", "export", "download", &id, "--login", "mgr", "--out"])
        .arg(&out)
        .env("MAMORI_PASSWORD", PASSWORD)));
    let held: Vec<&str> =
        downloaded["shares"].as_array().unwrap().iter().map(|s| s["custodian"].as_str().unwrap()).collect();
    assert_eq!((held, downloaded["rows"].as_u64()), (vec!["mgr", "officer", "keeper"], Some(20)));
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "the requester is handed no share by the download");

    // Each custodian fetches their own share, once.
    let waiting = json(ok(mamori(d)
        .args(["--json", "export", "fetch-share", "--login", "keeper"])
        .env("MAMORI_PASSWORD", PASSWORD)));
    assert_eq!(waiting[0]["share"], 3);
    let mut files = Vec::new();
    for login in ["mgr", "officer", "keeper"] {
        let fetched = json(ok(mamori(d)
            .args(["--json", "export", "fetch-share", &id, "--login", login, "--out"])
            .arg(&out)
            .env("MAMORI_PASSWORD", PASSWORD)));
        files.push(fetched["file"].as_str().unwrap().to_owned());
    }
    let twice =
        failure(mamori(d).args(["export", "fetch-share", &id, "--login", "keeper"]).env("MAMORI_PASSWORD", PASSWORD));
    assert!(twice.contains("fetched already"), "{twice}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let share = std::fs::read(&files[1]).unwrap();
    assert!(!share.windows("試験".len()).any(|w| w == "試験".as_bytes()) && !share.windows(3).any(|w| w == b"090"));

    // Any two restore the CSV, offline; one share, or a tampered one, restores nothing.
    let restored = d.join("restored.csv");
    ok(mamori(d).args(["shares", "combine", &files[0], &files[2], "--out"]).arg(&restored));
    let text = std::fs::read_to_string(&restored).unwrap();
    assert!(text.contains("name") && text.lines().count() == 21, "{text}");
    let mut tampered = share.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    let tampered_path = d.join("tampered.mamori");
    std::fs::write(&tampered_path, &tampered).unwrap();
    let refused =
        failure(mamori(d).args(["shares", "combine", &files[0]]).arg(&tampered_path).arg("--out").arg(d.join("x.csv")));
    assert!(refused.contains("cannot restore"), "{refused}");
    assert!(!d.join("x.csv").exists());
    let again = failure(mamori(d).args(["shares", "combine", &files[0], &files[2], "--out"]).arg(&restored));
    assert!(again.contains("must not exist"), "{again}");

    let ledger = json(ok(mamori(d)
        .args(["--json", "export", "ledger", &id, "--login", "officer"])
        .env("MAMORI_PASSWORD", PASSWORD)));
    let kinds: Vec<&str> = ledger.as_array().unwrap().iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["request", "approve", "download", "share", "share", "share", "share_fetch", "share_fetch", "share_fetch"]
    );
    // The disposal is recorded by its witness, never by the requester.
    let own = failure(
        mamori(d)
            .args(["export", "dispose", &id, "--method", "シュレッダー", "--login", "mgr"])
            .env("MAMORI_PASSWORD", PASSWORD),
    );
    assert!(own.contains("witness"), "{own}");
    let disposed = json(ok(mamori(d)
        .args(["--json", "export", "dispose", &id, "--method", "シュレッダー", "--login", "officer"])
        .env("MAMORI_PASSWORD", PASSWORD)));
    assert_eq!(disposed["status"], "closed");
}

/// `mamori keys rotate --master` while a server runs on the same SQLite file: the server
/// follows the new key (it polls the key check and reads the key file again), a record keeps
/// reading, and the administrator's second factor — sealed under the old key — still works
/// (002-T-6-d key management, 004-V-2-5 MFA for administrators).
#[test]
fn master_key_rotation_while_serving_keeps_data_and_second_factors() {
    let (dir, _) = installation();
    let d = dir.path();
    std::fs::write(d.join("mamori.toml"), "[authz]\npolicy_refresh_seconds = 1\n").unwrap();
    let mut admin = system_admin(d, "sysadmin1");
    let (mut server, url) = serve(mamori(d));
    let login = serde_json::json!({"login": "mgr", "password": PASSWORD});
    let token: Value = ureq::post(&format!("{url}/api/v1/auth/login")).send_json(login).unwrap().into_json().unwrap();
    let auth = format!("Bearer {}", token["token"].as_str().unwrap());
    let records = format!("{url}/api/v1/collections/customers/records");
    let body = serde_json::json!({"fields": {"name": "試験 太郎", "email": "rotate@example.jp"}});
    let created: Value = ureq::post(&records).set("authorization", &auth).send_json(body).unwrap().into_json().unwrap();
    let record = format!("{records}/{}?view=full", created["id"].as_str().unwrap());

    let old_key = std::fs::read_to_string(d.join("data/master.key")).unwrap();
    let rotated = json(ok(mamori(d).args(["--json", "keys", "rotate", "--master"])));
    assert_eq!(rotated["master_key_rotated"], true, "{rotated}");
    assert_eq!(rotated["secrets_resealed"], 1, "the administrator's TOTP secret: {rotated}");
    assert_ne!(std::fs::read_to_string(d.join("data/master.key")).unwrap(), old_key);
    assert!(!d.join("data/master.key.new").exists(), "the staged file was installed");

    // Past the server's poll interval and its collection-key cache window.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let read: Value = ureq::get(&record).set("authorization", &auth).call().unwrap().into_json().unwrap();
    assert_eq!(read["fields"]["email"], "rotate@example.jp");
    let listed = json(ok(admin.login(mamori(d).args(["--json", "policy", "list", "--login", "sysadmin1"]))));
    assert!(!listed.as_array().unwrap().is_empty(), "TOTP login after the rotation: {listed}");

    ok(Command::new("kill").args(["-TERM", &server.id().to_string()]));
    assert!(server.wait().unwrap().success(), "a clean shutdown");
    assert_eq!(json(ok(mamori(d).args(["--json", "audit", "verify"])))["ok"], true);
}

/// `mamori users sync` (issue 4 lifecycle; 000-8-access-2, 004-V-2-2): a bad file is refused
/// with line numbers and changes nothing; the dry run shows the plan; `--apply` creates the
/// joiner (with a one-time password), moves the mover and disables whoever is not listed.
#[test]
fn hr_roster_sync_from_the_command_line() {
    let (dir, _) = installation();
    let d = dir.path();
    create_user(d, None, "leaver", "staff");
    let bad = d.join("bad.csv");
    std::fs::write(&bad, "login,name,status\nmgr,責任者,在職\nBAD,x,在職\njoiner,新人,retired\n").unwrap();
    let refused = failure(mamori(d).args(["users", "sync"]).arg(&bad));
    assert!(refused.contains("line 3, column `login`") && refused.contains("line 4, column `status`"), "{refused}");

    let hr = d.join("hr.csv");
    std::fs::write(&hr, "login,name,department,status\nadmin,管理者,情報システム部,在職\nmgr,責任者,経理部,在職\njoiner,新人 一郎,営業部,在職\n").unwrap();
    let plan = json(ok(mamori(d).args(["--json", "users", "sync"]).arg(&hr)));
    let changes: Vec<(String, String)> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["change"].as_str().unwrap().to_owned(), c["login"].as_str().unwrap().to_owned()))
        .collect();
    assert!(changes.contains(&("create".into(), "joiner".into())), "{plan}");
    assert!(changes.contains(&("disable".into(), "leaver".into())), "{plan}");
    assert!(changes.contains(&("update".into(), "mgr".into())), "{plan}");
    let table = ok(mamori(d).args(["users", "sync"]).arg(&hr));
    assert!(table.contains("department: — → 経理部") && table.contains("dry run: nothing changed"), "{table}");
    let users = || json(ok(mamori(d).args(["--json", "users", "list"])));
    assert!(!users().as_array().unwrap().iter().any(|u| u["login"] == "joiner"), "the dry run changed nothing");

    let report = json(ok(mamori(d).args(["--json", "users", "sync", "--apply"]).arg(&hr)));
    assert!(report["one_time_passwords"]["joiner"].as_str().unwrap().len() >= 10, "{report}");
    let after = users();
    let user = |login: &str| after.as_array().unwrap().iter().find(|u| u["login"] == login).unwrap().clone();
    assert_eq!(user("mgr")["department"], "経理部");
    assert_eq!(user("leaver")["disabled"], true);
    assert_eq!(user("joiner")["department"], "営業部");
    let again = json(ok(mamori(d).args(["--json", "users", "sync"]).arg(&hr)));
    assert_eq!(again["changes"].as_array().unwrap().len(), 0, "{again}");
}

#[test]
fn status_reports_checkpoints_and_sinks_and_exits_by_health() {
    let (dir, _) = installation();
    let out = run(mamori(dir.path()).args(["--json", "status"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = json(String::from_utf8(out.stdout).unwrap());
    assert_eq!(s["healthy"], true, "{s}");
    assert_eq!(s["database"]["backend"], "sqlite");
    assert!(s["database"]["size_bytes"].as_u64().unwrap() > 0);
    let head = s["audit"]["head_seq"].as_u64().unwrap();
    assert!(head > 3, "{s}");
    assert!(s["audit"]["last_checkpoint_seq"].as_u64().unwrap() >= 1, "init signs its first batch: {s}");
    assert!(s["audit"]["unsigned_events"].as_u64().unwrap() >= 1, "later commands are not signed yet: {s}");
    assert_eq!(s["siem"], serde_json::json!([]));

    // The unsigned events outlive twice a one-second checkpoint period, and a sink nobody
    // forwards to (no server runs) lags beyond its alert time.
    let config = dir.path().join("status.toml");
    std::fs::write(
        &config,
        "[audit]\ncheckpoint_every_seconds = 1\n[audit.siem]\nalert_after_seconds = 1\n\
         [audit.siem.syslog]\naddress = \"127.0.0.1:9\"\n",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let out = run(mamori(dir.path()).arg("--config").arg(&config).args(["--json", "status"]));
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let s = json(String::from_utf8(out.stdout).unwrap());
    assert_eq!((&s["healthy"], &s["audit"]["checkpoint_overdue"]), (&Value::Bool(false), &Value::Bool(true)), "{s}");
    assert_eq!(s["audit"]["head_seq"].as_u64(), Some(head), "status records nothing");
    let sink = &s["siem"][0];
    assert_eq!(
        (&sink["sink"], sink["lag"].as_u64(), &sink["healthy"]),
        (&Value::from("syslog"), Some(head), &Value::Bool(false))
    );
    assert_eq!(s["problems"].as_array().unwrap().len(), 2, "{s}");
    let text = run(mamori(dir.path()).arg("--config").arg(&config).arg("status"));
    assert_eq!(text.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&text.stdout).contains("NEEDS ATTENTION"));

    // No installation: the status cannot be read.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(run(mamori(empty.path()).arg("status")).status.code(), Some(1));
}

#[test]
fn serve_forwards_to_the_configured_file_sink_and_reports_it() {
    let (dir, _) = installation();
    let sink = dir.path().join("siem").join("audit.jsonl");
    let config = dir.path().join("siem.toml");
    std::fs::write(&config, format!("[audit.siem.file]\npath = \"{}\"\n", sink.display())).unwrap();
    // The directory is missing at first: the sink fails, the server serves.
    let mut cmd = mamori(dir.path());
    cmd.arg("--config").arg(&config).stderr(Stdio::null());
    let (mut child, url) = serve(cmd);
    let get = |path: &str| match ureq::get(&format!("{url}{path}")).call() {
        Ok(res) => (res.status(), res.into_string().unwrap()),
        Err(ureq::Error::Status(status, res)) => (status, res.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    };
    let poll = |want: u16| {
        for _ in 0..100 {
            let (status, body) = get("/healthz/audit");
            if status == want {
                return json(body);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("/healthz/audit never answered {want}");
    };
    let failing = poll(503);
    assert_eq!(failing["audit"]["siem"][0]["sink"], "file", "{failing}");
    assert_eq!(get("/readyz").0, 200, "a failing sink does not take the server out of service");
    assert!(get("/metrics").1.contains("mamori_audit_siem_ok{sink=\"file\"} 0"));

    std::fs::create_dir(sink.parent().unwrap()).unwrap();
    let healthy = poll(200);
    let forwarded = healthy["audit"]["siem"][0]["forwarded_seq"].as_u64().unwrap();
    let lines = std::fs::read_to_string(&sink).unwrap();
    let seqs: Vec<u64> = lines.lines().map(|l| json(l.to_owned())["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=forwarded).collect::<Vec<_>>(), "everything from the first event on");

    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    assert!(child.wait().unwrap().success());
    let s = json(ok(mamori(dir.path()).arg("--config").arg(&config).args(["--json", "status"])));
    assert_eq!((&s["healthy"], &s["siem"][0]["lag"]), (&Value::Bool(true), &Value::from(0)), "{s}");
}

/// Access windows from the command line and the configuration file (001-20-tech-2-5,
/// 001-20-tech-1-6): `users update` sets an account's own window and returns it to its
/// role's; malformed hours in a flag or in `[auth.access.<role>]` are refused clearly.
#[test]
fn access_windows_from_flags_and_configuration() {
    let (dir, _) = installation();
    let d = dir.path();
    create_user(d, None, "clerk", "staff");
    let update = |extra: &[&str]| mamori(d).args(["--json", "users", "update", "clerk"]).args(extra).output().unwrap();

    let set = update(&[
        "--hours",
        "08:00-20:00",
        "--days",
        "mon-fri",
        "--closed-on-holidays",
        "--networks",
        "10.0.0.0/8,192.168.1.0/24",
    ]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let user = json(String::from_utf8(set.stdout).unwrap());
    assert_eq!(
        user["access_window"],
        serde_json::json!({"hours": "08:00-20:00", "days": ["mon", "tue", "wed", "thu", "fri"],
                           "closed_on_holidays": true, "networks": ["10.0.0.0/8", "192.168.1.0/24"]})
    );
    let bad = update(&["--hours", "8-20"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected HH:MM-HH:MM"));
    let listed = json(ok(mamori(d).args(["--json", "users", "list"])));
    let clerk = listed.as_array().unwrap().iter().find(|u| u["login"] == "clerk").unwrap().clone();
    assert_eq!(clerk["access_window"]["hours"], "08:00-20:00", "a refused change changes nothing");

    let back = update(&["--role-window"]);
    assert!(back.status.success());
    assert!(json(String::from_utf8(back.stdout).unwrap())["access_window"].is_null());

    std::fs::write(d.join("mamori.toml"), "[auth.access.staff]\nhours = \"25:00-26:00\"\n").unwrap();
    let refused = failure(mamori(d).args(["users", "list"]));
    assert!(refused.contains("expected HH:MM-HH:MM"), "{refused}");
    std::fs::write(d.join("mamori.toml"), "[auth]\nholidays = [\"2026-12-31\"]\n[auth.access.staff]\nhours = \"08:00-20:00\"\nclosed_on_holidays = true\n").unwrap();
    ok(mamori(d).args(["users", "list"]));
    std::fs::write(d.join("mamori.toml"), "[auth.access.janitor]\nhours = \"08:00-20:00\"\n").unwrap();
    let refused = failure(mamori(d).args(["users", "list"]));
    assert!(refused.contains("auth.access.janitor"), "{refused}");
}

/// SIGKILL during group commit loses no acknowledged read (issue 6; 001-20-tech-4-1 and
/// 004-V-1-3: every access is logged; 002-S-11-b: the trail still verifies). Three times, a
/// real `mamori serve` on SQLite is killed while four clients read records over HTTP, each
/// record at most once; afterwards, with no server, `audit verify` passes and every read
/// that was answered 2xx has its `record.read` event. Signed checkpoints are taken every 25
/// events, so a kill can also land in the middle of one.
#[test]
fn kill_during_group_commit_loses_no_acknowledged_read() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    const RECORDS: usize = 200;
    const CLIENTS: usize = 4;
    const KILL_AFTER: usize = 20;

    let (dir, _) = installation();
    let d = dir.path();
    let file = d.join("checkpoints.jsonl");
    std::fs::write(
        d.join("mamori.toml"),
        format!("[audit]\ncheckpoint_file = \"{}\"\ncheckpoint_every_events = 25\n", file.display()),
    )
    .unwrap();
    create_user(d, None, "aud", "auditor");
    for round in 0..3 {
        let mut cmd = mamori(d);
        cmd.stderr(Stdio::null());
        let (mut server, url) = serve(cmd);
        let login = serde_json::json!({"login": "mgr", "password": PASSWORD});
        let token: Value =
            ureq::post(&format!("{url}/api/v1/auth/login")).send_json(login).unwrap().into_json().unwrap();
        let auth = format!("Bearer {}", token["token"].as_str().unwrap());
        let records = format!("{url}/api/v1/collections/customers/records");
        let ids: Vec<String> = (0..RECORDS)
            .map(|i| {
                let body = serde_json::json!({"fields": {"name": "試験 太郎", "email": format!("kill{round}-{i}@example.jp")}});
                let created: Value =
                    ureq::post(&records).set("authorization", &auth).send_json(body).unwrap().into_json().unwrap();
                created["id"].as_str().unwrap().to_owned()
            })
            .collect();

        let (ids, next, acked) = (Arc::new(ids), Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (ids, next, acked) = (ids.clone(), next.clone(), acked.clone());
                let (records, auth) = (records.clone(), auth.clone());
                std::thread::spawn(move || {
                    let agent = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(30)).build();
                    loop {
                        let Some(id) = ids.get(next.fetch_add(1, Ordering::SeqCst)) else { return };
                        match agent.get(&format!("{records}/{id}?view=masked")).set("authorization", &auth).call() {
                            Ok(res) if (200..300).contains(&res.status()) => acked.lock().unwrap().push(id.clone()),
                            // Killed: refused, reset or cut short. Not acknowledged.
                            _ => return,
                        }
                    }
                })
            })
            .collect();
        while acked.lock().unwrap().len() < KILL_AFTER && !clients.iter().all(|c| c.is_finished()) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        server.kill().unwrap(); // SIGKILL: no shutdown, no flush, no last checkpoint.
        server.wait().unwrap();
        for c in clients {
            c.join().unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() >= KILL_AFTER, "round {round}: only {} reads were answered", acked.len());
        assert!(acked.len() < RECORDS, "round {round}: the kill came after the load, not during it");

        let verify = json(ok(mamori(d).args(["--json", "audit", "verify"])));
        assert_eq!(verify["ok"], true, "round {round}: {verify}");
        let events = ok(mamori(d)
            .args(["audit", "query", "--action", "record.read", "--outcome", "success", "--all", "--limit", "1000"])
            .args(["--format", "jsonl", "--login", "aud"])
            .env("MAMORI_PASSWORD", PASSWORD));
        let logged: std::collections::HashSet<String> = events
            .lines()
            .map(|l| json(l.to_owned()))
            .filter(|e| e["event"]["collection"] == "customers")
            .map(|e| e["event"]["record"].as_str().unwrap().to_owned())
            .collect();
        let lost: Vec<&String> = acked.iter().filter(|id| !logged.contains(*id)).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} answered reads have no event: {lost:?}",
            lost.len(),
            acked.len()
        );
    }
}

/// `serve --tls-client-ca --tls-client-crl` from the command line (issue 4, registered
/// terminals; 001-20-tech-1-6): a device certificate of the CA connects, the same CA's
/// device listed in the CRL is refused at the handshake.
#[test]
fn serve_refuses_a_device_revoked_in_the_crl_named_on_the_command_line() {
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, ExtendedKeyUsagePurpose,
        IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(mamori(d).arg("init"));
    // A throwaway CA for the server and the devices, made here.
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let issue = |names: Vec<String>, usage, serial: u64| {
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert, key)
    };
    let (server, server_key) = issue(vec!["127.0.0.1".into()], ExtendedKeyUsagePurpose::ServerAuth, 1);
    let (kept, kept_key) = issue(vec!["terminal-kept".into()], ExtendedKeyUsagePurpose::ClientAuth, 2);
    let (lost, lost_key) = issue(vec!["terminal-lost".into()], ExtendedKeyUsagePurpose::ClientAuth, 3);
    let now = SystemClock.now();
    let crl = CertificateRevocationListParams {
        this_update: now - time::Duration::hours(1),
        next_update: now + time::Duration::days(7),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(3u64),
            revocation_time: now - time::Duration::minutes(5),
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca)
    .unwrap();
    let write = |name: &str, contents: &str| {
        let path = d.join(name);
        std::fs::write(&path, contents).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        path.to_str().unwrap().to_owned()
    };
    let args = [
        "--tls-cert".to_owned(),
        write("server.crt", &server.pem()),
        "--tls-key".to_owned(),
        write("server.key", &server_key.serialize_pem()),
        "--tls-client-ca".to_owned(),
        write("devices-ca.crt", &ca.pem()),
        "--tls-client-crl".to_owned(),
        write("devices.crl", &crl.pem().unwrap()),
    ];
    let mut child = mamori(d)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = first_line(&mut child);
    let port = line.trim().strip_prefix("mamori listening on https://127.0.0.1:").expect(&line).to_owned();
    let device = |cert: &rcgen::Certificate, key: &KeyPair| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert.der().clone()], key)
            .unwrap();
        ureq::AgentBuilder::new().tls_config(std::sync::Arc::new(tls)).build()
    };
    let url = format!("https://127.0.0.1:{port}/healthz");
    assert_eq!(device(&kept, &kept_key).get(&url).call().unwrap().status(), 200);
    assert!(device(&lost, &lost_key).get(&url).call().is_err(), "the revoked device is refused");
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    assert!(child.wait().unwrap().success());
}
