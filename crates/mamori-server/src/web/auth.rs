//! Login (password, then the one-time code on its own page), forced password change,
//! logout, the language switch and the idle-timeout keepalive.

use super::session::{PRELOGIN_COOKIE, SESSION_COOKIE, TICKET_COOKIE, expired_cookie, secret_cookie};
use super::templates::{error_page, render, signed_in};
use super::{Lang, WebUser, local_path, redirect};
use crate::AppState;
use crate::api::{Device, Source, peer_ip};
use crate::throttle::{Verdict, retry_after_seconds};
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mamori_core::access_window::WindowRefusal;
use mamori_crypto::{SecretString, SessionToken};
use mamori_vault::{Capabilities, LoginOutcome, LoginStep, TICKET_LIFETIME, VaultError};
use minijinja::context;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

/// Notices the login page may show after a redirect (a fixed list: the query string never
/// puts text on the page).
const NOTICES: &[&str] = &["logged_out", "idle", "password_changed", "mfa_enrolled", "expired"];

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    m: Option<String>,
}

/// The login form's anti-CSRF value, fresh for each form and set as a cookie beside it.
fn prelogin() -> (String, HeaderValue) {
    let value = SessionToken::generate().expose().to_owned();
    let cookie = secret_cookie(PRELOGIN_COOKIE, &value, Some(1800));
    (value, cookie)
}

fn login_form(lang: Lang, template: &str, next: &str, notice: Option<&str>, error: Option<&str>) -> Response {
    let (csrf, cookie) = prelogin();
    let page = context! {
        csrf => csrf,
        next => next,
        notice => notice.filter(|n| NOTICES.contains(n)).map(|n| lang.t(&format!("notice_{n}"))),
        error => error.map(|k| lang.t(k)),
    };
    let mut res = render(lang, template, context! {}, page);
    res.headers_mut().append(header::SET_COOKIE, cookie);
    if error.is_some() {
        *res.status_mut() = StatusCode::UNAUTHORIZED;
    }
    res
}

pub(crate) async fn login_page(headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    login_form(Lang::of(&headers), "login.html", local_path(q.next.as_deref()), q.m.as_deref(), None)
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    login: String,
    password: SecretString,
    next: Option<String>,
}

/// The per-source throttle of `/api/v1/auth/login`, shared with the web login and the other
/// forms that check a password or a code.
pub(crate) async fn throttled(state: &AppState, parts: &Parts, lang: Lang) -> Option<Response> {
    let ip = peer_ip(parts, state).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let Verdict::Refuse { retry_after, record } = state.throttle.check(ip, Instant::now()) else { return None };
    if let Some(refused) = record
        && let Err(e) = state
            .vault
            .record_throttled_login(Some(ip.to_string()), refused, &format!("{} {}", parts.method, parts.uri.path()))
            .await
    {
        return Some(error_page(lang, e));
    }
    let mut res = super::templates::error_response(lang, StatusCode::TOO_MANY_REQUESTS, "error_too_many_attempts");
    res.headers_mut().insert(header::RETRY_AFTER, retry_after_seconds(retry_after).into());
    Some(res)
}

pub(crate) async fn login(
    State(state): State<AppState>,
    parts: Parts,
    Source(source): Source,
    Device(device): Device,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang = Lang::of(&parts.headers);
    if let Some(refused) = throttled(&state, &parts, lang).await {
        return refused;
    }
    let next = local_path(form.next.as_deref()).to_owned();
    match state.vault.begin_login(form.login.trim(), &form.password, source, device.as_deref()).await {
        Ok(LoginStep::Complete(outcome)) => signed_in_redirect(&parts.headers, &outcome, &next),
        Ok(LoginStep::SecondFactor(ticket)) => {
            let mut res = redirect(&parts.headers, &format!("/login/code?next={}", super::encode_path(&next)));
            let cookie = secret_cookie(TICKET_COOKIE, ticket.expose(), Some(TICKET_LIFETIME.whole_seconds()));
            res.headers_mut().append(header::SET_COOKIE, cookie);
            res
        }
        Err(VaultError::Unauthenticated) => login_form(lang, "login.html", &next, None, Some("login_failed")),
        Err(VaultError::MfaRequired) => login_form(lang, "login.html", &next, None, Some("login_mfa_unenrolled")),
        Err(VaultError::OutsideAccessWindow(refusal)) => {
            login_form(lang, "login.html", &next, None, Some(window_message(&refusal)))
        }
        Err(e) => error_page(lang, e),
    }
}

/// After a successful login: the session cookie, then the setup page the account still
/// needs or where the person was going.
fn signed_in_redirect(headers: &HeaderMap, outcome: &LoginOutcome, next: &str) -> Response {
    let to = if outcome.password_change_required {
        "/password"
    } else if outcome.mfa_enrolment_required {
        "/account"
    } else {
        next
    };
    let mut res = redirect(headers, to);
    res.headers_mut().append(header::SET_COOKIE, secret_cookie(SESSION_COOKIE, outcome.token.expose(), None));
    res.headers_mut().append(header::SET_COOKIE, expired_cookie(TICKET_COOKIE));
    res.headers_mut().append(header::SET_COOKIE, expired_cookie(PRELOGIN_COOKIE));
    res
}

pub(crate) async fn code_page(headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    let lang = Lang::of(&headers);
    if super::cookie(&headers, TICKET_COOKIE).is_none() {
        return redirect(&headers, "/login?m=expired");
    }
    login_form(lang, "code.html", local_path(q.next.as_deref()), None, None)
}

