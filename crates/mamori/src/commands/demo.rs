use super::records::import_progress;
use super::serve::{bind, run_server};
use crate::login::operator;
use crate::open::{DB_FILE, create_signing_key, open_store, write_key_file};
use crate::output;
use crate::settings::Settings;
use mamori_core::access::{ALL_ROLES, Role};
use mamori_core::clock::{Clock as _, SystemClock};
use mamori_core::schema::CollectionSchema;
use mamori_crypto::{MasterKey, SecretString, TotpSecret};
use mamori_vault::{MemorySource, NewUser, Vault};
use serde::Serialize;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Serialize)]
struct DemoUser {
    login: String,
    password: String,
    role: Role,
    /// Base32 TOTP secret of accounts that use a second factor (scripts compute codes).
    #[serde(skip_serializing_if = "Option::is_none")]
    totp_secret: Option<String>,
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
    // The demo serves plain HTTP on loopback: no device certificates to ask for.
    settings.auth.device_required_roles.clear();
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
        let password = vault.generate_password();
        let new = NewUser {
            password: Some(password.clone()),
            must_change_password: false,
            // Demo people took this year's training and signed the pledge, so the full view
            // works for those whose role allows it.
            training_valid_until: Some(vault.now() + time::Duration::days(365)),
            pledge_signed: true,
            ..NewUser::new(demo_login(role), format!("デモ {}", role), role)
        };
        vault.create_user(&op, new).await?;
        let totp_secret = if settings.vault_config().auth.mfa_roles.contains(&role) {
            Some(enrol_totp(&vault, demo_login(role), &password).await?)
        } else {
            None
        };
        users.push(DemoUser {
            login: demo_login(role).into(),
            password: password.expose().to_owned(),
            role,
            totp_secret,
        });
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
    // One pending take-out request, so that the approvers' home page and the take-out pages
    // have something to show (privacy approves it; manager then downloads).
    let request = mamori_vault::ExportRequest {
        collection: "customers".into(),
        fields: vec!["name".into(), "phone".into()],
        // A few people, not everyone: a take-out asks for what the task needs.
        filter: mamori_vault::ExportFilter::Subjects {
            ids: mamori_synth::Generator::new(2026).take(5).map(|p| p.subject_id).collect(),
        },
        purpose: "契約内容の確認".into(),
        recipient: "デモ 委託先".into(),
        due_date: None,
        format: mamori_vault::ExportFormat::Xlsx,
        protection: mamori_vault::Protection::Password {},
    };
    vault.request_export(&importer, &request).await?;
    vault.logout(&importer, &token).await?;

    let listener = bind(listen, false, false).await?;
    let url = format!("http://{}", listener.local_addr()?);
    if json {
        output::json(&serde_json::json!({"url": url, "data_dir": dir.path(), "database": dir.path().join(DB_FILE),
                "checkpoint_file": checkpoint_file, "users": users}))?;
    } else {
        println!("mamori demo: {people} synthetic people (架空の人物) in collection `customers`");
        println!("data directory (deleted on exit): {}", dir.path().display());
        println!("signed audit checkpoints: {}", checkpoint_file.display());
        println!("Web UI: {url}/  (日本語; English from the header)");
        println!("API: {url}/api/v1   OpenAPI: {url}/api/v1/openapi.json");
        println!();
        output::table(
            &["login", "password", "role", "TOTP secret"],
            &users
                .iter()
                .map(|u| {
                    vec![
                        u.login.clone(),
                        u.password.clone(),
                        u.role.to_string(),
                        u.totp_secret.clone().unwrap_or_default(),
                    ]
                })
                .collect::<Vec<_>>(),
        );
        println!();
        println!(
            "try: curl -s {url}/api/v1/auth/login -H 'content-type: application/json' -d '{{\"login\":\"staff\",\"password\":\"…\"}}'"
        );
        println!("Press Ctrl-C to stop.");
    }
    let result = run_server(&settings, vault, listener, None).await;
    drop(dir);
    result
}

/// Enrols a TOTP authenticator for a demo account the way a person would (setup session,
/// first code), and returns the secret so that scripts can compute codes.
async fn enrol_totp(vault: &Vault, login: &str, password: &SecretString) -> anyhow::Result<String> {
    let out = vault.login(login, password, Some("demo".into())).await?;
    let me = vault.authenticate(&out.token, Some("demo".into())).await?;
    let enrolment = vault.begin_totp_enrolment(&me).await?;
    let secret = TotpSecret::from_base32(enrolment.secret_base32.expose())?;
    let now = SystemClock.now().unix_timestamp().max(0) as u64;
    let code = SecretString::new(secret.current_code(now));
    vault.confirm_totp_enrolment(&me, &enrolment.enrolment, &code).await?;
    Ok(enrolment.secret_base32.expose().to_owned())
}
