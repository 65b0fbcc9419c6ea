-- polyjobs PostgreSQL schema, version 15: the lookups of a group's jobs go through an index
-- keyed by queue and group together.
--
-- With `(queue, grp, state, ...)` as the group index, a take's lookup of a group's waiting
-- jobs (`queue = q AND grp = g AND state = 'waiting'`) could also be planned on
-- `jobs_by_state` (`queue, state, ...`), filtering the group: when the table's statistics
-- were gathered while few jobs waited (a queue whose backlog had just arrived), the planner
-- took both as equally cheap and picked that one, and each take walked the whole backlog once
-- per ready group (measured: 9,000 rows skipped per group, 50-100 ms a take, instead of
-- milliseconds). The lookups now compare `queue || ' ' || grp` (a group has no space) with
-- `queue` nowhere else in the condition, which `jobs_by_state` cannot serve.

DROP INDEX jobs_by_group;
CREATE INDEX jobs_by_group_key ON jobs ((queue || ' ' || grp), state, score, seq)
WHERE grp IS NOT NULL;

CREATE OR REPLACE FUNCTION pj_group_next_look(q text, now_ double precision) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    meta record;
    g record;
    look double precision;
    cnt integer;
    frees double precision;
BEGIN
    SELECT group_concurrency, group_rate_max, group_rate_duration INTO meta
    FROM queues WHERE queue = q;
    FOR g IN SELECT jg.grp, jg.held_until FROM job_groups jg
             WHERE jg.queue = q AND jg.grp <> '' AND EXISTS (
                 SELECT 1 FROM jobs w WHERE w.grp IS NOT NULL
                 AND (w.queue || ' ' || w.grp) = q || ' ' || jg.grp AND w.state = 'waiting')
             LOOP
        IF g.held_until > now_ THEN
            look := least(look, g.held_until);
            CONTINUE;
        END IF;
        IF meta.group_concurrency IS NOT NULL THEN
            SELECT count(*) INTO cnt FROM jobs a
            WHERE a.grp IS NOT NULL AND (a.queue || ' ' || a.grp) = q || ' ' || g.grp
            AND a.state = 'active';
            IF cnt >= meta.group_concurrency THEN
                look := least(look, now_ + 0.25);
                CONTINUE;
            END IF;
        END IF;
        IF meta.group_rate_max IS NOT NULL THEN
            SELECT count(*) INTO cnt FROM group_starts s
            WHERE s.queue = q AND s.grp = g.grp AND s.at > now_ - meta.group_rate_duration;
            IF cnt >= meta.group_rate_max THEN
                -- one may start once all but max - 1 of these starts have left the window
                SELECT s.at + meta.group_rate_duration INTO frees FROM group_starts s
                WHERE s.queue = q AND s.grp = g.grp AND s.at > now_ - meta.group_rate_duration
                ORDER BY s.at OFFSET cnt - meta.group_rate_max LIMIT 1;
                look := least(look, frees);
            END IF;
        END IF;
    END LOOP;
    RETURN look;
END $$;

CREATE OR REPLACE FUNCTION pj_take_groups(
    q text, token text, lim integer, now_ double precision, lease_until_ double precision
) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
DECLARE
    meta record;
    grps text[];
    cnts integer[];
    ks integer[];
    left_n integer := lim;
    rnd integer := 0;
    more boolean := true;
    i integer;
    p_ids text[];
    p_grps text[];
    p_sqs bigint[];
