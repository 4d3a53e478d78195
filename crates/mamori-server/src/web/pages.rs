//! The pages of everyday work: home (tasks and alerts), collections, blind-index search,
//! record view (masked or full, per permission), edit and print.

use super::templates::{Dates, render, signed_in};
use super::{WebUser, redirect};
use crate::AppState;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use mamori_core::access::Action;
use mamori_core::ids::RecordId;
use mamori_core::schema::CollectionSchema;
use mamori_vault::{CollectionInfo, RecordView, TakeOut, View};
use minijinja::{Value, context};
use serde::Deserialize;
use std::collections::BTreeMap;

pub(crate) async fn home(State(state): State<AppState>, user: WebUser) -> Response {
    let lang = user.lang;
    let p = &user.principal;
    let caps = match state.vault.capabilities(p).await {
        Ok(c) => c,
        Err(e) => return user.fail(&state, e),
    };
    let mut alerts = Vec::new();
    if p.role.reads_content() {
        if !p.training_valid {
            alerts.push(lang.t("alert_training"));
        }
        if !p.pledge_signed {
            alerts.push(lang.t("alert_pledge"));
        }
    }
    if !p.mfa {
        alerts.push(lang.t("alert_no_mfa"));
    }
    let mut tasks: Vec<Value> = Vec::new();
    if caps.can(Action::Approve) {
        match state.vault.list_break_glass(p).await {
            Ok(grants) => {
                for g in grants.iter().filter(|g| g.status == "pending" && g.requested_by != p.login) {
                    tasks.push(context! { kind => lang.t("task_break_glass"), text => format!("{} — {} ({} min)", g.login, g.collection, g.minutes), export => None::<String> });
                }
            }
            Err(e) => return user.fail(&state, e),
        }
    }
    if caps.can(Action::Approve) {
        match state.vault.takeout_alerts(p).await {
            Ok(alerts) => {
                for a in alerts.iter().filter(|a| a.kind != "pending" || a.login != p.login) {
                    let kind = if a.kind == "pending" {
                        lang.t("task_export")
                    } else {
                        lang.t(&format!("takeout_alert_{}", a.kind))
                    };
                    tasks.push(
                        context! { kind => kind, text => format!("{} — {}", a.login, lang.t("records_n").replace("{n}", &a.rows.to_string())),
                        export => a.export_id.clone() },
                    );
                }
            }
            Err(e) => return user.fail(&state, e),
        }
    }
    // Shares of a secret-split export held for this person (any role may be a custodian).
    match state.vault.shares_for_me(p).await {
        Ok(shares) => {
            for s in &shares {
                let text = format!("{} — {} ({}/{})", s.requested_by, s.collection, s.share, s.of);
                tasks.push(context! { kind => lang.t("task_share"), text => text, export => None::<String>, link => "/exports" });
            }
        }
        Err(e) => return user.fail(&state, e),
    }
    if caps.can(Action::PolicyManage) {
        match state.vault.list_policy_versions(p).await {
            Ok(versions) => {
                for v in versions.iter().filter(|v| v.status == "pending" && v.proposed_by != p.login) {
                    tasks.push(
                        context! { kind => lang.t("task_policy"), text => format!("v{} — {}", v.version, v.summary), export => None::<String> },
                    );
                }
            }
            Err(e) => return user.fail(&state, e),
        }
    }
    let collections: Vec<Value> = caps
        .collections
        .iter()
        .filter(|c| c.allows(Action::Search))
        .map(|c| context! { name => c.collection.clone(), tier => lang.t(&format!("tier_{}", c.tier)) })
        .collect();
    let page = context! { alerts => alerts, tasks => tasks, collections => collections };
    render(lang, "home.html", signed_in(&state, &user, &caps), page)
}

