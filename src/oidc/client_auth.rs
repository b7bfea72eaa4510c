//! Client authentication at the token, introspection and revocation endpoints (RFC 6749
//! §2.3): `client_secret_basic`, `client_secret_post` or `none` (a public client names
//! itself with `client_id`). A client may use only the method it registered; any failure
//! is one answer, 401 `invalid_client`.

use axum::http::{HeaderMap, header};
use base64::Engine;

use super::clients::{self, AuthMethod, Client, ClientId};
use super::oauth::{OAuthError, Params};
use crate::app::AppState;

/// What the request presented.
struct Presented {
    client_id: String,
    secret: Option<String>,
    method: AuthMethod,
}

/// The authenticated client of a request.
#[tracing::instrument(skip_all)]
pub async fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Client, OAuthError> {
    let presented = presented(headers, params)?;
    let Some(id) = ClientId::parse(&presented.client_id) else {
        return Err(OAuthError::invalid_client());
    };
    let Some(client) = clients::find(app, id).await? else {
        return Err(OAuthError::invalid_client());
    };
    if client.spec.token_endpoint_auth_method != presented.method {
        return Err(OAuthError::invalid_client());
    }
    if let Some(secret) = &presented.secret
        && !clients::verify_secret(&client, secret)
    {
        return Err(OAuthError::invalid_client());
    }
    tracing::Span::current().record("client_id", tracing::field::display(id));
    Ok(client)
}

fn presented(headers: &HeaderMap, params: &Params) -> Result<Presented, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            basic_credentials(value.to_str().ok()).ok_or_else(OAuthError::invalid_client)?
        }
        None => None,
    };
    let form_id = params.get("client_id");
    let form_secret = params.get("client_secret");
    match basic {
        Some((id, secret)) => {
            // RFC 6749 §2.3: one authentication method per request.
            if form_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "Use one client authentication method, not two.",
                ));
            }
            if form_id.is_some_and(|f| f != id) {
                return Err(OAuthError::invalid_client());
            }
            Ok(Presented {
                client_id: id,
                secret: Some(secret),
                method: AuthMethod::ClientSecretBasic,
            })
        }
        None => {
            let Some(id) = form_id else {
                return Err(OAuthError::invalid_client());
            };
            Ok(match form_secret {
                Some(secret) => Presented {
                    client_id: id.to_string(),
                    secret: Some(secret.to_string()),
                    method: AuthMethod::ClientSecretPost,
                },
                None => Presented {
                    client_id: id.to_string(),
                    secret: None,
                    method: AuthMethod::None,
                },
            })
        }
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1). `Ok(None)`: another
/// scheme (ignored, e.g. a Bearer header on a form-authenticated request is not ours to
/// judge); `None` from the outer option: a Basic header that does not decode.
fn basic_credentials(value: Option<&str>) -> Option<Option<(String, String)>> {
    let value = value?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Some(None);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let id = form_decode(id)?;
    let secret = form_decode(secret)?;
    if id.is_empty() {
        return None;
    }
    Some(Some((id, secret)))
}

/// Undoes `application/x-www-form-urlencoded` encoding of one value.
fn form_decode(part: &str) -> Option<String> {
    let spaced = part.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(text: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(text)
        )
    }

    #[test]
    fn basic_credentials_are_url_decoded() {
        let header = basic("my%3Aid:s%2Bec+ret");
        assert_eq!(
            basic_credentials(Some(&header)),
            Some(Some(("my:id".to_string(), "s+ec ret".to_string())))
        );
    }

    #[test]
    fn other_schemes_are_not_basic_and_bad_basic_is_refused() {
        assert_eq!(basic_credentials(Some("Bearer abc")), Some(None));
        assert_eq!(basic_credentials(Some("Basic !!!")), None);
        assert_eq!(basic_credentials(Some(&basic("no-colon"))), None);
    }
}
