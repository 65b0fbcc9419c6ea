"""The machine's floors under the Redis columns of ``run.py``: what no queue on this machine,
Redis and loopback can beat, measured in the same run as the libraries.

    .venv/bin/python benchmarks/floors.py [--url redis://127.0.0.1:6379/14] [--n 5000]

* **round trip** (µs per sequential ``PING``, the floor of an awaited single add and of a c=1
  round): ``redis-benchmark -c 1 -P 1`` (C, the server's own tool), Node's ioredis (BullMQ's
  client), redis-py's asyncio client (hiredis installed), and polyjobs' own multiplexed
  connection (``backends/redis/multiplex.py``), the Python clients on asyncio and on uvloop;
* **hand-over** (ms, the floor of the pick-up columns): one process ``LPUSH``-es its wall-clock
  time at the benchmark's rate, another waits in ``BLPOP`` and takes the difference at once: a
  wake-up of Redis and of a waiting process with no script, job or queue in between (the
  polyjobs client on uvloop at both ends, and ioredis at both ends).

``run.py`` runs these once per run (``--no-floors`` skips them) and prints them under its
tables; the Python parts run in subprocesses of the project's Python (``_common.project_python``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import project_python  # noqa: E402

NODE_SCRIPT = HERE / "node" / "floors.js"
KEY = "polyjobs-floors"


# -- the child side (runs in the project's Python) -------------------------------------------
async def _ping_redispy(url: str, n: int) -> float:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    try:
        await client.ping()
        start = time.perf_counter()
        for _ in range(n):
            await client.ping()
        return (time.perf_counter() - start) / n * 1e6
    finally:
        await client.aclose()


async def _ping_polyjobs(url: str, n: int) -> float:
    from polyjobs.backends.redis.multiplex import Multiplexed

    conn = Multiplexed(url)
    try:
        await conn.call("PING")
        start = time.perf_counter()
        for _ in range(n):
            await conn.call("PING")
        return (time.perf_counter() - start) / n * 1e6
    finally:
        await conn.close()


async def _consume(url: str, n: int) -> list[float]:
    from polyjobs.backends.redis.multiplex import Multiplexed

    conn = Multiplexed(url, timeout=None)
    try:
        await conn.call("DEL", KEY)
        print("READY", flush=True)
        late = []
        while len(late) < n:
            reply = await conn.call("BLPOP", KEY, "10")
            if reply is None:
                break
            late.append(time.time() - float(reply[1]))
        return late
    finally:
        await conn.close()


async def _produce(url: str, n: int, rate: float) -> None:
    from polyjobs.backends.redis.multiplex import Multiplexed

    conn = Multiplexed(url)
    try:
        start = time.perf_counter()
        for i in range(n):
            pause = start + i / rate - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            await conn.call("LPUSH", KEY, repr(time.time()))
    finally:
        await conn.close()


def child(argv: list[str]) -> None:
    mode, url, n = argv[0], argv[1], int(argv[2])
    loop = argv[3] if len(argv) > 3 else "asyncio"
    if mode == "ping-redispy":
        coro: Any = _ping_redispy(url, n)
    elif mode == "ping-polyjobs":
        coro = _ping_polyjobs(url, n)
    elif mode == "consume":
        coro = _consume(url, n)
    else:
        coro = _produce(url, n, float(argv[4]))
    if loop == "uvloop":
        import uvloop

        result = uvloop.run(coro)
    else:
        result = asyncio.run(coro)
    print("RESULT " + json.dumps(result), flush=True)


# -- the parent side -------------------------------------------------------------------------
def _result(out: str) -> Any:
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"no result in {out[-300:]!r}")


def _py(*args: str, timeout: float = 120) -> Any:
    done = subprocess.run(
        [project_python(), __file__, "--child", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return _result(done.stdout + done.stderr)


def _redis_benchmark(url: str, n: int) -> float | str:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return "n/a: redis-benchmark not installed"
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    done = subprocess.run(
        [binary, "-h", host, "-p", port or "6379", "-c", "1", "-n", str(n), "-t", "ping", "--csv"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    rates = []
    for line in done.stdout.splitlines():
        fields = [f.strip('"') for f in line.split(",")]
        if fields[0].startswith("PING") and len(fields) > 1:
            try:
                rates.append(float(fields[1]))
            except ValueError:
                continue
    return 1e6 / max(rates) if rates else "error"


def _handover(url: str, n: int, rate: float, consume: list[str], produce: list[str]) -> Any:
    consumer = subprocess.Popen(
        consume, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert consumer.stdout is not None
        line = consumer.stdout.readline()
        if not line.startswith("READY"):
            return f"error: {line.strip()[:200]}"
        time.sleep(0.5)
        subprocess.run(produce, capture_output=True, timeout=n / rate + 60, check=True)
        out, _ = consumer.communicate(timeout=60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
    late = sorted(1000 * x for x in _result(out))
    return {
        "p50": statistics.median(late),
        "p99": late[min(len(late) - 1, round(0.99 * len(late)) - 1)],
    }


def measure(url: str, n: int = 5000, rate: float = 200.0, handover_n: int = 1000) -> dict[str, Any]:
    """Every floor this machine gives (see the module docstring); a part that cannot run is a
    string saying why."""
    floors: dict[str, Any] = {"rtt_redis_benchmark_us": _redis_benchmark(url, n * 4)}
    node = shutil.which("node")
    node_ok = node is not None and (HERE / "node" / "node_modules" / "ioredis").exists()
    if node_ok:
        done = subprocess.run(
            [node, str(NODE_SCRIPT), "ping", url, str(n)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        floors["rtt_ioredis_us"] = _result(done.stdout + done.stderr)
    else:
        floors["rtt_ioredis_us"] = "n/a: node or benchmarks/node/node_modules missing"
    for loop in ("asyncio", "uvloop"):
        floors[f"rtt_redispy_{loop}_us"] = _py("ping-redispy", url, str(n), loop)
        floors[f"rtt_polyjobs_{loop}_us"] = _py("ping-polyjobs", url, str(n), loop)
    me = [project_python(), __file__, "--child"]
    floors["handover_polyjobs_ms"] = _handover(
        url,
        handover_n,
        rate,
        [*me, "consume", url, str(handover_n), "uvloop"],
        [*me, "produce", url, str(handover_n), "uvloop", str(rate)],
    )
    if node_ok and node is not None:
        floors["handover_ioredis_ms"] = _handover(
            url,
            handover_n,
            rate,
            [node, str(NODE_SCRIPT), "consume", url, str(handover_n)],
            [node, str(NODE_SCRIPT), "produce", url, str(handover_n), str(rate)],
        )
    return floors


ROWS = (
    ("rtt_redis_benchmark_us", "round trip: redis-benchmark -c 1 (C)", "µs"),
    ("rtt_ioredis_us", "round trip: ioredis (Node, BullMQ's client)", "µs"),
    ("rtt_redispy_asyncio_us", "round trip: redis-py asyncio + hiredis", "µs"),
    ("rtt_redispy_uvloop_us", "round trip: redis-py on uvloop", "µs"),
    ("rtt_polyjobs_asyncio_us", "round trip: polyjobs' connection, asyncio", "µs"),
    ("rtt_polyjobs_uvloop_us", "round trip: polyjobs' connection, uvloop", "µs"),
    ("handover_polyjobs_ms", "hand-over LPUSH -> BLPOP, polyjobs' connection on uvloop", "ms"),
    ("handover_ioredis_ms", "hand-over LPUSH -> BLPOP, ioredis", "ms"),
)


def render(floors: dict[str, Any], rate: float) -> str:
    lines = [
        f"Floors of this machine in this run (no queue can beat them; hand-over at {rate:.0f}/s "
        "between two processes, p50 / p99):",
        "",
    ]
    for key, title, unit in ROWS:
        value = floors.get(key)
        if value is None:
            continue
        if isinstance(value, dict):
            text = f"{value['p50']:.3f} / {value['p99']:.3f} {unit}"
        elif isinstance(value, (int, float)):
            text = f"{value:.1f} {unit}"
        else:
            text = str(value)
        lines.append(f"- {title}: {text}")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--n", type=int, default=5000, help="round trips per client")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--handover-n", type=int, default=1000)
    args = parser.parse_args()
    print(render(measure(args.url, args.n, args.rate, args.handover_n), args.rate))


if __name__ == "__main__":
    main()
