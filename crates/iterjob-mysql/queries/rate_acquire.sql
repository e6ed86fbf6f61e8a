-- `Store::rate_acquire`: one GCRA reservation in one statement, on the database
-- server's clock (NOW(6) is the same throughout a statement). The upsert locks the
-- bucket's row, so concurrent reservations from any number of workers queue up and
-- never overlap:
--   start = max(tat, now); tat = start + cost; wait = start - now
-- The wait is handed back through LAST_INSERT_ID(expr), which the next statement on
-- the same connection reads (`SELECT LAST_INSERT_ID()`).
-- ? key, ? cost (µs: units × interval) (twice)
INSERT INTO iterjob_rate_limits (`key`, tat)
VALUES (?, {now_us} + ? + 0 * LAST_INSERT_ID(0))
ON DUPLICATE KEY UPDATE
    tat = GREATEST(tat, {now_us}) + ? + 0 * LAST_INSERT_ID(GREATEST(tat, {now_us}) - {now_us})
