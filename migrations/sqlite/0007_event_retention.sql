-- Same as migrations/postgres/0007_event_retention.sql.
-- Events (and their deliveries and attempts, by cascade) are purged with the tombstones, oldest
-- first: find them by age.
CREATE INDEX events_created_idx ON events (created_at);
