//! `/api/v1/exports`: take-out requests, decisions, password, download, return/disposal,
//! and the take-out ledger (issue 9).

use super::{Body, Caller};
use crate::AppState;
use crate::problem::{ApiError, Problem, bad_request};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mamori_vault::{ExportInfo, ExportRequest, LedgerEntry, OutFile, Settlement, ShareForMe, ShareInfo, TakeoutAlert};
use serde::{Deserialize, Serialize};

/// Asks to take records out. Nothing leaves until a second person with the approve right
/// approves. The response carries warnings when a bulk threshold is crossed.
#[utoipa::path(post, path = "/api/v1/exports", tag = "exports", security(("bearer" = [])),
    request_body = ExportRequest,
    responses((status = 201, body = ExportInfo), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn request_export(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<ExportRequest>,
) -> Result<(StatusCode, Json<ExportInfo>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.vault.request_export(&caller.principal, &req).await?)))
}

/// Most requests one page of `GET /api/v1/exports` returns.
const MAX_PAGE: usize = 1_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportPage {
    /// Requests to skip (newest first); default 0.
    #[serde(default)]
    offset: usize,
    /// Requests to return, 1–1000; default 100.
    #[serde(default = "default_page")]
    limit: usize,
}

fn default_page() -> usize {
    100
}

/// Requests, newest first, a page at a time: approvers and auditors see all (auditors
/// without filter and recipient), everyone else their own. `Mamori-Total` says how many
/// there are in all.
#[utoipa::path(get, path = "/api/v1/exports", tag = "exports", security(("bearer" = [])), params(ExportPage),
    responses((status = 200, body = Vec<ExportInfo>), (status = 400, body = Problem)))]
pub(crate) async fn list_exports(
    State(state): State<AppState>,
    caller: Caller,
    page: Result<axum::extract::Query<ExportPage>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(page) = page.map_err(|e| bad_request("invalid-query", e.body_text()))?;
    if !(1..=MAX_PAGE).contains(&page.limit) {
        return Err(bad_request("invalid-query", format!("limit must be 1–{MAX_PAGE}")));
    }
    let all = state.vault.list_exports(&caller.principal).await?;
    let total = all.len();
    let shown: Vec<ExportInfo> = all.into_iter().skip(page.offset).take(page.limit).collect();
    let mut response = Json(shown).into_response();
    response.headers_mut().insert(HeaderName::from_static("mamori-total"), HeaderValue::from(total));
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/exports/{id}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ExportInfo), (status = 404, body = Problem)))]
pub(crate) async fn get_export(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ExportInfo>, ApiError> {
    Ok(Json(state.vault.get_export(&caller.principal, &id).await?))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionBody {
    /// Needed to approve a request above the per-request hard limit.
    #[serde(default)]
    confirm_bulk: bool,
}

/// `approve` or `reject` (a second person with the approve right, never the requester), or
/// `cancel` (the requester, while pending). The body is optional.
#[utoipa::path(post, path = "/api/v1/exports/{id}/{decision}", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path), ("decision" = String, Path, description = "approve, reject or cancel")),
    request_body(content = Option<DecisionBody>),
    responses((status = 200, body = ExportInfo), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub(crate) async fn decide_export(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, decision)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<ExportInfo>, ApiError> {
    let p = &caller.principal;
    let body: DecisionBody = if body.iter().all(u8::is_ascii_whitespace) {
        DecisionBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            bad_request("invalid-body", "the body must be {\"confirm_bulk\": true|false} or empty".into())
        })?
    };
    let confirm_bulk = body.confirm_bulk;
    let info = match decision.as_str() {
        "approve" => state.vault.decide_export(p, &id, true, confirm_bulk).await?,
        "reject" => state.vault.decide_export(p, &id, false, false).await?,
        "cancel" => state.vault.cancel_export(p, &id).await?,
        _ => return Err(mamori_vault::VaultError::NotFound("decision").into()),
    };
    Ok(Json(info))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ExportPassword {
    /// Give it to the recipient over a different channel than the file (002-T-11).
    password: String,
}

/// The file password of an approved, password-protected export: the requester only; each
/// showing is audited.
#[utoipa::path(get, path = "/api/v1/exports/{id}/password", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ExportPassword), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn export_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ExportPassword>, ApiError> {
    let password = state.vault.export_password(&caller.principal, &id).await?;
    Ok(Json(ExportPassword { password: password.as_str().to_owned() }))
}

/// What a download of a secret split with custodians answers: the shares were made and are
/// held for their custodians, who fetch them with `POST /api/v1/exports/{id}/share`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SharesHeld {
    export_id: String,
    rows: u64,
    withheld: u64,
    shares: Vec<ShareInfo>,
    warnings: Vec<String>,
}

