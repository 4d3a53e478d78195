//! The web UI: server-rendered pages (minijinja templates, htmx for partial updates) in
//! Japanese by default and English on request, with every asset embedded in the binary (no
//! CDN: it works offline and nothing is fetched from elsewhere).
//!
//! The pages call the same [`mamori_vault::Vault`] operations as `/api/v1`, so every rule
//! (authorization, field masking, audit) applies unchanged; the menus a person sees come
//! from [`mamori_vault::Vault::capabilities`] (001-20-tech-2-7) but hiding is not the
//! protection.
//!
//! Browser security, in one place ([`session`]): the session token lives in a
//! `Secure; HttpOnly; SameSite=Strict` cookie (so the UI needs HTTPS, or a browser on the
//! same machine over `localhost`); every POST carries a CSRF token derived from the session
//! and must come from the same origin; pages carry a strict Content-Security-Policy without
//! inline scripts or styles, `frame-ancestors 'none'`, and `Cache-Control: no-store`
//! (000-8-takeout-6: nothing left on the terminal). The idle timeout warns a minute ahead
//! and then logs out (004-V-1-42, 001-20-phys-2-2).

mod account;
mod admin;
mod auth;
mod exports;
mod i18n;
mod pages;
mod session;
mod templates;

use crate::AppState;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::set_header::SetResponseHeaderLayer;

pub(crate) use i18n::Lang;
pub(crate) use session::{WebUser, csrf_guard};

/// Pages may load scripts, styles and images from mamori itself only; the TOTP QR code is a
/// `data:` image. Nothing inline, no framing, forms post only back to mamori.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn routes() -> Router<AppState> {
    use axum::routing::{get, post};
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/login/code", get(auth::code_page).post(auth::code))
        .route("/logout", post(auth::logout))
        .route("/password", get(auth::password_page).post(auth::change_password))
        .route("/lang/{code}", get(auth::switch_language))
        .route("/calendar/{style}", get(auth::switch_calendar))
        .route("/keepalive", post(auth::keepalive))
        .route("/collections", get(pages::collections))
        .route("/collections/{name}/search", get(pages::search_page).post(pages::search))
        .route("/collections/{name}/records/new", get(pages::new_record_page).post(pages::create_record))
        .route("/collections/{name}/records/{id}", get(pages::record))
        .route("/collections/{name}/records/{id}/edit", get(pages::edit_page).post(pages::edit))
        .route("/collections/{name}/records/{id}/print", post(pages::print))
        .route("/collections/{name}/records/{id}/copy", post(pages::copy))
        .route("/subjects/{subject}", get(pages::subject))
        .route("/users", get(admin::users))
        .route("/users/{login}/edit", get(admin::edit_user_page).post(admin::edit_user))
        .route("/users/{login}/{change}", post(admin::change_user))
        .route("/access-review", get(admin::access_review))
        .route("/audit", get(admin::audit))
        .route("/audit/verify", post(admin::verify))
        .route("/exports", get(exports::list).post(exports::create))
        .route("/exports/new", get(exports::new_page))
        .route("/exports/{id}", get(exports::detail))
        .route("/exports/{id}/password", post(exports::password))
        .route("/exports/{id}/download", post(exports::download))
        .route("/exports/{id}/share", post(exports::fetch_share))
        .route("/exports/{id}/{action}", post(exports::act))
        .route("/takeout/ledger", get(exports::ledger))
        .route("/account", get(account::page))
        .route("/account/totp", post(account::begin_totp))
        .route("/account/sessions/{reference}/end", post(account::end_session))
        .route("/account/totp/confirm", post(account::confirm_totp))
        .route("/static/{file}", get(static_file))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
}

/// The embedded assets: htmx (BSD-0, from the npm package `htmx.org`), mamori's script and
/// style sheet.
async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static str, &'static str) = match file.as_str() {
        "htmx.min.js" => (include_str!("../../web/static/htmx.min.js"), "text/javascript; charset=utf-8"),
        "app.js" => (include_str!("../../web/static/app.js"), "text/javascript; charset=utf-8"),
        "app.css" => (include_str!("../../web/static/app.css"), "text/css; charset=utf-8"),
        "favicon.svg" => (include_str!("../../web/static/favicon.svg"), "image/svg+xml"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// The value of one cookie of the request.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A redirect after a POST (303, so the browser follows with GET). For htmx requests the
/// target goes in `HX-Redirect`, which htmx turns into a full navigation.
pub(crate) fn redirect(headers: &HeaderMap, to: &str) -> Response {
    let location = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/"));
    if headers.contains_key("hx-request") {
        return (StatusCode::OK, [(axum::http::HeaderName::from_static("hx-redirect"), location)]).into_response();
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// Only a path on this site may be a redirect target: no scheme, no `//evil.example`, and
/// only visible ASCII — browsers drop tabs and line breaks from a `Location` before parsing
/// it, so `/\t/evil.example` would leave the site, and the `http` crate lets a tab through.
/// Our own links percent-encode everything else (see [`encode_path`]).
pub(crate) fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p)
            if p.len() <= 512
                && p.starts_with('/')
                && !p[1..].starts_with(['/', '\\'])
                && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            p
        }
        _ => "/",
    }
}

/// Percent-encodes a path for use as a query value (`/login?next=…`).
pub(crate) fn encode_path(path: &str) -> String {
    path.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_local_paths_are_redirect_targets() {
        for ok in ["/", "/collections", "/records/customers/0190?view=masked&q=%E5%B1%B1", "/login?next=/audit"] {
            assert_eq!(local_path(Some(ok)), ok);
        }
        let long = format!("/{}", "a".repeat(512));
        for bad in [
            "",
            "collections",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/ /evil.example",
            "/\u{3000}/evil.example",
            "/a\\b",
            "/\x7f",
            long.as_str(),
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_path(None), "/");
    }
}
