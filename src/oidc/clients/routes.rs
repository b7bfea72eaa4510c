//! `/api/v1/admin/clients`: list, register, view, change and delete OpenID Connect clients,
//! and replace a confidential client's secret. Field names are RFC 7591's.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::model::{AuthMethod, Blame, ClientId, DEFAULT_SCOPE, Draft, GrantType, IdTokenAlg};
use super::service::{self, Issued};
use super::store::Client;
use crate::accounts::routes::no_store;
use crate::admin::query::{self, Pagination, Params};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{AppError, ProblemBody};
use crate::http::{ClientInfo, Json};
use crate::roles::{self, Permission};
use crate::store::rfc3339;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, create, show, update, delete, rotate_secret))]
pub struct Doc;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/clients", get(list).post(create))
        .route(
            "/api/v1/admin/clients/{client_id}",
            get(show).patch(update).delete(delete),
        )
        .route(
            "/api/v1/admin/clients/{client_id}/secret",
            post(rotate_secret),
        )
}

/// A registered client (RFC 7591 §2 metadata). The secret is never shown here.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Client)]
pub struct ClientView {
    #[schema(format = "uuid")]
    client_id: String,
    client_name: String,
    /// Compared exactly (as strings) with the `redirect_uri` of an authorization request.
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    #[schema(value_type = Vec<GrantType>)]
    grant_types: Vec<&'static str>,
    /// `["code"]` when `grant_types` has `authorization_code`, else empty (RFC 7591 §2.1).
    #[schema(value_type = Vec<String>, example = json!(["code"]))]
    response_types: Vec<&'static str>,
    #[schema(value_type = AuthMethod)]
    token_endpoint_auth_method: &'static str,
    /// Space-separated scopes the client may ask for.
    scope: String,
    #[schema(value_type = IdTokenAlg)]
    id_token_signed_response_alg: &'static str,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> ClientView {
        let strings =
            |u: &[super::model::RedirectUri]| u.iter().map(|u| u.as_str().to_string()).collect();
        ClientView {
            client_id: c.client_id.to_string(),
            client_name: c.spec.client_name.clone(),
            redirect_uris: strings(&c.spec.redirect_uris),
            post_logout_redirect_uris: strings(&c.spec.post_logout_redirect_uris),
            grant_types: c.spec.grant_types.iter().map(|g| g.as_str()).collect(),
            response_types: if c.spec.allows(GrantType::AuthorizationCode) {
                vec!["code"]
            } else {
                Vec::new()
            },
            token_endpoint_auth_method: c.spec.token_endpoint_auth_method.as_str(),
            scope: c.spec.scope.as_str().to_string(),
            id_token_signed_response_alg: c.spec.id_token_signed_response_alg.as_str(),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

/// A client, with its secret when one was just issued (RFC 7591 §3.2.1).
#[derive(Serialize, utoipa::ToSchema)]
pub struct IssuedClient {
    #[serde(flatten)]
    client: ClientView,
    /// The secret of a confidential client, present only in the answer that issued it:
    /// portvakt keeps only its hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// `0`, the secret does not expire (RFC 7591 §3.2.1); present with `client_secret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    client_secret_expires_at: Option<i64>,
}

impl From<&Issued> for IssuedClient {
    fn from(i: &Issued) -> IssuedClient {
        IssuedClient {
            client: ClientView::from(&i.client),
            client_secret: i.secret.as_ref().map(|s| service::reveal(s).to_string()),
            client_secret_expires_at: i.secret.as_ref().map(|_| 0),
        }
    }
}

/// A page of clients.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientPage {
    items: Vec<ClientView>,
    page: u32,
    per_page: u32,
    total: i64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClientRequest {
    #[schema(min_length = 1, max_length = 200, example = "Example app")]
    client_name: String,
    /// Absolute `https` URIs (plain `http` only on localhost, 127.0.0.1 or [::1]) without a
    /// fragment; at least one for the `authorization_code` grant; at most 20.
    #[schema(example = json!(["https://app.example.com/oidc/callback"]), max_items = 20)]
    redirect_uris: Vec<String>,
    /// Where `/oauth2/logout` may send the browser afterwards; same rules; none by default.
    #[schema(max_items = 20)]
    post_logout_redirect_uris: Option<Vec<String>>,
    /// Default `["authorization_code"]`. `refresh_token` needs `authorization_code`;
    /// `client_credentials` needs a confidential client.
    #[schema(value_type = Option<Vec<GrantType>>)]
    grant_types: Option<Vec<String>>,
    /// `none` makes a public client (no secret; PKCE required at authorization).
    #[schema(value_type = AuthMethod)]
    token_endpoint_auth_method: String,
    /// Space-separated scopes the client may ask for; default `openid profile email`.
    #[schema(example = "openid profile email", max_length = 1000)]
    scope: Option<String>,
    /// Default `RS256`.
    #[schema(value_type = Option<IdTokenAlg>)]
    id_token_signed_response_alg: Option<String>,
}

impl CreateClientRequest {
    fn draft(self) -> Draft {
        Draft {
            client_name: self.client_name,
            redirect_uris: self.redirect_uris,
            post_logout_redirect_uris: self.post_logout_redirect_uris.unwrap_or_default(),
            grant_types: self
                .grant_types
                .unwrap_or_else(|| vec![GrantType::AuthorizationCode.as_str().to_string()]),
            token_endpoint_auth_method: self.token_endpoint_auth_method,
            scope: self.scope.unwrap_or_else(|| DEFAULT_SCOPE.to_string()),
            id_token_signed_response_alg: self
                .id_token_signed_response_alg
                .unwrap_or_else(|| IdTokenAlg::default().as_str().to_string()),
        }
    }
}

/// Any of the create fields; an absent (or `null`) field keeps its value, a list replaces the
/// whole list.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateClientRequest {
    #[schema(min_length = 1, max_length = 200)]
    client_name: Option<String>,
    #[schema(max_items = 20)]
    redirect_uris: Option<Vec<String>>,
    #[schema(max_items = 20)]
    post_logout_redirect_uris: Option<Vec<String>>,
    #[schema(value_type = Option<Vec<GrantType>>)]
    grant_types: Option<Vec<String>>,
    /// Between `client_secret_basic` and `client_secret_post` the secret stays; to `none`
    /// it is deleted; from `none` a new one is issued and returned in this answer only.
    #[schema(value_type = Option<AuthMethod>)]
    token_endpoint_auth_method: Option<String>,
    #[schema(max_length = 1000)]
    scope: Option<String>,
    #[schema(value_type = Option<IdTokenAlg>)]
    id_token_signed_response_alg: Option<String>,
}

impl UpdateClientRequest {
    fn apply(self, mut d: Draft) -> (Draft, Blame) {
        let blame = if self.token_endpoint_auth_method.is_some() && self.grant_types.is_none() {
            Blame::AuthMethod
        } else {
            Blame::GrantTypes
        };
        let set = |slot: &mut String, v: Option<String>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut d.client_name, self.client_name);
        set(
            &mut d.token_endpoint_auth_method,
            self.token_endpoint_auth_method,
        );
        set(&mut d.scope, self.scope);
        set(
            &mut d.id_token_signed_response_alg,
            self.id_token_signed_response_alg,
        );
        let set_list = |slot: &mut Vec<String>, v: Option<Vec<String>>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set_list(&mut d.redirect_uris, self.redirect_uris);
        set_list(
            &mut d.post_logout_redirect_uris,
            self.post_logout_redirect_uris,
        );
        set_list(&mut d.grant_types, self.grant_types);
        (d, blame)
    }
}

