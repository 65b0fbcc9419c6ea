"""Flows and deduplication windows of the in-process backend (see ``FlowBackend`` and
``DedupBackend`` in :mod:`polyjobs.backend` for the rules).

The edges of every flow live in one graph for the whole backend (a flow spans queues):
``edges[parent][child]`` is the parent's view of a child (pending, processed with its return
value, or ignored with its failure reason) and ``parents[child]`` the way back. Every method
runs without an ``await``, so each transition, with all it does to other jobs, is atomic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from polyjobs.backend import AddResult, Dependencies, FlowNode, JobRecord, JobRef, NewJob
from polyjobs.errors import InvalidArgumentError
from polyjobs.options import KEEP_FAILED, Keep

if TYPE_CHECKING:
    from polyjobs.backends.memory.backend import _Queue


@dataclass
class Edge:
    status: str = "pending"  # pending | processed | ignored
    value: Any = None  # return value (processed) or failed reason (ignored)


@dataclass
class Hold:
    """A held deduplication id: its job, when the hold ends (None: when the job ends), and the
    add kept to run after the active holder (keep_last_if_active)."""

    job_id: str
    expires: float | None
    next: NewJob | None = None


@dataclass
class Graph:
    edges: dict[JobRef, dict[JobRef, Edge]] = field(default_factory=dict)
    parents: dict[JobRef, set[JobRef]] = field(default_factory=dict)
    policy: dict[JobRef, str] = field(default_factory=dict)  # child -> its failure policy
    delay: dict[JobRef, float] = field(default_factory=dict)  # parent -> delay after release


class FlowsMixin:
    """The flow and window methods of ``MemoryBackend`` (mixed into it)."""

    _graph: Graph
    _queues: dict[str, _Queue]

    if TYPE_CHECKING:

        def _q(self, queue: str) -> _Queue: ...
        def _insert(self, q: _Queue, new: NewJob, parent: bool = False) -> AddResult: ...
        def _to_waiting(self, q: _Queue, job: JobRecord, front: bool = False) -> None: ...
        def _to_delayed(self, q: _Queue, job: JobRecord) -> None: ...
        def _notify(self, q: _Queue) -> None: ...
        def _unlink(self, q: _Queue, job: JobRecord) -> None: ...
        def _retain(self, q: _Queue, finished: Any, keep: Keep, now: float) -> None: ...

    def _job_at(self, ref: JobRef) -> tuple[_Queue, JobRecord] | None:
        q = self._queues.get(ref.queue)
        job = None if q is None else q.jobs.get(ref.id)
        return None if q is None or job is None else (q, job)

    # -- flows: the FlowBackend methods ----------------------------------------------------
    async def add_flow(self, nodes: Sequence[FlowNode]) -> list[AddResult]:
        refs: list[JobRef] = []
        existing: list[bool] = []
        for node in nodes:  # check everything before changing anything
            job_id = node.job.job_id if node.job is not None else node.job_id
            there = job_id is not None and self._job_at(JobRef(node.queue, job_id)) is not None
            if node.job is None and not there:
                raise InvalidArgumentError(f"job {node.queue}:{job_id} of the flow does not exist")
            if there and node.children:
                raise InvalidArgumentError(
                    f"job {node.queue}:{job_id} already exists: a flow cannot give it children"
                )
            existing.append(there)
        results = []
        for node, there in zip(nodes, existing, strict=True):
            q = self._q(node.queue)
            if there:
                job_id = node.job.job_id if node.job is not None else node.job_id
                assert job_id is not None
                result = AddResult(job_id, False)
            else:
                assert node.job is not None
                result = self._insert(q, node.job, parent=bool(node.children))
            ref = JobRef(node.queue, result.id)
            refs.append(ref)
            results.append(result)
            if not there:
                if node.policy != "wait":
                    self._graph.policy[ref] = node.policy
                if node.children and node.job is not None:
                    delay = node.job.run_at - node.job.timestamp
                    if delay > 0:
                        self._graph.delay[ref] = delay
                    self._link(ref, [refs[i] for i in node.children])
            self._notify(q)
        return results

    def _link(self, parent: JobRef, children: list[JobRef]) -> None:
        edges = self._graph.edges.setdefault(parent, {})
        failed: list[JobRef] = []
        for child in dict.fromkeys(children):
            found = self._job_at(child)
            assert found is not None
            job = found[1]
            edges[child] = Edge()
            self._graph.parents.setdefault(child, set()).add(parent)
            if job.state == "completed":
                edges[child] = Edge("processed", job.returnvalue)
            elif job.state == "failed":
                failed.append(child)
        for child in failed:
            found = self._job_at(child)
            assert found is not None
            self._cascade([(child, found[1].failed_reason or "")], only=parent)
        self._release_if_done(parent)

    async def get_dependencies(self, queue: str, job_id: str) -> Dependencies:
        deps = Dependencies()
        for child, edge in self._graph.edges.get(JobRef(queue, job_id), {}).items():
            if edge.status == "processed":
                deps.processed[child] = edge.value
            elif edge.status == "ignored":
                deps.ignored[child] = edge.value
            else:
                found = self._job_at(child)
                deps.pending[child] = None if found is None else found[1].state
        return deps

    async def get_parents(self, queue: str, job_id: str) -> list[JobRef]:
        parents = self._graph.parents.get(JobRef(queue, job_id), set())
        return [p for p in parents if self._job_at(p) is not None]

    # -- flows: transitions -----------------------------------------------------------------
    def _release(self, ref: JobRef) -> None:
        """Move a parent out of ``waiting-children`` (to delayed when it has a delay)."""
        found = self._job_at(ref)
        if found is None or found[1].state != "waiting-children":
            return
        q, job = found
        q.waiting_children.pop(job.id, None)
        delay = self._graph.delay.pop(ref, 0.0)
        if delay > 0:
            job.run_at = time.time() + delay
            self._to_delayed(q, job)
        else:
            self._to_waiting(q, job)
        self._notify(q)

    def _release_if_done(self, ref: JobRef) -> None:
        edges = self._graph.edges.get(ref, {})
        if not any(e.status == "pending" for e in edges.values()):
            self._release(ref)

    def _completed(self, ref: JobRef, value: Any) -> None:
        """A child completed: each parent waiting for it keeps its value."""
        for parent in self._graph.parents.get(ref, ()):
            edge = self._graph.edges.get(parent, {}).get(ref)
            if edge is not None and edge.status == "pending":
                edge.status, edge.value = "processed", value
                self._release_if_done(parent)

    def _cascade(self, work: list[tuple[JobRef, str]], only: JobRef | None = None) -> None:
        """Apply the failure policies of failed jobs to their parents (to ``only`` alone when
        given), failing parents in turn; then apply the retention of the failed parents."""
        failed: list[tuple[_Queue, JobRecord]] = []
        while work:
            child, why = work.pop()
            policy = self._graph.policy.get(child, "wait")
            parents = [only] if only is not None else sorted(self._graph.parents.get(child, ()))
            only = None
            for parent in parents:
                edge = self._graph.edges.get(parent, {}).get(child)
                if edge is None or edge.status != "pending" or policy == "wait":
                    continue
                if policy == "fail":
                    reason = f"child {child} failed: {why}"
                    if self._fail_waiting(parent, reason, failed):
                        work.append((parent, reason))
                    continue
                if policy == "remove":
                    del self._graph.edges[parent][child]
                    self._graph.parents.get(child, set()).discard(parent)
                else:
                    edge.status, edge.value = "ignored", why
                if policy == "continue":
                    self._release(parent)
                else:
                    self._release_if_done(parent)
        now = time.time()
        for q, job in failed:
            keep = Keep.from_json(job.opts.get("remove_on_fail"), KEEP_FAILED)
            self._retain(q, q.failed, keep, now)

    def _fail_waiting(
        self, ref: JobRef, reason: str, failed: list[tuple[_Queue, JobRecord]]
    ) -> bool:
        """Fail a parent still in ``waiting-children``; True when it was."""
        found = self._job_at(ref)
        if found is None or found[1].state != "waiting-children":
            return False
        q, job = found
        now = time.time()
        q.waiting_children.pop(job.id, None)
        job.state, job.failed_reason, job.finished_on = "failed", reason, now
        q.failed[job.id] = now
        failed.append((q, job))
        return True

    def _forget(self, q: _Queue, job: JobRecord) -> None:
        """A job was deleted: unlink it from its children and parents, free its window."""
        ref = JobRef(q.name, job.id)
        graph = self._graph
        for child in graph.edges.pop(ref, {}):
            graph.parents.get(child, set()).discard(ref)
        graph.delay.pop(ref, None)
        graph.policy.pop(ref, None)
        failed_parents: list[tuple[JobRef, str]] = []
        for parent in sorted(graph.parents.pop(ref, set())):
            edges = graph.edges.get(parent, {})
            edge = edges.get(ref)
            if edge is None or edge.status != "pending":
                continue
            del edges[ref]
            if job.state == "failed":
                failed_parents.append((parent, f"child {ref} failed and was removed"))
            else:
                self._release_if_done(parent)
        for parent, reason in failed_parents:
            failed: list[tuple[_Queue, JobRecord]] = []
            if self._fail_waiting(parent, reason, failed):
                self._cascade([(parent, reason)])
                for fq, fjob in failed:
                    keep = Keep.from_json(fjob.opts.get("remove_on_fail"), KEEP_FAILED)
                    self._retain(fq, fq.failed, keep, time.time())
        dedup_id = q.held_by.pop(job.id, None)
        if dedup_id is not None and q.dedup.get(dedup_id, Hold("", None)).job_id == job.id:
            del q.dedup[dedup_id]

    # -- deduplication windows --------------------------------------------------------------
    def _deduplicate(self, q: _Queue, new: NewJob) -> AddResult | None:
        """The result of an add absorbed by its window, or None when the add goes ahead."""
        assert new.dedup is not None
        d = new.dedup
        now = time.time()
        hold = q.dedup.get(d.id)
        if hold is not None and (
            (hold.expires is not None and hold.expires <= now) or hold.job_id not in q.jobs
        ):
            del q.dedup[d.id]
            q.held_by.pop(hold.job_id, None)
            hold = None
        if hold is None:
            return None
        holder = q.jobs[hold.job_id]
        if d.keep_last_if_active and holder.state == "active":
            hold.next, hold.expires = new, None
            return AddResult(holder.id, False, "kept-next")
        if d.extend and d.ttl is not None:
            hold.expires = now + d.ttl
        if d.replace and holder.state in ("waiting", "delayed"):
            self._unlink(q, holder)
            holder.name, holder.opts = new.name, dict(new.opts)
            holder.data = json.loads(new.data_json)
            holder.priority, holder.run_at = new.priority, new.run_at
            if new.run_at > now:
                self._to_delayed(q, holder)
            else:
                self._to_waiting(q, holder, front=new.lifo)
            self._notify(q)
            return AddResult(holder.id, False, "replaced")
        return AddResult(holder.id, False, "ignored")

    def _hold(self, q: _Queue, new: NewJob, job_id: str) -> None:
        assert new.dedup is not None
        ttl = new.dedup.ttl
        q.dedup[new.dedup.id] = Hold(job_id, None if ttl is None else time.time() + ttl)
        q.held_by[job_id] = new.dedup.id

    def _window_ends(self, q: _Queue, job_id: str) -> None:
        """A job ended for good: free its window, or add the kept next job as its holder."""
        dedup_id = q.held_by.get(job_id)
        hold = None if dedup_id is None else q.dedup.get(dedup_id)
        if dedup_id is None or hold is None or hold.job_id != job_id:
            q.held_by.pop(job_id, None)
            return
        if hold.next is not None:
            now = time.time()
            kept = hold.next
            delay = max(kept.run_at - kept.timestamp, 0.0)
            fresh = replace(kept, timestamp=now, run_at=now + delay, job_id=None, dedup=None)
            result = self._insert(q, fresh)
            del q.held_by[job_id]
            hold.job_id, hold.next = result.id, None
            q.held_by[result.id] = dedup_id
            self._notify(q)
        elif hold.expires is None:
            del q.dedup[dedup_id]
            del q.held_by[job_id]

    async def get_deduplication(self, queue: str, dedup_id: str) -> str | None:
        q = self._q(queue)
        hold = q.dedup.get(dedup_id)
        if hold is None or hold.job_id not in q.jobs:
            return None
        if hold.expires is not None and hold.expires <= time.time():
            return None
        return hold.job_id

    async def remove_deduplication(self, queue: str, dedup_id: str) -> bool:
        q = self._q(queue)
        held = await self.get_deduplication(queue, dedup_id)
        hold = q.dedup.pop(dedup_id, None)
        if hold is not None:
            q.held_by.pop(hold.job_id, None)
        return held is not None
