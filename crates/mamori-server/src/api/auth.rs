use super::{Body, Caller, Source};
use crate::AppState;
use crate::problem::{ApiError, Problem};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mamori_crypto::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    login: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    /// One-time code of the user's authenticator, where MFA applies. Accounts have no MFA
    /// enrolment yet (the identity work adds it); a code sent for such an account is ignored.
    #[serde(default)]
    #[allow(dead_code)]
    totp: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct LoginResponse {
    /// Bearer token for `Authorization: Bearer …`. Shown once; only its hash is stored.
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: time::OffsetDateTime,
    /// When true the token may only be used to change the password.
    password_change_required: bool,
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = Problem)))]
pub(crate) async fn login(
    State(state): State<AppState>,
    Source(source): Source,
    Body(req): Body<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let out = state.vault.login(&req.login, &req.password, source).await?;
    Ok(Json(LoginResponse {
        token: out.token.expose().to_owned(),
        expires_at: out.expires_at,
        password_change_required: out.password_change_required,
    }))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
pub(crate) async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    state.vault.logout(&caller.principal, &caller.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePasswordRequest {
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    new_password: SecretString,
}

/// Changes the caller's password; every session of the caller ends, so log in again.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 204), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    state.vault.change_password(&caller.principal, &req.current_password, &req.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}
