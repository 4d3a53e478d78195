//! The command-line interface. Commands that only administer (init, collections, keys,
//! users) act as the local operator; commands that touch record content (import, record,
//! search, subject erase) act as a user, who logs in with `--login` and `MAMORI_PASSWORD` or
//! a prompt (plus `MAMORI_TOTP` or a prompt where a second factor applies) — whoever runs the
//! CLI gets no more rights than their account has. Policy commands act as the operator unless
//! `--login` is given; decisions (approve, reject) need a login, since the vault never lets
//! the operator decide (four-eyes).

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

/// For commands the local operator may run too: `--login` acts as that account instead.
#[derive(Args, Debug, Clone)]
pub struct ActorArgs {
    /// Act as this account instead of the local operator (password: MAMORI_PASSWORD or a
    /// prompt; one-time code: MAMORI_TOTP or a prompt). Approving and rejecting need it.
    #[arg(long, env = "MAMORI_LOGIN")]
    pub login: Option<String>,
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
        /// Serve HTTPS with this certificate chain (PEM); needs --tls-key. Overrides `tls.cert_file`.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// Private key of the certificate (PEM, mode 0600). Overrides `tls.key_file`.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Ask clients for a device certificate issued by this CA (PEM). Overrides `tls.client_ca_file`.
        #[arg(long, value_name = "FILE")]
        tls_client_ca: Option<PathBuf>,
        /// Refuse device certificates revoked in this CRL (PEM, read at start). Overrides
        /// `tls.client_crl_file`.
        #[arg(long, value_name = "FILE")]
        tls_client_crl: Option<PathBuf>,
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
    /// Your own second factor (TOTP).
    #[command(subcommand)]
    Mfa(MfaCommand),
    /// Authorization policies (Cedar): versions, proposals, dry runs and four-eyes approval.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Time-boxed emergency read access beyond one's policies, approved by a second person.
    #[command(subcommand)]
    BreakGlass(BreakGlassCommand),
    /// Periodic access review: every account's effective rights; confirm or revoke each.
    #[command(subcommand)]
    Access(AccessCommand),
    /// Take-out (持ち出し): export requests, approval, protected download, return and
    /// disposal, and the take-out ledger.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Secret-split exports (秘密分散): restore a file from its share files.
    #[command(subcommand)]
    Shares(SharesCommand),
    /// Copy a SQLite data directory into an empty PostgreSQL database, byte for byte (nothing
    /// is decrypted: the master key stays the same), then verify the copy.
    Migrate {
        /// The SQLite data directory to copy; it is only read. Its master key file and audit
        /// signing key file are used unless configured elsewhere.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The PostgreSQL database to fill (postgres://…); every mamori table in it must be
        /// empty.
        #[arg(long, value_name = "URL", env = "MAMORI_MIGRATE_TO", hide_env_values = true)]
        to: String,
    },
    /// Health of the installation: audit head, checkpoints, SIEM forwarding, database.
    /// Exits 0 when healthy, 4 when something needs attention, 1 when it cannot tell.
    Status,
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
    /// Verify the audit trail: hash chain, sequence, signed checkpoints and the external
    /// checkpoint file. Exits 3 on any tampering, with the first bad seq and its kind. Needs
    /// no master key.
    Verify {
        /// Check this checkpoint file (e.g. a copy from the log host) instead of the
        /// configured `[audit] checkpoint_file`.
        #[arg(long)]
        checkpoint_file: Option<PathBuf>,
        /// Trust this public key (PEM, from `mamori audit pubkey`, kept apart from the
        /// data) instead of the copy stored in the database.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Print the public key that verifies the checkpoints (PEM, SubjectPublicKeyInfo).
    Pubkey,
    /// Sign a checkpoint of the audit trail now (e.g. before a backup).
    Checkpoint,
    /// Search the audit trail (auditors and privacy officers; the search is itself audited).
    Query(Box<AuditQueryArgs>),
    /// Record that administrator operations up to a sequence number were reviewed.
    Review {
        /// The last sequence number reviewed.
        #[arg(long)]
        up_to: u64,
        /// What was checked and found (ids only, no personal data).
        #[arg(long)]
        note: String,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// Delete events older than `[audit] retention_days`, up to a signed checkpoint, leaving a
    /// signed anchor so that the rest still verifies.
    Prune {
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct AuditQueryArgs {
    /// From this time (RFC 3339, or YYYY-MM-DD meaning 00:00 UTC), inclusive.
    #[arg(long)]
    pub from: Option<String>,
    /// Until this time (same forms), exclusive.
    #[arg(long)]
    pub until: Option<String>,
    /// The actor as recorded (user:<uuid>, cli:<name>, anonymous).
    #[arg(long, conflicts_with = "actor_login")]
    pub actor: Option<String>,
    /// The actor by login.
    #[arg(long)]
    pub actor_login: Option<String>,
    /// Who accessed this data subject.
    #[arg(long)]
    pub subject: Option<String>,
    #[arg(long)]
    pub collection: Option<String>,
    #[arg(long)]
    pub record: Option<String>,
    /// Actions starting with this (e.g. `record.`, `auth.login`).
    #[arg(long)]
    pub action: Option<String>,
    /// success, denied or failure.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only failed logins.
    #[arg(long)]
    pub failed_logins: bool,
    /// Only administrator operations (accounts, collections, keys, pruning), with the latest
    /// review mark.
    #[arg(long)]
    pub admin_ops: bool,
    /// Start after this sequence number.
    #[arg(long, default_value_t = 0)]
    pub after_seq: u64,
    /// Events per page (at most 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Follow the pages to the end (each page is its own audited query).
    #[arg(long)]
    pub all: bool,
    /// table, csv or jsonl (--json means jsonl).
    #[arg(long, default_value = "table")]
    pub format: String,
    #[command(flatten)]
    pub user: LoginArgs,
}

/// Account attributes that policies decide on, shared by `users create` and `users update`.
#[derive(Args, Debug, Default)]
pub struct ProfileArgs {
    /// Department code (need-to-know: staff and managers see their own department's records).
    #[arg(long)]
    pub department: Option<String>,
    #[arg(long)]
    pub title: Option<String>,
    /// Highest tier cleared for: public, confidential, secret, top_secret.
    #[arg(long)]
    pub clearance: Option<String>,
    /// Security training valid through this date (YYYY-MM-DD, local time).
    #[arg(long, value_name = "DATE")]
    pub training_until: Option<String>,
    /// The confidentiality pledge (誓約書) is signed (recorded as of now).
    #[arg(long)]
    pub pledge_signed: bool,
}

/// An account's own access window (001-20-tech-2-5, 001-20-tech-1-6). The flags given are the
/// whole window, replacing the role's `[auth.access]` window (not merged with it).
#[derive(Args, Debug, Default)]
pub struct WindowArgs {
    /// Allowed local hours, e.g. 08:00-20:00 (22:00-06:00 runs past midnight).
    #[arg(long, value_name = "HH:MM-HH:MM")]
    pub hours: Option<String>,
    /// Allowed days, e.g. mon-fri or mon,wed,fri.
    #[arg(long)]
    pub days: Option<String>,
    /// Closed on the holidays listed in `[auth] holidays`.
    #[arg(long)]
    pub closed_on_holidays: bool,
    /// Allowed source networks, comma-separated, e.g. 10.0.0.0/8,192.168.1.0/24.
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    pub networks: Vec<ipnet::IpNet>,
    /// Let the account work at any time from any network, whatever its role's window.
    #[arg(long, conflicts_with_all = ["hours", "days", "closed_on_holidays", "networks", "role_window"])]
    pub any_time: bool,
    /// Return the account to its role's window.
    #[arg(long, conflicts_with_all = ["hours", "days", "closed_on_holidays", "networks"])]
    pub role_window: bool,
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
        #[command(flatten)]
        profile: ProfileArgs,
    },
    /// Change an account's details, clearance, training and pledge (only what is given).
    Update {
        login: String,
        #[arg(long)]
        name: Option<String>,
        /// staff, manager, auditor, privacy_officer or system_admin (ends its sessions)
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        profile: ProfileArgs,
        /// Withdraw the confidentiality pledge.
        #[arg(long, conflicts_with = "pledge_signed")]
        pledge_withdrawn: bool,
        #[command(flatten)]
        window: WindowArgs,
    },
    /// The access roster (004-II-2-5): every account with name, department, title, role, status,
    /// MFA, clearance, training, pledge, granted on, last login and last review.
    #[command(visible_alias = "roster")]
    List {
        /// table, csv or json (--json means json).
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Reconcile the accounts with an HR roster (CSV with a header: `login`, `name`, and
    /// optionally `department`, `title`, `role`, `status` = active/在職, leave/休職, left/退職).
    /// Shows the changes; `--apply` makes them. Accounts missing from the file are disabled
    /// (not vendor accounts); disabled accounts are never re-enabled by it.
    Sync {
        file: PathBuf,
        #[arg(long)]
        apply: bool,
    },
    Disable {
        login: String,
    },
    /// Lift a lockout after repeated failed logins.
    Unlock {
        login: String,
    },
    /// Remove an account's second factor (lost device); it enrols again at its next login.
    ResetMfa {
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
pub enum MfaCommand {
    /// Enrol an authenticator app: prints a new secret and otpauth:// URI, reads the first
    /// code from stdin (or a hidden prompt), then prints one-time recovery codes. Works from
    /// the setup session of an account that must use a second factor.
    Enrol {
        #[command(flatten)]
        user: LoginArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Every policy version: status, the one in force (*), who proposed and decided it.
    List {
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// Print a version's Cedar text to stdout (the version in force by default).
    Show {
        #[arg(long)]
        version: Option<u64>,
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// Propose the policies in a Cedar file as a new version. It must compile (every policy
    /// with a unique @id) and takes effect only when another person approves it.
    Propose {
        file: PathBuf,
        /// Why the change is made (1–500 characters; ids and rules, no personal data).
        #[arg(long)]
        summary: String,
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// Who would gain or lose which right on a collection under a version (nothing changes).
    DryRun {
        version: u64,
        #[arg(long)]
        collection: String,
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// Put a proposed version into force: a logged-in account other than the proposer.
    Approve {
        version: u64,
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// Reject a proposed version: a logged-in account other than the proposer.
    Reject {
        version: u64,
        #[command(flatten)]
        actor: ActorArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccessCommand {
    /// Every account with its rights under the policies in force (managers, privacy officers).
    Review {
        #[command(flatten)]
        user: LoginArgs,
    },
    /// The account's rights are still needed: recorded with date and reviewer.
    Confirm {
        account: String,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// The account's rights are no longer needed: it is disabled and its sessions end now.
    Revoke {
        account: String,
        #[command(flatten)]
        user: LoginArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum BreakGlassCommand {
    /// Ask for read access to a collection for a few minutes. The reason (10–1000 characters)
    /// is read from stdin or --reason-file, never from the command line, where `ps` would
    /// show it. Nothing opens until another person approves.
    Request {
        #[arg(long)]
        collection: String,
        /// How long the access lasts once approved (at most 240 minutes).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(mamori_vault::MAX_BREAK_GLASS_MINUTES)))]
        minutes: u32,
        /// Read the reason from this file instead of stdin.
        #[arg(long, value_name = "FILE")]
        reason_file: Option<PathBuf>,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// Approve a pending request: the access opens now for its minutes.
    Approve {
        id: String,
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// Reject a pending request.
    Reject {
        id: String,
        #[command(flatten)]
        actor: ActorArgs,
    },
    /// End an approved grant early (its requester, or anyone with the approve right).
    Revoke {
        id: String,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// Grants, newest first (approvers and auditors see all, others their own); reasons only
    /// with --json.
    List {
        #[command(flatten)]
        user: LoginArgs,
    },
    /// One grant with its reason.
    Show {
        id: String,
        #[command(flatten)]
        user: LoginArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print a commented default mamori.toml.
    Default,
}

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// Ask to export records. The request is JSON (the API's ExportRequest: collection,
    /// fields, filter, purpose, recipient, due_date, format, protection) read from --spec or
    /// stdin, never from the command line: it may hold a searched value or a person's name.
    Request {
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// Approve a pending request (another account with the approve right).
    Approve {
        id: String,
        /// Confirm a request above the per-request hard limit.
        #[arg(long)]
        confirm_bulk: bool,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// Reject a pending request.
    Reject {
        id: String,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// Withdraw your own pending request.
    Cancel {
        id: String,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// Requests, newest first (approvers and auditors see all, others their own).
    List {
        #[command(flatten)]
        user: LoginArgs,
    },
    /// One request.
    Show {
        id: String,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// Show the file password of your approved, password-protected export. Send it to the
    /// recipient over a different channel than the file.
    Password {
        id: String,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// Download your approved export into a directory. Existing files are never
    /// overwritten. For a secret split with custodians nothing is written: the shares are
    /// made and held, each for its custodian (`mamori export fetch-share`).
    Download {
        id: String,
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// As a custodian of a secret-split export: fetch the share held for you, once, into a
    /// directory. Without an id, list the shares waiting for you.
    FetchShare {
        id: Option<String>,
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// As the approver who received the data back (an approver of the collection, not the
    /// requester): record the return.
    Return {
        id: String,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// As the witness (an approver of the collection, not the requester): record that the
    /// data was destroyed in front of you, and how.
    Dispose {
        id: String,
        /// How, e.g. "shredded" or "secure erase of the USB stick".
        #[arg(long)]
        method: String,
        #[command(flatten)]
        user: LoginArgs,
    },
    /// The take-out ledger (持ち出し管理台帳): of one request, or all (approvers, auditors).
    Ledger {
        id: Option<String>,
        #[command(flatten)]
        user: LoginArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum SharesCommand {
    /// Restore a secret-split export from at least `threshold` of its share files. Works
    /// offline: no data directory and no login are needed.
    Combine {
        /// The share files.
        #[arg(required = true, num_args = 2..)]
        shares: Vec<PathBuf>,
        /// Where to write the restored file (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}
