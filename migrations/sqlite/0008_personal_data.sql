-- Same as migrations/postgres/0008_personal_data.sql. SQLite cannot alter a CHECK constraint,
-- so the files table is rebuilt with the new state (nothing references it).
CREATE TABLE files_new (
    id                  TEXT PRIMARY KEY,
    client_id           TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN
                          ('receiving', 'staged', 'bound', 'promoted', 'expired', 'discarded',
                           'erased')),
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
    promoted_at         INTEGER,
    slot                TEXT,
    active_at           INTEGER NOT NULL DEFAULT 0,
    erased_at           INTEGER,
    objects_deleted_at  INTEGER
);
INSERT INTO files_new (id, client_id, state, file_name, content_type, file_size, sha256,
                       staging_key, multipart_upload_id, created_at, uploaded_at, expires_at,
                       state_changed_at, webhook_id, promoted_key, bound_at, promoted_at, slot,
                       active_at)
    SELECT id, client_id, state, file_name, content_type, file_size, sha256, staging_key,
           multipart_upload_id, created_at, uploaded_at, expires_at, state_changed_at,
           webhook_id, promoted_key, bound_at, promoted_at, slot, active_at
    FROM files;
DROP TABLE files;
ALTER TABLE files_new RENAME TO files;

CREATE INDEX files_state_expires_idx ON files (state, expires_at);
CREATE INDEX files_state_changed_idx ON files (state, state_changed_at);
CREATE INDEX files_webhook_idx ON files (webhook_id);
CREATE INDEX files_created_idx ON files (state, created_at);
CREATE INDEX files_active_idx ON files (state, active_at);
CREATE INDEX files_erasing_idx ON files (erased_at)
    WHERE state = 'erased' AND objects_deleted_at IS NULL;
CREATE INDEX files_client_created_idx ON files (client_id, created_at DESC, id DESC);
CREATE INDEX files_client_state_created_idx ON files (client_id, state, created_at DESC, id DESC);
CREATE INDEX files_promoted_idx ON files (promoted_at) WHERE state = 'promoted';
CREATE INDEX webhooks_user_idx ON webhooks (client_id, user_id);

ALTER TABLE events ADD COLUMN file_id TEXT;
UPDATE events SET file_id = json_extract(body, '$.data.file.carv_file_id')
    WHERE event_type LIKE 'file.%';
CREATE INDEX events_file_idx ON events (file_id) WHERE file_id IS NOT NULL;

ALTER TABLE sweep_runs ADD COLUMN erased INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sweep_runs ADD COLUMN erasures_finished INTEGER NOT NULL DEFAULT 0;
