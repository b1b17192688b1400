-- When bytes of a `receiving` upload last arrived (microseconds): an upload is dead when it
-- falls silent, not when it has merely run for a long time.
ALTER TABLE files ADD COLUMN active_at INTEGER NOT NULL DEFAULT 0;
UPDATE files SET active_at = created_at;
CREATE INDEX files_active_idx ON files (state, active_at);
