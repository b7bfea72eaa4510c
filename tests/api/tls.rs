//! Native TLS: HTTPS with a certificate generated for the test, no plain HTTP on that port, a
//! handshake that cannot stall the accept loop, and SIGHUP swapping the certificate for new
//! connections while open ones carry on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Extension, Router};
use portvakt::http::server::{self, ServeOptions, Tls};
use portvakt::http::tls::CertStore;
use reqwest::StatusCode;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::binary::{Server, portvakt};
use crate::helpers::spawn_app_with;

/// A self-signed certificate for 127.0.0.1 and localhost, and its key, as PEM and DER.
struct TestCert {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl TestCert {
    fn new(common_name: &str) -> TestCert {
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("certificate parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().expect("key pair");
        let cert = params.self_signed(&key).expect("self-signed certificate");
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// Writes `cert.pem` and `key.pem` (owner-only) into `dir`; returns their paths.
    fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.cert_pem).expect("write cert");
        std::fs::write(&key, &self.key_pem).expect("write key");
        set_mode(&key, 0o600);
        (cert, key)
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A fresh client (no pooled connections, no resumable sessions) that trusts only `cert`.
fn client_trusting(cert: &TestCert) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_der(&cert.der).expect("certificate")])
        .tls_info(true)
        .build()
        .expect("client")
}

/// The certificate the server presented for this response.
fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("the response came over TLS")
        .to_vec()
}

/// A TLS connection of our own, so a test can be sure later requests reuse it.
async fn connect(addr: SocketAddr, trusted: &TestCert) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(trusted.der.clone()))
        .expect("trust anchor");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

/// Sends `GET path` on an open connection and returns the status code and body.
async fn get_on(stream: &mut TlsStream<TcpStream>, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed mid-response");
        buffer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buffer).to_string();
        let Some(head_end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length: usize = text[..head_end]
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("content-length");
        if buffer.len() >= head_end + 4 + length {
            let status = text[9..12].parse().expect("status code");
            return (status, text[head_end + 4..].to_string());
        }
    }
}

fn tls_settings(cert: &Path, key: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("tls_cert", cert.display().to_string()),
        ("tls_key", key.display().to_string()),
    ]
}

#[tokio::test]
async fn health_is_served_over_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new("portvakt-test");
    let (cert_path, key_path) = cert.write(dir.path());
    let settings = tls_settings(&cert_path, &key_path);
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(&pairs).await;
    assert!(app.base.starts_with("https://"), "{}", app.base);

    let response = client_trusting(&cert)
        .get(app.url("/health"))
        .send()
        .await
        .expect("https request");

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(peer_certificate(&response), cert.der);
    // Over native TLS the browser is told to stay on https.
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=63072000"
    );
    assert!(
        app.state.config.issuer.starts_with("https://"),
        "the default issuer follows the scheme"
    );
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = TestCert::new("plain").write(dir.path());
    let settings = tls_settings(&cert_path, &key_path);
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(&pairs).await;

    let plain = app.base.replacen("https://", "http://", 1);
    let result = reqwest::Client::new()
        .get(format!("{plain}/health"))
        .send()
        .await;

    assert!(result.is_err(), "plain HTTP was answered: {result:?}");
}

#[tokio::test]
async fn alpn_offers_http_1_1_only() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new("alpn");
    let (cert_path, key_path) = cert.write(dir.path());
    let settings = tls_settings(&cert_path, &key_path);
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(&pairs).await;
    let addr = app.base.trim_start_matches("https://").parse().unwrap();

    let mut stream = connect(addr, &cert).await;

    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(get_on(&mut stream, "/health").await.0, 200);
}

#[tokio::test]
async fn a_silent_client_neither_blocks_others_nor_keeps_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new("slow");
    let (cert_path, key_path) = cert.write(dir.path());
    let mut settings = tls_settings(&cert_path, &key_path);
    settings.push(("header_read_timeout", "1s".into()));
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(&pairs).await;
    let addr: SocketAddr = app.base.trim_start_matches("https://").parse().unwrap();

    // Connects and never starts the handshake.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let response = client_trusting(&cert)
        .get(app.url("/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("another client is served meanwhile");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(900));

    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the handshake timeout closes the silent connection: {closed:?}"
    );
}

#[tokio::test]
async fn requests_over_tls_carry_the_tls_marker_and_plain_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new("marker");
    let (cert_path, key_path) = cert.write(dir.path());
    let (store, _) = CertStore::open(portvakt::config::TlsFiles {
        cert: cert_path,
        key: key_path,
    })
    .unwrap();
    let router =
        Router::new().route(
            "/",
            get(|tls: Option<Extension<Tls>>| async move {
                if tls.is_some() { "tls" } else { "plain" }
            }),
        );
    let options = ServeOptions {
        header_read_timeout: Duration::from_secs(5),
        max_connections: 10,
        max_connections_per_ip: 0,
        trusted_proxies: Default::default(),
        shutdown_timeout: Duration::from_secs(1),
    };
    let mut bases = Vec::new();
    for acceptor in [Some(store.acceptor().unwrap()), None] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        bases.push(format!("{scheme}://{addr}/"));
        tokio::spawn(server::serve(
            listener,
            router.clone(),
            options.clone(),
            acceptor,
            std::future::pending(),
        ));
    }

    let client = client_trusting(&cert);
    let over_tls = client.get(&bases[0]).send().await.unwrap();
    let plain = client.get(&bases[1]).send().await.unwrap();

    assert_eq!(over_tls.text().await.unwrap(), "tls");
    assert_eq!(plain.text().await.unwrap(), "plain");
}

