-- polyjobs PostgreSQL schema, version 14: job groups (see GroupBackend).
--
-- `jobs.grp` is a job's group. It stays NULL in a queue that never had a grouped job
-- (`queues.has_groups` false), and such a queue takes jobs as before (pj_take reads one more
-- column of its queue's row). The first grouped add of a queue sets `has_groups` and gives the
-- queue's other jobs '' (the jobs without a group: one member of the ring); from then on every
-- new job of the queue gets its group or ''. `job_groups` holds each group's last turn
-- (`served`, a pj_seq number; 0: never served) and hold; `group_starts` the recent starts per
-- group (group rate limit); `queues.group_concurrency`, `group_rate_max`/`group_rate_duration`
-- the limits.
--
-- A job's group is read from its options text (`"group":`), so the functions that add jobs
-- keep their signatures. Adds hold a shared advisory lock named after the queue
-- (pj_group_lock) until they commit; the add that starts a queue's groups takes it
-- exclusively, so no add that read `has_groups` false commits a NULL group after the queue's
-- jobs were given ''.
--
-- Takers of a queue with groups queue up on its row (as those of a capped queue do), so the
-- ring's turns and the per-group active counts are exact whoever takes.

ALTER TABLE jobs ADD COLUMN grp text;
CREATE INDEX jobs_by_group ON jobs (queue, grp, state, score, seq) WHERE grp IS NOT NULL;
ALTER TABLE queues ADD COLUMN has_groups boolean NOT NULL DEFAULT false;
ALTER TABLE queues ADD COLUMN group_concurrency integer;
ALTER TABLE queues ADD COLUMN group_rate_max integer;
ALTER TABLE queues ADD COLUMN group_rate_duration double precision;

CREATE TABLE job_groups (
    queue      text NOT NULL,
    grp        text NOT NULL,
    served     bigint NOT NULL DEFAULT 0,
    held_until double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, grp)
);

CREATE TABLE group_starts (queue text NOT NULL, grp text NOT NULL, at double precision NOT NULL);
CREATE INDEX group_starts_by_group ON group_starts (queue, grp, at);

CREATE FUNCTION pj_group_lock(q text) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT hashtextextended(format('polyjobs-groups|%s|%s', current_schema(), q), 0)
$$;

