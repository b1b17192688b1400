-- When bytes of a `receiving` upload last arrived: an upload is dead when it falls silent, not
-- when it has merely run for a long time.
ALTER TABLE files ADD COLUMN active_at TIMESTAMPTZ;
UPDATE files SET active_at = created_at;
ALTER TABLE files ALTER COLUMN active_at SET NOT NULL;
CREATE INDEX files_active_idx ON files (state, active_at);
