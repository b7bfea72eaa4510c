-- Custom roles' permissions (the built-in `admin` holds every permission by definition and
-- `user` none, so neither has rows here), and the indexes behind the admin user search.

CREATE TABLE role_permissions (
    role       TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    permission TEXT NOT NULL,                 -- one of API.md's permissions, e.g. users:read
    PRIMARY KEY (role, permission)
);

-- Prefix search (`?q=`): SQLite's LIKE is case-insensitive and uses an index only when the
-- index folds case the same way (NOCASE) and the column itself, not an expression, is matched.
CREATE INDEX users_by_email_prefix ON users (email_key COLLATE NOCASE);
CREATE INDEX users_by_name_prefix ON users (name COLLATE NOCASE);

-- Who holds a role (enabled admins are counted on every change that could remove one).
CREATE INDEX user_roles_by_role ON user_roles (role, user_id);

-- The audit query filters by action.
CREATE INDEX audit_log_by_action ON audit_log (action, at);
