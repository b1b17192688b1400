-- Direct uploads (docs/design.md, "Direct uploads"): what the client declared before sending
-- the bytes to object storage itself, and, once completing refused the file, why (the refusal
-- is answered again to a repeated completion). The file's row is the usual `receiving` row.
CREATE TABLE direct_uploads (
    file_id   UUID PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
    file_size BIGINT NOT NULL,
    sha256    TEXT NOT NULL,
    refusal   TEXT
);
