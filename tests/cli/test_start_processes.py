"""`polyjobs start --processes N`: a parent supervising N real worker processes (real signals:
SIGKILL of a child, SIGTERM of the parent)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from polyjobs import Queue, open_backend
from polyjobs.cli import pidfile
from tests.cli.support import POLYJOBS, add_jobs, backend_url, polyjobs, wait_active

# SQLite: one file shared by processes (Redis is shared the same way; see benchmarks/processes.py)
pytestmark = pytest.mark.parametrize("cli_env", ["sqlite"], indirect=True)
STARTED = re.compile(r"^polyjobs: worker (\d) started, pid (\d+)", re.M)


def _counts(env: dict[str, str], queue: str) -> dict[str, Any]:
    async def counts() -> dict[str, Any]:
        async with open_backend(backend_url(env)) as backend:
            return dict(await Queue(queue, backend).counts())

    return asyncio.run(counts())


def _spawn(env: dict[str, str], out: Path, *args: str) -> subprocess.Popen[bytes]:
    with out.open("wb") as sink:
        return subprocess.Popen(
            [POLYJOBS, "start", *args],
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def _wait_for(what: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def _children(out: Path) -> dict[int, list[int]]:
    """Each slot's pids, in the order the parent started them."""
    pids: dict[int, list[int]] = {}
    for slot, pid in STARTED.findall(out.read_text()):
        pids.setdefault(int(slot), []).append(int(pid))
    return pids


