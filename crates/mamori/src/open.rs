//! Opening an installation: the master key (from the environment or a 0600 key file), the
//! audit signing key (its own 0600 file), the store chosen at run time from the
//! configuration, and the vault on top.

use crate::settings::Settings;
use anyhow::{Context, bail};
use mamori_core::clock::SystemClock;
use mamori_crypto::{AuditSigningKey, MasterKey, SecretString};
use mamori_store::Store;
use mamori_vault::Vault;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

pub const DB_FILE: &str = "mamori.db";

/// Reads the master key: `MAMORI_MASTER_KEY` (base64) first, else the key file, which must
/// not be readable by group or others (like ssh refuses a loose private key).
pub fn load_master_key(settings: &Settings) -> anyhow::Result<MasterKey> {
    if let Ok(value) = std::env::var("MAMORI_MASTER_KEY") {
        let value = SecretString::new(value);
        return MasterKey::parse(value.expose()).context("MAMORI_MASTER_KEY");
    }
    let path = settings.master_key_path();
    check_private(&path, "master key")?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the master key file {} (run `mamori init` first?)", path.display()))?;
    let text = SecretString::new(text);
    MasterKey::parse(text.expose()).with_context(|| format!("master key file {}", path.display()))
}

#[cfg(unix)]
pub(crate) fn check_private(path: &Path, what: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "the {what} file {} has mode {mode:o}; it must be readable by its owner only (chmod 600)",
                path.display()
            );
        }
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn check_private(_: &Path, _: &str) -> anyhow::Result<()> {
    Ok(())
}

/// Writes a key file that did not exist, readable by its owner only, and syncs it to disk
/// before returning, so a key is never lost to a crash after the data depends on it.
pub fn write_key_file(path: &Path, key: &MasterKey) -> anyhow::Result<()> {
    write_private_file(path, key.to_file_text().as_bytes())
}

/// Reads the audit signing key file, if there is one, refusing a file that others can read.
pub fn load_signing_key(settings: &Settings) -> anyhow::Result<Option<AuditSigningKey>> {
    let path = settings.signing_key_path();
    if !path.exists() {
        return Ok(None);
    }
    check_private(&path, "audit signing key")?;
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(&path).with_context(|| format!("cannot read the audit signing key file {}", path.display()))?,
    );
    let key = AuditSigningKey::parse(&bytes).with_context(|| format!("audit signing key file {}", path.display()))?;
    Ok(Some(key))
}

/// Creates a new audit signing key file (PKCS#8 PEM, 0600, synced).
pub fn create_signing_key(path: &Path) -> anyhow::Result<AuditSigningKey> {
    let key = AuditSigningKey::generate();
    write_private_file(path, key.to_pkcs8_pem()?.as_bytes())?;
    Ok(key)
}

fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("creating key file {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

pub fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

pub async fn open_store(settings: &Settings, create: bool) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &settings.database_url {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!("database_url must start with postgres:// (SQLite uses --data-dir)");
        }
        let store = mamori_store_postgres::PostgresStore::connect(url).await.context("connecting to PostgreSQL")?;
        return Ok(Arc::new(store));
    }
    let db = settings.data_dir.join(DB_FILE);
    if !create && !db.exists() {
        bail!(
            "no mamori data directory at {} (run `mamori init` first, or pass --data-dir)",
            settings.data_dir.display()
        );
    }
    let store = mamori_store_sqlite::SqliteStore::open(db).await.context("opening the SQLite database")?;
    Ok(Arc::new(store))
}

/// Opens the vault with the audit signing key, which every command that records events needs
/// to sign checkpoints. (`audit verify` and `audit pubkey` open the store only.)
pub async fn open_vault(settings: &Settings) -> anyhow::Result<Arc<Vault>> {
    open_vault_with(settings, mamori_vault::SiemSettings::default()).await
}

/// The server's vault: the same, and it forwards the audit trail to the configured SIEM
/// sinks.
pub async fn open_server_vault(settings: &Settings) -> anyhow::Result<Arc<Vault>> {
    open_vault_with(settings, settings.audit.siem.clone()).await
}

async fn open_vault_with(settings: &Settings, siem: mamori_vault::SiemSettings) -> anyhow::Result<Arc<Vault>> {
    let master = load_master_key(settings)?;
    let store = open_store(settings, false).await?;
    let key = match load_signing_key(settings)? {
        Some(key) => key,
        None => {
            let path = settings.signing_key_path();
            if store.get_meta(mamori_vault::AUDIT_PUBLIC_KEY).await?.is_some() {
                bail!(
                    "the audit signing key file {} is missing, so checkpoints cannot be signed; restore it from \
                     the backup (or set [audit] signing_key_file)",
                    path.display()
                );
            }
            // A data directory from before signed checkpoints: give it its key now.
            let key = create_signing_key(&path)?;
            tracing::warn!(file = %path.display(), "created the audit signing key; back it up with the master key");
            key
        }
    };
    let mut config = settings.vault_config();
    config.audit.siem = siem;
    config.audit.signing_key = Some(Arc::new(key));
    let vault = Vault::open(store, &master, Arc::new(SystemClock), config).await?;
    if std::env::var_os("MAMORI_MASTER_KEY").is_none() {
        vault.set_master_key_source(master_key_candidates(settings.master_key_path()));
    }
    Ok(vault)
}

/// Where a running process finds the master key after another one rotated it: the installed
/// file, or — in the moment between the database switching and the file being renamed into
/// place by `mamori keys rotate --master` — the staged `.new` file. Unreadable or loose
/// files are skipped, as at start-up.
fn master_key_candidates(path: std::path::PathBuf) -> mamori_vault::MasterKeySource {
    Box::new(move || {
        [path.clone(), staged_key_path(&path)]
            .iter()
            .filter(|p| check_private(p, "master key").is_ok())
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter_map(|text| MasterKey::parse(SecretString::new(text).expose()).ok())
            .collect()
    })
}

/// The new master key file `keys rotate --master` writes (and syncs) before the switch.
pub fn staged_key_path(path: &Path) -> std::path::PathBuf {
    path.with_extension("key.new")
}