pub(crate) async fn collections(State(state): State<AppState>, user: WebUser) -> Response {
    let lang = user.lang;
    let caps = match state.vault.capabilities(&user.principal).await {
        Ok(c) => c,
        Err(e) => return user.fail(&state, e),
    };
    let infos = if caps.can(Action::CollectionRead) {
        match state.vault.list_collections(&user.principal).await {
            Ok(list) => list,
            Err(e) => return user.fail(&state, e),
        }
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = caps
        .collections
        .iter()
        .map(|c| {
            let info = infos.iter().find(|i| i.name == c.collection);
            context! {
                name => c.collection.clone(),
                label => info.and_then(|i| i.schema.label.clone()),
                tier => lang.t(&format!("tier_{}", c.tier)),
                records => info.map(|i| i.records),
                purpose => info.map(|i| i.schema.purpose.clone()),
                search => c.allows(Action::Search),
                create => c.allows(Action::Create),
            }
        })
        .collect();
    render(lang, "collections.html", signed_in(&state, &user, &caps), context! { collections => rows })
}

#[derive(Deserialize, Default)]
pub(crate) struct SearchQuery {
    field: Option<String>,
    value: Option<String>,
    view: Option<String>,
    purpose: Option<String>,
}

fn view_of(s: Option<&str>) -> View {
    if s == Some("full") { View::Full } else { View::Masked }
}

fn view_slug(v: View) -> &'static str {
    match v {
        View::Full => "full",
        View::Masked => "masked",
    }
}

/// The fields a form offers, with their labels.
fn field_list(schema: &CollectionSchema, only_searchable: bool) -> Vec<Value> {
    schema
        .fields
        .iter()
        .filter(|f| !only_searchable || f.is_indexed())
        .map(|f| context! { name => f.name.clone(), label => f.label.clone().unwrap_or_else(|| f.name.clone()) })
        .collect()
}

fn label_of(schema: &CollectionSchema, field: &str) -> String {
    schema.fields.iter().find(|f| f.name == field).and_then(|f| f.label.clone()).unwrap_or_else(|| field.to_owned())
}

/// A record as a page shows it: labelled values in schema order.
fn record_value(dates: Dates, schema: &CollectionSchema, r: &RecordView) -> Value {
    let fields: Vec<Value> = r
        .fields
        .iter()
        .map(|(name, value)| context! { name => name.clone(), label => label_of(schema, name), value => value.clone() })
        .collect();
    context! {
        id => r.id.to_string(),
        subject => r.subject_id.clone(),
        department => r.department.clone(),
        view => view_slug(r.view),
        updated => dates.show(r.updated_at),
        fields => fields,
    }
}

/// The purposes a collection accepts, and whether a full view asks for one.
fn purpose_info(schema: &CollectionSchema) -> Value {
    context! { required => schema.purpose_required_for_full_view, choices => schema.access_purposes.clone() }
}

/// The empty search form.
pub(crate) async fn search_page(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    search_with(state, user, headers, name, SearchQuery::default()).await
}

/// A search is a POST, like the API's: the searched value (a name, an e-mail address) never
/// goes into a URL, so it stays out of the browser's history and of access logs
/// (000-8-takeout-6).
pub(crate) async fn search(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(q): Form<SearchQuery>,
) -> Response {
    search_with(state, user, headers, name, q).await
}

async fn search_with(state: AppState, user: WebUser, headers: HeaderMap, name: String, q: SearchQuery) -> Response {
    let lang = user.lang;
    let p = &user.principal;
    let caps = match state.vault.capabilities(p).await {
        Ok(c) => c,
        Err(e) => return user.fail(&state, e),
    };
    // The empty form is not offered to those who may not search here; a search they send
    // anyway goes to the vault, which refuses it and audits the refusal.
    if q.value.is_none() && !caps.can_in(&name, Action::Search) {
        return user.fail(&state, mamori_vault::VaultError::Forbidden);
    }
    let info: CollectionInfo = match state.vault.collection_info(p, &name).await {
        Ok(i) => i,
        Err(e) => return user.fail(&state, e),
    };
    let view = view_of(q.view.as_deref());
    let value = q.value.as_deref().map(str::trim).filter(|v| !v.is_empty());
    let field = q.field.clone().or_else(|| info.schema.fields.iter().find(|f| f.is_indexed()).map(|f| f.name.clone()));
    let mut results: Option<Vec<Value>> = None;
    if let (Some(field), Some(value)) = (field.as_deref(), value) {
        let purpose = q.purpose.as_deref().map(str::trim).filter(|s| !s.is_empty());
        match state.vault.search(p, &name, field, value, view, purpose).await {
            Ok(found) => {
                results = Some(found.iter().map(|r| record_value(Dates::of(&state, &user), &info.schema, r)).collect())
            }
            Err(e) => return user.fail(&state, e),
        }
    }
    let page = context! {
        collection => name.clone(),
        label => info.schema.label.clone().unwrap_or(name.clone()),
        fields => field_list(&info.schema, true),
        field => field,
        value => value,
        view => view_slug(view),
        full_allowed => caps.can_in(&name, Action::ViewFull),
        can_create => caps.can_in(&name, Action::Create),
        purpose => purpose_info(&info.schema),
        columns => field_list(&info.schema, false),
        results => results,
    };
    // htmx asks for the results only; a plain request (or a bookmark) gets the whole page.
    let template = if headers.contains_key("hx-request") { "results.html" } else { "search.html" };
    render(lang, template, signed_in(&state, &user, &caps), page)
}

