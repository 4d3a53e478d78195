//! `/api/v1`, split by resource. Shared here: the bearer-token extractor and the JSON body
//! extractor that turns every malformed body into a problem+json answer.

mod admin;
mod audit;
mod auth;
mod collections;
mod exports;
mod policies;
mod records;

use crate::AppState;
use crate::problem::{ApiError, bad_request, too_many_attempts};
use crate::throttle::{Verdict, retry_after_seconds};
use crate::tls::Peer;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use mamori_crypto::SessionToken;
use mamori_vault::{Principal, VaultError};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

pub(crate) use admin::*;
pub(crate) use audit::*;
pub(crate) use auth::*;
pub(crate) use collections::*;
pub(crate) use exports::*;
pub(crate) use policies::*;
pub(crate) use records::*;

pub(crate) fn routes() -> Router<AppState> {
    use axum::routing::{delete, get, patch, post, put};
    Router::new()
        .route("/api/v1/openapi.json", get(crate::openapi::serve))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/password", post(change_password))
        .route("/api/v1/auth/totp", post(begin_totp))
        .route("/api/v1/auth/totp/confirm", post(confirm_totp))
        .route("/api/v1/collections", get(list_collections).post(create_collection))
        .route("/api/v1/collections/{name}", get(get_collection))
        .route("/api/v1/collections/{name}/schema", put(update_schema))
        .route("/api/v1/collections/{name}/records", post(create_record))
        .route("/api/v1/collections/{name}/records/{id}", get(get_record).patch(update_record).delete(delete_record))
        .route("/api/v1/collections/{name}/search", post(search))
        .route("/api/v1/subjects/{subject}", delete(erase_subject))
        .route("/api/v1/erasure-certificates", get(list_erasure_certificates))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/sync", post(sync_users))
        .route("/api/v1/users/{login}/disable", post(disable_user))
        .route("/api/v1/users/{login}/enable", post(enable_user))
        .route("/api/v1/users/{login}/activate", post(activate_user))
        .route("/api/v1/users/{login}", patch(update_user))
        .route("/api/v1/users/{login}/unlock", post(unlock_user))
        .route("/api/v1/users/{login}/mfa-reset", post(reset_mfa))
        .route("/api/v1/audit/verify", get(verify_audit))
        .route("/api/v1/audit/events", get(query_audit))
        .route("/api/v1/audit/reviews", post(review_audit))
        .route("/api/v1/policies", get(list_policies).post(propose_policy))
        .route("/api/v1/policies/{version}", get(get_policy))
        .route("/api/v1/policies/{version}/approve", post(approve_policy))
        .route("/api/v1/policies/{version}/reject", post(reject_policy))
        .route("/api/v1/policies/{version}/dry-run", get(dry_run_policy))
        .route("/api/v1/break-glass", get(list_break_glass).post(request_break_glass))
        .route("/api/v1/break-glass/{id}/{decision}", post(decide_break_glass))
        .route("/api/v1/access-review", get(access_review))
        .route("/api/v1/access-review/{login}", post(review_access))
        .route("/api/v1/exports", get(list_exports).post(request_export))
        .route("/api/v1/exports/{id}", get(get_export))
        .route("/api/v1/exports/{id}/password", get(export_password))
        .route("/api/v1/exports/shares", get(shares_for_me))
        .route("/api/v1/exports/{id}/download", post(download_export))
        .route("/api/v1/exports/{id}/share", post(fetch_export_share))
        .route("/api/v1/exports/{id}/settle", post(settle_export))
        .route("/api/v1/exports/{id}/ledger", get(export_ledger))
        .route("/api/v1/exports/{id}/{decision}", post(decide_export))
        .route("/api/v1/takeout/ledger", get(takeout_ledger))
        .route("/api/v1/takeout/alerts", get(takeout_alerts))
}

