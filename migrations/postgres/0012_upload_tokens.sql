-- Upload tokens (docs/design.md, "Upload tokens"): a short-lived secret a browser uploads with,
-- scoped to uploading for one client and minted by one API key (revoking the key, or taking the
-- client from it, ends its tokens too). Only the SHA-256 of the secret is stored. `used` counts
-- the uploads opened with it, raised by one conditional update, so replicas share the count.
CREATE TABLE upload_tokens (
    id                 UUID PRIMARY KEY,
    client_id          TEXT NOT NULL,
    key_id             UUID NOT NULL REFERENCES api_keys (id),
    secret_hash        BYTEA NOT NULL,
    expires_at         TIMESTAMPTZ NOT NULL,
    max_files          INTEGER NOT NULL,
    max_size           BIGINT NOT NULL,
    -- Comma-separated extensions, as `STOWAGE_ALLOWED_EXTENSIONS` spells them.
    allowed_extensions TEXT NOT NULL,
    used               INTEGER NOT NULL DEFAULT 0,
    revoked_at         TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX upload_tokens_expires_idx ON upload_tokens (expires_at);

-- The token a direct upload was opened with: only that token may complete it.
ALTER TABLE direct_uploads ADD COLUMN upload_token UUID;
