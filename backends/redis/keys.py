"""Every Redis key name of the Redis backend, built here and nowhere else.

All keys of one queue share the hash tag ``{<queue>}`` so that each script touches a single Redis
Cluster slot::

    <prefix>:{<queue>}:wait        ZSET  waiting jobs: score = priority, member = order + id
    <prefix>:{<queue>}:delayed     ZSET  delayed jobs: score = due time, member = order + id
    <prefix>:{<queue>}:active      ZSET  job id -> lease deadline
    <prefix>:{<queue>}:completed   ZSET  job id -> finish time
    <prefix>:{<queue>}:failed      ZSET  job id -> finish time
    <prefix>:{<queue>}:meta        HASH  paused flag, id and order counters, registration flag,
                                         rate limit (rlm max, rld duration), hold-until (hold),
                                         global concurrency cap (gc), groups: gon, gwn
                                         (grouped jobs waiting), gus, gcc, grm/grd
    <prefix>:{<queue>}:limiter     ZSET  recent job starts (score = start time), only while a
                                         rate limit is set; trimmed to its window
    <prefix>:{<queue>}:marker      ZSET  wake-up key blocked fetches pop (BZPOPMIN)
    <prefix>:{<queue>}:sched       HASH  schedule key -> definition (JSON)
    <prefix>:{<queue>}:sched:next  HASH  schedule key -> next run (repr of a float)
    <prefix>:{<queue>}:sched:cad   HASH  schedule key -> cadence (JSON of every/cron/tz)
    <prefix>:{<queue>}:workers     ZSET  worker id -> registry expiry
    <prefix>:{<queue>}:workers:info HASH worker id -> WorkerInfo (JSON)
    <prefix>:{<queue>}:events      STREAM  best-effort job events, trimmed to ~EVENTS_MAXLEN
    <prefix>:{<queue>}:wc          ZSET  parents waiting for children (score = creation, µs)
    <prefix>:{<queue>}:j:<id>      HASH  one job
    <prefix>:{<queue>}:l:<id>      LIST  its log lines
    <prefix>:{<queue>}:pa:<id>     SET   its parents ("<queue> <id>" each)
    <prefix>:{<queue>}:dp:<id>     SET   its pending children
    <prefix>:{<queue>}:dv:<id>     HASH  child -> return value, for its processed children
    <prefix>:{<queue>}:di:<id>     HASH  child -> failed reason, for its ignored children
    <prefix>:{<queue>}:de:<dedup>  HASH  a deduplication window: holder j, end x, kept next n
    <prefix>:{<queue>}:metrics     HASH  stored metrics: c:<minute>, f:<minute>, t:<minute>
                                         (completed, failed, processing seconds), newest
    <prefix>:{<queue>}:gw:<group>  ZSET  waiting jobs of one group (as wait; wait then holds
                                         only the jobs without a group)
    <prefix>:{<queue>}:gring       ZSET  groups that may be ready -> their last turn
    <prefix>:{<queue>}:gsv         HASH  group -> its last turn (groups with waiting/active jobs)
    <prefix>:{<queue>}:gact        HASH  group -> its active jobs
    <prefix>:{<queue>}:ghold       ZSET  held groups -> until (a hold or a full rate window)
    <prefix>:{<queue>}:gst:<group> ZSET  recent starts of a group (group rate limit; expires)
    <prefix>:queues                SET   names of known queues (outside the hash tag)
    <prefix>:control               ZSET  control messages (score = time), the last CONTROL_KEEP

A job's keys are its id after a tag (``j:``, ``l:``, ``pa:``, ``dp:``, ``dv:``, ``di:``; a
window's ``de:``) that no fixed key starts with: whatever the
id (``x:log``, ``wait``, ``j:1``), no job key is another job's key, a log or a fixed key.

Scripts receive the fixed keys as ``KEYS`` in the order of :data:`SCRIPT_KEYS` and the queue's
key prefix (``<prefix>:{<queue>}:``) as ``ARGV[1]``; the Lua prelude that names them is generated
from this module.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "polyjobs"
#: What comes between a queue's prefix and a job id, for the job hash and for its log.
JOB_TAG = "j:"
LOG_TAG = "l:"

#: The fixed per-queue keys every script gets, in ``KEYS`` order.
SCRIPT_KEYS: tuple[str, ...] = (
    "wait",
    "delayed",
    "active",
    "completed",
    "failed",
    "meta",
    "marker",
    "sched",
    "sched_next",
    "sched_cad",
    "workers",
    "workers_info",
    "events",
    "limiter",
    "wc",
)

#: How many control messages ``<prefix>:control`` keeps (the contract asks for at least 100).
CONTROL_KEEP = 100

#: About how many events a queue's stream keeps (``XADD MAXLEN ~``).
EVENTS_MAXLEN = 10_000


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The key names of one queue."""

    prefix: str
    queue: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.queue}}}:"

    def key(self, name: str) -> str:
        """A fixed key by its :data:`SCRIPT_KEYS` name (``sched_next`` -> ``sched:next``)."""
        return self.base + name.replace("_", ":")

    @property
    def script_keys(self) -> list[str]:
        return [self.key(name) for name in SCRIPT_KEYS]

    def job(self, job_id: str) -> str:
        return self.base + JOB_TAG + job_id

    def log(self, job_id: str) -> str:
        return self.base + LOG_TAG + job_id


def registry_key(prefix: str) -> str:
    """The set of queue names (one key for all queues, so outside any hash tag)."""
    return f"{prefix}:queues"


def control_key(prefix: str) -> str:
    """The control channel of every process sharing the backend (global: no hash tag)."""
    return f"{prefix}:control"
