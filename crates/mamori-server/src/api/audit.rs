//! `/api/v1/audit`: verification, queries and review marks, for the roles allowed to read
//! the audit trail (auditors and privacy officers). Every call is itself audited. No call
//! here names a file: the checkpoint file is set in the server's configuration only.

use super::{Body, Caller};
use crate::AppState;
use crate::problem::{ApiError, Problem, bad_request};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use mamori_vault::{AuditFilter, AuditPage, ReviewMark, VerifyReport};
use serde::Deserialize;

/// Verifies the audit trail: hash chain, sequence, stored checkpoints and the configured
/// external checkpoint file.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = VerifyReport), (status = 403, body = Problem)))]
pub(crate) async fn verify_audit(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<VerifyReport>, ApiError> {
    state.vault.authorize_audit_read(&caller.principal).await?;
    Ok(Json(state.vault.verify_audit().await?))
}

/// Searches the audit trail: by time, actor, data subject, collection, record, action
/// prefix or outcome; failed logins; administrator operations (with the latest review
/// mark). Pages with `after_seq` and `limit` (at most 1000).
#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit", security(("bearer" = [])),
    params(AuditFilter),
    responses((status = 200, body = AuditPage), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn query_audit(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<AuditFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(filter) = params.map_err(|e| {
        // The message may quote a value; name the problem only.
        let detail = match e.body_text().split_once(": ") {
            Some((_, rest)) if rest.starts_with("unknown field") => rest.chars().take(200).collect(),
            _ => "a query parameter has the wrong form (times are RFC 3339)".into(),
        };
        bad_request("invalid-query", detail)
    })?;
    Ok(Json(state.vault.query_audit(&caller.principal, &filter).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewRequest {
    /// The last sequence number whose administrator operations were reviewed.
    reviewed_to: u64,
    /// What was checked and found: ids and findings, never personal data (1–500 characters).
    note: String,
}

/// Records that administrator operations up to a sequence number were reviewed by the
/// caller, now. The mark is itself an audit event (`audit.review`).
#[utoipa::path(post, path = "/api/v1/audit/reviews", tag = "audit", security(("bearer" = [])),
    request_body = ReviewRequest,
    responses((status = 201, body = ReviewMark), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn review_audit(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<ReviewRequest>,
) -> Result<(StatusCode, Json<ReviewMark>), ApiError> {
    let mark = state.vault.review_audit(&caller.principal, req.reviewed_to, &req.note).await?;
    Ok((StatusCode::CREATED, Json(mark)))
}
