-- polyjobs PostgreSQL schema, version 19: pj_settle_many locks the parents of its children
-- first, in (queue, id) order.
--
-- Version 18 applied the failed children's policies (locking the parents they fail or release,
-- in the batch's order) before it locked the completed children's parents in (queue, id)
-- order. Two finishes at once, one failing a child of P1 and completing one of P2 and the other
-- the reverse, each held one parent and waited for the other: PostgreSQL broke the deadlock
-- after deadlock_timeout (1 s by default) and the backend ran the aborted finish again (at most
-- three times). Every parent still waiting for a child of the batch is now locked up front in
-- that one order, so such finishes queue up on the first parent they share instead. These are
-- the parents version 18 locked too (a failed child without a policy locks none); only the
-- order changes.

CREATE OR REPLACE FUNCTION pj_settle_many(
    q text, ids text[], statuses text[], rvals text[], reasons text[], fins double precision[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k integer;
    pqs text[];
    pids text[];
    holders text[];
BEGIN
    -- the parents waiting for these children that their ends decide about (a completed
    -- child, a failed one with a policy), locked first and in (queue, id) order
    PERFORM 1 FROM jobs j
    WHERE j.state = 'waiting-children'
      AND (j.queue, j.id) IN (
          SELECT d.queue, d.id
          FROM unnest(ids, statuses) AS c(id, st)
          JOIN job_deps d ON d.child_queue = q AND d.child_id = c.id AND d.status = 'pending'
          WHERE c.st = 'completed'
             OR EXISTS (SELECT 1 FROM jobs cj
                        WHERE cj.queue = q AND cj.id = c.id
                          AND coalesce((cj.opts::jsonb) ->> 'failure_policy', 'wait') <> 'wait'))
    ORDER BY j.queue, j.id
    FOR UPDATE OF j;
    SELECT array_agg(d.job_id) INTO holders FROM dedup d
    WHERE d.queue = q AND d.job_id = ANY (ids);
    FOR k IN 1 .. cardinality(ids) LOOP
        IF statuses[k] <> 'completed' THEN
            PERFORM pj_child_failed(q, ids[k], coalesce(reasons[k], ''), NULL, NULL);
        END IF;
    END LOOP;
    WITH done AS (
        UPDATE job_deps d SET status = 'processed', value = coalesce(c.rv, 'null')
        FROM unnest(ids, statuses, rvals) AS c(id, st, rv)
        WHERE c.st = 'completed' AND d.child_queue = q AND d.child_id = c.id
          AND d.status = 'pending'
        RETURNING d.queue, d.id
    )
    SELECT array_agg(p.queue ORDER BY p.queue, p.id), array_agg(p.id ORDER BY p.queue, p.id)
    INTO pqs, pids FROM (SELECT DISTINCT done.queue, done.id FROM done) p;
    FOR k IN 1 .. coalesce(cardinality(pqs), 0) LOOP
        PERFORM pj_release_if_done(pqs[k], pids[k]);
    END LOOP;
    IF holders IS NOT NULL THEN
        FOR k IN 1 .. cardinality(ids) LOOP
            IF ids[k] = ANY (holders) THEN
                PERFORM pj_window_ends(q, ids[k], fins[k]);
            END IF;
        END LOOP;
    END IF;
END $$;
