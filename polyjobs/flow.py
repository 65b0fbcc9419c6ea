"""``FlowProducer``: add a tree (or DAG) of jobs whose parents run after their children.

A node is a mapping::

    {"name": "report", "queue": "reports", "data": {...}, "opts": {...},
     "job_id": "r-1", "children": [node, ...]}

``queue`` is required at the top and inherited by children that leave it out. A node may stand
for a job of the same flow or an existing job by giving only ``job_id`` (and ``queue``): that
job becomes a child of each node listing it, so a job can have several parents (a DAG). The
whole flow is added in one atomic step; cycles, a job defined twice, a reference to a missing
job and children for an existing job are refused before anything is stored.

A child's options may hold one failure policy: ``fail_parent_on_failure``,
``ignore_dependency_on_failure``, ``remove_dependency_on_failure`` or
``continue_parent_on_failure`` (see :class:`~polyjobs.backend.FlowBackend`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from polyjobs.backend import (
    CAP_FLOWS_ACROSS_QUEUES,
    FlowNode,
    JobRecord,
    JobRef,
    NewJob,
    flows_of,
)
from polyjobs.errors import InvalidArgumentError
from polyjobs.job import Job
from polyjobs.options import check_job_id
from polyjobs.queue import Queue, check_queue_name
from polyjobs.redact import redact_url

if TYPE_CHECKING:
    from polyjobs.backend import Backend

#: The most jobs one ``add`` or ``add_bulk`` call may hold (it is one atomic step).
MAX_FLOW_NODES = 50_000
NODE_KEYS = frozenset({"name", "queue", "data", "opts", "job_id", "children"})


@dataclass(eq=False)
class JobNode:
    """A job of an added flow and its children (a child shared by several parents is the same
    ``JobNode`` under each of them)."""

    job: Job
    children: list[JobNode] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<JobNode {self.job.queue_name}/{self.job.id} children={len(self.children)}>"


@dataclass(eq=False)
class _Node:
    """One distinct job of the flow being added (a definition or a reference)."""

    ref_queue: str
    job_id: str | None
    new: NewJob | None = None
    data: Any = None  # as given (so the returned Job needs no decoding)
    policy: str = "wait"
    children: list[_Node] = field(default_factory=list)
    index: int = -1


class FlowProducer:
    """Adds flows to the queues of ``backend`` (which must declare the ``flows`` capability).

    ``queues`` are :class:`~polyjobs.Queue` objects whose default options, payload bound and
    validation apply to the nodes of their queue; other queues get plain defaults.
    """

    def __init__(self, backend: Backend, *, queues: Iterable[Queue] = ()) -> None:
        self.backend = backend
        self._queues: dict[str, Queue] = {q.name: q for q in queues}

    def __repr__(self) -> str:
        return f"<FlowProducer {redact_url(self.backend.url)}>"

    def _queue(self, name: str) -> Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = Queue(check_queue_name(name), self.backend)
        return queue

    async def add(self, node: Mapping[str, Any]) -> JobNode:
        """Add one flow atomically; return its top job and the tree below it."""
        return (await self.add_bulk([node]))[0]

    async def add_bulk(self, nodes: Iterable[Mapping[str, Any]]) -> list[JobNode]:
        """Add several flows in one atomic step (all or nothing); return their tops."""
        backend = flows_of(self.backend)
        builder = _Builder(self, time.time())
        tops = [builder.parse(node) for node in nodes]
        if not tops:
            return []
        ordered = builder.ordered()
        queues = {n.ref_queue for n in ordered}
        if len(queues) > 1 and CAP_FLOWS_ACROSS_QUEUES not in self.backend.capabilities:
            raise InvalidArgumentError(
                f"the backend {redact_url(self.backend.url)} keeps each flow in one queue; "
                f"this one spans {', '.join(sorted(queues))}"
            )
        flow = [
            FlowNode(
                queue=n.ref_queue,
                job=n.new,
                job_id=n.job_id,
                children=tuple(c.index for c in n.children),
                policy=n.policy,  # type: ignore[arg-type]  # checked by JobOptions
            )
            for n in ordered
        ]
        results = await backend.add_flow(flow)
        jobs = await self._jobs(ordered, results)
        made: dict[int, JobNode] = {}
        for n in ordered:  # children first, so each parent finds its children made
            made[n.index] = JobNode(jobs[n.index], [made[c.index] for c in n.children])
        return [made[top.index] for top in tops]

    async def _jobs(self, ordered: list[_Node], results: list[Any]) -> list[Job]:
        jobs = []
        for n, result in zip(ordered, results, strict=True):
            record = None
            fresh = result.added and n.new is not None
            if fresh and not any(c.new is None or not results[c.index].added for c in n.children):
                record = _record_of(n.new, n.data, result.id, bool(n.children))  # type: ignore[arg-type]
            else:
                record = await self.backend.get_job(n.ref_queue, result.id)
            if record is None:  # gone already (e.g. run and removed at once)
                record = JobRecord(result.id, "", None, {}, "completed", time.time())
            jobs.append(Job(record, n.ref_queue, self.backend))
        return jobs


class _Builder:
    """Turns node mappings into distinct jobs, edges and a children-first order."""

    def __init__(self, producer: FlowProducer, now: float) -> None:
        self.producer = producer
        self.now = now
        self.nodes: list[_Node] = []
        self.by_id: dict[JobRef, _Node] = {}
        self.defined: set[JobRef] = set()

    def parse(self, top: Mapping[str, Any]) -> _Node:
        root = self._node(top, None)
        stack = [(top, root)]
        while stack:
            raw, node = stack.pop()
            seen = {id(c) for c in node.children}
            for child_raw in raw.get("children") or ():
                child = self._node(child_raw, node.ref_queue)
                if id(child) not in seen:
                    seen.add(id(child))
                    node.children.append(child)
                if child_raw.get("children"):
                    stack.append((child_raw, child))
            if len(self.nodes) > MAX_FLOW_NODES:
                raise InvalidArgumentError(f"a flow holds at most {MAX_FLOW_NODES} jobs")
        return root

    def _node(self, raw: Any, parent_queue: str | None) -> _Node:
        queue_name, opts, job_id = _parse_node(raw, parent_queue)
        is_ref = "name" not in raw
        ref = None if job_id is None else JobRef(queue_name, job_id)
        node = self.by_id.get(ref) if ref is not None else None
        if node is None:
            node = _Node(queue_name, job_id)
            self.nodes.append(node)
            if ref is not None:
                self.by_id[ref] = node
        if not is_ref:
            if ref is not None and ref in self.defined:
                raise InvalidArgumentError(f"job {ref} is defined twice in the flow")
            if ref is not None:
                self.defined.add(ref)
            self._define(node, raw, opts)
        return node

    def _define(self, node: _Node, raw: Mapping[str, Any], opts: dict[str, Any]) -> None:
        queue = self.producer._queue(node.ref_queue)
        new, parsed = queue._parse_job(raw["name"], raw.get("data"), opts, self.now)
        if parsed.deduplication is not None:
            raise InvalidArgumentError("flow jobs take no deduplication option")
        node.new, node.data = new, raw.get("data")
        node.policy = parsed.failure_policy

    def ordered(self) -> list[_Node]:
        """Every node, children before parents; a cycle raises ``InvalidArgumentError``."""
        order: list[_Node] = []
        state: dict[int, int] = {}  # id(node) -> 1 visiting, 2 done
        for start in self.nodes:
            if state.get(id(start)) == 2:
                continue
            stack: list[tuple[_Node, int]] = [(start, 0)]
            state[id(start)] = 1
            while stack:
                node, i = stack[-1]
                if i < len(node.children):
                    stack[-1] = (node, i + 1)
                    child = node.children[i]
                    seen = state.get(id(child))
                    if seen == 1:
                        raise InvalidArgumentError(
                            f"the flow has a cycle through job {child.ref_queue}:{child.job_id}"
                        )
                    if seen is None:
                        state[id(child)] = 1
                        stack.append((child, 0))
                    continue
                stack.pop()
                state[id(node)] = 2
                node.index = len(order)
                order.append(node)
        return order


def _parse_node(raw: Any, parent_queue: str | None) -> tuple[str, dict[str, Any], str | None]:
    """A node's queue, options and job id (checked); a reference carries nothing else."""
    if not isinstance(raw, Mapping):
        raise InvalidArgumentError(f"a flow node must be a mapping, got {raw!r}")
    unknown = set(raw) - NODE_KEYS
    if unknown:
        raise InvalidArgumentError(f"unknown flow node keys: {', '.join(sorted(unknown))}")
    queue_name = raw.get("queue", parent_queue)
    if queue_name is None:
        raise InvalidArgumentError("the top node of a flow needs a queue")
    if queue_name != parent_queue:  # an inherited name was checked with its parent
        check_queue_name(queue_name)
    children = raw.get("children") or []
    if not isinstance(children, list | tuple):
        raise InvalidArgumentError(f"children must be a list of nodes, got {children!r}")
    opts = raw.get("opts") or {}
    if not isinstance(opts, Mapping):
        raise InvalidArgumentError(f"opts of a flow node must be a mapping, got {opts!r}")
    opts = dict(opts)
    job_id = raw.get("job_id", opts.get("job_id"))
    if job_id is not None:
        job_id = check_job_id(job_id)
        if opts.get("job_id") not in (None, job_id):
            raise InvalidArgumentError(f"flow node gives two job ids: {job_id!r}")
        opts["job_id"] = job_id
    if "name" not in raw:
        if job_id is None:
            raise InvalidArgumentError("a flow node needs a name (or a job_id to refer to)")
        if set(raw) - {"queue", "job_id"}:
            raise InvalidArgumentError(
                f"flow node {job_id!r} refers to a job: it takes only queue and job_id"
            )
    return queue_name, opts, job_id


