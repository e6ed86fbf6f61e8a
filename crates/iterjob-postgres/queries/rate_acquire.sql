-- `Store::rate_acquire`: one GCRA reservation in one statement, on the database
-- server's clock. The upsert locks the bucket's row, so concurrent reservations from
-- any number of workers queue up and never overlap.
--   start = max(tat, now); tat = start + cost; wait = start - now
-- (max(tat, now) + cost is max(tat + cost, now + cost), and EXCLUDED.tat is now + cost.)
-- $1 key, $2 cost (µs: units × interval)
WITH clock AS MATERIALIZED (SELECT {now_us} AS now_us)
INSERT INTO {schema}.rate_limits AS bucket (key, tat)
SELECT $1, clock.now_us + $2 FROM clock
ON CONFLICT (key) DO UPDATE
SET tat = GREATEST(bucket.tat + $2, EXCLUDED.tat)
RETURNING bucket.tat - $2 - (SELECT now_us FROM clock) AS wait_us
