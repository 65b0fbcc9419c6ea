-- polyjobs PostgreSQL schema, version 13: pj_add_jobs inserts a batch of automatic ids with
-- a plain INSERT. `ON CONFLICT DO NOTHING` (a speculative insertion per row) with `RETURNING`
-- and the join of the results back to the batch made about a third of the call; a conflict is
-- only possible when someone named a job with an id the sequence has reached since. The plain
-- INSERT runs in a block of its own: on a unique violation nothing of it is kept and the batch
-- goes through the per-row checked insert of version 11. Same signature and results.

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
BEGIN
    IF coalesce(array_length(names, 1), 0) = 0 THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM queues WHERE queue = q) THEN
        INSERT INTO queues (queue) VALUES (q) ON CONFLICT DO NOTHING;
    END IF;
    IF array_length(names, 1) = 1 THEN
        jid := coalesce(ids[1], nextval('pj_job_ids')::text);
        delayed := run_ats[1] > now_;
        INSERT INTO jobs (queue, id, name, data, opts, state, score, seq, "timestamp", run_at,
                          priority)
        VALUES (q, jid, names[1], datas[1], opt_texts[opt_ix[1]],
                CASE WHEN delayed THEN 'delayed' ELSE 'waiting' END,
                CASE WHEN delayed THEN run_ats[1] ELSE prios[1]::double precision END,
                CASE WHEN NOT delayed AND lifos[1] THEN -nextval('pj_seq')
                     ELSE nextval('pj_seq') END,
                stamps[1], run_ats[1], prios[1])
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
                       t.stamp, t.run_at, t.prio,
                       CASE WHEN t.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
                       CASE WHEN t.run_at > now_ THEN t.run_at
                            ELSE t.prio::double precision END AS sc,
                       CASE WHEN t.run_at <= now_ AND t.lifo THEN -nextval('pj_seq')
                            ELSE nextval('pj_seq') END AS sq
                FROM (SELECT u.*, o.txt AS opts
                      FROM unnest(names, datas, opt_ix, stamps, run_ats, prios, lifos)
                           WITH ORDINALITY AS u(name, data, oi, stamp, run_at, prio, lifo, n)
                      JOIN unnest(opt_texts) WITH ORDINALITY AS o(txt, k) ON o.k = u.oi
                      ORDER BY u.n) t  -- sequence numbers are drawn in the batch's order
            ), ins AS (
                INSERT INTO jobs AS j (queue, id, name, data, opts, state, score, seq,
                                       "timestamp", run_at, priority)
                SELECT q, i.jid, i.name, i.data, i.opts, i.st, i.sc, i.sq, i.stamp, i.run_at,
                       i.prio
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
                       t.stamp, t.run_at, t.prio,
                       CASE WHEN t.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
                       CASE WHEN t.run_at > now_ THEN t.run_at
                            ELSE t.prio::double precision END AS sc,
                       CASE WHEN t.run_at <= now_ AND t.lifo THEN -nextval('pj_seq')
                            ELSE nextval('pj_seq') END AS sq
                FROM (SELECT u.*, o.txt AS opts
                      FROM unnest(names, datas, opt_ix, stamps, run_ats, prios, lifos)
                           WITH ORDINALITY AS u(name, data, oi, stamp, run_at, prio, lifo, n)
                      JOIN unnest(opt_texts) WITH ORDINALITY AS o(txt, k) ON o.k = u.oi
                      ORDER BY u.n) t  -- sequence numbers are drawn in the batch's order
            ), ins AS (
                INSERT INTO jobs AS j (queue, id, name, data, opts, state, score, seq,
                                       "timestamp", run_at, priority)
                SELECT q, i.jid, i.name, i.data, i.opts, i.st, i.sc, i.sq, i.stamp, i.run_at,
                       i.prio
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
                   t.name, t.data, t.opts, t.stamp, t.run_at, t.prio,
                   CASE WHEN t.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
                   CASE WHEN t.run_at > now_ THEN t.run_at
                        ELSE t.prio::double precision END AS sc,
                   CASE WHEN t.run_at <= now_ AND t.lifo THEN -nextval('pj_seq')
                        ELSE nextval('pj_seq') END AS sq
            FROM (SELECT u.*, o.txt AS opts
                  FROM unnest(ids, names, datas, opt_ix, stamps, run_ats, prios, lifos)
                       WITH ORDINALITY AS u(id, name, data, oi, stamp, run_at, prio, lifo, n)
                  JOIN unnest(opt_texts) WITH ORDINALITY AS o(txt, k) ON o.k = u.oi
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
                                   "timestamp", run_at, priority)
            SELECT q, f.jid, f.name, f.data, f.opts, f.st, f.sc, f.sq, f.stamp, f.run_at, f.prio
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
