//! One typed configuration: defaults → `mamori.toml` → `MAMORI_*` environment variables
//! (nested keys with `__`, e.g. `MAMORI_LOG__FORMAT=json`) → command-line flags. Secrets
//! never live in the file: `MAMORI_MASTER_KEY` / `MAMORI_MASTER_KEY_FILE` and
//! `MAMORI_DATABASE_URL_FILE` carry them.

use crate::cli::GlobalArgs;
use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use mamori_core::password_policy::{PasswordPolicy, PasswordPolicySettings};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const DEFAULT_TOML: &str = include_str!("../mamori.default.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub listen: String,
    pub insecure_http: bool,
    /// Reverse proxies (CIDRs) whose `X-Forwarded-For` names the caller. Only this file sets
    /// it: whoever could set it could choose their own source address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub max_body_bytes: usize,
    pub search_limit: usize,
    pub log: LogSettings,
    pub session: SessionSettings,
    pub auth: AuthSettings,
    pub audit: AuditConfig,
    pub authz: AuthzConfig,
    /// `[takeout]`: export download limits and bulk thresholds.
    pub takeout: mamori_vault::TakeoutSettings,
    pub tls: TlsSettings,
}

/// `[authz]`: how the policies in force are found and what they are told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzConfig {
    pub policy_refresh_seconds: u64,
    pub utc_offset_hours: i8,
    pub default_clearance: mamori_core::schema::Tier,
}

impl Default for AuthzConfig {
    fn default() -> Self {
        let d = mamori_vault::AuthzSettings::default();
        Self {
            policy_refresh_seconds: d.policy_refresh.as_secs(),
            utc_offset_hours: d.utc_offset.whole_hours(),
            default_clearance: d.default_clearance,
        }
    }
}

impl AuthzConfig {
    fn settings(&self) -> anyhow::Result<mamori_vault::AuthzSettings> {
        anyhow::ensure!(
            (1..=3600).contains(&self.policy_refresh_seconds),
            "authz.policy_refresh_seconds must be 1..=3600"
        );
        let utc_offset = time::UtcOffset::from_hms(self.utc_offset_hours, 0, 0)
            .ok()
            .filter(|_| (-12..=14).contains(&self.utc_offset_hours))
            .context("authz.utc_offset_hours must be -12..=14")?;
        Ok(mamori_vault::AuthzSettings {
            policy_refresh: std::time::Duration::from_secs(self.policy_refresh_seconds),
            utc_offset,
            default_clearance: self.default_clearance,
        })
    }
}

/// `[tls]`: HTTPS inside mamori (PEM files), and the CA of registered devices' certificates.
/// `mamori serve --tls-cert/--tls-key/--tls-client-ca` override it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Server certificate chain (PEM, the server's certificate first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM; readable by the owner only, like every key file of mamori).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// CA certificate(s) of device certificates; set: clients may present one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// The device CA's certificate revocation list(s) (PEM), read at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_crl_file: Option<PathBuf>,
}

/// `[auth]`: lockout, second factor, sessions, account lifecycle and the password policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub lock_after: u32,
    /// 0: locked until an administrator unlocks.
    pub lock_minutes: i64,
    pub mfa_roles: Vec<String>,
    pub trusted_networks: Vec<ipnet::IpNet>,
    pub max_sessions: u32,
    pub max_sessions_staff: u32,
    pub vendor_max_days: u32,
    /// 0: never disable dormant accounts.
    pub dormant_days: i64,
    /// Roles that may log in only over HTTPS with a verified device certificate
    /// (needs `tls.client_ca_file`).
    pub device_required_roles: Vec<String>,
    /// Login and TOTP-confirmation attempts per minute per source address (0: no limit)…
    pub login_attempts_per_minute: u32,
    /// … and how many may come at once.
    pub login_burst: u32,
    /// A preset and only the rules that differ from it (so that switching the preset in
    /// the file is not undone by the defaults' values of every rule).
    pub password: PasswordPolicySettings,
    /// When and from where each role may work (`[auth.access.<role>]`, see
    /// `mamori_core::access_window`); roles not listed are unrestricted.
    #[serde(default)]
    pub access: std::collections::BTreeMap<String, mamori_core::access_window::AccessWindow>,
    /// Local dates (`YYYY-MM-DD`) on which windows with `closed_on_holidays` are closed.
    #[serde(default)]
    pub holidays: Vec<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        let d = mamori_vault::AuthPolicy::default();
        let throttle = mamori_server::throttle::ThrottleConfig::default();
        Self {
            lock_after: d.lock_after,
            lock_minutes: d.lock_for.map_or(0, |l| l.whole_minutes()),
            mfa_roles: d.mfa_roles.iter().map(|r| r.to_string()).collect(),
            trusted_networks: d.trusted_networks,
            max_sessions: d.max_sessions,
            max_sessions_staff: d.max_sessions_staff,
            vendor_max_days: d.vendor_max_days,
            dormant_days: d.dormant_after.map_or(0, |l| l.whole_days()),
            device_required_roles: d.device_required_roles.iter().map(|r| r.to_string()).collect(),
            login_attempts_per_minute: throttle.per_minute,
            login_burst: throttle.burst,
            password: PasswordPolicySettings::default(),
            access: Default::default(),
            holidays: Vec::new(),
        }
    }
}

