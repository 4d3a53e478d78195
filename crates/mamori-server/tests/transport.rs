//! The transport against real servers on 127.0.0.1:0: HTTPS with certificates generated at
//! test time (no key material in the repository), device certificates for the roles that
//! need them (measures 000-8-3-5, 001-20-tech-1-6), and the per-source throttle of login
//! attempts (000-8-access-11).

use mamori_core::access::Role;
use mamori_core::clock::SystemClock;
use mamori_crypto::{MasterKey, SecretString};
use mamori_server::throttle::ThrottleConfig;
use mamori_server::tls::{TlsFiles, fingerprint};
use mamori_server::{ServerConfig, router};
use mamori_store::Store;
use mamori_store_sqlite::SqliteStore;
use mamori_vault::{AuditFilter, NewUser, Principal, Vault, VaultConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
    SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

const PASSWORD: &str = "Transport-Test-Password-1";

/// A CA that issues certificates, made fresh for each test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    next_serial: std::sync::atomic::AtomicU64,
}

/// A certificate and its key, in the forms rustls and the PEM files need.
struct Issued {
    serial: u64,
    cert: CertificateDer<'static>,
    pem: String,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer, next_serial: 1000.into() }
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("device"));
        params.extended_key_usages = vec![usage];
        let serial = self.next_serial.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued { serial, cert: cert.der().clone(), pem: cert.pem(), key }
    }

    /// A CRL (PEM) revoking `revoked`, valid from an hour ago for a week.
    fn crl(&self, revoked: &[&Issued]) -> String {
        let now = mamori_core::clock::Clock::now(&SystemClock);
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|cert| RevokedCertParams {
                    serial_number: SerialNumber::from(cert.serial),
                    revocation_time: now - time::Duration::minutes(5),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }
}

impl Issued {
    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }
}

/// A vault with a system administrator (who must use a registered device), a staff member
/// and an auditor; servers are started on it as each test needs.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    vault: Arc<Vault>,
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let path = dir.path().join("mamori.db");
        let vault = runtime.block_on(async move {
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path).await.unwrap());
            let mut config = VaultConfig::default();
            config.auth.mfa_roles.clear();
            config.auth.device_required_roles = vec![Role::SystemAdmin];
            let vault = Vault::open(store, &MasterKey::generate(), Arc::new(SystemClock), config).await.unwrap();
            let op = Principal::operator("test");
            for (login, role) in [("admin", Role::SystemAdmin), ("staff", Role::Staff), ("auditor", Role::Auditor)] {
                let new = NewUser {
                    password: Some(SecretString::new(PASSWORD.into())),
                    must_change_password: false,
                    ..NewUser::new(login, login, role)
                };
                vault.create_user(&op, new).await.unwrap();
            }
            vault
        });
        Self { runtime, vault, dir, ca: Ca::new("mamori test devices") }
    }

    /// HTTPS on 127.0.0.1:0 with a server certificate from `self.ca`, asking for device
    /// certificates from the same CA. Returns the port and the shutdown trigger.
    fn serve_tls(&self) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>) {
        self.serve_tls_with_crl(None)
    }

    /// As [`Fixture::serve_tls`], refusing the devices the CRL (PEM) revokes.
    fn serve_tls_with_crl(
        &self,
        crl: Option<&str>,
    ) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>) {
        let server = self.ca.issue(&["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
        let files = TlsFiles {
            cert: self.write("server.crt", &server.pem),
            key: self.write("server.key", &server.key.serialize_pem()),
            client_ca: Some(self.write("devices-ca.crt", &self.ca.pem())),
            client_crl: crl.map(|c| self.write("devices.crl", c)),
        };
        let tls = mamori_server::tls::server_config(&files).unwrap();
        let app = router(self.vault.clone(), ServerConfig { hsts: true, ..ServerConfig::default() });
        let (stop, stopped) = oneshot::channel::<()>();
        self.runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let shutdown = async move {
                let _ = stopped.await;
            };
            (addr, stop, tokio::spawn(mamori_server::serve_tls(listener, tls, app, shutdown)))
        })
    }

    /// Plain HTTP on 127.0.0.1:0 with the given throttle.
    fn serve_plain(&self, login_throttle: ThrottleConfig) -> SocketAddr {
        self.serve_plain_with(ServerConfig { login_throttle, ..ServerConfig::default() })
    }

    fn serve_plain_with(&self, config: ServerConfig) -> SocketAddr {
        let app = router(self.vault.clone(), config);
        self.runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(mamori_server::serve(listener, app, std::future::pending()));
            addr
        })
    }

    fn write(&self, name: &str, contents: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Failed-login events as the auditor sees them.
    fn failed_logins(&self) -> Vec<mamori_core::audit::AuditEvent> {
        self.runtime.block_on(async {
            let out = self.vault.login("auditor", &SecretString::new(PASSWORD.into()), None).await.unwrap();
            let auditor = self.vault.authenticate(&out.token, None).await.unwrap();
            let filter = AuditFilter { failed_logins: true, ..Default::default() };
            let page = self.vault.query_audit(&auditor, &filter).await.unwrap();
            page.events.into_iter().map(|e| e.event).collect()
        })
    }

    fn logins(&self) -> Vec<mamori_core::audit::AuditEvent> {
        self.runtime.block_on(async {
            let out = self.vault.login("auditor", &SecretString::new(PASSWORD.into()), None).await.unwrap();
            let auditor = self.vault.authenticate(&out.token, None).await.unwrap();
            let filter = AuditFilter { action: Some("auth.login".into()), ..Default::default() };
            let page = self.vault.query_audit(&auditor, &filter).await.unwrap();
            page.events.into_iter().map(|e| e.event).collect()
        })
    }
}

