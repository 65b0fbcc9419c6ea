"""The SQLite schema, its version and its forward migrations.

``PRAGMA user_version`` holds the schema version and ``PRAGMA application_id`` marks the file as
a polyjobs database. ``MIGRATIONS[n]`` takes a file from version ``n - 1`` to ``n``; a file at a
version above :data:`SCHEMA_VERSION` was written by a newer polyjobs and is never touched.

One ``jobs`` row per job. ``state`` plus the pair (``score``, ``seq``) orders each state:

========= ======================= ===============================================
state     score                   seq
========= ======================= ===============================================
waiting   priority                queue sequence (negative: LIFO, front of level)
delayed   due time (``run_at``)   queue sequence (ties)
active    start time              unchanged (``lease_until`` is the lease)
completed finish time             queue sequence at finish (newest last)
failed    finish time             queue sequence at finish (newest last)
waiting-  creation time           queue sequence at creation
children
========= ======================= ===============================================

Flows: ``job_deps`` holds one row per (parent, child) edge, ``pending`` until the child is done,
then ``processed`` (``value``: its return value) or ``ignored`` (``value``: its failed reason);
``jobs.policy`` is a child's failure policy and ``jobs.parent_delay`` a parent's delay, counted
from its release. Deduplication windows: ``dedup`` maps a queue's deduplication id to the job
holding it, until ``expires`` (NULL: until the job ends), with the kept ``next`` add (JSON).
Metrics: ``metrics`` holds a queue's counted minutes (see ``MetricsBackend``).
``jobs.cancel_reason`` is an active job's cancel request; ``queue_meta.concurrency`` the queue's
fleet-wide cap on active jobs (NULL: none).

Groups (schema 8): ``jobs.grp`` is a job's group. It stays NULL in a queue that never had a
grouped job (``queue_meta.has_groups`` 0), so such queues take jobs as before; the first
grouped add sets ``has_groups`` and gives the queue's other jobs ``''`` (the jobs without a
group, one member of the ring). ``job_groups`` holds each group's last turn (``served``, a
queue sequence) and hold; ``group_starts`` the recent starts per group (group rate limit);
``queue_meta.group_concurrency``, ``group_rate_max``/``group_rate_duration`` the limits.
``queue_meta.group_turns`` (schema 9) counts the turns taken since groups with no job left
were last forgotten (every 256 turns, whichever process takes them).
"""

from __future__ import annotations

