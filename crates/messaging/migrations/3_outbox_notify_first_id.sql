-- The notification names the first row its statement inserted. A relay that already read that
-- row has read its whole transaction (a transaction's rows become visible at once), so it can
-- skip the poll the notification would otherwise cost. An insert of no rows notifies nobody.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    first_id bigint;
BEGIN
    SELECT min(id) INTO first_id FROM inserted;
    IF first_id IS NOT NULL THEN
        PERFORM pg_notify('outbox', first_id::text);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
