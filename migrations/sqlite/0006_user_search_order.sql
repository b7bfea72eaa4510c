-- The admin search reads emails in email order and names in (name, id) order straight from
-- these indexes, and the ids from them too, so that a page and its bounded count never sort
-- or visit the table however many accounts match (see accounts::directory::Queries).
DROP INDEX users_by_email_prefix;
CREATE INDEX users_by_email_prefix ON users (email_key COLLATE NOCASE, id);
DROP INDEX users_by_name_prefix;
CREATE INDEX users_by_name_prefix ON users (name COLLATE NOCASE, id);