BEGIN
    SELECT group_concurrency, group_rate_max, group_rate_duration INTO meta
    FROM queues WHERE queue = q;
    IF meta.group_rate_max IS NOT NULL THEN
        DELETE FROM group_starts WHERE queue = q AND at <= now_ - meta.group_rate_duration;
    END IF;
    -- the ready groups in ring order, each with how many of its jobs it could start now
    WITH ready AS MATERIALIZED (
        SELECT g.grp, g.served,
               least(lim,
                     CASE WHEN g.grp = '' OR meta.group_concurrency IS NULL THEN lim
                          ELSE meta.group_concurrency - (
                              SELECT count(*) FROM jobs a WHERE a.grp IS NOT NULL
                              AND (a.queue || ' ' || a.grp) = q || ' ' || g.grp
                              AND a.state = 'active')::integer END,
                     CASE WHEN g.grp = '' OR meta.group_rate_max IS NULL THEN lim
                          ELSE meta.group_rate_max - (
                              SELECT count(*) FROM group_starts s WHERE s.queue = q
                              AND s.grp = g.grp)::integer END) AS allowed
        FROM job_groups g
        WHERE g.queue = q AND (g.grp = '' OR g.held_until <= now_)
    ), sized AS MATERIALIZED (
        SELECT c.grp, c.served, (SELECT count(*) FROM (
                   SELECT 1 FROM jobs w WHERE w.grp IS NOT NULL
                   AND (w.queue || ' ' || w.grp) = q || ' ' || c.grp
                   AND w.state = 'waiting' LIMIT c.allowed) x)::integer AS n
        FROM ready c
        WHERE c.allowed > 0
    )
    SELECT coalesce(array_agg(r.grp ORDER BY r.served, r.grp COLLATE "C"), '{}'),
           coalesce(array_agg(r.n ORDER BY r.served, r.grp COLLATE "C"), '{}')
    INTO grps, cnts
    FROM sized r
    WHERE r.n > 0;
    IF cardinality(grps) = 0 THEN
        RETURN;
    END IF;
    -- turns: round after round, each group with a job left takes one, until lim are taken
    ks := array_fill(0, ARRAY[cardinality(grps)]);
    WHILE left_n > 0 AND more LOOP
        rnd := rnd + 1;
        more := false;
        FOR i IN 1 .. cardinality(grps) LOOP
            EXIT WHEN left_n = 0;
            IF cnts[i] >= rnd THEN
                ks[i] := rnd;
                left_n := left_n - 1;
                more := true;
            END IF;
        END LOOP;
    END LOOP;
    WITH picked AS MATERIALIZED (
        SELECT r.pos, r.grp, x.id, x.score, x.seq
        FROM unnest(grps, ks) WITH ORDINALITY AS r(grp, k, pos)
        CROSS JOIN LATERAL (
            SELECT w.id, w.score, w.seq FROM jobs w
            WHERE w.grp IS NOT NULL AND (w.queue || ' ' || w.grp) = q || ' ' || r.grp
              AND w.state = 'waiting'
            ORDER BY w.score, w.seq LIMIT r.k FOR UPDATE SKIP LOCKED
        ) x
        WHERE r.k > 0
    ), turns AS MATERIALIZED (
        SELECT p.id, p.grp, p.pos,
               row_number() OVER (PARTITION BY p.pos ORDER BY p.score, p.seq) AS rn
        FROM picked p
    ), numbered AS MATERIALIZED (
        -- sequence numbers are drawn in fetch order
        SELECT t.id, t.grp, nextval('pj_seq') AS sq
        FROM (SELECT * FROM turns ORDER BY rn, pos) t
    )
    SELECT array_agg(nb.id ORDER BY nb.sq), array_agg(nb.grp ORDER BY nb.sq),
           array_agg(nb.sq ORDER BY nb.sq)
    INTO p_ids, p_grps, p_sqs
    FROM numbered nb;
    IF p_ids IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH moved AS (
        UPDATE jobs jb SET state = 'active', worker = token, lease_until = lease_until_,
            processed_on = now_, score = now_, seq = u.sq,
            attempts_started = jb.attempts_started + 1
        FROM unnest(p_ids, p_sqs) AS u(id, sq)
        WHERE jb.queue = q AND jb.id = u.id
        RETURNING jb.*
    )
    SELECT * FROM moved ORDER BY moved.seq;
    UPDATE job_groups g SET served = s.last
    FROM (SELECT u.grp, max(u.sq) AS last FROM unnest(p_grps, p_sqs) AS u(grp, sq)
          GROUP BY u.grp) s
    WHERE g.queue = q AND g.grp = s.grp;
    IF meta.group_rate_max IS NOT NULL THEN
        INSERT INTO group_starts (queue, grp, at)
        SELECT q, u.grp, now_ FROM unnest(p_grps) AS u(grp) WHERE u.grp <> '';
    END IF;
    -- every so many turns, forget the groups none of whose jobs is left (one per wallet would
    -- otherwise make every ring longer for ever); skipped while an add of the queue is in
    -- flight (it may be adding a job to such a group)
    IF p_sqs[cardinality(p_sqs)] / 256 > (p_sqs[1] - 1) / 256 THEN
        IF pg_try_advisory_xact_lock(pj_group_lock(q)) THEN
            DELETE FROM job_groups g WHERE g.queue = q AND g.grp <> '' AND g.held_until <= now_
            AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.grp IS NOT NULL
                            AND (j.queue || ' ' || j.grp) = q || ' ' || g.grp);
        END IF;
    END IF;
