//! `portvakt client ...`: the operator registers, lists and deletes clients directly in the
//! database, with the admin API's rules and audit (actor: the CLI).

use super::model::{AuthMethod, Blame, ClientId, DEFAULT_SCOPE, Draft, GrantType};
use super::service;
use super::store::Client;
use crate::app::AppState;
use crate::error::AppError;
use crate::roles::service::Actor;

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Register a client and print its id and (for a confidential client) its secret, once.
    Create {
        /// The name shown to users on the consent page.
        #[arg(long)]
        name: String,
        /// A redirect URI (https, or http on localhost); repeat for several.
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// A post-logout redirect URI; repeat for several.
        #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
        post_logout_redirect_uris: Vec<String>,
        /// A public client (browser or native app): no secret, PKCE required.
        #[arg(long)]
        public: bool,
        /// Allowed grants: authorization_code, refresh_token, client_credentials (repeat or
        /// separate with commas; default authorization_code).
        #[arg(long = "grant", value_name = "GRANT", value_delimiter = ',')]
        grants: Vec<String>,
        /// Space-separated scopes the client may ask for.
        #[arg(long, default_value = DEFAULT_SCOPE)]
        scope: String,
        /// ID token algorithm: RS256, EdDSA or ES256.
        #[arg(long, value_name = "ALG", default_value = "RS256")]
        id_token_alg: String,
    },
    /// List every client, oldest first.
    List,
    /// Delete a client: its secret stops working at once.
    Delete {
        /// The client id.
        client_id: String,
    },
}

/// Our words for a refusal, naming the fields as the API does.
fn describe(e: AppError) -> anyhow::Error {
    match e {
        AppError::Invalid(errors) => anyhow::anyhow!(
            "{}",
            errors
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        AppError::NotFound => anyhow::anyhow!("no such client"),
        AppError::Internal(inner) => inner,
        other => anyhow::anyhow!("{other}"),
    }
}

fn line(c: &Client) -> String {
    let grants: Vec<&str> = c.spec.grant_types.iter().map(|g| g.as_str()).collect();
    let uris: Vec<&str> = c.spec.redirect_uris.iter().map(|u| u.as_str()).collect();
    format!(
        "{}  {:<24} {:<20} {:<40} {}",
        c.client_id,
        c.spec.client_name,
        c.spec.token_endpoint_auth_method.as_str(),
        grants.join(","),
        if uris.is_empty() {
            "-".to_string()
        } else {
            uris.join(" ")
        }
    )
}

pub async fn run(app: &AppState, command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Create {
            name,
            redirect_uris,
            post_logout_redirect_uris,
            public,
            grants,
            scope,
            id_token_alg,
        } => {
            let method = if public {
                AuthMethod::None
            } else {
                AuthMethod::ClientSecretBasic
            };
            let grant_types = if grants.is_empty() {
                vec![GrantType::AuthorizationCode.as_str().to_string()]
            } else {
                grants.iter().map(|g| g.trim().to_string()).collect()
            };
            let spec = Draft {
                client_name: name,
                redirect_uris,
                post_logout_redirect_uris,
                grant_types,
                token_endpoint_auth_method: method.as_str().to_string(),
                scope,
                id_token_signed_response_alg: id_token_alg,
            }
            .parse(Blame::GrantTypes)
            .map_err(|errors| describe(AppError::Invalid(errors)))?;
            let issued = service::create(app, spec, Actor::Operator)
                .await
                .map_err(describe)?;
            println!("client_id:     {}", issued.client.client_id);
            match &issued.secret {
                Some(secret) => {
                    println!("client_secret: {}", service::reveal(secret));
                    println!("The secret is shown only now: portvakt keeps only its hash.");
                }
                None => println!("client_secret: none (public client: PKCE required)"),
            }
        }
        ClientCommand::List => {
            const PAGE: i64 = 200;
            let mut offset = 0;
            loop {
                let (clients, total) = service::list(app, PAGE, offset).await.map_err(describe)?;
                for c in &clients {
                    println!("{}", line(c));
                }
                offset += PAGE;
                if clients.is_empty() || offset >= total {
                    println!("{total} client(s)");
                    break;
                }
            }
        }
        ClientCommand::Delete { client_id } => {
            let id = ClientId::parse(&client_id)
                .ok_or_else(|| anyhow::anyhow!("`{client_id}` is not a client id"))?;
            let client = service::delete(app, id, Actor::Operator)
                .await
                .map_err(describe)?;
            println!("deleted {} ({})", client.client_id, client.spec.client_name);
        }
    }
    Ok(())
}
