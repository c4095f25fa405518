-- The audit trail of operator actions (SYSTEM.md I8: who, when, what): one row per action that
-- changed something, written in the transaction of the change itself, so an action is audited
-- if and only if it happened. `before` and `after` are the subject as it was and as it is
-- (`null`: it did not exist, or does not any more). The table lives beside the outbox in every
-- service's database, because each service audits the operator actions it carries out.
CREATE TABLE audit (
    -- Allocation order: the listing reads newest first by it, and pages by it.
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    -- The token's `sub` as sent (`platform::auth::Identity::name`).
    actor   text        NOT NULL,
    -- What was done, e.g. `product.restock`.
    action  text        NOT NULL,
    -- What it was done to, e.g. `product:1`.
    subject text        NOT NULL,
    before  jsonb,
    after   jsonb
);

-- The listing's filters, each read newest first from its own index.
CREATE INDEX audit_by_actor ON audit (actor, id);
CREATE INDEX audit_by_action ON audit (action, id);
