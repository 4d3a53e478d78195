//! Pages for administrators, reviewers and auditors: accounts, the access roster, the audit
//! viewer (filters, "who saw this person", verification).

use super::templates::{Dates, render, role_slug, signed_in};
use super::{WebUser, redirect};
use crate::AppState;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use mamori_core::audit::Outcome;
use mamori_vault::{AuditFilter, ProfileChange, VaultError};
use minijinja::{Value, context};
use serde::Deserialize;
use std::collections::BTreeMap;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

pub(crate) async fn users(State(state): State<AppState>, user: WebUser) -> Response {
    let lang = user.lang;
    let p = &user.principal;
    let (caps, list) = match (state.vault.capabilities(p).await, state.vault.list_users(p).await) {
        (Ok(c), Ok(l)) => (c, l),
        (Err(e), _) | (_, Err(e)) => return user.fail(&state, e),
    };
    let dates = Dates::of(&state, &user);
    let rows: Vec<Value> = list
        .iter()
        .map(|u| {
            context! {
                login => u.login.clone(),
                name => u.display_name.clone(),
                role => role_slug(u.role),
                department => u.department.clone(),
                title => u.title.clone(),
                disabled => u.disabled,
                locked => u.locked,
                mfa => u.mfa_enrolled,
                vendor => u.vendor,
                last_login => u.last_login_at.map(|t| dates.show(t)),
                valid_until => u.valid_until.map(|t| dates.show(t)),
                access_window => u.access_window.as_ref().map(ToString::to_string),
                is_me => u.login == p.login,
            }
        })
        .collect();
    render(lang, "users.html", signed_in(&state, &user, &caps), context! { users => rows })
}

/// Disable, enable or unlock an account; disabling takes effect on the account's very next
/// request.
pub(crate) async fn change_user(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    Path((login, change)): Path<(String, String)>,
) -> Response {
    let p = &user.principal;
    let result = match change.as_str() {
        "disable" => state.vault.set_user_disabled(p, &login, true).await,
        "enable" => state.vault.set_user_disabled(p, &login, false).await,
        "unlock" => state.vault.unlock_user(p, &login).await,
        _ => Err(mamori_vault::VaultError::NotFound("operation")),
    };
    match result {
        Ok(()) => redirect(&headers, "/users"),
        Err(e) => user.fail(&state, e),
    }
}

