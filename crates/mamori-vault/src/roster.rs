//! Accounts against the HR roster (`mamori users sync`), and the access roster
//! (`mamori users roster`): issue 4, lifecycle.
//!
//! The HR file is the authority on who works here, where and as what: people who joined get
//! an account, people who moved get their department and title changed, people who left or
//! are on leave lose access at once (000-8-access-2: disable on transfer or resignation;
//! 000-8-access-5: one place for staff records and accounts; 004-V-2-2: remove holders
//! promptly on personnel changes). Every change goes through the ordinary account
//! operations, so their rules apply unchanged: the two-person rule for accounts that read
//! personal data, sessions ended on disable and role change, one audit event each.
//!
//! Choices where the issue is silent, written down here:
//! - **Plan first.** [`Vault::plan_user_sync`] only computes the difference; applying it
//!   computes it again against the accounts as they are then, so that a plan shown an hour
//!   ago never overwrites a change made since.
//! - **Never re-enabled by the file.** A disabled account that the roster lists as active is
//!   reported as *held*: it may have been disabled for a reason HR does not know (an
//!   incident, dormancy), so an administrator enables it deliberately.
//! - **Not in the roster → disabled**, except vendor (委託先) accounts, which are not
//!   employees and end by their own validity date, and accounts already disabled.
//! - **Role is optional, and never changed by the file.** HR rarely knows mamori's roles: a
//!   new account without one is `staff`, the least privilege. For an existing account a
//!   different role is only reported (*held*): a role change goes through `users update
//!   --role` and its activation rule, so that one file cannot make anyone a privacy officer.
//! - **Disabled accounts are left alone**, fields included: activation decides their rights.
//! - **Whoever runs the sync keeps their account** (held, not disabled), and a file listing
//!   nobody is refused. Changes are applied one by one, disables first; if one fails, those
//!   before it stay applied (each is audited) and the sync can be run again.

use crate::auth::{clean_optional, valid_display_name, valid_login};
use crate::error::{Result, RowError, VaultError};
use crate::{NewUser, Principal, ProfileChange, UserSummary, Vault};
use mamori_core::access::{Action, Role};
use mamori_core::audit::Outcome;
use mamori_core::ids::UserId;
use mamori_crypto::SecretString;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

const ROLES: &str = "must be staff, manager, auditor, privacy_officer or system_admin";

/// Rows in an HR file; more is refused before anything is read into memory beyond it.
pub const MAX_ROSTER_ROWS: usize = 100_000;

/// Employment status in the HR file: `active`/`在職`, `leave`/`休職`, `left`/`退職`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Employment {
    Active,
    Leave,
    Left,
}

impl Employment {
    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "" | "active" | "在職" => Some(Self::Active),
            "leave" | "休職" => Some(Self::Leave),
            "left" | "退職" => Some(Self::Left),
            _ => None,
        }
    }
}

/// One person in the HR file.
#[derive(Clone, PartialEq, Eq)]
pub struct HrRecord {
    /// Line in the file (the header is line 1).
    pub line: u64,
    pub login: String,
    pub name: String,
    pub department: Option<String>,
    pub title: Option<String>,
    /// `None`: keep the account's role (new accounts: staff).
    pub role: Option<Role>,
    pub employment: Employment,
}

impl std::fmt::Debug for HrRecord {
    // Names are personal data of the staff; logs and errors name the line and login only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HrRecord").field("line", &self.line).field("login", &self.login).finish_non_exhaustive()
    }
}

