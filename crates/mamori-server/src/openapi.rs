//! The OpenAPI document, generated from the handlers' annotations. A copy is committed as
//! `crates/mamori-server/openapi.json`; a test fails when code and copy drift apart.

use crate::api;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "mamori API", description = "Encrypted personal-data vault. Errors are RFC 9457 problem+json with a stable `type`."),
    paths(
        api::login, api::logout, api::change_password, api::begin_totp, api::confirm_totp,
        api::list_collections, api::create_collection, api::get_collection, api::update_schema,
        api::create_record, api::get_record, api::update_record, api::delete_record, api::search,
        api::erase_subject, api::list_erasure_certificates,
        api::list_users, api::create_user, api::disable_user, api::enable_user, api::activate_user,
        api::update_user, api::unlock_user, api::reset_mfa, api::sync_users,
        api::verify_audit, api::query_audit, api::review_audit,
        api::list_policies, api::get_policy, api::propose_policy, api::approve_policy, api::reject_policy,
        api::dry_run_policy, api::request_break_glass, api::list_break_glass, api::decide_break_glass,
        api::access_review, api::review_access,
        api::request_export, api::list_exports, api::get_export, api::decide_export, api::export_password,
        api::download_export, api::fetch_export_share, api::shares_for_me, api::settle_export, api::export_ledger,
        api::takeout_ledger, api::takeout_alerts,
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    // The version in the document is the API's, not the crate's build: keep it stable so the
    // committed copy does not churn with every release.
    doc.info.version = "1".into();
    doc.to_pretty_json().expect("the OpenAPI document serialises")
}

pub(crate) async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json())
}
