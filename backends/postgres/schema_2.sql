-- polyjobs PostgreSQL schema, version 2: a faster pj_add (same signature and results).
--   * one job (Queue.add): a plain INSERT, no set machinery;
--   * a batch whose ids are all automatic (Queue.add_bulk): no duplicate or name checks,
--     which are only needed when the batch names ids;
--   * results joined by hash instead of a scan per row (batches of thousands).

CREATE OR REPLACE FUNCTION pj_add(
    q text, now_ double precision, channel text, ids text[], names text[], datas text[],
    optss text[], stamps double precision[], run_ats double precision[], prios integer[],
    lifos boolean[]
) RETURNS TABLE (ord bigint, job_id text, auto boolean, added boolean)
LANGUAGE plpgsql AS $$
DECLARE
    jid text;
    n integer;
    delayed boolean;
BEGIN
    IF coalesce(array_length(ids, 1), 0) = 0 THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM queues WHERE queue = q) THEN
        INSERT INTO queues (queue) VALUES (q) ON CONFLICT DO NOTHING;
    END IF;
    IF array_length(ids, 1) = 1 THEN
        jid := coalesce(ids[1], nextval('pj_job_ids')::text);
        delayed := run_ats[1] > now_;
        INSERT INTO jobs (queue, id, name, data, opts, state, score, seq, "timestamp", run_at,
                          priority)
        VALUES (q, jid, names[1], datas[1], optss[1],
                CASE WHEN delayed THEN 'delayed' ELSE 'waiting' END,
                CASE WHEN delayed THEN run_ats[1] ELSE prios[1]::double precision END,
                CASE WHEN NOT delayed AND lifos[1] THEN -nextval('pj_seq')
                     ELSE nextval('pj_seq') END,
                stamps[1], run_ats[1], prios[1])
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        ord := 1;
        job_id := jid;
        auto := ids[1] IS NULL;
        added := n > 0;
        RETURN NEXT;
        IF n > 0 THEN
            PERFORM pg_notify(channel, q);
        END IF;
        RETURN;
    END IF;
    IF cardinality(array_remove(ids, NULL)) = 0 THEN
        -- automatic ids only: unique by construction
        RETURN QUERY
        WITH input AS MATERIALIZED (
            SELECT t.n, nextval('pj_job_ids')::text AS jid, t.name, t.data, t.opts, t.stamp,
                   t.run_at, t.prio,
                   CASE WHEN t.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
                   CASE WHEN t.run_at > now_ THEN t.run_at
                        ELSE t.prio::double precision END AS sc,
                   CASE WHEN t.run_at <= now_ AND t.lifo THEN -nextval('pj_seq')
                        ELSE nextval('pj_seq') END AS sq
            FROM unnest(names, datas, optss, stamps, run_ats, prios, lifos)
                 WITH ORDINALITY AS t(name, data, opts, stamp, run_at, prio, lifo, n)
        ), ins AS (
            INSERT INTO jobs AS j (queue, id, name, data, opts, state, score, seq,
                                   "timestamp", run_at, priority)
            SELECT q, i.jid, i.name, i.data, i.opts, i.st, i.sc, i.sq, i.stamp, i.run_at, i.prio
            FROM input i ORDER BY i.n
            ON CONFLICT DO NOTHING
            RETURNING j.id
        )
        SELECT i.n, i.jid, true, ins.id IS NOT NULL
        FROM input i LEFT JOIN ins ON ins.id = i.jid ORDER BY i.n;
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
            FROM unnest(ids, names, datas, optss, stamps, run_ats, prios, lifos)
                 WITH ORDINALITY AS t(id, name, data, opts, stamp, run_at, prio, lifo, n)
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
