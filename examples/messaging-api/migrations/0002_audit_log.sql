-- Every key, allowlist and webhook change, newest first per account.
-- `id` sorts in the order entries were written (time, then a sequence),
-- so the account's page is one index range. Never a secret in `details`.
CREATE TABLE api_audit_log (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    at_unix_ms BIGINT NOT NULL,
    actor_key_id TEXT NOT NULL,
    client_ip TEXT,
    action TEXT NOT NULL,
    target_id TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX api_audit_log_by_account ON api_audit_log (account_id, id);
CREATE INDEX api_audit_log_by_age ON api_audit_log (at_unix_ms);
