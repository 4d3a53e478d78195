use super::records::import_progress;
use super::serve::{bind, run_server};
use crate::open::{DB_FILE, create_signing_key, open_store, operator, write_key_file};
use crate::output;
use crate::settings::Settings;
use mamori_core::access::{ALL_ROLES, Role};
use mamori_core::clock::SystemClock;
use mamori_core::schema::CollectionSchema;
use mamori_crypto::{MasterKey, SecretString, SessionToken};
use mamori_vault::{MemorySource, NewUser, Vault};
use serde::Serialize;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Serialize)]
struct DemoUser {
    login: String,
    password: String,
    role: Role,
}

fn demo_login(role: Role) -> &'static str {
    match role {
        Role::SystemAdmin => "admin",
        Role::Staff => "staff",
        Role::Manager => "manager",
        Role::Auditor => "auditor",
        Role::PrivacyOfficer => "privacy",
    }
}

/// `mamori demo`: a throwaway data directory (deleted on exit) with synthetic people —
/// generated in memory, never written to disk in the clear — and one user per role.
pub async fn run(settings: &Settings, listen: &str, people: usize, json: bool) -> anyhow::Result<ExitCode> {
    anyhow::ensure!((1..=2_000_000).contains(&people), "--people must be 1..=2000000");
    let dir = tempfile::Builder::new().prefix("mamori-demo-").tempdir()?;
    let mut settings = settings.clone();
    settings.data_dir = dir.path().to_owned();
    settings.database_url = None;
    settings.master_key_file = None;
    settings.audit.signing_key_file = None;
    let checkpoint_file = dir.path().join("audit-checkpoints.jsonl");
    settings.audit.checkpoint_file = Some(checkpoint_file.clone());
    let master = MasterKey::generate();
    write_key_file(&settings.master_key_path(), &master)?;
    let signing = create_signing_key(&settings.signing_key_path())?;
    let store = open_store(&settings, true).await?;
    let mut config = settings.vault_config();
    config.audit.signing_key = Some(Arc::new(signing));
    let vault = Vault::open(store, &master, Arc::new(SystemClock), config).await?;
    let op = operator();
    vault.create_collection(&op, &CollectionSchema::from_toml(mamori_synth::CUSTOMERS_SCHEMA_TOML)?).await?;

    let mut users = Vec::new();
    for role in ALL_ROLES {
        // Demo accounts skip the first-login password change so scripts can use them at once.
        let password: String = SessionToken::generate().expose().chars().take(20).collect();
        let new = NewUser {
            login: demo_login(role).into(),
            display_name: format!("デモ {}", role),
            role,
            password: Some(SecretString::new(password.clone())),
            must_change_password: false,
        };
        vault.create_user(&op, new).await?;
        users.push(DemoUser { login: demo_login(role).into(), password, role });
    }

    let mut csv = Vec::with_capacity(people * 160);
    mamori_synth::write_customers_csv(&mut csv, people, 2026)?;
    let manager = users.iter().find(|u| u.role == Role::Manager).expect("a manager exists");
    let token =
        vault.login(&manager.login, &SecretString::new(manager.password.clone()), Some("demo".into())).await?.token;
    let importer = vault.authenticate(&token, Some("demo".into())).await?;
    let (progress, bar) = import_progress(!json);
    vault.import_csv(&importer, "customers", Arc::new(MemorySource(csv.into())), progress).await?;
    bar.finish_and_clear();
    vault.logout(&importer, &token).await?;

    let listener = bind(listen, false).await?;
    let url = format!("http://{}", listener.local_addr()?);
    if json {
        output::json(&serde_json::json!({"url": url, "data_dir": dir.path(), "database": dir.path().join(DB_FILE),
                "checkpoint_file": checkpoint_file, "users": users}))?;
    } else {
        println!("mamori demo: {people} synthetic people (架空の人物) in collection `customers`");
        println!("data directory (deleted on exit): {}", dir.path().display());
        println!("signed audit checkpoints: {}", checkpoint_file.display());
        println!("URL: {url}   API: {url}/api/v1   OpenAPI: {url}/api/v1/openapi.json");
        println!();
        output::table(
            &["login", "password", "role"],
            &users.iter().map(|u| vec![u.login.clone(), u.password.clone(), u.role.to_string()]).collect::<Vec<_>>(),
        );
        println!();
        println!(
            "try: curl -s {url}/api/v1/auth/login -H 'content-type: application/json' -d '{{\"login\":\"staff\",\"password\":\"…\"}}'"
        );
        println!("Press Ctrl-C to stop.");
    }
    let result = run_server(&settings, vault, listener).await;
    drop(dir);
    result
}
