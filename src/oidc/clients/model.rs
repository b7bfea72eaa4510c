//! A registered client's settings as typed values, and the RFC 7591 §2 rules that turn
//! request fields into them. Every rule that fails is reported, each naming its field.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::FieldError;

/// A client's id: a UUIDv7, public (it appears in every authorization request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId(pub Uuid);

impl ClientId {
    pub fn new() -> ClientId {
        ClientId(Uuid::now_v7())
    }

    pub fn parse(s: &str) -> Option<ClientId> {
        Uuid::parse_str(s).ok().map(ClientId)
    }
}

impl Default for ClientId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How a client authenticates at the token endpoint (RFC 7591 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client (browser or native app): no secret, PKCE required.
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<AuthMethod> {
        [
            AuthMethod::ClientSecretBasic,
            AuthMethod::ClientSecretPost,
            AuthMethod::None,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }

    /// Whether the client holds a secret.
    pub fn is_confidential(self) -> bool {
        self != AuthMethod::None
    }
}

/// A grant the client may use at the token endpoint.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }

    pub fn parse(s: &str) -> Option<GrantType> {
        [
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ]
        .into_iter()
        .find(|g| g.as_str() == s)
    }
}

/// The algorithm of the client's ID tokens (API.md: RS256 by default for old relying parties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub enum IdTokenAlg {
    #[default]
    RS256,
    EdDSA,
    ES256,
}

