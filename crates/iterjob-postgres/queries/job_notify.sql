-- Announces claimable jobs to other processes (`LISTEN`ing stores) from inside the
-- transaction that made them claimable: PostgreSQL delivers the notification at
-- commit, and never for a rolled-back transaction. Identical payloads within one
-- transaction are delivered once, so a batch costs one notification per queue.
-- $1 channel, $2 queues
SELECT pg_notify($1, json_build_object('iterjob', 1, 'event', 'available', 'queue', q)::text)
FROM unnest($2::text[]) AS q
