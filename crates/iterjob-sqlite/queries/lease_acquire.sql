-- `Store::lease_acquire`: takes the lease when it is free or expired, renews it for
-- its holder; a row comes back only when `holder` holds it afterwards.
-- ?1 name, ?2 holder, ?3 now, ?4 expires_at
INSERT INTO iterjob_leases (name, holder, expires_at)
VALUES (?1, ?2, ?4)
ON CONFLICT (name) DO UPDATE
    SET holder = excluded.holder, expires_at = excluded.expires_at
    WHERE iterjob_leases.holder = excluded.holder OR iterjob_leases.expires_at <= ?3
RETURNING holder
