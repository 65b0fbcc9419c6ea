-- polyjobs PostgreSQL schema, version 1. Runs inside one transaction with search_path set to
-- the deployment's schema (see schema.py); every name below lives in that schema.
--
-- One `jobs` row per job. `state` plus the pair (score, seq) orders each state:
--   waiting    score = priority,   seq = pj_seq (negative: LIFO, the front of its level)
--   delayed    score = due time,   seq = pj_seq (ties)
--   active     score = start time, seq = pj_seq at the take (fetch order)
--   completed  score = finish time, seq = pj_seq at the finish (newest last)
--   failed     score = finish time, seq = pj_seq at the finish
-- Times are epoch seconds (double precision) from the clock of the process that acts.

CREATE SEQUENCE pj_seq;
CREATE SEQUENCE pj_job_ids;

CREATE TABLE queues (
    queue         text PRIMARY KEY,
    paused        boolean NOT NULL DEFAULT false,
    rate_max      integer,
    rate_duration double precision,
    hold_until    double precision NOT NULL DEFAULT 0
);

-- a queue table is churned by every transition: vacuum it early and often, and leave room on
-- each page for HOT updates of the columns no index covers (lease renewals, progress)
CREATE TABLE jobs (
    queue            text NOT NULL,
    id               text NOT NULL,
    name             text NOT NULL,
    data             text NOT NULL,
    opts             text NOT NULL,
    state            text NOT NULL,
    score            double precision NOT NULL,
    seq              bigint NOT NULL,
    "timestamp"      double precision NOT NULL,
    run_at           double precision NOT NULL DEFAULT 0,
    priority         integer NOT NULL DEFAULT 0,
    attempts_made    integer NOT NULL DEFAULT 0,
    attempts_started integer NOT NULL DEFAULT 0,
    stalls           integer NOT NULL DEFAULT 0,
    progress         text,
    returnvalue      text,
    failed_reason    text,
    stacktrace       text,
    processed_on     double precision,
    finished_on      double precision,
    worker           text,
    lease_until      double precision,
    PRIMARY KEY (queue, id)
) WITH (
    fillfactor = 85,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02
);
CREATE INDEX jobs_by_state ON jobs (queue, state, score, seq);

CREATE TABLE job_logs (
    queue  text NOT NULL,
    job_id text NOT NULL,
    n      integer NOT NULL,
    line   text NOT NULL,
    PRIMARY KEY (queue, job_id, n),
    FOREIGN KEY (queue, job_id) REFERENCES jobs (queue, id) ON DELETE CASCADE
);

CREATE TABLE schedules (
    queue    text NOT NULL,
    key      text NOT NULL,
    name     text NOT NULL,
    data     text NOT NULL,
    opts     text NOT NULL,
    next_run double precision NOT NULL,
    every    double precision,
    cron     text,
    tz       text,
    missed   text NOT NULL,
    grace    double precision,
    created  double precision NOT NULL,
    PRIMARY KEY (queue, key)
);

CREATE TABLE workers (
    queue       text NOT NULL,
    id          text NOT NULL,
    host        text NOT NULL,
    pid         integer NOT NULL,
    concurrency integer NOT NULL,
    started     double precision NOT NULL,
    last_seen   double precision NOT NULL,
    active      integer NOT NULL,
    expires     double precision NOT NULL,
    PRIMARY KEY (queue, id)
);

-- recent job starts of rate-limited queues (one row per start, trimmed to the window)
CREATE TABLE rate_starts (queue text NOT NULL, at double precision NOT NULL);
CREATE INDEX rate_starts_by_queue ON rate_starts (queue, at);

-- commands to every process sharing the schema; times strictly increase, so `at` is the key
CREATE TABLE control (
    at      double precision PRIMARY KEY,
    command text NOT NULL,
    payload text NOT NULL
);

