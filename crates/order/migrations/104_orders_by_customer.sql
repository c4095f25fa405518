-- `GET /api/orders?customerId=`: a customer's orders, newest first. Order ids are UUIDv7, so
-- ordering by the stream id is ordering by placement time, and the keyset cursor is the last
-- order id of a page. Only `OrderPlaced` rows (one per order) are indexed, so the index grows by
-- one entry per order and costs the other appends only the predicate check. The unfiltered list
-- (viewers) walks the primary key `(stream_id, version)` backwards instead, taking version 1.
CREATE INDEX events_orders_by_customer
    ON events (((payload->>'customerId')::uuid), stream_id DESC)
    WHERE event_type = 'OrderPlaced';
