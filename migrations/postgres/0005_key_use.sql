-- When a key last authenticated a request (written at most once a minute per key), so an
-- operator can tell a key in use from one that can be revoked.
ALTER TABLE api_keys ADD COLUMN last_used_at TIMESTAMPTZ;