-- Add jobs: one row each of (ord, id, added) in input order. A NULL id takes the next number
-- of pj_job_ids; an automatic id that is taken (by a job with that explicit id, or one named
-- in this very call) comes back with added = false and `auto` = true, and the caller adds that
-- job again (so an explicit id in the same call is never reported as existing by mistake).
CREATE FUNCTION pj_add(
    q text, now_ double precision, channel text, ids text[], names text[], datas text[],
    optss text[], stamps double precision[], run_ats double precision[], prios integer[],
    lifos boolean[]
) RETURNS TABLE (ord bigint, job_id text, auto boolean, added boolean)
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM queues WHERE queue = q) THEN
        INSERT INTO queues (queue) VALUES (q) ON CONFLICT DO NOTHING;
    END IF;
    RETURN QUERY
    WITH input AS MATERIALIZED (
        SELECT t.n, t.id IS NULL AS is_auto,
               coalesce(t.id, nextval('pj_job_ids')::text) AS jid,
               t.name, t.data, t.opts, t.stamp, t.run_at, t.prio,
               CASE WHEN t.run_at > now_ THEN 'delayed' ELSE 'waiting' END AS st,
               CASE WHEN t.run_at > now_ THEN t.run_at ELSE t.prio::double precision END AS sc,
               CASE WHEN t.run_at <= now_ AND t.lifo THEN -nextval('pj_seq')
                    ELSE nextval('pj_seq') END AS sq
        FROM unnest(ids, names, datas, optss, stamps, run_ats, prios, lifos)
             WITH ORDINALITY AS t(id, name, data, opts, stamp, run_at, prio, lifo, n)
    ), firsts AS (
        -- one row per id (its first occurrence); automatic ids never take a name of this call
        SELECT DISTINCT ON (i.jid) i.*
        FROM input i
        WHERE NOT i.is_auto OR array_position(ids, i.jid) IS NULL
        ORDER BY i.jid, i.n
    ), ins AS (
        INSERT INTO jobs AS j (queue, id, name, data, opts, state, score, seq, "timestamp",
                               run_at, priority)
        SELECT q, f.jid, f.name, f.data, f.opts, f.st, f.sc, f.sq, f.stamp, f.run_at, f.prio
        FROM firsts f ORDER BY f.n
        ON CONFLICT DO NOTHING
        RETURNING j.id
    ), done AS (
        SELECT f.n FROM firsts f JOIN ins ON ins.id = f.jid
    )
    SELECT i.n, i.jid, i.is_auto, EXISTS (SELECT 1 FROM done d WHERE d.n = i.n)
    FROM input i ORDER BY i.n;
    IF coalesce(array_length(ids, 1), 0) > 0 THEN
        PERFORM pg_notify(channel, q);
    END IF;
END $$;

