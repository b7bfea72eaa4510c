-- Which imported password hash an account still has, as the SHA-256 of the hash string (hex),
-- so that a re-import changes a password only where the file brings a new one and portvakt
-- has not set one since (see import::write). NULL: the password was set in portvakt.
ALTER TABLE users ADD COLUMN imported_hash_digest TEXT;
