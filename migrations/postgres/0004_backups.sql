-- Every backup file that was written completely (`portvakt backup` and scheduled ones), so that
-- `portvakt check` can say how old the last one is. Not itself part of backups.
CREATE TABLE backups (
    id           TEXT PRIMARY KEY,            -- UUIDv7
    created_at   BIGINT NOT NULL,             -- when the snapshot was taken
    file         TEXT NOT NULL,
    bytes        BIGINT NOT NULL,
    sha256       TEXT NOT NULL,               -- of the rows, as in the file's trailer
    triggered_by TEXT NOT NULL                -- manual | scheduled
);

CREATE INDEX backups_by_created_at ON backups (created_at);