-- Apply retention to the finished jobs of one state: none older than `age` seconds before
-- now_, at most `keep` of them (NULL: no limit). Rows another transaction holds are skipped.
CREATE FUNCTION pj_trim(
    q text, st text, keep integer, age double precision, now_ double precision
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cut record;
BEGIN
    IF age IS NOT NULL THEN
        DELETE FROM jobs WHERE (queue, id) IN (
            SELECT j.queue, j.id FROM jobs j
            WHERE j.queue = q AND j.state = st AND j.score < now_ - age
            FOR UPDATE SKIP LOCKED);
    END IF;
    IF keep IS NOT NULL THEN
        SELECT j.score, j.seq INTO cut FROM jobs j WHERE j.queue = q AND j.state = st
        ORDER BY j.score DESC, j.seq DESC OFFSET keep LIMIT 1;
        IF FOUND THEN
            DELETE FROM jobs WHERE (queue, id) IN (
                SELECT j.queue, j.id FROM jobs j
                WHERE j.queue = q AND j.state = st AND (j.score, j.seq) <= (cut.score, cut.seq)
                FOR UPDATE SKIP LOCKED);
        END IF;
    END IF;
END $$;

-- When a fetch that found nothing should look again: the next delayed job's due time, or the
-- time the hold or the rate limiter lets a job start (when work is waiting), whichever first.
CREATE FUNCTION pj_next_look(q text, now_ double precision) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    meta record;
    due double precision;
    started integer;
    frees double precision;
BEGIN
    SELECT min(score) INTO due FROM jobs WHERE queue = q AND state = 'delayed';
    SELECT paused, rate_max, rate_duration, hold_until INTO meta FROM queues WHERE queue = q;
    IF NOT FOUND THEN
        RETURN due;
    END IF;
    IF meta.paused THEN
        RETURN NULL;  -- a resume wakes the fetch
    END IF;
    IF NOT EXISTS (SELECT 1 FROM jobs WHERE queue = q AND state = 'waiting')
       AND (due IS NULL OR due > now_) THEN
        RETURN due;
    END IF;
    IF meta.hold_until > now_ THEN
        RETURN meta.hold_until;
    END IF;
    IF meta.rate_max IS NOT NULL THEN
        SELECT count(*) INTO started FROM rate_starts
        WHERE queue = q AND at > now_ - meta.rate_duration;
        IF started >= meta.rate_max THEN
            -- one may start once all but rate_max - 1 of these starts have left the window
            SELECT at + meta.rate_duration INTO frees FROM rate_starts
            WHERE queue = q AND at > now_ - meta.rate_duration
            ORDER BY at OFFSET started - meta.rate_max LIMIT 1;
            RETURN frees;
        END IF;
    END IF;
    -- work is ready but other fetches hold it right now: look again shortly
    RETURN least(due, now_ + 0.05);
END $$;

-- Promote due delayed jobs, then move up to `lim` waiting jobs to active, owned by `token`
-- until `lease_until_`, as far as pause, hold and rate limit allow; rows in fetch order.
-- With `want_next` and nothing taken, one extra row (state 'next', run_at = pj_next_look or
-- NULL) tells the caller when to look again.
CREATE FUNCTION pj_take(
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
BEGIN
    FOR r IN SELECT d.id FROM jobs d WHERE d.queue = q AND d.state = 'delayed'
             AND d.score <= now_ ORDER BY d.score, d.seq FOR UPDATE SKIP LOCKED LOOP
        UPDATE jobs SET state = 'waiting', score = priority, seq = nextval('pj_seq')
        WHERE queue = q AND id = r.id;
    END LOOP;
    IF lim > 0 THEN
        SELECT paused, rate_max, rate_duration, hold_until INTO meta
        FROM queues WHERE queue = q;
        IF FOUND THEN
            IF meta.rate_max IS NOT NULL THEN
                -- takers of a rate-limited queue queue up on its row: no window sees more
                SELECT paused, rate_max, rate_duration, hold_until INTO meta
                FROM queues WHERE queue = q FOR UPDATE;
            END IF;
            IF meta.paused OR meta.hold_until > now_ THEN
                lim := 0;
            ELSIF meta.rate_max IS NOT NULL THEN
                limited := true;
                DELETE FROM rate_starts WHERE queue = q AND at <= now_ - meta.rate_duration;
                SELECT count(*) INTO started FROM rate_starts WHERE queue = q;
                lim := least(lim, meta.rate_max - started);
            END IF;
        END IF;
    END IF;
    IF lim > 0 THEN
        FOR r IN SELECT w.id FROM jobs w WHERE w.queue = q AND w.state = 'waiting'
                 ORDER BY w.score, w.seq LIMIT lim FOR UPDATE SKIP LOCKED LOOP
            UPDATE jobs SET state = 'active', worker = token, lease_until = lease_until_,
                processed_on = now_, score = now_, seq = nextval('pj_seq'),
                attempts_started = attempts_started + 1
            WHERE queue = q AND id = r.id RETURNING * INTO j;
            taken := taken + 1;
            RETURN NEXT j;
        END LOOP;
        IF limited AND taken > 0 THEN
            INSERT INTO rate_starts (queue, at) SELECT q, now_ FROM generate_series(1, taken);
        END IF;
    END IF;
    IF taken = 0 AND want_next THEN
        j := NULL;
        j.state := 'next';
        j.run_at := pj_next_look(q, now_);
        RETURN NEXT j;
    END IF;
END $$;

-- End active jobs owned by `token` (one array element per job), apply retention once per run
-- of equal (state, keep), wake fetches when a retry made a job ready, then take up to
-- `fetch_n` jobs. A job `token` does not own comes back as a row with state 'lost'.
CREATE FUNCTION pj_finish(
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
    p_state text;
    p_count integer;
    p_age double precision;
    p_now double precision;
BEGIN
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        SELECT state, worker, priority INTO cur FROM jobs
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
        ELSIF keep_counts[i] = 0 OR keep_ages[i] = 0 THEN
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
            pending := true;
            p_state := statuses[i];
            p_count := keep_counts[i];
            p_age := keep_ages[i];
            p_now := finished[i];
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

-- Append a log line to an existing job, keeping its last `keep` lines (0: all); the number of
-- lines kept, or 0 when the job does not exist.
CREATE FUNCTION pj_log(q text, jid text, line_ text, keep integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    last integer;
BEGIN
    PERFORM 1 FROM jobs WHERE queue = q AND id = jid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    SELECT coalesce(max(n), 0) INTO last FROM job_logs WHERE queue = q AND job_id = jid;
    INSERT INTO job_logs (queue, job_id, n, line) VALUES (q, jid, last + 1, line_);
    IF keep > 0 THEN
        DELETE FROM job_logs WHERE queue = q AND job_id = jid AND n <= last + 1 - keep;
    END IF;
    RETURN (SELECT count(*) FROM job_logs WHERE queue = q AND job_id = jid);
END $$;

-- Store a control message at max(now, last + 1 microsecond) (senders queue up on a
-- transaction lock, so times strictly increase across processes); keep the newest `keep`.
CREATE FUNCTION pj_control(now_ double precision, command_ text, payload_ text, keep integer)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    last double precision;
    at_ double precision := now_;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '.control'));
    SELECT max(at) INTO last FROM control;
    IF last IS NOT NULL AND at_ <= last THEN
        at_ := last + 1e-6;
    END IF;
    INSERT INTO control (at, command, payload) VALUES (at_, command_, payload_);
    DELETE FROM control WHERE at < (SELECT c.at FROM control c ORDER BY c.at DESC
                                    OFFSET keep - 1 LIMIT 1);
    RETURN at_;
END $$;
