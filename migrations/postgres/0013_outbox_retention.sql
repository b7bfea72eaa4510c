-- Retention (mail/store.rs) deletes sent and given-up mail by age, in batches, every few
-- minutes: these keep each batch a range read instead of a scan of the whole outbox.
CREATE INDEX mail_outbox_sent ON mail_outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX mail_outbox_failed ON mail_outbox (failed_at) WHERE failed_at IS NOT NULL;
