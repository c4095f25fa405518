-- The order service's replica of the catalog (owned by the stock service, fed by
-- `ProductChanged` on `shop.catalog`): the price of every line placed or added comes from here.
-- A change is applied only when its version is newer than the one held, so a redelivered or
-- replayed older change leaves the row as it is.
CREATE TABLE catalog (
    product_id bigint        PRIMARY KEY CHECK (product_id > 0),
    name       text          NOT NULL,
    unit_price numeric(14, 2) NOT NULL CHECK (unit_price > 0),
    version    bigint        NOT NULL CHECK (version > 0),
    updated_at timestamptz   NOT NULL DEFAULT now()
);