/// The caller's address, for the audit log and the vault's network rules: the socket's, or
/// behind a trusted proxy the client it names (see `proxy.rs`).
pub(crate) fn source(parts: &Parts, state: &AppState) -> Option<String> {
    peer_ip(parts, state).map(|ip| ip.to_string())
}

pub(crate) fn peer_ip(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    crate::proxy::client_ip(&state.trusted_proxies, parts)
}

/// An authenticated caller: `Authorization: Bearer <token>`, resolved on every request, so a
/// disabled account or an ended session is refused at once.
pub(crate) struct Caller {
    pub principal: Principal,
    pub token: SessionToken,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or(ApiError::from(VaultError::Unauthenticated))?;
        let token = SessionToken::from_presented(token);
        let principal = state.vault.authenticate(&token, source(parts, state)).await?;
        Ok(Caller { principal, token })
    }
}

/// The caller's source address without authentication (for login).
pub(crate) struct Source(pub Option<String>);

impl FromRequestParts<AppState> for Source {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Source(source(parts, state)))
    }
}

/// The verified device certificate of the connection (its SHA-256 fingerprint), if the
/// client presented one (for login).
pub(crate) struct Device(pub Option<String>);

impl FromRequestParts<AppState> for Device {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Device(parts.extensions.get::<ConnectInfo<Peer>>().and_then(|c| c.0.device.clone())))
    }
}

/// One authentication attempt, admitted by the per-source throttle ([`crate::throttle`]).
/// It is the handler's first argument, so a refused attempt costs no body parsing, no
/// session lookup and no Argon2: only a 429 and, at most once a minute per source, an
/// audit event.
pub(crate) struct Attempt;

impl FromRequestParts<AppState> for Attempt {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // Without a socket address (a router served without connect info) all such callers
        // share one bucket: throttled together rather than not at all.
        let ip = peer_ip(parts, state).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        match state.throttle.check(ip, Instant::now()) {
            Verdict::Allow => Ok(Attempt),
            Verdict::Refuse { retry_after, record } => {
                if let Some(refused) = record
                    && let Err(e) = state
                        .vault
                        .record_throttled_login(
                            peer_ip(parts, state).map(|ip| ip.to_string()),
                            refused,
                            &format!("{} {}", parts.method, parts.uri.path()),
                        )
                        .await
                {
                    return Err(ApiError::from(e).into_response());
                }
                Err(too_many_attempts(retry_after_seconds(retry_after)))
            }
        }
    }
}

/// A JSON body. Unknown fields are rejected by the request types themselves
/// (`deny_unknown_fields`); every rejection becomes problem+json with a stable type.
pub(crate) struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rejection) => {
                use axum::extract::rejection::JsonRejection as J;
                let (slug, detail) = match &rejection {
                    J::MissingJsonContentType(_) => {
                        ("unsupported-media-type", "send Content-Type: application/json".to_owned())
                    }
                    J::JsonSyntaxError(_) => ("malformed-json", "the body is not valid JSON".to_owned()),
                    J::JsonDataError(e) => ("invalid-body", shape_error(&e.body_text())),
                    J::BytesRejection(_) => ("body-too-large", "the body is too large or unreadable".to_owned()),
                    _ => ("invalid-body", rejection.body_text()),
                };
                let mut err = bad_request(slug, detail);
                if slug == "body-too-large" {
                    err.0.status = 413;
                } else if slug == "unsupported-media-type" {
                    err.0.status = 415;
                }
                Err(err)
            }
        }
    }
}

/// serde's messages may quote the offending value ("invalid type: string \"山田\""), and a
/// value may be personal data: keep only messages about field names, which are schema facts.
fn shape_error(message: &str) -> String {
    let detail = message.split_once(": ").map(|(_, rest)| rest).unwrap_or(message);
    if detail.starts_with("unknown field") || detail.starts_with("missing field") {
        let short: String = detail.chars().take(200).collect();
        format!("the body does not match the expected shape: {short}")
    } else {
        "the body does not match the expected shape (a value has the wrong type or form)".into()
    }
}
