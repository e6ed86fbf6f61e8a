-- `Store::job_count_by_state` (states without jobs are filled in by the caller).
SELECT state, COUNT(*) AS n FROM {schema}.jobs GROUP BY state