/// An HTTPS client that trusts `ca` and presents `device`, if given.
fn client(ca: &CertificateDer<'static>, device: Option<&Issued>) -> ureq::Agent {
    client_with(rustls::ClientConfig::builder(), ca, device)
}

fn client_with(
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>,
    ca: &CertificateDer<'static>,
    device: Option<&Issued>,
) -> ureq::Agent {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let builder = builder.with_root_certificates(roots);
    let config = match device {
        Some(d) => builder.with_client_auth_cert(vec![d.cert.clone()], d.private_key()).unwrap(),
        None => builder.with_no_client_auth(),
    };
    ureq::AgentBuilder::new().tls_config(Arc::new(config)).build()
}

/// `(status, body)`, or `Err` when no HTTP answer came (refused connection, failed handshake).
fn login(agent: &ureq::Agent, url: &str, login: &str, password: &str) -> Result<(u16, Value), String> {
    let body = json!({"login": login, "password": password}).to_string();
    let res =
        agent.post(&format!("{url}/api/v1/auth/login")).set("content-type", "application/json").send_string(&body);
    match res {
        Ok(r) => Ok((r.status(), r.into_json().unwrap())),
        Err(ureq::Error::Status(status, r)) => Ok((status, r.into_json().unwrap())),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn https_round_trip_plain_http_refused_and_graceful_shutdown() {
    let f = Fixture::new();
    let (addr, stop, server) = f.serve_tls();
    let url = format!("https://127.0.0.1:{}", addr.port());
    let agent = client(&f.ca.der(), None);
    let res = agent.get(&format!("{url}/healthz")).call().unwrap();
    // Once seen over HTTPS, the browser never sends the session cookie over plain HTTP.
    assert_eq!(res.header("strict-transport-security"), Some("max-age=31536000"));
    assert_eq!((res.status(), res.into_string().unwrap().as_str()), (200, "ok"));
    // A role that needs no device logs in without a certificate.
    let (status, body) = login(&agent, &url, "staff", PASSWORD).unwrap();
    assert_eq!(status, 200, "{body}");
    // TLS 1.2 is accepted as well as 1.3.
    let tls12 = client_with(
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12]),
        &f.ca.der(),
        None,
    );
    assert_eq!(tls12.get(&format!("{url}/healthz")).call().unwrap().status(), 200);
    // A client that does not trust the server's CA gets nowhere.
    let stranger = client(&Ca::new("someone else").der(), None);
    assert!(stranger.get(&format!("{url}/healthz")).call().is_err());

    // Plain HTTP to the TLS port: no HTTP answer at all.
    let plain = ureq::get(&format!("http://127.0.0.1:{}/healthz", addr.port())).call();
    assert!(matches!(plain, Err(ureq::Error::Transport(_))), "{plain:?}");

    // Graceful shutdown: the server returns and the port closes.
    stop.send(()).unwrap();
    f.runtime.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
    });
    // The accept loop notices the shutdown on its own task, a moment after the server
    // returns: give it that moment, not more.
    let closed = (0..50).any(|_| {
        let refused = std::net::TcpStream::connect(addr).is_err();
        if !refused {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        refused
    });
    assert!(closed, "still listening 5 s after shutdown");
}

