-- Text for analysis (docs/design.md, "Text for analysis").

-- A promoted file's text: its status on the file (NULL until the file is promoted), the text
-- itself in its own table so file rows stay small. Erasing a file deletes its text in the
-- erasing transaction.
ALTER TABLE files ADD COLUMN text_status TEXT
    CHECK (text_status IN ('pending', 'extracted', 'failed'));
ALTER TABLE files ADD COLUMN text_chars BIGINT;
ALTER TABLE files ADD COLUMN text_error TEXT;
ALTER TABLE files ADD COLUMN text_reason TEXT;

CREATE TABLE file_texts (
    file_id UUID PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
    body TEXT NOT NULL
);

-- Background work that must outlive a process: one row a job, leased by one worker at a time
-- (a crashed worker's lease runs out and another takes the job). A job is deleted when done.
CREATE TABLE jobs (
    id UUID PRIMARY KEY,
    kind TEXT NOT NULL,
    file_id UUID NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at TIMESTAMPTZ NOT NULL,
    leased_until TIMESTAMPTZ,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (kind, file_id)
);
CREATE INDEX jobs_due_idx ON jobs (run_at);

-- Files promoted before this migration get their text too.
UPDATE files SET text_status = 'pending' WHERE state = 'promoted';
INSERT INTO jobs (id, kind, file_id, attempts, run_at, created_at)
    SELECT gen_random_uuid(), 'extract_text', id, 0, now(), now() FROM files
    WHERE state = 'promoted';
