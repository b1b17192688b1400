-- The claim reads each endpoint's pending deliveries (0018's partial indexes) and the pending
-- count reads the same: `(status, next_attempt_at)` over every delivery, delivered ones
-- included, was written on every insert and status change and read by nothing (issue 29).
DROP INDEX deliveries_due_idx;
