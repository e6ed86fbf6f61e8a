-- `Store::job_count_by_state`.
SELECT state, COUNT(*) AS n FROM iterjob_jobs GROUP BY state
