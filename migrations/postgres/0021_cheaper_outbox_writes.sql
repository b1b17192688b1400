-- What every event and every state change writes, made cheaper (issue 29): measured on a batch
-- of 1,000 expiries with an endpoint (the tombstones, their events and deliveries), 1,144 →
-- 878 ms for 25 batches (bench/notes.md).

-- A delivery is only ever written by the statement that writes its event, for endpoints that
-- statement reads; endpoints are never deleted (a removed one keeps its row, `deleted_at`),
-- and the events purge deletes an event's deliveries itself. The two foreign keys checked
-- each delivery row by row (two lookups and a row lock per delivery): −13 %.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_endpoint_id_fkey;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_event_id_fkey;

-- The claim counts the leases in force (`leased_until > now`): a delivery not leased, as every
-- new one, needs no entry.
DROP INDEX deliveries_endpoint_leased_idx;
CREATE INDEX deliveries_endpoint_leased_idx ON deliveries (endpoint_id, leased_until)
    WHERE status = 'pending' AND leased_until IS NOT NULL;

-- Files and bytes per state: each row's new state counted in and its old one counted out, no
-- join of the statement's old and new rows (a row whose state and size did not change nets
-- zero, as before).
CREATE OR REPLACE FUNCTION file_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO file_count_changes (state, files, bytes)
    SELECT state, SUM(files), SUM(bytes) FROM (
        SELECT state, 1 AS files, COALESCE(file_size, 0) AS bytes FROM new_rows
        UNION ALL
        SELECT state, -1, -COALESCE(file_size, 0) FROM old_rows
    ) c GROUP BY state HAVING SUM(files) <> 0 OR SUM(bytes) <> 0;
    RETURN NULL;
END $$;
