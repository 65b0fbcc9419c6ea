-- polyjobs PostgreSQL schema, version 3: flows and deduplication windows (the rules are in
-- FlowBackend and DedupBackend of polyjobs/backend.py).
--
-- Flows: `job_deps` holds one row per (parent, child) edge, 'pending' until the child is done,
-- then 'processed' (`value`: its return value, JSON) or 'ignored' (`value`: its failure
-- reason). A parent waits in state 'waiting-children' (score: creation time); its delay, if
-- any, is run_at - timestamp and counts from its release. A child's failure policy is the
-- `failure_policy` of its options (absent: 'wait').
--
-- Deduplication windows: `dedup` maps a queue's deduplication id to the job holding it, until
-- `expires` (NULL: until the job ends), with the add `kept` to run after an active holder.
--
-- `jobs.linked` marks a job that is (or was) a parent, a child or a window's holder. Deleting
-- such a job, by any statement (remove, clean, drain, retention, obliterate), runs the trigger
-- `jobs_unlinked` in the same transaction: its edges and windows are settled atomically with
-- the removal. Other jobs never run it (the trigger's WHEN is evaluated without a call).
--
-- Concurrency: whoever decides on a parent (release it, fail it) first locks the parent's row
-- (FOR UPDATE), and looks at its pending edges only after that, so two children finishing at
-- once never both miss each other. A flow's existing jobs are locked FOR SHARE while the flow
-- links them, so a child cannot finish unseen in between. Adds and ends of one window queue
-- up on a transaction-level advisory lock named after (schema, queue, deduplication id).

ALTER TABLE jobs ADD COLUMN linked boolean NOT NULL DEFAULT false;

CREATE TABLE job_deps (
    queue       text NOT NULL,
    id          text NOT NULL,
    child_queue text NOT NULL,
    child_id    text NOT NULL,
    status      text NOT NULL,
    value       text,
    PRIMARY KEY (queue, id, child_queue, child_id)
);
CREATE INDEX job_deps_by_child ON job_deps (child_queue, child_id);
CREATE INDEX job_deps_pending ON job_deps (queue, id) WHERE status = 'pending';

CREATE TABLE dedup (
    queue   text NOT NULL,
    key     text NOT NULL,
    job_id  text NOT NULL,
    expires double precision,
    kept    text,
    PRIMARY KEY (queue, key)
);
CREATE INDEX dedup_by_job ON dedup (queue, job_id);

-- the server's clock, for the moments a flow decides (a parent's release, a parent failing)
CREATE FUNCTION pj_now() RETURNS double precision LANGUAGE sql AS $$
    SELECT extract(epoch FROM clock_timestamp())::double precision
$$;

-- the LISTEN/NOTIFY channel of this schema, as PostgresUrl.channel names it
CREATE FUNCTION pj_channel() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN length('polyjobs_' || current_schema()) <= 63
                THEN 'polyjobs_' || current_schema()
                ELSE 'polyjobs_' || left(encode(sha256(convert_to(current_schema(), 'UTF8')),
                                                'hex'), 32) END
$$;

CREATE FUNCTION pj_dedup_lock(q text, k text) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT hashtextextended(format('polyjobs-dedup|%s|%s|%s', current_schema(), q, k), 0)
$$;

-- Insert one job: waiting, delayed, or (`parent`) waiting-children; a NULL id takes the next
-- free number. Returns the id, or NULL when the given id exists.
CREATE FUNCTION pj_insert_job(
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
BEGIN
    IF NOT EXISTS (SELECT 1 FROM queues WHERE queue = q) THEN
        INSERT INTO queues (queue) VALUES (q) ON CONFLICT DO NOTHING;
    END IF;
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
                          priority, linked)
        VALUES (q, nid, name_, data_, opts_, st, sc, sq, stamp, run_at_, prio, linked_)
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

