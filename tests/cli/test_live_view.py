"""The live view of `polyjobs start`: rendered at 80x24 in-process, and a real `polyjobs
start` under a pseudo-terminal read back through a terminal emulator (pyte)."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time
from typing import Any

import pyte
from rich.console import Console as RichConsole

from polyjobs.cli.live import FAILURE_TTL, JobFeed, cut_at_word, render_view
from tests.cli.support import POLYJOBS

QUEUES = (
    "polymarket-whale-updates",
    "polymarket-anomaly-batch",
    "polymarket-analysis",
    "polymarket-alerts",
    "polymarket-ingest",
)
SHORTS = {name: name.removeprefix("polymarket-") for name in QUEUES}
REASON = (
    "[red]not markup[/red] \x1b[2J request to data-api.polymarket.com failed: [Errno 111] "
    "connection refused " + "and then some more words " * 12
)


def screen_of(renderable: Any, width: int = 80, height: int = 24) -> list[str]:
    console = RichConsole(width=width, height=height, record=True, file=open(os.devnull, "w"))
    console.print(renderable)
    console.file.close()
    return console.export_text().splitlines()


def busy_feed(now: float) -> JobFeed:
    clock = [now - 2 * FAILURE_TTL]
    feed = JobFeed(clock=lambda: clock[0])
    feed.polyjobs_job_event(QUEUES[2], "failed", "old-1", {"failed_reason": "long ago"})
    clock[0] = now
    for i in range(8):
        feed.polyjobs_job_event(QUEUES[4], "failed", f"ingest-{i}", {"failed_reason": REASON})
    for i in range(12):
        feed.polyjobs_job_event(QUEUES[2], "progress", f"trade-{i:04d}", {"progress": i * 8})
    return feed


def test_the_view_fits_80x24_and_cuts_nothing_without_a_way_to_see_it() -> None:
    now = time.time()
    counts = {
        q: {
            "waiting": 12345,
            "active": 7,
            "delayed": 0,
            "completed": 99999,
            "failed": 123,
            "paused": q.endswith("alerts"),
        }
        for q in QUEUES
    }
    lines = screen_of(render_view(counts, SHORTS, busy_feed(now), 80, 24))
    text = "\n".join(lines)
    assert len(lines) <= 23 and max(len(line) for line in lines) <= 80, text
    assert "whale-updates " in text and "poly…" not in text  # names whole (short at 80)
    assert "[red]not" in text and "markup[/red]" in text and "\\x1b[2J" in text
    assert "\x1b" not in text
    assert "long ago" not in text  # aged out
    flat = " ".join(line.strip("│ ") for line in lines)
    assert "(see: polyjobs jobs show ingest ingest-7)" in flat  # cut: where to see it whole
    assert "ConnectErro\n" not in text
    assert "more in progress" in text  # the progress list is bounded too


def test_the_view_at_a_wide_terminal_shows_full_names() -> None:
    counts = {
        q: {"waiting": 1, "active": 0, "delayed": 0, "completed": 2, "failed": 0, "paused": False}
        for q in QUEUES
    }
    text = "\n".join(screen_of(render_view(counts, SHORTS, JobFeed(), 160, 50), 160, 50))
    assert all(q in text for q in QUEUES)


def test_cut_at_word() -> None:
    assert cut_at_word("a bb ccc dddd", 9) == ("a bb ccc…", True)
    assert cut_at_word("a bb ccc dddd", 8) == ("a bb…", True)
    assert cut_at_word("a bb ccc", 20) == ("a bb ccc", False)
    assert cut_at_word("x" * 30, 10) == ("x" * 9 + "…", True)


def read_until(fd: int, screen_bytes: bytearray, pattern: bytes, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pattern not in screen_bytes and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return pattern in screen_bytes
            if not chunk:
                break
            screen_bytes.extend(chunk)
    return pattern in screen_bytes


def test_start_under_a_terminal_keeps_the_view_whole(cli_env: dict[str, str]) -> None:
    if "POLYJOBS_BACKEND" in cli_env:
        return  # one backend is enough for the terminal's sake
    from tests.cli.support import add_jobs

    add_jobs(cli_env, "test-noisy", [{"n": i} for i in range(6)])
    master, slave = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, **cli_env, "TERM": "xterm-256color", "COLUMNS": "", "LINES": ""}
    env.pop("COLUMNS")
    env.pop("LINES")
    proc = subprocess.Popen(
        [POLYJOBS, "start", "-q", "noisy", "-q", "echo", "--no-schedule"],
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    out = bytearray()
    try:
        assert read_until(master, out, b"noisy job", 30), out.decode(errors="replace")
        assert read_until(master, out, b"see: polyjobs jobs show", 30), out.decode(errors="replace")
        proc.send_signal(signal.SIGINT)
        read_until(master, out, b"polyjobs: stopped", 30)
        proc.wait(30)
        read_until(master, out, b"\x00never", 1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    assert proc.returncode == 0
    screen = pyte.HistoryScreen(80, 24, history=2000)
    pyte.ByteStream(screen).feed(bytes(out))
    history = ["".join(ch.data for ch in line.values()) for line in screen.history.top]
    lines = [line.rstrip() for line in history + screen.display]
    headers = [line for line in lines if line.lstrip().startswith("queue ")]
    assert len(headers) == 1, "\n".join(lines)  # redrawn in place: no torn copies
    logs = [line for line in lines if "noisy job" in line]
    assert logs, "\n".join(lines)  # the log lines printed above the view, whole
    assert all("WARNING" in line for line in logs)
    assert any(line.startswith("stopping: ") and "Ctrl-C again to force" in line for line in lines)


def test_the_parent_view_says_which_worker_is_restarting() -> None:
    from polyjobs.cli.console import Console
    from polyjobs.cli.parent import render_parent
    from polyjobs.cli.processes import Supervisor
    from polyjobs.stats import QueueStats

    supervisor = Supervisor(Console(), [], 2, burst=False, grace=1.0, json_lines=False)
    crashed = supervisor.slots[0]
    crashed.starts, crashed.last_exit, crashed.next_start = 3, "signal 9", 101.5
    stats = [QueueStats("test-slow", 4, 2, 0, 7, 1, False, 2, 5, 1, False)]
    lines = screen_of(render_parent(stats, {}, supervisor, 80, 24, now=100.0))
    assert re.search(r"^1\s+restarting in 1\.5s \(signal 9\)\s+2$", "\n".join(lines), re.M), lines
    assert re.search(r"^2\s+starting\s+0$", "\n".join(lines), re.M), lines
    assert "throughput, last minute: test-slow 5 done 1 failed" in lines, lines
    assert [row.split() for row in lines if row.startswith("test-slow ")] == [
        ["test-slow", "4", "2", "0", "7", "1"]
    ]


def test_the_parent_view_fits_many_workers_and_shows_the_restarting_ones() -> None:
    """More workers than the terminal has lines: the view stays within the terminal (the live
    display crops what passes its bottom) and the workers not up are among the rows shown; the
    others are summed up in one row."""
    from polyjobs.cli.console import Console
    from polyjobs.cli.parent import render_parent
    from polyjobs.cli.processes import Supervisor
    from polyjobs.stats import QueueStats

    supervisor = Supervisor(Console(), [], 40, burst=False, grace=1.0, json_lines=False)
    proc = subprocess.Popen(["true"])  # only its pid is read
    for slot in supervisor.slots:
        slot.starts, slot.proc = 1, proc
    crashed = supervisor.slots[37]
    crashed.proc, crashed.starts, crashed.last_exit, crashed.next_start = None, 2, "code 1", 101.0
    try:
        stats = [QueueStats(f"q{i}", 4, 2, 0, 7, 1, False, 2, 5, 1, False) for i in range(3)]
        lines = screen_of(render_parent(stats, {}, supervisor, 80, 24, now=100.0), 80, 24)
        text = "\n".join(lines)
        assert len(lines) <= 24, text
        assert re.search(r"^38\s+restarting in 1\.0s \(code 1\)\s+1$", text, re.M), text
        assert re.search(r"^…\s+\d+ more up", text, re.M), text
    finally:
        proc.wait()
