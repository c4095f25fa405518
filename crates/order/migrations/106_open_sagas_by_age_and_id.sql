-- The stuck list (`stuck.rs`) pages through open sagas oldest first by `(placed_at, order_id)`:
-- the age index carries the id too, so one index serves both that order and the deadline's
-- poll (`deadline.rs`), and no saga placed in the same microsecond as another is skipped or
-- repeated between pages.
DROP INDEX open_sagas_by_age;
CREATE INDEX open_sagas_by_age ON open_sagas (placed_at, order_id);
