-- The dashboard's sessions, webhook secret rotation and delivery history.

-- A session is found by the SHA-256 of its id (the cookie's value never
-- enters the database). It belongs to the Production key it was created
-- from, and every request checks that key, so revoking it ends the session.
CREATE TABLE api_dashboard_sessions (
    id_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    created_unix BIGINT NOT NULL,
    expires_unix BIGINT NOT NULL,
    last_seen_unix BIGINT NOT NULL
);
CREATE INDEX api_dashboard_sessions_by_expiry ON api_dashboard_sessions (expires_unix);

-- What a page shows once after a redirect (a new key, a new signing
-- secret), sealed like webhook secrets and deleted as it is read.
CREATE TABLE api_dashboard_flash (
    session_hash TEXT PRIMARY KEY,
    sealed TEXT NOT NULL,
    created_unix BIGINT NOT NULL
);

-- The secret a rotation replaced, still signing until previous_until_unix.
ALTER TABLE api_webhook_endpoints ADD COLUMN previous_sealed_secret TEXT;
ALTER TABLE api_webhook_endpoints ADD COLUMN previous_until_unix BIGINT;

-- The outcome of each finished or retrying delivery, the newest 50 per
-- account kept (the outbox row itself is deleted once finished).
CREATE TABLE api_webhook_history (
    event_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    at_unix_ms BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    url TEXT NOT NULL,
    outcome TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    response_status BIGINT
);
CREATE INDEX api_webhook_history_by_account ON api_webhook_history (account_id, at_unix_ms)