/// Reads an HR file: CSV, UTF-8, a header naming the columns `login` and `name` (required)
/// and `department`, `title`, `role`, `status` (optional), in any order. Every problem is
/// reported with its line, and nothing is returned unless the whole file is valid.
pub fn parse_hr_roster(input: impl std::io::Read) -> Result<Vec<HrRecord>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(input);
    let problem =
        |line: u64, column: Option<&str>, reason: String| RowError { line, column: column.map(str::to_owned), reason };
    let reject = |errors: Vec<RowError>| VaultError::ImportRejected { errors, truncated: false };
    let headers = reader.headers().map_err(|e| reject(vec![problem(1, None, csv_reason(&e))]))?.clone();
    let position = |name: &str| headers.iter().position(|h| h.trim().trim_start_matches('\u{feff}') == name);
    let (Some(login_at), Some(name_at)) = (position("login"), position("name")) else {
        return Err(reject(vec![problem(1, None, "the header must name the columns `login` and `name`".into())]));
    };
    let (department_at, title_at, role_at, status_at) =
        (position("department"), position("title"), position("role"), position("status"));
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (index, row) in reader.records().enumerate() {
        // The record's own line (a quoted value may span lines), else its count.
        let line = match &row {
            Ok(row) => row.position().map_or(index as u64 + 2, csv::Position::line),
            Err(e) => e.position().map_or(index as u64 + 2, csv::Position::line),
        };
        if records.len() + errors.len() >= MAX_ROSTER_ROWS {
            errors.push(problem(line, None, format!("more than {MAX_ROSTER_ROWS} rows")));
            break;
        }
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                errors.push(problem(line, None, csv_reason(&e)));
                continue;
            }
        };
        let cell = |at: Option<usize>| at.and_then(|i| row.get(i)).map(str::trim).unwrap_or("").to_owned();
        let before = errors.len();
        let login = cell(Some(login_at));
        if !valid_login(&login) {
            errors.push(problem(line, Some("login"), "must match [a-z0-9._-]{3,64}".into()));
        } else if !seen.insert(login.clone()) {
            errors.push(problem(line, Some("login"), "appears twice in the file".into()));
        }
        let name = valid_display_name(&cell(Some(name_at)))
            .map_err(|_| errors.push(problem(line, Some("name"), "must have 1 to 100 characters".into())))
            .ok();
        let mut optional = |column: &str, at| {
            clean_optional(Some(cell(at)))
                .map_err(|_| {
                    errors.push(problem(line, Some(column), "at most 100 characters, no control characters".into()))
                })
                .ok()
                .flatten()
        };
        let (department, title) = (optional("department", department_at), optional("title", title_at));
        let role = match cell(role_at).as_str() {
            "" => None,
            r => r.parse::<Role>().map_err(|_| errors.push(problem(line, Some("role"), ROLES.into()))).ok(),
        };
        let employment = Employment::parse(&cell(status_at)).unwrap_or_else(|| {
            errors.push(problem(line, Some("status"), "must be active/在職, leave/休職 or left/退職".into()));
            Employment::Active
        });
        if errors.len() == before {
            let name = name.expect("checked above");
            records.push(HrRecord { line, login, name, department, title, role, employment });
        }
    }
    if !errors.is_empty() {
        return Err(reject(errors));
    }
    Ok(records)
}

/// csv's messages quote the offending record; ours must not carry its values.
fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields where the header has {expected_len}")
        }
        _ => "not readable as CSV".into(),
    }
}

/// One field that differs between the account and the HR file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldChange {
    pub field: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// What reconciling one account means.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum SyncChange {
    /// A new employee: an account is created (staff unless the file says otherwise).
    Create { login: String, name: String, department: Option<String>, title: Option<String>, role: String },
    /// A move, a new title or name, a role change.
    Update { login: String, fields: Vec<FieldChange> },
    /// Left, on leave, or not in the file: access ends now.
    Disable { login: String, reason: String },
    /// Active in the file but disabled here: left for an administrator to decide.
    Hold { login: String, reason: String },
}

/// The difference between the accounts and the HR file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SyncPlan {
    pub changes: Vec<SyncChange>,
    /// Accounts that already match the file.
    pub unchanged: u64,
}

/// What applying a plan did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncReport {
    pub plan: SyncPlan,
    /// One-time passwords of the accounts created, to hand over one by one. Accounts that
    /// read personal data are created disabled and get theirs at activation instead.
    #[serde(serialize_with = "expose_passwords")]
    #[schema(value_type = Object)]
    pub one_time_passwords: BTreeMap<String, SecretString>,
    /// Created accounts waiting for a privacy officer's activation (two-person rule).
    pub pending_activation: Vec<String>,
}

fn expose_passwords<S: serde::Serializer>(
    passwords: &BTreeMap<String, SecretString>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(passwords.iter().map(|(login, pw)| (login, pw.expose())))
}

fn differs(fields: &mut Vec<FieldChange>, field: &str, from: Option<&str>, to: Option<&str>) {
    if from != to {
        fields.push(FieldChange { field: field.into(), from: from.map(str::to_owned), to: to.map(str::to_owned) });
    }
}