#[test]
fn device_required_role_logs_in_only_with_a_registered_device_certificate() {
    let f = Fixture::new();
    let (addr, _stop, _server) = f.serve_tls();
    let url = format!("https://127.0.0.1:{}", addr.port());

    // Right password, no device: the same answer as a wrong password.
    let no_device = client(&f.ca.der(), None);
    let refused = login(&no_device, &url, "admin", PASSWORD).unwrap();
    let wrong = login(&no_device, &url, "admin", "Not-The-Password-9").unwrap();
    assert_eq!(refused.0, 401);
    assert_eq!(refused, wrong, "no hint that the password was right");

    // With a certificate from the device CA: in, and the device is recorded.
    let laptop = f.ca.issue(&["admin-laptop"], ExtendedKeyUsagePurpose::ClientAuth);
    let registered = client(&f.ca.der(), Some(&laptop));
    let (status, body) = login(&registered, &url, "admin", PASSWORD).unwrap();
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    let res = registered.get(&format!("{url}/api/v1/users")).set("authorization", &format!("Bearer {token}")).call();
    assert_eq!(res.unwrap().status(), 200);
    // Roles without the requirement may present a device certificate too.
    assert_eq!(login(&registered, &url, "staff", PASSWORD).unwrap().0, 200);

    let events = f.logins();
    let reason = |e: &mamori_core::audit::AuditEvent| e.reason.clone().unwrap_or_default();
    assert!(
        events.iter().any(|e| e.outcome == mamori_core::audit::Outcome::Failure
            && reason(e).contains("registered device required")
            && e.source.as_deref() == Some("127.0.0.1")),
        "{events:?}"
    );
    let device = format!("device sha256:{}", fingerprint(&laptop.cert));
    assert!(
        events.iter().any(|e| e.outcome == mamori_core::audit::Outcome::Success && reason(e).contains(&device)),
        "the device's fingerprint is recorded with the login: {events:?}"
    );
}

#[test]
fn device_certificate_from_another_ca_is_refused_at_handshake() {
    let f = Fixture::new();
    let (addr, _stop, _server) = f.serve_tls();
    let url = format!("https://127.0.0.1:{}", addr.port());
    let rogue = Ca::new("rogue").issue(&["admin-laptop"], ExtendedKeyUsagePurpose::ClientAuth);
    let agent = client(&f.ca.der(), Some(&rogue));
    let result = login(&agent, &url, "admin", PASSWORD);
    assert!(result.is_err(), "no HTTP answer over a connection with an unknown device: {result:?}");
    let result = login(&agent, &url, "staff", PASSWORD);
    assert!(result.is_err(), "whatever the role: {result:?}");
    // Nothing reached the vault.
    assert!(f.failed_logins().is_empty());
}

/// A device certificate revoked by the CA (lost laptop, retired terminal; 002-T-4-b) fails the
/// handshake once the CRL is configured; the CA's other devices keep working. A CRL without
/// its CA, or a file that holds no CRL, stops the server from starting.
#[test]
fn device_certificate_revoked_in_the_crl_is_refused_at_handshake() {
    let f = Fixture::new();
    let lost = f.ca.issue(&["lost-laptop"], ExtendedKeyUsagePurpose::ClientAuth);
    let kept = f.ca.issue(&["office-pc"], ExtendedKeyUsagePurpose::ClientAuth);
    let (addr, _stop, _server) = f.serve_tls_with_crl(Some(&f.ca.crl(&[&lost])));
    let url = format!("https://127.0.0.1:{}", addr.port());
    let result = login(&client(&f.ca.der(), Some(&lost)), &url, "staff", PASSWORD);
    assert!(result.is_err(), "no HTTP answer over a connection with a revoked device: {result:?}");
    assert_eq!(login(&client(&f.ca.der(), Some(&kept)), &url, "admin", PASSWORD).unwrap().0, 200);
    assert_eq!(login(&client(&f.ca.der(), None), &url, "staff", PASSWORD).unwrap().0, 200);
    assert!(f.failed_logins().is_empty(), "the revoked device reached nothing");

    let server = f.ca.issue(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let crl = f.write("only.crl", &f.ca.crl(&[]));
    let without_ca = TlsFiles {
        cert: f.write("s.crt", &server.pem),
        key: f.write("s.key", &server.key.serialize_pem()),
        client_ca: None,
        client_crl: Some(crl),
    };
    let err = mamori_server::tls::server_config(&without_ca).unwrap_err().to_string();
    assert!(err.contains("needs the client CA"), "{err}");
    let not_a_crl = TlsFiles {
        client_ca: Some(f.write("ca.crt", &f.ca.pem())),
        client_crl: Some(f.write("not.crl", &f.ca.pem())),
        ..without_ca
    };
    let err = mamori_server::tls::server_config(&not_a_crl).unwrap_err().to_string();
    assert!(err.contains("holds no PEM X509 CRL"), "{err}");
}

/// A raw HTTP/1.1 POST from a chosen local address (127.0.0.2 is loopback too on Linux).
async fn post_from(from: &str, to: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    // tokio binds the source address; the exchange itself is plain blocking I/O.
    let mut stream = socket.connect(to).await.unwrap().into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {to}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = tokio::task::spawn_blocking(move || {
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    })
    .await
    .unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response)
}

