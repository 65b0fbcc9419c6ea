"""The in-process backend (``memory://``): every queue in dicts and heaps of this process.

Each method runs without an ``await`` between reading and writing, so on one event loop every
transition is atomic. Waiting workers sleep on an ``asyncio.Condition`` per queue and wake on
add, resume, release and stall recovery, or when the next delayed job falls due.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from polyjobs.backend import (
    CAP_CANCEL,
    CAP_CONTROL,
    CAP_DEDUP,
    CAP_FLOWS,
    CAP_FLOWS_ACROSS_QUEUES,
    CAP_GLOBAL_CONCURRENCY,
    CAP_GROUPS,
    CAP_METRICS,
    CAP_RATE_LIMIT,
    METRICS_KEEP,
    AddResult,
    CancelOutcome,
    ControlMessage,
    Finish,
    FinishResult,
    JobRecord,
    JobRef,
    JobState,
    MinuteMetrics,
    NewJob,
    ScheduleRecord,
    Stalled,
    WorkerInfo,
    count_finish,
    inclusive_range,
    minute_of,
)
from polyjobs.backends.memory.flows import FlowsMixin, Graph, Hold
from polyjobs.eventloop import wait_set
from polyjobs.options import KEEP_FAILED, Keep, RateLimit

STALLED_REASON = "job stalled more than allowable limit"


@dataclass
class _Group:
    """One group of a queue's jobs (see GroupBackend)."""

    waiting: list[tuple[int, int, str]] = field(default_factory=list)  # (priority, seq, id)
    served: int = 0  # the queue sequence of its last turn (0: never served)
    held_until: float = 0.0
    active: int = 0
    starts: deque[float] = field(default_factory=deque)  # recent starts, for its rate limit


@dataclass
class _Queue:
    name: str
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    waiting: list[tuple[int, int, str]] = field(default_factory=list)  # (priority, seq, id)
    waiting_seq: dict[str, int] = field(default_factory=dict)
    delayed: list[tuple[float, int, str]] = field(default_factory=list)  # (run_at, seq, id)
    delayed_seq: dict[str, int] = field(default_factory=dict)
    active: dict[str, None] = field(default_factory=dict)
    waiting_children: dict[str, None] = field(default_factory=dict)
    completed: OrderedDict[str, float] = field(default_factory=OrderedDict)
    failed: OrderedDict[str, float] = field(default_factory=OrderedDict)
    logs: dict[str, list[str]] = field(default_factory=dict)
    schedules: dict[str, ScheduleRecord] = field(default_factory=dict)
    workers: dict[str, tuple[WorkerInfo, float]] = field(default_factory=dict)
    paused: bool = False
    limit: RateLimit | None = None
    starts: deque[float] = field(default_factory=deque)  # recent starts, for the limit
    hold_until: float = 0.0
    next_id: int = 0
    seq: int = 0
    wake: asyncio.Event | None = None
    dedup: dict[str, Hold] = field(default_factory=dict)  # deduplication id -> its hold
    held_by: dict[str, str] = field(default_factory=dict)  # job id -> deduplication id
    # minute -> [completed, failed, time_sum] (see MetricsBackend), oldest first
    metrics: OrderedDict[float, list[float]] = field(default_factory=OrderedDict)
    cancels: dict[str, str] = field(default_factory=dict)  # job id -> its cancel request
    concurrency: int | None = None  # fleet-wide cap on active jobs
    groups: dict[str, _Group] = field(default_factory=dict)  # only groups in use
    ungrouped_served: int = 0  # the last turn of the jobs without a group
    active_group: dict[str, str] = field(default_factory=dict)  # active job id -> its group
    group_concurrency: int | None = None
    group_limit: RateLimit | None = None


#: The owner a job not yet started is given for the moment its cancel fails it.
_CANCEL_TOKEN = "\x00cancel"


