"""One process, interleaved single adds on PostgreSQL: polyjobs ``Queue.add`` with this tree's
backend, with the backend module of another revision (``--baseline REV``), and pgqueuer's
``enqueue`` when it is importable; one call of each in turn, medians. It isolates the client's
per-call cost from the disk, which every single add waits for (one commit each) and which
swings too much between the separate runs of ``benchmarks/postgres.py``.

    python benchmarks/postgres_calls.py --baseline main --n 2000
    python benchmarks/postgres_calls.py --baseline main \
        --pgqueuer-path benchmarks/.peers-postgres/lib/python3.11/site-packages

``--baseline`` loads only ``backends/postgres/backend.py`` of that revision on top of this
tree's other modules, so it compares revisions that differ in that file alone.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from polyjobs import Queue  # noqa: E402
from polyjobs.backends.postgres.backend import PostgresBackend  # noqa: E402


def baseline_backend(rev: str, folder: str) -> Any:
    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:backends/postgres/backend.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(folder) / "baseline_backend.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("baseline_backend", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PostgresBackend


async def pgqueuer_enqueue(args: argparse.Namespace, data: dict[str, Any]) -> tuple[Any, Any]:
    """pgqueuer's single enqueue on its own connection, and what deletes its jobs afterwards."""
    sys.path.append(args.pgqueuer_path)
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(args.url)
    queries = Queries(AsyncpgDriver(conn))
    if await conn.fetchval("SELECT to_regclass('pgqueuer')") is None:
        await queries.install()
    payload = json.dumps(data).encode()
    added: list[Any] = []

    async def enqueue() -> None:
        added.extend(await queries.enqueue("noop", payload))

    async def forget() -> None:
        await conn.execute("DELETE FROM pgqueuer WHERE id = ANY($1::bigint[])", added)
        await conn.close()

    return enqueue, forget


async def run(args: argparse.Namespace, baseline: Any) -> None:
    url = f"{args.url}?schema=bench_calls"
    data = {"n": 1, "text": "x" * 20}
    calls: dict[str, Callable[[], Awaitable[Any]]] = {}
    closers: list[Callable[[], Awaitable[Any]]] = []
    backends = [("polyjobs", PostgresBackend(url))]
    if baseline is not None:
        backends.append((f"polyjobs@{args.baseline}", baseline(url)))
    for name, backend in backends:
        await backend.open()
        queue = Queue("calls", backend, default_options={"remove_on_complete": True})
        calls[name] = lambda queue=queue: queue.add("job", data)
        closers += [queue.obliterate, backend.close]
    if args.pgqueuer_path:
        calls["pgqueuer"], forget = await pgqueuer_enqueue(args, data)
        closers.append(forget)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():  # warm up: statements prepared, sessions open
        for _ in range(50):
            await call()
    for _ in range(args.n):
        for name, call in calls.items():
            start = time.perf_counter()
            await call()
            times[name].append(time.perf_counter() - start)
    for name, spent in times.items():
        p90 = statistics.quantiles(spent, n=10)[-1]
        print(f"{name:24s} median {statistics.median(spent) * 1e3:.3f} ms  p90 {p90 * 1e3:.3f} ms")
    for close in closers:
        await close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--n", type=int, default=2000, help="calls of each, interleaved")
    parser.add_argument("--baseline", default="", help="a git revision")
    parser.add_argument("--pgqueuer-path", default="", help="a site-packages with pgqueuer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        baseline = baseline_backend(args.baseline, folder) if args.baseline else None
        asyncio.run(run(args, baseline))


if __name__ == "__main__":
    main()
