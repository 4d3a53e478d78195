//! Helpers shared by the binary's tests: the real `mamori` binary run on a temporary
//! directory, as an operator would.
// Each test crate uses a different subset.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Output};

pub fn mamori(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamori"));
    cmd.arg("--data-dir").arg(dir.join("data")).env_remove("MAMORI_MASTER_KEY").env_remove("MAMORI_DATABASE_URL");
    cmd.env("MAMORI_LOG", "warn").current_dir(dir);
    cmd
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub const PASSWORD: &str = "Operator-Test-77";

/// init, a manager with a changed password, and the demo collection.
pub fn installation() -> (tempfile::TempDir, String) {
    installation_on(None)
}

/// `mamori` on the data directory of `dir`, and on PostgreSQL when `database_url` is given
/// (the master key still comes from the data directory).
pub fn mamori_on(dir: &Path, database_url: Option<&str>) -> Command {
    let mut cmd = mamori(dir);
    if let Some(url) = database_url {
        cmd.arg("--database-url").arg(url);
    }
    cmd
}

/// The same, with the records on PostgreSQL when `database_url` is given.
pub fn installation_on(database_url: Option<&str>) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let init: Value = serde_json::from_str(&ok(mamori_on(dir.path(), database_url).args(["--json", "init"]))).unwrap();
    assert_eq!(init["admin"]["login"], "admin");
    let schema = dir.path().join("customers.toml");
    std::fs::write(&schema, mamori_synth_schema()).unwrap();
    ok(mamori_on(dir.path(), database_url).args(["collection", "create", "--schema"]).arg(&schema));
    let created: Value = serde_json::from_str(&ok(mamori_on(dir.path(), database_url).args([
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
    let updated: Value = serde_json::from_str(&ok(mamori_on(dir.path(), database_url).args([
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
    ok(mamori_on(dir.path(), database_url)
        .args(["passwd", "--login", "mgr"])
        .env("MAMORI_PASSWORD", &otp)
        .env("MAMORI_NEW_PASSWORD", PASSWORD));
    (dir, otp)
}

pub fn mamori_synth_schema() -> &'static str {
    include_str!("../../../mamori-synth/customers.toml")
}

/// Synthetic people as a CSV file (test input, outside the data directory).
pub fn write_people(path: &Path, count: usize, seed: u64) {
    let out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    mamori_synth::write_customers_csv(out, count, seed).unwrap();
}

pub fn json(out: String) -> Value {
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

pub fn failure(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(!out.status.success(), "{cmd:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

/// The first line a spawned command prints (where `serve` and `demo` say where they listen).
pub fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    line
}

/// Starts `mamori serve` on a free port of 127.0.0.1 with `cmd` (a `mamori` command with its
/// options and environment; its stderr is the caller's choice) and returns the process and
/// the URL it announced.
pub fn serve(mut cmd: Command) -> (Child, String) {
    let mut child =
        cmd.args(["serve", "--listen", "127.0.0.1:0"]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let line = first_line(&mut child);
    let url = line.trim().strip_prefix("mamori listening on ").expect(&line).to_owned();
    (child, url)
}

/// An account created by the operator, with its one-time password changed to [`PASSWORD`]
/// (as its owner would at the first login); a second factor is not enrolled.
pub fn create_user(dir: &Path, database_url: Option<&str>, login: &str, role: &str) {
    let created = json(ok(mamori_on(dir, database_url).args([
        "--json",
        "users",
        "create",
        "--login",
        login,
        "--name",
        "試験 利用者",
        "--role",
        role,
    ])));
    let otp = created["one_time_password"].as_str().unwrap();
    ok(mamori_on(dir, database_url)
        .args(["passwd", "--login", login])
        .env("MAMORI_PASSWORD", otp)
        .env("MAMORI_NEW_PASSWORD", PASSWORD));
}
