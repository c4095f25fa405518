-- Console logins. The cookie carries a random session id and nothing else; what the session
-- may do is here, so a logout or an expiry ends it at once.
CREATE TABLE sessions (
    -- SHA-256 of the cookie's value: a read of this table gives no usable cookie.
    id_hash    bytea       PRIMARY KEY,
    -- The token's `sub` as sent, the audit trail's actor.
    actor      text        NOT NULL,
    -- `viewer` or `ops`.
    roles      text[]      NOT NULL,
    -- The synchronizer token every form of the session carries (CSRF).
    csrf       text        NOT NULL,
    -- The bearer token the session logged in with. It stays here, never goes back to the
    -- browser, and is what the console presents to the services for this session's reads and
    -- actions, so each service still checks the caller's own roles. The session ends when it
    -- expires.
    token      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- One-time login links: a token with a `jti` logs in once.
CREATE TABLE used_logins (
    jti        text        PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE INDEX used_logins_by_expiry ON used_logins (expires_at);
