-- The files table's indexes, each on the rows its query reads; see the PostgreSQL migration.
DROP INDEX files_state_expires_idx;
CREATE INDEX files_staged_expires_idx ON files (expires_at) WHERE state = 'staged';
DROP INDEX files_active_idx;
CREATE INDEX files_receiving_idx ON files (active_at) WHERE state = 'receiving';
DROP INDEX files_state_changed_idx;
CREATE INDEX files_tombstones_idx ON files (state_changed_at)
    WHERE state IN ('expired', 'discarded', 'erased');
CREATE INDEX files_bound_idx ON files (bound_at) WHERE state = 'bound';
DROP INDEX files_webhook_idx;
CREATE INDEX files_webhook_idx ON files (webhook_id) WHERE webhook_id IS NOT NULL;
DROP INDEX files_created_idx;
