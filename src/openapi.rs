//! The OpenAPI 3.1 description of every route, generated from the handlers' own annotations
//! (each capability's `routes::Doc`), served at `/openapi.json` and rendered at `/docs` by
//! Swagger UI, whose files are compiled into the binary: no CDN, works offline.
//!
//! The answers every operation shares (rate limiting, malformed bodies, missing tokens, the
//! database being unavailable) are added here from one table instead of on each handler, so
//! the document cannot forget one when a route is added.

use axum::Router;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi as Document, PathItem, Ref, RefOr, Response,
    ResponseBuilder,
};

use crate::app::AppState;
use crate::config::Config;
use crate::error::PROBLEM_JSON;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "portvakt",
        description = "Accounts, sessions, tokens and sign-in for your applications. Errors outside `/oauth2/*` are RFC 9457 problem documents; every response carries `X-Request-Id`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "accounts", description = "Signup and the caller's own account."),
        (name = "auth", description = "Login, token refresh, logout and sessions."),
        (name = "mfa", description = "Second factor: TOTP enrolment and recovery codes."),
        (name = "admin", description = "Administration; needs the named permission."),
        (name = "events", description = "Live security events over WebSocket."),
        (name = "oauth2", description = "OpenID Connect provider endpoints."),
        (name = "operations", description = "Health, readiness, metrics and this description."),
    ),
)]
struct Base;

/// The whole description, built once at startup.
pub fn document() -> Document {
    let mut doc = Base::openapi();
    doc.merge(crate::accounts::routes::Doc::openapi());
    doc.merge(crate::auth::routes::Doc::openapi());
    doc.merge(crate::auth::mfa::Doc::openapi());
    doc.merge(crate::auth::passkeys::account::Doc::openapi());
    doc.merge(crate::auth::passkeys::login::Doc::openapi());
    doc.merge(crate::auth::email_flows::Doc::openapi());
    doc.merge(crate::admin::routes::Doc::openapi());
    doc.merge(crate::admin::delete::Doc::openapi());
    doc.merge(crate::events::routes::Doc::openapi());
    doc.merge(crate::oidc::routes::Doc::openapi());
    doc.merge(crate::oidc::clients::routes::Doc::openapi());
    doc.merge(crate::oidc::TokenDoc::openapi());
    doc.merge(crate::oidc::authorize::Doc::openapi());
    doc.merge(crate::oidc::login::Doc::openapi());
    doc.merge(crate::oidc::logout::Doc::openapi());
    doc.merge(crate::ops::routes::Doc::openapi());
    describe_itself(&mut doc);
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        // The OAuth endpoints' client authentication (RFC 6749 §2.3.1).
        components.add_security_scheme(
            "client_basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
    add_shared_answers(&mut doc);
    doc
}

/// `/openapi.json` and `/docs`, served by Swagger UI's router, describing this instance:
/// the password length it is configured to accept.
pub fn router(config: &Config) -> Router<AppState> {
    let mut doc = serde_json::to_value(document()).unwrap_or_default();
    for (schema, field) in [
        ("SignupRequest", "password"),
        ("ChangePasswordRequest", "new_password"),
    ] {
        if let Some(property) = doc
            .pointer_mut(&format!("/components/schemas/{schema}/properties/{field}"))
            .and_then(|p| p.as_object_mut())
        {
            property.insert("minLength".into(), config.password_min_length.into());
        }
    }
    utoipa_swagger_ui::SwaggerUi::new("/docs")
        .external_url_unchecked("/openapi.json", doc)
        // Swagger UI would otherwise fetch a validity badge from swagger.io.
        .config(utoipa_swagger_ui::Config::default().validator_url("none"))
        .into()
}

/// `/openapi.json` and `/docs` have no handlers of ours to annotate.
fn describe_itself(doc: &mut Document) {
    let json = ResponseBuilder::new()
        .description("This document.")
        .content("application/json", ContentBuilder::new().build())
        .build();
    let html = ResponseBuilder::new()
        .description("The API reference, rendered in the browser from /openapi.json.")
        .content("text/html", ContentBuilder::new().build())
        .build();
    for (path, summary, response) in [
        ("/openapi.json", "This OpenAPI 3.1 description.", json),
        ("/docs/", "Human-readable API reference.", html),
    ] {
        let mut op = utoipa::openapi::path::OperationBuilder::new()
            .tag("operations")
            .summary(Some(summary))
            .response("200", response)
            .build();
        op.operation_id = Some(format!(
            "get_{}",
            path.trim_matches('/').replace(['.', '/'], "_")
        ));
        let mut item = PathItem::default();
        item.get = Some(op);
        doc.paths.paths.insert(path.to_owned(), item);
    }
}

fn problem(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    )
}

fn retry_after(builder: ResponseBuilder) -> Response {
    builder
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::Type::Integer),
                ))
                .description(Some("Seconds to wait before trying again."))
                .build(),
        )
        .build()
}

/// Operations whose answers never touch rate limits or the database.
fn is_operations_probe(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics")
}

/// Adds to each operation the problem answers that any request of its kind can get.
fn add_shared_answers(doc: &mut Document) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let api = path.starts_with("/api/");
        for op in operations(item) {
            let mut add = |status: &str, response: Response| {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert(RefOr::T(response));
            };
            if op.request_body.is_some() {
                add(
                    "400",
                    problem("Malformed JSON (no `errors`), or fields that failed validation (`errors` names them).").build(),
                );
                add(
                    "413",
                    problem("The body is larger than the configured limit.").build(),
                );
                add(
                    "415",
                    problem("The body is not `application/json`.").build(),
                );
            }
            if op.security.is_some() {
                add(
                    "401",
                    problem("No bearer token, or one that is invalid, expired or whose session ended; `WWW-Authenticate: Bearer` says which.").build(),
                );
            }
            if !is_operations_probe(path) {
                add(
                    "429",
                    retry_after(problem(
                        "Rate limited (slug `rate-limited`); see `Retry-After`.",
                    )),
                );
            }
            if api {
                add(
                    "408",
                    problem("The request took longer than the configured timeout.").build(),
                );
                add(
                    "503",
                    retry_after(problem(
                        "The database is unavailable, or password hashing is saturated; see `Retry-After`.",
                    )),
                );
            }
            add(
                "500",
                problem("An internal error; the `request_id` finds it in the server's log.")
                    .build(),
            );
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_shared_answers() {
        let doc = serde_json::to_value(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let login = &doc["paths"]["/api/v1/auth/login"]["post"]["responses"];
        for status in ["200", "400", "401", "413", "415", "429", "500", "503"] {
            assert!(login.get(status).is_some(), "login lacks {status}");
        }
        assert!(
            doc["paths"]["/health"]["get"]["responses"]
                .get("429")
                .is_none()
        );
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
