-- Direct uploads keep their promises; see the PostgreSQL migration. SQLite cannot drop NOT NULL
-- in place: the table is rebuilt.
CREATE TABLE direct_uploads_new (
    file_id        TEXT PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
    file_size      INTEGER,
    sha256         TEXT,
    refusal        TEXT,
    window_ends_at INTEGER NOT NULL,
    window_closed  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO direct_uploads_new (file_id, file_size, sha256, refusal, window_ends_at)
    SELECT d.file_id, d.file_size, d.sha256, d.refusal,
           COALESCE((SELECT f.active_at FROM files f WHERE f.id = d.file_id), 0)
    FROM direct_uploads d;
DROP TABLE direct_uploads;
ALTER TABLE direct_uploads_new RENAME TO direct_uploads;
CREATE INDEX direct_uploads_open_idx ON direct_uploads (window_ends_at) WHERE window_closed = 0;
