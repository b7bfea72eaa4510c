//! `portvakt healthcheck`: asks the local instance's `/health` and succeeds only on a 200, so
//! a container's HEALTHCHECK needs no curl in the image. With native TLS it trusts exactly
//! the certificate the service is configured to present (whatever names it carries), not the
//! system's CAs: it is checking this instance, not the public PKI.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;

use crate::config::{Config, TlsFiles};

/// A container runtime kills a hung check anyway; answering sooner says more.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where to reach the configured listener from this machine.
pub fn target(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// `Ok` when `/health` answered 200 within the timeout.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    let addr = target(config.addr);
    tokio::time::timeout(TIMEOUT, probe(addr, config.tls.as_ref()))
        .await
        .with_context(|| format!("no answer from {addr} within {TIMEOUT:?}"))?
}

async fn probe(addr: SocketAddr, tls: Option<&TlsFiles>) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let status = match tls {
        None => get_health(tcp, addr).await?,
        Some(files) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(pinned_client(files)?));
            // The name is not checked (the pin is); SNI just needs a syntactically valid one.
            let name = ServerName::IpAddress(addr.ip().into());
            let stream = connector
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS handshake with {addr} failed"))?;
            get_health(stream, addr).await?
        }
    };
    anyhow::ensure!(status == 200, "/health answered {status}");
    Ok(())
}

async fn get_health<I>(io: I, addr: SocketAddr) -> anyhow::Result<u16>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let driver = tokio::spawn(connection);
    let request = http::Request::get("/health")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::USER_AGENT, "portvakt-healthcheck")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    driver.abort();
    Ok(response.status().as_u16())
}

fn pinned_client(files: &TlsFiles) -> anyhow::Result<rustls::ClientConfig> {
    let leaf = CertificateDer::pem_file_iter(&files.cert)
        .ok()
        .and_then(|mut items| items.next())
        .and_then(Result::ok)
        .with_context(|| format!("cannot read a certificate from {}", files.cert.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Pinned {
        leaf: leaf.into_owned(),
        algorithms: provider.signature_verification_algorithms,
    };
    Ok(
        rustls::ClientConfig::builder_with_provider(provider as Arc<CryptoProvider>)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth(),
    )
}

/// Accepts the one configured certificate, and checks that the peer holds its key.
#[derive(Debug)]
struct Pinned {
    leaf: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server presented a certificate other than the configured one".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_reached_on_loopback() {
        assert_eq!(
            target("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            target("[::]:9".parse().unwrap()),
            "[::1]:9".parse().unwrap()
        );
        assert_eq!(
            target("10.1.2.3:80".parse().unwrap()),
            "10.1.2.3:80".parse().unwrap()
        );
    }
}
