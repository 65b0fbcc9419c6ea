-- polyjobs PostgreSQL schema, version 17: pj_batch_rows gives each job its options text and
-- group by joining the batch with the list of distinct options texts (as pj_add_jobs did), no
-- longer by subscripting that list per row: a text array's element is found by walking the
-- array from its start, so a batch whose jobs each had their own options (10,000 of them, or
-- 20,000: 8 s instead of 2.5 s for one add) took time growing with the square of its size.
-- pj_add_batch reads them from pj_batch_rows; same signature and results as in version 16.

DROP FUNCTION pj_batch_rows(
    text[], text[], text[], integer[], double precision[], double precision[], integer[],
    boolean[]
);

-- A batch's jobs as rows in the batch's order, numbered from 1 (n), with their options text
-- and group. datas has an element per job; names, opt_ix, stamps, run_ats, prios and lifos
-- either one per job or a single one that every job shares (sent once); ids is NULL (every id
-- automatic) or one per job; ogrp, the group of each options text, is NULL in a queue without
-- groups. Inlined into the calling query.
CREATE FUNCTION pj_batch_rows(
    ids text[], names text[], datas text[], opt_texts text[], ogrp text[], opt_ix integer[],
    stamps double precision[], run_ats double precision[], prios integer[], lifos boolean[]
) RETURNS TABLE (id text, name text, data text, opts text, grp text, stamp double precision,
                 run_at double precision, prio integer, lifo boolean, n bigint)
LANGUAGE sql STABLE AS $$
    SELECT u.id, coalesce(u.name, names[1]), u.data, o.txt, o.g, coalesce(u.stamp, stamps[1]),
           coalesce(u.run_at, run_ats[1]), coalesce(u.prio, prios[1]),
           coalesce(u.lifo, lifos[1]), u.n
    FROM unnest(ids, names, datas, opt_ix, stamps, run_ats, prios, lifos)
         WITH ORDINALITY AS u(id, name, data, oi, stamp, run_at, prio, lifo, n)
    JOIN unnest(opt_texts, ogrp) WITH ORDINALITY AS o(txt, g, k)
         ON o.k = coalesce(u.oi, opt_ix[1])
    ORDER BY u.n
$$;

CREATE OR REPLACE FUNCTION pj_add_batch(
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
                       u.opts, u.grp, u.stamp, u.run_at, u.prio,
                       CASE WHEN u.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
                       CASE WHEN u.run_at > now_ THEN u.run_at
                            ELSE u.prio::double precision END AS sc,
                       CASE WHEN u.run_at <= now_ AND u.lifo THEN -nextval('pj_seq')
                            ELSE nextval('pj_seq') END AS sq
                FROM pj_batch_rows(NULL, names, datas, opt_texts, ogrp, opt_ix, stamps,
                                   run_ats, prios, lifos) u
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
                       u.opts, u.grp, u.stamp, u.run_at, u.prio,
                       CASE WHEN u.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
                       CASE WHEN u.run_at > now_ THEN u.run_at
                            ELSE u.prio::double precision END AS sc,
                       CASE WHEN u.run_at <= now_ AND u.lifo THEN -nextval('pj_seq')
                            ELSE nextval('pj_seq') END AS sq
                FROM pj_batch_rows(NULL, names, datas, opt_texts, ogrp, opt_ix, stamps,
                                   run_ats, prios, lifos) u
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
                   u.opts, u.grp, u.stamp, u.run_at, u.prio,
                   CASE WHEN u.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
                   CASE WHEN u.run_at > now_ THEN u.run_at
                        ELSE u.prio::double precision END AS sc,
                   CASE WHEN u.run_at <= now_ AND u.lifo THEN -nextval('pj_seq')
                        ELSE nextval('pj_seq') END AS sq
            FROM pj_batch_rows(ids, names, datas, opt_texts, ogrp, opt_ix, stamps, run_ats,
                               prios, lifos) u
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