-- Move a parent out of waiting-children: to waiting, or to delayed when it has a delay
-- (counted from now). Locks the parent's row.
CREATE FUNCTION pj_release(q text, jid text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cur record;
    due double precision;
BEGIN
    SELECT j.state, j.run_at, j."timestamp" AS stamp INTO cur FROM jobs j
    WHERE j.queue = q AND j.id = jid FOR UPDATE;
    IF NOT FOUND OR cur.state <> 'waiting-children' THEN
        RETURN;
    END IF;
    IF cur.run_at > cur.stamp THEN
        due := pj_now() + (cur.run_at - cur.stamp);
        UPDATE jobs SET state = 'delayed', score = due, seq = nextval('pj_seq'), run_at = due
        WHERE queue = q AND id = jid;
    ELSE
        UPDATE jobs SET state = 'waiting', score = priority, seq = nextval('pj_seq')
        WHERE queue = q AND id = jid;
    END IF;
    PERFORM pg_notify(pj_channel(), q);
END $$;

-- Release a parent once none of its children is pending (the parent's row is locked before
-- its edges are read).
CREATE FUNCTION pj_release_if_done(q text, jid text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM jobs WHERE queue = q AND id = jid AND state = 'waiting-children' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM job_deps
               WHERE queue = q AND id = jid AND status = 'pending') THEN
        RETURN;
    END IF;
    PERFORM pj_release(q, jid);
END $$;

-- A child completed: each parent waiting for it keeps its value (JSON text).
CREATE FUNCTION pj_child_completed(q text, jid text, val text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    pqs text[];
    pids text[];
    k integer;
BEGIN
    WITH done AS (
        UPDATE job_deps SET status = 'processed', value = val
        WHERE child_queue = q AND child_id = jid AND status = 'pending'
        RETURNING queue, id
    )
    SELECT array_agg(d.queue ORDER BY d.queue, d.id), array_agg(d.id ORDER BY d.queue, d.id)
    INTO pqs, pids FROM done d;
    FOR k IN 1 .. coalesce(cardinality(pqs), 0) LOOP
        PERFORM pj_release_if_done(pqs[k], pids[k]);
    END LOOP;
END $$;

-- Apply a failed-for-good retention to a parent a flow failed (its remove_on_fail; absent:
-- the default of polyjobs.options.KEEP_FAILED, the newest 1000).
CREATE FUNCTION pj_retain_failed(q text, jid text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    spec jsonb;
    cnt integer := 1000;
    age double precision;
BEGIN
    SELECT (j.opts::jsonb) -> 'remove_on_fail' INTO spec FROM jobs j
    WHERE j.queue = q AND j.id = jid AND j.state = 'failed';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF spec IS NOT NULL AND jsonb_typeof(spec) = 'object' THEN
        cnt := (spec ->> 'count')::integer;
        age := (spec ->> 'age')::double precision;
    END IF;
    IF cnt = 0 OR age = 0 THEN
        DELETE FROM jobs WHERE queue = q AND id = jid;
    ELSIF cnt IS NOT NULL OR age IS NOT NULL THEN
        PERFORM pj_trim(q, 'failed', cnt, age, pj_now());
    END IF;
END $$;

-- A job ended for good (completed, failed): free its window, or add the kept next job as its
-- holder.
CREATE FUNCTION pj_window_ends(q text, jid text, now_ double precision) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    k text;
    w record;
    nxt jsonb;
    nid text;
BEGIN
    SELECT d.key INTO k FROM dedup d WHERE d.queue = q AND d.job_id = jid LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(pj_dedup_lock(q, k));
    SELECT d.expires, d.kept INTO w FROM dedup d
    WHERE d.queue = q AND d.key = k AND d.job_id = jid;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF w.kept IS NOT NULL THEN
        nxt := w.kept::jsonb;
        nid := pj_insert_job(q, NULL, nxt ->> 'name', nxt ->> 'data', nxt ->> 'opts', now_,
                             now_ + (nxt ->> 'delay')::double precision,
                             (nxt ->> 'priority')::integer, (nxt ->> 'lifo')::boolean,
                             false, true, now_);
        UPDATE dedup SET job_id = nid, kept = NULL WHERE queue = q AND key = k;
        PERFORM pg_notify(pj_channel(), q);
    ELSIF w.expires IS NULL THEN
        DELETE FROM dedup WHERE queue = q AND key = k;
    END IF;
END $$;

-- Fail a parent still in waiting-children; true when it was (its window, if any, ends).
CREATE FUNCTION pj_fail_waiting(q text, jid text, reason text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    now_ double precision := pj_now();
    n integer;
BEGIN
    UPDATE jobs SET state = 'failed', score = now_, seq = nextval('pj_seq'),
        failed_reason = reason, finished_on = now_
    WHERE queue = q AND id = jid AND state = 'waiting-children';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pj_window_ends(q, jid, now_);
    END IF;
    RETURN n > 0;
END $$;

-- A job failed for good: apply its failure policy to the parents waiting for it (to `only_q`,
-- `only_id` alone when given: a flow linking an already failed child), failing parents in
-- turn up the tree.
CREATE FUNCTION pj_child_failed(q text, jid text, why text, only_q text, only_id text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    pol text;
    pqs text[];
    pids text[];
    k integer;
    reason text;
BEGIN
    SELECT coalesce((j.opts::jsonb) ->> 'failure_policy', 'wait') INTO pol FROM jobs j
    WHERE j.queue = q AND j.id = jid;
    IF NOT FOUND OR pol = 'wait' THEN
        RETURN;
    END IF;
    IF only_q IS NULL THEN
        SELECT array_agg(d.queue ORDER BY d.queue, d.id), array_agg(d.id ORDER BY d.queue, d.id)
        INTO pqs, pids FROM job_deps d
        WHERE d.child_queue = q AND d.child_id = jid AND d.status = 'pending';
    ELSE
        pqs := ARRAY[only_q];
        pids := ARRAY[only_id];
    END IF;
    FOR k IN 1 .. coalesce(cardinality(pqs), 0) LOOP
        IF pol = 'fail' THEN
            reason := format('child %s:%s failed: %s', q, jid, why);
            IF pj_fail_waiting(pqs[k], pids[k], reason) THEN
                PERFORM pj_child_failed(pqs[k], pids[k], reason, NULL, NULL);
                PERFORM pj_retain_failed(pqs[k], pids[k]);
            END IF;
            CONTINUE;
        END IF;
        IF pol = 'remove' THEN
            DELETE FROM job_deps
            WHERE queue = pqs[k] AND id = pids[k] AND child_queue = q AND child_id = jid;
        ELSE
            UPDATE job_deps SET status = 'ignored', value = why
            WHERE queue = pqs[k] AND id = pids[k] AND child_queue = q AND child_id = jid
              AND status = 'pending';
        END IF;
        IF pol = 'continue' THEN
            PERFORM pj_release(pqs[k], pids[k]);
        ELSE
            PERFORM pj_release_if_done(pqs[k], pids[k]);
        END IF;
    END LOOP;
END $$;

-- A job failed for good outside pj_finish (stall recovery): its policy, then its window.
CREATE FUNCTION pj_job_failed(q text, jid text, why text, now_ double precision)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pj_child_failed(q, jid, why, NULL, NULL);
    PERFORM pj_window_ends(q, jid, now_);
END $$;

-- A linked job was deleted: free the windows it held, forget its children, and unlink it from
-- its parents: a failed child fails the parents still waiting for it (nothing can complete it
-- any more); any other child releases them once nothing else is pending. Values and reasons
-- already kept by parents stay. It runs with the schema as its search path whoever deletes
-- (an operator's session too).
CREATE FUNCTION pj_unlinked() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    pqs text[];
    pids text[];
    k integer;
    reason text;
BEGIN
    DELETE FROM dedup WHERE queue = OLD.queue AND job_id = OLD.id;
    DELETE FROM job_deps WHERE queue = OLD.queue AND id = OLD.id;
    WITH gone AS (
        DELETE FROM job_deps
        WHERE child_queue = OLD.queue AND child_id = OLD.id AND status = 'pending'
        RETURNING queue, id
    )
    SELECT array_agg(g.queue ORDER BY g.queue, g.id), array_agg(g.id ORDER BY g.queue, g.id)
    INTO pqs, pids FROM gone g;
    FOR k IN 1 .. coalesce(cardinality(pqs), 0) LOOP
        IF OLD.state = 'failed' THEN
            reason := format('child %s:%s failed and was removed', OLD.queue, OLD.id);
            IF pj_fail_waiting(pqs[k], pids[k], reason) THEN
                PERFORM pj_child_failed(pqs[k], pids[k], reason, NULL, NULL);
                PERFORM pj_retain_failed(pqs[k], pids[k]);
            END IF;
        ELSE
            PERFORM pj_release_if_done(pqs[k], pids[k]);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_unlinked AFTER DELETE ON jobs
FOR EACH ROW WHEN (OLD.linked) EXECUTE FUNCTION pj_unlinked();

-- Link a new parent to its children (jobs that exist, locked by the caller): an edge each,
-- 'processed' with the value of a child already completed; an already failed child applies
-- its policy to this parent; the parent is released at once when nothing is pending.
CREATE FUNCTION pj_link(pq text, pid text, cqs text[], cids text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    ch record;
BEGIN
    INSERT INTO job_deps (queue, id, child_queue, child_id, status, value)
    SELECT pq, pid, j.queue, j.id,
           CASE WHEN j.state = 'completed' THEN 'processed' ELSE 'pending' END,
           CASE WHEN j.state = 'completed' THEN coalesce(j.returnvalue, 'null') END
    FROM (SELECT DISTINCT u.q, u.i FROM unnest(cqs, cids) AS u(q, i)) c
    JOIN jobs j ON j.queue = c.q AND j.id = c.i
    ON CONFLICT DO NOTHING;
    UPDATE jobs j SET linked = true
    FROM (SELECT DISTINCT u.q, u.i FROM unnest(cqs, cids) AS u(q, i)) c
    WHERE j.queue = c.q AND j.id = c.i AND NOT j.linked;
    FOR ch IN
        SELECT j.queue AS cq, j.id AS cid, coalesce(j.failed_reason, '') AS why
        FROM (SELECT DISTINCT u.q, u.i FROM unnest(cqs, cids) AS u(q, i)) c
        JOIN jobs j ON j.queue = c.q AND j.id = c.i
        WHERE j.state = 'failed' ORDER BY 1, 2
    LOOP
        PERFORM pj_child_failed(ch.cq, ch.cid, ch.why, pq, pid);
    END LOOP;
    PERFORM pj_release_if_done(pq, pid);
END $$;

-- Add a flow, all or nothing: node i (in topological order: children first) is a new job, or
-- the existing job ids[i] of queues[i] (`refs[i]`: it must exist). Its children are
-- kids[kid_starts[i] .. kid_starts[i] + kid_counts[i] - 1] (1-based node indexes). Raises
-- SQLSTATE PJ400 for a reference to a missing job or children given to an existing job.
-- One row per node: its id and whether it was added.
CREATE FUNCTION pj_add_flow(
    now_ double precision, queues_ text[], ids text[], refs boolean[], names text[],
    datas text[], optss text[], stamps double precision[], run_ats double precision[],
    prios integer[], lifos boolean[], linkeds boolean[], kid_starts integer[],
    kid_counts integer[], kids integer[]
) RETURNS TABLE (out_id text, out_added boolean) LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(cardinality(queues_), 0);
    i integer;
    there boolean[] := '{}';
    made text[] := '{}';
    nid text;
    cqs text[];
    cids text[];
BEGIN
    FOR i IN 1 .. n LOOP
        there[i] := false;
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
    END LOOP;
    FOR i IN 1 .. n LOOP
        nid := NULL;
        IF NOT there[i] THEN
            nid := pj_insert_job(queues_[i], ids[i], names[i], datas[i], optss[i], stamps[i],
                                 run_ats[i], prios[i], lifos[i], kid_counts[i] > 0, linkeds[i],
                                 now_);
            IF nid IS NULL THEN  -- another transaction added this id in the meantime
                IF kid_counts[i] > 0 THEN
                    RAISE EXCEPTION USING ERRCODE = 'PJ400', MESSAGE = format(
                        'job %s:%s already exists: a flow cannot give it children',
                        queues_[i], ids[i]);
                END IF;
                PERFORM 1 FROM jobs WHERE queue = queues_[i] AND id = ids[i] FOR SHARE;
            END IF;
        END IF;
        IF nid IS NULL THEN
            made[i] := ids[i];
            out_id := ids[i];
            out_added := false;
            RETURN NEXT;
            CONTINUE;
        END IF;
        made[i] := nid;
        IF kid_counts[i] > 0 THEN
            SELECT array_agg(queues_[kids[x]] ORDER BY x), array_agg(made[kids[x]] ORDER BY x)
            INTO cqs, cids
            FROM generate_series(kid_starts[i], kid_starts[i] + kid_counts[i] - 1) AS x;
            PERFORM pj_link(queues_[i], nid, cqs, cids);
        END IF;
        out_id := nid;
        out_added := true;
        RETURN NEXT;
    END LOOP;
    PERFORM pg_notify(pj_channel(), x.q) FROM (SELECT DISTINCT u.q FROM unnest(queues_) AS u(q)) x;
END $$;

-- Add one job with a deduplication window (see DedupBackend): the job's own id, when given
-- and taken, wins (nothing is added, no window is looked at); else an add whose window is
-- held is absorbed ('ignored', 'replaced' or 'kept-next', with the holder's id), and a free
-- window gets the new job as its holder.
CREATE FUNCTION pj_add_dedup(
    q text, now_ double precision, jid text, name_ text, data_ text, opts_ text,
    stamp double precision, run_at_ double precision, prio integer, lifo boolean, k text,
    ttl double precision, extend_ boolean, replace_ boolean, keep_last boolean
) RETURNS TABLE (out_id text, out_added boolean, out_dedup text) LANGUAGE plpgsql AS $$
DECLARE
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

-- pj_finish of version 1, settling flows and windows: a linked job that completes or fails
-- for good is stored in its final state first (even when its retention removes it at once),
-- its parents and its window are settled, then retention applies (deleting it runs
-- jobs_unlinked).
CREATE OR REPLACE FUNCTION pj_finish(
    q text, token text, now_ double precision, lease_until_ double precision, fetch_n integer,
    channel text, ids text[], statuses text[], attempts integer[],
    finished double precision[], rvals text[], reasons text[], stacks text[],
    retry_ats double precision[], keep_counts integer[], keep_ages double precision[]
) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    cur record;
    j jobs;
    woke boolean := false;
    pending boolean := false;
    at_once boolean;
    p_state text;
    p_count integer;
    p_age double precision;
    p_now double precision;
BEGIN
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        SELECT state, worker, priority, linked INTO cur FROM jobs
        WHERE queue = q AND id = ids[i] FOR UPDATE;
        IF NOT FOUND OR cur.state <> 'active' OR cur.worker IS DISTINCT FROM token THEN
            j := NULL;
            j.id := ids[i];
            j.state := 'lost';
            RETURN NEXT j;
            CONTINUE;
        END IF;
        IF statuses[i] <> 'retry' AND pending
           AND (p_state, p_count, p_age) IS DISTINCT FROM
               (statuses[i], keep_counts[i], keep_ages[i]) THEN
            PERFORM pj_trim(q, p_state, p_count, p_age, p_now);
            pending := false;
        END IF;
        at_once := keep_counts[i] = 0 OR keep_ages[i] = 0;
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
            IF cur.linked THEN
                IF statuses[i] = 'completed' THEN
                    PERFORM pj_child_completed(q, ids[i], coalesce(rvals[i], 'null'));
                ELSE
                    PERFORM pj_child_failed(q, ids[i], coalesce(reasons[i], ''), NULL, NULL);
                END IF;
                PERFORM pj_window_ends(q, ids[i], finished[i]);
            END IF;
            IF at_once THEN
                DELETE FROM jobs WHERE queue = q AND id = ids[i];
            ELSE
                pending := true;
                p_state := statuses[i];
                p_count := keep_counts[i];
                p_age := keep_ages[i];
                p_now := finished[i];
            END IF;
        END IF;
    END LOOP;
    IF pending THEN
        PERFORM pj_trim(q, p_state, p_count, p_age, p_now);
    END IF;
    IF woke THEN
        PERFORM pg_notify(channel, q);
    END IF;
    IF fetch_n > 0 THEN
        RETURN QUERY SELECT * FROM pj_take(q, token, fetch_n, now_, lease_until_, false);
    END IF;
END $$;
