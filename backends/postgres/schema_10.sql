-- polyjobs PostgreSQL schema, version 10: set-based hot paths (same signatures and results).
--   * pj_take moves the jobs it takes to active in one UPDATE (it ran one UPDATE per job);
--   * pj_finish ends the plain jobs of its batch (completed or failed, still owned by the
--     caller, in no flow, not removed at once) in one UPDATE; the others go one by one as
--     before;
--   * the ends are counted in the metrics in one upsert per minute (pj_count_many) instead of
--     one pj_count per job.
-- At concurrency 100 a finish of 100 jobs that takes the next 100 spent about 60 % of its time
-- in those per-row statements.

CREATE OR REPLACE FUNCTION pj_take(
    q text, token text, lim integer, now_ double precision, lease_until_ double precision,
    want_next boolean
) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
DECLARE
    r record;
    meta record;
    j jobs;
    started integer;
    taken integer := 0;
    limited boolean := false;
    active_n integer;
    cap_full boolean := false;
BEGIN
    FOR r IN SELECT d.id FROM jobs d WHERE d.queue = q AND d.state = 'delayed'
             AND d.score <= now_ ORDER BY d.score, d.seq FOR UPDATE SKIP LOCKED LOOP
        UPDATE jobs SET state = 'waiting', score = priority, seq = nextval('pj_seq')
        WHERE queue = q AND id = r.id;
    END LOOP;
    IF lim > 0 THEN
        SELECT paused, rate_max, rate_duration, hold_until, concurrency INTO meta
        FROM queues WHERE queue = q;
        IF FOUND THEN
            IF meta.rate_max IS NOT NULL OR meta.concurrency IS NOT NULL THEN
                -- takers of a rate-limited or capped queue queue up on its row: no window
                -- sees more starts, no count more active jobs, than allowed
                SELECT paused, rate_max, rate_duration, hold_until, concurrency INTO meta
                FROM queues WHERE queue = q FOR UPDATE;
            END IF;
            IF meta.concurrency IS NOT NULL AND NOT meta.paused THEN
                SELECT count(*) INTO active_n FROM jobs WHERE queue = q AND state = 'active';
                IF meta.concurrency - active_n < lim THEN
                    lim := greatest(meta.concurrency - active_n, 0);
                    cap_full := lim = 0;
                END IF;
            END IF;
            IF meta.paused OR meta.hold_until > now_ THEN
                lim := 0;
            ELSIF lim > 0 AND meta.rate_max IS NOT NULL THEN
                limited := true;
                DELETE FROM rate_starts WHERE queue = q AND at <= now_ - meta.rate_duration;
                SELECT count(*) INTO started FROM rate_starts WHERE queue = q;
                lim := least(lim, meta.rate_max - started);
            END IF;
        END IF;
    END IF;
    IF lim > 0 THEN
        -- sequence numbers are drawn in fetch order, and the rows come back in that order
        RETURN QUERY
        WITH picked AS MATERIALIZED (
            SELECT w.id, w.score AS old_score, w.seq AS old_seq FROM jobs w
            WHERE w.queue = q AND w.state = 'waiting'
            ORDER BY w.score, w.seq LIMIT lim FOR UPDATE SKIP LOCKED
        ), numbered AS MATERIALIZED (
            SELECT p.id, nextval('pj_seq') AS sq
            FROM (SELECT * FROM picked ORDER BY old_score, old_seq) p
        ), moved AS (
            UPDATE jobs jb SET state = 'active', worker = token, lease_until = lease_until_,
                processed_on = now_, score = now_, seq = nb.sq,
                attempts_started = jb.attempts_started + 1
            FROM numbered nb
            WHERE jb.queue = q AND jb.id = nb.id
            RETURNING jb.*
        )
        SELECT * FROM moved ORDER BY moved.seq;
        GET DIAGNOSTICS taken = ROW_COUNT;
        IF limited AND taken > 0 THEN
            INSERT INTO rate_starts (queue, at) SELECT q, now_ FROM generate_series(1, taken);
        END IF;
    END IF;
    IF taken = 0 AND want_next THEN
        j := NULL;
        j.state := 'next';
        j.run_at := pj_next_look(q, now_);
        IF cap_full THEN  -- a slot frees when any job ends: look again soon
            j.run_at := least(j.run_at, now_ + 0.25);
        END IF;
        RETURN NEXT j;
    END IF;
