-- The admin search pages through names in (name, id) order straight from the index, so that
-- many accounts with one name cost no sort (see accounts::directory::Queries).
DROP INDEX users_by_name_prefix;
CREATE INDEX users_by_name_prefix ON users (name COLLATE NOCASE, id);
