-- `Store::job_request_split`, second statement.
-- ? id
UPDATE iterjob_jobs SET split_requested = TRUE WHERE id = ?