/// Downloads an approved export (the requester, within the window, at most the allowed
/// number of times). The body is the protected file (a secret split without custodians, from
/// before custodians existed, comes as a ZIP of its share files). A secret split with
/// custodians answers 202 instead: its shares are made and held, each for its custodian.
/// `Mamori-Rows`, `Mamori-Download` (`n/max`), `Mamori-Encrypted` and `Mamori-Warning`
/// describe it.
#[utoipa::path(post, path = "/api/v1/exports/{id}/download", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The protected file", content_type = "application/octet-stream"),
        (status = 202, body = SharesHeld),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn download_export(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let export = state.vault.download_export(&caller.principal, &id).await?;
    let (rows, download, allowed, encrypted) =
        (export.rows, export.download, export.downloads_allowed, export.encrypted);
    let warning = export.warnings.join("; ");
    if !export.held.is_empty() {
        let held = SharesHeld {
            export_id: export.export_id,
            rows,
            withheld: export.withheld,
            shares: export.held,
            warnings: export.warnings,
        };
        return Ok((StatusCode::ACCEPTED, Json(held)).into_response());
    }
    let file = export.bundle()?;
    Ok(attachment(file, |set| {
        set(HeaderName::from_static("mamori-rows"), rows.to_string());
        set(HeaderName::from_static("mamori-download"), format!("{download}/{allowed}"));
        set(HeaderName::from_static("mamori-encrypted"), encrypted.to_string());
        if !warning.is_empty() {
            set(HeaderName::from_static("mamori-warning"), warning.clone());
        }
    }))
}

/// A file as an attachment, with `more` headers.
fn attachment(file: OutFile, more: impl FnOnce(&mut dyn FnMut(HeaderName, String))) -> Response {
    let mut response = file.bytes.into_response();
    let headers = response.headers_mut();
    let mut set = |name: HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set(header::CONTENT_TYPE, file.content_type.to_owned());
    set(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}\"", file.name));
    more(&mut set);
    response
}

/// Fetches the share of a secret-split export held for the caller (its custodian), once,
/// within the export's download window. Anyone else gets 404.
#[utoipa::path(post, path = "/api/v1/exports/{id}/share", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The share file", content_type = "application/octet-stream"),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn fetch_export_share(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let file = state.vault.fetch_export_share(&caller.principal, &id).await?;
    Ok(attachment(file, |_| {}))
}

/// Shares held for the caller as a custodian, still to be fetched.
#[utoipa::path(get, path = "/api/v1/exports/shares", tag = "exports", security(("bearer" = [])),
    responses((status = 200, body = Vec<ShareForMe>)))]
pub(crate) async fn shares_for_me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ShareForMe>>, ApiError> {
    Ok(Json(state.vault.shares_for_me(&caller.principal).await?))
}

/// Closes an approved export: `{"kind":"return","note"}` (recorded by the approver who
/// received the data back) or `{"kind":"dispose","method"}` (recorded by the witness). Either
/// way an approver of the collection other than the requester; the requester gets 422.
#[utoipa::path(post, path = "/api/v1/exports/{id}/settle", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Settlement,
    responses((status = 200, body = ExportInfo), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn settle_export(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(how): Body<Settlement>,
) -> Result<Json<ExportInfo>, ApiError> {
    Ok(Json(state.vault.settle_export(&caller.principal, &id, &how).await?))
}

/// One request's ledger lines (its requester, approvers, auditors).
#[utoipa::path(get, path = "/api/v1/exports/{id}/ledger", tag = "exports", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Vec<LedgerEntry>), (status = 404, body = Problem)))]
pub(crate) async fn export_ledger(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<LedgerEntry>>, ApiError> {
    Ok(Json(state.vault.takeout_ledger(&caller.principal, Some(&id)).await?))
}

/// The whole take-out ledger (持ち出し管理台帳), oldest first: approvers and auditors.
#[utoipa::path(get, path = "/api/v1/takeout/ledger", tag = "exports", security(("bearer" = [])),
    responses((status = 200, body = Vec<LedgerEntry>), (status = 403, body = Problem)))]
pub(crate) async fn takeout_ledger(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<LedgerEntry>>, ApiError> {
    Ok(Json(state.vault.takeout_ledger(&caller.principal, None).await?))
}

/// What approvers should act on: pending requests, overdue returns, thresholds crossed.
#[utoipa::path(get, path = "/api/v1/takeout/alerts", tag = "exports", security(("bearer" = [])),
    responses((status = 200, body = Vec<TakeoutAlert>)))]
pub(crate) async fn takeout_alerts(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TakeoutAlert>>, ApiError> {
    Ok(Json(state.vault.takeout_alerts(&caller.principal).await?))
}
