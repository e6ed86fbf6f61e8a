-- `Store::job_count_top_level_by_state`, second read: the partitions of every split
-- parent stored `running`, by parent and state (the state such a parent shows
-- follows them). Few rows: one per parent and state.
SELECT c.parent_id, c.state, COUNT(*) AS n
FROM {schema}.jobs AS c
WHERE c.parent_id IN (SELECT p.id FROM {schema}.jobs AS p
                      WHERE p.state = 'running' AND p.partitions IS NOT NULL)
GROUP BY c.parent_id, c.state
