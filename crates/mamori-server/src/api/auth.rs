use super::{Attempt, Body, Caller, Device, Source};
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
    /// The authenticator's 6-digit code, or a recovery code, where MFA applies.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    totp: Option<SecretString>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct LoginResponse {
    /// Bearer token for `Authorization: Bearer …`. Shown once; only its hash is stored.
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: time::OffsetDateTime,
    /// When true the token may only be used to change the password …
    password_change_required: bool,
    /// … or to enrol a second factor (`POST /api/v1/auth/totp`), which this account must use.
    mfa_enrolment_required: bool,
}

/// Logs in (over HTTPS, a presented device certificate counts for roles that need one).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = Problem),
        (status = 429, body = Problem, description = "Too many attempts from this address",
            headers(("Retry-After" = u64, description = "Seconds until the next attempt is allowed")))))]
pub(crate) async fn login(
    _: Attempt,
    State(state): State<AppState>,
    Source(source): Source,
    Device(device): Device,
    Body(req): Body<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let out =
        state.vault.login_with_device(&req.login, &req.password, req.totp.as_ref(), source, device.as_deref()).await?;
    Ok(Json(LoginResponse {
        token: out.token.expose().to_owned(),
        expires_at: out.expires_at,
        password_change_required: out.password_change_required,
        mfa_enrolment_required: out.mfa_enrolment_required,
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

/// Changes the caller's password; every session of the caller ends, so log in again. A wrong
/// current password counts towards the account's lockout like a failed login, and the
/// failure that locks the account also ends its sessions.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 204), (status = 401, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem, description = "Too many attempts from this address",
            headers(("Retry-After" = u64, description = "Seconds until the next attempt is allowed")))))]
pub(crate) async fn change_password(
    _: Attempt,
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    state.vault.change_password(&caller.principal, &req.current_password, &req.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TotpEnrolmentResponse {
    /// The secret in base32, for typing into an authenticator app. Shown only here.
    secret: String,
    otpauth_uri: String,
    /// The `otpauth://` URI as a QR code (SVG).
    qr_svg: String,
    /// Send back with the first code to `POST /api/v1/auth/totp/confirm` (valid 10 minutes).
    enrolment: String,
}

/// Starts enrolling the caller's authenticator (also allowed in a setup session).
#[utoipa::path(post, path = "/api/v1/auth/totp", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = TotpEnrolmentResponse), (status = 401, body = Problem)))]
pub(crate) async fn begin_totp(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TotpEnrolmentResponse>, ApiError> {
    let e = state.vault.begin_totp_enrolment(&caller.principal).await?;
    Ok(Json(TotpEnrolmentResponse {
        secret: e.secret_base32.expose().to_owned(),
        otpauth_uri: e.otpauth_uri.expose().to_owned(),
        qr_svg: e.qr_svg.expose().to_owned(),
        enrolment: e.enrolment,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfirmTotpRequest {
    enrolment: String,
    #[schema(value_type = String, format = Password)]
    code: SecretString,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RecoveryCodesResponse {
    /// One-time recovery codes, shown only here. Each works once instead of a TOTP code.
    recovery_codes: Vec<String>,
}

/// Completes the enrolment with the first code; every session of the caller ends.
#[utoipa::path(post, path = "/api/v1/auth/totp/confirm", tag = "auth", security(("bearer" = [])),
    request_body = ConfirmTotpRequest,
    responses((status = 200, body = RecoveryCodesResponse), (status = 422, body = Problem),
        (status = 429, body = Problem, description = "Too many attempts from this address",
            headers(("Retry-After" = u64, description = "Seconds until the next attempt is allowed")))))]
pub(crate) async fn confirm_totp(
    _: Attempt,
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<ConfirmTotpRequest>,
) -> Result<Json<RecoveryCodesResponse>, ApiError> {
    let codes = state.vault.confirm_totp_enrolment(&caller.principal, &req.enrolment, &req.code).await?;
    Ok(Json(RecoveryCodesResponse { recovery_codes: codes.iter().map(|c| c.expose().to_owned()).collect() }))
}
