-- `Store::lease_release`
-- ?1 name, ?2 holder
DELETE FROM iterjob_leases WHERE name = ?1 AND holder = ?2
