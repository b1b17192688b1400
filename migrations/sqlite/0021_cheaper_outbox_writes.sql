-- The claim counts the leases in force (`leased_until > now`): a delivery not leased, as every
-- new one, needs no entry; see the PostgreSQL migration. (SQLite keeps the deliveries' foreign
-- keys: a table rebuild to drop them, for an embedded database that is not the scale target.)
DROP INDEX deliveries_endpoint_leased_idx;
CREATE INDEX deliveries_endpoint_leased_idx ON deliveries (endpoint_id, leased_until)
    WHERE status = 'pending' AND leased_until IS NOT NULL;
