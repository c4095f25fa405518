-- What payment has answered per order, so that a late or redriven message changes nothing
-- (SYSTEM.md §6). `revision` is the highest revision of the order's lines that payment acted
-- on: a capture or a decline, and also a reservation that failed, which leaves no payment row.
-- A reservation for that revision or an older one is a repeat or late, and is not paid for.
-- `final` says the order is over for payment: its payment was declined, or stock released the
-- order because it failed (for any reason, a deadline included). A final order is never paid
-- for again, and whatever it had captured is refunded.
CREATE TABLE orders_answered (
    order_id uuid    PRIMARY KEY,
    revision int4    NOT NULL CHECK (revision >= 0),
    final    boolean NOT NULL
);

-- The orders paid for so far, as their payments tell.
INSERT INTO orders_answered (order_id, revision, final)
SELECT order_id, max(revision), bool_or(status = 'declined')
FROM payments
GROUP BY order_id;
