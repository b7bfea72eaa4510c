-- OpenID Connect clients (oidc/clients), registered by an admin or the operator. Lists are
-- JSON arrays of strings: they are always read and written whole with their client, and the
-- authorize endpoint matches a redirect URI exactly against the parsed list.
CREATE TABLE oidc_clients (
    client_id                    TEXT PRIMARY KEY,      -- UUIDv7
    client_name                  TEXT NOT NULL,
    secret_hash                  TEXT,                  -- SHA-256 hex of the secret; NULL for public clients
    token_endpoint_auth_method   TEXT NOT NULL,         -- client_secret_basic | client_secret_post | none
    redirect_uris                TEXT NOT NULL,         -- JSON array
    post_logout_redirect_uris    TEXT NOT NULL,         -- JSON array
    grant_types                  TEXT NOT NULL,         -- JSON array
    scope                        TEXT NOT NULL,         -- space-separated
    id_token_signed_response_alg TEXT NOT NULL,         -- RS256 | EdDSA | ES256
    created_at                   BIGINT NOT NULL,
    updated_at                   BIGINT NOT NULL
);
CREATE INDEX oidc_clients_by_creation ON oidc_clients (created_at, client_id);
