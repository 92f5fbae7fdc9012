-- messaging-api's own tables, portable between SQLite and PostgreSQL.
-- Keys, allowlists, idempotency and usage records belong to tollgate-sql,
-- whose migrations are recorded apart from these.

CREATE TABLE api_accounts (
    id TEXT PRIMARY KEY,
    plan TEXT NOT NULL,
    created_unix BIGINT NOT NULL
);

-- The signing secret is sealed (ChaCha20-Poly1305 under the secrets key,
-- which never enters the database): see `sealed.rs`.
CREATE TABLE api_webhook_endpoints (
    account_id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    sealed_secret TEXT NOT NULL,
    updated_unix BIGINT NOT NULL
);

CREATE TABLE api_messages (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    sandbox BIGINT NOT NULL,
    status TEXT NOT NULL,
    to_number TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT,
    created_at TEXT NOT NULL,
    created_unix BIGINT NOT NULL
);
CREATE INDEX api_messages_by_age ON api_messages (created_unix);

-- Events not yet delivered. An instance claims one by setting a lease:
-- a lease that runs out (its instance stopped) lets any instance retry.
CREATE TABLE api_webhook_deliveries (
    event_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_unix_ms BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until_unix_ms BIGINT NOT NULL
);
CREATE INDEX api_webhook_deliveries_due ON api_webhook_deliveries (next_attempt_unix_ms);

-- A single node's daily quota counts, written behind the in-memory rate
-- limiter so that a restart does not hand out a fresh quota.
CREATE TABLE api_daily_quota (
    rate_key TEXT PRIMARY KEY,
    day BIGINT NOT NULL,
    used BIGINT NOT NULL
);
