-- Malware scanning (docs/design.md, "Malware scanning"): what clamd said when the file was
-- staged (`clean`, or `skipped` when it could not scan and STOWAGE_CLAMD_FAIL_OPEN staged it)
-- and, after `stowage rescan`, `infected` with the signature found (the file is quarantined).
ALTER TABLE files ADD COLUMN scan_status TEXT;
ALTER TABLE files ADD COLUMN scan_engine TEXT;
ALTER TABLE files ADD COLUMN scan_signatures TEXT;
ALTER TABLE files ADD COLUMN scan_found TEXT;
