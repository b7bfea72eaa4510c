//! Our `Json` extractor: every way a body can be wrong becomes an [`AppError`] with the
//! right status (415, 413, 400) and, where a field is to blame, an `errors` entry naming it.
//! Messages are our own words: serde's would echo the client's values back.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{AppError, FieldError};

/// A JSON request body (deserialized strictly) or response body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(AppError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::PayloadTooLarge
                } else {
                    AppError::Malformed("The request body could not be read.".into())
                }
            })?;
        parse(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `application/json` or any `application/*+json`, with optional parameters.
fn is_json(value: Option<&header::HeaderValue>) -> bool {
    let Some(Ok(value)) = value.map(|v| v.to_str()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserializes a body, classifying failures as malformed (syntax) or field errors (data).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    // serde would accept an array for a struct; our bodies are objects.
    if bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b != b'{')
    {
        return Err(AppError::Malformed(
            "The request body must be a JSON object.".into(),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        classify(path, e.into_inner())
    })?;
    de.end()
        .map_err(|_| AppError::Malformed("The body has content after the JSON value.".into()))?;
    Ok(value)
}

fn classify(path: String, err: serde_json::Error) -> AppError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            AppError::Malformed("The request body is not valid JSON.".into())
        }
        Category::Data => {
            let message = err.to_string();
            let at_root = path == "." || path.is_empty();
            // serde_path_to_error stops at the parent for a missing field but at the field
            // itself for an unknown one.
            let join = |name: &str| {
                if at_root {
                    name.to_string()
                } else if path == name || path.ends_with(&format!(".{name}")) {
                    path.clone()
                } else {
                    format!("{path}.{name}")
                }
            };
            if let Some(name) = quoted(&message, "missing field `") {
                AppError::Invalid(vec![FieldError::new(join(name), "is required")])
            } else if let Some(name) = quoted(&message, "unknown field `") {
                AppError::Invalid(vec![FieldError::new(
                    join(name),
                    "is not an accepted field",
                )])
            } else if let Some(name) = quoted(&message, "duplicate field `") {
                AppError::Invalid(vec![FieldError::new(join(name), "appears more than once")])
            } else if at_root {
                AppError::Malformed("The request body must be a JSON object.".into())
            } else if let Some(expected) = message.split("expected ").nth(1) {
                let expected = expected.split(" at line ").next().unwrap_or(expected);
                AppError::Invalid(vec![FieldError::new(path, format!("must be {expected}"))])
            } else {
                AppError::Invalid(vec![FieldError::new(path, "has an invalid value")])
            }
        }
    }
}

fn quoted<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        password: String,
        name: Option<String>,
    }

    fn fields(e: AppError) -> Vec<FieldError> {
        match e {
            AppError::Invalid(f) => f,
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_malformed_without_fields() {
        assert!(matches!(
            parse::<Login>(b"{\"email\": "),
            Err(AppError::Malformed(_))
        ));
        assert!(matches!(
            parse::<Login>(b"not json"),
            Err(AppError::Malformed(_))
        ));
        assert!(matches!(
            parse::<Login>(b"[1,2]"),
            Err(AppError::Malformed(_))
        ));
        assert!(matches!(
            parse::<Login>(b"{\"email\":\"a\",\"password\":\"b\"} x"),
            Err(AppError::Malformed(_))
        ));
    }

    #[test]
    fn missing_unknown_and_mistyped_fields_are_named() {
        let f = fields(parse::<Login>(br#"{"email":"a@b.c"}"#).unwrap_err());
        assert_eq!(f, vec![FieldError::new("password", "is required")]);
        let f =
            fields(parse::<Login>(br#"{"email":"a","password":"b","admin":true}"#).unwrap_err());
        assert_eq!(f[0].field, "admin");
        let f = fields(parse::<Login>(br#"{"email":"a","password":12345678}"#).unwrap_err());
        assert_eq!(f[0].field, "password");
        assert!(!f[0].message.contains("12345678"), "{}", f[0].message);
        assert_eq!(f[0].message, "must be a string");
    }

    #[test]
    fn json_media_types_are_recognised() {
        let v = |s: &'static str| header::HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json"))));
        assert!(is_json(Some(&v("application/json; charset=utf-8"))));
        assert!(is_json(Some(&v("application/merge-patch+json"))));
        assert!(!is_json(Some(&v("text/plain"))));
        assert!(!is_json(None));
    }
}
