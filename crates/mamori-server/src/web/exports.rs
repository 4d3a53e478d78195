//! Take-out pages (持ち出し): asking for an export, deciding it, showing the file password,
//! downloading the protected file, recording return or disposal, and the ledger (issue 9).
//! Every rule is the vault's; these pages only show people what they may do.

use super::templates::{Dates, paginate, render, signed_in};
use super::{WebUser, redirect};
use crate::AppState;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use mamori_core::access::Action;
use mamori_vault::{ExportFilter, ExportFormat, ExportInfo, ExportRequest, Protection, Settlement, VaultError};
use minijinja::{Value, context};
use serde::Deserialize;
use std::collections::BTreeMap;

fn export_value(dates: Dates, x: &ExportInfo) -> Value {
    let protection = match &x.protection {
        Protection::Split { threshold, shares, custodians } if custodians.is_empty() => format!("{threshold}/{shares}"),
        Protection::Split { threshold, shares, custodians } => {
            format!("{threshold}/{shares}: {}", custodians.join(", "))
        }
        _ => String::new(),
    };
    context! {
        id => x.id.clone(),
        collection => x.collection.clone(),
        requested_by => x.requested_by.clone(),
        requested_at => dates.show(x.requested_at),
        fields => x.fields.join(", "),
        purpose => x.purpose.clone(),
        recipient => x.recipient.clone(),
        filter => match &x.filter {
            Some(ExportFilter::All {}) => Some(String::new()),
            Some(ExportFilter::Field { field, value }) => Some(format!("{field} = {value}")),
            Some(ExportFilter::Subjects { ids }) => Some(ids.join(", ")),
            None => None,
        },
        format => if x.format == ExportFormat::Xlsx { "XLSX" } else { "CSV" },
        protection => protection,
        protection_kind => x.protection.kind(),
        encrypted => x.encrypted,
        rows => x.rows,
        status => x.status.clone(),
        decided_by => x.decided_by.clone(),
        download_until => x.download_until.map(|t| dates.show(t)),
        downloads => format!("{}/{}", x.downloads_used, x.downloads_allowed),
        due => dates.show(x.due_at),
        overdue => x.overdue,
        bulk => x.bulk,
        over_limit => x.over_limit,
        shares => x.shares.iter().map(|s| context! {
            share => s.share, custodian => s.custodian.clone(), state => s.state.clone(),
            ended_at => s.ended_at.map(|t| dates.show(t)),
        }).collect::<Vec<_>>(),
    }
}

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    page: Option<usize>,
}

/// `/exports?page=N`: the caller's requests (approvers and auditors: all), newest first, a
/// page at a time, and a way to ask.
pub(crate) async fn list(State(state): State<AppState>, user: WebUser, Query(q): Query<PageQuery>) -> Response {
    let p = &user.principal;
    let caps = match state.vault.capabilities(p).await {
        Ok(c) => c,
        Err(e) => return user.fail(&state, e),
    };
    let exports = match state.vault.list_exports(p).await {
        Ok(x) => x,
        Err(e) => return user.fail(&state, e),
    };
    let alerts = match state.vault.takeout_alerts(p).await {
        Ok(a) => a,
        Err(e) => return user.fail(&state, e),
    };
    let held = match state.vault.shares_for_me(p).await {
        Ok(h) => h,
        Err(e) => return user.fail(&state, e),
    };
    let dates = Dates::of(&state, &user);
    let held: Vec<Value> = held
        .iter()
        .map(|s| {
            context! { export_id => s.export_id.clone(), collection => s.collection.clone(),
            requested_by => s.requested_by.clone(), share => s.share, of => s.of, threshold => s.threshold,
            fetch_until => s.fetch_until.map(|t| dates.show(t)) }
        })
        .collect();
    let (shown, pager) = paginate(&exports, q.page, "/exports");
    let rows: Vec<Value> = shown.iter().map(|x| export_value(dates, x)).collect();
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|a| {
            context! { kind => a.kind.clone(), export_id => a.export_id.clone(), login => a.login.clone(),
            at => dates.show(a.at), rows => a.rows }
        })
        .collect();
    let exportable: Vec<String> =
        caps.collections.iter().filter(|c| c.allows(Action::Export)).map(|c| c.collection.clone()).collect();
    let page = context! { exports => rows, pager => pager, alerts => alerts, exportable => exportable, held => held,
    ledger => caps.can(Action::Approve) || caps.can(Action::AuditRead) };
    render(user.lang, "exports.html", signed_in(&state, &user, &caps), page)
}

#[derive(Deserialize)]
pub(crate) struct NewQuery {
    collection: Option<String>,
}

