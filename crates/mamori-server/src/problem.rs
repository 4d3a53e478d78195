//! RFC 9457 problem details. Each [`VaultError`] maps to one stable `type` URI; clients
//! branch on `type`, people read `title` and `detail`. Details never contain field values
//! (the vault's errors never carry them), and internal errors are not detailed at all.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mamori_vault::{RowError, VaultError};
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem, e.g. `urn:mamori:problem:forbidden`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Row-level problems of a rejected import.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<RowError>,
    /// Rules a rejected password broke: stable slugs (e.g. `too-short`) with messages in
    /// Japanese and English. Never any part of the password.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Violation {
    pub rule: &'static str,
    pub message_ja: String,
    pub message_en: String,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: Option<String>) -> Self {
        Self {
            kind: format!("urn:mamori:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            errors: Vec::new(),
            violations: Vec::new(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = (status, Json(self)).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        res
    }
}

/// An error on its way out of a handler (boxed: handlers return it on every path).
#[derive(Debug)]
pub struct ApiError(pub Box<Problem>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.0.into_response();
        if res.status() == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        use StatusCode as S;
        let p = match e {
            VaultError::Unauthenticated => {
                Problem::new(S::UNAUTHORIZED, "unauthenticated", "Authentication required", None)
            }
            VaultError::PasswordChangeRequired => Problem::new(
                S::FORBIDDEN,
                "password-change-required",
                "Password change required",
                Some("change the password with POST /api/v1/auth/password first".into()),
            ),
            VaultError::Forbidden => Problem::new(S::FORBIDDEN, "forbidden", "Not permitted", None),
            VaultError::OutsideAccessWindow(refusal) => Problem::new(
                S::FORBIDDEN,
                "outside-access-window",
                "Access not permitted at this time or from this network",
                Some(refusal.to_string()),
            ),
            VaultError::NotFound(what) => {
                Problem::new(S::NOT_FOUND, "not-found", "Not found", Some(format!("{what} not found")))
            }
            VaultError::Invalid(m) => Problem::new(S::UNPROCESSABLE_ENTITY, "invalid-input", "Invalid input", Some(m)),
            VaultError::MfaRequired => Problem::new(
                S::UNAUTHORIZED,
                "mfa-required",
                "One-time code required",
                Some("send the authenticator's code (or a recovery code) as `totp`; an account that has not enrolled must do so from a trusted network".into()),
            ),
            VaultError::PasswordRejected(r) => {
                let mut p = Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "password-rejected",
                    "The password does not meet the policy",
                    Some(r.message_en()),
                );
                p.violations = r
                    .violations()
                    .iter()
                    .map(|v| Violation { rule: v.slug(), message_ja: v.message_ja(), message_en: v.message_en() })
                    .collect();
                p
            }
            VaultError::Conflict(m) => Problem::new(S::CONFLICT, "conflict", "Conflict", Some(m)),
            VaultError::TakeoutLimit(m) => {
                Problem::new(S::FORBIDDEN, "takeout-limit", "Take-out limit reached", Some(m))
            }
            VaultError::ImportRejected { errors, truncated } => {
                let mut p = Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "import-rejected",
                    "Import rejected; nothing was written",
                    Some(format!("{} problem(s){}", errors.len(), if truncated { ", more not shown" } else { "" })),
                );
                p.errors = errors;
                p
            }
            VaultError::AuditUnavailable(m) => {
                tracing::error!(error = %m, "audit log unavailable, request failed closed");
                Problem::new(
                    S::SERVICE_UNAVAILABLE,
                    "audit-unavailable",
                    "Audit log unavailable",
                    Some("the operation was not performed because it could not be recorded".into()),
                )
            }
            VaultError::Unavailable(m) => {
                tracing::error!(error = %m, "storage unavailable");
                Problem::new(S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", None)
            }
            VaultError::Integrity(m) => {
                tracing::error!(error = %m, "integrity failure: possible tampering");
                Problem::new(S::INTERNAL_SERVER_ERROR, "integrity", "Stored data failed its integrity check", None)
            }
            VaultError::WrongMasterKey | VaultError::Internal(_) => {
                tracing::error!(error = %e, "internal error");
                Problem::new(S::INTERNAL_SERVER_ERROR, "internal", "Internal error", None)
            }
        };
        ApiError(Box::new(p))
    }
}

pub fn bad_request(slug: &str, detail: String) -> ApiError {
    ApiError(Box::new(Problem::new(StatusCode::BAD_REQUEST, slug, "Bad request", Some(detail))))
}

/// 429 with `Retry-After`: too many authentication attempts from one source address.
pub fn too_many_attempts(retry_after_seconds: u64) -> Response {
    let problem = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-attempts",
        "Too many attempts",
        Some(format!("too many authentication attempts from this address; try again in {retry_after_seconds} s")),
    );
    let mut res = problem.into_response();
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
    res
}
