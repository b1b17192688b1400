-- Same shape as migrations/postgres; ids are TEXT (hyphenated UUIDs) and times are INTEGER
-- microseconds since the Unix epoch, so comparisons are numeric.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    secret_hash BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE client_grants (
    key_id     TEXT NOT NULL REFERENCES api_keys (id),
    client_id  TEXT NOT NULL,
    workspace  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, client_id)
);

CREATE TABLE files (
    id                  TEXT PRIMARY KEY,
    client_id           TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN
                          ('receiving', 'staged', 'bound', 'promoted', 'expired', 'discarded')),
    file_name           TEXT NOT NULL,
    content_type        TEXT,
    file_size           INTEGER,
    sha256              TEXT,
    staging_key         TEXT NOT NULL,
    multipart_upload_id TEXT,
    created_at          INTEGER NOT NULL,
    uploaded_at         INTEGER,
    expires_at          INTEGER,
    state_changed_at    INTEGER NOT NULL,
    webhook_id          TEXT,
    promoted_key        TEXT,
    bound_at            INTEGER,
    promoted_at         INTEGER
);

CREATE INDEX files_state_expires_idx ON files (state, expires_at);
CREATE INDEX files_state_changed_idx ON files (state, state_changed_at);
