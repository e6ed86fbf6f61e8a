-- Draws ids for a run of `Store::job_insert_many` jobs from the table's sequence
-- (sorted by the caller, so ids ascend with the input).
-- $1 how many
SELECT nextval(pg_get_serial_sequence('{schema}.jobs', 'id')) AS id
FROM generate_series(1, $1::integer)
