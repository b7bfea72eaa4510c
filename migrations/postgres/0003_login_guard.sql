-- Hard lockout after repeated failed logins (off unless PORTVAKT_LOCKOUT_THRESHOLD is set).
ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;  -- consecutive, reset on success
ALTER TABLE users ADD COLUMN locked_at BIGINT;                          -- set when locked, cleared by unlock
