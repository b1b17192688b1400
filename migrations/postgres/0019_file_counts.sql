-- Files and bytes per state without counting the table (issue 29): `stowage stats` and
-- `GET /ops/storage` read `file_counts` (folded totals) plus `file_count_changes` (what changed
-- since the last fold), so they cost the same at a thousand files and at a million. Triggers
-- append the changes (no row is updated in place, so concurrent writers never wait on each
-- other for a counter); the sweep pass folds them into the totals.
CREATE TABLE file_counts (
    state TEXT PRIMARY KEY,
    files BIGINT NOT NULL,
    bytes BIGINT NOT NULL
);
-- No key, no sequence: rows are only appended and, by the fold, all deleted (a role
-- granted the tables needs nothing more).
CREATE TABLE file_count_changes (
    state TEXT NOT NULL,
    files BIGINT NOT NULL,
    bytes BIGINT NOT NULL
);
INSERT INTO file_counts (state, files, bytes)
SELECT state, COUNT(*), COALESCE(SUM(file_size), 0) FROM files GROUP BY state;

-- One statement's changes in one row per state (a sweep batch of 1,000 expiries adds two).
CREATE FUNCTION file_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO file_count_changes (state, files, bytes)
    SELECT state, COUNT(*), COALESCE(SUM(file_size), 0) FROM new_rows GROUP BY state;
    RETURN NULL;
END $$;
CREATE FUNCTION file_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO file_count_changes (state, files, bytes)
    SELECT state, -COUNT(*), -COALESCE(SUM(file_size), 0) FROM old_rows GROUP BY state;
    RETURN NULL;
END $$;
CREATE FUNCTION file_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO file_count_changes (state, files, bytes)
    SELECT state, SUM(files), SUM(bytes) FROM (
        SELECT n.state, 1 AS files, COALESCE(n.file_size, 0) AS bytes
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE o.state IS DISTINCT FROM n.state OR o.file_size IS DISTINCT FROM n.file_size
        UNION ALL
        SELECT o.state, -1, -COALESCE(o.file_size, 0)
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE o.state IS DISTINCT FROM n.state OR o.file_size IS DISTINCT FROM n.file_size
    ) c GROUP BY state HAVING SUM(files) <> 0 OR SUM(bytes) <> 0;
    RETURN NULL;
END $$;
CREATE TRIGGER files_counted_insert AFTER INSERT ON files
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION file_counts_inserted();
CREATE TRIGGER files_counted_delete AFTER DELETE ON files
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION file_counts_deleted();
CREATE TRIGGER files_counted_update AFTER UPDATE ON files
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION file_counts_updated();