class MemoryBackend(FlowsMixin):
    """Jobs kept in this process only: for tests, examples and single-process runs."""

    capabilities: frozenset[str] = frozenset(
        {
            CAP_RATE_LIMIT,
            CAP_CONTROL,
            CAP_FLOWS,
            CAP_FLOWS_ACROSS_QUEUES,
            CAP_DEDUP,
            CAP_METRICS,
            CAP_CANCEL,
            CAP_GLOBAL_CONCURRENCY,
            CAP_GROUPS,
        }
    )
    CONTROL_KEEP = 100

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._queues: dict[str, _Queue] = {}
        self._graph = Graph()
        self._control: deque[ControlMessage] = deque(maxlen=self.CONTROL_KEEP)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        for q in self._queues.values():
            self._notify(q)

    # -- helpers ---------------------------------------------------------------------------
    def _q(self, queue: str) -> _Queue:
        q = self._queues.get(queue)
        if q is None:
            q = self._queues[queue] = _Queue(queue)
        return q

    def _next_seq(self, q: _Queue) -> int:
        q.seq += 1
        return q.seq

    def _to_waiting(self, q: _Queue, job: JobRecord, front: bool = False) -> None:
        seq = self._next_seq(q)
        seq = -seq if front else seq
        job.state = "waiting"
        q.waiting_seq[job.id] = seq
        group = job.opts.get("group")
        if isinstance(group, str):
            g = q.groups.get(group)
            if g is None:
                g = q.groups[group] = _Group()
            heapq.heappush(g.waiting, (job.priority, seq, job.id))
        else:
            heapq.heappush(q.waiting, (job.priority, seq, job.id))

    def _to_delayed(self, q: _Queue, job: JobRecord) -> None:
        seq = self._next_seq(q)
        job.state = "delayed"
        q.delayed_seq[job.id] = seq
        heapq.heappush(q.delayed, (job.run_at, seq, job.id))

    def _unlink(self, q: _Queue, job: JobRecord) -> None:
        """Take a job out of whatever state container holds it."""
        q.waiting_seq.pop(job.id, None)
        q.delayed_seq.pop(job.id, None)
        q.active.pop(job.id, None)
        self._left_active(q, job.id)
        q.waiting_children.pop(job.id, None)
        q.completed.pop(job.id, None)
        q.failed.pop(job.id, None)

    def _delete(self, q: _Queue, job_id: str) -> None:
        job = q.jobs.pop(job_id, None)
        q.logs.pop(job_id, None)
        q.cancels.pop(job_id, None)
        if job is not None:
            self._unlink(q, job)
            self._forget(q, job)

    def _promote_due(self, q: _Queue, now: float) -> int:
        moved = 0
        while q.delayed and q.delayed[0][0] <= now:
            _, seq, job_id = heapq.heappop(q.delayed)
            if q.delayed_seq.get(job_id) != seq:
                continue
            del q.delayed_seq[job_id]
            self._to_waiting(q, q.jobs[job_id])
            moved += 1
        return moved

    def _next_due(self, q: _Queue) -> float | None:
        while q.delayed and q.delayed_seq.get(q.delayed[0][2]) != q.delayed[0][1]:
            heapq.heappop(q.delayed)
        return q.delayed[0][0] if q.delayed else None

    def _allowance(self, q: _Queue, now: float) -> int | None:
        """How many jobs may start now under the hold and the rate limit (None: no limit)."""
        if q.hold_until > now:
            return 0
        if q.limit is None:
            return None
        while q.starts and q.starts[0] <= now - q.limit.duration:
            q.starts.popleft()
        return max(q.limit.max - len(q.starts), 0)

    def _limiter_frees_at(self, q: _Queue, now: float) -> float | None:
        """When a held-back fetch could next start a job, if the limiter holds it back."""
        if self._allowance(q, now) != 0 or not q.waiting_seq:
            return None
        if q.hold_until > now:
            return q.hold_until
        assert q.limit is not None
        return q.starts[0] + q.limit.duration

    def _take(self, q: _Queue, token: str, limit: int, lease: float) -> list[JobRecord]:
        now = time.time()
        self._promote_due(q, now)
        allowance = self._allowance(q, now)
        if allowance is not None:
            limit = min(limit, allowance)
        if q.concurrency is not None:
            limit = min(limit, q.concurrency - len(q.active))
        if q.groups:
            return [] if q.paused else self._take_grouped(q, token, limit, lease, now)
        taken: list[JobRecord] = []
        while not q.paused and len(taken) < limit and q.waiting:
            job_id = self._pop(q, q.waiting)
            if job_id is not None:
                taken.append(self._start(q, job_id, token, lease, now))
        return taken

    def _pop(self, q: _Queue, heap: list[tuple[int, int, str]]) -> str | None:
        """The id of the first waiting job of a heap (None when the top entry was stale)."""
        _, seq, job_id = heapq.heappop(heap)
        if q.waiting_seq.get(job_id) != seq:
            return None
        del q.waiting_seq[job_id]
        return job_id

    def _start(self, q: _Queue, job_id: str, token: str, lease: float, now: float) -> JobRecord:
        job = q.jobs[job_id]
        job.state = "active"
        job.worker = token
        job.lease_until = now + lease
        job.processed_on = now
        job.attempts_started += 1
        q.active[job_id] = None
        if q.limit is not None:
            q.starts.append(now)
        return replace(job)

    # -- groups ----------------------------------------------------------------------------
    def _first(self, q: _Queue, heap: list[tuple[int, int, str]]) -> bool:
        """Drop stale entries from the top of a heap; True when a waiting job is left."""
        while heap and q.waiting_seq.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)
        return bool(heap)

    def _group_wait(self, q: _Queue, g: _Group, now: float) -> float | None:
        """None when the group may start a job now; else when it may (inf: when one of its
        active jobs ends)."""
        if g.held_until > now:
            return g.held_until
        if q.group_concurrency is not None and g.active >= q.group_concurrency:
            return float("inf")
        limit = q.group_limit
        if limit is not None:
            while g.starts and g.starts[0] <= now - limit.duration:
                g.starts.popleft()
            if len(g.starts) >= limit.max:
                return g.starts[len(g.starts) - limit.max] + limit.duration
        return None

    def _ring(self, q: _Queue, now: float) -> list[tuple[int, str, str | None]]:
        """The ready members of the ring: (last turn, name, group), least recently served
        first; groups no longer in use are forgotten on the way."""
        ring: list[tuple[int, str, str | None]] = []
        if self._first(q, q.waiting):
            ring.append((q.ungrouped_served, "", None))
        for name, g in list(q.groups.items()):
            if not self._first(q, g.waiting):
                if not g.active and g.held_until <= now and not g.starts:
                    del q.groups[name]
                continue
            if self._group_wait(q, g, now) is None:
                ring.append((g.served, name, name))
        ring.sort()
        return ring

    def _take_grouped(
        self, q: _Queue, token: str, limit: int, lease: float, now: float
    ) -> list[JobRecord]:
        """Take up to ``limit`` jobs, one per ready group in turn (see GroupBackend)."""
        taken: list[JobRecord] = []
        ring = self._ring(q, now) if limit > 0 else []
        while ring and len(taken) < limit:
            later: list[tuple[int, str, str | None]] = []
            for entry in ring:
                if len(taken) >= limit:
                    later.append(entry)
                    continue
                group = entry[2]
                g = None if group is None else q.groups[group]
                heap = q.waiting if g is None else g.waiting
                if not self._first(q, heap):
                    continue
                job_id = self._pop(q, heap)
                assert job_id is not None
                taken.append(self._start(q, job_id, token, lease, now))
                served = self._next_seq(q)
                if g is None:
                    q.ungrouped_served = served
                else:
                    assert group is not None
                    g.served = served
                    g.active += 1
                    q.active_group[job_id] = group
                    if q.group_limit is not None:
                        g.starts.append(now)
                    if self._group_wait(q, g, now) is not None:
                        continue
                if self._first(q, heap):
                    later.append((served, entry[1], group))
            ring = later
        return taken

    def _left_active(self, q: _Queue, job_id: str) -> None:
        """A job that was active is no longer: its group has one slot more."""
        group = q.active_group.pop(job_id, None)
        if group is not None:
            g = q.groups.get(group)
            if g is not None:
                g.active -= 1

    def _groups_free_at(self, q: _Queue, now: float) -> float | None:
        """When a held or rate-limited group with waiting jobs may next start one."""
        first = None
        for g in q.groups.values():
            if self._first(q, g.waiting):
                at = self._group_wait(q, g, now)
                if at is not None and at != float("inf") and (first is None or at < first):
                    first = at
        return first

    def _notify(self, q: _Queue) -> None:
        """Wake every fetch waiting on this queue (each makes a new event for its next wait)."""
        if q.wake is not None:
            q.wake.set()
            q.wake = None

    def _insert(self, q: _Queue, new: NewJob, parent: bool = False) -> AddResult:
        if new.job_id is not None and new.job_id in q.jobs:
            return AddResult(new.job_id, False)
        if new.dedup is not None:
            absorbed = self._deduplicate(q, new)
            if absorbed is not None:
                return absorbed
        if new.job_id is None:
            q.next_id += 1
            while str(q.next_id) in q.jobs:
                q.next_id += 1
            job_id = str(q.next_id)
        else:
            job_id = new.job_id
        job = JobRecord(
            id=job_id,
            name=new.name,
            data=json.loads(new.data_json),
            opts=dict(new.opts),
            state="waiting",
            timestamp=new.timestamp,
            run_at=new.run_at,
            priority=new.priority,
        )
        q.jobs[job_id] = job
        if parent:
            job.state = "waiting-children"
            q.waiting_children[job_id] = None
        elif new.run_at > time.time():
            self._to_delayed(q, job)
        else:
            self._to_waiting(q, job, front=new.lifo)
        if new.dedup is not None:
            self._hold(q, new, job_id)
        return AddResult(job_id, True)

    def _retain(self, q: _Queue, finished: OrderedDict[str, float], keep: Keep, now: float) -> None:
        if keep.age is not None:
            while finished:
                job_id, at = next(iter(finished.items()))
                if at >= now - keep.age:
                    break
                self._delete(q, job_id)
        if keep.count is not None:
            while len(finished) > keep.count:
                self._delete(q, next(iter(finished)))

    @staticmethod
    def _count(q: _Queue, fin: Finish, processed_on: float | None) -> None:
        minute = minute_of(fin.finished_on)
        row = q.metrics.get(minute)
        if row is None:
            late = bool(q.metrics) and next(reversed(q.metrics)) > minute
            row = q.metrics[minute] = [0, 0, 0.0]
            if late:  # a minute out of order (clocks of several workers): keep them sorted
                q.metrics = OrderedDict(sorted(q.metrics.items()))
            newest = next(reversed(q.metrics))
            while next(iter(q.metrics)) < newest - METRICS_KEEP:
                q.metrics.popitem(last=False)
        count_finish(row, fin, processed_on)

    async def get_metrics(self, queue: str, since: float) -> list[MinuteMetrics]:
        q = self._queues.get(queue)
        start = minute_of(since)
        if q is None:
            return []
        return [
            MinuteMetrics(minute, int(c), int(f), t)
            for minute, (c, f, t) in q.metrics.items()
            if minute >= start
        ]

    def _finish_one(self, q: _Queue, token: str, fin: Finish) -> bool:
        job = q.jobs.get(fin.job_id)
        if job is None or job.state != "active" or job.worker != token:
            return False
        q.active.pop(job.id, None)
        self._left_active(q, job.id)
        job.worker = None
        job.lease_until = None
        job.attempts_made = fin.attempts_made
        if fin.status == "retry":
            job.failed_reason = fin.failed_reason
            job.stacktrace = fin.stacktrace
            job.run_at = fin.retry_at
            if fin.retry_at > fin.finished_on:
                self._to_delayed(q, job)
            else:
                self._to_waiting(q, job)
            return True
        job.finished_on = fin.finished_on
        self._count(q, fin, job.processed_on)
        ref = JobRef(q.name, job.id)
        if fin.status == "completed":
            job.state = "completed"
            job.returnvalue = (
                None if fin.returnvalue_json is None else json.loads(fin.returnvalue_json)
            )
            target = q.completed
            target[job.id] = fin.finished_on
            self._completed(ref, job.returnvalue)
        else:
            job.state = "failed"
            job.failed_reason = fin.failed_reason
            job.stacktrace = fin.stacktrace
            target = q.failed
            target[job.id] = fin.finished_on
            self._cascade([(ref, fin.failed_reason or "")])
        self._window_ends(q, job.id)
        if fin.keep.removes_at_once:
            self._delete(q, job.id)
            return True
        self._retain(q, target, fin.keep, fin.finished_on)
        return True

    # -- producers -------------------------------------------------------------------------
    async def add(self, queue: str, jobs: Sequence[NewJob]) -> list[AddResult]:
        q = self._q(queue)
        results = [self._insert(q, new) for new in jobs]
        if any(r.added for r in results):
            self._notify(q)
        return results

    # -- workers ---------------------------------------------------------------------------
    async def fetch(
        self, queue: str, token: str, limit: int, lease: float, block: float
    ) -> list[JobRecord]:
        q = self._q(queue)
        jobs = self._take(q, token, limit, lease)
        if jobs or block <= 0:
            return jobs
        deadline = time.monotonic() + block
        while True:
            timeout = deadline - time.monotonic()
            now = time.time()
            looks = [self._next_due(q), self._limiter_frees_at(q, now)]
            if q.groups:
                looks.append(self._groups_free_at(q, now))
            for due in looks:
                if due is not None and not q.paused:
                    timeout = min(timeout, due - now)
            if timeout > 0:
                if q.wake is None:
                    q.wake = asyncio.Event()
                await wait_set(q.wake, timeout)
            jobs = self._take(q, token, limit, lease)
            if jobs or time.monotonic() >= deadline:
                return jobs

    async def extend(
        self, queue: str, token: str, job_ids: Sequence[str], lease: float
    ) -> list[str]:
        q = self._q(queue)
        until = time.time() + lease
        lost = []
        for job_id in job_ids:
            job = q.jobs.get(job_id)
            if job is None or job.state != "active" or job.worker != token:
                lost.append(job_id)
            else:
                job.lease_until = until
        return lost

    async def finish(
        self, queue: str, token: str, finishes: Sequence[Finish], fetch: int, lease: float
    ) -> FinishResult:
        q = self._q(queue)
        lost = [fin.job_id for fin in finishes if not self._finish_one(q, token, fin)]
        capped = q.concurrency is not None or q.group_concurrency is not None
        if capped or any(fin.status == "retry" for fin in finishes):
            self._notify(q)  # (under a cap every end frees a slot others may wait for)
        jobs = self._take(q, token, fetch, lease) if fetch > 0 else []
        return FinishResult(lost, jobs)

    async def release(self, queue: str, token: str, job_ids: Sequence[str] | None) -> list[str]:
        q = self._q(queue)
        ids = list(q.active) if job_ids is None else list(job_ids)
        released = []
        for job_id in ids:
            job = q.jobs.get(job_id)
            if job is None or job.state != "active" or job.worker != token:
                continue
            q.active.pop(job_id, None)
            self._left_active(q, job_id)
            job.worker = None
            job.lease_until = None
            self._to_waiting(q, job, front=True)
            released.append(job_id)
        if released:
            self._notify(q)
        return released

    async def recover_stalled(self, queue: str, max_stalls: int) -> list[Stalled]:
        q = self._q(queue)
        now = time.time()
        out = []
        for job_id in list(q.active):
            job = q.jobs[job_id]
            if job.lease_until is None or job.lease_until > now:
                continue
            q.active.pop(job_id)
            self._left_active(q, job_id)
            job.worker = None
            job.lease_until = None
            job.stalls += 1
            if job.stalls > max_stalls:
                job.state = "failed"
                job.failed_reason = STALLED_REASON
                job.finished_on = now
                q.failed[job_id] = now
                self._cascade([(JobRef(queue, job_id), STALLED_REASON)])
                self._window_ends(q, job_id)
                opts = job.opts.get("remove_on_fail")
                self._retain(q, q.failed, Keep.from_json(opts, KEEP_FAILED), now)
                out.append(Stalled(job_id, True))
            else:
                self._to_waiting(q, job)
                out.append(Stalled(job_id, False))
        if out:
            self._notify(q)
        return out

    async def update_progress(self, queue: str, job_id: str, progress_json: str) -> bool:
        job = self._q(queue).jobs.get(job_id)
        if job is None:
            return False
        job.progress = json.loads(progress_json)
        return True

    async def add_log(self, queue: str, job_id: str, line: str, keep: int) -> int:
        q = self._q(queue)
        if job_id not in q.jobs:
            return 0
        lines = q.logs.setdefault(job_id, [])
        lines.append(line)
        if keep > 0 and len(lines) > keep:
            del lines[: len(lines) - keep]
        return len(lines)

    # -- inspection ------------------------------------------------------------------------
    async def get_job(self, queue: str, job_id: str) -> JobRecord | None:
        job = self._q(queue).jobs.get(job_id)
        return None if job is None else replace(job)

    async def get_logs(self, queue: str, job_id: str, start: int, end: int) -> list[str]:
        lines = self._q(queue).logs.get(job_id, [])
        return inclusive_range(lines, start, end)

    def _ids_in(self, q: _Queue, state: JobState) -> list[str]:
        if state == "waiting":
            heaps = [q.waiting, *(g.waiting for g in q.groups.values())]
            entries = sorted(
                (p, s, i) for heap in heaps for p, s, i in heap if q.waiting_seq.get(i) == s
            )
            return [i for _, _, i in entries]
        if state == "delayed":
            return [i for _, s, i in sorted(q.delayed) if q.delayed_seq.get(i) == s]
        if state == "active":
            return sorted(q.active, key=lambda i: q.jobs[i].processed_on or 0.0)
        if state == "waiting-children":
            return list(q.waiting_children)
        finished = q.completed if state == "completed" else q.failed
        return list(reversed(finished))

    async def list_jobs(self, queue: str, state: JobState, start: int, end: int) -> list[JobRecord]:
        q = self._q(queue)
        return [replace(q.jobs[i]) for i in inclusive_range(self._ids_in(q, state), start, end)]

    async def counts(self, queue: str) -> dict[str, int]:
        q = self._q(queue)
        return {
            "waiting": len(q.waiting_seq),
            "active": len(q.active),
            "delayed": len(q.delayed_seq),
            "waiting-children": len(q.waiting_children),
            "completed": len(q.completed),
            "failed": len(q.failed),
        }

    async def queues(self) -> list[str]:
        return sorted(
            name
            for name, q in self._queues.items()
            if q.jobs or q.schedules or q.workers or q.paused
        )

    # -- administration --------------------------------------------------------------------
    async def pause(self, queue: str) -> None:
        self._q(queue).paused = True

    async def resume(self, queue: str) -> None:
        q = self._q(queue)
        q.paused = False
        self._notify(q)

    async def is_paused(self, queue: str) -> bool:
        return self._q(queue).paused

    async def drain(self, queue: str, delayed: bool) -> int:
        q = self._q(queue)
        ids = list(q.waiting_seq) + (list(q.delayed_seq) if delayed else [])
        for job_id in ids:
            self._delete(q, job_id)
        return len(ids)

    async def clean(self, queue: str, state: JobState, grace: float, limit: int) -> list[str]:
        if state == "active":
            return []
        q = self._q(queue)
        cutoff = time.time() - grace
        removed: list[str] = []
        for job_id in list(reversed(self._ids_in(q, state))):
            job = q.jobs[job_id]
            at = job.finished_on if job.finished_on is not None else job.timestamp
            if at <= cutoff:
                self._delete(q, job_id)
                removed.append(job_id)
                if limit and len(removed) >= limit:
                    break
        return removed

    async def remove(self, queue: str, job_id: str) -> bool:
        q = self._q(queue)
        job = q.jobs.get(job_id)
        if job is None or job.state == "active":
            return False
        self._delete(q, job_id)
        return True

    async def retry(self, queue: str, job_id: str) -> bool:
        q = self._q(queue)
        job = q.jobs.get(job_id)
        if job is None or job.state != "failed":
            return False
        q.failed.pop(job_id, None)
        q.cancels.pop(job_id, None)
        job.attempts_made = 0
        job.stalls = 0
        job.failed_reason = job.stacktrace = None
        job.finished_on = job.processed_on = None
        self._to_waiting(q, job)
        self._notify(q)
        return True

    async def promote(self, queue: str, job_id: str) -> bool:
        q = self._q(queue)
        job = q.jobs.get(job_id)
        if job is None or job.state != "delayed":
            return False
        q.delayed_seq.pop(job_id, None)
        job.run_at = time.time()
        self._to_waiting(q, job)
        self._notify(q)
        return True

    async def obliterate(self, queue: str) -> None:
        q = self._queues.pop(queue, None)
        if q is not None:
            self._notify(q)
            for job in q.jobs.values():
                self._forget(q, job)

    # -- rate limits -----------------------------------------------------------------------
    async def cancel(
        self, queue: str, job_id: str, reason: str, now: float
    ) -> CancelOutcome | None:
        q = self._q(queue)
        job = q.jobs.get(job_id)
        if job is None:
            return None
        if job.state == "active":
            q.cancels[job_id] = reason
            return "requested"
        if job.state not in ("waiting", "delayed"):
            return None
        # the failed path of a finish, as if a worker of its own had taken it
        self._unlink(q, job)
        job.state, job.worker = "active", _CANCEL_TOKEN
        q.active[job_id] = None
        fin = Finish(job_id, "failed", job.attempts_made, now, failed_reason=reason)
        self._finish_one(q, _CANCEL_TOKEN, fin)
        return "failed"

    async def cancel_requests(self, queue: str, job_ids: Sequence[str]) -> dict[str, str]:
        q = self._q(queue)
        return {i: q.cancels[i] for i in job_ids if i in q.cancels}

    async def set_global_concurrency(self, queue: str, limit: int | None) -> None:
        q = self._q(queue)
        q.concurrency = limit
        self._notify(q)

    async def get_global_concurrency(self, queue: str) -> int | None:
        return self._q(queue).concurrency

    async def set_group_concurrency(self, queue: str, limit: int | None) -> None:
        q = self._q(queue)
        q.group_concurrency = limit
        self._notify(q)

    async def get_group_concurrency(self, queue: str) -> int | None:
        return self._q(queue).group_concurrency

    async def set_group_rate_limit(self, queue: str, limit: RateLimit | None) -> None:
        q = self._q(queue)
        q.group_limit = limit
        self._notify(q)

    async def get_group_rate_limit(self, queue: str) -> RateLimit | None:
        return self._q(queue).group_limit

    async def hold_group(self, queue: str, group: str, until: float) -> None:
        q = self._q(queue)
        g = q.groups.get(group)
        if g is None:
            g = q.groups[group] = _Group()
        g.held_until = max(g.held_until, until)

    async def set_rate_limit(self, queue: str, limit: RateLimit | None) -> None:
        q = self._q(queue)
        q.limit = limit
        self._notify(q)

    async def get_rate_limit(self, queue: str) -> RateLimit | None:
        return self._q(queue).limit

    async def hold(self, queue: str, until: float) -> None:
        q = self._q(queue)
        q.hold_until = max(q.hold_until, until)

    # -- control ---------------------------------------------------------------------------
    async def send_control(self, command: str, payload_json: str) -> ControlMessage:
        last = self._control[-1].at if self._control else 0.0
        message = ControlMessage(max(time.time(), last + 1e-6), command, payload_json)
        self._control.append(message)
        return message

    async def control_messages(self, since: float) -> list[ControlMessage]:
        return [m for m in self._control if m.at > since]

    # -- schedules -------------------------------------------------------------------------
    async def save_schedule(self, queue: str, schedule: ScheduleRecord) -> ScheduleRecord:
        schedules = self._q(queue).schedules
        stored = replace(schedule)
        old = schedules.get(schedule.key)
        if old is not None and old.same_definition(schedule):
            stored.next_run = old.next_run
        schedules[schedule.key] = stored
        return replace(stored)

    async def get_schedules(self, queue: str) -> list[ScheduleRecord]:
        return [replace(s) for s in self._q(queue).schedules.values()]

    async def remove_schedule(self, queue: str, key: str) -> bool:
        return self._q(queue).schedules.pop(key, None) is not None

    async def advance_schedule(
        self, queue: str, key: str, expected_next: float, next_run: float, jobs: Sequence[NewJob]
    ) -> bool:
        q = self._q(queue)
        schedule = q.schedules.get(key)
        if schedule is None or schedule.next_run != expected_next:
            return False
        schedule.next_run = next_run
        await self.add(queue, jobs)
        return True

    # -- worker registry -------------------------------------------------------------------
    async def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        now = time.time()
        workers = self._q(info.queue).workers
        for worker_id, (_, expires) in list(workers.items()):
            if expires <= now:
                del workers[worker_id]
        workers[info.id] = (replace(info, last_seen=now), now + ttl)

    async def unregister(self, queue: str, worker_id: str) -> None:
        self._q(queue).workers.pop(worker_id, None)

    async def list_workers(self, queue: str) -> list[WorkerInfo]:
        now = time.time()
        workers = self._q(queue).workers.values()
        return [replace(info) for info, expires in workers if expires > now]
