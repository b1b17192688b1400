-- Personal data (docs/design.md, "Erasure and retention").

-- An erased file is a tombstone that keeps no name, type, size or hash. Its objects are deleted
-- after the erasing transaction commits; `objects_deleted_at` records that they are gone, and
-- until then the sweeper deletes them (again).
ALTER TABLE files DROP CONSTRAINT files_state_check;
ALTER TABLE files ADD CONSTRAINT files_state_check CHECK (state IN
    ('receiving', 'staged', 'bound', 'promoted', 'expired', 'discarded', 'erased'));
ALTER TABLE files ADD COLUMN erased_at TIMESTAMPTZ;
ALTER TABLE files ADD COLUMN objects_deleted_at TIMESTAMPTZ;
CREATE INDEX files_erasing_idx ON files (erased_at)
    WHERE state = 'erased' AND objects_deleted_at IS NULL;

-- GET /files: a client's files, newest first, a page at a time (a range scan from the cursor).
CREATE INDEX files_client_created_idx ON files (client_id, created_at DESC, id DESC);
-- GET /files?state=: the same, within one state.
CREATE INDEX files_client_state_created_idx ON files (client_id, state, created_at DESC, id DESC);
-- Retention: promoted files by age.
CREATE INDEX files_promoted_idx ON files (promoted_at) WHERE state = 'promoted';
-- POST /erasures and GET /files?user_id=: a client's webhooks for one candidate.
CREATE INDEX webhooks_user_idx ON webhooks (client_id, user_id);

-- The file an event reports, so erasing the file can redact what earlier events said about it.
ALTER TABLE events ADD COLUMN file_id UUID;
UPDATE events SET file_id = CAST(CAST(body AS jsonb) #>> '{data,file,carv_file_id}' AS UUID)
    WHERE event_type LIKE 'file.%';
CREATE INDEX events_file_idx ON events (file_id) WHERE file_id IS NOT NULL;

-- What sweep passes erased (retention) and which interrupted erasures they finished.
ALTER TABLE sweep_runs ADD COLUMN erased BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sweep_runs ADD COLUMN erasures_finished BIGINT NOT NULL DEFAULT 0;
