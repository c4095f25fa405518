-- Customer credit. A customer is created with the starting credit the first time a payment is
-- requested for them. The CHECK is the last line of defence against spending credit twice.
CREATE TABLE customers (
    customer_id uuid          PRIMARY KEY,
    credit      numeric(14,2) NOT NULL CHECK (credit >= 0)
);

-- One payment per order (the UNIQUE makes a second one impossible, whatever the message flow):
-- `captured` consumed credit, `declined` did not, `refunded` gave it back.
CREATE TABLE payments (
    payment_id  uuid          PRIMARY KEY,
    order_id    uuid          NOT NULL UNIQUE,
    customer_id uuid          NOT NULL,
    amount      numeric(14,2) NOT NULL CHECK (amount >= 0),
    status      text          NOT NULL CHECK (status IN ('captured', 'declined', 'refunded')),
    created_at  timestamptz   NOT NULL DEFAULT now()
);

CREATE INDEX payments_by_time ON payments (created_at, payment_id);
