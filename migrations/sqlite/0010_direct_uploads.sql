-- Direct uploads (docs/design.md, "Direct uploads"); see the PostgreSQL migration.
CREATE TABLE direct_uploads (
    file_id   TEXT PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
    file_size INTEGER NOT NULL,
    sha256    TEXT NOT NULL,
    refusal   TEXT
);
