-- Payment follows stock: it captures the total of the revision stock holds. When a pending
-- order changes after that, the capture is refunded and the new total captured (or declined),
-- so an order may have several payments: one per revision, at most one of them not refunded.
ALTER TABLE payments ADD COLUMN revision int4 NOT NULL DEFAULT 1;
ALTER TABLE payments ALTER COLUMN revision DROP DEFAULT;
ALTER TABLE payments DROP CONSTRAINT payments_order_id_key;
CREATE UNIQUE INDEX payments_per_revision ON payments (order_id, revision);
CREATE UNIQUE INDEX payments_one_standing_per_order ON payments (order_id)
    WHERE status <> 'refunded';
