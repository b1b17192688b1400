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