#[test]
fn eleventh_rapid_login_from_one_source_is_throttled_and_another_source_is_not() {
    let f = Fixture::new();
    let addr = f.serve_plain(ThrottleConfig::default());
    let body = json!({"login": "staff", "password": PASSWORD}).to_string();
    let wrong = json!({"login": "staff", "password": "Not-The-Password-9"}).to_string();
    let path = "/api/v1/auth/login";
    f.runtime.block_on(async {
        for i in 0..10 {
            // Right and wrong passwords alike count as attempts (not enough wrong ones to lock).
            let (status, response) = post_from("127.0.0.1", addr, path, if i % 3 == 0 { &wrong } else { &body }).await;
            assert!(status == 200 || status == 401, "attempt {i}: {response}");
        }
        let (status, response) = post_from("127.0.0.1", addr, path, &body).await;
        assert_eq!(status, 429, "{response}");
        let lower = response.to_ascii_lowercase();
        assert!(lower.contains("content-type: application/problem+json"), "{response}");
        assert!(lower.contains("urn:mamori:problem:too-many-attempts"), "{response}");
        let retry_after: u64 = lower
            .lines()
            .find_map(|l| l.strip_prefix("retry-after: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("Retry-After");
        assert!((1..=6).contains(&retry_after), "{retry_after}");
        // The TOTP confirmation shares the source's bucket, refused before any session lookup.
        let (status, _) = post_from("127.0.0.1", addr, "/api/v1/auth/totp/confirm", "{}").await;
        assert_eq!(status, 429);
        // Another address is not affected.
        let (status, response) = post_from("127.0.0.2", addr, path, &body).await;
        assert_eq!(status, 200, "{response}");
    });
    // The refusal is audited (once: a second refusal within the minute is only counted).
    let throttled: Vec<_> = f
        .failed_logins()
        .into_iter()
        .filter(|e| e.reason.as_deref().is_some_and(|r| r.starts_with("throttled")))
        .collect();
    assert_eq!(throttled.len(), 1, "{throttled:?}");
    assert_eq!((throttled[0].actor.as_str(), throttled[0].source.as_deref()), ("anonymous", Some("127.0.0.1")));
    let reason = throttled[0].reason.as_deref().unwrap_or_default();
    assert!(reason.ends_with(&format!("this one to POST {path})")), "which form was refused: {reason}");
}

/// Behind a reverse proxy on the same host every connection comes from 127.0.0.1, inside the
/// default trusted networks where no second factor is asked. With `trusted_proxies`, the
/// caller is the client the proxy names in `X-Forwarded-For` (its right-most entry: the left
/// ones the client wrote itself); a loopback connection that forwards for someone while no
/// proxy is configured is treated as an unknown, untrusted caller (000-8-access-11,
/// 004-V-2-5). Staff here have no second factor, so an untrusted source is refused.
#[test]
fn behind_a_proxy_the_forwarded_client_is_the_caller() {
    let f = Fixture::new();
    let open = ThrottleConfig { per_minute: 0, ..ThrottleConfig::default() };
    let proxied = ServerConfig {
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        login_throttle: open,
        ..ServerConfig::default()
    };
    let behind = format!("http://{}", f.serve_plain_with(proxied));
    let unconfigured = format!("http://{}", f.serve_plain(open));
    let res = ureq::get(&format!("{unconfigured}/healthz")).call().unwrap();
    assert_eq!(res.header("strict-transport-security"), None, "not over plain HTTP");
    let login_via = |url: &str, forwarded: Option<&str>| {
        let mut req = ureq::post(&format!("{url}/api/v1/auth/login")).set("content-type", "application/json");
        if let Some(f) = forwarded {
            req = req.set("x-forwarded-for", f);
        }
        match req.send_string(&json!({"login": "staff", "password": PASSWORD}).to_string()) {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(status, _)) => status,
            Err(e) => panic!("{e}"),
        }
    };
    // (server, X-Forwarded-For, expected status, source recorded)
    let cases = [
        (&behind, Some("192.0.2.7"), 401, "192.0.2.7"),
        (&behind, Some("127.0.0.1, 192.0.2.8"), 401, "192.0.2.8"),
        (&behind, Some("192.0.2.9, 127.0.0.1"), 401, "192.0.2.9"),
        (&behind, Some("127.0.0.1"), 200, "127.0.0.1"),
        (&behind, None, 401, "0.0.0.0"),
        (&behind, Some("not-an-address"), 401, "0.0.0.0"),
        (&unconfigured, Some("127.0.0.1"), 401, "0.0.0.0"),
        (&unconfigured, None, 200, "127.0.0.1"),
    ];
    for (url, forwarded, status, _) in &cases {
        assert_eq!(login_via(url, *forwarded), *status, "{forwarded:?} via {url}");
    }
    let mut sources: Vec<String> = f.logins().into_iter().filter_map(|e| e.source).collect();
    let mut expected: Vec<&str> = cases.iter().map(|c| c.3).collect();
    sources.sort();
    expected.sort();
    assert_eq!(sources, expected);
}
