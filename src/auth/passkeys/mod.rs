//! Passkeys (WebAuthn, through webauthn-rs): registered on the account, then used either as
//! the second factor after a password or alone (passwordless, with user verification).
//!
//! A ceremony takes two requests: the server hands out options with a challenge, the
//! authenticator answers. The server half of each ceremony is kept in the database
//! (`webauthn_ceremonies`, or the login's `mfa_challenges` row) under the hash of a token the
//! client holds, so any instance can finish what another started, and each is used once.

pub mod account;
pub mod login;
mod store;

use url::Url;
use webauthn_rs::prelude::{Webauthn, WebauthnBuilder};

pub use store::{count_of_user, delete_of_user};

/// Lifetime of a ceremony: as long as the authenticator is given (webauthn-rs's default).
const CEREMONY_TTL: std::time::Duration = webauthn_rs::DEFAULT_AUTHENTICATOR_TIMEOUT;

/// Who passkeys are bound to: the relying party id (a domain) and the page origins that may
/// run ceremonies for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    pub rp_id: String,
    pub origins: Vec<Url>,
}

impl RelyingParty {
    /// From the settings, defaulting to the issuer. Browsers refuse passkeys on an IP
    /// address, so an issuer such as `http://127.0.0.1:8080` (the development default)
    /// becomes `localhost` with the same port.
    pub fn from_settings(
        issuer: &str,
        rp_id: Option<&str>,
        origins: Option<&str>,
    ) -> Result<RelyingParty, String> {
        let issuer = Url::parse(issuer).map_err(|e| format!("the issuer is not a URL: {e}"))?;
        let issuer_host = issuer.host_str().unwrap_or_default();
        let on_ip = issuer_host.parse::<std::net::IpAddr>().is_ok() || issuer_host.starts_with('[');
        let rp_id = match rp_id {
            Some(id) => id.trim().to_owned(),
            None if on_ip => "localhost".to_owned(),
            None => issuer_host.to_owned(),
        };
        if rp_id.is_empty()
            || rp_id.parse::<std::net::IpAddr>().is_ok()
            || !rp_id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(format!(
                "PORTVAKT_WEBAUTHN_RP_ID `{rp_id}` is not a lowercase domain name (browsers refuse passkeys for IP addresses)"
            ));
        }
        let origins: Vec<Url> = match origins {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|o| parse_origin(o).map_err(|e| format!("PORTVAKT_WEBAUTHN_ORIGINS: {e}")))
                .collect::<Result<_, _>>()?,
            None => {
                let mut origin = issuer.clone();
                origin.set_path("");
                if on_ip {
                    origin
                        .set_host(Some("localhost"))
                        .map_err(|e| format!("the issuer's origin: {e}"))?;
                }
                vec![parse_origin(
                    origin.origin().ascii_serialization().as_str(),
                )?]
            }
        };
        if origins.is_empty() {
            return Err("PORTVAKT_WEBAUTHN_ORIGINS names no origin".into());
        }
        let rp = RelyingParty { rp_id, origins };
        // webauthn-rs checks that every origin is on the relying party's domain.
        rp.webauthn().map_err(|e| {
            format!(
                "passkeys: the origins ({}) are not all on PORTVAKT_WEBAUTHN_RP_ID `{}`: {e}",
                rp.origins_text(),
                rp.rp_id
            )
        })?;
        Ok(rp)
    }

    pub fn origins_text(&self) -> String {
        self.origins
            .iter()
            .map(|o| o.origin().ascii_serialization())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Origins that are neither https nor `http://localhost` (refused in production).
    pub fn insecure_origins(&self) -> Vec<String> {
        self.origins
            .iter()
            .filter(|o| o.scheme() != "https" && o.host_str() != Some("localhost"))
            .map(|o| o.origin().ascii_serialization())
            .collect()
    }

    /// The verifier. On `localhost` any port is accepted: development servers move around,
    /// and only the developer's own machine can be `localhost`.
    pub fn webauthn(&self) -> Result<Webauthn, webauthn_rs::prelude::WebauthnError> {
        let (first, rest) = self
            .origins
            .split_first()
            .ok_or(webauthn_rs::prelude::WebauthnError::Configuration)?;
        let mut builder = WebauthnBuilder::new(&self.rp_id, first)?
            .rp_name(&self.rp_id)
            .allow_any_port(self.rp_id == "localhost");
        for origin in rest {
            builder = builder.append_allowed_origin(origin);
        }
        builder.build()
    }
}

fn parse_origin(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    let bare = url.path() == "/" || url.path().is_empty();
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || !bare
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(format!(
            "`{text}` is not an origin such as `https://app.example.com`"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::RelyingParty;

    #[test]
    fn an_ip_issuer_becomes_localhost_with_its_port() {
        let rp = RelyingParty::from_settings("http://127.0.0.1:8080", None, None).unwrap();
        assert_eq!(rp.rp_id, "localhost");
        assert_eq!(rp.origins_text(), "http://localhost:8080");
    }

    #[test]
    fn a_domain_issuer_is_its_own_relying_party() {
        let rp = RelyingParty::from_settings("https://id.example.com/base", None, None).unwrap();
        assert_eq!(rp.rp_id, "id.example.com");
        assert_eq!(rp.origins_text(), "https://id.example.com");
        assert!(rp.insecure_origins().is_empty());
    }

    #[test]
    fn origins_must_sit_on_the_relying_party_domain() {
        let ok = RelyingParty::from_settings(
            "https://id.example.com",
            Some("example.com"),
            Some("https://app.example.com, https://id.example.com"),
        )
        .unwrap();
        assert_eq!(ok.origins.len(), 2);
        let err = RelyingParty::from_settings(
            "https://id.example.com",
            Some("example.com"),
            Some("https://evil.test"),
        )
        .unwrap_err();
        assert!(err.contains("not all on"), "{err}");
    }

    #[test]
    fn ip_addresses_and_paths_are_refused() {
        assert!(RelyingParty::from_settings("https://x.test", Some("10.0.0.1"), None).is_err());
        assert!(
            RelyingParty::from_settings("https://x.test", None, Some("https://x.test/app"))
                .is_err()
        );
        let rp =
            RelyingParty::from_settings("https://x.test", None, Some("http://x.test")).unwrap();
        assert_eq!(rp.insecure_origins(), vec!["http://x.test"]);
    }
}