/// The plan for `accounts` as they are now; `caller` is the account running the sync.
fn plan(accounts: &[UserSummary], roster: &[HrRecord], caller: Option<UserId>) -> SyncPlan {
    let mut plan = SyncPlan::default();
    let by_login: BTreeMap<&str, &HrRecord> = roster.iter().map(|r| (r.login.as_str(), r)).collect();
    let existing: HashSet<&str> = accounts.iter().map(|a| a.login.as_str()).collect();
    for account in accounts {
        let login = account.login.clone();
        let own = Some(account.id) == caller;
        let disable = |reason: &str| match own {
            // Whoever runs the sync keeps their access; another administrator disables it.
            true => SyncChange::Hold { login: login.clone(), reason: format!("{reason}, but it is your own account") },
            false => SyncChange::Disable { login: login.clone(), reason: reason.into() },
        };
        let Some(hr) = by_login.get(account.login.as_str()) else {
            if !account.disabled && !account.vendor {
                plan.changes.push(disable("not in the HR roster"));
            } else {
                plan.unchanged += 1;
            }
            continue;
        };
        match (hr.employment, account.disabled) {
            (Employment::Left | Employment::Leave, false) => {
                let reason = if hr.employment == Employment::Left { "left (退職)" } else { "on leave (休職)" };
                plan.changes.push(disable(reason));
                continue;
            }
            (Employment::Left | Employment::Leave, true) => {
                plan.unchanged += 1;
                continue;
            }
            (Employment::Active, true) => {
                // Created disabled and never used: an account waiting for its activation.
                let reason = if account.last_login_at.is_none() && account.must_change_password {
                    "waiting for activation by a privacy officer"
                } else {
                    "active in the HR roster but disabled here; enable it deliberately if it should be"
                };
                // Nothing else changes on a disabled account: activation decides its rights.
                plan.changes.push(SyncChange::Hold { login: login.clone(), reason: reason.into() });
                continue;
            }
            (Employment::Active, false) => {}
        }
        // A role change can grant more than a file should: it is left to `users update
        // --role` (and its activation rule), never done by the sync.
        if let Some(role) = hr.role.filter(|r| *r != account.role) {
            plan.changes.push(SyncChange::Hold {
                login: login.clone(),
                reason: format!("the HR roster says role {role}: change it with `mamori users update --role`"),
            });
        }
        let mut fields = Vec::new();
        differs(&mut fields, "name", Some(&account.display_name), Some(&hr.name));
        differs(&mut fields, "department", account.department.as_deref(), hr.department.as_deref());
        differs(&mut fields, "title", account.title.as_deref(), hr.title.as_deref());
        if !fields.is_empty() {
            plan.changes.push(SyncChange::Update { login, fields });
        } else {
            plan.unchanged += 1;
        }
    }
    for hr in roster.iter().filter(|r| r.employment == Employment::Active && !existing.contains(r.login.as_str())) {
        plan.changes.push(SyncChange::Create {
            login: hr.login.clone(),
            name: hr.name.clone(),
            department: hr.department.clone(),
            title: hr.title.clone(),
            role: hr.role.unwrap_or(Role::Staff).to_string(),
        });
    }
    plan
}

impl Vault {
    /// The HR roster as received (CSV): planned, or applied with `apply`. The caller is
    /// authorised before the file is read, so someone without the right learns nothing from
    /// what the parser would have said about it.
    pub async fn sync_users_csv(&self, p: &Principal, csv: &[u8], apply: bool) -> Result<SyncReport> {
        let audit_action = if apply { "user.sync" } else { "user.sync_plan" };
        self.authorize(p, Action::UserManage, audit_action, None).await?;
        let roster = parse_hr_roster(csv)?;
        if apply {
            return self.apply_user_sync(p, &roster).await;
        }
        let plan = self.plan_user_sync(p, &roster).await?;
        Ok(SyncReport { plan, one_time_passwords: BTreeMap::new(), pending_activation: Vec::new() })
    }

    /// The difference between the accounts and the HR file; nothing changes.
    pub async fn plan_user_sync(&self, p: &Principal, roster: &[HrRecord]) -> Result<SyncPlan> {
        self.authorize(p, Action::UserManage, "user.sync_plan", None).await?;
        let plan = self.sync_plan(p, roster).await?;
        let mut e = self.event(p, "user.sync_plan", Outcome::Success);
        e.rows = Some(plan.changes.len() as u64);
        e.reason = Some(format!("{} rows in the HR roster", roster.len()));
        self.audit.record(vec![e]).await?;
        Ok(plan)
    }