/// `/exports/new?collection=…`: the request form.
pub(crate) async fn new_page(State(state): State<AppState>, user: WebUser, Query(q): Query<NewQuery>) -> Response {
    let p = &user.principal;
    let caps = match state.vault.capabilities(p).await {
        Ok(c) => c,
        Err(e) => return user.fail(&state, e),
    };
    let Some(name) = q.collection else { return redirect(&HeaderMap::new(), "/exports") };
    let info = match state.vault.collection_info(p, &name).await {
        Ok(i) => i,
        Err(e) => return user.fail(&state, e),
    };
    let fields: Vec<Value> = info
        .schema
        .fields
        .iter()
        .map(|f| {
            context! { name => f.name.clone(), label => f.label.clone().unwrap_or(f.name.clone()),
            searchable => f.is_indexed() }
        })
        .collect();
    let limits = &state.vault.config().takeout;
    let page = context! {
        collection => name,
        fields => fields,
        purposes => info.schema.access_purposes.clone(),
        max_due_days => limits.max_due_days,
        default_due_days => limits.default_due_days,
        warn_rows => limits.warn_rows_per_request,
    };
    render(user.lang, "export_new.html", signed_in(&state, &user, &caps), page)
}

/// The request form as posted: `f.<name>` checkboxes for the fields, the rest by name.
fn request_of(form: &BTreeMap<String, String>) -> Result<ExportRequest, VaultError> {
    let get = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let number = |k: &str| get(k).parse::<u8>().map_err(|_| VaultError::Invalid(format!("{k} must be a number")));
    let filter = match get("filter").as_str() {
        "field" => ExportFilter::Field { field: get("filter_field"), value: get("filter_value") },
        "subjects" => {
            ExportFilter::Subjects { ids: get("filter_subjects").split_whitespace().map(str::to_owned).collect() }
        }
        _ => ExportFilter::All {},
    };
    let protection = match get("protection").as_str() {
        "age" => Protection::Age { recipient: get("age_recipient") },
        "split" => {
            // One custodian per share: the number of shares is the number of custodians.
            let custodians: Vec<String> = get("custodians")
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            let shares = u8::try_from(custodians.len())
                .map_err(|_| VaultError::Invalid("custodians: at most 16, one per share".into()))?;
            Protection::Split { threshold: number("threshold")?, shares, custodians }
        }
        "none" => Protection::None {},
        _ => Protection::Password {},
    };
    Ok(ExportRequest {
        collection: get("collection"),
        fields: form
            .iter()
            .filter(|(k, v)| k.starts_with("f.") && v.as_str() == "on")
            .map(|(k, _)| k[2..].to_owned())
            .collect(),
        filter,
        purpose: get("purpose"),
        recipient: get("recipient"),
        due_date: Some(get("due_date")).filter(|d| !d.is_empty()),
        format: if get("format") == "csv" { ExportFormat::Csv } else { ExportFormat::Xlsx },
        protection,
    })
}

/// POST `/exports`: files the request and shows it.
pub(crate) async fn create(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let mut request = match request_of(&form) {
        Ok(r) => r,
        Err(e) => return user.fail(&state, e),
    };
    // Form fields arrive in no useful order: put the columns in the schema's order.
    if let Ok(info) = state.vault.collection_info(&user.principal, &request.collection).await {
        let position = |f: &String| info.schema.fields.iter().position(|d| &d.name == f).unwrap_or(usize::MAX);
        request.fields.sort_by_key(position);
    }
    match state.vault.request_export(&user.principal, &request).await {
        Ok(x) => {
            redirect(&headers, &format!("/exports/{}{}", x.id, if x.warnings.is_empty() { "" } else { "?bulk=1" }))
        }
        Err(e) => user.fail(&state, e),
    }
}

#[derive(Deserialize)]
pub(crate) struct DetailQuery {
    bulk: Option<String>,
}

