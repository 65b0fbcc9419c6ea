"""The client's Python in ``Queue.add_bulk`` alone (issue 20, bulk pass): ``--calls`` bulk adds
of 500 jobs to a backend that stores nothing and answers at once, so that an instruction count
sees only polyjobs' own per-job work. Count with callgrind, twice, and take the difference:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python benchmarks/bulk_add_cost.py MODE --calls 0     # then --calls 10

(``Collected`` of the second minus the first, over 10). MODE is the jobs' options: ``default``
(none of their own), ``shared`` (one options object for all), ``own`` (a fresh dict per job,
five different contents) or ``ids`` (a fresh dict per job, each with its own ``job_id``). Run
with ``PYTHONPATH`` pointing at a ``git archive`` of another revision to count that one.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from polyjobs import Queue
from polyjobs.backend import AddResult

BATCH = 500


class AnswerOnly:
    """A backend's ``add`` that stores nothing: every job added, ids 0..n-1."""

    capabilities: frozenset[str] = frozenset()

    async def add(self, queue: str, jobs: Sequence[Any]) -> list[AddResult]:
        return [AddResult(str(i), True) for i in range(len(jobs))]


def batches(mode: str) -> Callable[[], list[tuple[Any, ...]]]:
    shared = {"priority": 3, "attempts": 2}
    if mode == "default":
        return lambda: [("job", {"t": 1.5}) for _ in range(BATCH)]
    if mode == "shared":
        return lambda: [("job", {"t": 1.5}, shared) for _ in range(BATCH)]
    if mode == "own":
        return lambda: [
            ("job", {"t": 1.5}, {"priority": i % 5, "attempts": 2}) for i in range(BATCH)
        ]
    return lambda: [("job", {"t": 1.5}, {"job_id": f"j{i}"}) for i in range(BATCH)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("default", "shared", "own", "ids"))
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    queue = Queue("q", AnswerOnly(), default_options={"remove_on_complete": True})  # type: ignore[arg-type]
    make = batches(args.mode)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(queue.add_bulk(make()))  # warm: imports, caches
    for _ in range(args.calls):
        batch = make()  # (building it is counted too: the same work for every revision)
        loop.run_until_complete(queue.add_bulk(batch))
    loop.close()


if __name__ == "__main__":
    main()
