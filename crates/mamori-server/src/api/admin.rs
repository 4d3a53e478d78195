use super::{Body, Caller};
use crate::AppState;
use crate::problem::{ApiError, Problem};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use mamori_core::access::Role;
use mamori_core::ids::SubjectId;
use mamori_vault::{ErasureCertificate, NewUser, ProfileChange, SyncReport, UserSummary, VaultError};
use serde::{Deserialize, Serialize};

/// Erases a data subject everywhere by destroying its data keys (crypto-shredding).
#[utoipa::path(delete, path = "/api/v1/subjects/{subject}", tag = "subjects", security(("bearer" = [])),
    params(("subject" = String, Path)),
    responses((status = 200, body = ErasureCertificate), (status = 403, body = Problem)))]
pub(crate) async fn erase_subject(
    State(state): State<AppState>,
    caller: Caller,
    Path(subject): Path<String>,
) -> Result<Json<ErasureCertificate>, ApiError> {
    let subject = SubjectId::new(&subject).map_err(VaultError::from)?;
    Ok(Json(state.vault.erase_subject(&caller.principal, &subject).await?))
}

#[utoipa::path(get, path = "/api/v1/erasure-certificates", tag = "subjects", security(("bearer" = [])),
    responses((status = 200, body = Vec<ErasureCertificate>), (status = 403, body = Problem)))]
pub(crate) async fn list_erasure_certificates(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ErasureCertificate>>, ApiError> {
    Ok(Json(state.vault.erasure_certificates(&caller.principal).await?))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Vec<UserSummary>), (status = 403, body = Problem)))]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<UserSummary>>, ApiError> {
    Ok(Json(state.vault.list_users(&caller.principal).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUserRequest {
    login: String,
    display_name: String,
    /// `staff`, `manager`, `auditor`, `privacy_officer` or `system_admin`.
    role: String,
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    title: Option<String>,
    /// End of the account's validity (RFC 3339); required for vendor accounts.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    valid_until: Option<time::OffsetDateTime>,
    #[serde(default)]
    vendor: bool,
    /// Highest tier cleared for: `public`, `confidential`, `secret`, `top_secret`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    clearance: Option<mamori_core::schema::Tier>,
    /// Security training valid until (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    training_valid_until: Option<time::OffsetDateTime>,
    /// The confidentiality pledge is signed (recorded as of now).
    #[serde(default)]
    pledge_signed: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedUser {
    user: UserSummary,
    /// One-time password, shown only in this response; it must be changed at first login.
    /// Absent when the account reads personal data: it then starts disabled, and a privacy
    /// officer activates it (`POST /api/v1/users/{login}/activate`) and receives the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    one_time_password: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    request_body = CreateUserRequest,
    responses((status = 201, body = CreatedUser), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateUserRequest>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    let role: Role = req.role.parse().map_err(VaultError::Invalid)?;
    let new = NewUser {
        department: req.department,
        title: req.title,
        valid_until: req.valid_until,
        vendor: req.vendor,
        clearance: req.clearance,
        training_valid_until: req.training_valid_until,
        pledge_signed: req.pledge_signed,
        ..NewUser::new(req.login, req.display_name, role)
    };
    let (user, password) = state.vault.create_user(&caller.principal, new).await?;
    let one_time_password = password.map(|p| p.expose().to_owned());
    Ok((StatusCode::CREATED, Json(CreatedUser { user, one_time_password })))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Activated {
    /// One-time password for the activated account, shown only here; it must be changed at
    /// first login. Hand it to the account's owner over a separate channel.
    one_time_password: String,
}

/// Activates an account whose role reads personal data (privacy officers only).
#[utoipa::path(post, path = "/api/v1/users/{login}/activate", tag = "users", security(("bearer" = [])),
    params(("login" = String, Path)),
    responses((status = 200, body = Activated), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn activate_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(login): Path<String>,
) -> Result<Json<Activated>, ApiError> {
    let password = state.vault.activate_user(&caller.principal, &login).await?;
    Ok(Json(Activated { one_time_password: password.expose().to_owned() }))
}

async fn set_disabled(state: AppState, caller: Caller, login: String, disabled: bool) -> Result<StatusCode, ApiError> {
    state.vault.set_user_disabled(&caller.principal, &login, disabled).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disables an account; its sessions end and its next request is refused.
#[utoipa::path(post, path = "/api/v1/users/{login}/disable", tag = "users", security(("bearer" = [])),
    params(("login" = String, Path)), responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn disable_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(login): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_disabled(state, caller, login, true).await
}

#[utoipa::path(post, path = "/api/v1/users/{login}/enable", tag = "users", security(("bearer" = [])),
    params(("login" = String, Path)), responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn enable_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(login): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_disabled(state, caller, login, false).await
}

/// Changes an account's details; a role change ends its sessions.
#[utoipa::path(patch, path = "/api/v1/users/{login}", tag = "users", security(("bearer" = [])),
    params(("login" = String, Path)), request_body = ProfileChange,
    responses((status = 200, body = UserSummary), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(login): Path<String>,
    Body(change): Body<ProfileChange>,
) -> Result<Json<UserSummary>, ApiError> {
    Ok(Json(state.vault.update_user(&caller.principal, &login, change).await?))
}

/// Lifts a lockout after repeated failed logins.
#[utoipa::path(post, path = "/api/v1/users/{login}/unlock", tag = "users", security(("bearer" = [])),
    params(("login" = String, Path)), responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn unlock_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(login): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.vault.unlock_user(&caller.principal, &login).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes an account's second factor (lost device); it enrols again at its next login.
#[utoipa::path(post, path = "/api/v1/users/{login}/mfa-reset", tag = "users", security(("bearer" = [])),
    params(("login" = String, Path)), responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn reset_mfa(
    State(state): State<AppState>,
    caller: Caller,
    Path(login): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.vault.reset_mfa(&caller.principal, &login).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct SyncQuery {
    /// `true` makes the changes; otherwise only the plan is returned.
    #[serde(default)]
    apply: bool,
}

/// Reconciles the accounts with an HR roster sent as CSV (header: `login`, `name`, and
/// optionally `department`, `title`, `role`, `status` = active/在職, leave/休職, left/退職).
/// Without `apply=true` nothing changes and `plan` says what would. Accounts missing from the
/// file are disabled (not vendor accounts); disabled ones are never re-enabled by it; new
/// accounts that read personal data wait for a privacy officer's activation.
#[utoipa::path(post, path = "/api/v1/users/sync", tag = "users", security(("bearer" = [])),
    params(SyncQuery), request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = SyncReport), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn sync_users(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<SyncQuery>,
    body: axum::body::Bytes,
) -> Result<Json<SyncReport>, ApiError> {
    Ok(Json(state.vault.sync_users_csv(&caller.principal, &body[..], query.apply).await?))
}
