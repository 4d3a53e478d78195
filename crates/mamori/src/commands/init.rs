use crate::login::operator;
use crate::open::{DB_FILE, create_private_dir, create_signing_key, open_store, write_key_file};
use crate::output;
use crate::settings::Settings;
use anyhow::{Context, bail};
use mamori_core::access::Role;
use mamori_core::clock::SystemClock;
use mamori_crypto::MasterKey;
use mamori_vault::{NewUser, Vault};
use std::process::ExitCode;
use std::sync::Arc;

/// `mamori init`: a new data directory (0700), a new master key file and a new audit signing
/// key file (0600 each, written and synced before the database depends on them) and the
/// first administrator with a one-time password.
pub async fn run(settings: &Settings, admin_login: &str, json: bool) -> anyhow::Result<ExitCode> {
    if settings.database_url.is_none() && settings.data_dir.join(DB_FILE).exists() {
        bail!("{} already holds a mamori database", settings.data_dir.display());
    }
    create_private_dir(&settings.data_dir)?;
    let key_path = settings.master_key_path();
    if key_path.exists() {
        bail!("the master key file {} already exists; refusing to overwrite it", key_path.display());
    }
    let signing_path = settings.signing_key_path();
    if signing_path.exists() {
        bail!("the audit signing key file {} already exists; refusing to overwrite it", signing_path.display());
    }
    let master = MasterKey::generate();
    write_key_file(&key_path, &master)?;
    let store = open_store(settings, true).await?;
    if !store.list_users().await?.is_empty() {
        bail!("the database already has accounts; refusing to initialise it again");
    }
    let signing = create_signing_key(&signing_path)?;
    let key_id = signing.verifying_key().key_id();
    let mut config = settings.vault_config();
    config.audit.signing_key = Some(Arc::new(signing));
    let vault = Vault::open(store, &master, Arc::new(SystemClock), config)
        .await
        .context("the database belongs to another master key")?;
    let new = NewUser {
        login: admin_login.to_owned(),
        display_name: "System administrator".into(),
        role: Role::SystemAdmin,
        password: None,
        must_change_password: true,
        ..Default::default()
    };
    let (user, password) = vault.create_user(&operator(), new).await?;
    let password = password.map(|p| p.expose().to_owned()).unwrap_or_default();
    if json {
        output::json(&serde_json::json!({
            "data_dir": settings.data_dir, "master_key_file": key_path,
            "audit_signing_key_file": signing_path, "audit_key_id": key_id,
            "admin": {"login": user.login, "one_time_password": password},
        }))?;
    } else {
        println!("Initialised {}", settings.data_dir.display());
        println!(
            "Master key file: {} (mode 0600 — back it up apart from the data; without it the data is lost)",
            key_path.display()
        );
        println!(
            "Audit signing key file: {} (mode 0600, key id {key_id}; `mamori audit pubkey` prints the public key)",
            signing_path.display()
        );
        println!("Administrator: {}  one-time password: {password}  (must be changed at first login)", user.login);
    }
    Ok(ExitCode::SUCCESS)
}
