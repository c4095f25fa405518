-- A reservation's lines move into its row, as two arrays of equal length (product, units),
-- ordered by product. Every read and write of a reservation is then one row by primary key:
-- the stock consumer reads and writes a whole batch of reservations in one statement each, and
-- the planner needs no statistics to see that a key matches at most one row (a separate lines
-- table, read by a join on a non-unique key, was scanned whole while its statistics were
-- missing). What the lines reference is checked when they are held: only products that exist
-- are ever held.
ALTER TABLE reservations
    ADD COLUMN product_ids bigint[]  NOT NULL DEFAULT '{}',
    ADD COLUMN quantities  integer[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT reservation_lines_pair CHECK (cardinality(product_ids) = cardinality(quantities));

UPDATE reservations r
SET product_ids = l.product_ids, quantities = l.quantities
FROM (SELECT order_id,
             array_agg(product_id ORDER BY product_id) AS product_ids,
             array_agg(quantity ORDER BY product_id) AS quantities
      FROM reservation_lines GROUP BY order_id) l
WHERE l.order_id = r.order_id;

DROP TABLE reservation_lines;
