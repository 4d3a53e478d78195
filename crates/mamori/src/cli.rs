//! The command-line interface. Commands that only administer (init, collections, keys,
//! users) act as the local operator; commands that touch record content (import, record,
//! search, subject erase) act as a user, who logs in with `--login` and `MAMORI_PASSWORD` or
//! a prompt — whoever runs the CLI gets no more rights than their account has.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "mamori", version, about = "Encrypted personal-data vault (守り)")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Data directory (SQLite database and, by default, the master key file).
    #[arg(long, global = true, env = "MAMORI_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://…); when set, records live there instead of SQLite.
    #[arg(long, global = true, env = "MAMORI_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Master key file (default: DATA_DIR/master.key). MAMORI_MASTER_KEY (base64) overrides it.
    #[arg(long, global = true, env = "MAMORI_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Configuration file (default: ./mamori.toml when it exists).
    #[arg(long, global = true, env = "MAMORI_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct LoginArgs {
    /// Account to act as; the password comes from MAMORI_PASSWORD or a prompt.
    #[arg(long, env = "MAMORI_LOGIN")]
    pub login: String,
}

/// How much of a record to show, for the commands that show records.
#[derive(Args, Debug, Clone)]
pub struct ViewArgs {
    /// Show unmasked values (needs the full-view right).
    #[arg(long)]
    pub full: bool,
    /// Purpose of this access (利用目的), recorded in the audit log; one of the collection's
    /// `access_purposes` where it declares them.
    #[arg(long)]
    pub purpose: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a data directory, its master key and the first administrator.
    Init {
        #[arg(long, default_value = "admin")]
        admin_login: String,
    },
    /// Serve the HTTP API (and later the web UI).
    Serve {
        /// Address to listen on; port 0 picks a free port (the real URL is printed).
        #[arg(long)]
        listen: Option<String>,
        /// Allow plain HTTP on a non-loopback address (only behind a TLS-terminating proxy).
        #[arg(long)]
        insecure_http: bool,
    },
    /// Start a throwaway instance with synthetic Japanese people and users of every role.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// How many synthetic people to import.
        #[arg(long, default_value_t = 10_000)]
        people: usize,
    },
    /// Manage collections.
    #[command(subcommand)]
    Collection(CollectionCommand),
    /// Import a CSV file into a collection (all rows or none).
    Import {
        #[arg(long)]
        collection: String,
        file: PathBuf,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// Read records.
    #[command(subcommand)]
    Record(RecordCommand),
    /// Exact-match search on a searchable field.
    Search {
        #[arg(long)]
        collection: String,
        #[arg(long)]
        field: String,
        /// The value to look for. Better left out: it is then read from stdin (or a hidden
        /// prompt), so it does not show in `ps` or the shell history.
        value: Option<String>,
        #[command(flatten)]
        view: ViewArgs,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// Key management.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Data subjects (本人).
    #[command(subcommand)]
    Subject(SubjectCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// User accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Change your own password (required after `init` or a reset, before anything else).
    /// Current and new password come from MAMORI_PASSWORD / MAMORI_NEW_PASSWORD or prompts.
    Passwd {
        #[command(flatten)]
        user: LoginArgs,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum CollectionCommand {
    /// Create a collection from a schema file (TOML or JSON).
    Create {
        #[arg(long)]
        schema: PathBuf,
    },
    /// Add a new schema version to an existing collection.
    Update {
        #[arg(long)]
        schema: PathBuf,
    },
    /// List collections.
    List,
}

#[derive(Subcommand, Debug)]
pub enum RecordCommand {
    /// Show one record.
    Get {
        #[arg(long)]
        collection: String,
        id: String,
        #[command(flatten)]
        view: ViewArgs,
        #[command(flatten)]
        user: LoginArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Re-wrap every data key under new key-encryption keys (data is not re-encrypted).
    Rotate {
        /// Also replace the master key (the key file is rewritten). Stop running servers
        /// first: they hold the old master key in memory until restarted.
        #[arg(long)]
        master: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SubjectCommand {
    /// Erase a data subject everywhere (crypto-shredding) and print the erasure certificate.
    Erase {
        subject_id: String,
        #[command(flatten)]
        user: LoginArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify the audit hash chain; exits non-zero on any tampering, with the first bad seq.
    Verify,
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create an account with a one-time password.
    Create {
        #[arg(long)]
        login: String,
        #[arg(long)]
        name: String,
        /// staff, manager, auditor, privacy_officer or system_admin
        #[arg(long)]
        role: String,
    },
    List,
    Disable {
        login: String,
    },
    Enable {
        login: String,
    },
    /// Activate an account (privacy officers): prints its new one-time password.
    Activate {
        /// The account to activate.
        account: String,
        #[command(flatten)]
        user: LoginArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print a commented default mamori.toml.
    Default,
}
