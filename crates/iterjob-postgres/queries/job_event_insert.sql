-- History entries for the jobs in $1, copying each one's state, cursor and items
-- from its row as the same transaction just left it (migrations/0002_job_events.sql).
-- A rescue that failed the job records the job's new last_error.
-- $1 job ids, $2 event, $3 reason (or NULL), $4 error (or NULL)
INSERT INTO {schema}.job_events (job_id, at, event, state, reason, cursor, items_done, error)
SELECT j.id, {now_ms}, $2, j.state, $3, j.cursor, j.items_done,
       COALESCE($4, CASE WHEN $2 = 'rescued' AND j.state = 'failed' THEN j.last_error END)
FROM {schema}.jobs AS j
WHERE j.id = ANY($1)