SCHEMA_VERSION = 9
APPLICATION_ID = 0x706A6221  # "pjb!"

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE queue_meta (
            queue   TEXT PRIMARY KEY,
            paused  INTEGER NOT NULL DEFAULT 0,
            next_id INTEGER NOT NULL DEFAULT 0,
            seq     INTEGER NOT NULL DEFAULT 0
        )
        """,
        """
        CREATE TABLE jobs (
            queue            TEXT NOT NULL,
            id               TEXT NOT NULL,
            name             TEXT NOT NULL,
            data             TEXT NOT NULL,
            opts             TEXT NOT NULL,
            state            TEXT NOT NULL,
            score            REAL NOT NULL,
            seq              INTEGER NOT NULL,
            timestamp        REAL NOT NULL,
            run_at           REAL NOT NULL DEFAULT 0,
            priority         INTEGER NOT NULL DEFAULT 0,
            attempts_made    INTEGER NOT NULL DEFAULT 0,
            attempts_started INTEGER NOT NULL DEFAULT 0,
            stalls           INTEGER NOT NULL DEFAULT 0,
            progress         TEXT,
            returnvalue      TEXT,
            failed_reason    TEXT,
            stacktrace       TEXT,
            processed_on     REAL,
            finished_on      REAL,
            worker           TEXT,
            lease_until      REAL,
            PRIMARY KEY (queue, id)
        )
        """,
        "CREATE INDEX jobs_by_state ON jobs (queue, state, score, seq)",
        """
        CREATE TABLE job_logs (
            queue  TEXT NOT NULL,
            job_id TEXT NOT NULL,
            n      INTEGER NOT NULL,
            line   TEXT NOT NULL,
            PRIMARY KEY (queue, job_id, n)
        ) WITHOUT ROWID
        """,
        """
        CREATE TRIGGER jobs_drop_logs AFTER DELETE ON jobs BEGIN
            DELETE FROM job_logs WHERE queue = old.queue AND job_id = old.id;
        END
        """,
        """
        CREATE TABLE schedules (
            queue    TEXT NOT NULL,
            key      TEXT NOT NULL,
            name     TEXT NOT NULL,
            data     TEXT NOT NULL,
            opts     TEXT NOT NULL,
            next_run REAL NOT NULL,
            every    REAL,
            cron     TEXT,
            tz       TEXT,
            missed   TEXT NOT NULL,
            grace    REAL,
            created  REAL NOT NULL,
            PRIMARY KEY (queue, key)
        )
        """,
        """
        CREATE TABLE workers (
            queue       TEXT NOT NULL,
            id          TEXT NOT NULL,
            host        TEXT NOT NULL,
            pid         INTEGER NOT NULL,
            concurrency INTEGER NOT NULL,
            started     REAL NOT NULL,
            last_seen   REAL NOT NULL,
            active      INTEGER NOT NULL,
            expires     REAL NOT NULL,
            PRIMARY KEY (queue, id)
        )
        """,
    ),
    2: (
        # rate limits: at most rate_max starts in any rate_duration seconds; holds
        "ALTER TABLE queue_meta ADD COLUMN rate_max INTEGER",
        "ALTER TABLE queue_meta ADD COLUMN rate_duration REAL",
        "ALTER TABLE queue_meta ADD COLUMN hold_until REAL NOT NULL DEFAULT 0",
        "CREATE TABLE rate_starts (queue TEXT NOT NULL, at REAL NOT NULL)",
        "CREATE INDEX rate_starts_by_queue ON rate_starts (queue, at)",
    ),
    3: (
        # the control channel: commands to every process sharing the file (not per queue);
        # times strictly increase, so the time is also the key and the order
        """
        CREATE TABLE control (
            at      REAL PRIMARY KEY,
            command TEXT NOT NULL,
            payload TEXT NOT NULL
        )
        """,
    ),
    4: (
        # flows and deduplication windows
        "ALTER TABLE jobs ADD COLUMN policy TEXT",
        "ALTER TABLE jobs ADD COLUMN parent_delay REAL",
        """
        CREATE TABLE job_deps (
            queue       TEXT NOT NULL,
            id          TEXT NOT NULL,
            child_queue TEXT NOT NULL,
            child_id    TEXT NOT NULL,
            status      TEXT NOT NULL,
            value       TEXT,
            PRIMARY KEY (queue, id, child_queue, child_id)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX job_deps_by_child ON job_deps (child_queue, child_id)",
        "CREATE INDEX job_deps_pending ON job_deps (queue, id) WHERE status = 'pending'",
        """
        CREATE TABLE dedup (
            queue   TEXT NOT NULL,
            key     TEXT NOT NULL,
            job_id  TEXT NOT NULL,
            expires REAL,
            next    TEXT,
            PRIMARY KEY (queue, key)
        )
        """,
        "CREATE INDEX dedup_by_job ON dedup (queue, job_id)",
    ),
    # when each worker's fetch loop last succeeded (polyjobs health)
    5: ("ALTER TABLE workers ADD COLUMN fetched REAL NOT NULL DEFAULT 0",),
    6: (
        """
        CREATE TABLE metrics (
            queue     TEXT NOT NULL,
            minute    REAL NOT NULL,
            completed INTEGER NOT NULL DEFAULT 0,
            failed    INTEGER NOT NULL DEFAULT 0,
            time_sum  REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (queue, minute)
        ) WITHOUT ROWID
        """,
    ),
    7: (
        "ALTER TABLE jobs ADD COLUMN cancel_reason TEXT",
        "ALTER TABLE queue_meta ADD COLUMN concurrency INTEGER",
    ),
    8: (
        "ALTER TABLE jobs ADD COLUMN grp TEXT",
        "CREATE INDEX jobs_by_group ON jobs (queue, grp, state, score, seq) WHERE grp IS NOT NULL",
        "ALTER TABLE queue_meta ADD COLUMN has_groups INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE queue_meta ADD COLUMN group_concurrency INTEGER",
        "ALTER TABLE queue_meta ADD COLUMN group_rate_max INTEGER",
        "ALTER TABLE queue_meta ADD COLUMN group_rate_duration REAL",
        """
        CREATE TABLE job_groups (
            queue      TEXT NOT NULL,
            grp        TEXT NOT NULL,
            served     INTEGER NOT NULL DEFAULT 0,
            held_until REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (queue, grp)
        ) WITHOUT ROWID
        """,
        "CREATE TABLE group_starts (queue TEXT NOT NULL, grp TEXT NOT NULL, at REAL NOT NULL)",
        "CREATE INDEX group_starts_by_group ON group_starts (queue, grp, at)",
    ),
    9: ("ALTER TABLE queue_meta ADD COLUMN group_turns INTEGER NOT NULL DEFAULT 0",),
}

#: Tables a polyjobs file may hold; a version-0 file with any other table is not ours.
OWN_TABLES = frozenset(
    {
        "queue_meta",
        "jobs",
        "job_logs",
        "schedules",
        "workers",
        "rate_starts",
        "control",
        "job_deps",
        "dedup",
        "metrics",
        "job_groups",
        "group_starts",
    }
)

assert max(MIGRATIONS) == SCHEMA_VERSION