def test_two_processes_run_200_jobs_exactly_once_in_burst(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    add_jobs(cli_env, "test-echo", [{"text": f"t{i}"} for i in range(200)])
    args = ("--processes", "2", "--burst", "-q", "test-echo", "-c", "echo=5")
    done = polyjobs(cli_env, "start", *args, "--log-format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    started = dict(STARTED.findall(done.stderr))  # the parent's own lines: on stderr with JSON
    assert set(started) == {"1", "2"} and len(set(started.values())) == 2, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]  # whole objects, one a line
    ran = Counter(r["job_id"] for r in records if r["event"] == "completed")
    assert len(ran) == 200 and set(ran.values()) == {1}, ran.most_common(3)
    assert "worker 1 (pid" in done.stderr and "worker 2 (pid" in done.stderr  # both exited
    counts = _counts(cli_env, "test-echo")
    assert counts["waiting"] == counts["active"] == counts["failed"] == 0, counts
    assert not pidfile.pid_path(Path(cli_env["POLYJOBS_HOME"])).exists()


def test_a_killed_child_is_restarted_and_its_jobs_run_again(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**cli_env, "POLYJOBS_PLUGINS": "polyjobs_test_plugin,short_lease_plugin"}
    add_jobs(env, "test-slow", [{"seconds": 0.8} for _ in range(8)])
    out = tmp_path / "out.txt"
    parent = _spawn(env, out, "-P", "2", "-q", "test-slow", "-c", "slow=2", "--no-schedule")
    try:
        wait_active(env, "test-slow", 4)  # both children hold two jobs each
        victim = _children(out)[1][0]
        os.kill(victim, signal.SIGKILL)
        again = _wait_for(lambda: len(_children(out).get(1, [])) == 2 and _children(out)[1][1])
        assert again != victim and pidfile.alive(again)
        assert f"worker 1 (pid {victim}) exited (signal 9)" in out.read_text()
        assert " completed " not in out.read_text()  # text: a worker's lines say only the rest
        _wait_for(lambda: _counts(env, "test-slow")["completed"] == 8)  # none lost
        assert _counts(env, "test-slow")["failed"] == 0
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 0, out.read_text()
        assert not any(pidfile.alive(p) for pids in _children(out).values() for p in pids)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_sigterm_to_the_parent_stops_every_child_within_the_grace(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    add_jobs(cli_env, "test-slow", [{"seconds": 60} for _ in range(4)])
    out = tmp_path / "out.txt"
    parent = _spawn(
        cli_env, out, "-P", "2", "-q", "test-slow", "-c", "slow=2", "--grace", "1s", "--no-schedule"
    )
    try:
        wait_active(cli_env, "test-slow", 4)
        children = [pids[0] for pids in _children(out).values()]
        assert len(children) == 2
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=15) == 0, out.read_text()
        text = out.read_text()
        assert not any(pidfile.alive(p) for p in children)
        assert "did not stop within the grace" not in text, text  # they stopped by themselves
        assert text.count("[worker 1] polyjobs: stopped") == 1, text
        assert text.count("[worker 2] polyjobs: stopped") == 1, text
        counts = _counts(cli_env, "test-slow")
        assert counts["active"] == 0 and counts["completed"] == 0, counts  # handed back
    finally:
        if parent.poll() is None:
            parent.kill()


def test_memory_backend_and_unknown_queue_are_refused_in_one_line(cli_env: dict[str, str]) -> None:
    done = polyjobs({**cli_env, "POLYJOBS_PROCESSES": "2"}, "start", "--backend", "memory://")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "--processes needs a backend" in done.stderr
    assert "Traceback" not in done.stderr
    done = polyjobs(cli_env, "start", "-P", "2", "-q", "nosuchqueue")  # checked before any worker
    assert done.returncode == 1 and done.stdout == "", done.stdout
    assert done.stderr.count("\n") == 1 and "unknown queue 'nosuchqueue'" in done.stderr
    done = polyjobs(cli_env, "start", "-P", "3", "--metrics-port", "65533")
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert done.stderr.count("\n") == 1 and "65534..65536 pass 65535" in done.stderr


def _screen_lines(screen: Any) -> list[str]:
    history = ["".join(ch.data for ch in line.values()) for line in screen.history.top]
    return [line.rstrip() for line in history + screen.display]


def test_on_a_terminal_the_parent_shows_one_live_view(cli_env: dict[str, str]) -> None:
    """A real `start -P 2 --burst` under a pseudo-terminal, read back through a terminal
    emulator: one view (the queues' counts from the backend, one row per worker) redrawn in
    place, not the workers' streams; every job ran once."""
    import fcntl
    import pty
    import struct
    import termios

    import pyte

    from tests.cli.test_live_view import read_until

    add_jobs(cli_env, "test-slow", [{"seconds": 0.3} for _ in range(12)])
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {**os.environ, **cli_env, "TERM": "xterm-256color"}
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    args = ("-P", "2", "--burst", "-q", "slow", "-c", "slow=2", "--no-schedule")
    proc = subprocess.Popen(
        [POLYJOBS, "start", *args], env=env, stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    out = bytearray()
    screen = pyte.HistoryScreen(100, 30, history=2000)
    stream = pyte.ByteStream(screen)
    seen_up: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            before = len(out)
            read_until(master, out, b"\x00never", 0.2)
            stream.feed(bytes(out[before:]))
            up = [line for line in screen.display if re.match(r"\s*\d\s+\d+\s+up\s+0\s*$", line)]
            if len(up) == 2:
                seen_up = up  # both workers' rows, while they ran
        assert proc.wait(timeout=30) == 0, out.decode(errors="replace")
        before = len(out)
        read_until(master, out, b"\x00never", 0.5)
        stream.feed(bytes(out[before:]))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    lines = _screen_lines(screen)
    text = "\n".join(lines)
    assert len(seen_up) == 2, text
    pids = {int(slot): int(pid) for slot, pid in STARTED.findall(text)}
    assert set(pids) == {1, 2}, text
    for slot, pid in pids.items():
        assert any(re.match(rf"\s*{slot}\s+{pid}\s+up\s+0", row) for row in seen_up), seen_up
    # one view, redrawn in place: its headers once each, whatever was drawn meanwhile
    assert [line.split() for line in lines if line.lstrip().startswith("queue ")] == [
        ["queue", "waiting", "active", "delayed", "completed", "failed", "paused"]
    ], text
    assert sum(line.lstrip().startswith("worker ") for line in lines) == 1, text
    row = next(line.split() for line in lines if line.lstrip().startswith("test-slow "))
    assert row[1:6] == ["0", "0", "0", "12", "0"], text  # the backend's counts, at the end
    assert re.search(r"throughput, last minute: slow 12 done", text), text
    for slot in (1, 2):
        assert re.search(rf"^\s*{slot}\s+exited \(code 0\)\s+0\s*$", text, re.M), text
    assert "[worker 1] polyjobs: stopped" in text  # the workers' own lines, above the view
    assert sum("[worker " in line for line in lines) == 4, text  # started, stopped: no job lines
    ran = _attempts(cli_env, "test-slow")
    assert len(ran) == 12 and set(ran) == {1}, ran  # every job ran once


def _attempts(env: dict[str, str], queue: str) -> list[int]:
    async def attempts() -> list[int]:
        async with open_backend(backend_url(env)) as backend:
            return [j.attempts_made for j in await Queue(queue, backend).jobs("completed", 0, -1)]

    return asyncio.run(attempts())


def _free_ports(count: int) -> int:
    """A port p such that p..p+count-1 are free now."""
    import socket

    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count > 65535:
            continue
        socks = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no free run of ports")


def test_the_parent_serves_the_board_and_the_backend_metrics_and_each_worker_its_own(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """`-P 2 --board --metrics-port P`: the parent serves the board and the backend's gauges
    on P (and no per-process counter, which would be one process's share); worker I serves its
    own counters on P+I; together they count every job once."""
    import httpx

    from tests.cli.test_start_metrics import scrape, wait_for

    pytest.importorskip("starlette")
    add_jobs(cli_env, "test-slow", [{"seconds": 0.4} for _ in range(10)])
    port = _free_ports(3)
    out = tmp_path / "out.txt"
    parent = _spawn(
        cli_env,
        out,
        *("-P", "2", "-q", "slow", "-c", "slow=2", "--no-schedule"),
        *("--board", "--board-port", "0", "--metrics-port", str(port)),
    )
    try:
        board = _wait_for(
            lambda: re.search(r"^polyjobs board on (http://\S+)/admin/", _text(out), re.M)
        )
        parent_url = f"http://127.0.0.1:{port}/metrics"
        assert f"polyjobs metrics on {parent_url}" in _text(out)
        workers = _wait_for(
            lambda: (
                len(
                    found := re.findall(
                        r"^\[worker (\d)\] polyjobs metrics on (\S+)$", _text(out), re.M
                    )
                )
                == 2
                and dict(found)
            )
        )
        assert workers == {str(i): f"http://127.0.0.1:{port + i}/metrics" for i in (1, 2)}
        online = ("polyjobs_workers_online", (("queue", "test-slow"),))
        during = wait_for(parent_url, lambda m: m.get(online) == 2)
        assert during[online] == 2 and during[("polyjobs_backend_up", ())] == 1
        page = httpx.get(f"{board.group(1)}/admin/queues", timeout=10)
        assert page.status_code == 200 and "test-slow" in page.text
        rows = httpx.get(f"{board.group(1)}/api/queues", timeout=10).json()["queues"]
        assert {r["queue"] for r in rows} >= {"test-slow"}
        _wait_for(lambda: _counts(cli_env, "test-slow")["completed"] == 10)
        done = ("polyjobs_jobs_completed_total", (("queue", "test-slow"),))
        per_worker = [scrape(url).get(done, 0.0) for url in workers.values()]
        assert sum(per_worker) == 10, per_worker  # each job counted once, where it ran
        after = scrape(parent_url)
        assert after[("polyjobs_jobs", (("queue", "test-slow"), ("state", "completed")))] == 10
        finished = (
            "polyjobs_jobs_finished_last_minute",
            (("queue", "test-slow"), ("state", "completed")),
        )
        assert after[finished] == 10  # both workers' finishes, from the backend's stored metrics
        assert not [key for key in after if key[0].startswith("polyjobs_jobs_completed")], after
        assert not [key for key in after if key[0].startswith("polyjobs_job_processing")]
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 0, _text(out)
    finally:
        if parent.poll() is None:
            parent.kill()
    with pytest.raises(httpx.ConnectError):
        httpx.get(parent_url, timeout=2)


def _text(out: Path) -> str:
    return out.read_text()


@pytest.mark.parametrize(
    "handoff",
    ["{not json", '{"home": "/tmp"}', "[]", '{"backend_url": 1, "home": 2, "settings": 3}'],
)
def test_a_broken_demo_handoff_is_one_line(cli_env: dict[str, str], handoff: str) -> None:
    """What a supervising ``start --demo`` hands its workers, when it is not that (a user's
    own environment), is refused in one line, not a traceback."""
    env = {**cli_env, "POLYJOBS_SUPERVISED_WORKER": "1", "POLYJOBS_SUPERVISED_DEMO": handoff}
    done = polyjobs(env, "start", "--demo")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.count("\n") == 1 and "POLYJOBS_SUPERVISED_DEMO is not the demo" in done.stderr
    )
