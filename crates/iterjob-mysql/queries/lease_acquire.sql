-- `Store::lease_acquire`, first statement: takes the lease when it is free or
-- expired, renews it for its holder. MySQL applies the assignments left to right, so
-- `expires_at` is moved only when the first assignment left `holder` ours. The
-- upsert locks the row; `lease_holder.sql` then reads who holds it.
-- ? name, ? holder, ? ttl (ms)
INSERT INTO iterjob_leases (name, holder, expires_at)
VALUES (?, ?, {now_ms} + ?)
ON DUPLICATE KEY UPDATE
    holder = IF(holder = VALUES(holder) OR expires_at <= {now_ms}, VALUES(holder), holder),
    expires_at = IF(holder = VALUES(holder), VALUES(expires_at), expires_at)
