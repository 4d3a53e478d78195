use crate::cli::{CollectionCommand, KeysCommand, ProfileArgs, UsersCommand, WindowArgs};
use crate::login::{Session, operator};
use crate::open::{open_vault, write_key_file};
use crate::output;
use crate::settings::Settings;
use anyhow::Context;
use mamori_core::schema::CollectionSchema;
use mamori_crypto::MasterKey;
use mamori_vault::NewUser;
use std::path::Path;
use std::process::ExitCode;

fn read_schema(path: &Path) -> anyhow::Result<CollectionSchema> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    Ok(if is_json { CollectionSchema::from_json(&text)? } else { CollectionSchema::from_toml(&text)? })
}

pub async fn collection(settings: &Settings, command: CollectionCommand, json: bool) -> anyhow::Result<ExitCode> {
    let vault = open_vault(settings).await?;
    let op = operator();
    match command {
        CollectionCommand::Create { schema } => {
            let info = vault.create_collection(&op, &read_schema(&schema)?).await?;
            if json { output::json(&info)? } else { println!("created collection `{}`", info.name) }
        }
        CollectionCommand::Update { schema } => {
            let info = vault.update_schema(&op, &read_schema(&schema)?).await?;
            if json {
                output::json(&info)?
            } else {
                println!("collection `{}` is now at schema version {}", info.name, info.schema_version)
            }
        }
        CollectionCommand::List => {
            let list = vault.list_collections(&op).await?;
            if json {
                output::json(&list)?;
            } else {
                let rows = list
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.schema.tier.label_ja().to_owned(),
                            c.records.to_string(),
                            format!("v{}", c.schema_version),
                            c.schema.retention.to_string(),
                            c.schema.purpose.clone(),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(&["name", "tier", "records", "schema", "retention", "purpose"], &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `mamori keys rotate [--master]`. For the master key the order matters: the new key is
/// written and synced to `<key file>.new` first, then the database switches to it, then the
/// file is renamed into place. A crash at any point leaves a key that opens the data.
pub async fn keys(settings: &Settings, command: KeysCommand, json: bool) -> anyhow::Result<ExitCode> {
    let KeysCommand::Rotate { master } = command;
    let vault = open_vault(settings).await?;
    let op = operator();
    let bar = indicatif::ProgressBar::new_spinner();
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let report = vault.rotate_keks(&op, &|n| bar.set_message(format!("{n} data keys re-wrapped"))).await?;
    bar.finish_and_clear();
    let mut master_rotated = false;
    let mut secrets_resealed = 0;
    if master {
        anyhow::ensure!(
            std::env::var("MAMORI_MASTER_KEY").is_err(),
            "the master key comes from MAMORI_MASTER_KEY; rotate it where it is managed, not here"
        );
        let path = settings.master_key_path();
        let staged = crate::open::staged_key_path(&path);
        let new_master = MasterKey::generate();
        write_key_file(&staged, &new_master)?;
        let rotated = vault.rotate_master(&op, &new_master).await;
        // If the database switched (even if something after the switch failed, such as the
        // audit event), the key file must follow it, or the installed file would open nothing.
        let switched = match &rotated {
            Ok(_) => Some(true),
            Err(_) => match mamori_vault::check_master_key(&**vault.store(), &new_master).await {
                Ok(()) => Some(true),
                Err(mamori_vault::VaultError::WrongMasterKey) => Some(false),
                Err(_) => None,
            },
        };
        match switched {
            Some(true) => std::fs::rename(&staged, &path).context("installing the new master key file")?,
            Some(false) => std::fs::remove_file(&staged).context("removing the unused new key file")?,
            None => {
                return Err(rotated.err().map(anyhow::Error::from).unwrap_or_else(|| anyhow::anyhow!("unknown"))).with_context(|| {
                    format!(
                        "could not tell whether the database switched to the new master key: the old key is in {}, the new one in {}; keep both and use the one that opens the data (`--master-key-file`)",
                        path.display(),
                        staged.display()
                    )
                });
            }
        }
        secrets_resealed = rotated?.secrets_resealed;
        if let Some(dir) = path.parent() {
            // Make the rename itself durable before anyone relies on it.
            std::fs::File::open(dir).and_then(|d| d.sync_all()).context("syncing the key file's directory")?;
        }
        // Prove that the installed file opens every key before calling it done.
        let reopened = crate::open::open_vault(settings).await.context("reopening with the new master key")?;
        reopened.verify_keys().await.context("the new master key does not open every collection key")?;
        master_rotated = true;
    }
    if json {
        output::json(&serde_json::json!({
            "collections": report.collections,
            "subject_keys_rewrapped": report.subject_keys_rewrapped,
            "secrets_resealed": secrets_resealed,
            "master_key_rotated": master_rotated,
        }))?;
    } else {
        println!(
            "rotated the key-encryption keys of {} collection(s); {} data keys re-wrapped",
            report.collections, report.subject_keys_rewrapped
        );
        if master_rotated {
            println!(
                "master key replaced: {} ({secrets_resealed} sealed secrets moved to it; back up the new file now)",
                settings.master_key_path().display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn users(settings: &Settings, command: UsersCommand, json: bool) -> anyhow::Result<ExitCode> {
    let vault = open_vault(settings).await?;
    let op = operator();
    match command {
        UsersCommand::Create { login, name, role, profile } => {
            let role = role.parse().map_err(anyhow::Error::msg)?;
            let new = NewUser {
                login,
                display_name: name,
                role,
                password: None,
                must_change_password: true,
                clearance: profile.clearance()?,
                training_valid_until: profile.training_valid_until(settings.authz.utc_offset_hours)?,
                pledge_signed: profile.pledge_signed,
                department: profile.department,
                title: profile.title,
                ..Default::default()
            };
            let (user, password) = vault.create_user(&op, new).await?;
            let password = password.map(|p| p.expose().to_owned()).unwrap_or_default();
            if json {
                output::json(&serde_json::json!({"user": user, "one_time_password": password}))?;
            } else {
                println!(
                    "created `{}` ({}); one-time password: {password} (must be changed at first login)",
                    user.login, user.role
                );
            }
        }
        UsersCommand::List { format } => {
            let format = if json { "json" } else { format.as_str() };
            anyhow::ensure!(
                matches!(format, "table" | "csv" | "json"),
                "unknown format `{format}` (table, csv or json)"
            );
            let list = vault.list_users(&op).await?;
            if format == "json" {
                output::json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            let date = |t: Option<time::OffsetDateTime>| t.map(|t| t.date().to_string()).unwrap_or_default();
            let rows = list
                .iter()
                .map(|u| {
                    let status = match (u.disabled, u.locked) {
                        (true, _) => "disabled",
                        (false, true) => "locked",
                        (false, false) => "active",
                    };
                    vec![
                        u.login.clone(),
                        u.display_name.clone(),
                        u.department.clone().unwrap_or_default(),
                        u.title.clone().unwrap_or_default(),
                        u.role.to_string(),
                        status.into(),
                        if u.mfa_enrolled { "TOTP".into() } else { String::new() },
                        u.clearance
                            .clone()
                            .unwrap_or_else(|| format!("{} (default)", settings.authz.default_clearance.as_str())),
                        date(u.training_valid_until),
                        date(u.pledge_signed_at),
                        u.created_at.date().to_string(),
                        date(u.last_login_at),
                        date(u.reviewed_at),
                    ]
                })
                .collect::<Vec<_>>();
            let headers = [
                "login",
                "name",
                "department",
                "title",
                "role",
                "status",
                "MFA",
                "clearance",
                "training until",
                "pledge signed",
                "granted on",
                "last login",
                "reviewed",
            ];
            if format == "csv" {
                let mut out = csv::Writer::from_writer(std::io::stdout().lock());
                out.write_record(headers)?;
                for row in &rows {
                    out.write_record(row)?;
                }
                out.flush()?;
            } else {
                output::table(&headers, &rows);
            }
        }
        UsersCommand::Update { login, name, role, profile, pledge_withdrawn, window } => {
            let change = mamori_vault::ProfileChange {
                display_name: name,
                role: role.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?,
                clearance: profile.clearance()?,
                training_valid_until: profile.training_valid_until(settings.authz.utc_offset_hours)?,
                department: profile.department,
                title: profile.title,
                pledge_signed: match (profile.pledge_signed, pledge_withdrawn) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
                access_window: window.change()?,
                ..Default::default()
            };
            let user = vault.update_user(&op, &login, change).await?;
            if json {
                output::json(&user)?;
            } else {
                println!("updated `{}`", user.login);
            }
        }
        UsersCommand::Sync { file, apply } => return sync_users(&vault, &op, &file, apply, json).await,
        UsersCommand::Disable { login } => {
            vault.set_user_disabled(&op, &login, true).await?;
            println!("disabled `{login}`; its sessions have ended");
        }
        UsersCommand::Unlock { login } => {
            vault.unlock_user(&op, &login).await?;
            println!("unlocked `{login}`");
        }
        UsersCommand::ResetMfa { login } => {
            vault.reset_mfa(&op, &login).await?;
            println!("removed the second factor of `{login}`; it enrols again at its next login");
        }
        UsersCommand::Enable { login } => {
            vault.set_user_disabled(&op, &login, false).await?;
            println!("enabled `{login}`");
        }
        UsersCommand::Activate { account, user } => {
            let officer = Session::user(&vault, &user.login).await?;
            let result = vault.activate_user(officer.principal(), &account).await;
            officer.end(&vault).await?;
            let password = result?;
            if json {
                output::json(&serde_json::json!({"login": account, "one_time_password": password.expose()}))?;
            } else {
                println!(
                    "activated `{account}`; one-time password: {} (must be changed at first login)",
                    password.expose()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl ProfileArgs {
    fn clearance(&self) -> anyhow::Result<Option<mamori_core::schema::Tier>> {
        Ok(self.clearance.as_deref().map(str::parse).transpose()?)
    }

    fn training_valid_until(&self, utc_offset_hours: i8) -> anyhow::Result<Option<time::OffsetDateTime>> {
        self.training_until.as_deref().map(|d| end_of_local_day(d, utc_offset_hours)).transpose()
    }
}

impl WindowArgs {
    /// `None`: leave the window as it is; `Some(None)`: back to the role's window.
    fn change(&self) -> anyhow::Result<Option<Option<mamori_core::access_window::AccessWindow>>> {
        use mamori_core::access_window::{AccessWindow, parse_days};
        if self.role_window {
            return Ok(Some(None));
        }
        let window = AccessWindow {
            hours: self.hours.as_deref().map(str::parse).transpose()?,
            days: self.days.as_deref().map(|d| parse_days([d])).transpose()?.unwrap_or_default(),
            closed_on_holidays: self.closed_on_holidays,
            networks: self.networks.clone(),
        };
        Ok((self.any_time || !window.is_unrestricted()).then_some(Some(window)))
    }
}

/// The instant a `YYYY-MM-DD` date ends in the organisation's local time: "valid through
/// 2027-03-31" means valid all of that day.
fn end_of_local_day(date: &str, utc_offset_hours: i8) -> anyhow::Result<time::OffsetDateTime> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(date.trim(), &format).with_context(|| format!("`{date}` is not a YYYY-MM-DD date"))?;
    let offset = time::UtcOffset::from_hms(utc_offset_hours, 0, 0)?;
    let next = day.next_day().context("date out of range")?;
    Ok(next.midnight().assume_offset(offset))
}

/// `mamori users sync FILE [--apply]`: the plan as a table (or JSON), then, with `--apply`,
/// the changes and the one-time passwords of the accounts created.
async fn sync_users(
    vault: &mamori_vault::Vault,
    op: &mamori_vault::Principal,
    file: &Path,
    apply: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let input = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let roster = match mamori_vault::parse_hr_roster(std::io::BufReader::new(input)) {
        Ok(roster) => roster,
        Err(mamori_vault::VaultError::ImportRejected { errors, truncated }) => {
            return output::rejected("HR roster", &errors, truncated, json);
        }
        Err(e) => return Err(e.into()),
    };
    if !apply {
        let plan = vault.plan_user_sync(op, &roster).await?;
        if json {
            output::json(&plan)?;
        } else {
            print_sync_plan(&plan);
            println!("dry run: nothing changed; run again with --apply to make these changes");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = vault.apply_user_sync(op, &roster).await?;
    if json {
        output::json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_sync_plan(&report.plan);
    for (login, password) in &report.one_time_passwords {
        println!("one-time password for `{login}`: {} (hand it over in person; it must be changed)", password.expose());
    }
    for login in &report.pending_activation {
        println!("`{login}` waits for a privacy officer: mamori users activate {login} --login <officer>");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_sync_plan(plan: &mamori_vault::SyncPlan) {
    use mamori_vault::SyncChange;
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let rows: Vec<Vec<String>> = plan
        .changes
        .iter()
        .map(|change| match change {
            SyncChange::Create { login, name, department, title, role } => vec![
                "create".into(),
                login.clone(),
                format!("{name} / {} / {} / {role}", show(department), show(title)),
            ],
            SyncChange::Update { login, fields } => {
                let what: Vec<String> =
                    fields.iter().map(|f| format!("{}: {} → {}", f.field, show(&f.from), show(&f.to))).collect();
                vec!["update".into(), login.clone(), what.join("; ")]
            }
            SyncChange::Disable { login, reason } => vec!["disable".into(), login.clone(), reason.clone()],
            SyncChange::Hold { login, reason } => vec!["hold".into(), login.clone(), reason.clone()],
        })
        .collect();
    output::table(&["change", "login", "details"], &rows);
    println!("{} change(s), {} account(s) unchanged", plan.changes.len(), plan.unchanged);
}
