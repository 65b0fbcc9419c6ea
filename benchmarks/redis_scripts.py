"""Redis server time per script call, by prelude (issue 21): what a script's prelude costs Redis.

    .venv/bin/python benchmarks/redis_scripts.py [--calls 20000] [--rounds 5]
    .venv/bin/python benchmarks/redis_scripts.py --clients [--jobs 5000] [--rounds 5]
        [--steps adds,c1,c10]

On a private redis-server (so ``INFO commandstats`` counts only these calls), for every queue
script: ``EVALSHA`` of its prelude followed by ``return 1``, with the whole prelude (every helper
of ``common.lua`` and ``flows.lua``, as before issue 21's pruning) and with the pruned one (what
the script refers to; what is sent now); ``return 1`` alone; a real single ``add`` with either
prelude; and ``FCALL`` of a Redis Function whose library defined the whole prelude once at
``FUNCTION LOAD`` and that only re-binds the per-call values (keys, prefix, state) before
``return 1`` (the floor of the Redis Functions design). Rounds alternate the variants; the table
shows each variant's median µs per call (``usec_per_call``) over the rounds.

``--clients``: the same two preludes through polyjobs itself, in one process, alternating in
every round (the backend's scripts swapped between blocks): single adds one after another, then
a worker at concurrency 1 and 10 over pre-added jobs; rates, and the server's CPU per job
(``INFO cpu``, user + system, over the block).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RedisServer, Resp

from polyjobs import Queue, Worker
from polyjobs.backends.redis import RedisBackend, scripts
from polyjobs.backends.redis.keys import SCRIPT_KEYS

PREFIX = "bench:{q}:"
KEYS = [PREFIX + name for name in SCRIPT_KEYS]
BATCH = 200


def function_library() -> str:
    """The whole prelude defined once in a library; ``probe`` re-binds what changes per call."""
    header = "".join(f"local K_{name}\n" for name in SCRIPT_KEYS)
    rest = scripts.full_prelude().split("\n")
    # nothing of the standard library may run while a library loads: PFX is bound per call
    body = "\n".join(
        "local PFX" if line.startswith("local PFX") else line
        for line in rest
        if not line.startswith("local K_")
    )
    rebind = "\n".join(f"  K_{name} = keys[{i}]" for i, name in enumerate(SCRIPT_KEYS, 1))
    return (
        "#!lua name=pjbench\n"
        "local KEYS, ARGV = {}, {''}\n" + header + body + "\n"
        "redis.register_function('probe', function(keys, args)\n"
        "  KEYS, ARGV = keys, args\n" + rebind + "\n"
        "  JP = args[1] .. 'j:'\n  LP = args[1] .. 'l:'\n"
        "  PFX = string.match(args[1], '^(.*){[^{}]*}:$')\n"
        "  NOW, WAKE_PENDING, METRICS, FLOWS_HERE = nil, false, {}, nil\n"
        "  return 1\nend)\n"
    )


TOKEN = "bench-token"


def add_args(count: int = 1) -> list[str]:
    now = f"{time.time():.6f}"
    job = ["", "noop", '{"i":1}', "{}", now, now, "0", "0", "", "", "", "0", "0", "0"]
    return [PREFIX, now, str(count), *job * count]


def finish_args(job_id: int) -> list[str]:
    """Complete job ``job_id`` (default retention: the newest 100) and take the next one."""
    now = f"{time.time():.6f}"
    lease = f"{time.time() + 3600:.6f}"
    done = [str(job_id), "completed", "1", now, "null", "", "", "", "100", ""]
    return [PREFIX, TOKEN, "1", now, lease, f"r{job_id}", "0", "1", *done]


class Bench:
    """The variants, each a list of commands, run on one private server."""

    def __init__(self, redis: Resp, calls: int) -> None:
        self.redis, self.calls = redis, calls
        self.variants: dict[str, tuple[list[str], str, str]] = {}  # label -> sha, argv kind

    def script(self, label: str, text: str, kind: str = "probe") -> None:
        sha = self.redis.call("SCRIPT", "LOAD", text)
        assert sha == hashlib.sha1(text.encode()).hexdigest()
        self.variants[label] = (["EVALSHA", sha, str(len(KEYS))], kind, "evalsha")

    def commands(self, label: str) -> list[list[str]]:
        """The calls to time; jobs for a finish+fetch are added (and the first one taken) here."""
        head, kind, _ = self.variants[label]
        self.redis.call("FLUSHDB")
        if kind == "add":
            return [[*head, *KEYS, *add_args()]] * self.calls
        if kind == "finish":
            for _ in range(0, self.calls + 1, 500):
                self._eval("add", add_args(500))
            now, lease = f"{time.time():.6f}", f"{time.time() + 3600:.6f}"
            self._eval("fetch", [PREFIX, TOKEN, "1", now, lease, "r0"])
            return [[*head, *KEYS, *finish_args(i)] for i in range(1, self.calls + 1)]
        return [[*head, *KEYS, PREFIX]] * self.calls

    def _eval(self, name: str, argv: list[str]) -> None:
        self.redis.call("EVAL", scripts.source(name), str(len(KEYS)), *KEYS, *argv)

    def per_call(self, label: str) -> float:
        """Redis' µs per call of the variant (INFO commandstats ``usec_per_call``)."""
        commands = self.commands(label)
        self.redis.call("CONFIG", "RESETSTAT")
        for at in range(0, len(commands), BATCH):
            batch = commands[at : at + BATCH]
            self.redis.sock.sendall(b"".join(pack(command) for command in batch))
            for _ in batch:
                self.redis._read()
        stat = self.variants[label][2]
        info = self.redis.info("commandstats")[f"cmdstat_{stat}"]
        return float(info.split("usec_per_call=", 1)[1].split(",", 1)[0])


