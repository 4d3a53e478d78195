use super::{Body, Caller};
use crate::AppState;
use crate::problem::{ApiError, Problem};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mamori_core::access::Role;
use mamori_core::ids::SubjectId;
use mamori_vault::{ErasureCertificate, NewUser, UserSummary, VaultError};
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
    let new =
        NewUser { login: req.login, display_name: req.display_name, role, password: None, must_change_password: true };
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
