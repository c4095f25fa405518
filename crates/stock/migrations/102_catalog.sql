-- The catalog lives with the stock: a product's price and a change counter beside its units.
-- `version` grows by one with every change of the product's name or price; `ProductChanged`
-- carries it, so a replica keeps the newest and ignores an older or repeated message.
ALTER TABLE products
    ADD COLUMN unit_price numeric(14,2) CHECK (unit_price > 0),
    ADD COLUMN version    integer       NOT NULL DEFAULT 1 CHECK (version >= 1);

-- The seed prices (SYSTEM.md §2). Before this migration no route could add a product, so the
-- seed's are the only ones: the NOT NULL below refuses to guess a price for any other.
UPDATE products SET unit_price = CASE product_id
    WHEN 1 THEN 45.00
    WHEN 2 THEN 20.00
    WHEN 3 THEN 450.00
END;

ALTER TABLE products
    ALTER COLUMN unit_price SET NOT NULL,
    ALTER COLUMN version DROP DEFAULT;

-- The catalog as it stands goes to the catalog topic, one `ProductChanged` per product (the
-- contract `contracts::catalog::ProductChanged`, keyed by `product_key`: the id in decimal), so
-- the order service's replica learns every product, the seed's included. The relay publishes
-- these rows like any other; the topic name is logical (the relay adds the prefix).
WITH catalog AS (SELECT p.*, gen_random_uuid() AS message_id FROM products p)
INSERT INTO outbox (message_id, topic, message_key, message_type, schema_version, payload,
                    correlation_id, causation_id, traceparent, occurred_at)
SELECT message_id, 'shop.catalog', product_id::text, 'ProductChanged', 1,
       json_build_object('productId', product_id, 'name', name,
                         'unitPrice', unit_price::text, 'version', version),
       message_id, NULL, NULL, now()
FROM catalog
ORDER BY product_id;
