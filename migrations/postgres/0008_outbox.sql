-- Email waiting to be sent, written in the same transaction as the change that causes it (mail/).
-- Bodies are sealed with the master key (they carry one-time links) and erased once the message
-- is sent or given up; the rest stays as a record. Not part of backups: a restored database must
-- not send old mail again.
CREATE TABLE mail_outbox (
    id              TEXT PRIMARY KEY,            -- UUIDv7
    created_at      BIGINT NOT NULL,
    user_id         TEXT,                        -- the account it is about, if any: erasure deletes its mail
    recipient       TEXT NOT NULL,               -- the To mailbox
    subject         TEXT NOT NULL,
    body_text       TEXT,                        -- sealed; NULL once sent or given up
    body_html       TEXT,                        -- sealed; NULL when none, or once sent
    attempts        BIGINT NOT NULL,             -- delivery attempts started
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,                      -- a worker's lease on the message
    claimed_by      TEXT,                        -- which worker holds it
    sent_at         BIGINT,                      -- the SMTP server accepted it (or it was written to the dev outbox)
    failed_at       BIGINT,                      -- given up after mail_max_attempts
    last_error      TEXT                         -- why the last attempt failed (no secrets)
);

CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX mail_outbox_by_user ON mail_outbox (user_id);