#[derive(Deserialize, Default)]
pub(crate) struct RecordQuery {
    view: Option<String>,
    purpose: Option<String>,
}

/// A record id from the path; a malformed one is a record that does not exist.
fn record_id(user: &WebUser, state: &AppState, id: &str) -> Result<RecordId, Box<Response>> {
    id.parse::<RecordId>().map_err(|_| Box::new(user.fail(state, mamori_vault::VaultError::NotFound("record"))))
}

pub(crate) async fn record(
    State(state): State<AppState>,
    user: WebUser,
    Path((name, id)): Path<(String, String)>,
    Query(q): Query<RecordQuery>,
) -> Response {
    let lang = user.lang;
    let p = &user.principal;
    let id = match record_id(&user, &state, &id) {
        Ok(id) => id,
        Err(res) => return *res,
    };
    let caps = match state.vault.capabilities(p).await {
        Ok(c) => c,
        Err(e) => return user.fail(&state, e),
    };
    let info = match state.vault.collection_info(p, &name).await {
        Ok(i) => i,
        Err(e) => return user.fail(&state, e),
    };
    let view = view_of(q.view.as_deref());
    let purpose = q.purpose.as_deref().map(str::trim).filter(|s| !s.is_empty());
    // A collection that asks for a purpose gets the question before anything is read.
    if view == View::Full && info.schema.purpose_required_for_full_view && purpose.is_none() {
        let page = context! {
            collection => name.clone(), record => Value::from(()), ask_purpose => true,
            id => id.to_string(), purpose => purpose_info(&info.schema),
            full_allowed => true, edit_allowed => false, print_allowed => false, copy_allowed => false,
        };
        return render(lang, "record.html", signed_in(&state, &user, &caps), page);
    }
    match state.vault.get_record(p, &name, &id, view, purpose).await {
        Ok(r) => {
            let page = context! {
                collection => name.clone(),
                record => record_value(Dates::of(&state, &user), &info.schema, &r),
                ask_purpose => false,
                id => id.to_string(),
                purpose => purpose_info(&info.schema),
                stated_purpose => purpose,
                full_allowed => caps.can_in(&name, Action::ViewFull),
                edit_allowed => caps.can_in(&name, Action::Update),
                print_allowed => caps.can_in(&name, Action::Print),
                copy_allowed => caps.can_in(&name, Action::Copy),
            };
            render(lang, "record.html", signed_in(&state, &user, &caps), page)
        }
        Err(e) => user.fail(&state, e),
    }
}

