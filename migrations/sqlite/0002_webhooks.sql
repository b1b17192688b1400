CREATE TABLE webhooks (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('candidate', 'application')),
    user_id         TEXT NOT NULL,
    payload         TEXT NOT NULL,
    payload_hash    TEXT NOT NULL,
    idempotency_key TEXT,
    status          TEXT NOT NULL CHECK (status IN ('processing', 'processed', 'rejected')),
    result          TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE UNIQUE INDEX webhooks_idempotency_idx ON webhooks (client_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

ALTER TABLE files ADD COLUMN slot TEXT;
CREATE INDEX files_webhook_idx ON files (webhook_id);
