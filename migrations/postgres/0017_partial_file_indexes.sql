-- The files table's indexes, each on the rows its query reads (issue 29). A state change is
-- an update PostgreSQL cannot do in place (the state is indexed), so every index of the table
-- got a new entry at each of a file's three or four changes; an index whose predicate the new
-- row does not meet gets none. Before: ten indexes, eight written at every change; after: four
-- or five.

-- Expiry: staged files by deadline.
DROP INDEX files_state_expires_idx;
CREATE INDEX files_staged_expires_idx ON files (expires_at) WHERE state = 'staged';
-- Dead uploads: receiving rows by last activity.
DROP INDEX files_active_idx;
CREATE INDEX files_receiving_idx ON files (active_at) WHERE state = 'receiving';
-- Tombstones by age, for the purge.
DROP INDEX files_state_changed_idx;
CREATE INDEX files_tombstones_idx ON files (state_changed_at)
    WHERE state IN ('expired', 'discarded', 'erased');
-- Bound files whose promotion is to be finished, oldest first.
CREATE INDEX files_bound_idx ON files (bound_at) WHERE state = 'bound';
-- A webhook's files (erasure by candidate): only bound and promoted files have one.
DROP INDEX files_webhook_idx;
CREATE INDEX files_webhook_idx ON files (webhook_id) WHERE webhook_id IS NOT NULL;
-- No query reads files by (state, created_at) since dead uploads are found by activity.
DROP INDEX files_created_idx;
