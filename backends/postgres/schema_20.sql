-- polyjobs PostgreSQL schema, version 20: pj_settle_many locks the parents up front only when
-- a child of the batch failed, each on its key.
--
-- Version 19 locked the parents a batch decides about before applying the failure policies,
-- in one query joining the batch with job_deps and jobs, and did it for every batch. Holding
-- the parent from that query to the commit made the wide flow (10,000 children of one parent,
-- all completed) run several times slower: every finish queues on that parent. A batch of
-- completed children alone changes nothing before it locks its parents in (queue, id) order
-- (only its children's own edges), so it cannot deadlock with another finish and skips the
-- lock up front, as in version 18. With a failed child the parents are found by their
-- children's index and locked one by one on their keys, in (queue, id) order.

CREATE OR REPLACE FUNCTION pj_settle_many(
    q text, ids text[], statuses text[], rvals text[], reasons text[], fins double precision[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k integer;
    pqs text[];
    pids text[];
    holders text[];
    pq text;
    pid text;
BEGIN
    -- when a child failed: the parents waiting for the children whose ends decide about them
    -- (completed, or failed with a policy), locked first, in (queue, id) order, one by one on
    -- their keys as pj_release_if_done locks them (without a failed child the parents are
    -- locked in that order below, after the edges, and nothing else locks them first)
    IF 'failed' = ANY (statuses) THEN
        FOR pq, pid IN
            SELECT DISTINCT d.queue, d.id FROM job_deps d
            WHERE d.child_queue = q AND d.status = 'pending'
              AND d.child_id = ANY (ARRAY(
                  SELECT c.id FROM unnest(ids, statuses) AS c(id, st)
                  WHERE c.st = 'completed' OR EXISTS (
                      SELECT 1 FROM jobs cj
                      WHERE cj.queue = q AND cj.id = c.id
                        AND coalesce((cj.opts::jsonb) ->> 'failure_policy', 'wait') <> 'wait')))
            ORDER BY 1, 2
        LOOP
            PERFORM 1 FROM jobs
            WHERE queue = pq AND id = pid AND state = 'waiting-children' FOR UPDATE;
        END LOOP;
    END IF;
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
