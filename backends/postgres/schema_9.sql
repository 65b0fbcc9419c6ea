-- polyjobs PostgreSQL schema, version 9: pj_take enforces the queue's global concurrency
-- cap (`queues.concurrency`, version 6): takers of a capped queue lock its row, count its
-- active jobs and take no more than the cap allows; a taker that found the cap full is told
-- to look again within 0.25 s (a slot frees when a job of any worker ends).

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
        IF cap_full THEN  -- a slot frees when any job ends: look again soon
            j.run_at := least(j.run_at, now_ + 0.25);
        END IF;
        RETURN NEXT j;
    END IF;
END $$;
