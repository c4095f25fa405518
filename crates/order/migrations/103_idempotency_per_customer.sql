-- Idempotency keys are the customer's own (SYSTEM.md §7): two customers who happen to pick the
-- same key place two orders, and nobody learns anything about another customer's keys. The key
-- becomes unique per (customer, key).
ALTER TABLE idempotency_keys ADD COLUMN customer_id uuid;

-- Keys stored before: their customer is the one of the order they placed (the key and the order
-- were written in one transaction, so the order exists).
UPDATE idempotency_keys k
SET customer_id = (e.payload->>'customerId')::uuid
FROM events e
WHERE e.stream_id = k.order_id AND e.version = 1;
DELETE FROM idempotency_keys WHERE customer_id IS NULL;

ALTER TABLE idempotency_keys ALTER COLUMN customer_id SET NOT NULL;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (customer_id, key);