def _record_of(new: NewJob, data: Any, job_id: str, has_children: bool) -> JobRecord:
    if has_children:
        state: Any = "waiting-children"
    else:
        state = "delayed" if new.run_at > new.timestamp else "waiting"
    return JobRecord(
        id=job_id,
        name=new.name,
        data=data,
        opts=dict(new.opts),
        state=state,
        timestamp=new.timestamp,
        run_at=new.run_at,
        priority=new.priority,
    )


async def family(job: Job, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
    """A job's parents and children with their states, for display (``jobs show``, the board):
    ``{"parents": [{"queue", "id", "state"}], "children": [{"queue", "id", "state",
    "value" | "reason"}]}``, at most ``limit`` of each. A child's state is ``completed`` once its
    parent holds its value, ``ignored`` for an ignored failure, else its state now (``removed``
    when it is gone)."""
    parents = []
    for ref in (await job.parents())[:limit]:
        record = await job._backend.get_job(ref.queue, ref.id)
        state = "removed" if record is None else record.state
        parents.append({"queue": ref.queue, "id": ref.id, "state": state})
    deps = await job.dependencies()
    children: list[dict[str, Any]] = []
    for ref, value in sorted(deps.processed.items()):
        children.append({"queue": ref.queue, "id": ref.id, "state": "completed", "value": value})
    for ref, reason in sorted(deps.ignored.items()):
        children.append({"queue": ref.queue, "id": ref.id, "state": "ignored", "reason": reason})
    for ref, now in sorted(deps.pending.items()):
        children.append({"queue": ref.queue, "id": ref.id, "state": now or "removed"})
    return {"parents": parents, "children": children[:limit]}