#[tokio::test]
async fn sighup_swaps_the_certificate_for_new_connections_and_open_ones_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestCert::new("first");
    let second = TestCert::new("second");
    let (cert_path, key_path) = first.write(dir.path());
    let mut server = Server::start(
        dir.path(),
        &[
            ("PORTVAKT_TLS_CERT", cert_path.to_str().unwrap()),
            ("PORTVAKT_TLS_KEY", key_path.to_str().unwrap()),
        ],
    );
    let loaded = server
        .seen
        .iter()
        .find(|l| l.contains("TLS certificate loaded"))
        .cloned()
        .expect("the loaded certificate is logged before ready");
    assert!(loaded.contains("CN=first"), "{loaded}");
    assert!(loaded.contains("not_after"), "{loaded}");
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let url = format!("https://{addr}/health");

    let mut open = connect(addr, &first).await;
    assert_eq!(get_on(&mut open, "/health").await.0, 200);
    let response = client_trusting(&first).get(&url).send().await.unwrap();
    assert_eq!(peer_certificate(&response), first.der);

    // A good replacement: new connections get it.
    second.write(dir.path());
    server.signal(libc::SIGHUP);
    let reloaded = server.wait_for("TLS certificate reloaded");
    assert!(
        reloaded["subject"].as_str().unwrap().contains("CN=second"),
        "{reloaded}"
    );
    let response = client_trusting(&second).get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(peer_certificate(&response), second.der);
    assert!(
        client_trusting(&first).get(&url).send().await.is_err(),
        "the old certificate is no longer served"
    );
    assert_eq!(
        get_on(&mut open, "/health").await.0,
        200,
        "a connection opened before the reload still works"
    );

    // A bad replacement: the previous certificate stays.
    std::fs::write(&key_path, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n").unwrap();
    server.signal(libc::SIGHUP);
    let refused = server.wait_for("TLS certificate not reloaded; still serving the previous one");
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("key.pem"), "{refused}");
    assert!(!error.contains("c2VjcmV0"), "key content is never logged");
    let response = client_trusting(&second).get(&url).send().await.unwrap();
    assert_eq!(peer_certificate(&response), second.der);

    assert!(server.terminate().success());
    let all = server.seen.join("\n");
    for key in [&first.key_pem, &second.key_pem] {
        let body = key.lines().nth(1).unwrap();
        assert!(!all.contains(body), "a private key reached the logs");
    }
}

#[test]
fn one_tls_file_without_the_other_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, _) = TestCert::new("half").write(dir.path());
    let out = portvakt(dir.path())
        .arg("serve")
        .env("PORTVAKT_TLS_CERT", &cert_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PORTVAKT_TLS_CERT") && err.contains("PORTVAKT_TLS_KEY is not"),
        "{err}"
    );
}

#[test]
fn check_reports_the_certificate_and_what_is_wrong_with_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new("checked");
    let (cert_path, key_path) = cert.write(dir.path());
    let check = || {
        portvakt(dir.path())
            .arg("check")
            .env("PORTVAKT_TLS_CERT", &cert_path)
            .env("PORTVAKT_TLS_KEY", &key_path)
            .output()
            .unwrap()
    };

    let out = check();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("[pass] tls "), "{text}");
    assert!(text.contains("[pass] tls_certificate"), "{text}");
    assert!(
        text.contains("CN=checked") && text.contains("expires"),
        "{text}"
    );

    set_mode(&key_path, 0o644);
    let text = String::from_utf8_lossy(&check().stdout).to_string();
    assert!(
        text.contains("[warn] tls ") && text.contains("chmod 600"),
        "{text}"
    );

    std::fs::write(
        &key_path,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = check();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("[fail] tls_certificate") && text.contains("key.pem"),
        "{text}"
    );
    assert!(!text.contains("c2VjcmV0"), "key content is never printed");

    std::fs::remove_file(&key_path).unwrap();
    let out = check();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("[fail] tls ") && text.contains("key.pem"),
        "{text}"
    );
    let serve = portvakt(dir.path())
        .arg("serve")
        .env("PORTVAKT_TLS_CERT", &cert_path)
        .env("PORTVAKT_TLS_KEY", &key_path)
        .output()
        .unwrap();
    assert!(!serve.status.success());
    let err = String::from_utf8_lossy(&serve.stderr);
    assert!(
        err.contains("PORTVAKT_TLS_KEY") && err.contains("key.pem"),
        "{err}"
    );
}

/// `portvakt healthcheck` over native TLS trusts the configured certificate, and only it.
#[test]
fn healthcheck_speaks_tls_to_the_configured_certificate_only() {
    let dir = tempfile::tempdir().unwrap();
    let served = TestCert::new("served");
    let (cert_path, key_path) = served.write(dir.path());
    let mut server = Server::start(
        dir.path(),
        &[
            ("PORTVAKT_TLS_CERT", cert_path.to_str().unwrap()),
            ("PORTVAKT_TLS_KEY", key_path.to_str().unwrap()),
        ],
    );
    let addr = server.base.trim_start_matches("http://").to_string();
    let healthcheck = |cert: &Path, key: &Path| {
        crate::binary::portvakt(dir.path())
            .arg("healthcheck")
            .env("PORTVAKT_ADDR", &addr)
            .env("PORTVAKT_TLS_CERT", cert)
            .env("PORTVAKT_TLS_KEY", key)
            .output()
            .unwrap()
    };
    let out = healthcheck(&cert_path, &key_path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Configured with another certificate than the one served: refused.
    let other_dir = tempfile::tempdir().unwrap();
    let (other_cert, other_key) = TestCert::new("impostor").write(other_dir.path());
    let out = healthcheck(&other_cert, &other_key);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TLS handshake"), "{stderr}");
    assert!(server.terminate().success());
}
