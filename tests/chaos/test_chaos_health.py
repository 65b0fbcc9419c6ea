"""``polyjobs health`` tells the truth, with real processes: a worker process on a redis-server
this test starts makes it green; SIGSTOP the worker (alive, but no longer fetching) and it turns
red (exit 1) naming the queue, as does the verdict line of ``polyjobs stats``; SIGCONT and it is
green again (exit 0); kill the server and it is red (backend unreachable)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from polyjobs import open_backend
from polyjobs.backends.redis.testing import RedisServer
from polyjobs.health import check_health
from tests.chaos.chaos_support import POLYJOBS

WORKER = str(Path(__file__).with_name("chaos_worker.py"))
QUEUE = "probed"
FETCH_AGE = "3s"  # the worker's block (1 s) plus its heartbeat interval (1 s), and slack


def _args(url: str, *extra: str) -> list[str]:
    return [
        POLYJOBS,
        "health",
        "--backend",
        url,
        "--queue",
        QUEUE,
        "--fetch-age",
        FETCH_AGE,
        *extra,
    ]


async def _green_in_process(url: str) -> None:
    """Wait (in this process: a CLI call costs seconds) until the worker makes it green."""
    async with open_backend(url) as backend:
        deadline = time.monotonic() + 15
        while not (await check_health(backend, [QUEUE], fetch_age=3.0)).ok:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


def _until(url: str, env: dict[str, str], code: int, timeout: float = 15.0) -> dict[str, Any]:
    """Run `polyjobs health --json` until it exits with ``code``; its report."""
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(_args(url, "--json"), env=env, capture_output=True, text=True)
        assert "Traceback" not in done.stderr, done.stderr
        report: dict[str, Any] = json.loads(done.stdout)
        if done.returncode == code:
            assert report["ok"] is (code == 0), report
            return report
        assert time.monotonic() < deadline, report
        time.sleep(0.3)


@pytest.mark.chaos
def test_health_turns_red_and_green_again(
    redis_server: Callable[..., RedisServer], cli_env: dict[str, str]
) -> None:
    server = redis_server()
    url = server.url
    worker = subprocess.Popen(
        [sys.executable, WORKER, url, QUEUE, url, "runs"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline().startswith("ready")
        asyncio.run(_green_in_process(url))

        os.kill(worker.pid, signal.SIGSTOP)  # alive, registered a while, fetching no more
        time.sleep(3.2)
        health = subprocess.Popen(_args(url), env=cli_env, stdout=subprocess.PIPE, text=True)
        stats = subprocess.run(
            [POLYJOBS, "stats", "--backend", url], env=cli_env, capture_output=True, text=True
        )
        out, _ = health.communicate(timeout=30)
        assert health.returncode == 1, out
        lines = out.splitlines()
        assert lines[0].startswith("ok   backend") and lines[0].endswith(": reachable"), lines
        assert lines[1].startswith(f"FAIL queue {QUEUE} workers: "), lines
        assert lines[2] == f"ok   queue {QUEUE} waiting: nothing waiting", lines
        assert f"health: UNHEALTHY: queue {QUEUE} workers: " in stats.stdout, stats.stdout

        os.kill(worker.pid, signal.SIGCONT)
        green = _until(url, cli_env, 0)
        assert [c["ok"] for c in green["checks"]] == [True, True, True], green
        assert green["checks"][1]["detail"].startswith("1 worker fetching"), green

        server.kill()
        red = _until(url, cli_env, 1)
        (check,) = red["checks"]
        assert check["name"] == "backend" and check["detail"].startswith("unreachable"), red
    finally:
        os.kill(worker.pid, signal.SIGCONT)
        worker.kill()
        worker.wait(5)
        if worker.stdout is not None:
            worker.stdout.close()
