-- The endpoint lifecycle (docs/design.md, "Events"); see the PostgreSQL migration.
ALTER TABLE event_endpoints ADD COLUMN previous_secret TEXT;
ALTER TABLE event_endpoints ADD COLUMN previous_secret_until INTEGER;
ALTER TABLE event_endpoints ADD COLUMN disabled_at INTEGER;
ALTER TABLE event_endpoints ADD COLUMN failing_since INTEGER;
