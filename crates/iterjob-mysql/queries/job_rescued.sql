-- What the rescue made of its jobs. `{ids}` is a `?` list.
SELECT id, state, last_error FROM iterjob_jobs WHERE id IN ({ids}) ORDER BY id
