//! The account page: who I am, password change, TOTP enrolment with a QR code and the
//! one-time recovery codes, my open sessions (ending one left open elsewhere), and how
//! dates are shown.

use super::WebUser;
use super::session::{SESSION_COOKIE, expired_cookie};
use super::templates::{Dates, render, role_slug, signed_in};
use crate::AppState;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::Response;
use base64::Engine as _;
use mamori_crypto::SecretString;
use mamori_vault::{Capabilities, VaultError};
use minijinja::{Value, context};
use serde::Deserialize;

async fn account_page(
    state: &AppState,
    user: &WebUser,
    caps: &Capabilities,
    enrolment: Value,
    error: Option<&str>,
    recovery: Option<Vec<String>>,
) -> Response {
    let p = &user.principal;
    let dates = Dates::of(state, user);
    let sessions = match state.vault.my_sessions(p).await {
        Ok(list) => list
            .iter()
            .map(|s| {
                context! {
                    reference => s.reference.clone(),
                    created => dates.show(s.created_at),
                    last_seen => dates.show(s.last_seen_at),
                    expires => dates.show(s.expires_at),
                    mfa => s.mfa,
                    current => s.current,
                }
            })
            .collect::<Vec<_>>(),
        Err(e) => return user.fail(state, e),
    };
    let page = context! {
        sessions => sessions,
        wareki => user.wareki,
        login => p.login.clone(),
        role => role_slug(p.role),
        department => p.department.clone(),
        clearance => user.lang.t(&format!("tier_{}", p.clearance.as_str())),
        mfa => p.mfa,
        training => p.training_valid,
        pledge => p.pledge_signed,
        enrolment => enrolment,
        error => error.map(|k| user.lang.t(k)),
        recovery => recovery,
    };
    render(user.lang, "account.html", signed_in(state, user, caps), page)
}

async fn capabilities(state: &AppState, user: &WebUser) -> Result<Capabilities, Box<Response>> {
    state.vault.capabilities(&user.principal).await.map_err(|e| Box::new(user.fail(state, e)))
}

pub(crate) async fn page(State(state): State<AppState>, user: WebUser) -> Response {
    match capabilities(&state, &user).await {
        Ok(caps) => account_page(&state, &user, &caps, Value::from(()), None, None).await,
        Err(res) => *res,
    }
}

/// Starts enrolment: a new secret, shown once as a QR code (a `data:` image, allowed by
/// the page's CSP) and as text; nothing is stored until a code confirms it.
pub(crate) async fn begin_totp(State(state): State<AppState>, user: WebUser) -> Response {
    let caps = match capabilities(&state, &user).await {
        Ok(c) => c,
        Err(res) => return *res,
    };
    match state.vault.begin_totp_enrolment(&user.principal).await {
        Ok(e) => account_page(&state, &user, &caps, enrolment_value(&e), None, None).await,
        Err(e) => user.fail(&state, e),
    }
}

fn enrolment_value(e: &mamori_vault::TotpEnrolment) -> Value {
    let qr = base64::engine::general_purpose::STANDARD.encode(e.qr_svg.expose().as_bytes());
    context! {
        qr => format!("data:image/svg+xml;base64,{qr}"),
        secret => e.secret_base32.expose().to_owned(),
        token => e.enrolment.clone(),
    }
}

#[derive(Deserialize)]
pub(crate) struct ConfirmForm {
    enrolment: String,
    code: SecretString,
}

/// Confirms enrolment with the first code. Every session of the account ends (the next
/// login uses the new factor), so the recovery codes page is the last page of this session.
pub(crate) async fn confirm_totp(
    State(state): State<AppState>,
    parts: Parts,
    user: WebUser,
    Form(form): Form<ConfirmForm>,
) -> Response {
    if let Some(refused) = super::auth::throttled(&state, &parts, user.lang).await {
        return refused;
    }
    let caps = match capabilities(&state, &user).await {
        Ok(c) => c,
        Err(res) => return *res,
    };
    match state.vault.confirm_totp_enrolment(&user.principal, &form.enrolment, &form.code).await {
        Ok(codes) => {
            let codes: Vec<String> = codes.iter().map(|c| c.expose().to_owned()).collect();
            let mut res = account_page(&state, &user, &caps, Value::from(()), None, Some(codes)).await;
            res.headers_mut().append(header::SET_COOKIE, expired_cookie(SESSION_COOKIE));
            res
        }
        // A wrong code: the same enrolment may be tried again while it is valid.
        Err(VaultError::Invalid(_)) => {
            let enrolment = context! { qr => Value::from(()), secret => Value::from(()), token => form.enrolment };
            account_page(&state, &user, &caps, enrolment, Some("totp_wrong_code"), None).await
        }
        Err(e) => user.fail(&state, e),
    }
}

/// Ends one of my other sessions (say, one left open on a shared terminal).
pub(crate) async fn end_session(
    State(state): State<AppState>,
    user: WebUser,
    headers: axum::http::HeaderMap,
    Path(reference): Path<String>,
) -> Response {
    match state.vault.end_my_session(&user.principal, &reference).await {
        Ok(()) => super::redirect(&headers, "/account#sessions"),
        Err(e) => user.fail(&state, e),
    }
}
