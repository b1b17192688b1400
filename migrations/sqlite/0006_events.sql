-- Same shape as migrations/postgres/0006_events.sql (ids TEXT, times INTEGER microseconds).
-- Where a client wants to hear about its files. The secret signs deliveries, so it is kept
-- readable (see docs/security.md); an endpoint removed is kept (deleted_at) for the log.
CREATE TABLE event_endpoints (
    id          TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    url         TEXT NOT NULL,
    -- JSON array of event types; NULL: every type.
    event_types TEXT,
    secret      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    deleted_at  INTEGER
);
CREATE INDEX event_endpoints_client_idx ON event_endpoints (client_id) WHERE deleted_at IS NULL;

-- The outbox: one row per event, written in the transaction of the change it reports.
CREATE TABLE events (
    id         TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- The event as delivered (JSON), byte for byte.
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX events_client_idx ON events (client_id, created_at DESC, id);

-- One row per event and subscribed endpoint: what the worker still owes it.
CREATE TABLE deliveries (
    event_id             TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    endpoint_id          TEXT NOT NULL REFERENCES event_endpoints (id),
    status               TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempt_count        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at      INTEGER NOT NULL,
    -- A worker holding the delivery until then; another may take it after.
    leased_until         INTEGER,
    last_attempt_at      INTEGER,
    response_status_code INTEGER,
    error_message        TEXT,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX deliveries_due_idx ON deliveries (status, next_attempt_at);

-- Every attempt, for the delivery log.
CREATE TABLE delivery_attempts (
    event_id             TEXT NOT NULL,
    endpoint_id          TEXT NOT NULL,
    attempt              INTEGER NOT NULL,
    attempted_at         INTEGER NOT NULL,
    duration_ms          INTEGER NOT NULL,
    response_status_code INTEGER,
    error_message        TEXT,
    PRIMARY KEY (event_id, endpoint_id, attempt),
    FOREIGN KEY (event_id, endpoint_id) REFERENCES deliveries (event_id, endpoint_id) ON DELETE CASCADE
);
