CREATE TABLE sweep_runs (
    id                TEXT PRIMARY KEY,
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER NOT NULL,
    expired           INTEGER NOT NULL,
    objects_deleted   INTEGER NOT NULL,
    receiving_aborted INTEGER NOT NULL,
    orphans_deleted   INTEGER NOT NULL,
    tombstones_purged INTEGER NOT NULL,
    promoted          INTEGER NOT NULL,
    errors            INTEGER NOT NULL,
    last_error        TEXT
);
CREATE INDEX sweep_runs_started_idx ON sweep_runs (started_at);
CREATE INDEX files_created_idx ON files (state, created_at);
