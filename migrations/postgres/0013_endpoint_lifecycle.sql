-- The endpoint lifecycle (docs/design.md, "Events"): a rotated secret keeps signing beside the
-- new one until `previous_secret_until` (STOWAGE_EVENT_SECRET_OVERLAP); an endpoint failing
-- every attempt since `failing_since` for STOWAGE_EVENT_DISABLE_AFTER is disabled
-- (`disabled_at`), as is one a client disables itself: no deliveries are made to it until it is
-- enabled again.
ALTER TABLE event_endpoints ADD COLUMN previous_secret TEXT;
ALTER TABLE event_endpoints ADD COLUMN previous_secret_until TIMESTAMPTZ;
ALTER TABLE event_endpoints ADD COLUMN disabled_at TIMESTAMPTZ;
ALTER TABLE event_endpoints ADD COLUMN failing_since TIMESTAMPTZ;
