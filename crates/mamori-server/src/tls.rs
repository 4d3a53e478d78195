//! HTTPS inside mamori: rustls with the `ring` provider, TLS 1.2 and 1.3 only, and optional
//! client certificates that identify registered devices.
//!
//! Measures: 000-8-3-4 and 001-20-tech-6-2 (encrypt the communication path), 004-V-2-10-b
//! (encrypted channels for remote access); with a client CA, 000-8-3-5 and 001-20-tech-1-6
//! (authenticate the terminals that may connect, by digital certificate), 002-S-8 and
//! 001-20-rule-0-1 (only designated devices reach personal data), 002-T-4-b (every device is
//! identifiable: its certificate's SHA-256 fingerprint is recorded with each login).
//!
//! Choices written down here:
//! - The handshake runs in a task of its own per connection, with a timeout and a cap on
//!   handshakes in flight, so a client that opens a socket and says nothing holds up nobody.
//! - With a client CA, a certificate is *requested* but not required: roles that must use a
//!   registered device are enforced at login by the vault (`[auth] device_required_roles`),
//!   so other roles keep working from anywhere. A certificate that *is* presented must chain
//!   to the CA, or the handshake fails.
//! - The device is named by the SHA-256 of its certificate (DER), lowercase hex: stable,
//!   unique, and free of personal data (a subject name could hold a person's name).
//! - Revocation: with a CRL file, a device certificate the CA revoked fails the handshake
//!   (002-T-4-b: a lost or retired terminal is withdrawn at once). Only the device's own
//!   certificate is checked (not intermediates, which would each need a CRL of their own),
//!   and a certificate whose issuer has no CRL in the file is refused (fail closed). The
//!   CRLs are read at start: restart after publishing a new one. An expired CRL (past its
//!   nextUpdate) is still used, so that a late renewal does not lock every device out.

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest as _, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A client has this long to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight at once; further connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;

/// Where the server's certificate chain, its key and (optionally) the device CA are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM: the server certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM: PKCS#8, PKCS#1 or SEC1 private key.
    pub key: PathBuf,
    /// PEM: CA certificate(s) that issue device certificates; `None`: no client certificates.
    pub client_ca: Option<PathBuf>,
    /// PEM: the device CA's certificate revocation list(s); needs `client_ca`.
    pub client_crl: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {reason}", path.display())]
    Read { what: &'static str, path: PathBuf, reason: String },
    #[error("{what} {} holds no {expected}", path.display())]
    Empty { what: &'static str, path: PathBuf, expected: &'static str },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A loaded server configuration, ready for [`crate::serve_tls`].
pub type TlsConfig = Arc<rustls::ServerConfig>;

/// The rustls configuration of the server: TLS 1.3 and 1.2, `ring`, ALPN `http/1.1`.
pub fn server_config(files: &TlsFiles) -> Result<TlsConfig, TlsError> {
    let provider = Arc::new(ring_provider());
    let chain = read_certs(&files.cert, "TLS certificate file")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Read {
        what: "TLS key file",
        path: files.key.clone(),
        reason: pem_reason(e),
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        None if files.client_crl.is_some() => {
            return Err(TlsError::Config("a client CRL needs the client CA that issued it".into()));
        }
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in read_certs(path, "TLS client CA file")? {
                roots.add(ca).map_err(|e| TlsError::Config(format!("client CA {}: {e}", path.display())))?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).allow_unauthenticated();
            if let Some(crl) = &files.client_crl {
                verifier = verifier.with_crls(read_crls(crl)?).only_check_end_entity_revocation();
            }
            let verifier =
                verifier.build().map_err(|e| TlsError::Config(format!("client CA {}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("certificate and key do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// rustls's `ring` provider. rustls 0.23.48 deprecates it because *ring* has no post-quantum
/// key exchange (X25519MLKEM768, which rustls offers with aws-lc-rs only). We take *ring* on
/// purpose (see the workspace `Cargo.toml`): sessions get classic ECDHE (X25519, P-256,
/// P-384) with forward secrecy, and the post-quantum exchange comes with a move to aws-lc-rs,
/// which changes this function only.
#[expect(deprecated, reason = "ring chosen deliberately; see above")]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_err = |e| TlsError::Read { what, path: path.to_owned(), reason: pem_reason(e) };
    let certs =
        CertificateDer::pem_file_iter(path).map_err(read_err)?.collect::<Result<Vec<_>, _>>().map_err(read_err)?;
    if certs.is_empty() {
        return Err(TlsError::Empty { what, path: path.to_owned(), expected: "PEM certificate" });
    }
    Ok(certs)
}

fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let what = "TLS client CRL file";
    let read_err = |e| TlsError::Read { what, path: path.to_owned(), reason: pem_reason(e) };
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(read_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    if crls.is_empty() {
        return Err(TlsError::Empty { what, path: path.to_owned(), expected: "PEM X509 CRL" });
    }
    Ok(crls)
}

/// The PEM parser's message, which names the problem but never quotes the file's content.
fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".into(),
        _ => "malformed PEM".into(),
    }
}

/// Who is on the other end of a connection: the socket address and, over TLS with a client
/// CA, the verified device certificate's SHA-256 fingerprint. Handlers read it as
/// `ConnectInfo<Peer>`.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub device: Option<String>,
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Peer { addr: *stream.remote_addr(), device: None }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP listener whose connections come out as finished TLS sessions.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
}

impl TlsListener {
    /// Starts accepting on `listener`; handshakes run in the background.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(Self { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop only ends once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer { addr: self.local, device: None })
    }
}

/// Accepts TCP connections until the [`TlsListener`] is dropped (graceful shutdown drops it,
/// which also closes the port).
async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, ready: mpsc::Sender<(TlsStream<TcpStream>, Peer)>) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            permit = handshakes.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = ready.closed() => return,
        };
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // As axum does: a refused connection is the client's business; anything
                    // else (too many open files) deserves a pause before trying again.
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                    ) {
                        tracing::error!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            () = ready.closed() => return,
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let device = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(fingerprint);
                    let _ = ready.send((tls, Peer { addr, device })).await;
                }
                // Scanners, plain-HTTP clients and unknown devices: expected, and the
                // address is not logged (it may identify a person).
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
    }
}

/// SHA-256 of a certificate's DER encoding, lowercase hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref()).iter().map(|b| format!("{b:02x}")).collect()
}
