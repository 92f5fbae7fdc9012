-- tollgate's stores on PostgreSQL. Times are nanoseconds since the Unix epoch.
-- Migrations only ever add (tables, columns with defaults, indexes), so an
-- older instance keeps working on a database a newer one has migrated.

CREATE TABLE tollgate_keys (
    id TEXT PRIMARY KEY NOT NULL,
    -- Lower-case hex SHA-256 of the key: never the key itself.
    hash TEXT NOT NULL,
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    -- JSON array of scope names.
    scopes TEXT NOT NULL,
    plan TEXT NOT NULL,
    environment TEXT NOT NULL,
    label TEXT NOT NULL,
    display_prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    last_used_at BIGINT
);
CREATE UNIQUE INDEX tollgate_keys_hash ON tollgate_keys (hash);
CREATE INDEX tollgate_keys_account ON tollgate_keys (account_id, created_at);

-- Networks are CIDRs separated by spaces.
CREATE TABLE tollgate_account_allowlists (
    account_id TEXT PRIMARY KEY NOT NULL,
    networks TEXT NOT NULL
);
CREATE TABLE tollgate_key_allowlists (
    key_id TEXT PRIMARY KEY NOT NULL,
    networks TEXT NOT NULL
);

-- A claim while `status` is NULL, a completed response once it is set.
CREATE TABLE tollgate_idempotency (
    storage_key TEXT PRIMARY KEY NOT NULL,
    fingerprint TEXT NOT NULL,
    token TEXT NOT NULL,
    status INTEGER,
    -- JSON array of [name, [bytes]] pairs (trailers included, prefixed).
    headers TEXT,
    body BYTEA,
    expires_at BIGINT NOT NULL
);
CREATE INDEX tollgate_idempotency_expiry ON tollgate_idempotency (expires_at);

CREATE TABLE tollgate_usage (
    key_id TEXT NOT NULL,
    day INTEGER NOT NULL,
    requests BIGINT NOT NULL,
    rate_limited BIGINT NOT NULL,
    PRIMARY KEY (key_id, day)
);
