-- The transactional outbox: a service inserts the messages a state change causes in the same
-- transaction as the change; the relay publishes committed rows to Kafka and then marks them.
CREATE TABLE outbox (
    -- Allocation order. Rows of one key are written by transactions that are serialised (one
    -- order's stream, one order's partition), so per key this is also commit order.
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id     uuid        NOT NULL UNIQUE,
    topic          text        NOT NULL,
    message_key    text        NOT NULL,
    message_type   text        NOT NULL,
    schema_version smallint    NOT NULL,
    -- `json` keeps the exact bytes that go to Kafka (and stays readable in psql).
    payload        json        NOT NULL,
    correlation_id uuid        NOT NULL,
    causation_id   uuid,
    traceparent    text,
    occurred_at    timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz
);

-- The relay's queue: only rows still to publish, in order.
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;

-- Wake the relay when rows commit (NOTIFY is delivered at commit, once per transaction and
-- payload). The relay also polls slowly, so a lost notification only delays a message.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
