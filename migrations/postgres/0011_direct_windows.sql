-- Direct uploads keep their promises (docs/design.md, "Direct uploads"): completing after the
-- upload's window finds nothing to complete, and once the window has closed the sweeper deletes
-- the staging key again of an upload that is no longer live (refused, discarded, erased,
-- promoted), so a still-signed URL cannot bring bytes back. An erasure clears the declaration
-- (size and SHA-256 describe the document), keeping only the window for that clean-up.
ALTER TABLE direct_uploads ALTER COLUMN file_size DROP NOT NULL;
ALTER TABLE direct_uploads ALTER COLUMN sha256 DROP NOT NULL;
ALTER TABLE direct_uploads ADD COLUMN window_ends_at TIMESTAMPTZ;
UPDATE direct_uploads d SET window_ends_at = f.active_at FROM files f WHERE f.id = d.file_id;
UPDATE direct_uploads SET window_ends_at = now() WHERE window_ends_at IS NULL;
ALTER TABLE direct_uploads ALTER COLUMN window_ends_at SET NOT NULL;
ALTER TABLE direct_uploads ADD COLUMN window_closed BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX direct_uploads_open_idx ON direct_uploads (window_ends_at) WHERE NOT window_closed;
