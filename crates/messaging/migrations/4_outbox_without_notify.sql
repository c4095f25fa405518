-- Writers no longer NOTIFY from their transaction: PostgreSQL serialises the commits of every
-- transaction that notifies, server-wide, until each one's WAL flush ended, which queued the
-- services' commits one behind the other. They ring the relay after committing instead (see
-- `messaging::doorbell`).
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION outbox_notify();
