-- API keys: the secret is never stored, only its SHA-256.
CREATE TABLE api_keys (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    secret_hash BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);

-- Which client ids (workspaces) a key may act for.
CREATE TABLE client_grants (
    key_id     UUID NOT NULL REFERENCES api_keys (id),
    client_id  TEXT NOT NULL,
    workspace  TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, client_id)
);

-- One row per file, from before its first byte is stored until its tombstone is purged.
CREATE TABLE files (
    id                  UUID PRIMARY KEY,
    client_id           TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN
                          ('receiving', 'staged', 'bound', 'promoted', 'expired', 'discarded')),
    file_name           TEXT NOT NULL,
    content_type        TEXT,
    file_size           BIGINT,
    sha256              TEXT,
    staging_key         TEXT NOT NULL,
    multipart_upload_id TEXT,
    created_at          TIMESTAMPTZ NOT NULL,
    uploaded_at         TIMESTAMPTZ,
    expires_at          TIMESTAMPTZ,
    state_changed_at    TIMESTAMPTZ NOT NULL,
    webhook_id          UUID,
    promoted_key        TEXT,
    bound_at            TIMESTAMPTZ,
    promoted_at         TIMESTAMPTZ
);

CREATE INDEX files_state_expires_idx ON files (state, expires_at);
CREATE INDEX files_state_changed_idx ON files (state, state_changed_at);