-- The group named by a job's options text, or NULL.
CREATE FUNCTION pj_opts_group(opts_ text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN opts_ LIKE '%"group":%' THEN opts_::json ->> 'group' END
$$;

-- Before adding jobs to q (`grouped`: some of them have a group): take the queue's group lock
-- (shared; exclusive while starting its groups), make sure its row exists, start its groups
-- when a grouped job comes first; whether the queue has groups.
CREATE FUNCTION pj_groups_enter(q text, grouped boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    hg boolean;
BEGIN
    IF grouped THEN
        SELECT has_groups INTO hg FROM queues WHERE queue = q;
        IF hg THEN
            PERFORM pg_advisory_xact_lock_shared(pj_group_lock(q));
            RETURN true;
        END IF;
        -- no add of the queue is in flight once this lock is ours
        PERFORM pg_advisory_xact_lock(pj_group_lock(q));
        INSERT INTO queues (queue, has_groups) VALUES (q, true)
        ON CONFLICT (queue) DO UPDATE SET has_groups = true WHERE NOT queues.has_groups;
        UPDATE jobs SET grp = '' WHERE queue = q AND grp IS NULL;
        INSERT INTO job_groups (queue, grp) VALUES (q, '') ON CONFLICT DO NOTHING;
        RETURN true;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(pj_group_lock(q));
    SELECT has_groups INTO hg FROM queues WHERE queue = q;
    IF NOT FOUND THEN
        INSERT INTO queues (queue) VALUES (q) ON CONFLICT DO NOTHING;
        RETURN false;
    END IF;
    RETURN hg;
END $$;

-- The group to store for a new job of q with options opts_ (its ring member known).
CREATE FUNCTION pj_group_for(q text, opts_ text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    g text := pj_opts_group(opts_);
BEGIN
    IF NOT pj_groups_enter(q, g IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    IF g IS NULL THEN
        RETURN '';
    END IF;
    INSERT INTO job_groups (queue, grp) VALUES (q, g) ON CONFLICT DO NOTHING;
    RETURN g;
END $$;

-- pj_insert_job of version 3, storing the job's group.
CREATE OR REPLACE FUNCTION pj_insert_job(
    q text, jid text, name_ text, data_ text, opts_ text, stamp double precision,
    run_at_ double precision, prio integer, lifo boolean, parent boolean, linked_ boolean,
    now_ double precision
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    nid text;
    n integer;
    st text;
    sc double precision;
    sq bigint;
    g text := pj_group_for(q, opts_);
BEGIN
    IF parent THEN
        st := 'waiting-children'; sc := stamp; sq := nextval('pj_seq');
    ELSIF run_at_ > now_ THEN
        st := 'delayed'; sc := run_at_; sq := nextval('pj_seq');
    ELSE
        st := 'waiting'; sc := prio;
        sq := CASE WHEN lifo THEN -nextval('pj_seq') ELSE nextval('pj_seq') END;
    END IF;
    LOOP
        nid := coalesce(jid, nextval('pj_job_ids')::text);
        INSERT INTO jobs (queue, id, name, data, opts, state, score, seq, "timestamp", run_at,
                          priority, linked, grp)
        VALUES (q, nid, name_, data_, opts_, st, sc, sq, stamp, run_at_, prio, linked_, g)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN
            RETURN nid;
        END IF;
        IF jid IS NOT NULL THEN
            RETURN NULL;
        END IF;
    END LOOP;
END $$;

-- pj_add_jobs of version 13, storing each job's group (read once per distinct options text).
CREATE OR REPLACE FUNCTION pj_add_jobs(
    q text, now_ double precision, channel text, ids text[], names text[], datas text[],
    opt_texts text[], opt_ix integer[], stamps double precision[], run_ats double precision[],
    prios integer[], lifos boolean[]
) RETURNS TABLE (ord bigint, job_id text, auto boolean, added boolean)
LANGUAGE plpgsql AS $$
DECLARE
    jid text;
    n integer;
    delayed boolean;
    jids text[];
    hg boolean;
    ogrp text[];  -- the stored group of each options text (NULL: the queue has no groups)
BEGIN
    IF coalesce(array_length(names, 1), 0) = 0 THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(opt_texts) AS o(t) WHERE o.t LIKE '%"group":%') THEN
        hg := pj_groups_enter(q, true);
    ELSE
        PERFORM pg_advisory_xact_lock_shared(pj_group_lock(q));
        SELECT has_groups INTO hg FROM queues WHERE queue = q;
        IF NOT FOUND THEN
            INSERT INTO queues (queue) VALUES (q) ON CONFLICT DO NOTHING;
            hg := false;
        END IF;
    END IF;
    IF hg THEN
        SELECT array_agg(coalesce(pj_opts_group(o.t), '') ORDER BY o.k) INTO ogrp
        FROM unnest(opt_texts) WITH ORDINALITY AS o(t, k);
        INSERT INTO job_groups (queue, grp)
        SELECT DISTINCT q, x.g FROM unnest(ogrp) AS x(g) WHERE x.g <> ''
        ON CONFLICT DO NOTHING;
    END IF;
    IF array_length(names, 1) = 1 THEN
        jid := coalesce(ids[1], nextval('pj_job_ids')::text);
        delayed := run_ats[1] > now_;
        INSERT INTO jobs (queue, id, name, data, opts, state, score, seq, "timestamp", run_at,
                          priority, grp)
        VALUES (q, jid, names[1], datas[1], opt_texts[opt_ix[1]],
                CASE WHEN delayed THEN 'delayed' ELSE 'waiting' END,
                CASE WHEN delayed THEN run_ats[1] ELSE prios[1]::double precision END,
                CASE WHEN NOT delayed AND lifos[1] THEN -nextval('pj_seq')
                     ELSE nextval('pj_seq') END,
                stamps[1], run_ats[1], prios[1], ogrp[opt_ix[1]])
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        ord := 1;
        job_id := jid;
        auto := ids IS NULL OR ids[1] IS NULL;
        added := n > 0;
        RETURN NEXT;
        IF n > 0 THEN
            PERFORM pg_notify(channel, q);
        END IF;
        RETURN;
    END IF;
    IF ids IS NULL OR cardinality(array_remove(ids, NULL)) = 0 THEN
        -- automatic ids only: a plain INSERT; only when one of them was taken already (an
        -- id named by hand that the sequence reached) does the batch go again, row by row
        -- checked, below
        BEGIN
            WITH input AS MATERIALIZED (
                SELECT t.n, nextval('pj_job_ids')::text AS jid, t.name, t.data, t.opts,
                       t.stamp, t.run_at, t.prio, t.grp,
                       CASE WHEN t.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
                       CASE WHEN t.run_at > now_ THEN t.run_at
                            ELSE t.prio::double precision END AS sc,
                       CASE WHEN t.run_at <= now_ AND t.lifo THEN -nextval('pj_seq')
                            ELSE nextval('pj_seq') END AS sq
                FROM (SELECT u.*, o.txt AS opts, o.g AS grp
                      FROM unnest(names, datas, opt_ix, stamps, run_ats, prios, lifos)
                           WITH ORDINALITY AS u(name, data, oi, stamp, run_at, prio, lifo, n)
                      JOIN unnest(opt_texts, ogrp) WITH ORDINALITY AS o(txt, g, k)
                           ON o.k = u.oi
                      ORDER BY u.n) t  -- sequence numbers are drawn in the batch's order
            ), ins AS (
                INSERT INTO jobs AS j (queue, id, name, data, opts, state, score, seq,
                                       "timestamp", run_at, priority, grp)
                SELECT q, i.jid, i.name, i.data, i.opts, i.st, i.sc, i.sq, i.stamp, i.run_at,
                       i.prio, i.grp
                FROM input i ORDER BY i.n
            )
            SELECT array_agg(i.jid ORDER BY i.n) INTO jids FROM input i;
        EXCEPTION WHEN unique_violation THEN
            jids := NULL;
        END;
        IF jids IS NOT NULL THEN
            RETURN QUERY SELECT a.n, a.jid, true, true
                         FROM unnest(jids) WITH ORDINALITY AS a(jid, n);
        ELSE
            -- the careful path: each row checked for a taken id
            RETURN QUERY
            WITH input AS MATERIALIZED (
                SELECT t.n, nextval('pj_job_ids')::text AS jid, t.name, t.data, t.opts,
                       t.stamp, t.run_at, t.prio, t.grp,
                       CASE WHEN t.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
                       CASE WHEN t.run_at > now_ THEN t.run_at
                            ELSE t.prio::double precision END AS sc,
                       CASE WHEN t.run_at <= now_ AND t.lifo THEN -nextval('pj_seq')
                            ELSE nextval('pj_seq') END AS sq
                FROM (SELECT u.*, o.txt AS opts, o.g AS grp
                      FROM unnest(names, datas, opt_ix, stamps, run_ats, prios, lifos)
                           WITH ORDINALITY AS u(name, data, oi, stamp, run_at, prio, lifo, n)
                      JOIN unnest(opt_texts, ogrp) WITH ORDINALITY AS o(txt, g, k)
                           ON o.k = u.oi
                      ORDER BY u.n) t  -- sequence numbers are drawn in the batch's order
            ), ins AS (
                INSERT INTO jobs AS j (queue, id, name, data, opts, state, score, seq,
                                       "timestamp", run_at, priority, grp)
                SELECT q, i.jid, i.name, i.data, i.opts, i.st, i.sc, i.sq, i.stamp, i.run_at,
                       i.prio, i.grp
                FROM input i ORDER BY i.n
                ON CONFLICT DO NOTHING
                RETURNING j.id
            )
            SELECT i.n, i.jid, true, ins.id IS NOT NULL
            FROM input i LEFT JOIN ins ON ins.id = i.jid ORDER BY i.n;
        END IF;
    ELSE
        -- named ids: the first occurrence of an id in the call wins; an automatic id never
        -- takes a name of this call (it comes back not added, and the caller retries it)
        RETURN QUERY
        WITH input AS MATERIALIZED (
            SELECT t.n, t.id IS NULL AS is_auto,
                   coalesce(t.id, nextval('pj_job_ids')::text) AS jid,
                   t.name, t.data, t.opts, t.stamp, t.run_at, t.prio, t.grp,
                   CASE WHEN t.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
                   CASE WHEN t.run_at > now_ THEN t.run_at
                        ELSE t.prio::double precision END AS sc,
                   CASE WHEN t.run_at <= now_ AND t.lifo THEN -nextval('pj_seq')
                        ELSE nextval('pj_seq') END AS sq
            FROM (SELECT u.*, o.txt AS opts, o.g AS grp
                  FROM unnest(ids, names, datas, opt_ix, stamps, run_ats, prios, lifos)
                       WITH ORDINALITY AS u(id, name, data, oi, stamp, run_at, prio, lifo, n)
                  JOIN unnest(opt_texts, ogrp) WITH ORDINALITY AS o(txt, g, k) ON o.k = u.oi
                  ORDER BY u.n) t
        ), named AS (
            SELECT DISTINCT x.v FROM unnest(ids) AS x(v) WHERE x.v IS NOT NULL
        ), firsts AS MATERIALIZED (
            SELECT DISTINCT ON (i.jid) i.*
            FROM input i
            WHERE NOT i.is_auto OR NOT EXISTS (SELECT 1 FROM named WHERE named.v = i.jid)
            ORDER BY i.jid, i.n
        ), ins AS (
            INSERT INTO jobs AS j (queue, id, name, data, opts, state, score, seq,
                                   "timestamp", run_at, priority, grp)
            SELECT q, f.jid, f.name, f.data, f.opts, f.st, f.sc, f.sq, f.stamp, f.run_at, f.prio,
                   f.grp
            FROM firsts f ORDER BY f.n
            ON CONFLICT DO NOTHING
            RETURNING j.id
        )
        SELECT i.n, i.jid, i.is_auto, ins.id IS NOT NULL AND f.n IS NOT NULL
        FROM input i
        LEFT JOIN firsts f ON f.n = i.n
        LEFT JOIN ins ON ins.id = f.jid
        ORDER BY i.n;
    END IF;
    PERFORM pg_notify(channel, q);
END $$;

-- pj_add_flow of version 7, storing each node's group.
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
    gqs text[] := '{}';
    ghs boolean[] := '{}';
    e record;
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
    -- each queue's group lock, in name order; the queues that have groups
    FOR e IN SELECT u.q, bool_or(u.o LIKE '%"group":%') AS grouped
             FROM unnest(queues_, optss) AS u(q, o) GROUP BY u.q ORDER BY u.q COLLATE "C" LOOP
        gqs := gqs || e.q;
        ghs := ghs || pj_groups_enter(e.q, e.grouped);
    END LOOP;
    WITH named AS (
        SELECT DISTINCT x.q, x.i FROM unnest(queues_, ids) AS x(q, i) WHERE x.i IS NOT NULL
    ), fresh AS MATERIALIZED (
        SELECT u.n, u.q, coalesce(u.i, nextval('pj_job_ids')::text) AS jid, u.i IS NULL AS auto,
               u.name, u.data, u.opts, u.stamp, u.run_at, u.prio, u.lk,
               CASE WHEN (SELECT h.hg FROM unnest(gqs, ghs) AS h(q, hg) WHERE h.q = u.q)
                    THEN coalesce(pj_opts_group(u.opts), '') END AS grp,
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
    ), ring AS (
        INSERT INTO job_groups (queue, grp)
        SELECT DISTINCT c.q, c.grp FROM clean c WHERE c.grp <> '' ON CONFLICT DO NOTHING
    ), ins AS (
        INSERT INTO jobs AS j (queue, id, name, data, opts, state, score, seq, "timestamp",
                               run_at, priority, linked, grp)
        SELECT c.q, c.jid, c.name, c.data, c.opts, c.st, c.sc, c.sq, c.stamp, c.run_at, c.prio,
               c.lk, c.grp
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

-- pj_add_dedup of version 3: a replacing add moves the waiting job to its own group.
CREATE OR REPLACE FUNCTION pj_add_dedup(
    q text, now_ double precision, jid text, name_ text, data_ text, opts_ text,
    stamp double precision, run_at_ double precision, prio integer, lifo boolean, k text,
    ttl double precision, extend_ boolean, replace_ boolean, keep_last boolean
) RETURNS TABLE (out_id text, out_added boolean, out_dedup text) LANGUAGE plpgsql AS $$
DECLARE
    ng text;
    h record;
    n integer;
    nid text;
    late boolean := run_at_ > now_;
BEGIN
    IF jid IS NOT NULL AND EXISTS (SELECT 1 FROM jobs WHERE queue = q AND id = jid) THEN
        out_id := jid; out_added := false; out_dedup := NULL;
        RETURN NEXT;
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(pj_dedup_lock(q, k));
    ng := pj_group_for(q, opts_);
    LOOP
        SELECT d.job_id AS holder, d.expires, j.state INTO h
        FROM dedup d LEFT JOIN jobs j ON j.queue = d.queue AND j.id = d.job_id
        WHERE d.queue = q AND d.key = k;
        EXIT WHEN NOT FOUND;
        IF h.state IS NULL OR (h.expires IS NOT NULL AND h.expires <= now_) THEN
            DELETE FROM dedup WHERE queue = q AND key = k;
            EXIT;
        END IF;
        out_id := h.holder;
        out_added := false;
        IF keep_last AND h.state = 'active' THEN
            UPDATE dedup SET expires = NULL, kept = json_build_object(
                'name', name_, 'data', data_, 'opts', opts_, 'priority', prio, 'lifo', lifo,
                'delay', greatest(run_at_ - stamp, 0))::text
            WHERE queue = q AND key = k;
            out_dedup := 'kept-next';
            RETURN NEXT;
            RETURN;
        END IF;
        IF replace_ AND h.state IN ('waiting', 'delayed') THEN
            UPDATE jobs SET name = name_, data = data_, opts = opts_, priority = prio,
                grp = ng,
                run_at = run_at_, state = CASE WHEN late THEN 'delayed' ELSE 'waiting' END,
                score = CASE WHEN late THEN run_at_ ELSE prio::double precision END,
                seq = CASE WHEN lifo AND NOT late THEN -nextval('pj_seq')
                           ELSE nextval('pj_seq') END
            WHERE queue = q AND id = h.holder AND state IN ('waiting', 'delayed');
            GET DIAGNOSTICS n = ROW_COUNT;
            CONTINUE WHEN n = 0;  -- taken or removed in the meantime: look again
            out_dedup := 'replaced';
            PERFORM pg_notify(pj_channel(), q);
        ELSE
            out_dedup := 'ignored';
        END IF;
        IF extend_ AND ttl IS NOT NULL THEN
            UPDATE dedup SET expires = now_ + ttl WHERE queue = q AND key = k;
        END IF;
        RETURN NEXT;
        RETURN;
    END LOOP;
    nid := pj_insert_job(q, jid, name_, data_, opts_, stamp, run_at_, prio, lifo, false, true,
                         now_);
    IF nid IS NULL THEN  -- the given id was taken in the meantime
        out_id := jid; out_added := false; out_dedup := NULL;
        RETURN NEXT;
        RETURN;
    END IF;
    INSERT INTO dedup (queue, key, job_id, expires, kept)
    VALUES (q, k, nid, now_ + ttl, NULL)
    ON CONFLICT (queue, key) DO UPDATE SET job_id = EXCLUDED.job_id,
        expires = EXCLUDED.expires, kept = NULL;
    PERFORM pg_notify(pj_channel(), q);
    out_id := nid; out_added := true; out_dedup := NULL;
    RETURN NEXT;
END $$;

-- When a fetch of a queue with groups that found nothing should look again, as far as its
-- groups are concerned: the end of the first hold of a group with waiting jobs, a full group's
-- look again soon (a slot frees when any of its jobs ends), a rate-limited group's next free
-- start; NULL when no group with waiting jobs is held, full or limited.
CREATE FUNCTION pj_group_next_look(q text, now_ double precision) RETURNS double precision
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
                 SELECT 1 FROM jobs w WHERE w.queue = q AND w.grp = jg.grp
                 AND w.state = 'waiting') LOOP
        IF g.held_until > now_ THEN
            look := least(look, g.held_until);
            CONTINUE;
        END IF;
        IF meta.group_concurrency IS NOT NULL THEN
            SELECT count(*) INTO cnt FROM jobs a
            WHERE a.queue = q AND a.grp = g.grp AND a.state = 'active';
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

-- Take up to lim waiting jobs of a queue with groups, one per ready group in turn (see
-- GroupBackend): the ready groups (with waiting jobs, not held, below their concurrency and
-- rate limit) least recently served first, ties by name ('' first); each turn takes the
-- group's first job by priority and order. The caller holds the queue's row. Records each
-- group's last turn and, under a group rate limit, its starts. Rows in fetch order.
CREATE FUNCTION pj_take_groups(
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
    SELECT coalesce(array_agg(r.grp ORDER BY r.served, r.grp COLLATE "C"), '{}'),
           coalesce(array_agg(r.n ORDER BY r.served, r.grp COLLATE "C"), '{}')
    INTO grps, cnts
    FROM (
        SELECT c.grp, c.served, (SELECT count(*) FROM (
                   SELECT 1 FROM jobs w WHERE w.queue = q AND w.grp = c.grp
                   AND w.state = 'waiting' LIMIT c.allowed) x)::integer AS n
        FROM (
            SELECT g.grp, g.served,
                   least(lim,
                         CASE WHEN g.grp = '' OR meta.group_concurrency IS NULL THEN lim
                              ELSE meta.group_concurrency - (
                                  SELECT count(*) FROM jobs a WHERE a.queue = q
                                  AND a.grp = g.grp AND a.state = 'active')::integer END,
                         CASE WHEN g.grp = '' OR meta.group_rate_max IS NULL THEN lim
                              ELSE meta.group_rate_max - (
                                  SELECT count(*) FROM group_starts s WHERE s.queue = q
                                  AND s.grp = g.grp)::integer END) AS allowed
            FROM job_groups g
            WHERE g.queue = q AND (g.grp = '' OR g.held_until <= now_)
        ) c
        WHERE c.allowed > 0
    ) r
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
            WHERE w.queue = q AND w.grp = r.grp AND w.state = 'waiting'
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
            AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.queue = q AND j.grp = g.grp);
        END IF;
    END IF;
END $$;

-- pj_take of version 10; a queue with groups takes through pj_take_groups.
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
               AND g.grp = '' AND EXISTS (SELECT 1 FROM jobs w WHERE w.queue = q
               AND w.grp = '' AND w.state = 'waiting')) THEN
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
