-- Files and bytes per state without counting the table; see the PostgreSQL migration. SQLite
-- has no statement triggers: one change row per changed file.
CREATE TABLE file_counts (
    state TEXT PRIMARY KEY,
    files INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
-- No key, no sequence: rows are only appended and, by the fold, all deleted (a role
-- granted the tables needs nothing more).
CREATE TABLE file_count_changes (
    state TEXT NOT NULL,
    files INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT INTO file_counts (state, files, bytes)
SELECT state, COUNT(*), COALESCE(SUM(file_size), 0) FROM files GROUP BY state;

CREATE TRIGGER files_counted_insert AFTER INSERT ON files
BEGIN
    INSERT INTO file_count_changes (state, files, bytes)
    VALUES (NEW.state, 1, COALESCE(NEW.file_size, 0));
END;
CREATE TRIGGER files_counted_delete AFTER DELETE ON files
BEGIN
    INSERT INTO file_count_changes (state, files, bytes)
    VALUES (OLD.state, -1, -COALESCE(OLD.file_size, 0));
END;
CREATE TRIGGER files_counted_update AFTER UPDATE OF state, file_size ON files
WHEN OLD.state IS NOT NEW.state OR OLD.file_size IS NOT NEW.file_size
BEGIN
    INSERT INTO file_count_changes (state, files, bytes)
    VALUES (OLD.state, -1, -COALESCE(OLD.file_size, 0)), (NEW.state, 1, COALESCE(NEW.file_size, 0));
END;