def pack(args: list[str]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


async def _noop(job: Any) -> None:
    return None


async def clients(url: str, jobs: int, rounds: int, steps: list[str]) -> None:
    """Single adds and processing through polyjobs, whole vs pruned preludes, alternating."""
    backend = RedisBackend(f"{url}/0?prefix=ab")
    await backend.open()
    server = Resp("127.0.0.1", int(url.rsplit(":", 1)[1]))
    whole = scripts.full_prelude()
    variants: dict[str, dict[str, str]] = {
        "whole": {name: _whole_source(name, whole) for name in scripts.NAMES},
        "pruned": {name: scripts.source(name) for name in scripts.NAMES},
    }
    results: dict[tuple[str, str], list[float]] = {}
    queue = Queue("ab", backend)
    try:
        for r in range(rounds):
            for variant in sorted(variants, reverse=r % 2 == 1):
                calls = backend._scripts
                assert calls is not None
                for name, text in variants[variant].items():
                    calls._sources[name] = text
                    calls.shas[name] = hashlib.sha1(text.encode()).hexdigest()
                await backend.obliterate("ab")
                if "adds" in steps:
                    cpu, start = server.cpu_seconds(), time.perf_counter()
                    for i in range(jobs):
                        await queue.add("noop", {"i": i})
                    _record(results, variant, "single adds", jobs, start, cpu, server)
                for concurrency in [int(step[1:]) for step in steps if step.startswith("c")]:
                    await backend.obliterate("ab")
                    for base in range(0, jobs, 500):
                        await queue.add_bulk(
                            [("noop", {"i": i}, {}) for i in range(base, base + 500)]
                        )
                    worker = Worker("ab", _noop, backend, concurrency=concurrency, schedule=False)
                    cpu, start = server.cpu_seconds(), time.perf_counter()
                    await worker.run(burst=True)
                    _record(results, variant, f"process c={concurrency}", jobs, start, cpu, server)
    finally:
        await backend.obliterate("ab")
        await backend.close()
        server.close()
    print(f"{'step':<12} {'prelude':<7}  jobs/s median (rounds)  |  server CPU µs/job median")
    for (variant, step), values in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        rates, cpus = values[0::2], values[1::2]
        print(
            f"{step:<12} {variant:<7}  {statistics.median(rates):8,.0f} "
            f"({' '.join(f'{v:,.0f}' for v in rates)})  |  {statistics.median(cpus):6.1f} "
            f"({' '.join(f'{v:.1f}' for v in cpus)})"
        )


def _whole_source(name: str, whole: str) -> str:
    """Script ``name`` with the whole prelude, as sent before issue 21's pruning."""
    text = scripts.source(name)
    shebang = text.split("\n", 1)[0] + "\n" if text.startswith("#!") else ""
    if name in scripts.GLOBAL:
        return text
    return shebang + whole + "\n" + scripts.read(f"{name}.lua")


def _record(
    results: dict[tuple[str, str], list[float]],
    variant: str,
    step: str,
    jobs: int,
    start: float,
    cpu: float,
    server: Resp,
) -> None:
    elapsed = time.perf_counter() - start
    used = server.cpu_seconds() - cpu
    results.setdefault((variant, step), []).extend([jobs / elapsed, used / jobs * 1e6])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", action="store_true", help="through polyjobs, see above")
    parser.add_argument("--jobs", type=int, default=5_000, help="per step, with --clients")
    parser.add_argument("--steps", default="adds,c1,c10", help="with --clients: adds, cN")
    args = parser.parse_args()
    server = RedisServer()
    url = server.start()
    try:
        if args.clients:
            asyncio.run(clients(url, args.jobs, args.rounds, args.steps.split(",")))
            return
        redis = Resp("127.0.0.1", int(url.rsplit(":", 1)[1]))
        bench = Bench(redis, args.calls)
        whole = scripts.full_prelude()
        bench.script("return 1", "return 1")
        redis.call("FUNCTION", "LOAD", "REPLACE", function_library())
        bench.variants["FCALL, whole prelude loaded once"] = (
            ["FCALL", "probe", str(len(KEYS))],
            "probe",
            "fcall",
        )
        for name in scripts.NAMES:
            if name in scripts.GLOBAL:
                continue
            kept = scripts.source(name).rsplit(scripts.read(f"{name}.lua"), 1)[0]
            if kept.startswith("#!"):  # the flags line: measured without, as the whole one
                kept = kept.split("\n", 1)[1]
            bench.script(f"{name}: whole prelude", whole + "\nreturn 1")
            bench.script(f"{name}: pruned prelude", kept + "return 1")
        for name, kind, label in (
            ("add", "add", "add 1 job"),
            ("finish", "finish", "finish+fetch 1 job"),
        ):
            body = scripts.read(f"{name}.lua")
            bench.script(f"{label} (real): whole prelude", whole + "\n" + body, kind)
            bench.script(f"{label} (real): pruned prelude", scripts.source(name), kind)
        results: dict[str, list[float]] = {label: [] for label in bench.variants}
        for _ in range(args.rounds):
            for label in bench.variants:
                results[label].append(bench.per_call(label))
        width = max(map(len, results))
        print(f"{'variant':<{width}}  µs/call median  (rounds)")
        for label, values in results.items():
            rounds = " ".join(f"{v:.2f}" for v in values)
            print(f"{label:<{width}}  {statistics.median(values):6.2f}  ({rounds})")
        redis.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
