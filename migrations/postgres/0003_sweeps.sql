-- One row per sweep pass, for operators (`stowage stats`, `/ops/storage`).
CREATE TABLE sweep_runs (
    id                UUID PRIMARY KEY,
    started_at        TIMESTAMPTZ NOT NULL,
    finished_at       TIMESTAMPTZ NOT NULL,
    expired           BIGINT NOT NULL,
    objects_deleted   BIGINT NOT NULL,
    receiving_aborted BIGINT NOT NULL,
    orphans_deleted   BIGINT NOT NULL,
    tombstones_purged BIGINT NOT NULL,
    promoted          BIGINT NOT NULL,
    errors            BIGINT NOT NULL,
    last_error        TEXT
);
CREATE INDEX sweep_runs_started_idx ON sweep_runs (started_at);
CREATE INDEX files_created_idx ON files (state, created_at);
