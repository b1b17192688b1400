-- Upload tokens (docs/design.md, "Upload tokens"); see the PostgreSQL migration.
CREATE TABLE upload_tokens (
    id                 TEXT PRIMARY KEY,
    client_id          TEXT NOT NULL,
    key_id             TEXT NOT NULL REFERENCES api_keys (id),
    secret_hash        BLOB NOT NULL,
    expires_at         INTEGER NOT NULL,
    max_files          INTEGER NOT NULL,
    max_size           INTEGER NOT NULL,
    allowed_extensions TEXT NOT NULL,
    used               INTEGER NOT NULL DEFAULT 0,
    revoked_at         INTEGER,
    created_at         INTEGER NOT NULL
);
CREATE INDEX upload_tokens_expires_idx ON upload_tokens (expires_at);

ALTER TABLE direct_uploads ADD COLUMN upload_token TEXT;
