-- polyjobs PostgreSQL schema, version 7: a faster pj_add_flow (same signature and results).
--   * a flow's new jobs are inserted by one set-based INSERT instead of one pj_insert_job call
--     per node; a node whose insert did not take (an automatic id that another node of the call
--     names, or an id another transaction added meanwhile) goes through pj_insert_job as before;
--   * no per-row subscript of a text array inside a query (PostgreSQL walks a flat text array
--     to its i-th element, so N rows cost N^2: 0.4 s per such array for 10,000 nodes): the
--     arrays are unnested with their ordinality and joined instead.

CREATE OR REPLACE FUNCTION pj_add_flow(
    now_ double precision, queues_ text[], ids text[], refs boolean[], names text[],
    datas text[], optss text[], stamps double precision[], run_ats double precision[],
    prios integer[], lifos boolean[], linkeds boolean[], kid_starts integer[],
    kid_counts integer[], kids integer[]
) RETURNS TABLE (out_id text, out_added boolean) LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(cardinality(queues_), 0);
    i integer;
    k integer;
    there boolean[] := '{}';
    made text[] := '{}';
    added boolean[] := '{}';
    got text[];
    ns bigint[];
    nid text;
    cqs text[];
    cids text[];
BEGIN
    FOR i IN 1 .. n LOOP
        there[i] := false;
        added[i] := false;
        IF ids[i] IS NOT NULL THEN
            PERFORM 1 FROM jobs WHERE queue = queues_[i] AND id = ids[i] FOR SHARE;
            there[i] := FOUND;
        END IF;
        IF refs[i] AND NOT there[i] THEN
            RAISE EXCEPTION USING ERRCODE = 'PJ400',
                MESSAGE = format('job %s:%s of the flow does not exist', queues_[i], ids[i]);
        END IF;
        IF there[i] AND kid_counts[i] > 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'PJ400', MESSAGE = format(
                'job %s:%s already exists: a flow cannot give it children', queues_[i], ids[i]);
        END IF;
        IF there[i] THEN
            made[i] := ids[i];
        END IF;
    END LOOP;
    INSERT INTO queues (queue)
    SELECT DISTINCT u.q FROM unnest(queues_) AS u(q)
    WHERE NOT EXISTS (SELECT 1 FROM queues x WHERE x.queue = u.q)
    ON CONFLICT DO NOTHING;
    WITH named AS (
        SELECT DISTINCT x.q, x.i FROM unnest(queues_, ids) AS x(q, i) WHERE x.i IS NOT NULL
    ), fresh AS MATERIALIZED (
        SELECT u.n, u.q, coalesce(u.i, nextval('pj_job_ids')::text) AS jid, u.i IS NULL AS auto,
               u.name, u.data, u.opts, u.stamp, u.run_at, u.prio, u.lk,
               CASE WHEN u.kc > 0 THEN 'waiting-children'
                    WHEN u.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
               CASE WHEN u.kc > 0 THEN u.stamp
                    WHEN u.run_at > now_ THEN u.run_at ELSE u.prio::double precision END AS sc,
               CASE WHEN u.kc = 0 AND u.run_at <= now_ AND u.lifo THEN -nextval('pj_seq')
                    ELSE nextval('pj_seq') END AS sq
        FROM unnest(queues_, ids, names, datas, optss, stamps, run_ats, prios, lifos, linkeds,
                    kid_counts, there)
             WITH ORDINALITY AS u(q, i, name, data, opts, stamp, run_at, prio, lifo, lk, kc, th,
                                  n)
        WHERE NOT u.th
    ), clean AS MATERIALIZED (
        -- an automatic id that a node of this call names is not inserted (retried below)
        SELECT f.*, f.auto AND nm.i IS NOT NULL AS clash
        FROM fresh f LEFT JOIN named nm ON nm.q = f.q AND nm.i = f.jid
    ), ins AS (
        INSERT INTO jobs AS j (queue, id, name, data, opts, state, score, seq, "timestamp",
                               run_at, priority, linked)
        SELECT c.q, c.jid, c.name, c.data, c.opts, c.st, c.sc, c.sq, c.stamp, c.run_at, c.prio,
               c.lk
        FROM clean c WHERE NOT c.clash ORDER BY c.n
        ON CONFLICT DO NOTHING
        RETURNING j.queue, j.id
    )
    SELECT array_agg(CASE WHEN ins.id IS NOT NULL AND NOT c.clash THEN c.jid END ORDER BY c.n),
           array_agg(c.n ORDER BY c.n)
    INTO got, ns
    FROM clean c LEFT JOIN ins ON ins.queue = c.q AND ins.id = c.jid;
    FOR k IN 1 .. coalesce(cardinality(ns), 0) LOOP
        i := ns[k];
        IF got[k] IS NOT NULL THEN
            made[i] := got[k];
            added[i] := true;
            CONTINUE;
        END IF;
        nid := pj_insert_job(queues_[i], ids[i], names[i], datas[i], optss[i], stamps[i],
                             run_ats[i], prios[i], lifos[i], kid_counts[i] > 0, linkeds[i], now_);
        IF nid IS NULL THEN  -- another transaction added this id in the meantime
            IF kid_counts[i] > 0 THEN
                RAISE EXCEPTION USING ERRCODE = 'PJ400', MESSAGE = format(
                    'job %s:%s already exists: a flow cannot give it children',
                    queues_[i], ids[i]);
            END IF;
            PERFORM 1 FROM jobs WHERE queue = queues_[i] AND id = ids[i] FOR SHARE;
            made[i] := ids[i];
        ELSE
            made[i] := nid;
            added[i] := true;
        END IF;
    END LOOP;
    -- parents after their children (the nodes are in topological order)
    FOR i IN 1 .. n LOOP
        IF added[i] AND kid_counts[i] > 0 THEN
            SELECT array_agg(nd.q ORDER BY kd.x), array_agg(nd.m ORDER BY kd.x) INTO cqs, cids
            FROM unnest(kids[kid_starts[i]:kid_starts[i] + kid_counts[i] - 1])
                 WITH ORDINALITY AS kd(c, x)
            JOIN unnest(queues_, made) WITH ORDINALITY AS nd(q, m, n) ON nd.n = kd.c;
            PERFORM pj_link(queues_[i], made[i], cqs, cids);
        END IF;
    END LOOP;
    PERFORM pg_notify(pj_channel(), x.q) FROM (SELECT DISTINCT u.q FROM unnest(queues_) AS u(q)) x;
    RETURN QUERY SELECT r.m, r.a FROM unnest(made, added) WITH ORDINALITY AS r(m, a, n)
                 ORDER BY r.n;
