-- Jobs by id, in id order. `{ids}` is a `?` list.
SELECT * FROM iterjob_jobs WHERE id IN ({ids}) ORDER BY id
