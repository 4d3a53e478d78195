use crate::open::{check_private, open_server_vault};
use crate::settings::Settings;
use anyhow::{Context, bail};
use mamori_server::tls::TlsConfig;
use mamori_server::{ServerConfig, router, serve, serve_tls};
use mamori_vault::Vault;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

pub async fn run(settings: &Settings, listen: &str, insecure_http: bool) -> anyhow::Result<ExitCode> {
    // TLS files first: a wrong path should not cost opening the database.
    let tls = load_tls(settings)?;
    let vault = open_server_vault(settings).await?;
    let listener = bind(listen, tls.is_some(), insecure_http).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", listener.local_addr()?);
    println!("mamori listening on {url}");
    run_server(settings, vault, listener, tls).await
}

/// The rustls configuration from `[tls]` (or the flags), or `None` for plain HTTP.
fn load_tls(settings: &Settings) -> anyhow::Result<Option<TlsConfig>> {
    let Some(files) = settings.tls_files()? else { return Ok(None) };
    check_private(&files.key, "TLS key")?;
    let config = mamori_server::tls::server_config(&files)?;
    if files.client_ca.is_some() {
        tracing::info!(
            device_required_roles = ?settings.auth.device_required_roles,
            "HTTPS with device certificates requested"
        );
    }
    Ok(Some(config))
}

/// Binds, refusing plain HTTP on anything but loopback unless explicitly allowed: personal
/// data must not cross a network in the clear (measures 000-8-3-4, 001-20-tech-6-2).
pub async fn bind(listen: &str, tls: bool, insecure_http: bool) -> anyhow::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = tokio::net::lookup_host(listen)
        .await
        .with_context(|| format!("cannot resolve listen address `{listen}`"))?
        .next()
        .with_context(|| format!("no address for `{listen}`"))?;
    check_transport(addr.ip(), tls, insecure_http)?;
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
}

/// Loopback may be plain HTTP; anything else needs TLS, or `--insecure-http` behind a
/// TLS-terminating proxy.
fn check_transport(ip: IpAddr, tls: bool, insecure_http: bool) -> anyhow::Result<()> {
    if tls || insecure_http || ip.is_loopback() {
        return Ok(());
    }
    bail!(
        "refusing plain HTTP on non-loopback address {ip}; serve HTTPS (--tls-cert and --tls-key, or [tls] in mamori.toml), or put mamori behind a TLS proxy and pass --insecure-http"
    )
}

pub async fn run_server(
    settings: &Settings,
    vault: Arc<Vault>,
    listener: tokio::net::TcpListener,
    tls: Option<TlsConfig>,
) -> anyhow::Result<ExitCode> {
    let config = ServerConfig {
        max_body_bytes: settings.max_body_bytes,
        login_throttle: settings.auth.throttle(),
        trusted_proxies: settings.trusted_proxies.clone(),
        hsts: tls.is_some(),
    };
    let app = router(vault.clone(), config);
    // Shares of secret-split exports left unfetched when their window closes are destroyed
    // within a minute, whether or not anyone looks at the export again.
    let sweeper = Arc::downgrade(&vault);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Some(vault) = sweeper.upgrade() else { return };
            if let Err(e) = vault.sweep_expired_shares().await {
                tracing::warn!(error = %e, "could not destroy the held shares of closed exports");
            }
        }
    });
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
    match tls {
        Some(tls) => serve_tls(listener, tls, app, shutdown).await?,
        None => serve(listener, app, shutdown).await?,
    }
    // Sign the tail this process wrote, so a restart leaves nothing unsigned behind it.
    if let Err(e) = vault.flush_audit_checkpoint().await {
        tracing::error!(error = %e, "final audit checkpoint failed");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::check_transport;

    #[test]
    fn plain_http_only_on_loopback_unless_tls_or_told() {
        // (address, tls, insecure_http, allowed)
        let cases = [
            ("127.0.0.1", false, false, true),
            ("::1", false, false, true),
            ("192.0.2.10", false, false, false),
            ("0.0.0.0", false, false, false),
            ("2001:db8::1", false, false, false),
            ("192.0.2.10", true, false, true),
            ("0.0.0.0", true, false, true),
            ("192.0.2.10", false, true, true),
        ];
        for (ip, tls, insecure, allowed) in cases {
            let result = check_transport(ip.parse().unwrap(), tls, insecure);
            assert_eq!(result.is_ok(), allowed, "{ip} tls={tls} insecure_http={insecure}: {result:?}");
        }
    }
}
