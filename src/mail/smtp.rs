//! `PORTVAKT_SMTP_URL` and the lettre transport built from it.

use std::fmt;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

/// How long one SMTP conversation may take before the attempt counts as failed. Below the
/// claim lease (`worker::LEASE`), so no other instance takes a message still being sent.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://`: plain connect, then STARTTLS, which must succeed.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Tls,
    /// `smtp://...?tls=none`: no encryption at all (a relay on the same host).
    None,
}

/// A parsed `PORTVAKT_SMTP_URL`. The password never shows in `Debug` or `describe`.
#[derive(Clone)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// `PORTVAKT_SMTP_CA_FILE`: its path and the CA certificates trusted besides the system's.
    pub ca: Option<(String, Certificate)>,
}

/// Reads a PEM file of CA certificates; refuses one without any, which would otherwise
/// trust nothing more and fail only at the first delivery.
pub fn read_ca_file(path: &std::path::Path) -> Result<Certificate, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
        count += 1;
    }
    if count == 0 {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl SmtpUrl {
    pub fn parse(text: &str) -> Result<SmtpUrl, String> {
        let url = url::Url::parse(text).map_err(|_| {
            "not a URL such as smtp://user:pass@mail.example.com:587 or smtps://...".to_string()
        })?;
        let mut security = match url.scheme() {
            "smtp" => Security::StartTls,
            "smtps" => Security::Tls,
            other => return Err(format!("scheme `{other}` is not smtp or smtps")),
        };
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref()) {
                ("tls", "none") if security == Security::StartTls => security = Security::None,
                // `required` is lettre's own spelling of STARTTLS-or-fail.
                ("tls", "starttls" | "required") if security == Security::StartTls => {}
                ("tls", _) => {
                    return Err(
                        "`tls` may only be `starttls` (or `required`) or `none`, and only with smtp://; \
                         opportunistic STARTTLS is not offered, since anyone on the path could strip it"
                            .into(),
                    );
                }
                (other, _) => return Err(format!("unknown parameter `{other}`")),
            }
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err("has no host".into()),
        };
        if url.path() != "" && url.path() != "/" || url.fragment().is_some() {
            return Err("must not have a path or fragment".into());
        }
        let port = url.port().unwrap_or(match security {
            Security::Tls => 465,
            Security::StartTls | Security::None => 587,
        });
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| "the user or password is not UTF-8 once percent-decoded".to_string())
        };
        let user = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = match url.password() {
            Some(p) if user.is_some() => Some(SecretString::from(decode(p)?)),
            Some(_) => return Err("has a password but no user".into()),
            None if user.is_some() => return Err("has a user but no password".into()),
            None => None,
        };
        Ok(SmtpUrl {
            host,
            port,
            security,
            user,
            password,
            ca: None,
        })
    }

    /// Trusts the CA certificates of `file` for this server, besides the system's.
    pub fn with_ca(mut self, file: String, ca: Certificate) -> SmtpUrl {
        self.ca = Some((file, ca));
        self
    }

    /// Whether the connection is encrypted.
    pub fn encrypted(&self) -> bool {
        self.security != Security::None
    }

    /// Whether the server is on this host (where `tls=none` exposes nothing to a network).
    pub fn is_loopback(&self) -> bool {
        match self.host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => self.host.eq_ignore_ascii_case("localhost"),
        }
    }

    /// For logs and `portvakt check`: everything but the password.
    pub fn describe(&self) -> String {
        let scheme = match self.security {
            Security::Tls => "smtps",
            _ => "smtp",
        };
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}:***@"))
            .unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let query = if self.security == Security::None {
            "?tls=none"
        } else {
            ""
        };
        let ca = match &self.ca {
            Some((file, _)) if self.encrypted() => format!(" (also trusting the CA in {file})"),
            _ => String::new(),
        };
        format!("{scheme}://{user}{host}:{}{query}{ca}", self.port)
    }

    /// The transport: a small pool of connections, each checked before reuse.
    pub fn transport(&self) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
        let parameters = || {
            let mut builder = TlsParameters::builder(self.host.clone());
            if let Some((_, ca)) = &self.ca {
                builder = builder.add_root_certificate(ca.clone());
            }
            builder.build()
        };
        let tls = match self.security {
            Security::None => Tls::None,
            Security::StartTls => Tls::Required(parameters()?),
            Security::Tls => Tls::Wrapper(parameters()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(SEND_TIMEOUT));
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_string(),
            ));
        }
        Ok(builder.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_pick_the_security_and_the_default_port() {
        let u = SmtpUrl::parse("smtp://mail.example.com").unwrap();
        assert_eq!((u.security, u.port), (Security::StartTls, 587));
        let u = SmtpUrl::parse("smtps://mail.example.com").unwrap();
        assert_eq!((u.security, u.port), (Security::Tls, 465));
        let u = SmtpUrl::parse("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!((u.security, u.port), (Security::None, 2525));
        assert!(u.is_loopback());
        assert!(SmtpUrl::parse("smtps://h?tls=none").is_err());
        assert!(SmtpUrl::parse("smtp://h?tls=maybe").is_err());
        assert!(SmtpUrl::parse("smtp://h?verify=no").is_err());
        assert!(SmtpUrl::parse("http://h").is_err());
        assert!(SmtpUrl::parse("smtp://user@h").is_err());
        let u = SmtpUrl::parse("smtp://h:2525?tls=required").unwrap();
        assert_eq!((u.security, u.port), (Security::StartTls, 2525));
        assert!(SmtpUrl::parse("smtp://h?tls=opportunistic").is_err());
    }

    #[test]
    fn credentials_are_decoded_and_never_described() {
        let u = SmtpUrl::parse("smtp://ada%40example.com:p%40ss%3Aword@mail.example.com").unwrap();
        assert_eq!(u.user.as_deref(), Some("ada@example.com"));
        assert_eq!(u.password.as_ref().unwrap().expose_secret(), "p@ss:word");
        let shown = format!("{} {:?}", u.describe(), u);
        assert!(!shown.contains("p@ss"), "{shown}");
        assert!(!shown.contains("p%40ss"), "{shown}");
    }
}
