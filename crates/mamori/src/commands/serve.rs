use crate::open::open_vault;
use crate::settings::Settings;
use anyhow::{Context, bail};
use mamori_server::{ServerConfig, router, serve};
use mamori_vault::Vault;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

pub async fn run(settings: &Settings, listen: &str, insecure_http: bool) -> anyhow::Result<ExitCode> {
    let vault = open_vault(settings).await?;
    let listener = bind(listen, insecure_http).await?;
    let url = format!("http://{}", listener.local_addr()?);
    println!("mamori listening on {url}");
    run_server(settings, vault, listener).await
}

/// Binds, refusing plain HTTP on anything but loopback unless explicitly allowed: personal
/// data must not cross a network in the clear (TLS termination arrives with the identity work).
pub async fn bind(listen: &str, insecure_http: bool) -> anyhow::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = tokio::net::lookup_host(listen)
        .await
        .with_context(|| format!("cannot resolve listen address `{listen}`"))?
        .next()
        .with_context(|| format!("no address for `{listen}`"))?;
    if !addr.ip().is_loopback() && !insecure_http {
        bail!(
            "refusing plain HTTP on non-loopback address {addr}; put mamori behind a TLS proxy and pass --insecure-http"
        );
    }
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
}

pub async fn run_server(
    settings: &Settings,
    vault: Arc<Vault>,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<ExitCode> {
    let app = router(vault.clone(), ServerConfig { max_body_bytes: settings.max_body_bytes });
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
    };
    serve(listener, app, shutdown).await?;
    // Sign the tail this process wrote, so a restart leaves nothing unsigned behind it.
    if let Err(e) = vault.flush_audit_checkpoint().await {
        tracing::error!(error = %e, "final audit checkpoint failed");
    }
    Ok(ExitCode::SUCCESS)
}
