"""What Redis spends in the hot scripts, per call, for revisions side by side (issue 21, Lua).

    .venv/bin/python benchmarks/redis_lua_cost.py main . [--calls 400] [--rounds 3]
        [--steps add,fin1,fin10,fetch] [--no-callgrind]

For each revision (anything ``git rev-parse`` takes; ``.`` is the working tree), the scripts'
texts as that revision sends them, run on throw-away ``redis-server``s:

* ``add``: a single add of one job (no options);
* ``fin1``: a finish of one completed job (retention: the newest 100) that fetches the next one,
  what a worker at concurrency 1 sends per job;
* ``fin10``: the same for ten jobs at once (concurrency 10), per call;
* ``fetch``: a fetch of one job at the server's clock (``now`` ''), what an idle worker sends
  behind its blocking wait.

Two measures, revisions alternating (order flipped every round):

* **instructions per call** (exact, whatever the load): the server runs under
  ``valgrind --tool=callgrind --toggle-collect=evalShaCommand``, so only ``EVALSHA`` is counted:
  the script's Lua, the commands it calls, the conversions between them. Measured once (it
  does not vary); ``--no-callgrind`` skips it.
* **µs per call**: ``INFO commandstats`` ``usec_per_call`` on a plain private server, median of
  the rounds (moves with the load of this shared machine: read the ratios).

``--clients``: instead, the revisions' ``add``, ``fetch`` and ``finish`` through this tree's
polyjobs in one process, swapped between blocks of every round (only the scripts differ): single
adds one after another, then a worker at concurrency 1 and 10 over pre-added jobs; jobs/s and
the server's CPU per job (``INFO cpu``, user + system, over the block).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, RedisServer, Resp, export_revision, project_python
from redis_scripts import pack

from polyjobs import Queue, Worker
from polyjobs.backends.redis import RedisBackend, scripts
from polyjobs.backends.redis.keys import SCRIPT_KEYS

PREFIX = "bench:{q}:"
KEYS = [PREFIX + name for name in SCRIPT_KEYS]
TOKEN = "bench-token"
BATCH = 100
#: Calls run before counting starts (the first ones load the script, grow the sets).
WARM = 20

_SOURCES = """
import json, sys
from _common import import_polyjobs_from_bench_source
import_polyjobs_from_bench_source()
from polyjobs.backends.redis import scripts
print(json.dumps({name: scripts.source(name) for name in ("add", "fetch", "finish")}))
"""


def sources(rev: str) -> tuple[str, dict[str, str]]:
    """(label, {script: text}) of revision ``rev`` as it sends them."""
    env = dict(os.environ)
    label = "working tree"
    if rev != ".":
        src, commit = export_revision(rev)
        env["POLYJOBS_BENCH_SRC"] = src
        label = f"{rev} ({commit})" if rev != commit else commit
    out = subprocess.run(
        [project_python(), "-c", _SOURCES],
        cwd=Path(__file__).resolve().parent,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, str] = json.loads(out)
    if rev != ".":
        shutil.rmtree(env["POLYJOBS_BENCH_SRC"], ignore_errors=True)
    return label, found


def _now() -> str:
    return f"{time.time():.6f}"


def _add_args(count: int = 1, plain: bool = False) -> list[str]:
    """An add of ``count`` jobs without options; ``plain``: in the plain form of the add script
    since it has one (``'p'`` and five fields), else with all fourteen."""
    now = _now()
    job = ["", "noop", '{"i":1}', "{}", now, now, "0", "0", "", "", "", "0", "0", "0"]
    if plain:
        job = ["p", *job[:5]]
    return [PREFIX, now, str(count), *job * count]


def _finish_args(first: int, count: int) -> list[str]:
    """Complete jobs first..first+count-1 (keep the newest 100) and take as many more."""
    now, lease = _now(), f"{time.time() + 3600:.6f}"
    done: list[str] = []
    for job_id in range(first, first + count):
        done += [str(job_id), "completed", "1", now, "null", "", "", "", "100", ""]
    return [PREFIX, TOKEN, str(count), now, lease, f"r{first}", "0", str(count), *done]


class Server:
    """A throw-away redis-server; under callgrind counting only inside ``EVALSHA`` when
    ``counted``."""

    def __init__(self, counted: bool) -> None:
        self.counted = counted
        if not counted:
            self.plain = RedisServer()
            url = self.plain.start()
            self.redis = Resp("127.0.0.1", int(url.rsplit(":", 1)[1]))
            return
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="polyjobs-bench-callgrind-")
        self.out = os.path.join(self.dir, "callgrind.out")
        argv = ["valgrind", "--tool=callgrind", "--toggle-collect=evalShaCommand"]
        argv += [f"--callgrind-out-file={self.out}", "redis-server", "--port", str(port)]
        argv += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.redis = Resp("127.0.0.1", port)
                self.redis.call("PING")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server under callgrind did not start") from None
                time.sleep(0.1)

    def zero(self) -> None:
        if self.counted:
            self._control("--zero")
        else:
            self.redis.call("CONFIG", "RESETSTAT")

    def per_call(self, calls: int) -> float:
        """Instructions (counted) or µs (plain) per EVALSHA since :meth:`zero`."""
        if not self.counted:
            info = self.redis.info("commandstats")["cmdstat_evalsha"]
            return float(info.split("usec_per_call=", 1)[1].split(",", 1)[0])
        self._control("--dump")
        deadline = time.monotonic() + 30
        while not (dumps := glob.glob(self.out + ".*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        text = Path(max(dumps, key=os.path.getmtime)).read_text()
        found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if found is None:
            raise SystemExit("no totals in the callgrind output")
        return int(found.group(1)) / calls

    def _control(self, what: str) -> None:
        subprocess.run(["callgrind_control", what, str(self.proc.pid)], capture_output=True)

    def stop(self) -> None:
        self.redis.close()
        if not self.counted:
            self.plain.stop()
            return
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


def _run(redis: Resp, commands: list[list[str]]) -> None:
    for at in range(0, len(commands), BATCH):
        batch = commands[at : at + BATCH]
        redis.sock.sendall(b"".join(pack(command) for command in batch))
        for _ in batch:
            reply = redis._read()
            if isinstance(reply, Exception):
                raise SystemExit(f"script error: {reply}")


def step(server: Server, texts: dict[str, str], name: str, calls: int) -> float:
    """Per-call cost of step ``name`` with the scripts ``texts``."""
    redis = server.redis
    redis.call("FLUSHDB")
    shas = {script: redis.call("SCRIPT", "LOAD", text) for script, text in texts.items()}

    def call(script: str, argv: list[str]) -> list[str]:
        return ["EVALSHA", shas[script], str(len(KEYS)), *KEYS, *argv]

    total = calls + WARM
    plain = "== 'p'" in texts["add"]  # (the revision's add script has the plain form)
    if name == "add":
        commands = [call("add", _add_args(1, plain)) for _ in range(total)]
    elif name == "fetch":
        jobs = total
        _run(redis, [call("add", _add_args(500, plain)) for _ in range(0, jobs, 500)])
        lease = "3600"
        commands = [call("fetch", [PREFIX, TOKEN, "1", "", lease, f"r{i}"]) for i in range(total)]
    else:
        per = 1 if name == "fin1" else 10
        _run(
            redis,
            [call("add", _add_args(500, plain)) for _ in range(0, (total + 1) * per + 500, 500)],
        )
        _run(redis, [call("fetch", [PREFIX, TOKEN, str(per), _now(), "1e12", "r0"])])
        commands = [call("finish", _finish_args(1 + i * per, per)) for i in range(total)]
    _run(redis, commands[:WARM])
    server.zero()
    _run(redis, commands[WARM:])
    return server.per_call(calls)


async def _noop(job: Any) -> None:
    return None


async def clients(revs: list[tuple[str, dict[str, str]]], jobs: int, rounds: int) -> None:
    """Single adds, c=1 and c=10 through polyjobs, the revisions' scripts alternating."""
    server = Server(counted=False)
    backend = RedisBackend(f"redis://127.0.0.1:{server.redis.sock.getpeername()[1]}/0?prefix=lc")
    await backend.open()
    queue = Queue("lc", backend)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}

    def record(label: str, step: str, start: float, cpu: float) -> None:
        rate = jobs / (time.perf_counter() - start)
        per_job = (server.redis.cpu_seconds() - cpu) / jobs * 1e6
        results.setdefault((step, label), []).append((rate, per_job))

    try:
        for _, texts in revs:
            for text in texts.values():
                server.redis.call("SCRIPT", "LOAD", text)
        for r in range(rounds):
            for label, texts in revs if r % 2 == 0 else revs[::-1]:
                for name, text in texts.items():
                    scripts.SHAS[name] = hashlib.sha1(text.encode()).hexdigest()
                backend._heads.clear()  # the packed command heads hold the SHAs
                await backend.obliterate("lc")
                cpu, start = server.redis.cpu_seconds(), time.perf_counter()
                for i in range(jobs):
                    await queue.add("noop", {"i": i})
                record(label, "single adds", start, cpu)
                for concurrency in (1, 10):
                    await backend.obliterate("lc")
                    for base in range(0, jobs, 500):
                        await queue.add_bulk(
                            [("noop", {"i": i}, {}) for i in range(base, base + 500)]
                        )
                    worker = Worker("lc", _noop, backend, concurrency=concurrency, schedule=False)
                    cpu, start = server.redis.cpu_seconds(), time.perf_counter()
                    await worker.run(burst=True)
                    record(label, f"process c={concurrency}", start, cpu)
    finally:
        await backend.obliterate("lc")
        await backend.close()
        server.stop()
    print(f"{'step':<12} {'revision':<28} jobs/s median (rounds)  |  server CPU µs/job (rounds)")
    for (step_name, label), values in results.items():
        rates, cpus = [v[0] for v in values], [v[1] for v in values]
        print(
            f"{step_name:<12} {label:<28} {statistics.median(rates):7,.0f} "
            f"({' '.join(f'{v:,.0f}' for v in rates)})  |  {statistics.median(cpus):6.1f} "
            f"({' '.join(f'{v:.1f}' for v in cpus)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revs", nargs="+", help="revisions ('.' is the working tree)")
    parser.add_argument("--calls", type=int, default=400, help="calls counted per step")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of µs per call")
    parser.add_argument("--steps", default="add,fin1,fin10,fetch")
    parser.add_argument("--no-callgrind", action="store_true")
    parser.add_argument("--clients", action="store_true", help="through polyjobs, see above")
    parser.add_argument("--jobs", type=int, default=3000, help="per step, with --clients")
    args = parser.parse_args()
    steps = args.steps.split(",")
    if unknown := set(steps) - {"add", "fin1", "fin10", "fetch"}:
        raise SystemExit(f"unknown steps: {', '.join(sorted(unknown))}")
    if not args.no_callgrind and shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found (or pass --no-callgrind)")
    revs = [sources(rev) for rev in args.revs]
    print(f"commits: {', '.join(label for label, _ in revs)}; load {os.getloadavg()[0]:.1f}")
    if args.clients:
        asyncio.run(clients(revs, args.jobs, args.rounds))
        print(f"load {os.getloadavg()[0]:.1f}")
        return
    results: dict[tuple[str, str], dict[str, Any]] = {}
    if not args.no_callgrind:
        for name in steps:
            for label, texts in revs:
                server = Server(counted=True)
                try:
                    cost = step(server, texts, name, args.calls)
                finally:
                    server.stop()
                results.setdefault((name, label), {})["ir"] = cost
    server = Server(counted=False)
    try:
        for r in range(args.rounds):
            for label, texts in revs if r % 2 == 0 else revs[::-1]:
                for name in steps:
                    cost = step(server, texts, name, max(args.calls, 2000))
                    results.setdefault((name, label), {}).setdefault("us", []).append(cost)
    finally:
        server.stop()
    print(f"{'step':<6} {'revision':<28} {'instr/call':>11}  µs/call median (rounds)")
    for name in steps:
        for label, _ in revs:
            found = results[(name, label)]
            ir = f"{found['ir']:>11,.0f}" if "ir" in found else f"{'-':>11}"
            us = found.get("us", [])
            rounds = " ".join(f"{v:.1f}" for v in us)
            median = statistics.median(us) if us else float("nan")
            print(f"{name:<6} {label:<28} {ir}  {median:6.1f} ({rounds})")
    print(f"load {os.getloadavg()[0]:.1f}; repository {REPO}")


if __name__ == "__main__":
    main()
