-- `Store::job_claim`, first statement of its transaction: the claimable jobs in claim
-- order, of the queues and kinds asked for, locked, skipping rows another claimer has
-- locked (`SKIP LOCKED`: concurrent claims never wait for each other and never take
-- the same job). The claim index (`claim_rank, run_at, id`) is walked in order and
-- stops after `limit` matches. `{queues}` and `{kinds}` are `?` lists.
-- ? queues…, ? kinds…, ? limit
SELECT id, {now_ms} AS now_ms
FROM iterjob_jobs
WHERE claim_rank IS NOT NULL
  AND run_at <= {now_ms}
  AND queue IN ({queues})
  AND kind IN ({kinds})
ORDER BY claim_rank, run_at, id
LIMIT ?
FOR UPDATE SKIP LOCKED
