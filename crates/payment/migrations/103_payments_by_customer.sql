-- `GET /api/payments` for one customer (a customer's own list, or a viewer's `?customerId=`)
-- reads that customer's payments in the listing's order, from this index alone.
CREATE INDEX payments_by_customer ON payments (customer_id, created_at, payment_id);
