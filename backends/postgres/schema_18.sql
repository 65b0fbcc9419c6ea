-- polyjobs PostgreSQL schema, version 18: a finish settles the flow children of its batch
-- set-based.
--
-- pj_finish ends a batch's completed and failed jobs that stay for a while in its one UPDATE
-- whether they are in a flow (or hold a window) or not; before, each linked one was locked,
-- updated and settled on its own. After the take, pj_settle_many settles them together:
-- the windows they hold are looked up in one query, each failed child applies its failure
-- policy (pj_child_failed, as before), the pending edges of every completed child are marked
-- processed in one UPDATE, and then each parent they lead to is looked at once, in (queue, id)
-- order: locked, and released when nothing is pending (pj_release_if_done), however many of
-- its children the batch held. Before, each child locked and checked its parents in turn.
-- Retried jobs, jobs removed at once and lost jobs go one by one as before.

-- What the ends of linked jobs (ids, in the batch's order) do to their parents and windows.
CREATE FUNCTION pj_settle_many(
    q text, ids text[], statuses text[], rvals text[], reasons text[], fins double precision[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k integer;
    pqs text[];
    pids text[];
    holders text[];
BEGIN
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

CREATE OR REPLACE FUNCTION pj_finish(
    q text, token text, now_ double precision, lease_until_ double precision, fetch_n integer,
    channel text, ids text[], statuses text[], attempts integer[],
    finished double precision[], rvals text[], reasons text[], stacks text[],
    retry_ats double precision[], keep_counts integer[], keep_ages double precision[]
) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    k integer;
    cur record;
    j jobs;
    woke boolean := false;
    at_once boolean;
    taken integer := 0;
    ended_n integer[];  -- ended by the set-based UPDATE (their positions)
    linked_n integer[];  -- those of them in a flow or holding a window
    done boolean[] := '{}';
    s_ids text[] := '{}';  -- linked jobs to settle after the take (pj_settle_many)
    s_status text[] := '{}';
    s_rvals text[] := '{}';
    s_reasons text[] := '{}';
    s_fin double precision[] := '{}';
    c_status text[] := '{}';  -- jobs ended completed or failed (pj_count_many)
    c_fin double precision[] := '{}';
    c_started double precision[] := '{}';
    t_state text[] := '{}';  -- retention runs
    t_count integer[] := '{}';
    t_age double precision[] := '{}';
    t_now double precision[] := '{}';
    t integer := 0;
BEGIN
    -- the ends: completed or failed, owned by this worker, kept for a while (a linked job's
    -- parents and window are settled after the take, all at once)
    WITH ended AS (
        UPDATE jobs jb SET state = f.st, score = f.fin, seq = nextval('pj_seq'),
            finished_on = f.fin, attempts_made = f.att,
            returnvalue = CASE WHEN f.st = 'completed' THEN f.rv ELSE jb.returnvalue END,
            failed_reason = CASE WHEN f.st = 'failed' THEN f.rs ELSE jb.failed_reason END,
            stacktrace = CASE WHEN f.st = 'failed' THEN f.sk ELSE jb.stacktrace END,
            worker = NULL, lease_until = NULL
        FROM unnest(ids, statuses, attempts, finished, rvals, reasons, stacks, keep_counts,
                    keep_ages) WITH ORDINALITY AS f(id, st, att, fin, rv, rs, sk, kc, ka, n)
        WHERE f.st IN ('completed', 'failed') AND NOT coalesce(f.kc = 0 OR f.ka = 0, false)
          AND jb.queue = q AND jb.id = f.id
          -- (not `state = 'active'`: the planner would scan that state's index entries, most
          -- of them dead in a churned table, instead of looking each id up)
          AND CASE WHEN jb.state = 'active' THEN jb.worker END = token
        RETURNING f.n, f.st, f.fin, f.kc, f.ka, jb.processed_on, jb.linked
    ), runs AS (
        SELECT e.st, e.kc, e.ka, max(e.fin) AS newest FROM ended e GROUP BY e.st, e.kc, e.ka
    )
    SELECT (SELECT coalesce(array_agg(e.n), '{}') FROM ended e),
           (SELECT coalesce(array_agg(e.n ORDER BY e.n), '{}') FROM ended e WHERE e.linked),
           (SELECT coalesce(array_agg(e.st ORDER BY e.n), '{}') FROM ended e),
           (SELECT coalesce(array_agg(e.fin ORDER BY e.n), '{}') FROM ended e),
           (SELECT coalesce(array_agg(e.processed_on ORDER BY e.n), '{}') FROM ended e),
           (SELECT coalesce(array_agg(r.st), '{}') FROM runs r),
           (SELECT coalesce(array_agg(r.kc), '{}') FROM runs r),
           (SELECT coalesce(array_agg(r.ka), '{}') FROM runs r),
           (SELECT coalesce(array_agg(r.newest), '{}') FROM runs r)
    INTO ended_n, linked_n, c_status, c_fin, c_started, t_state, t_count, t_age, t_now;
    FOREACH k IN ARRAY ended_n LOOP
        done[k] := true;
    END LOOP;
    FOREACH k IN ARRAY linked_n LOOP
        s_ids := s_ids || ids[k];
        s_status := s_status || statuses[k];
        s_rvals := s_rvals || rvals[k];
        s_reasons := s_reasons || reasons[k];
        s_fin := s_fin || finished[k];
    END LOOP;
    t := cardinality(t_state);
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        IF done[i] THEN
            CONTINUE;
        END IF;
        SELECT state, worker, priority, linked, processed_on INTO cur FROM jobs
        WHERE queue = q AND id = ids[i] FOR UPDATE;
        IF NOT FOUND OR cur.state <> 'active' OR cur.worker IS DISTINCT FROM token THEN
            j := NULL;
            j.id := ids[i];
            j.state := 'lost';
            RETURN NEXT j;
            CONTINUE;
        END IF;
        at_once := coalesce(keep_counts[i] = 0 OR keep_ages[i] = 0, false);
        IF statuses[i] <> 'retry' THEN
            c_status := c_status || statuses[i];
            c_fin := c_fin || finished[i];
            c_started := c_started || cur.processed_on;
        END IF;
        IF statuses[i] = 'retry' THEN
            UPDATE jobs SET
                state = CASE WHEN retry_ats[i] > finished[i] THEN 'delayed' ELSE 'waiting' END,
                score = CASE WHEN retry_ats[i] > finished[i] THEN retry_ats[i]
                             ELSE cur.priority END,
                seq = nextval('pj_seq'), run_at = retry_ats[i],
                attempts_made = attempts[i], failed_reason = reasons[i],
                stacktrace = stacks[i], worker = NULL, lease_until = NULL
            WHERE queue = q AND id = ids[i];
            woke := true;
        ELSIF at_once AND NOT cur.linked THEN
            DELETE FROM jobs WHERE queue = q AND id = ids[i];
        ELSE
            UPDATE jobs SET state = statuses[i], score = finished[i], seq = nextval('pj_seq'),
                finished_on = finished[i], attempts_made = attempts[i],
                returnvalue = CASE WHEN statuses[i] = 'completed' THEN rvals[i]
                                   ELSE returnvalue END,
                failed_reason = CASE WHEN statuses[i] = 'failed' THEN reasons[i]
                                     ELSE failed_reason END,
                stacktrace = CASE WHEN statuses[i] = 'failed' THEN stacks[i]
                                  ELSE stacktrace END,
                worker = NULL, lease_until = NULL
            WHERE queue = q AND id = ids[i];
            IF cur.linked AND at_once THEN
                PERFORM pj_settle(q, ids[i], statuses[i], rvals[i], reasons[i], finished[i]);
                DELETE FROM jobs WHERE queue = q AND id = ids[i];
            END IF;
            IF NOT at_once AND (t = 0 OR (t_state[t], t_count[t], t_age[t]) IS DISTINCT FROM
                                          (statuses[i], keep_counts[i], keep_ages[i])) THEN
                t := t + 1;
                t_state[t] := statuses[i];
                t_count[t] := keep_counts[i];
                t_age[t] := keep_ages[i];
            END IF;
            IF NOT at_once THEN
                t_now[t] := greatest(t_now[t], finished[i]);
            END IF;
        END IF;
    END LOOP;
    IF woke THEN
        PERFORM pg_notify(channel, q);
    END IF;
    IF fetch_n > 0 THEN
        RETURN QUERY SELECT * FROM pj_take(q, token, fetch_n, now_, lease_until_, false);
        GET DIAGNOSTICS taken = ROW_COUNT;
    END IF;
    IF cardinality(s_ids) > 0 THEN
        PERFORM pj_settle_many(q, s_ids, s_status, s_rvals, s_reasons, s_fin);
    END IF;
    IF cardinality(s_ids) > 0 AND taken < fetch_n THEN
        -- a parent released into this queue: this finish may hand it out
        RETURN QUERY SELECT * FROM pj_take(q, token, fetch_n - taken, now_, lease_until_, false);
    END IF;
    FOR k IN 1 .. t LOOP
        PERFORM pj_trim(q, t_state[k], t_count[k], t_age[k], t_now[k]);
    END LOOP;
    PERFORM pj_count_many(q, c_status, c_fin, c_started);
END $$;
