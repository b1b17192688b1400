-- Events (and their deliveries and attempts, by cascade) are purged with the tombstones, oldest
-- first: find them by age.
CREATE INDEX events_created_idx ON events (created_at);
