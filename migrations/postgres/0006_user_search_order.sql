-- The admin search reads emails in email order and names in (lower(name), id) order straight
-- from these indexes, and the ids from them too (index-only scans; `name` is included because
-- PostgreSQL only scans an expression index alone when the expression's column is in it), so
-- that a page and its bounded count never sort or visit the table however many accounts match
-- (see accounts::directory::Queries).
DROP INDEX users_by_email_prefix;
CREATE INDEX users_by_email_prefix ON users (email_key text_pattern_ops) INCLUDE (id);
DROP INDEX users_by_name_prefix;
CREATE INDEX users_by_name_prefix ON users (lower(name) text_pattern_ops, id) INCLUDE (name);
