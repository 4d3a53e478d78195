use super::{Body, Caller};
use crate::AppState;
use crate::problem::{ApiError, Problem, bad_request};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use mamori_core::ids::{RecordId, SubjectId};
use mamori_vault::{RecordView, VaultError, View};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn record_id(raw: &str) -> Result<RecordId, ApiError> {
    raw.parse().map_err(|_| bad_request("invalid-id", "the record id must be a UUID".into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRecordRequest {
    /// The data subject (本人) the record belongs to: a pseudonymous id such as a customer
    /// number, never a personal value. A new subject is created when omitted.
    #[serde(default)]
    subject_id: Option<String>,
    /// Owning department (need-to-know); the caller's own when omitted. Policies decide
    /// whether the caller may create records for another department.
    #[serde(default)]
    department: Option<String>,
    /// Field values by field name.
    fields: BTreeMap<String, String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Created {
    #[schema(value_type = String, format = Uuid)]
    id: RecordId,
}

#[utoipa::path(post, path = "/api/v1/collections/{name}/records", tag = "records", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = CreateRecordRequest,
    responses((status = 201, body = Created), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_record(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(req): Body<CreateRecordRequest>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let subject = req.subject_id.as_deref().map(SubjectId::new).transpose().map_err(VaultError::from)?;
    let department = req.department.as_deref();
    let id = state.vault.create_record_in(&caller.principal, &name, subject, department, &req.fields).await?;
    Ok((StatusCode::CREATED, Json(Created { id })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadParams {
    /// `masked` (default) or `full`.
    #[serde(default)]
    view: View,
    /// Purpose of this access (利用目的), recorded in the audit log; required for a full
    /// view where the collection asks for one.
    #[serde(default)]
    purpose: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/collections/{name}/records/{id}", tag = "records", security(("bearer" = [])),
    params(("name" = String, Path), ("id" = String, Path), ReadParams),
    responses((status = 200, body = RecordView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn get_record(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
    params: Result<Query<ReadParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RecordView>, ApiError> {
    let Query(params) = params.map_err(|e| bad_request("invalid-query", e.body_text()))?;
    let id = record_id(&id)?;
    Ok(Json(state.vault.get_record(&caller.principal, &name, &id, params.view, params.purpose.as_deref()).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateRecordRequest {
    /// Fields to replace; others keep their values. An empty string clears an optional field.
    fields: BTreeMap<String, String>,
}

#[utoipa::path(patch, path = "/api/v1/collections/{name}/records/{id}", tag = "records", security(("bearer" = [])),
    params(("name" = String, Path), ("id" = String, Path)), request_body = UpdateRecordRequest,
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update_record(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
    Body(req): Body<UpdateRecordRequest>,
) -> Result<StatusCode, ApiError> {
    let id = record_id(&id)?;
    state.vault.update_record(&caller.principal, &name, &id, &req.fields).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/collections/{name}/records/{id}", tag = "records", security(("bearer" = [])),
    params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn delete_record(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = record_id(&id)?;
    state.vault.delete_record(&caller.principal, &name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Search is a POST so that the searched value travels in the body, never in a URL that
/// proxies and access logs would keep.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchRequest {
    field: String,
    value: String,
    #[serde(default)]
    view: View,
    #[serde(default)]
    purpose: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SearchResponse {
    count: usize,
    records: Vec<RecordView>,
}

#[utoipa::path(post, path = "/api/v1/collections/{name}/search", tag = "records", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = SearchRequest,
    responses((status = 200, body = SearchResponse), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn search(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(req): Body<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    if req.value.chars().count() > 1000 {
        return Err(VaultError::Invalid("the search value is longer than 1000 characters".into()).into());
    }
    let records =
        state.vault.search(&caller.principal, &name, &req.field, &req.value, req.view, req.purpose.as_deref()).await?;
    Ok(Json(SearchResponse { count: records.len(), records }))
}