END $$;

-- pj_take of version 14 with the look for waiting jobs without a group on that index.
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
    grouped boolean := false;
BEGIN
    FOR r IN SELECT d.id FROM jobs d WHERE d.queue = q AND d.state = 'delayed'
             AND d.score <= now_ ORDER BY d.score, d.seq FOR UPDATE SKIP LOCKED LOOP
        UPDATE jobs SET state = 'waiting', score = priority, seq = nextval('pj_seq')
        WHERE queue = q AND id = r.id;
    END LOOP;
    IF lim > 0 THEN
        SELECT paused, rate_max, rate_duration, hold_until, concurrency, has_groups INTO meta
        FROM queues WHERE queue = q;
        IF FOUND THEN
            IF meta.rate_max IS NOT NULL OR meta.concurrency IS NOT NULL OR meta.has_groups THEN
                -- takers of a rate-limited, capped or grouped queue queue up on its row: no
                -- window sees more starts, no count more active jobs, than allowed, and the
                -- groups' turns go round in one order
                SELECT paused, rate_max, rate_duration, hold_until, concurrency, has_groups
                INTO meta FROM queues WHERE queue = q FOR UPDATE;
                grouped := meta.has_groups;
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
    IF lim > 0 AND grouped THEN
        RETURN QUERY SELECT * FROM pj_take_groups(q, token, lim, now_, lease_until_);
        GET DIAGNOSTICS taken = ROW_COUNT;
        IF limited AND taken > 0 THEN
            INSERT INTO rate_starts (queue, at) SELECT q, now_ FROM generate_series(1, taken);
        END IF;
    ELSIF lim > 0 THEN
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
        IF grouped AND lim > 0 THEN
            -- the queue lets jobs start: what holds them back is their groups (or other
            -- takers holding the ready ones right now)
            j.run_at := least(
                (SELECT min(d.score) FROM jobs d WHERE d.queue = q AND d.state = 'delayed'),
                pj_group_next_look(q, now_));
            IF j.run_at IS NULL AND EXISTS (SELECT 1 FROM job_groups g WHERE g.queue = q
               AND g.grp = '' AND EXISTS (SELECT 1 FROM jobs w WHERE w.grp IS NOT NULL
               AND (w.queue || ' ' || w.grp) = q || ' ' AND w.state = 'waiting')) THEN
                j.run_at := now_ + 0.05;
            END IF;
        ELSE
            j.run_at := pj_next_look(q, now_);
        END IF;
        IF cap_full THEN  -- a slot frees when any job ends: look again soon
            j.run_at := least(j.run_at, now_ + 0.25);
        END IF;
        RETURN NEXT j;
    END IF;
END $$;
