-- `Store::job_claim`: one statement. `picked` walks the partial index of claimable
-- jobs in claim order, filtering queue, kind and run_at, and locks up to `limit`
-- rows, skipping rows another claimer has locked (`SKIP LOCKED`: concurrent claims
-- never wait for each other and never return the same job); rows changed by a
-- committed concurrent claim are re-checked and dropped. Each claimed job gets its
-- own fresh random token from $5 (drawn by the caller; its length is the limit).
-- The claim commits without waiting for its WAL to reach the disk
-- (`synchronous_commit` off for this statement's own transaction only; it always runs
-- alone on a pooled connection): a claim is only a lease, so a claim lost in a
-- database crash is a run that never began, as far as the database knows. The run's
-- first durable write (heartbeat, checkpoint, release: synchronous commits) flushes
-- the WAL up to and including the claim, and a run whose claim was lost is fenced out
-- by its token at that write, like a run whose lease expired. Commits of claims no
-- longer queue behind disk flushes, which with short jobs were most of a claim's time.
-- `{claim_limit}` is a literal: the number of tokens, or for bigger claims the next
-- multiple of 16 (up to 256) or power of two (the rows past the tokens are locked for
-- the statement, not claimed).
-- With the limit known when the statement is prepared, PostgreSQL plans it once
-- (a generic plan: a few rows off the claimable index, each updated by primary key)
-- instead of planning it again for every claim, which cost as much as running it;
-- with `LIMIT $n` it must guess the row count and its generic plan hashes the table.
-- The queues asked for less the paused ones (`queue_pauses`) are worked out once per
-- claim (an InitPlan over a table of a few rows); the scan is the same as without.
-- The claimed rows are updated by primary key through `id = ANY(array)`, not by a
-- join with `picked`: with a join, the plan depends on the estimated row count (the
-- literal `LIMIT`), and on a table of a few tens of thousands of jobs a `LIMIT` of
-- 256 or more made the planner hash the whole jobs table for every claim (a
-- sequential scan: 9 ms for a claim of 256 on 20,000 jobs, against 3.7 ms this way;
-- claims that big come from a worker of short jobs with 16 slots or more). The array
-- keeps the plan one index scan at every size; each row's token is the one at its
-- position in claim order.
-- $1 worker_id, $2 lease (ms), $3 queues, $4 kinds, $5 run tokens
WITH now AS MATERIALIZED (
    SELECT {now_ms} AS ms, set_config('synchronous_commit', 'off', true) AS async_commit
),
picked AS (
    SELECT j.id, j.priority, j.run_at
    FROM {schema}.jobs AS j
    WHERE j.state IN ('queued', 'retrying')
      AND j.run_at <= (SELECT ms FROM now)
      AND j.queue = ANY(ARRAY(
          SELECT q FROM unnest($3::text[]) AS q
          EXCEPT SELECT queue FROM {schema}.queue_pauses))
      AND j.kind = ANY($4::text[])
    ORDER BY j.priority DESC, j.run_at, j.id
    LIMIT {claim_limit}
    FOR UPDATE SKIP LOCKED
),
chosen AS MATERIALIZED (
    SELECT ARRAY(
        SELECT id FROM picked
        ORDER BY priority DESC, run_at, id
        LIMIT cardinality($5::bigint[])) AS ids
)
UPDATE {schema}.jobs AS j
SET state = 'running',
    run_token = ($5::bigint[])[array_position((SELECT ids FROM chosen), j.id)],
    worker_id = $1,
    lease_expires_at = (SELECT ms FROM now) + $2,
    runs = j.runs + 1,
    started_at = COALESCE(j.started_at, (SELECT ms FROM now))
WHERE j.id = ANY((SELECT ids FROM chosen)::bigint[])
RETURNING j.*
