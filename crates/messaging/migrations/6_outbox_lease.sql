-- The relay's lease (see `messaging::relay`): one row saying which relay may publish this outbox,
-- until when, and under which epoch. A holder renews `expires_at`; a stand-by takes the row once
-- it expired, bumping `epoch`. The mark statement checks the epoch, so a holder that stopped
-- renewing (stopped, cut off, vanished) cannot mark rows after another took over. Times are the
-- server's, so the relays' clocks never need to agree.
CREATE TABLE outbox_lease (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch       bigint      NOT NULL,
    -- Who holds it, for operators: host, process id and a random instance id.
    holder      text        NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
INSERT INTO outbox_lease (epoch, holder, acquired_at, expires_at)
VALUES (0, '', '-infinity', '-infinity');

-- The epoch of the lease under which a row was marked published, for operators and tests: rows
-- marked under one epoch after the next one began would be a broken fence.
ALTER TABLE outbox ADD COLUMN published_epoch bigint;