#[derive(Deserialize)]
pub(crate) struct CodeForm {
    code: SecretString,
    next: Option<String>,
}

pub(crate) async fn code(
    State(state): State<AppState>,
    parts: Parts,
    Source(source): Source,
    Device(device): Device,
    Form(form): Form<CodeForm>,
) -> Response {
    let lang = Lang::of(&parts.headers);
    if let Some(refused) = throttled(&state, &parts, lang).await {
        return refused;
    }
    let next = local_path(form.next.as_deref()).to_owned();
    let Some(ticket) = super::cookie(&parts.headers, TICKET_COOKIE).filter(|t| t.len() <= 512) else {
        return redirect(&parts.headers, "/login?m=expired");
    };
    match state.vault.finish_login(&ticket, &form.code, source, device.as_deref()).await {
        Ok(outcome) => signed_in_redirect(&parts.headers, &outcome, &next),
        Err(VaultError::Unauthenticated | VaultError::Invalid(_)) => {
            login_form(lang, "code.html", &next, None, Some("login_code_failed"))
        }
        Err(VaultError::OutsideAccessWindow(refusal)) => {
            login_form(lang, "login.html", &next, None, Some(window_message(&refusal)))
        }
        Err(e) => error_page(lang, e),
    }
}

/// The locale key that tells a person why their right credentials were refused.
fn window_message(refusal: &WindowRefusal) -> &'static str {
    match refusal {
        WindowRefusal::Hours | WindowRefusal::Day | WindowRefusal::Holiday => "login_outside_hours",
        WindowRefusal::Network => "login_outside_network",
    }
}

#[derive(Deserialize)]
pub(crate) struct LogoutForm {
    reason: Option<String>,
}

pub(crate) async fn logout(State(state): State<AppState>, user: WebUser, Form(form): Form<LogoutForm>) -> Response {
    if let Err(e) = state.vault.logout(&user.principal, &user.token).await {
        return error_page(user.lang, e);
    }
    let notice = if form.reason.as_deref() == Some("idle") { "idle" } else { "logged_out" };
    let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, format!("/login?m={notice}"))]).into_response();
    res.headers_mut().append(header::SET_COOKIE, expired_cookie(SESSION_COOKIE));
    res
}

fn password_form(state: &AppState, user: &WebUser, error: Option<String>, violations: Vec<String>) -> Response {
    let page = context! { error => error, violations => violations, forced => user.principal.password_change_only };
    let mut res = render(user.lang, "password.html", signed_in(state, user, &Capabilities::default()), page);
    if error.is_some() {
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    res
}

pub(crate) async fn password_page(State(state): State<AppState>, user: WebUser) -> Response {
    password_form(&state, &user, None, Vec::new())
}

#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    current: SecretString,
    new: SecretString,
    confirm: SecretString,
}

pub(crate) async fn change_password(
    State(state): State<AppState>,
    parts: Parts,
    user: WebUser,
    Form(form): Form<PasswordForm>,
) -> Response {
    let lang = user.lang;
    if let Some(refused) = throttled(&state, &parts, lang).await {
        return refused;
    }
    if !mamori_crypto::constant_time_eq(form.new.expose().as_bytes(), form.confirm.expose().as_bytes()) {
        return password_form(&state, &user, Some(lang.t("password_mismatch").into()), Vec::new());
    }
    match state.vault.change_password(&user.principal, &form.current, &form.new).await {
        Ok(()) => {
            // Every session of the account ended: log in again with the new password.
            let mut res = redirect(&HeaderMap::new(), "/login?m=password_changed");
            res.headers_mut().append(header::SET_COOKIE, expired_cookie(SESSION_COOKIE));
            res
        }
        Err(VaultError::Unauthenticated) => {
            password_form(&state, &user, Some(lang.t("password_wrong_current").into()), Vec::new())
        }
        Err(VaultError::PasswordRejected(r)) => {
            let violations =
                r.violations().iter().map(|v| if lang == Lang::Ja { v.message_ja() } else { v.message_en() }).collect();
            password_form(&state, &user, Some(lang.t("password_rejected").into()), violations)
        }
        Err(e) => error_page(lang, e),
    }
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// Sets the language (a preference, not a secret: readable cookie, kept a year).
pub(crate) async fn switch_language(Path(code): Path<String>, Query(q): Query<NextQuery>) -> Response {
    let lang = Lang::parse(&code).unwrap_or(Lang::Ja);
    remember_preference(super::i18n::LANG_COOKIE, lang.code(), q.next.as_deref())
}

/// Western (`western`) or Japanese-era (`wareki`) dates.
pub(crate) async fn switch_calendar(Path(style): Path<String>, Query(q): Query<NextQuery>) -> Response {
    let style = if style == "wareki" { "wareki" } else { "western" };
    remember_preference(super::i18n::CALENDAR_COOKIE, style, q.next.as_deref())
}

/// Back to the page the person was on, with a display preference in a year-long cookie.
/// The value is one of a fixed set, never what the request carried.
fn remember_preference(name: &str, value: &'static str, next: Option<&str>) -> Response {
    let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, local_path(next).to_owned())]).into_response();
    let cookie = format!("{name}={value}; Path=/; Secure; SameSite=Lax; Max-Age=31536000");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// "Continue working" from the idle warning: any authenticated request keeps the session.
pub(crate) async fn keepalive(_: WebUser) -> StatusCode {
    StatusCode::NO_CONTENT
}