END $$;

-- pj_link of version 3 in one pass over the children (they were joined to `jobs` three times).
CREATE OR REPLACE FUNCTION pj_link(pq text, pid text, cqs text[], cids text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    fqs text[];
    fids text[];
    whys text[];
    f integer;
BEGIN
    WITH kids AS MATERIALIZED (
        SELECT j.queue, j.id, j.state, j.returnvalue, j.failed_reason, j.linked
        FROM (SELECT DISTINCT u.q, u.i FROM unnest(cqs, cids) AS u(q, i)) c
        JOIN jobs j ON j.queue = c.q AND j.id = c.i
    ), edges AS (
        INSERT INTO job_deps (queue, id, child_queue, child_id, status, value)
        SELECT pq, pid, k.queue, k.id,
               CASE WHEN k.state = 'completed' THEN 'processed' ELSE 'pending' END,
               CASE WHEN k.state = 'completed' THEN coalesce(k.returnvalue, 'null') END
        FROM kids k
        ON CONFLICT DO NOTHING
    ), marks AS (
        UPDATE jobs j SET linked = true FROM kids k
        WHERE NOT k.linked AND j.queue = k.queue AND j.id = k.id
    )
    SELECT array_agg(k.queue ORDER BY k.queue, k.id), array_agg(k.id ORDER BY k.queue, k.id),
           array_agg(coalesce(k.failed_reason, '') ORDER BY k.queue, k.id)
    INTO fqs, fids, whys
    FROM kids k WHERE k.state = 'failed';
    FOR f IN 1 .. coalesce(cardinality(fqs), 0) LOOP
        PERFORM pj_child_failed(fqs[f], fids[f], whys[f], pq, pid);
    END LOOP;
    PERFORM pj_release_if_done(pq, pid);
END $$;
