-- Orders whose saga has not settled yet, and since when: the saga deadline (`deadline.rs`)
-- fails the ones older than the deadline. A row is inserted by the statement that places the
-- order and deleted by the append that completes or fails it, so the deadline survives any
-- restart and nothing times out twice. The start time is stored rather than a due time, so a
-- changed deadline setting applies to sagas already running.
CREATE TABLE open_sagas (
    order_id  uuid        PRIMARY KEY,
    placed_at timestamptz NOT NULL DEFAULT now()
);

-- The deadline's poll reads the oldest rows first, by this index alone.
CREATE INDEX open_sagas_by_age ON open_sagas (placed_at);

-- Orders placed before this table existed and still pending: their deadline counts from when
-- they were placed.
INSERT INTO open_sagas (order_id, placed_at)
SELECT stream_id, min(recorded_at)
FROM events
GROUP BY stream_id
HAVING NOT bool_or(event_type IN ('OrderCompleted', 'OrderFailed'));
