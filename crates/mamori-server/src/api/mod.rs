//! `/api/v1`, split by resource. Shared here: the bearer-token extractor and the JSON body
//! extractor that turns every malformed body into a problem+json answer.

mod admin;
mod audit;
mod auth;
mod collections;
mod records;

use crate::AppState;
use crate::problem::{ApiError, bad_request};
use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::Html;
use mamori_crypto::SessionToken;
use mamori_vault::{Principal, VaultError};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

pub(crate) use admin::*;
pub(crate) use audit::*;
pub(crate) use auth::*;
pub(crate) use collections::*;
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
        .route("/api/v1/users/{login}/disable", post(disable_user))
        .route("/api/v1/users/{login}/enable", post(enable_user))
        .route("/api/v1/users/{login}/activate", post(activate_user))
        .route("/api/v1/users/{login}", patch(update_user))
        .route("/api/v1/users/{login}/unlock", post(unlock_user))
        .route("/api/v1/users/{login}/mfa-reset", post(reset_mfa))
        .route("/api/v1/audit/verify", get(verify_audit))
        .route("/api/v1/audit/events", get(query_audit))
        .route("/api/v1/audit/reviews", post(review_audit))
}

pub(crate) async fn home() -> Html<&'static str> {
    Html(include_str!("home.html"))
}

/// The caller's address as seen on the socket, for the audit log.
fn source(parts: &Parts) -> Option<String> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string())
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
        let principal = state.vault.authenticate(&token, source(parts)).await?;
        Ok(Caller { principal, token })
    }
}

/// The caller's source address without authentication (for login).
pub(crate) struct Source(pub Option<String>);

impl FromRequestParts<AppState> for Source {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Source(source(parts)))
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