pub(crate) async fn edit_page(
    State(state): State<AppState>,
    user: WebUser,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    let lang = user.lang;
    let p = &user.principal;
    let id = match record_id(&user, &state, &id) {
        Ok(id) => id,
        Err(res) => return *res,
    };
    let caps = match state.vault.capabilities(p).await {
        Ok(c) => c,
        Err(e) => return user.fail(&state, e),
    };
    let info = match state.vault.collection_info(p, &name).await {
        Ok(i) => i,
        Err(e) => return user.fail(&state, e),
    };
    // The form shows the masked values as hints and sends only what was typed: editing
    // does not need (or expose) the full values.
    match state.vault.get_record(p, &name, &id, View::Masked, None).await {
        Ok(r) => {
            // Only what the caller may write (fields they can see) is offered.
            // A record without a department is checked as such (""), as the update will be.
            let department = r.department.as_deref().unwrap_or_default();
            let writable = match state.vault.writable_fields(p, Action::Update, &name, Some(department)).await {
                Ok(w) => w,
                Err(e) => return user.fail(&state, e),
            };
            let page = context! {
                collection => name.clone(),
                id => id.to_string(),
                record => record_value(Dates::of(&state, &user), &info.schema, &r),
                fields => info.schema.fields.iter().filter(|f| writable.contains(&f.name)).map(|f| context! {
                    name => f.name.clone(),
                    label => f.label.clone().unwrap_or_else(|| f.name.clone()),
                    hint => r.fields.get(&f.name).cloned().unwrap_or_default(),
                    required => f.required,
                }).collect::<Vec<_>>(),
            };
            render(lang, "edit.html", signed_in(&state, &user, &caps), page)
        }
        Err(e) => user.fail(&state, e),
    }
}

pub(crate) async fn edit(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let id = match record_id(&user, &state, &id) {
        Ok(id) => id,
        Err(res) => return *res,
    };
    let changes: BTreeMap<String, String> = form
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("f.").map(|k| (k.to_owned(), v)))
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    if changes.is_empty() {
        return redirect(&headers, &format!("/collections/{name}/records/{id}"));
    }
    match state.vault.update_record(&user.principal, &name, &id, &changes).await {
        Ok(()) => redirect(&headers, &format!("/collections/{name}/records/{id}?saved=1")),
        Err(e) => user.fail(&state, e),
    }
}

/// `/collections/{name}/records/new`: the form to register a person's record (the
/// caller's own department; the vault decides whether they may).
pub(crate) async fn new_record_page(
    State(state): State<AppState>,
    user: WebUser,
    Path(name): Path<String>,
) -> Response {
    let p = &user.principal;
    let caps = match state.vault.capabilities(p).await {
        Ok(c) => c,
        Err(e) => return user.fail(&state, e),
    };
    if !caps.can_in(&name, Action::Create) {
        return user.fail(&state, mamori_vault::VaultError::Forbidden);
    }
    let info = match state.vault.collection_info(p, &name).await {
        Ok(i) => i,
        Err(e) => return user.fail(&state, e),
    };
    let writable = match state.vault.writable_fields(p, Action::Create, &name, None).await {
        Ok(w) => w,
        Err(e) => return user.fail(&state, e),
    };
    use mamori_core::schema::FieldType as T;
    let page = context! {
        collection => name.clone(),
        label => info.schema.label.clone().unwrap_or(name.clone()),
        fields => info.schema.fields.iter().filter(|f| writable.contains(&f.name)).map(|f| context! {
            name => f.name.clone(),
            label => f.label.clone().unwrap_or_else(|| f.name.clone()),
            required => f.required,
            input => match f.field_type {
                T::Date => "date",
                T::Email => "email",
                T::Phone => "tel",
                T::Integer => "number",
                _ => "text",
            },
        }).collect::<Vec<_>>(),
    };
    render(user.lang, "new_record.html", signed_in(&state, &user, &caps), page)
}

/// POST `/collections/{name}/records/new`: creates the record and shows it.
pub(crate) async fn create_record(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let subject = match form.get("subject").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match mamori_core::ids::SubjectId::new(s) {
            Ok(id) => Some(id),
            Err(e) => return user.fail(&state, e.into()),
        },
    };
    // Empty inputs are absent values: the schema says which are required.
    let values: BTreeMap<String, String> = form
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("f.").map(|k| (k.to_owned(), v.trim().to_owned())))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    match state.vault.create_record(&user.principal, &name, subject, &values).await {
        Ok(id) => redirect(&headers, &format!("/collections/{name}/records/{id}")),
        Err(e) => user.fail(&state, e),
    }
}

#[derive(Deserialize)]
pub(crate) struct PrintForm {
    view: Option<String>,
    purpose: Option<String>,
}

