//! Who is behind a browser request, and the checks every state-changing request passes.
//!
//! - The session token is the `__Host-mamori_session` cookie: `Secure; HttpOnly; SameSite=Strict;
//!   Path=/`, no `Max-Age` (it dies with the browser; the server ends it on idle timeout,
//!   lifetime, logout, disable, password or role change anyway).
//! - Every POST must come from this origin (`Sec-Fetch-Site` / `Origin`) and carry the CSRF
//!   token in the form field `csrf` or the `X-CSRF-Token` header: derived from the session
//!   ([`SessionToken::csrf_token`]), or before login a random value also set as the
//!   `__Host-mamori_prelogin` cookie (double submit). Compared in constant time.
//! - A session that must first change its password (or enrol a second factor) reaches only
//!   the setup pages.

use super::{Lang, cookie, redirect};
use crate::AppState;
use crate::problem::ApiError;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use mamori_crypto::{SessionToken, constant_time_eq};
use mamori_vault::{Principal, VaultError};

// The `__Host-` prefix: browsers accept these cookies only from this host itself, Secure, with
// `Path=/` and no `Domain`, so a sibling subdomain cannot plant its own session cookie here
// (session fixation into an attacker's account).
pub(crate) const SESSION_COOKIE: &str = "__Host-mamori_session";
pub(crate) const PRELOGIN_COOKIE: &str = "__Host-mamori_prelogin";
/// The sealed login ticket between the password and the code page.
pub(crate) const TICKET_COOKIE: &str = "__Host-mamori_ticket";
/// Largest form a page posts (the CSRF check reads the body before the handler).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A signed-in person, resolved on every request: a disabled account or an ended session
/// is thrown out on the very next click.
pub(crate) struct WebUser {
    pub principal: Principal,
    pub token: SessionToken,
    pub lang: Lang,
    /// Dates in the Japanese era (a preference kept in a cookie, like the language).
    pub wareki: bool,
}

impl WebUser {
    pub(crate) fn csrf(&self) -> String {
        self.token.csrf_token()
    }
}

/// Pages a setup session (first login, reset, expired password, MFA enrolment) may open.
fn setup_page(path: &str) -> bool {
    matches!(path, "/password" | "/account" | "/account/totp" | "/account/totp/confirm" | "/logout" | "/keepalive")
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let lang = Lang::of(&parts.headers);
        let token = cookie(&parts.headers, SESSION_COOKIE)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .map(|t| SessionToken::from_presented(&t));
        let Some(token) = token else { return Err(to_login(parts)) };
        match state.vault.authenticate(&token, crate::api::source(parts, state)).await {
            Ok(principal) => {
                if principal.password_change_only && !setup_page(parts.uri.path()) {
                    return Err(redirect(&parts.headers, "/account"));
                }
                Ok(WebUser { principal, token, lang, wareki: super::i18n::wareki(&parts.headers) })
            }
            Err(VaultError::Unauthenticated) => Err(to_login(parts)),
            Err(e) => Err(super::templates::error_page(lang, e)),
        }
    }
}

/// To the login page, forgetting the dead session cookie, and back here afterwards.
fn to_login(parts: &Parts) -> Response {
    let path = parts.uri.path();
    let target = if parts.method == Method::GET && path != "/" {
        format!("/login?next={}", super::encode_path(parts.uri.path_and_query().map_or(path, |p| p.as_str())))
    } else {
        "/login".to_owned()
    };
    let mut res = redirect(&parts.headers, &target);
    res.headers_mut().append(header::SET_COOKIE, expired_cookie(SESSION_COOKIE));
    res
}

/// `Set-Cookie` for a browser secret: HttpOnly, Secure, SameSite=Strict.
pub(crate) fn secret_cookie(name: &str, value: &str, max_age_seconds: Option<i64>) -> HeaderValue {
    let age = max_age_seconds.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
    HeaderValue::from_str(&format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}"))
        .unwrap_or(HeaderValue::from_static("mamori_invalid=1"))
}

pub(crate) fn expired_cookie(name: &str) -> HeaderValue {
    secret_cookie(name, "", Some(0))
}

#[derive(serde::Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

/// The same-origin and CSRF-token check in front of every POST of the web UI.
pub(crate) async fn csrf_guard(req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let lang = Lang::of(req.headers());
    if !same_origin(req.headers()) {
        return forbidden(lang);
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return super::templates::error_response(lang, StatusCode::PAYLOAD_TOO_LARGE, "error_too_large");
    };
    let expected = match parts.uri.path() {
        "/login" | "/login/code" => cookie(&parts.headers, PRELOGIN_COOKIE).filter(|v| v.len() >= 32),
        _ => cookie(&parts.headers, SESSION_COOKIE).map(|t| SessionToken::from_presented(&t).csrf_token()),
    };
    let presented = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| serde_urlencoded::from_bytes::<CsrfField>(&bytes).ok().and_then(|f| f.csrf));
    match (expected, presented) {
        (Some(e), Some(p)) if constant_time_eq(e.as_bytes(), p.as_bytes()) => {
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
        // No session at all: the page expired; start again at the login page.
        (None, _) if parts.uri.path() != "/login" && parts.uri.path() != "/login/code" => {
            redirect(&parts.headers, "/login")
        }
        _ => forbidden(lang),
    }
}

/// `Sec-Fetch-Site` where the browser sends it, else `Origin` against `Host`. A request with
/// neither (an old browser, or a non-browser client) relies on the token alone.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    match (headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()), headers.get(header::HOST)) {
        (Some(origin), Some(host)) => {
            let host = host.to_str().unwrap_or_default();
            origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")) == Some(host)
        }
        (Some(_), None) => false,
        (None, _) => true,
    }
}

fn forbidden(lang: Lang) -> Response {
    super::templates::error_response(lang, StatusCode::FORBIDDEN, "error_csrf")
}

/// The status and stable slug of a vault error, as the API reports it.
pub(crate) fn status_of(e: VaultError) -> (StatusCode, String) {
    let problem = ApiError::from(e).0;
    let slug = problem.kind.rsplit(':').next().unwrap_or("internal").to_owned();
    (StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), slug)
}
