-- `Idempotency-Key` of `POST /api/orders`: written in the transaction that places the order,
-- so a retried request finds the order it created, and two concurrent retries create one.
CREATE TABLE idempotency_keys (
    key        text        PRIMARY KEY,
    order_id   uuid        NOT NULL,
    -- The normalised request, to refuse the same key reused for a different order.
    request    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
