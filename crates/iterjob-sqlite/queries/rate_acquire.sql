-- `Store::rate_acquire`: one GCRA reservation, in one statement (an atomic upsert
-- under the database's write lock, so concurrent processes never overlap).
--   start = max(tat, now); tat = start + cost; wait = start - now
-- ?1 key, ?2 now (µs), ?3 cost (µs: units × interval)
INSERT INTO iterjob_rate_limits (key, tat) VALUES (?1, ?2 + ?3)
ON CONFLICT (key) DO UPDATE SET tat = max(tat, ?2) + ?3
RETURNING tat - ?3 - ?2 AS wait_us