/// A record taken out by print or copy, shaped for the page, with the take-out warning.
struct TakenOut {
    collection: String,
    record: Value,
    warning: Option<String>,
}

/// The part printing and copying share: the vault call (its own right, its own audit
/// event, counted against the daily take-out thresholds) and the record's shape.
async fn take_out(
    state: &AppState,
    user: &WebUser,
    (name, id): (String, String),
    form: PrintForm,
    how: TakeOut,
) -> Result<TakenOut, Response> {
    let p = &user.principal;
    let id = record_id(user, state, &id).map_err(|res| *res)?;
    let info = state.vault.collection_info(p, &name).await.map_err(|e| user.fail(state, e))?;
    let purpose = form.purpose.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let view = view_of(form.view.as_deref());
    let (record, warning) =
        state.vault.take_out_record(p, &name, &id, view, purpose, how).await.map_err(|e| user.fail(state, e))?;
    Ok(TakenOut {
        collection: info.schema.label.clone().unwrap_or(name),
        record: record_value(Dates::of(state, user), &info.schema, &record),
        warning,
    })
}

/// Printing is its own right and its own audit event; the print page opens the browser's
/// print dialogue by itself.
pub(crate) async fn print(
    State(state): State<AppState>,
    user: WebUser,
    Path(path): Path<(String, String)>,
    Form(form): Form<PrintForm>,
) -> Response {
    match take_out(&state, &user, path, form, TakeOut::Print).await {
        Ok(t) => {
            let page = context! {
                collection => t.collection,
                record => t.record,
                printed_by => user.principal.login.clone(),
                printed_at => Dates::of(&state, &user).show(state.vault.now()),
                warning => t.warning,
            };
            render(user.lang, "print.html", context! {}, page)
        }
        Err(res) => res,
    }
}

/// Copying a record's values to the clipboard (htmx): its own right, audited as
/// `record.copy`, and counted against the daily take-out thresholds like a print. The
/// fragment holds the values as `label<TAB>value` lines; `app.js` puts them on the clipboard.
pub(crate) async fn copy(
    State(state): State<AppState>,
    user: WebUser,
    Path(path): Path<(String, String)>,
    Form(form): Form<PrintForm>,
) -> Response {
    match take_out(&state, &user, path, form, TakeOut::Copy).await {
        Ok(t) => render(user.lang, "copy.html", context! {}, context! { record => t.record, warning => t.warning }),
        Err(res) => res,
    }
}

/// The data-subject view (本人の記録): every record of one person that the caller may see,
/// masked, grouped by collection, for answering a disclosure request or checking what is
/// held before an erasure. The subject id is an opaque id, not a personal value, so it may
/// stand in the URL.
pub(crate) async fn subject(State(state): State<AppState>, user: WebUser, Path(subject): Path<String>) -> Response {
    let lang = user.lang;
    let p = &user.principal;
    let Ok(subject) = mamori_core::ids::SubjectId::new(&subject) else {
        return user.fail(&state, mamori_vault::VaultError::NotFound("data subject"));
    };
    let caps = match state.vault.capabilities(p).await {
        Ok(c) => c,
        Err(e) => return user.fail(&state, e),
    };
    let records = match state.vault.subject_records(p, &subject, View::Masked, None).await {
        Ok(r) => r,
        Err(e) => return user.fail(&state, e),
    };
    let dates = Dates::of(&state, &user);
    let mut groups: Vec<Value> = Vec::new();
    for chunk in records.chunk_by(|a, b| a.collection == b.collection) {
        let name = chunk[0].collection.clone();
        let info = match state.vault.collection_info(p, &name).await {
            Ok(i) => i,
            Err(e) => return user.fail(&state, e),
        };
        let list: Vec<Value> = chunk.iter().map(|r| record_value(dates, &info.schema, r)).collect();
        groups.push(context! { collection => name, title => info.schema.label.clone(), records => list });
    }
    let page = context! { subject => subject.as_str(), groups => groups, total => records.len() };
    render(lang, "subject.html", signed_in(&state, &user, &caps), page)
}
