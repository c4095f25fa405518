-- Products and what is free (`available`) or held for pending orders (`reserved`).
-- The CHECKs are the last line of defence of "never oversell" (I2): a bug that tried would fail
-- its transaction instead of committing a negative stock.
CREATE TABLE products (
    product_id bigint  PRIMARY KEY,
    name       text    NOT NULL,
    available  integer NOT NULL CHECK (available >= 0),
    reserved   integer NOT NULL CHECK (reserved >= 0)
);

-- The seed. `ON CONFLICT DO NOTHING` and migrations running once make restarts harmless: stock
-- is never reset by starting the service again.
INSERT INTO products (product_id, name, available, reserved) VALUES
    (1, 'Keyboard', 100, 0),
    (2, 'Mouse', 50, 0),
    (3, 'Monitor', 25, 0)
ON CONFLICT (product_id) DO NOTHING;

-- One reservation per order: which revision of the order's lines it holds, and its state.
--   reserved  – `reservation_lines` are held (available → reserved)
--   failed    – the latest revision could not be held; nothing is held
--   released  – given back after the payment was declined (compensation); final
--   committed – the order completed; the units left `reserved` for good (sold); final
CREATE TABLE reservations (
    order_id   uuid        PRIMARY KEY,
    revision   integer     NOT NULL,
    status     text        NOT NULL CHECK (status IN ('reserved', 'failed', 'released', 'committed')),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reservation_lines (
    order_id   uuid    NOT NULL REFERENCES reservations (order_id),
    product_id bigint  NOT NULL REFERENCES products (product_id),
    quantity   integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
