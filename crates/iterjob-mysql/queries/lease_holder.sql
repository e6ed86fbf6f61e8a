-- Who holds a lease (after `lease_acquire.sql`, in its transaction).
-- ? name
SELECT holder FROM iterjob_leases WHERE name = ?