    /// Reconciles the accounts with the HR file: creates, updates and disables, each through
    /// the ordinary operation (and its audit event), then records the sync itself. The plan
    /// is computed again here, against the accounts as they are now.
    pub async fn apply_user_sync(&self, p: &Principal, roster: &[HrRecord]) -> Result<SyncReport> {
        self.authorize(p, Action::UserManage, "user.sync", None).await?;
        let plan = self.sync_plan(p, roster).await?;
        let mut report = SyncReport {
            plan: SyncPlan::default(),
            one_time_passwords: BTreeMap::new(),
            pending_activation: Vec::new(),
        };
        // Access ends before anything is granted: a failure half-way leaves fewer rights.
        let mut ordered: Vec<&SyncChange> =
            plan.changes.iter().filter(|c| matches!(c, SyncChange::Disable { .. })).collect();
        ordered.extend(plan.changes.iter().filter(|c| !matches!(c, SyncChange::Disable { .. })));
        for change in ordered {
            match change {
                SyncChange::Disable { login, .. } => self.set_user_disabled(p, login, true).await?,
                SyncChange::Update { login, fields } => {
                    let to = |field: &str| {
                        fields.iter().find(|f| f.field == field).map(|f| f.to.clone().unwrap_or_default())
                    };
                    let change = ProfileChange {
                        display_name: to("name"),
                        department: to("department"),
                        title: to("title"),
                        ..ProfileChange::default()
                    };
                    self.update_user(p, login, change).await?;
                }
                SyncChange::Create { login, name, department, title, role } => {
                    let role = role.parse::<Role>().map_err(VaultError::Integrity)?;
                    let new = NewUser {
                        department: department.clone(),
                        title: title.clone(),
                        ..NewUser::new(login.clone(), name.clone(), role)
                    };
                    let (created, password) = self.create_user(p, new).await?;
                    match password {
                        Some(password) => {
                            report.one_time_passwords.insert(login.clone(), password);
                        }
                        None if created.disabled => report.pending_activation.push(login.clone()),
                        None => {}
                    }
                }
                SyncChange::Hold { .. } => {}
            }
        }
        let mut e = self.event(p, "user.sync", Outcome::Success);
        e.rows = Some(plan.changes.iter().filter(|c| !matches!(c, SyncChange::Hold { .. })).count() as u64);
        e.reason = Some(format!("{} rows in the HR roster", roster.len()));
        self.audit.record(vec![e]).await?;
        report.plan = plan;
        Ok(report)
    }

    /// The plan against every account as it is now (the listing is audited as part of the
    /// sync event). An empty file is refused: it would disable everyone.
    async fn sync_plan(&self, p: &Principal, roster: &[HrRecord]) -> Result<SyncPlan> {
        if roster.is_empty() {
            return Err(VaultError::Invalid("the HR roster lists nobody; it would disable every account".into()));
        }
        let now = self.clock.now();
        let accounts: Vec<UserSummary> =
            self.store.list_users().await?.into_iter().map(|u| crate::auth::summary(u, now)).collect::<Result<_>>()?;
        Ok(plan(&accounts, roster, p.user_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(csv: &str) -> Result<Vec<HrRecord>> {
        parse_hr_roster(csv.as_bytes())
    }

    #[test]
    fn a_valid_file_in_any_column_order() {
        let rows =
            roster("status,name,login,department\n在職,山田 太郎,yamada,営業部\nleft,佐藤 花子,sato,\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].line, rows[0].login.as_str(), rows[0].department.as_deref()),
            (2, "yamada", Some("営業部"))
        );
        assert_eq!((rows[1].employment, rows[1].department.as_deref(), rows[1].role), (Employment::Left, None, None));
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line_and_no_value() {
        let csv = "login,name,role,status\nok.user,良い 人,staff,\nBad Login,名前,,\nok.user,重複,,\nthird,,,\nfourth,名前,boss,\nfifth,名前,,retired\n";
        let Err(VaultError::ImportRejected { errors, .. }) = roster(csv) else { panic!("rejected") };
        let got: Vec<(u64, Option<&str>)> = errors.iter().map(|e| (e.line, e.column.as_deref())).collect();
        assert_eq!(
            got,
            [(3, Some("login")), (4, Some("login")), (5, Some("name")), (6, Some("role")), (7, Some("status"))]
        );
        assert!(errors.iter().all(|e| !e.reason.contains("retired") && !e.reason.contains("重複")), "{errors:?}");
        for bad in ["", "login,department\nx,y\n", "login,name\nabc,def,extra\n"] {
            assert!(matches!(roster(bad), Err(VaultError::ImportRejected { .. })), "{bad:?}");
        }
        let not_utf8 = parse_hr_roster(&b"login,name\nabc,\xff\xfe\n"[..]);
        assert!(matches!(not_utf8, Err(VaultError::ImportRejected { .. })), "{not_utf8:?}");
    }
}
