-- The console's audit trail (SYSTEM.md I8): the same table as every service's
-- (`messaging::audit`), for the actions the console carries out itself (dead letters redriven
-- or discarded). Each row is written in the transaction that records the action.
CREATE TABLE audit (
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL,
    action  text        NOT NULL,
    subject text        NOT NULL,
    before  jsonb,
    after   jsonb
);

CREATE INDEX audit_by_actor ON audit (actor, id);
CREATE INDEX audit_by_action ON audit (action, id);
