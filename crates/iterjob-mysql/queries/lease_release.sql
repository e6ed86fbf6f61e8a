-- `Store::lease_release`
-- ? name, ? holder
DELETE FROM iterjob_leases WHERE name = ? AND holder = ?