/// `/exports/{id}`: the request, what the caller may do with it, and its ledger.
pub(crate) async fn detail(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Response {
    show(&state, &user, &id, None, q.bulk.is_some()).await
}

async fn show(state: &AppState, user: &WebUser, id: &str, password: Option<String>, bulk: bool) -> Response {
    let p = &user.principal;
    let caps = match state.vault.capabilities(p).await {
        Ok(c) => c,
        Err(e) => return user.fail(state, e),
    };
    let x = match state.vault.get_export(p, id).await {
        Ok(x) => x,
        Err(e) => return user.fail(state, e),
    };
    let ledger = match state.vault.takeout_ledger(p, Some(id)).await {
        Ok(l) => l,
        Err(e) => return user.fail(state, e),
    };
    let dates = Dates::of(state, user);
    let mine = x.requested_by == p.login;
    let approver = caps.can(Action::Approve) && caps.can_in(&x.collection, Action::Search);
    let open = x.status == "approved";
    let downloadable = mine
        && open
        && x.downloads_used < x.downloads_allowed
        && x.download_until.is_some_and(|t| t > state.vault.now())
        // A split with custodians is made once; its shares are then fetched by their custodians.
        && x.shares.is_empty();
    let lines: Vec<Value> = ledger.iter().map(|l| ledger_value(dates, l)).collect();
    let page = context! {
        x => export_value(dates, &x),
        ledger => lines,
        can_decide => approver && !mine && x.status == "pending",
        can_cancel => mine && x.status == "pending",
        can_download => downloadable,
        can_password => downloadable && x.protection == Protection::Password {},
        can_return => open && approver && !mine,
        can_witness => open && approver && !mine,
        password => password,
        bulk_warning => bulk || (mine && x.bulk && x.status == "pending"),
    };
    render(user.lang, "export.html", signed_in(state, user, &caps), page)
}

/// POST `/exports/{id}/password`: shows the file password once on the page (a POST, so it
/// is never cached, prefetched or left in the history as a URL).
pub(crate) async fn password(State(state): State<AppState>, user: WebUser, Path(id): Path<String>) -> Response {
    match state.vault.export_password(&user.principal, &id).await {
        Ok(password) => show(&state, &user, &id, Some(password.as_str().to_owned()), false).await,
        Err(e) => user.fail(&state, e),
    }
}

/// POST `/exports/{id}/download`: the protected file as an attachment (a ZIP of the share
/// files for a secret-split export).
pub(crate) async fn download(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let export = match state.vault.download_export(&user.principal, &id).await {
        Ok(x) => x,
        Err(e) => return user.fail(&state, e),
    };
    // A split with custodians hands nothing over: back to the request, which lists the
    // shares now held for their custodians.
    if !export.held.is_empty() {
        return redirect(&headers, &format!("/exports/{id}"));
    }
    match export.bundle() {
        Ok(file) => attachment(file),
        Err(e) => user.fail(&state, e),
    }
}

/// POST `/exports/{id}/share`: the share held for the caller, as an attachment, once.
pub(crate) async fn fetch_share(State(state): State<AppState>, user: WebUser, Path(id): Path<String>) -> Response {
    match state.vault.fetch_export_share(&user.principal, &id).await {
        Ok(file) => attachment(file),
        Err(e) => user.fail(&state, e),
    }
}

fn attachment(file: mamori_vault::OutFile) -> Response {
    let mut response = file.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(file.content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", file.name)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// POST `/exports/{id}/{action}`: approve, approve-bulk, reject, cancel, return, dispose.
pub(crate) async fn act(
    State(state): State<AppState>,
    user: WebUser,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let p = &user.principal;
    let vault = &state.vault;
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let result = match action.as_str() {
        "approve" => vault.decide_export(p, &id, true, form.get("confirm_bulk").is_some_and(|v| v == "on")).await,
        "reject" => vault.decide_export(p, &id, false, false).await,
        "cancel" => vault.cancel_export(p, &id).await,
        "return" => vault.settle_export(p, &id, &Settlement::Return { note: Some(field("note")) }).await,
        "dispose" => vault.settle_export(p, &id, &Settlement::Dispose { method: field("method") }).await,
        _ => Err(VaultError::NotFound("action")),
    };
    match result {
        Ok(_) => redirect(&headers, &format!("/exports/{id}")),
        Err(e) => user.fail(&state, e),
    }
}

/// `/takeout/ledger`: the whole take-out ledger (approvers and auditors).
pub(crate) async fn ledger(State(state): State<AppState>, user: WebUser, Query(q): Query<PageQuery>) -> Response {
    let p = &user.principal;
    let caps = match state.vault.capabilities(p).await {
        Ok(c) => c,
        Err(e) => return user.fail(&state, e),
    };
    let ledger = match state.vault.takeout_ledger(p, None).await {
        Ok(l) => l,
        Err(e) => return user.fail(&state, e),
    };
    let dates = Dates::of(&state, &user);
    let newest_first: Vec<&mamori_vault::LedgerEntry> = ledger.iter().rev().collect();
    let (shown, pager) = paginate(&newest_first, q.page, "/takeout/ledger");
    let lines: Vec<Value> = shown.iter().map(|l| ledger_value(dates, l)).collect();
    render(
        user.lang,
        "takeout_ledger.html",
        signed_in(&state, &user, &caps),
        context! { ledger => lines, pager => pager },
    )
}

fn ledger_value(dates: Dates, l: &mamori_vault::LedgerEntry) -> Value {
    context! { seq => l.seq, export_id => l.export_id.clone(), kind => l.kind.clone(), at => dates.show(l.at),
    actor => l.actor.clone(), rows => l.rows, detail => detail_text(dates, &l.detail) }
}

/// A ledger line's details as `key: value` pairs for people: file digests shortened, times
/// in the reader's zone.
fn detail_text(dates: Dates, detail: &serde_json::Value) -> String {
    use serde_json::Value as J;
    let Some(map) = detail.as_object() else { return String::new() };
    let show = |key: &str, v: &J| -> String {
        match v {
            J::String(s) => s.clone(),
            J::Array(items) => items
                .iter()
                .map(|i| match (i.get("name"), i.get("sha256")) {
                    (Some(J::String(name)), Some(J::String(digest))) => {
                        format!("{name} (SHA-256 {}…)", &digest[..digest.len().min(12)])
                    }
                    _ => i.as_str().map_or_else(|| i.to_string(), str::to_owned),
                })
                .collect::<Vec<_>>()
                .join(", "),
            J::Number(n) if key.ends_with("_at") => n
                .as_i64()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                .map_or_else(|| n.to_string(), |t| dates.show(t)),
            J::Null => "—".into(),
            other => other.to_string(),
        }
    };
    map.iter().map(|(k, v)| format!("{k}: {}", show(k, v))).collect::<Vec<_>>().join(" · ")
}
