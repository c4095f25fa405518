-- The inbox of the idempotent consumer: a message id is recorded in the same transaction as the
-- handler's effects, so a redelivered message is recognised and skipped.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    message_id   uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
