-- Custom roles' permissions (the built-in `admin` holds every permission by definition and
-- `user` none, so neither has rows here), and the indexes behind the admin user search.

CREATE TABLE role_permissions (
    role       TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    permission TEXT NOT NULL,                 -- one of API.md's permissions, e.g. users:read
    PRIMARY KEY (role, permission)
);

-- Prefix search (`?q=`) matches `email_key LIKE 'ab%'` and `lower(name) LIKE 'ab%'`.
-- text_pattern_ops lets LIKE use the index whatever the database's collation is.
CREATE INDEX users_by_email_prefix ON users (email_key text_pattern_ops);
CREATE INDEX users_by_name_prefix ON users (lower(name) text_pattern_ops);

-- Who holds a role (enabled admins are counted on every change that could remove one).
CREATE INDEX user_roles_by_role ON user_roles (role, user_id);

-- The audit query filters by action.
CREATE INDEX audit_log_by_action ON audit_log (action, at);
