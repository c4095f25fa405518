-- The relay's clean-up deletes published rows older than the retention. Without an index on
-- `published_at` each clean-up read the whole outbox (ten minutes of messages) while the relay
-- published nothing; with it, a clean-up reads only the rows it deletes.
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
