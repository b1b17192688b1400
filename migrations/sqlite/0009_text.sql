-- Text for analysis (docs/design.md, "Text for analysis"); see the PostgreSQL migration.

ALTER TABLE files ADD COLUMN text_status TEXT
    CHECK (text_status IN ('pending', 'extracted', 'failed'));
ALTER TABLE files ADD COLUMN text_chars INTEGER;
ALTER TABLE files ADD COLUMN text_error TEXT;
ALTER TABLE files ADD COLUMN text_reason TEXT;

CREATE TABLE file_texts (
    file_id TEXT PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
    body TEXT NOT NULL
);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    file_id TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at INTEGER NOT NULL,
    leased_until INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (kind, file_id)
);
CREATE INDEX jobs_due_idx ON jobs (run_at);

-- Files promoted before this migration get their text too (times are microseconds).
UPDATE files SET text_status = 'pending' WHERE state = 'promoted';
INSERT INTO jobs (id, kind, file_id, attempts, run_at, created_at)
    SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||
                 substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) ||
                 substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))),
           'extract_text', id, 0,
           CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER),
           CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
    FROM files WHERE state = 'promoted';
