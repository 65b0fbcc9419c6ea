"""``RedisBackend``: the Backend contract on Redis (``redis://``, ``rediss://``, ``unix://``).

Every state change is one Lua script (see :mod:`polyjobs.backends.redis.scripts`); key names
come from :mod:`polyjobs.backends.redis.keys`. Times are epoch seconds computed here and passed
to the scripts as exact decimal strings (``repr`` of a float), so what a script stores reads
back as the same float.

Fetching never polls: when nothing is ready, :meth:`fetch` blocks on the queue's wake-up key
(``BZPOPMIN``) with a timeout of ``min(block, next delayed job due, rate limiter frees)``, and
tries once more when woken. Producers, retries, resume, release, stall recovery and rate-limit
changes push to that key. Over a multiplexed connection (not Redis Cluster, TLS or without
hiredis) the wait and that fetch are sent together, and the fetch runs in Redis as soon as the
wait ends, on the server's clock: a woken worker has its job in one round trip.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, replace
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from polyjobs.backend import (
    CAP_CANCEL,
    CAP_CONTROL,
    CAP_DEDUP,
    CAP_DURABLE,
    CAP_FLOWS,
    CAP_FLOWS_ACROSS_QUEUES,
    CAP_GLOBAL_CONCURRENCY,
    CAP_GROUPS,
    CAP_METRICS,
    CAP_RATE_LIMIT,
    CAP_SHARED,
    AddResult,
    CancelOutcome,
    ControlMessage,
    Dependencies,
    Finish,
    FinishResult,
    FlowNode,
    JobRecord,
    JobRef,
    JobState,
    MinuteMetrics,
    NewJob,
    ScheduleRecord,
    Stalled,
    WorkerInfo,
    inclusive_range,
    minute_of,
)
from polyjobs.backends.redis import connection
from polyjobs.backends.redis.keys import CONTROL_KEEP, QueueKeys, control_key, registry_key
from polyjobs.backends.redis.multiplex import Head, Multiplexed
from polyjobs.backends.redis.records import (
    FIELDS,
    NOT_A_HASH,
    dumps,
    job_state,
    loads,
    payload,
    record,
    records,
    taken,
)
from polyjobs.backends.redis.scripts import Scripts
from polyjobs.errors import BackendError, BackendUnavailableError, InvalidArgumentError
from polyjobs.options import KEEP_FAILED, Keep, RateLimit

STALLED_REASON = "job stalled more than allowable limit"
CHUNK = 5000  # jobs per script call for bulk adds and deletions
CLOSE_TIMEOUT = 2.0
MAX_UNANSWERED = 64  # request ids remembered per (queue, token) whose replies were lost

logger = logging.getLogger(__name__)


def _t(value: float) -> str:
    return repr(float(value))


def _keep_args(keep: Keep, finished_on: float) -> tuple[str, str]:
    if keep.removes_at_once:
        return "0", ""
    count = "" if keep.count is None else str(keep.count)
    cutoff = "" if keep.age is None else _t(finished_on - keep.age)
    return count, cutoff


_NO_DEDUP = ("", "", "0", "0", "0")


def _dedup_args(new: NewJob) -> tuple[str, ...]:
    d = new.dedup
    if d is None:
        return _NO_DEDUP
    flags = (d.extend, d.replace, d.keep_last_if_active)
    return (d.id, "" if d.ttl is None else _t(d.ttl), *("1" if f else "0" for f in flags))


def _ref(text: str) -> JobRef:
    queue, _, job_id = text.partition(" ")
    return JobRef(queue, job_id)


def _job_args(new: NewJob) -> tuple[str, ...]:
    timestamp = _t(new.timestamp)
    return (
        new.job_id or "",
        new.name,
        new.data_json,
        dumps(new.opts),
        timestamp,
        timestamp if new.run_at == new.timestamp else _t(new.run_at),  # (no delay: same text)
        str(new.priority),
        "1" if new.lifo else "0",
    )


_NOTHING = object()  # no options or timestamp seen yet in this call (not even None)


def _add_args(jobs: Sequence[NewJob]) -> tuple[str, ...]:
    """The arguments of one ``add`` script call after the queue's key prefix: the time, then
    per job ``p`` and the five fields of a plain job (no delay, priority 0, not LIFO, no group,
    no deduplication window: most adds) or ``f`` and all of its fields, its group and its
    deduplication window (see ``add.lua``). The time is left out ('') when every job is plain
    (the script adds a plain job at its own timestamp: it is waiting at once either way)."""
    args = ["", str(len(jobs))]
    full = False
    # the jobs of a call mostly share one options dict (a queue's defaults, a bulk add's
    # options) and a bulk add's one timestamp: each text is made once per object in a row (the
    # call is built at once, so no object changes in between)
    opts: Any = _NOTHING
    ts: Any = _NOTHING
    opts_text = ts_text = ""
    for new in jobs:
        if (
            new.run_at == new.timestamp
            and new.dedup is None
            and not new.group
            and new.priority == 0
            and not new.lifo
        ):
            if new.opts is not opts:
                opts = new.opts
                opts_text = dumps(opts)
            if new.timestamp is not ts:
                ts = new.timestamp
                ts_text = repr(float(ts))  # (_t, inline)
            args += ("p", new.job_id or "", new.name, new.data_json, opts_text, ts_text)
        else:
            full = True
            args.append("f")
            args += _job_args(new)
            args.append(new.group or "")
            args += _dedup_args(new)
    if full:
        args[0] = _t(time.time())
    return tuple(args)


def _pairs(fields: list[str]) -> dict[str, str]:
    return {fields[i]: fields[i + 1] for i in range(0, len(fields), 2)}


#: At most so many concurrent single adds share one call: 50 in flight go as two calls, of
#: which Redis runs one while the producer reads the other's replies and makes the next adds.
JOIN_MAX = 25

#: A batch of single adds waits (taking more adds meanwhile) while so many add calls to its
#: queue are in flight; batches go in order as calls end, after the ended call's callers made
#: their next adds (which join). 50 adds made in one turn with none in flight go as 1 (at
#: once), 25 and 24: sent all three, the lone add came back first and alone every time, and
#: Redis and the producer took turns on the two big calls instead of overlapping (about half
#: the rate); waiting, its next add joins the 24, and two calls of 25 go on.
ADD_CALLS = 2


class _AddBatch:
    """Single adds to one queue sent as one call, in the order they were made: ``jobs[0]`` is
    the add that leads (it waits for the end of its loop turn, so that the adds made in it join),
    and adds join until the call is sent or holds :data:`JOIN_MAX`. Each add has a future of its
    own (so that cancelling one cancels no other); a cancelled add is left out of the call when
    it was not sent yet."""

    __slots__ = ("futures", "jobs", "sent")

    def __init__(self, job: NewJob) -> None:
        self.jobs: list[NewJob] = [job]
        self.futures: list[asyncio.Future[AddResult]] = [asyncio.get_running_loop().create_future()]
        self.sent: list[int] = []  # indexes into jobs of the adds sent, in order

    def join(self, job: NewJob) -> asyncio.Future[AddResult]:
        self.jobs.append(job)
        future: asyncio.Future[AddResult] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future

    def send(
        self, add: Callable[[list[NewJob]], Coroutine[Any, Any, list[AddResult]]]
    ) -> asyncio.Future[list[AddResult]] | None:
        """Add the jobs whose adds were not cancelled, in a task of its own which no caller's
        cancellation stops, and hand each add its outcome. None when there is nothing to
        send."""
        self.sent = [i for i, future in enumerate(self.futures) if not future.done()]
        if not self.sent:
            return None
        task = asyncio.ensure_future(add([self.jobs[i] for i in self.sent]))
        task.add_done_callback(self._settle)
        return task

    def _settle(self, task: asyncio.Future[list[AddResult]]) -> None:
        error = None if task.cancelled() else task.exception()  # (retrieved, even if unused)
        for k, i in enumerate(self.sent):
            future = self.futures[i]
            if future.done():  # cancelled since it was sent
                continue
            if task.cancelled():
                future.cancel()
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(task.result()[k])


class RedisBackend:
    """Jobs in Redis: shared by any number of processes and machines, durable as Redis is.

    URL: ``redis://[user:password@]host[:port][/db][?prefix=polyjobs]``, ``rediss://`` for TLS,
    ``unix:///path/to/redis.sock[?db=0]``; ``?cluster=true`` for Redis Cluster. All keys of
    a queue live under
    ``<prefix>:{<queue>}:`` (one Redis Cluster slot per queue).
    """

    capabilities: frozenset[str] = frozenset(
        {
            CAP_SHARED,
            CAP_DURABLE,
            CAP_RATE_LIMIT,
            CAP_CONTROL,
            CAP_FLOWS,
            CAP_DEDUP,
            CAP_METRICS,
            CAP_CANCEL,
            CAP_GLOBAL_CONCURRENCY,
            CAP_GROUPS,
        }
    )
    #: A worker keeps two finish calls in flight (see ``Worker._finish_loop``): Redis runs one
    #: while the worker runs the jobs the other brought.
    finish_calls_in_flight = 2

    def __init__(self, url: str) -> None:
        self.url = url
        self._url = connection.RedisUrl.parse(url)
        self._errors = connection.Translated(self._url.redacted)
        self.prefix = self._url.prefix
        # a flow's scripts touch every queue of the flow: on a cluster, only when the prefix's
        # hash tag puts every queue in one slot
        if not self._url.cluster or connection.has_hash_tag(self.prefix):
            self.capabilities = type(self).capabilities | {CAP_FLOWS_ACROSS_QUEUES}
        self._client: connection.Client | None = None
        self._raw: connection.Client | None = None
        self._scripts: Scripts | None = None
        self._lean: Multiplexed | None = None
        self._blocking: connection.BlockingCalls | None = None
        self._keys: dict[str, tuple[QueueKeys, list[str]]] = {}
        self._rid_prefix = uuid.uuid4().hex[:10] + ":"
        self._rid_seq = itertools.count()
        self._unanswered: dict[tuple[str, str], list[str]] = {}
        self._adding: dict[str, _AddBatch] = {}  # queue -> the newest batch, not sent yet
        self._add_queue: dict[str, deque[_AddBatch]] = {}  # queue -> batches waiting to be sent
        self._adds_in_flight: dict[str, int] = {}  # queue -> add script calls awaiting replies
        self._heads: dict[tuple[str, str], Head] = {}  # (script, queue) -> see _head

    def __repr__(self) -> str:
        return f"<RedisBackend {self._url.redacted}>"

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        if self._client is not None:
            return
        client = connection.make_client(self._url, blocking=False)
        try:
            await asyncio.wait_for(client.ping(), connection.CONNECT_TIMEOUT * 2)
        except (TimeoutError, Exception) as exc:
            await self._close_client(client)
            raise BackendUnavailableError(
                f"cannot reach Redis at {self._url.redacted}: {connection.one_line(exc)}"
            ) from None
        self._client = client
        self._raw = connection.make_client(self._url, blocking=True)
        # scripts go over one multiplexed connection where it can serve the URL; otherwise
        # they bound their own time on the client without socket timeouts
        self._lean = connection.make_multiplexed(self._url)
        self._scripts = Scripts(self._raw, self._lean)
        self._blocking = connection.BlockingCalls(self._url, self._raw)

    async def close(self) -> None:
        clients = [c for c in (self._client, self._raw) if c is not None]
        lean, blocking = self._lean, self._blocking
        self._client = self._raw = self._scripts = self._lean = self._blocking = None
        if lean is not None:
            await lean.close()
        if blocking is not None:
            await blocking.close()
        for client in clients:
            await self._close_client(client)

    @staticmethod
    async def _close_client(client: connection.Client) -> None:
        try:
            await asyncio.wait_for(client.aclose(), CLOSE_TIMEOUT)
        except (TimeoutError, Exception):
            if isinstance(client, Redis):
                await client.connection_pool.disconnect(inuse_connections=True)

    # -- helpers ---------------------------------------------------------------------------
    @property
    def redis(self) -> connection.Client:
        if self._client is None:
            raise BackendError(f"redis backend {self._url.redacted} is not open")
        return self._client

    def _qk(self, queue: str) -> tuple[QueueKeys, list[str]]:
        found = self._keys.get(queue)
        if found is None:
            qk = QueueKeys(self.prefix, queue)
            found = self._keys[queue] = (qk, qk.script_keys)
        return found

    def _open_scripts(self) -> Scripts:
        if self._scripts is None:
            raise BackendError(f"redis backend {self._url.redacted} is not open")
        return self._scripts

    async def _run(self, name: str, queue: str, args: Sequence[Any]) -> Any:
        lean = self._lean
        with self._errors:
            if lean is not None:
                try:
                    return await lean.call_after(self._head(name, queue), tuple(args))
                except NoScriptError:  # Redis lost it: the call below loads it again
                    pass
            scripts = self._open_scripts()
            qk, keys = self._qk(queue)
            return await scripts.call(name, keys, [qk.base, *args])

    def _head(self, name: str, queue: str) -> Head:
        """The head of script ``name``'s command for ``queue`` over the multiplexed connection
        (``EVALSHA``, the script's SHA, the queue's keys and key prefix), packed once: each call
        packs only its own arguments."""
        head = self._heads.get((name, queue))
        if head is None:
            qk, keys = self._qk(queue)
            sha = self._open_scripts().shas[name]
            head = self._heads[name, queue] = Head("EVALSHA", sha, len(keys), *keys, qk.base)
        return head

    async def _taking(
        self,
        name: str,
        queue: str,
        token: str,
        build: Callable[[str, list[str]], list[Any]],
        run: Callable[[str, str, Sequence[Any]], Coroutine[Any, Any, Any]] | None = None,
    ) -> Any:
        """Run a script that takes jobs, under a fresh request id. When its reply may be lost
        (connection lost, timeout, cancelled), the request id is kept and the next such call
        for the same queue and token hands that request's jobs back to waiting first, so they
        are not left active until their lease expires."""
        rid = f"{self._rid_prefix}{next(self._rid_seq)}"
        owner = (queue, token)
        kept = self._unanswered.get(owner)
        unanswered = list(kept) if kept else []
        try:
            reply = await (run or self._run)(name, queue, build(rid, unanswered))
        except BackendError as exc:
            if not isinstance(exc.__cause__, ResponseError):
                self._reply_lost(owner, rid)
            raise
        except asyncio.CancelledError:
            self._reply_lost(owner, rid)
            raise
        if unanswered:
            left = [r for r in self._unanswered.get(owner, ()) if r not in unanswered]
            if left:
                self._unanswered[owner] = left
            else:
                self._unanswered.pop(owner, None)
        return reply

    def _reply_lost(self, owner: tuple[str, str], rid: str) -> None:
        rids = self._unanswered.setdefault(owner, [])
        rids.append(rid)
        del rids[:-MAX_UNANSWERED]

    async def _register(self, queue: str, flag: Any) -> None:
        """Add ``queue`` to the registry the first time a script marks it as known."""
        if flag == 1:
            with self._errors:
                await self.redis.sadd(registry_key(self.prefix), queue)

    # -- producers -------------------------------------------------------------------------
    def add(self, queue: str, jobs: Sequence[NewJob]) -> Coroutine[Any, Any, list[AddResult]]:
        """Add jobs in order. Single adds to one queue made in the same turn of the event loop
        (concurrent producers: ``gather`` of ``Queue.add``) while another add to it is in
        flight go to Redis as one script call, in the order they were made, exactly as if they
        had been made one after another (at most :data:`JOIN_MAX` a call; while
        :data:`ADD_CALLS` calls are in flight, later adds join the waiting call); an add with
        none in flight goes at once. An error reply fails every add of the call (the add
        script stops only on server-wide errors, e.g. out of memory). An add cancelled before
        the call is sent is left out of it.

        Not a coroutine function: it returns the coroutine that adds (one coroutine level
        less for an add that goes at once, which is decided when it is called)."""
        if len(jobs) != 1 or (queue not in self._adding and not self._adds_in_flight.get(queue)):
            return self._add(queue, jobs)
        return self._add_one(queue, jobs[0])

    async def _add_one(self, queue: str, job: NewJob) -> list[AddResult]:
        """A single add while another add to ``queue`` is in flight: it joins the batch not
        sent yet, or leads one (see :data:`ADD_CALLS`)."""
        batch = self._adding.get(queue)
        if batch is None and not self._adds_in_flight.get(queue):  # (all ended meanwhile)
            return await self._add(queue, (job,))
        if batch is not None and len(batch.jobs) < JOIN_MAX:  # another add leads: join it
            return [await batch.join(job)]
        # this add leads a batch of its own; after a full one, in the same turn: sent right
        # after it (or when a call ends, see ADD_CALLS), so that Redis runs one while this
        # process makes (or reads) the other
        batch = self._adding[queue] = _AddBatch(job)
        try:
            await asyncio.sleep(0)  # the adds made in this turn of the loop join
        except asyncio.CancelledError:
            batch.futures[0].cancel()  # this add is not sent; the ones that joined are
            self._queue_batch(queue, batch)
            raise
        if (
            len(batch.jobs) == 1
            and queue not in self._add_queue
            and self._adds_in_flight.get(queue, 0) < ADD_CALLS
        ):  # alone, and may go now: no task of its own
            del self._adding[queue]
            return await self._add(queue, batch.jobs)
        self._queue_batch(queue, batch)
        return [await batch.futures[0]]

    def _queue_batch(self, queue: str, batch: _AddBatch) -> None:
        self._add_queue.setdefault(queue, deque()).append(batch)
        self._send_batches(queue)

    def _send_batches(self, queue: str) -> None:
        """Send the waiting batches of ``queue``, oldest first, while fewer than
        :data:`ADD_CALLS` add calls to it are in flight (a call is counted from here on)."""
        waiting = self._add_queue.get(queue)
        flights = self._adds_in_flight
        while waiting and flights.get(queue, 0) < ADD_CALLS:
            batch = waiting.popleft()
            if self._adding.get(queue) is batch:  # sent: no more adds join it
                del self._adding[queue]
            task = batch.send(lambda jobs: self._add(queue, jobs, counted=True))
            if task is not None:
                flights[queue] = flights.get(queue, 0) + 1
                task.add_done_callback(functools.partial(self._batch_ended, queue))
        if not waiting:
            self._add_queue.pop(queue, None)

    def _batch_ended(self, queue: str, task: asyncio.Future[list[AddResult]]) -> None:
        """Run after ``_AddBatch._settle`` handed the batch's adds their outcomes: the call
        stays counted in flight until their callers ran, so that their next adds join the next
        batch, which goes then (also when another call ended in the same turn and sent what
        it could)."""
        asyncio.get_running_loop().call_soon(self._batch_done, queue)

    def _batch_done(self, queue: str) -> None:
        self._uncount(queue)
        self._send_batches(queue)

    def _uncount(self, queue: str) -> None:
        flights = self._adds_in_flight
        left = flights[queue] - 1
        if left:
            flights[queue] = left
        else:
            del flights[queue]

    async def _add(
        self, queue: str, jobs: Sequence[NewJob], counted: bool = False
    ) -> list[AddResult]:
        """One add call (or one per :data:`CHUNK` jobs), counted in flight while it runs or,
        when ``counted`` (a batch's), by :meth:`_send_batches` until :meth:`_batch_done`."""
        flights = self._adds_in_flight
        if not counted:
            flights[queue] = flights.get(queue, 0) + 1
        try:
            results: list[AddResult] = []
            for start in range(0, len(jobs), CHUNK):
                args = _add_args(jobs[start : start + CHUNK])
                lean = self._lean
                if lean is None:  # (not open: _run says so)
                    reply = await self._run("add", queue, args)
                else:  # _run's call inline: one coroutine level less on every add
                    try:
                        reply = await lean.call_after(self._head("add", queue), args)
                    except NoScriptError:  # Redis lost it: _run's call loads it again
                        reply = await self._run("add", queue, args)
                    except (RedisError, OSError):  # (no context manager entered per add)
                        with self._errors:  # as BackendError, naming the URL
                            raise
                if reply[0] == 1:
                    await self._register(queue, 1)
                for i in range(1, len(reply), 3):  # (a loop: no comprehension's function)
                    results.append(AddResult(reply[i], reply[i + 1] == 1, reply[i + 2] or None))
            return results
        finally:
            if not counted:
                self._uncount(queue)
                if queue in self._add_queue:
                    # at the turn's end: the caller's next add, made now, still joins
                    asyncio.get_running_loop().call_soon(self._send_batches, queue)

    # -- flows and deduplication windows ---------------------------------------------------
    async def add_flow(self, nodes: Sequence[FlowNode]) -> list[AddResult]:
        if not nodes:
            return []
        queues = {node.queue for node in nodes}
        if len(queues) > 1 and CAP_FLOWS_ACROSS_QUEUES not in self.capabilities:
            raise InvalidArgumentError(
                f"on this Redis Cluster each flow stays in one queue ({', '.join(sorted(queues))}"
                "): give the prefix a hash tag, e.g. ?prefix={polyjobs}, for flows across queues"
            )
        args: list[Any] = [_t(time.time()), len(nodes)]
        for node in nodes:
            new = node.job
            policy = "" if node.policy == "wait" else node.policy
            if new is None:
                args += [node.queue, "0", node.job_id or "", "", "", "", "", "", "", "", policy, ""]
            else:
                args += [node.queue, "1", *_job_args(new), policy, new.group or ""]
            args += [len(node.children), *(i + 1 for i in node.children)]
        reply = await self._run("flow", nodes[0].queue, args)
        if reply[0] == "err":
            raise InvalidArgumentError(reply[1])
        for queue in reply[2]:
            await self._register(queue, 1)
        flat = reply[1]
        return [AddResult(flat[i], flat[i + 1] == 1) for i in range(0, len(flat), 2)]

    async def get_dependencies(self, queue: str, job_id: str) -> Dependencies:
        pending, processed, ignored = await self._run("flowread", queue, ["deps", job_id])
        deps = Dependencies()
        for i in range(0, len(pending), 2):
            deps.pending[_ref(pending[i])] = job_state(pending[i + 1])
        for i in range(0, len(processed), 2):
            deps.processed[_ref(processed[i])] = payload(processed[i + 1])
        for i in range(0, len(ignored), 2):
            deps.ignored[_ref(ignored[i])] = str(ignored[i + 1])
        return deps

    async def get_parents(self, queue: str, job_id: str) -> list[JobRef]:
        return [_ref(r) for r in await self._run("flowread", queue, ["parents", job_id])]

    async def get_deduplication(self, queue: str, dedup_id: str) -> str | None:
        held = await self._run("flowread", queue, ["window", dedup_id, _t(time.time())])
        return str(held) if held else None

    async def remove_deduplication(self, queue: str, dedup_id: str) -> bool:
        args = ["unwindow", dedup_id, _t(time.time())]
        return bool(await self._run("flowread", queue, args))

    # -- workers ---------------------------------------------------------------------------
    async def _take(
        self, queue: str, token: str, limit: int, lease: float
    ) -> tuple[list[JobRecord], float | None]:
        now = time.time()
        reply = await self._taking(
            "fetch",
            queue,
            token,
            lambda rid, lost: [token, limit, _t(now), _t(now + lease), rid, *lost],
        )
        return await self._fetched(queue, token, reply)

    async def _wait_then_take(
        self, queue: str, token: str, limit: int, lease: float, marker: str, wait: float
    ) -> tuple[list[JobRecord], float | None]:
        """The blocking wait on ``marker`` and the fetch, sent together on one connection: Redis
        runs the fetch as soon as the wait ends (woken or timed out), so an idle worker picks a
        new job up in one round trip. The fetch reads the server's clock (the time the client
        knows now would be stale by then). Its jobs are returned either way; if the call is
        cancelled or its connection lost, they are handed back by the worker's next fetch (or
        its release when it closes), as for any take whose reply was lost."""
        blocking, scripts = self._blocking, self._scripts
        if blocking is None or scripts is None:
            raise BackendError(f"redis backend {self._url.redacted} is not open")
        head = self._head("fetch", queue)
        wait_error: list[BaseException] = []

        async def run(name: str, queue: str, args: Sequence[Any]) -> Any:
            with self._errors:
                woken, reply = await blocking.call_many(
                    wait, ("BZPOPMIN", marker, f"{wait:.3f}"), head.pack(tuple(args))
                )
                if isinstance(woken, BaseException):
                    wait_error.append(woken)
                if isinstance(reply, BaseException):
                    raise reply
                return reply

        try:
            reply = await self._taking(
                "fetch",
                queue,
                token,
                lambda rid, lost: [token, limit, "", _t(lease), rid, *lost],
                run,
            )
        except BackendError as exc:
            if not isinstance(exc.__cause__, NoScriptError):
                raise
            # the fetch did not run (the server lost its scripts): the usual way loads it
            return await self._take(queue, token, limit, lease)
        jobs, due = await self._fetched(queue, token, reply)
        if wait_error and not jobs:
            with self._errors:
                raise wait_error[0]
        return jobs, due

    async def _fetched(
        self, queue: str, token: str, reply: Any
    ) -> tuple[list[JobRecord], float | None]:
        due = reply[0]
        jobs, broken = taken(reply, 1)
        if broken:
            await self._fail_broken(queue, token, broken)
        return jobs, (None if due is None else float(due))

    async def _fail_broken(self, queue: str, token: str, broken: list[tuple[str, str]]) -> None:
        """Fail jobs just taken whose records cannot be decoded, with the reason, instead of
        running them (best-effort: if this fails, their leases expire and the sweep retries)."""
        now = time.time()
        count, cutoff = _keep_args(KEEP_FAILED, now)
        args: list[Any] = [token, 0, _t(now), _t(now), "", 0, len(broken)]
        for job_id, reason in broken:
            logger.warning("job %r of queue %r failed: %s", job_id, queue, reason)
            args += [job_id, "failed", 0, _t(now), "", reason, "", "", count, cutoff]
        try:
            await self._run("finish", queue, args)
        except BackendError as exc:
            logger.warning("could not fail the corrupted jobs of queue %r: %s", queue, exc)

    async def fetch(
        self, queue: str, token: str, limit: int, lease: float, block: float
    ) -> list[JobRecord]:
        jobs, due = await self._take(queue, token, limit, lease)
        if jobs or block <= 0:
            return jobs
        deadline = time.monotonic() + block
        marker = self._qk(queue)[0].key("marker")
        while True:
            timeout = deadline - time.monotonic()
            if due is not None:
                timeout = min(timeout, due - time.time())
            if timeout > 0:
                if self._blocking is None:
                    raise BackendError(f"redis backend {self._url.redacted} is not open")
                # whole milliseconds, rounded up: waking a hair early would cost one more look
                wait = math.ceil(timeout * 1000) / 1000
                if self._blocking.lean:
                    jobs, due = await self._wait_then_take(queue, token, limit, lease, marker, wait)
                else:
                    with self._errors:
                        await self._blocking.call(marker, wait, "BZPOPMIN", marker, f"{wait:.3f}")
                    jobs, due = await self._take(queue, token, limit, lease)
            else:
                jobs, due = await self._take(queue, token, limit, lease)
            if jobs or time.monotonic() >= deadline:
                return jobs

    async def extend(
        self, queue: str, token: str, job_ids: Sequence[str], lease: float
    ) -> list[str]:
        if not job_ids:
            return []
        lost = await self._run("extend", queue, [token, _t(time.time() + lease), *job_ids])
        return list(lost)

    async def finish(
        self, queue: str, token: str, finishes: Sequence[Finish], fetch: int, lease: float
    ) -> FinishResult:
        now = time.time()
        # the request id and the count of unanswered ones (index 4, 5) are filled in by build
        args: list[Any] = [token, max(fetch, 0), _t(now), _t(now + lease), "", 0, len(finishes)]
        for fin in finishes:
            keep = fin.keep
            if keep.count is None and keep.age is None:  # the default: keep all, no arguments
                count = cutoff = ""
            else:
                count, cutoff = _keep_args(keep, fin.finished_on)
            text = fin.returnvalue_json
            args += (
                fin.job_id,
                fin.status,
                fin.attempts_made,
                _t(fin.finished_on),
                "" if text is None else text,
                fin.failed_reason or "",
                fin.stacktrace or "",
                _t(fin.retry_at),
                count,
                cutoff,
            )

        def build(rid: str, gone: list[str]) -> list[Any]:
            args[4] = rid
            if gone:
                return [*args[:5], len(gone), *gone, *args[6:]]
            return args

        lost, jobs = await self._taking("finish", queue, token, build)
        taken_jobs, broken = taken(jobs)
        if broken:
            await self._fail_broken(queue, token, broken)
        return FinishResult(list(lost), taken_jobs)

    async def release(self, queue: str, token: str, job_ids: Sequence[str] | None) -> list[str]:
        if job_ids is not None and not job_ids:
            return []
        mode = "all" if job_ids is None else "ids"
        return list(await self._run("release", queue, [token, mode, *(job_ids or ())]))

    async def recover_stalled(self, queue: str, max_stalls: int) -> list[Stalled]:
        args = [_t(time.time()), max_stalls, STALLED_REASON, KEEP_FAILED.count]
        reply = await self._run("stalled", queue, args)
        return [Stalled(reply[i], reply[i + 1] == 1) for i in range(0, len(reply), 2)]

    async def update_progress(self, queue: str, job_id: str, progress_json: str) -> bool:
        return bool(await self._run("progress", queue, [job_id, progress_json]))

    async def add_log(self, queue: str, job_id: str, line: str, keep: int) -> int:
        return int(await self._run("log", queue, [job_id, line, keep]))

    # -- events (Redis only; not part of the Backend contract yet) --------------------------
    async def read_events(
        self, queue: str, after: str = "$", block: float = 0.0, count: int = 100
    ) -> list[tuple[str, dict[str, str]]]:
        """Job events of ``queue`` after stream id ``after`` (``"$"``: only new ones), waiting
        up to ``block`` seconds for the first: ``(stream id, {"event", "id", ...})`` each.

        Events are best-effort: the stream keeps about the last
        :data:`~polyjobs.backends.redis.keys.EVENTS_MAXLEN` of them, and a follower that falls
        behind misses some. Read a job's state (``get_job``) for the truth. Events: ``added``
        (name, state), ``completed`` (returnvalue), ``failed`` (failed_reason), ``retrying``
        (failed_reason, retry_at), ``stalled`` (failed 0/1), ``progress`` (progress),
        ``released`` (a parent whose children are done), ``deduplicated`` (deduplication_id,
        outcome: the add a window absorbed; ``id`` is the holder).
        """
        stream = self._qk(queue)[0].key("events")
        command = ["XREAD", "COUNT", str(count)]
        if block > 0:
            command += ["BLOCK", str(max(1, round(block * 1000)))]
        command += ["STREAMS", stream, after]
        if self._blocking is None:
            raise BackendError(f"redis backend {self._url.redacted} is not open")
        with self._errors:
            reply = await self._blocking.call(stream, block, *command)
        if not reply:
            return []
        # RESP3 answers a map {stream: entries}, RESP2 a list [[stream, entries]]
        entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
        return [(entry_id, _pairs(fields)) for entry_id, fields in entries]

    # -- inspection ------------------------------------------------------------------------
    async def get_job(self, queue: str, job_id: str) -> JobRecord | None:
        key = self._qk(queue)[0].job(job_id)
        try:
            with self._errors:
                values: list[Any] = await self.redis.hmget(key, list(FIELDS))
        except BackendError as exc:
            if isinstance(exc.__cause__, ResponseError) and "WRONGTYPE" in str(exc.__cause__):
                raise BackendError(f"job {job_id!r} of queue {queue!r}: {NOT_A_HASH}") from exc
            raise
        if not values[3]:
            return None
        return record(job_id, values)

    async def get_logs(self, queue: str, job_id: str, start: int, end: int) -> list[str]:
        with self._errors:
            lines = await self.redis.lrange(self._qk(queue)[0].log(job_id), start, end)
        return [str(line) for line in lines]

    async def list_jobs(self, queue: str, state: JobState, start: int, end: int) -> list[JobRecord]:
        found = records(await self._run("list", queue, [state, start, end]))
        if state == "active":
            found.sort(key=lambda r: r.processed_on or 0.0)
            return inclusive_range(found, start, end)
        return found

    async def get_metrics(self, queue: str, since: float) -> list[MinuteMetrics]:
        with self._errors:
            fields = await self.redis.hgetall(self._qk(queue)[0].key("metrics"))
        start = minute_of(since)
        minutes: dict[float, list[float]] = {}
        for field, value in fields.items():
            kind, _, minute = str(field).partition(":")
            if kind not in ("c", "f", "t") or not minute or float(minute) < start:
                continue
            row = minutes.setdefault(float(minute), [0, 0, 0.0])
            row["cft".index(kind)] = float(value)
        return [
            MinuteMetrics(minute, int(c), int(f), t)
            for minute, (c, f, t) in sorted(minutes.items())
        ]

    async def counts(self, queue: str) -> dict[str, int]:
        # a read-only script, not MULTI/EXEC: Redis refuses MULTI entirely over maxmemory
        sizes = await self._run("read", queue, ["counts"])
        names = ("waiting", "active", "delayed", "waiting-children", "completed", "failed")
        return dict(zip(names, (int(n) for n in sizes), strict=True))

    async def queues(self) -> list[str]:
        with self._errors:
            members = await self.redis.smembers(registry_key(self.prefix))
            names = sorted(str(m) for m in members)
            if not names:
                return []
            async with self.redis.pipeline(transaction=False) as pipe:
                for name in names:
                    qk = self._qk(name)[0]
                    # gsv: the groups with waiting or active jobs (held ones too); a grouped
                    # job waits in its group's set, in no wait list
                    sets = (
                        "wait",
                        "gsv",
                        "delayed",
                        "active",
                        "wc",
                        "completed",
                        "failed",
                        "sched",
                    )
                    pipe.exists(*(qk.key(s) for s in (*sets, "workers")))
                    pipe.hexists(qk.key("meta"), "paused")
                replies = await pipe.execute()
        return [n for i, n in enumerate(names) if replies[2 * i] or replies[2 * i + 1]]

    # -- administration --------------------------------------------------------------------
    async def pause(self, queue: str) -> None:
        await self._register(queue, await self._run("pause", queue, ["pause"]))

    async def resume(self, queue: str) -> None:
        await self._register(queue, await self._run("pause", queue, ["resume"]))

    async def is_paused(self, queue: str) -> bool:
        with self._errors:
            return bool(await self.redis.hexists(self._qk(queue)[0].key("meta"), "paused"))

    async def drain(self, queue: str, delayed: bool) -> int:
        total = 0
        while True:
            removed = int(await self._run("drain", queue, ["1" if delayed else "0", CHUNK]))
            total += removed
            if removed < CHUNK:
                return total

    async def clean(self, queue: str, state: JobState, grace: float, limit: int) -> list[str]:
        if state == "active":
            return []
        cutoff = _t(time.time() - grace)
        return list(await self._run("clean", queue, [state, cutoff, max(limit, 0)]))

    async def remove(self, queue: str, job_id: str) -> bool:
        return bool(await self._run("remove", queue, [job_id]))

    async def cancel(
        self, queue: str, job_id: str, reason: str, now: float
    ) -> CancelOutcome | None:
        outcome = await self._run("cancel", queue, ["cancel", job_id, reason, _t(now)])
        if outcome in (b"failed", "failed"):
            return "failed"
        if outcome in (b"requested", "requested"):
            return "requested"
        return None

    async def cancel_requests(self, queue: str, job_ids: Sequence[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        flat = await self._run("cancel", queue, ["requests", *job_ids])
        texts = [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
        return dict(zip(texts[::2], texts[1::2], strict=True))

    async def retry(self, queue: str, job_id: str) -> bool:
        return bool(await self._run("retry", queue, [job_id]))

    async def promote(self, queue: str, job_id: str) -> bool:
        return bool(await self._run("promote", queue, [job_id, _t(time.time())]))

    async def obliterate(self, queue: str) -> None:
        while int(await self._run("obliterate", queue, [CHUNK])) > 0:
            pass
        with self._errors:
            await self.redis.srem(registry_key(self.prefix), queue)

    # -- rate limits -----------------------------------------------------------------------
    async def set_rate_limit(self, queue: str, limit: RateLimit | None) -> None:
        args = ["clear"] if limit is None else ["set", limit.max, _t(limit.duration)]
        await self._register(queue, await self._run("limit", queue, args))

    async def get_rate_limit(self, queue: str) -> RateLimit | None:
        with self._errors:
            count, duration = await self.redis.hmget(self._qk(queue)[0].key("meta"), "rlm", "rld")
        if count is None or duration is None:
            return None
        return RateLimit(int(count), float(duration))

    async def set_global_concurrency(self, queue: str, limit: int | None) -> None:
        args = ["gc", "" if limit is None else int(limit)]
        await self._register(queue, await self._run("limit", queue, args))

    async def get_global_concurrency(self, queue: str) -> int | None:
        with self._errors:
            value = await self.redis.hget(self._qk(queue)[0].key("meta"), "gc")
        return None if value is None else int(value)

    # -- groups ----------------------------------------------------------------------------
    async def set_group_concurrency(self, queue: str, limit: int | None) -> None:
        args = ["gcc", "" if limit is None else int(limit)]
        await self._register(queue, await self._run("limit", queue, args))

    async def get_group_concurrency(self, queue: str) -> int | None:
        with self._errors:
            value = await self.redis.hget(self._qk(queue)[0].key("meta"), "gcc")
        return None if value is None else int(value)

    async def set_group_rate_limit(self, queue: str, limit: RateLimit | None) -> None:
        args = ["grl", ""] if limit is None else ["grl", limit.max, _t(limit.duration)]
        await self._register(queue, await self._run("limit", queue, args))

    async def get_group_rate_limit(self, queue: str) -> RateLimit | None:
        with self._errors:
            count, duration = await self.redis.hmget(self._qk(queue)[0].key("meta"), "grm", "grd")
        if count is None or duration is None:
            return None
        return RateLimit(int(count), float(duration))

    async def hold_group(self, queue: str, group: str, until: float) -> None:
        args = ["ghold", group, _t(until)]
        await self._register(queue, await self._run("limit", queue, args))

    async def hold(self, queue: str, until: float) -> None:
        await self._register(queue, await self._run("limit", queue, ["hold", _t(until)]))

    # -- control ---------------------------------------------------------------------------
    async def send_control(self, command: str, payload_json: str) -> ControlMessage:
        if self._scripts is None:
            raise BackendError(f"redis backend {self._url.redacted} is not open")
        key = control_key(self.prefix)
        args = [_t(time.time()), command, payload_json, CONTROL_KEEP]
        with self._errors:
            at = await self._scripts.call("control", [key], args)
        return ControlMessage(float(at), command, payload_json)

    async def control_messages(self, since: float) -> list[ControlMessage]:
        key = control_key(self.prefix)
        with self._errors:
            members = await self.redis.zrangebyscore(key, f"({_t(since)}", "+inf")
        out = []
        for member in members:
            at, command, payload = json.loads(str(member))
            out.append(ControlMessage(float(at), command, payload))
        return out

    # -- schedules -------------------------------------------------------------------------
    async def save_schedule(self, queue: str, schedule: ScheduleRecord) -> ScheduleRecord:
        definition = asdict(schedule)
        del definition["next_run"]
        cadence = json.dumps([schedule.every, schedule.cron, schedule.tz])
        args = ["save", schedule.key, json.dumps(definition), cadence, _t(schedule.next_run)]
        stored, registered = await self._run("schedule", queue, args)
        await self._register(queue, registered)
        return replace(schedule, next_run=float(stored))

    async def get_schedules(self, queue: str) -> list[ScheduleRecord]:
        flat = await self._run("read", queue, ["schedules"])
        return [
            ScheduleRecord(**loads(flat[i + 1]), next_run=float(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]

    async def remove_schedule(self, queue: str, key: str) -> bool:
        return bool(await self._run("schedule", queue, ["remove", key]))

    async def advance_schedule(
        self, queue: str, key: str, expected_next: float, next_run: float, jobs: Sequence[NewJob]
    ) -> bool:
        args = ["advance", key, _t(expected_next), _t(next_run), _t(time.time()), len(jobs)]
        for new in jobs:
            args.extend(_job_args(new))
            args.append(new.group or "")
        return bool(await self._run("schedule", queue, args))

    # -- worker registry -------------------------------------------------------------------
    async def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        now = time.time()
        text = json.dumps(asdict(replace(info, last_seen=now)))
        flag = await self._run("heartbeat", info.queue, [info.id, _t(now + ttl), text, _t(now)])
        await self._register(info.queue, flag)

    async def unregister(self, queue: str, worker_id: str) -> None:
        qk = self._qk(queue)[0]
        # no MULTI (refused over maxmemory); a half-done unregister is a registration that
        # expires or has no info, both of which list_workers leaves out
        with self._errors:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(qk.key("workers"), worker_id)
                pipe.hdel(qk.key("workers_info"), worker_id)
                await pipe.execute()

    async def list_workers(self, queue: str) -> list[WorkerInfo]:
        flat = await self._run("read", queue, ["workers", _t(time.time())])
        return [WorkerInfo(**loads(flat[i + 1])) for i in range(0, len(flat), 2)]
