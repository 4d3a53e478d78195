//! The HTTP face of mamori: `/api/v1` (JSON, bearer tokens, RFC 9457 problem+json errors,
//! OpenAPI at `/api/v1/openapi.json`), `/healthz`, `/healthz/audit`, `/readyz` and
//! Prometheus `/metrics`.
//!
//! Handlers are thin: they parse, call one [`mamori_vault::Vault`] operation, and shape the
//! answer. Every rule (authorization, audit, validation) lives in the vault, so this crate
//! cannot forget one. Errors are mapped to HTTP here and only here ([`problem`]).
//!
//! The transport is here too: plain HTTP ([`serve`]) or HTTPS with optional device
//! certificates ([`serve_tls`], [`tls`]), and the per-source throttle on authentication
//! attempts ([`throttle`]).

mod api;
mod metrics;
mod openapi;
pub mod problem;
mod proxy;
pub mod throttle;
pub mod tls;
mod web;

pub use openapi::openapi_json;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use mamori_vault::Vault;
use std::sync::Arc;
use tower_http::set_header::SetResponseHeaderLayer;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Login and TOTP-confirmation attempts allowed per source address.
    pub login_throttle: throttle::ThrottleConfig,
    /// Reverse proxies whose `X-Forwarded-For` names the caller (see `proxy.rs`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Send `Strict-Transport-Security` (one year): set when mamori itself serves HTTPS, so a
    /// browser that has seen it never again sends the session cookie over plain HTTP. Behind
    /// a TLS-terminating proxy, the proxy sets it.
    pub hsts: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            login_throttle: throttle::ThrottleConfig::default(),
            trusted_proxies: Vec::new(),
            hsts: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct AppState {
    pub vault: Arc<Vault>,
    pub metrics: Arc<metrics::Metrics>,
    pub throttle: Arc<throttle::LoginThrottle>,
    /// Reverse proxies whose `X-Forwarded-For` names the caller (`proxy.rs`).
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}

/// The whole application as one router.
pub fn router(vault: Arc<Vault>, config: ServerConfig) -> Router {
    let state = AppState {
        vault,
        metrics: Arc::new(metrics::Metrics::new()),
        throttle: Arc::new(throttle::LoginThrottle::new(config.login_throttle)),
        trusted_proxies: Arc::from(config.trusted_proxies),
    };
    let app = Router::new()
        .merge(api::routes())
        .merge(metrics::routes())
        .merge(web::routes().layer(axum::middleware::from_fn(web::csrf_guard)))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        // Responses may carry personal data: never let a browser or proxy keep them.
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        // The API's policy: nothing may load. Web pages set their own (see `web`).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .with_state(state);
    if !config.hsts {
        return app;
    }
    app.layer(SetResponseHeaderLayer::overriding(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    ))
}

/// Serves plain HTTP until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<tls::Peer>()).with_graceful_shutdown(shutdown).await
}

/// Serves HTTPS (see [`tls::server_config`]) until `shutdown` resolves, then finishes
/// in-flight requests. The listening socket closes when the shutdown begins.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: tls::TlsConfig,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tls::TlsListener::new(listener, config)?;
    axum::serve(listener, app.into_make_service_with_connect_info::<tls::Peer>()).with_graceful_shutdown(shutdown).await
}
