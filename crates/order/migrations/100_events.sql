-- The order event store: append-only, one row per event.
CREATE TABLE events (
    -- Allocation order of rows. NOT commit order: a transaction can take position 10, commit
    -- after another took 11, and a reader that followed "max position seen" would skip 10.
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    -- The writing transaction. Readers of the whole store follow (transaction_id,
    -- global_position) and only read rows of transactions older than every transaction still in
    -- flight (`pg_snapshot_xmin`), so a late commit is never skipped; see `event_store::read_all`.
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id       uuid        NOT NULL,
    version         integer     NOT NULL CHECK (version > 0),
    event_type      text        NOT NULL,
    schema_version  smallint    NOT NULL,
    payload         jsonb       NOT NULL,
    -- messageId, correlationId, causationId, traceparent.
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- Optimistic concurrency: two writers of the same version collide here, and the loser's
    -- unique violation becomes a typed conflict.
    CONSTRAINT events_stream_version PRIMARY KEY (stream_id, version)
);

CREATE UNIQUE INDEX events_global_order ON events (transaction_id, global_position);