/// `/users/{login}/edit`: an account's profile, clearance, validity, training, pledge and
/// access window (issue 4). What the vault refuses (a vendor without an end date, a role
/// change that needs a second administrator) comes back as the error page.
pub(crate) async fn edit_user_page(
    State(state): State<AppState>,
    user: WebUser,
    Path(login): Path<String>,
) -> Response {
    let p = &user.principal;
    let (caps, list) = match (state.vault.capabilities(p).await, state.vault.list_users(p).await) {
        (Ok(c), Ok(l)) => (c, l),
        (Err(e), _) | (_, Err(e)) => return user.fail(&state, e),
    };
    let Some(u) = list.iter().find(|u| u.login == login) else {
        return user.fail(&state, mamori_vault::VaultError::NotFound("account"));
    };
    let offset = state.vault.config().authz.utc_offset;
    // Validity ends at the local midnight after the last valid day: show that day.
    let last_day = |t: Option<OffsetDateTime>| {
        t.map(|t| (t.to_offset(offset) - time::Duration::nanoseconds(1)).date().to_string()).unwrap_or_default()
    };
    let window = u.access_window.as_ref().and_then(|w| serde_json::to_value(w).ok()).unwrap_or_default();
    let list_of = |key: &str| {
        window[key]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let page = context! {
        login => u.login.clone(),
        name => u.display_name.clone(),
        department => u.department.clone().unwrap_or_default(),
        title => u.title.clone().unwrap_or_default(),
        role => role_slug(u.role),
        roles => mamori_core::access::ALL_ROLES.iter().map(|r| role_slug(*r)).collect::<Vec<_>>(),
        clearance => u.clearance.clone().unwrap_or_default(),
        tiers => mamori_core::schema::ALL_TIERS.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        valid_until => last_day(u.valid_until),
        training_until => last_day(u.training_valid_until),
        vendor => u.vendor,
        pledge => u.pledge_signed_at.is_some(),
        own_window => u.access_window.is_some(),
        hours => window["hours"].as_str().unwrap_or_default().to_owned(),
        days => list_of("days"),
        closed_on_holidays => window["closed_on_holidays"].as_bool().unwrap_or(false),
        networks => list_of("networks"),
    };
    render(user.lang, "user_edit.html", signed_in(&state, &user, &caps), page)
}

/// POST `/users/{login}/edit`. Empty text and date inputs leave the value as it is.
pub(crate) async fn edit_user(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    Path(login): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let offset = state.vault.config().authz.utc_offset;
    match profile_change(&form, offset) {
        Ok(change) => match state.vault.update_user(&user.principal, &login, change).await {
            Ok(_) => redirect(&headers, "/users"),
            Err(e) => user.fail(&state, e),
        },
        Err(e) => user.fail(&state, e),
    }
}

fn profile_change(form: &BTreeMap<String, String>, offset: time::UtcOffset) -> Result<ProfileChange, VaultError> {
    let get = |k: &str| form.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let checked = |k: &str| form.get(k).is_some_and(|v| v == "on");
    let words = |k: &str| get(k).map(|v| v.split([' ', ',']).filter(|w| !w.is_empty()).collect::<Vec<_>>());
    // "Valid through 2027-03-31" means all of that local day.
    let end_of_day = |k: &str| -> Result<Option<OffsetDateTime>, VaultError> {
        get(k)
            .map(|d| {
                let day = Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                    .map_err(|_| VaultError::Invalid(format!("{k}: a date as YYYY-MM-DD")))?;
                let next = day.next_day().ok_or_else(|| VaultError::Invalid(format!("{k}: out of range")))?;
                Ok(next.midnight().assume_offset(offset))
            })
            .transpose()
    };
    let access_window = match get("window") {
        Some("role") => Some(None),
        _ => {
            let json = serde_json::json!({
                "hours": get("hours"), "days": words("days").unwrap_or_default(),
                "closed_on_holidays": checked("closed_on_holidays"), "networks": words("networks").unwrap_or_default(),
            });
            let window =
                serde_json::from_value(json).map_err(|e| VaultError::Invalid(format!("access window: {e}")))?;
            Some(Some(window))
        }
    };
    Ok(ProfileChange {
        display_name: get("name").map(str::to_owned),
        department: get("department").map(str::to_owned),
        title: get("title").map(str::to_owned),
        role: get("role").map(str::parse).transpose().map_err(VaultError::Invalid)?,
        valid_until: end_of_day("valid_until")?,
        vendor: Some(checked("vendor")),
        clearance: get("clearance").map(str::parse).transpose()?,
        training_valid_until: end_of_day("training_until")?,
        pledge_signed: Some(checked("pledge")),
        access_window,
    })
}

pub(crate) async fn access_review(State(state): State<AppState>, user: WebUser) -> Response {
    let lang = user.lang;
    let p = &user.principal;
    let (caps, entries) = match (state.vault.capabilities(p).await, state.vault.access_review(p).await) {
        (Ok(c), Ok(l)) => (c, l),
        (Err(e), _) | (_, Err(e)) => return user.fail(&state, e),
    };
    let dates = Dates::of(&state, &user);
    let rows: Vec<Value> = entries
        .iter()
        .map(|a| {
            let collections: Vec<Value> = a
                .collections
                .iter()
                .filter(|c| {
                    !(c.collection_wide.is_empty() && c.own_department.is_empty() && c.other_departments.is_empty())
                })
                .map(|c| {
                    context! {
                        name => c.collection.clone(),
                        wide => c.collection_wide.join(", "),
                        own => c.own_department.join(", "),
                        other => c.other_departments.join(", "),
                    }
                })
                .collect();
            context! {
                login => a.login.clone(),
                name => a.display_name.clone(),
                role => role_slug(a.role),
                department => a.department.clone(),
                clearance => lang.t(&format!("tier_{}", a.clearance)),
                training => a.training_valid_until.map(|t| dates.show(t)),
                pledge => a.pledge_signed,
                disabled => a.disabled,
                reviewed => a.reviewed_at.map(|t| dates.show(t)),
                system => a.system.join(", "),
                collections => collections,
            }
        })
        .collect();
    render(lang, "access_review.html", signed_in(&state, &user, &caps), context! { entries => rows })
}

/// The audit viewer's filter form: plain strings as typed; dates as `YYYY-MM-DD` in the
/// configured time zone.
#[derive(Deserialize, Default)]
pub(crate) struct AuditQuery {
    login: Option<String>,
    subject: Option<String>,
    collection: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    from: Option<String>,
    until: Option<String>,
    after: Option<u64>,
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn day_start(s: &Option<String>, offset: time::UtcOffset, days_after: i64) -> Result<Option<OffsetDateTime>, String> {
    let Some(s) = non_empty(s) else { return Ok(None) };
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = Date::parse(&s, format)
        .map_err(|_| format!("dates are YYYY-MM-DD: `{}`", s.chars().take(20).collect::<String>()))?;
    Ok(Some(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_offset(offset) + time::Duration::days(days_after)))
}

pub(crate) const AUDIT_PAGE: usize = 50;

pub(crate) async fn audit(State(state): State<AppState>, user: WebUser, Query(q): Query<AuditQuery>) -> Response {
    let lang = user.lang;
    let p = &user.principal;
    let caps = match state.vault.capabilities(p).await {
        Ok(c) => c,
        Err(e) => return user.fail(&state, e),
    };
    let dates = Dates::of(&state, &user);
    let range = day_start(&q.from, dates.offset, 0).and_then(|from| Ok((from, day_start(&q.until, dates.offset, 1)?)));
    let (from, until) = match range {
        Ok(r) => r,
        Err(m) => return user.fail(&state, mamori_vault::VaultError::Invalid(m)),
    };
    let outcome = match non_empty(&q.outcome).as_deref() {
        None => None,
        Some("success") => Some(Outcome::Success),
        Some("denied") => Some(Outcome::Denied),
        Some("failure") => Some(Outcome::Failure),
        Some(_) => return user.fail(&state, mamori_vault::VaultError::Invalid("unknown outcome".into())),
    };
    let filter = AuditFilter {
        from,
        until,
        login: non_empty(&q.login),
        subject: non_empty(&q.subject),
        collection: non_empty(&q.collection),
        action: non_empty(&q.action),
        outcome,
        after_seq: q.after.unwrap_or(0),
        limit: Some(AUDIT_PAGE),
        ..AuditFilter::default()
    };
    let page = match state.vault.query_audit(p, &filter).await {
        Ok(page) => page,
        Err(e) => return user.fail(&state, e),
    };
    let events: Vec<Value> = page
        .events
        .iter()
        .map(|e| {
            let ev = &e.event;
            context! {
                seq => e.seq,
                at => dates.show(ev.at),
                actor => e.login.clone().unwrap_or_else(|| ev.actor.clone()),
                action => ev.action.clone(),
                outcome => serde_json::to_value(ev.outcome).ok().and_then(|v| v.as_str().map(str::to_owned)),
                collection => ev.collection.clone(),
                record => ev.record.clone(),
                subject => ev.subject.clone(),
                fields => ev.fields.join(", "),
                source => ev.source.clone(),
                reason => ev.reason.clone(),
                purpose => ev.purpose.clone(),
                policy => ev.policy.clone(),
            }
        })
        .collect();
    let next = page.next_after_seq.map(|after| next_link(&q, after));
    let body = context! { events => events, q => query_value(&q), next => next, verified => Value::from(()) };
    render(lang, "audit.html", signed_in(&state, &user, &caps), body)
}

/// The filters again, for the form.
fn query_value(q: &AuditQuery) -> Value {
    context! {
        login => non_empty(&q.login), subject => non_empty(&q.subject), collection => non_empty(&q.collection),
        action => non_empty(&q.action), outcome => non_empty(&q.outcome), from => non_empty(&q.from),
        until => non_empty(&q.until),
    }
}

fn next_link(q: &AuditQuery, after: u64) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("login", &q.login),
        ("subject", &q.subject),
        ("collection", &q.collection),
        ("action", &q.action),
        ("outcome", &q.outcome),
        ("from", &q.from),
        ("until", &q.until),
    ] {
        if let Some(v) = non_empty(v) {
            pairs.push((k, v));
        }
    }
    pairs.push(("after", after.to_string()));
    format!("/audit?{}", serde_urlencoded::to_string(&pairs).unwrap_or_default())
}

/// Verifies the whole chain and its signed checkpoints, as `mamori audit verify` does.
pub(crate) async fn verify(State(state): State<AppState>, user: WebUser) -> Response {
    let lang = user.lang;
    let p = &user.principal;
    let caps = match state.vault.capabilities(p).await {
        Ok(c) => c,
        Err(e) => return user.fail(&state, e),
    };
    if let Err(e) = state.vault.authorize_audit_read(p).await {
        return user.fail(&state, e);
    }
    let report = match state.vault.verify_audit().await {
        Ok(r) => r,
        Err(e) => return user.fail(&state, e),
    };
    let verified = context! {
        ok => report.ok,
        events => report.events,
        head_seq => report.head_seq,
        head_hash => report.head_hash.clone(),
        checkpoints => report.checkpoints,
        first_bad_seq => report.first_bad_seq,
        problem => report.problem.clone(),
    };
    let body = context! { events => Vec::<Value>::new(), q => query_value(&AuditQuery::default()), next => Value::from(()), verified => verified };
    render(lang, "audit.html", signed_in(&state, &user, &caps), body)
}
