-- Malware scanning; see the PostgreSQL migration.
ALTER TABLE files ADD COLUMN scan_status TEXT;
ALTER TABLE files ADD COLUMN scan_engine TEXT;
ALTER TABLE files ADD COLUMN scan_signatures TEXT;
ALTER TABLE files ADD COLUMN scan_found TEXT;
