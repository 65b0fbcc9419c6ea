-- polyjobs PostgreSQL schema, version 12: pj_fetch, the worker's fetch, commits without
-- waiting for the WAL flush.
--
-- A fetch is pj_take in a transaction of its own; its commit used to wait for the disk like
-- an add's or a finish's, so a job added to an idle worker waited for two flushes (the add's
-- and the take's) before it ran. What a take writes can be lost only by a crash of the server
-- within its WAL writer's delay (0.6 s at most with the defaults), and then the jobs it took
-- are simply waiting again: they run again, as after an expired lease, which the worker
-- already handles (its finish reports them lost). So pj_fetch turns synchronous_commit off
-- for its own transaction only. Adds and finishes still wait for the flush, and a finish's
-- flush makes every earlier take durable too; pj_finish's own take is not affected.

CREATE FUNCTION pj_fetch(
    q text, token text, lim integer, now_ double precision, lease_until_ double precision,
    want_next boolean
) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY SELECT * FROM pj_take(q, token, lim, now_, lease_until_, want_next);
END $$;