END $$;

-- pj_count for many ends at once: one upsert of each minute they fall in.
CREATE FUNCTION pj_count_many(
    q text, sts text[], fins double precision[], starts double precision[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    newest double precision;
BEGIN
    IF coalesce(cardinality(sts), 0) = 0 THEN
        RETURN;
    END IF;
    WITH upserted AS (
        INSERT INTO metrics AS t (queue, minute, completed, failed, time_sum)
        SELECT q, c.m, count(*) FILTER (WHERE c.st = 'completed'),
               count(*) FILTER (WHERE c.st = 'failed'),
               sum(greatest(c.fin - coalesce(c.started, c.fin), 0))
        FROM (SELECT floor(u.fin / 60) * 60 AS m, u.st, u.fin, u.started
              FROM unnest(sts, fins, starts) AS u(st, fin, started)) c
        GROUP BY c.m ORDER BY c.m
        ON CONFLICT (queue, minute) DO UPDATE SET completed = t.completed + EXCLUDED.completed,
            failed = t.failed + EXCLUDED.failed, time_sum = t.time_sum + EXCLUDED.time_sum
        RETURNING t.minute, (t.xmax = 0) AS inserted
    )
    SELECT max(u.minute) INTO newest FROM upserted u WHERE u.inserted;
    IF newest IS NOT NULL THEN
        DELETE FROM metrics WHERE queue = q AND minute < newest - 86400;
    END IF;
END $$;

-- pj_finish of version 8 with the plain ends in one UPDATE and the counting in one call.
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
    done boolean[] := '{}';
    later integer[] := '{}';  -- linked jobs to settle after the take
    c_status text[] := '{}';  -- jobs ended completed or failed (pj_count_many)
    c_fin double precision[] := '{}';
    c_started double precision[] := '{}';
    t_state text[] := '{}';  -- retention runs
    t_count integer[] := '{}';
    t_age double precision[] := '{}';
    t_now double precision[] := '{}';
    t integer := 0;
BEGIN
    -- the plain ends: completed or failed, owned by this worker, in no flow, kept for a while
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
          AND jb.queue = q AND jb.id = f.id AND NOT jb.linked
          -- (not `state = 'active'`: the planner would scan that state's index entries, most
          -- of them dead in a churned table, instead of looking each id up)
          AND CASE WHEN jb.state = 'active' THEN jb.worker END = token
        RETURNING f.n, f.st, f.fin, f.kc, f.ka, jb.processed_on
    ), runs AS (
        SELECT e.st, e.kc, e.ka, max(e.fin) AS newest FROM ended e GROUP BY e.st, e.kc, e.ka
    )
    SELECT (SELECT coalesce(array_agg(e.n), '{}') FROM ended e),
           (SELECT coalesce(array_agg(e.st ORDER BY e.n), '{}') FROM ended e),
           (SELECT coalesce(array_agg(e.fin ORDER BY e.n), '{}') FROM ended e),
           (SELECT coalesce(array_agg(e.processed_on ORDER BY e.n), '{}') FROM ended e),
           (SELECT coalesce(array_agg(r.st), '{}') FROM runs r),
           (SELECT coalesce(array_agg(r.kc), '{}') FROM runs r),
           (SELECT coalesce(array_agg(r.ka), '{}') FROM runs r),
           (SELECT coalesce(array_agg(r.newest), '{}') FROM runs r)
    INTO ended_n, c_status, c_fin, c_started, t_state, t_count, t_age, t_now;
    FOREACH k IN ARRAY ended_n LOOP
        done[k] := true;
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
            ELSIF cur.linked THEN
                later := later || i;
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
    FOREACH k IN ARRAY later LOOP
        PERFORM pj_settle(q, ids[k], statuses[k], rvals[k], reasons[k], finished[k]);
    END LOOP;
    IF cardinality(later) > 0 AND taken < fetch_n THEN
        -- a parent released into this queue: this finish may hand it out
        RETURN QUERY SELECT * FROM pj_take(q, token, fetch_n - taken, now_, lease_until_, false);
    END IF;
    FOR k IN 1 .. t LOOP
        PERFORM pj_trim(q, t_state[k], t_count[k], t_age[k], t_now[k]);
    END LOOP;
    PERFORM pj_count_many(q, c_status, c_fin, c_started);
END $$;