/// The client of the path; anything that is not a client id is a client that does not exist.
fn client_id(id: Result<Path<String>, PathRejection>) -> Result<ClientId, AppError> {
    id.ok()
        .and_then(|Path(id)| ClientId::parse(&id))
        .ok_or(AppError::NotFound)
}

/// Every registered client, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/clients", tag = "admin",
    security(("bearer" = [])),
    params(
        ("page" = Option<u32>, Query, description = "Page number, from 1.", minimum = 1, maximum = 2147483647),
        ("per_page" = Option<u32>, Query, description = "Clients per page, 1 to 200 (default 50).", minimum = 1, maximum = 200),
    ),
    responses(
        (status = 200, description = "Clients in the order they were registered.", body = ClientPage),
        (status = 400, description = "A query parameter is invalid (`errors` names it).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks `clients:read` (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn list(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.principal(), Permission::ClientsRead).await?;
    let params = Params::parse(raw.as_deref());
    let mut errors = Vec::new();
    let pagination = Pagination::parse(&params, &mut errors);
    query::finish(errors)?;
    let (clients, total) = service::list(&app, pagination.limit(), pagination.offset()).await?;
    Ok((
        no_store(),
        Json(ClientPage {
            items: clients.iter().map(ClientView::from).collect(),
            page: pagination.page,
            per_page: pagination.per_page,
            total,
        }),
    ))
}

/// Register a client. A confidential one's secret is in this answer and nowhere else.
#[utoipa::path(post, path = "/api/v1/admin/clients", tag = "admin",
    security(("bearer" = [])),
    request_body = CreateClientRequest,
    responses(
        (status = 201, description = "The client, with `client_secret` for a confidential client.", body = IssuedClient),
        (status = 400, description = "A field is missing, unknown or breaks a rule (`errors` names each one, e.g. `redirect_uris[1]`).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks `clients:write` (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn create(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    body: Result<Json<CreateClientRequest>, AppError>,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.principal(), Permission::ClientsWrite).await?;
    let Json(req) = body?;
    let spec = req
        .draft()
        .parse(Blame::GrantTypes)
        .map_err(AppError::Invalid)?;
    let issued = service::create(&app, spec, caller.actor(client)).await?;
    Ok((
        StatusCode::CREATED,
        no_store(),
        Json(IssuedClient::from(&issued)),
    ))
}

/// One client.
#[utoipa::path(get, path = "/api/v1/admin/clients/{client_id}", tag = "admin",
    security(("bearer" = [])),
    params(("client_id" = String, Path, description = "The client id.")),
    responses(
        (status = 200, description = "The client (never its secret).", body = ClientView),
        (status = 403, description = "The caller lacks `clients:read` (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such client, or the admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn show(
    State(app): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.principal(), Permission::ClientsRead).await?;
    let client = service::find(&app, client_id(id)?)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok((no_store(), Json(ClientView::from(&client))))
}

/// Change some of a client's settings; the result must pass the same rules as a new client.
#[utoipa::path(patch, path = "/api/v1/admin/clients/{client_id}", tag = "admin",
    security(("bearer" = [])),
    params(("client_id" = String, Path, description = "The client id.")),
    request_body = UpdateClientRequest,
    responses(
        (status = 200, description = "The client; with `client_secret` only when the change made a public client confidential.", body = IssuedClient),
        (status = 400, description = "A field is unknown or the changed client breaks a rule (`errors` names each field).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks `clients:write` (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such client, or the admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn update(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<UpdateClientRequest>, AppError>,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.principal(), Permission::ClientsWrite).await?;
    let id = client_id(id)?;
    // An unknown client is a 404 before the body is judged (docs/api.md's order of answers);
    // the change finds it again in its own transaction.
    if service::find(&app, id).await?.is_none() {
        return Err(AppError::NotFound);
    }
    let Json(req) = body?;
    let issued = service::update(&app, id, move |d| req.apply(d), caller.actor(client)).await?;
    Ok((no_store(), Json(IssuedClient::from(&issued))))
}

/// Delete a client: its secret and registration stop working at once.
#[utoipa::path(delete, path = "/api/v1/admin/clients/{client_id}", tag = "admin",
    security(("bearer" = [])),
    params(("client_id" = String, Path, description = "The client id.")),
    responses(
        (status = 204, description = "The client is gone."),
        (status = 403, description = "The caller lacks `clients:write` (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such client, or the admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, AppError> {
    roles::require(&app.store, caller.principal(), Permission::ClientsWrite).await?;
    service::delete(&app, client_id(id)?, caller.actor(client)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace a confidential client's secret; the old one stops working at once.
#[utoipa::path(post, path = "/api/v1/admin/clients/{client_id}/secret", tag = "admin",
    security(("bearer" = [])),
    params(("client_id" = String, Path, description = "The client id.")),
    responses(
        (status = 200, description = "The client with its new `client_secret`, shown only here.", body = IssuedClient),
        (status = 403, description = "The caller lacks `clients:write` (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such client, or the admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The client is public (`token_endpoint_auth_method` `none`) and has no secret (slug `public-client`).", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn rotate_secret(
    State(app): State<AppState>,
    caller: Caller,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.principal(), Permission::ClientsWrite).await?;
    let issued = service::rotate_secret(&app, client_id(id)?, caller.actor(client)).await?;
    Ok((no_store(), Json(IssuedClient::from(&issued))))
}