impl AuthSettings {
    fn policy(&self) -> anyhow::Result<mamori_vault::AuthPolicy> {
        anyhow::ensure!((1..=100).contains(&self.lock_after), "auth.lock_after must be 1..=100");
        anyhow::ensure!((0..=7 * 24 * 60).contains(&self.lock_minutes), "auth.lock_minutes must be 0..=10080");
        anyhow::ensure!((1..=365).contains(&self.vendor_max_days), "auth.vendor_max_days must be 1..=365");
        anyhow::ensure!((0..=3650).contains(&self.dormant_days), "auth.dormant_days must be 0..=3650");
        anyhow::ensure!(self.max_sessions >= 1 && self.max_sessions_staff >= 1, "auth.max_sessions* must be ≥ 1");
        let password = PasswordPolicy::try_from(self.password.clone()).context("auth.password")?;
        anyhow::ensure!(self.login_attempts_per_minute <= 10_000, "auth.login_attempts_per_minute must be 0..=10000");
        anyhow::ensure!((1..=1000).contains(&self.login_burst), "auth.login_burst must be 1..=1000");
        let roles = |list: &[String], key: &str| {
            list.iter()
                .map(|r| r.parse().map_err(|e: String| anyhow::anyhow!("auth.{key}: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()
        };
        let mfa_roles = roles(&self.mfa_roles, "mfa_roles")?;
        let device_required_roles = roles(&self.device_required_roles, "device_required_roles")?;
        let access_windows = self
            .access
            .iter()
            .map(|(role, window)| {
                Ok((role.parse().map_err(|e: String| anyhow::anyhow!("auth.access.{role}: {e}"))?, window.clone()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let date = time::macros::format_description!("[year]-[month]-[day]");
        let holidays = self
            .holidays
            .iter()
            .map(|d| {
                time::Date::parse(d, date).with_context(|| format!("auth.holidays: `{d}` is not a YYYY-MM-DD date"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(mamori_vault::AuthPolicy {
            password,
            lock_after: self.lock_after,
            lock_for: (self.lock_minutes > 0).then(|| time::Duration::minutes(self.lock_minutes)),
            mfa_roles,
            trusted_networks: self.trusted_networks.clone(),
            max_sessions: self.max_sessions,
            max_sessions_staff: self.max_sessions_staff,
            vendor_max_days: self.vendor_max_days,
            dormant_after: (self.dormant_days > 0).then(|| time::Duration::days(self.dormant_days)),
            device_required_roles,
            access_windows,
            holidays,
        })
    }

    /// The server's per-source throttle of authentication attempts.
    pub fn throttle(&self) -> mamori_server::throttle::ThrottleConfig {
        mamori_server::throttle::ThrottleConfig {
            per_minute: self.login_attempts_per_minute,
            burst: self.login_burst,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    pub idle_minutes: i64,
    pub lifetime_hours: i64,
}

/// `[audit]`: signed checkpoints, the external checkpoint file and retention.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The ECDSA P-256 checkpoint signing key (mode 0600); default `<data_dir>/audit-signing.key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<PathBuf>,
    /// The external append-only checkpoint file. Only this file sets it: no environment
    /// variable, flag or API call can point it elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_file: Option<PathBuf>,
    pub checkpoint_every_events: u64,
    pub checkpoint_every_seconds: u64,
    /// Events older than this may be pruned (`mamori audit prune`); at least 90.
    pub retention_days: u32,
    /// `[audit.siem]`: forwarding to a SIEM. Like the checkpoint file, only this file sets
    /// it; `mamori serve` alone forwards.
    pub siem: mamori_vault::SiemSettings,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            signing_key_file: None,
            checkpoint_file: None,
            checkpoint_every_events: 1000,
            checkpoint_every_seconds: 60,
            retention_days: 365,
            siem: mamori_vault::SiemSettings::default(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./mamori-data"),
            database_url: None,
            master_key_file: None,
            listen: "127.0.0.1:8080".into(),
            insecure_http: false,
            trusted_proxies: Vec::new(),
            max_body_bytes: 1024 * 1024,
            search_limit: 100,
            log: LogSettings { format: "text".into(), level: "info".into() },
            session: SessionSettings { idle_minutes: 15, lifetime_hours: 8 },
            auth: AuthSettings::default(),
            audit: AuditConfig::default(),
            authz: AuthzConfig::default(),
            takeout: mamori_vault::TakeoutSettings::default(),
            tls: TlsSettings::default(),
        }
    }
}

/// The `MAMORI_*` variables that are settings. Others under the prefix (secrets such as
/// `MAMORI_MASTER_KEY`, `MAMORI_PASSWORD`, test knobs) are not configuration and are ignored
/// here rather than rejected.
const ENV_SETTINGS: &[&str] = &[
    "data_dir",
    "database_url",
    "listen",
    "insecure_http",
    "max_body_bytes",
    "search_limit",
    "log__format",
    "log__level",
    "session__idle_minutes",
    "session__lifetime_hours",
    "auth__lock_after",
    "auth__lock_minutes",
    "auth__max_sessions",
    "auth__max_sessions_staff",
    "auth__dormant_days",
    "auth__login_attempts_per_minute",
    "auth__login_burst",
    "tls__cert_file",
    "tls__key_file",
    "tls__client_ca_file",
    "tls__client_crl_file",
    // Not the audit file paths: the signing key, the checkpoint file and the SIEM sinks
    // come from mamori.toml.
    "audit__checkpoint_every_events",
    "audit__checkpoint_every_seconds",
    "audit__retention_days",
    "takeout__download_window_hours",
    "takeout__max_downloads",
    "takeout__warn_rows_per_request",
    "takeout__hard_rows_per_request",
    "takeout__warn_rows_per_day",
    "takeout__hard_rows_per_day",
];

impl Settings {
    pub fn load(args: &GlobalArgs) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        let file = args.config.clone().or_else(|| {
            let local = PathBuf::from("mamori.toml");
            local.exists().then_some(local)
        });
        if let Some(file) = &file {
            anyhow::ensure!(file.exists(), "configuration file {} does not exist", file.display());
            figment = figment.merge(Toml::file(file));
        }
        let env =
            Env::prefixed("MAMORI_").filter(|key| ENV_SETTINGS.iter().any(|s| key.as_str().eq_ignore_ascii_case(s)));
        figment = figment.merge(env.split("__"));
        let mut settings: Settings = figment.extract().context("invalid configuration")?;
        if let Ok(path) = std::env::var("MAMORI_DATABASE_URL_FILE") {
            let url =
                std::fs::read_to_string(&path).with_context(|| format!("reading MAMORI_DATABASE_URL_FILE {path}"))?;
            settings.database_url = Some(url.trim().to_owned());
        }
        if let Some(dir) = &args.data_dir {
            settings.data_dir = dir.clone();
        }
        if let Some(url) = &args.database_url {
            settings.database_url = Some(url.clone());
        }
        if let Some(file) = &args.master_key_file {
            settings.master_key_file = Some(file.clone());
        }
        anyhow::ensure!(matches!(settings.log.format.as_str(), "text" | "json"), "log.format must be `text` or `json`");
        anyhow::ensure!(
            (1..=24 * 60).contains(&settings.session.idle_minutes),
            "session.idle_minutes must be 1..=1440"
        );
        anyhow::ensure!((1..=72).contains(&settings.session.lifetime_hours), "session.lifetime_hours must be 1..=72");
        anyhow::ensure!(settings.max_body_bytes >= 1024, "max_body_bytes must be at least 1024");
        settings.auth.policy()?;
        settings.authz.settings()?;
        settings.takeout.validate().map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            settings.audit.retention_days >= mamori_vault::MIN_RETENTION_DAYS,
            "audit.retention_days must be at least {} (audit logs are kept at least three months)",
            mamori_vault::MIN_RETENTION_DAYS
        );
        anyhow::ensure!(
            (1..=1_000_000).contains(&settings.audit.checkpoint_every_events),
            "audit.checkpoint_every_events must be 1..=1000000"
        );
        anyhow::ensure!(
            (1..=86_400).contains(&settings.audit.checkpoint_every_seconds),
            "audit.checkpoint_every_seconds must be 1..=86400"
        );
        settings.audit.siem.validate().map_err(anyhow::Error::msg)?;
        Ok(settings)
    }

    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file.clone().unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// The TLS files `serve` uses, checked for consistency: `None` means plain HTTP.
    pub fn tls_files(&self) -> anyhow::Result<Option<mamori_server::tls::TlsFiles>> {
        let t = &self.tls;
        let needs_ca = !self.auth.device_required_roles.is_empty();
        match (&t.cert_file, &t.key_file) {
            (Some(cert), Some(key)) => {
                anyhow::ensure!(
                    !needs_ca || t.client_ca_file.is_some(),
                    "auth.device_required_roles needs tls.client_ca_file (--tls-client-ca): those roles could never log in"
                );
                Ok(Some(mamori_server::tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: t.client_ca_file.clone(),
                    client_crl: t.client_crl_file.clone(),
                }))
            }
            (None, None) => {
                anyhow::ensure!(
                    t.client_ca_file.is_none() && t.client_crl_file.is_none(),
                    "tls.client_ca_file and tls.client_crl_file need tls.cert_file and tls.key_file (--tls-cert, --tls-key)"
                );
                anyhow::ensure!(
                    !needs_ca,
                    "auth.device_required_roles needs HTTPS with a device CA (tls.cert_file, tls.key_file, tls.client_ca_file)"
                );
                Ok(None)
            }
            _ => anyhow::bail!("tls.cert_file and tls.key_file (--tls-cert, --tls-key) go together"),
        }
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.audit.signing_key_file.clone().unwrap_or_else(|| self.data_dir.join("audit-signing.key"))
    }

    /// The vault's configuration, without the audit signing key (which `open` loads).
    pub fn vault_config(&self) -> mamori_vault::VaultConfig {
        mamori_vault::VaultConfig {
            session_idle: time::Duration::minutes(self.session.idle_minutes),
            session_lifetime: time::Duration::hours(self.session.lifetime_hours),
            search_limit: self.search_limit,
            // Checked when the settings were loaded.
            auth: self.auth.policy().unwrap_or_default(),
            audit: mamori_vault::AuditSettings {
                signing_key: None,
                checkpoint_every_events: self.audit.checkpoint_every_events,
                checkpoint_every: std::time::Duration::from_secs(self.audit.checkpoint_every_seconds),
                checkpoint_file: self.audit.checkpoint_file.clone(),
                // Only `mamori serve` forwards (`open::open_server_vault`): short-lived
                // commands would race the server for the sinks' cursors.
                siem: mamori_vault::SiemSettings::default(),
            },
            // Checked when the settings were loaded.
            authz: self.authz.settings().unwrap_or_default(),
            // Checked when the settings were loaded.
            takeout: self.takeout.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type
    fn environment_overrides_and_unrelated_variables_are_ignored() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("MAMORI_LOG__FORMAT", "json");
            jail.set_env("MAMORI_SESSION__IDLE_MINUTES", "5");
            jail.set_env("MAMORI_NEW_PASSWORD", "not a setting");
            let s = Settings::load(&GlobalArgs::default()).unwrap();
            assert_eq!((s.log.format.as_str(), s.session.idle_minutes), ("json", 5));
            jail.set_env("MAMORI_SESSION__IDLE_MINUTES", "0");
            assert!(Settings::load(&GlobalArgs::default()).is_err());
            jail.set_env("MAMORI_SESSION__IDLE_MINUTES", "5");
            jail.set_env("MAMORI_AUDIT__RETENTION_DAYS", "30");
            let err = Settings::load(&GlobalArgs::default()).unwrap_err();
            assert!(err.to_string().contains("at least 90"), "{err}");
            jail.set_env("MAMORI_AUDIT__RETENTION_DAYS", "400");
            // The checkpoint file is set in mamori.toml only.
            jail.set_env("MAMORI_AUDIT__CHECKPOINT_FILE", "/tmp/elsewhere.jsonl");
            let s = Settings::load(&GlobalArgs::default()).unwrap();
            assert_eq!((s.audit.retention_days, s.audit.checkpoint_file), (400, None));
            jail.create_file("mamori.toml", "[audit]\ncheckpoint_file = \"/var/log/mamori/checkpoints.jsonl\"\n")?;
            let s = Settings::load(&GlobalArgs::default()).unwrap();
            assert_eq!(s.audit.checkpoint_file, Some(PathBuf::from("/var/log/mamori/checkpoints.jsonl")));
            // SIEM sinks likewise: the environment cannot add or redirect one.
            jail.set_env("MAMORI_AUDIT__SIEM__FILE__PATH", "/tmp/elsewhere.jsonl");
            jail.set_env("MAMORI_AUDIT__SIEM__SYSLOG__ADDRESS", "attacker.example:514");
            let s = Settings::load(&GlobalArgs::default()).unwrap();
            assert_eq!((s.audit.siem.file, s.audit.siem.syslog), (None, None));
            jail.create_file(
                "mamori.toml",
                "[audit.siem.file]\npath = \"/var/log/mamori/audit.jsonl\"\nmax_files = 0\n",
            )?;
            assert!(Settings::load(&GlobalArgs::default()).unwrap_err().to_string().contains("max_files"));
            jail.create_file(
                "mamori.toml",
                "[audit.siem.file]\npath = \"/var/log/mamori/audit.jsonl\"\n[audit.siem.syslog]\naddress = \"siem.internal:601\"\n",
            )?;
            let s = Settings::load(&GlobalArgs::default()).unwrap();
            assert_eq!(s.audit.siem.sink_names(), ["file", "syslog"]);
            assert_eq!(s.audit.siem.file.as_ref().unwrap().max_files, 10);
            assert_eq!(s.audit.siem.syslog.as_ref().unwrap().facility, 13);
            jail.create_file("mamori.toml", "[audit]\ncheckpoint_file = \"/var/log/mamori/checkpoints.jsonl\"\n")?;
            // Take-out thresholds: a warning above its hard limit, or no download at all, is refused.
            jail.set_env("MAMORI_TAKEOUT__WARN_ROWS_PER_DAY", "50000");
            assert!(Settings::load(&GlobalArgs::default()).unwrap_err().to_string().contains("warn_*"));
            jail.set_env("MAMORI_TAKEOUT__WARN_ROWS_PER_DAY", "500");
            jail.set_env("MAMORI_TAKEOUT__MAX_DOWNLOADS", "0");
            assert!(Settings::load(&GlobalArgs::default()).is_err());
            jail.set_env("MAMORI_TAKEOUT__MAX_DOWNLOADS", "1");
            let s = Settings::load(&GlobalArgs::default()).unwrap();
            assert_eq!((s.takeout.warn_rows_per_day, s.takeout.max_downloads, s.takeout.max_due_days), (500, 1, 90));
            Ok(())
        });
    }

    #[test]
    fn tls_throttle_and_device_settings_are_checked() {
        let mut s = Settings::default();
        assert!(s.tls_files().unwrap().is_none(), "plain HTTP by default");
        s.auth.device_required_roles = vec!["system_admin".into()];
        assert!(s.tls_files().is_err(), "device roles without HTTPS");
        s.tls.cert_file = Some("server.crt".into());
        assert!(s.tls_files().is_err(), "a certificate without its key");
        s.tls.key_file = Some("server.key".into());
        assert!(s.tls_files().is_err(), "device roles without a device CA");
        s.tls.client_ca_file = Some("devices.crt".into());
        let files = s.tls_files().unwrap().unwrap();
        assert_eq!(files.client_ca, Some(PathBuf::from("devices.crt")));
        assert_eq!(s.auth.policy().unwrap().device_required_roles, [mamori_core::access::Role::SystemAdmin]);
        s.auth.device_required_roles = vec!["root".into()];
        assert!(s.auth.policy().is_err(), "unknown role slug");
        s.auth = AuthSettings { login_burst: 0, ..AuthSettings::default() };
        assert!(s.auth.policy().is_err());
        s.auth = AuthSettings { login_attempts_per_minute: 0, ..AuthSettings::default() };
        assert_eq!(s.auth.throttle().per_minute, 0, "0 switches the throttle off");
        s.tls = TlsSettings { client_ca_file: Some("devices.crt".into()), ..TlsSettings::default() };
        assert!(s.tls_files().is_err(), "a device CA without HTTPS");
    }

    #[test]
    fn default_file_matches_defaults() {
        let parsed: Settings = Figment::from(Toml::string(DEFAULT_TOML)).extract().unwrap();
        let defaults = Settings::default();
        assert_eq!(toml::to_string(&parsed).unwrap(), toml::to_string(&defaults).unwrap());
    }
}
