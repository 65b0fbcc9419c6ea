-- polyjobs PostgreSQL schema, version 5: stored metrics (MetricsBackend).

-- Stored metrics: per queue and minute (its start, epoch seconds), the jobs pj_finish ended
-- completed and failed and the seconds of their processing (processed_on -> finished_on).
-- A new minute forgets the minutes more than 24 h older.
CREATE TABLE metrics (
    queue     text NOT NULL,
    minute    double precision NOT NULL,
    completed bigint NOT NULL DEFAULT 0,
    failed    bigint NOT NULL DEFAULT 0,
    time_sum  double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, minute)
);

CREATE FUNCTION pj_count(
    q text, status text, fin double precision, started double precision
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    m double precision := floor(fin / 60) * 60;
    inserted boolean;
BEGIN
    INSERT INTO metrics AS t (queue, minute, completed, failed, time_sum)
    VALUES (q, m, (status = 'completed')::int, (status = 'failed')::int,
            greatest(fin - coalesce(started, fin), 0))
    ON CONFLICT (queue, minute) DO UPDATE SET completed = t.completed + EXCLUDED.completed,
        failed = t.failed + EXCLUDED.failed, time_sum = t.time_sum + EXCLUDED.time_sum
    RETURNING (xmax = 0) INTO inserted;
    IF inserted THEN
        DELETE FROM metrics WHERE queue = q AND minute < m - 86400;
    END IF;
END $$;

-- pj_finish of version 3, counting each job it ends completed or failed (pj_count).
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
        SELECT state, worker, priority, linked, processed_on INTO cur FROM jobs
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
        IF statuses[i] <> 'retry' THEN
            PERFORM pj_count(q, statuses[i], finished[i], cur.processed_on);
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
