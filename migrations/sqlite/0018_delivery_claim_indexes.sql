-- Claiming due deliveries without reading the backlog; see the PostgreSQL migration.
CREATE INDEX deliveries_endpoint_due_idx ON deliveries (endpoint_id, next_attempt_at, event_id)
    WHERE status = 'pending';
CREATE INDEX deliveries_endpoint_leased_idx ON deliveries (endpoint_id, leased_until)
    WHERE status = 'pending';
