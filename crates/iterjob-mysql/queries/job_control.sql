-- The operator's pending requests of a run, after its fenced write.
-- ? id, ? run_token
SELECT pause_requested, cancel_requested, split_requested
FROM iterjob_jobs
WHERE id = ? AND run_token = ? AND state = 'running'
