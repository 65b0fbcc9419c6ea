-- polyjobs PostgreSQL schema, version 16: adds with less work per call.
--
-- pj_add_one adds one job (no deduplication window) from plain arguments: no arrays to
-- encode and unnest, no set of rows to return, and an automatic id that was taken (named by
-- hand before the sequence reached it) is replaced by the next one in the same call instead
-- of a second call. pj_add_batch is pj_add_jobs answering in one row of arrays instead of a
-- row per job, and a batch of automatic ids, all added, as the ids alone; it picks each job's
-- options text and group by subscript (a batch has few distinct options texts) instead of a
-- join of the two lists. Both start with pj_add_enter, the queue's group lock and groups as
-- pj_add_jobs took them. pj_add_jobs is left as it was; this version no longer calls it.

-- Before adding jobs with these distinct options texts to q: the queue's group lock (shared;
-- exclusive while a grouped job starts its groups), its row, and the group each options text
-- stores (NULL when the queue has no groups: every group NULL).
CREATE FUNCTION pj_add_enter(q text, opt_texts text[]) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    hg boolean;
    ogrp text[];
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(opt_texts) AS o(t) WHERE o.t LIKE '%"group":%') THEN
        hg := pj_groups_enter(q, true);
    ELSE
        PERFORM pg_advisory_xact_lock_shared(pj_group_lock(q));
        SELECT has_groups INTO hg FROM queues WHERE queue = q;
        IF NOT FOUND THEN
            INSERT INTO queues (queue) VALUES (q) ON CONFLICT DO NOTHING;
            RETURN NULL;
        END IF;
    END IF;
    IF NOT hg THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(coalesce(pj_opts_group(o.t), '') ORDER BY o.k) INTO ogrp
    FROM unnest(opt_texts) WITH ORDINALITY AS o(t, k);
    INSERT INTO job_groups (queue, grp)
    SELECT DISTINCT q, x.g FROM unnest(ogrp) AS x(g) WHERE x.g <> ''
    ON CONFLICT DO NOTHING;
    RETURN ogrp;
END $$;

CREATE FUNCTION pj_add_one(
    q text, now_ double precision, channel text, jid text, name_ text, data_ text, opts_ text,
    stamp double precision, run_at_ double precision, prio integer, lifo boolean,
    OUT job_id text, OUT added boolean
) LANGUAGE plpgsql AS $$
DECLARE
    g text := (pj_add_enter(q, ARRAY[opts_]))[1];
    delayed boolean := run_at_ > now_;
BEGIN
    LOOP
        job_id := coalesce(jid, nextval('pj_job_ids')::text);
        INSERT INTO jobs (queue, id, name, data, opts, state, score, seq, "timestamp", run_at,
                          priority, grp)
        VALUES (q, job_id, name_, data_, opts_,
                CASE WHEN delayed THEN 'delayed' ELSE 'waiting' END,
                CASE WHEN delayed THEN run_at_ ELSE prio::double precision END,
                CASE WHEN NOT delayed AND lifo THEN -nextval('pj_seq') ELSE nextval('pj_seq') END,
                stamp, run_at_, prio, g)
        ON CONFLICT DO NOTHING;
        added := FOUND;
        EXIT WHEN added OR jid IS NOT NULL;  -- a taken automatic id: the next one
    END LOOP;
    IF added THEN
        PERFORM pg_notify(channel, q);
    END IF;
END $$;

