-- `Store::lease_acquire`: takes the lease when it is free or expired, renews it for
-- its holder; a row comes back only when `holder` holds it afterwards. The upsert
-- locks the row, so of concurrent callers one wins.
-- $1 name, $2 holder, $3 ttl (ms)
INSERT INTO {schema}.leases AS l (name, holder, expires_at)
VALUES ($1, $2, {now_ms} + $3)
ON CONFLICT (name) DO UPDATE
    SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
    WHERE l.holder = EXCLUDED.holder OR l.expires_at <= {now_ms}
RETURNING holder
