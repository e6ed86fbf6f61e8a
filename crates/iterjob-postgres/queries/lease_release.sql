-- `Store::lease_release`
-- $1 name, $2 holder
DELETE FROM {schema}.leases WHERE name = $1 AND holder = $2