-- A batch's jobs as rows, numbered from 1 (n). datas has an element per job; names, opt_ix,
-- stamps, run_ats, prios and lifos either one per job or a single one that every job shares
-- (a bulk add's jobs mostly share their name, options, times, priority and order: sent once);
-- ids is NULL (every id automatic) or one per job. Inlined into the calling query.
CREATE FUNCTION pj_batch_rows(
    ids text[], names text[], datas text[], opt_ix integer[], stamps double precision[],
    run_ats double precision[], prios integer[], lifos boolean[]
) RETURNS TABLE (id text, name text, data text, oi integer, stamp double precision,
                 run_at double precision, prio integer, lifo boolean, n bigint)
LANGUAGE sql STABLE AS $$
    SELECT u.id, coalesce(u.name, names[1]), u.data, coalesce(u.oi, opt_ix[1]),
           coalesce(u.stamp, stamps[1]), coalesce(u.run_at, run_ats[1]),
           coalesce(u.prio, prios[1]), coalesce(u.lifo, lifos[1]), u.n
    FROM unnest(ids, names, datas, opt_ix, stamps, run_ats, prios, lifos)
         WITH ORDINALITY AS u(id, name, data, oi, stamp, run_at, prio, lifo, n)
$$;

-- Results: the ids in the batch's order, whether each was automatic and whether it was added;
-- autos and addeds are NULL when every id was automatic and every job added.
CREATE FUNCTION pj_add_batch(
    q text, now_ double precision, channel text, ids text[], names text[], datas text[],
    opt_texts text[], opt_ix integer[], stamps double precision[], run_ats double precision[],
    prios integer[], lifos boolean[],
    OUT job_ids text[], OUT autos boolean[], OUT addeds boolean[]
) LANGUAGE plpgsql AS $$
DECLARE
    ogrp text[];
BEGIN
    IF coalesce(array_length(names, 1), 0) = 0 THEN
        RETURN;
    END IF;
    ogrp := pj_add_enter(q, opt_texts);
    IF ids IS NULL OR cardinality(array_remove(ids, NULL)) = 0 THEN
        -- automatic ids only: a plain INSERT; only when one of them was taken already (an
        -- id named by hand that the sequence reached) does the batch go again, row by row
        -- checked, below
        BEGIN
            WITH input AS MATERIALIZED (
                SELECT u.n, nextval('pj_job_ids')::text AS jid, u.name, u.data,
                       opt_texts[u.oi] AS opts, ogrp[u.oi] AS grp, u.stamp, u.run_at, u.prio,
                       CASE WHEN u.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
                       CASE WHEN u.run_at > now_ THEN u.run_at
                            ELSE u.prio::double precision END AS sc,
                       CASE WHEN u.run_at <= now_ AND u.lifo THEN -nextval('pj_seq')
                            ELSE nextval('pj_seq') END AS sq
                FROM pj_batch_rows(NULL, names, datas, opt_ix, stamps, run_ats, prios, lifos) u
                ORDER BY u.n  -- sequence numbers are drawn in the batch's order
            ), ins AS (
                INSERT INTO jobs (queue, id, name, data, opts, state, score, seq, "timestamp",
                                  run_at, priority, grp)
                SELECT q, i.jid, i.name, i.data, i.opts, i.st, i.sc, i.sq, i.stamp, i.run_at,
                       i.prio, i.grp
                FROM input i ORDER BY i.n
            )
            SELECT array_agg(i.jid ORDER BY i.n) INTO job_ids FROM input i;
        EXCEPTION WHEN unique_violation THEN
            job_ids := NULL;
        END;
        IF job_ids IS NULL THEN
            -- the careful path: each row checked for a taken id
            WITH input AS MATERIALIZED (
                SELECT u.n, nextval('pj_job_ids')::text AS jid, u.name, u.data,
                       opt_texts[u.oi] AS opts, ogrp[u.oi] AS grp, u.stamp, u.run_at, u.prio,
                       CASE WHEN u.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
                       CASE WHEN u.run_at > now_ THEN u.run_at
                            ELSE u.prio::double precision END AS sc,
                       CASE WHEN u.run_at <= now_ AND u.lifo THEN -nextval('pj_seq')
                            ELSE nextval('pj_seq') END AS sq
                FROM pj_batch_rows(NULL, names, datas, opt_ix, stamps, run_ats, prios, lifos) u
                ORDER BY u.n
            ), ins AS (
                INSERT INTO jobs AS j (queue, id, name, data, opts, state, score, seq,
                                       "timestamp", run_at, priority, grp)
                SELECT q, i.jid, i.name, i.data, i.opts, i.st, i.sc, i.sq, i.stamp, i.run_at,
                       i.prio, i.grp
                FROM input i ORDER BY i.n
                ON CONFLICT DO NOTHING
                RETURNING j.id
            )
            SELECT array_agg(i.jid ORDER BY i.n), array_agg(true ORDER BY i.n),
                   array_agg(ins.id IS NOT NULL ORDER BY i.n)
            INTO job_ids, autos, addeds
            FROM input i LEFT JOIN ins ON ins.id = i.jid;
        END IF;
    ELSE
        -- named ids: the first occurrence of an id in the call wins; an automatic id never
        -- takes a name of this call (it comes back not added, and the caller retries it)
        WITH input AS MATERIALIZED (
            SELECT u.n, u.id IS NULL AS is_auto,
                   coalesce(u.id, nextval('pj_job_ids')::text) AS jid, u.name, u.data,
                   opt_texts[u.oi] AS opts, ogrp[u.oi] AS grp, u.stamp, u.run_at, u.prio,
                   CASE WHEN u.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
                   CASE WHEN u.run_at > now_ THEN u.run_at
                        ELSE u.prio::double precision END AS sc,
                   CASE WHEN u.run_at <= now_ AND u.lifo THEN -nextval('pj_seq')
                        ELSE nextval('pj_seq') END AS sq
            FROM pj_batch_rows(ids, names, datas, opt_ix, stamps, run_ats, prios, lifos) u
            ORDER BY u.n
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
        SELECT array_agg(i.jid ORDER BY i.n), array_agg(i.is_auto ORDER BY i.n),
               array_agg(ins.id IS NOT NULL AND f.n IS NOT NULL ORDER BY i.n)
        INTO job_ids, autos, addeds
        FROM input i
        LEFT JOIN firsts f ON f.n = i.n
        LEFT JOIN ins ON ins.id = f.jid;
    END IF;
    PERFORM pg_notify(channel, q);
END $$;
