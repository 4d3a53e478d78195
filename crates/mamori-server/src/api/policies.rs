//! Authorization policies (four-eyes versions, dry run), break-glass grants and access
//! reviews.

use super::{Body, Caller};
use crate::AppState;
use crate::problem::{ApiError, Problem};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use mamori_vault::{AccessEntry, GrantInfo, PolicyChange, PolicyVersionInfo, ReviewDecision, UserSummary};
use serde::{Deserialize, Serialize};

#[utoipa::path(get, path = "/api/v1/policies", tag = "policies", security(("bearer" = [])),
    responses((status = 200, body = Vec<PolicyVersionInfo>), (status = 403, body = Problem)))]
pub(crate) async fn list_policies(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<PolicyVersionInfo>>, ApiError> {
    Ok(Json(state.vault.list_policy_versions(&caller.principal).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PolicyDocument {
    #[serde(flatten)]
    info: PolicyVersionInfo,
    /// The Cedar policy text (the guardrails, which are not editable, are not part of it).
    policies: String,
}

/// A policy version with its text; `active` names the version in force.
#[utoipa::path(get, path = "/api/v1/policies/{version}", tag = "policies", security(("bearer" = [])),
    params(("version" = String, Path, description = "a version number, or `active`")),
    responses((status = 200, body = PolicyDocument), (status = 404, body = Problem)))]
pub(crate) async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<String>,
) -> Result<Json<PolicyDocument>, ApiError> {
    let version = match version.as_str() {
        "active" => None,
        n => Some(n.parse::<u64>().map_err(|_| mamori_vault::VaultError::NotFound("policy version"))?),
    };
    let (info, policies) = state.vault.policy_version(&caller.principal, version).await?;
    Ok(Json(PolicyDocument { info, policies }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProposePolicy {
    /// The complete new Cedar policy text; every policy needs a unique `@id`.
    policies: String,
    /// Why the change is made (1–500 characters).
    summary: String,
}

/// Proposes a new policy version. It takes effect only when a second administrator
/// approves it.
#[utoipa::path(post, path = "/api/v1/policies", tag = "policies", security(("bearer" = [])),
    request_body = ProposePolicy,
    responses((status = 201, body = PolicyVersionInfo), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn propose_policy(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<ProposePolicy>,
) -> Result<(StatusCode, Json<PolicyVersionInfo>), ApiError> {
    let info = state.vault.propose_policy(&caller.principal, &req.policies, &req.summary).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Puts a proposed version into force: a logged-in administrator other than the proposer,
/// while the version it was proposed against is still in force (409 otherwise).
#[utoipa::path(post, path = "/api/v1/policies/{version}/approve", tag = "policies", security(("bearer" = [])),
    params(("version" = u64, Path)),
    responses((status = 200, body = PolicyVersionInfo), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn approve_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<u64>,
) -> Result<Json<PolicyVersionInfo>, ApiError> {
    Ok(Json(state.vault.decide_policy(&caller.principal, version, true).await?))
}

#[utoipa::path(post, path = "/api/v1/policies/{version}/reject", tag = "policies", security(("bearer" = [])),
    params(("version" = u64, Path)),
    responses((status = 200, body = PolicyVersionInfo), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn reject_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<u64>,
) -> Result<Json<PolicyVersionInfo>, ApiError> {
    Ok(Json(state.vault.decide_policy(&caller.principal, version, false).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct DryRunQuery {
    /// The collection whose records the rights are computed on.
    collection: String,
}

/// Who would gain or lose which right on a collection if this version were approved.
#[utoipa::path(get, path = "/api/v1/policies/{version}/dry-run", tag = "policies", security(("bearer" = [])),
    params(("version" = u64, Path), DryRunQuery),
    responses((status = 200, body = Vec<PolicyChange>), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn dry_run_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<u64>,
    Query(query): Query<DryRunQuery>,
) -> Result<Json<Vec<PolicyChange>>, ApiError> {
    Ok(Json(state.vault.policy_dry_run(&caller.principal, version, &query.collection).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakGlassRequest {
    collection: String,
    /// 1–240.
    minutes: u32,
    /// Why (10–1000 characters); stored encrypted, shown to approvers.
    reason: String,
}

/// Asks for time-boxed read access beyond one's policies; nothing opens until a second
/// administrator approves.
#[utoipa::path(post, path = "/api/v1/break-glass", tag = "policies", security(("bearer" = [])),
    request_body = BreakGlassRequest,
    responses((status = 201, body = GrantInfo), (status = 422, body = Problem)))]
pub(crate) async fn request_break_glass(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<BreakGlassRequest>,
) -> Result<(StatusCode, Json<GrantInfo>), ApiError> {
    let grant = state.vault.request_break_glass(&caller.principal, &req.collection, req.minutes, &req.reason).await?;
    Ok((StatusCode::CREATED, Json(grant)))
}

#[utoipa::path(get, path = "/api/v1/break-glass", tag = "policies", security(("bearer" = [])),
    responses((status = 200, body = Vec<GrantInfo>)))]
pub(crate) async fn list_break_glass(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<GrantInfo>>, ApiError> {
    Ok(Json(state.vault.list_break_glass(&caller.principal).await?))
}

/// `approve`, `reject` (a second person with the approve right) or `revoke` (ends it early).
#[utoipa::path(post, path = "/api/v1/break-glass/{id}/{decision}", tag = "policies", security(("bearer" = [])),
    params(("id" = String, Path), ("decision" = String, Path, description = "approve, reject or revoke")),
    responses((status = 200, body = GrantInfo), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub(crate) async fn decide_break_glass(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, decision)): Path<(String, String)>,
) -> Result<Json<GrantInfo>, ApiError> {
    let p = &caller.principal;
    let grant = match decision.as_str() {
        "approve" => state.vault.decide_break_glass(p, &id, true).await?,
        "reject" => state.vault.decide_break_glass(p, &id, false).await?,
        "revoke" => state.vault.revoke_break_glass(p, &id).await?,
        _ => return Err(mamori_vault::VaultError::NotFound("decision").into()),
    };
    Ok(Json(grant))
}

/// Every account's effective rights under the policies in force, for periodic review.
#[utoipa::path(get, path = "/api/v1/access-review", tag = "policies", security(("bearer" = [])),
    responses((status = 200, body = Vec<AccessEntry>), (status = 403, body = Problem)))]
pub(crate) async fn access_review(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<AccessEntry>>, ApiError> {
    Ok(Json(state.vault.access_review(&caller.principal).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewRequest {
    decision: ReviewDecision,
}

/// Confirms an account's rights, or revokes them (the account is disabled at once).
#[utoipa::path(post, path = "/api/v1/access-review/{login}", tag = "policies", security(("bearer" = [])),
    params(("login" = String, Path)), request_body = ReviewRequest,
    responses((status = 200, body = UserSummary), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn review_access(
    State(state): State<AppState>,
    caller: Caller,
    Path(login): Path<String>,
    Body(req): Body<ReviewRequest>,
) -> Result<Json<UserSummary>, ApiError> {
    Ok(Json(state.vault.review_access(&caller.principal, &login, req.decision).await?))
}