impl IdTokenAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            IdTokenAlg::RS256 => "RS256",
            IdTokenAlg::EdDSA => "EdDSA",
            IdTokenAlg::ES256 => "ES256",
        }
    }

    pub fn parse(s: &str) -> Option<IdTokenAlg> {
        [IdTokenAlg::RS256, IdTokenAlg::EdDSA, IdTokenAlg::ES256]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_URIS: usize = 20;
pub const MAX_URI_LEN: usize = 2000;
pub const MAX_SCOPE_LEN: usize = 1000;
pub const DEFAULT_SCOPE: &str = "openid profile email";

/// A redirect or post-logout redirect URI, kept exactly as registered: the authorize
/// endpoint compares strings, not parsed URLs (OAuth 2.0 Security BCP, RFC 9700 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri(String);

impl RedirectUri {
    /// An absolute `https` URI, or `http` on a loopback host for native apps and local
    /// development (RFC 8252 §7.3), without a fragment (RFC 6749 §3.1.2) or user info.
    pub fn parse(raw: &str) -> Result<RedirectUri, String> {
        if raw.len() > MAX_URI_LEN {
            return Err(format!("must be at most {MAX_URI_LEN} characters"));
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("must not contain spaces or control characters".into());
        }
        let url = url::Url::parse(raw).map_err(|_| "must be an absolute URI".to_string())?;
        if raw.contains('#') {
            return Err("must not contain a fragment".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain user information".into());
        }
        let loopback = matches!(
            url.host(),
            Some(url::Host::Domain("localhost"))
                | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
                | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
        );
        match url.scheme() {
            "https" if url.host().is_some() => Ok(RedirectUri(raw.to_string())),
            "http" if loopback => Ok(RedirectUri(raw.to_string())),
            "http" => {
                Err("must use https (plain http only on localhost, 127.0.0.1 or [::1])".into())
            }
            _ => Err("must be an https URI (or http on a loopback address)".into()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The scopes a client may ask for: RFC 6749 §3.3 scope tokens, space-separated, without
/// repeats, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(String);

impl Scope {
    pub fn parse(raw: &str) -> Result<Scope, String> {
        if raw.len() > MAX_SCOPE_LEN {
            return Err(format!("must be at most {MAX_SCOPE_LEN} characters"));
        }
        let mut tokens: Vec<&str> = Vec::new();
        for token in raw.split(' ').filter(|t| !t.is_empty()) {
            // scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            if !token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
            {
                return Err("must be scope names of printable ASCII without `\"` or `\\`, separated by spaces".into());
            }
            if !tokens.contains(&token) {
                tokens.push(token);
            }
        }
        if tokens.is_empty() {
            return Err("must name at least one scope".into());
        }
        Ok(Scope(tokens.join(" ")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.split(' ').any(|s| s == scope)
    }
}

/// A client's settings, every rule checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub client_name: String,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    pub grant_types: Vec<GrantType>,
    pub token_endpoint_auth_method: AuthMethod,
    pub scope: Scope,
    pub id_token_signed_response_alg: IdTokenAlg,
}

/// A client's settings as strings, before the rules: a create request with its defaults
/// filled in, or a stored client with a PATCH laid over it.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub scope: String,
    pub id_token_signed_response_alg: String,
}

/// Which field to blame for a rule that ties two fields together: the one the request set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    GrantTypes,
    AuthMethod,
}

fn uris(raw: &[String], field: &str, errors: &mut Vec<FieldError>) -> Vec<RedirectUri> {
    if raw.len() > MAX_URIS {
        errors.push(FieldError::new(
            field,
            format!("must list at most {MAX_URIS} URIs"),
        ));
        return Vec::new();
    }
    let mut out: Vec<RedirectUri> = Vec::new();
    for (i, uri) in raw.iter().enumerate() {
        match RedirectUri::parse(uri) {
            Ok(u) if out.contains(&u) => {
                errors.push(FieldError::new(format!("{field}[{i}]"), "is listed twice"))
            }
            Ok(u) => out.push(u),
            Err(m) => errors.push(FieldError::new(format!("{field}[{i}]"), m)),
        }
    }
    out
}

impl Draft {
    /// Checks every rule; the errors name each field that broke one (`redirect_uris[1]`
    /// for one URI of a list). `blame` picks the field named when the grants and the
    /// authentication method disagree.
    pub fn parse(self, blame: Blame) -> Result<ClientSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = self.client_name.trim();
        if name.is_empty() {
            errors.push(FieldError::new("client_name", "must not be empty"));
        } else if name.chars().count() > MAX_NAME_CHARS {
            errors.push(FieldError::new(
                "client_name",
                format!("must be at most {MAX_NAME_CHARS} characters"),
            ));
        } else if name.chars().any(char::is_control) {
            errors.push(FieldError::new(
                "client_name",
                "must not contain control characters",
            ));
        }
        let redirect_uris = uris(&self.redirect_uris, "redirect_uris", &mut errors);
        let post_logout_redirect_uris = uris(
            &self.post_logout_redirect_uris,
            "post_logout_redirect_uris",
            &mut errors,
        );
        let method = AuthMethod::parse(&self.token_endpoint_auth_method);
        if method.is_none() {
            errors.push(FieldError::new(
                "token_endpoint_auth_method",
                "must be one of client_secret_basic, client_secret_post, none",
            ));
        }
        let mut grants: Vec<GrantType> = Vec::new();
        let mut grants_ok = true;
        for g in &self.grant_types {
            match GrantType::parse(g) {
                Some(g) if !grants.contains(&g) => grants.push(g),
                Some(_) => {}
                None => grants_ok = false,
            }
        }
        grants.sort();
        if !grants_ok {
            errors.push(FieldError::new(
                "grant_types",
                "must be among authorization_code, refresh_token, client_credentials",
            ));
        } else if grants.is_empty() {
            errors.push(FieldError::new("grant_types", "must not be empty"));
        } else if grants.contains(&GrantType::RefreshToken)
            && !grants.contains(&GrantType::AuthorizationCode)
        {
            // Refresh tokens come only from the code flow here: client_credentials issues
            // none (RFC 6749 §4.4.3).
            errors.push(FieldError::new(
                "grant_types",
                "refresh_token needs authorization_code",
            ));
        }
        let code_flow = grants.contains(&GrantType::AuthorizationCode);
        if code_flow && self.redirect_uris.is_empty() {
            errors.push(FieldError::new(
                "redirect_uris",
                "must list at least one URI for the authorization_code grant",
            ));
        }
        if grants_ok
            && method == Some(AuthMethod::None)
            && grants.contains(&GrantType::ClientCredentials)
        {
            let field = match blame {
                Blame::GrantTypes => "grant_types",
                Blame::AuthMethod => "token_endpoint_auth_method",
            };
            errors.push(FieldError::new(
                field,
                "client_credentials needs a confidential client (a public client, auth method none, cannot keep a secret)",
            ));
        }
        let scope = Scope::parse(&self.scope)
            .map_err(|m| errors.push(FieldError::new("scope", m)))
            .ok();
        let alg = IdTokenAlg::parse(&self.id_token_signed_response_alg);
        if alg.is_none() {
            errors.push(FieldError::new(
                "id_token_signed_response_alg",
                "must be one of RS256, EdDSA, ES256",
            ));
        }
        match (method, scope, alg) {
            (Some(method), Some(scope), Some(alg)) if errors.is_empty() => Ok(ClientSpec {
                client_name: name.to_string(),
                redirect_uris,
                post_logout_redirect_uris,
                grant_types: grants,
                token_endpoint_auth_method: method,
                scope,
                id_token_signed_response_alg: alg,
            }),
            _ => Err(errors),
        }
    }
}

impl ClientSpec {
    /// Back to strings, to lay a PATCH over.
    pub fn draft(&self) -> Draft {
        let strings = |u: &[RedirectUri]| u.iter().map(|u| u.as_str().to_string()).collect();
        Draft {
            client_name: self.client_name.clone(),
            redirect_uris: strings(&self.redirect_uris),
            post_logout_redirect_uris: strings(&self.post_logout_redirect_uris),
            grant_types: self
                .grant_types
                .iter()
                .map(|g| g.as_str().to_string())
                .collect(),
            token_endpoint_auth_method: self.token_endpoint_auth_method.as_str().to_string(),
            scope: self.scope.as_str().to_string(),
            id_token_signed_response_alg: self.id_token_signed_response_alg.as_str().to_string(),
        }
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft {
            client_name: "App".into(),
            redirect_uris: vec!["https://app.example.com/cb".into()],
            grant_types: vec!["authorization_code".into()],
            token_endpoint_auth_method: "client_secret_basic".into(),
            scope: DEFAULT_SCOPE.into(),
            id_token_signed_response_alg: "RS256".into(),
            ..Draft::default()
        }
    }

    fn fields(d: Draft) -> Vec<String> {
        d.parse(Blame::GrantTypes)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_http_without_fragment() {
        for ok in [
            "https://app.example.com/cb",
            "https://app.example.com:8443/cb?x=1",
            "http://localhost:3000/cb",
            "http://127.0.0.1:8080/cb",
            "http://[::1]/cb",
        ] {
            assert_eq!(RedirectUri::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "/cb",
            "app.example.com/cb",
            "http://app.example.com/cb",
            "http://localhost.evil.com/cb",
            "https://app.example.com/cb#x",
            "https://user:pw@app.example.com/cb",
            "javascript:alert(1)",
            "com.example.app:/cb",
            "https://app.example.com/c b",
            "",
        ] {
            assert!(RedirectUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_are_rfc_6749_tokens_without_repeats() {
        assert_eq!(
            Scope::parse(" openid  email openid ").unwrap().as_str(),
            "openid email"
        );
        assert!(Scope::parse("").is_err());
        assert!(Scope::parse("open\"id").is_err());
        assert!(Scope::parse("caf\u{e9}").is_err());
    }

    #[test]
    fn a_valid_draft_becomes_a_spec_with_sorted_grants() {
        let mut d = draft();
        d.grant_types = vec!["refresh_token".into(), "authorization_code".into()];
        let spec = d.parse(Blame::GrantTypes).unwrap();
        assert_eq!(
            spec.grant_types,
            [GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert_eq!(spec.draft().parse(Blame::GrantTypes).unwrap(), spec);
    }

    #[test]
    fn every_broken_rule_is_named() {
        let d = Draft {
            client_name: " ".into(),
            redirect_uris: vec!["https://ok.example/cb".into(), "http://evil.example".into()],
            post_logout_redirect_uris: vec!["x".into()],
            grant_types: vec!["password".into()],
            token_endpoint_auth_method: "private_key_jwt".into(),
            scope: "".into(),
            id_token_signed_response_alg: "HS256".into(),
        };
        assert_eq!(
            fields(d),
            [
                "client_name",
                "redirect_uris[1]",
                "post_logout_redirect_uris[0]",
                "token_endpoint_auth_method",
                "grant_types",
                "scope",
                "id_token_signed_response_alg"
            ]
        );
    }

    #[test]
    fn grants_and_auth_method_must_agree() {
        let mut d = draft();
        d.token_endpoint_auth_method = "none".into();
        d.grant_types = vec!["client_credentials".into()];
        assert_eq!(fields(d.clone()), ["grant_types"]);
        let errors = d.parse(Blame::AuthMethod).unwrap_err();
        assert_eq!(errors[0].field, "token_endpoint_auth_method");

        let mut d = draft();
        d.grant_types = vec!["refresh_token".into()];
        assert_eq!(fields(d), ["grant_types"]);

        let mut d = draft();
        d.redirect_uris.clear();
        assert_eq!(fields(d), ["redirect_uris"]);

        // A service client needs no redirect URI.
        let mut d = draft();
        d.redirect_uris.clear();
        d.grant_types = vec!["client_credentials".into()];
        assert!(d.parse(Blame::GrantTypes).is_ok());
    }
}
